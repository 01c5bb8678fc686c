// One version and one image: package.json, the chart's appVersion, `mooring --version` and the
// default images of the three roles (server, mooring-init, mooring-proxy) agree.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { defaultConfig } from '../../src/config/validate';
import { MOORING_IMAGE, MOORING_VERSION } from '../../src/constants';
import { runCli } from '../fixtures/cli';

const ROOT = join(__dirname, '..', '..');
const read = (file: string): string => readFileSync(join(ROOT, file), 'utf8');

describe("Mooring's version", () => {
  it('is the version of package.json and the appVersion of the chart', () => {
    expect((JSON.parse(read('package.json')) as { version: string }).version).toBe(MOORING_VERSION);
    expect((parse(read('charts/mooring/Chart.yaml')) as { appVersion: string }).appVersion).toBe(
      MOORING_VERSION,
    );
  });

  it('is what `mooring --version` prints', async () => {
    expect(await runCli(['--version'])).toEqual({
      code: 0,
      stdout: `${MOORING_VERSION}\n`,
      stderr: '',
    });
  });
});

describe('one image for the three roles', () => {
  it('is the default of the proxy and of the init container: the image the Dockerfile builds', () => {
    const { injector } = defaultConfig();
    expect(injector.proxyImage).toBe(`ghcr.io/mooring-dev/mooring:${MOORING_VERSION}`);
    expect(injector.initImage).toBe(injector.proxyImage);
    expect(MOORING_IMAGE).toBe(injector.proxyImage);
    expect(read('Dockerfile')).toContain(`docker build -t ${MOORING_IMAGE} .`);
  });

  it("is the chart's image (image.repository, appVersion)", () => {
    const values = parse(read('charts/mooring/values.yaml')) as {
      image: { repository: string };
      config: { injector: Record<string, unknown> };
    };
    expect(`${values.image.repository}:${MOORING_VERSION}`).toBe(MOORING_IMAGE);
    // Not set in values: the chart derives both from image.* (test/chart/render.test.ts).
    expect(values.config.injector.proxyImage).toBeUndefined();
    expect(values.config.injector.initImage).toBeUndefined();
  });
});
