// The server's log line when a Service's traffic objects lose to another: a DestinationRule that
// the lookup puts behind another names the one used and why.
import { MeshModel } from '../../../src/mesh';
import { MeshPush } from '../../../src/server/mesh/push';
import {
  createdAt,
  MODEL_OPTIONS,
  service,
  valid,
  withClusterIP,
  withPort,
  type Raw,
} from '../../fixtures/mesh-objects';

const dr = (name: string, namespace: string): Raw => ({
  apiVersion: 'networking.istio.io/v1',
  kind: 'DestinationRule',
  metadata: { name, namespace },
  spec: { host: 'reviews.default.svc.cluster.local' },
});

it('logs a shadowed DestinationRule once, naming the rule used and the lookup', () => {
  const model = new MeshModel(MODEL_OPTIONS);
  for (const raw of [
    service('reviews', withPort(9080, 'http'), withClusterIP('10.96.0.20')),
    // The root namespace's rule is older, but the Service's own namespace comes first.
    createdAt('2026-01-01T00:00:00Z')(dr('mesh-wide', 'mooring-system')),
    createdAt('2026-06-01T00:00:00Z')(dr('own', 'default')),
  ]) {
    model.upsert(valid(raw));
  }
  const lines: { fields: object; message: string }[] = [];
  const push = new MeshPush({
    model,
    log: {
      info: (fields: object, message: string) => lines.push({ fields, message }),
      warn: () => undefined,
      debug: () => undefined,
    },
    quietMs: 50,
    heartbeatMs: 60_000,
  });
  push.markSynced();
  push.flush();
  // The Service changes, its rules do not: nothing said again.
  model.upsert(valid(service('reviews', withPort(9081, 'http'), withClusterIP('10.96.0.20'))));
  expect(push.flush()).not.toBeNull();
  push.close();
  const shadowed = lines.filter((l) => l.message.startsWith('traffic rules for default/reviews'));
  expect(shadowed).toEqual([
    {
      fields: {
        service: 'default/reviews',
        used: { kind: 'DestinationRule', namespace: 'default', name: 'own' },
        shadowed: { kind: 'DestinationRule', namespace: 'mooring-system', name: 'mesh-wide' },
      },
      message:
        "traffic rules for default/reviews not used: DestinationRule default/own comes first in the lookup: namespace default is read before mooring-system (the proxy's namespace, then the Service's, then the root namespace)",
    },
  ]);
});
