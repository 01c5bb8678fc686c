// The injector the HTTP property and fixture tests run against: the real one (src/injector),
// bound to the default configuration, as `mooring serve` binds it.
import type { PodInjector } from '../../src/admission';
import { validateConfig } from '../../src/config/validate';
import { inject, type Pod } from '../../src/injector';

export const TEST_VERSION = '0.1.0';

export function injectorUnderTest(raw: unknown = {}): PodInjector {
  const config = validateConfig(raw);
  return (pod, namespace) => inject(pod as Pod, { config, namespace, version: TEST_VERSION });
}
