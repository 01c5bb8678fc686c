// The CRDs of the APIs Mooring reads, installed as a user installs them: Istio's (istio.io/api:
// PeerAuthentication, VirtualService, DestinationRule...) and the Gateway API's HTTPRoute
// (standard channel), as fetched by fetch-crds.sh (`make crds`) into .cache/crds.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { REPO_ROOT, type ControlPlane } from './control-plane';
import { kubectl } from './kube';

export const CRDS_DIR = path.join(REPO_ROOT, '.cache', 'crds');

const FILES = ['istio.yaml', 'gateway-api-standard/gateway.networking.k8s.io_httproutes.yaml'];
const NAMES = [
  'peerauthentications.security.istio.io',
  'virtualservices.networking.istio.io',
  'destinationrules.networking.istio.io',
  'httproutes.gateway.networking.k8s.io',
];

/** Applies the CRDs (server-side: Istio's are too large for client-side apply), then waits for them. */
export async function installMeshCrds(cp: ControlPlane): Promise<void> {
  const files = FILES.map((f) => path.join(CRDS_DIR, f));
  const missing = files.filter((f) => !fs.existsSync(f));
  if (missing.length > 0) {
    throw new Error(`${missing.join(', ')} missing: fetch the CRDs first (make crds)`);
  }
  await kubectl(cp, [
    ...['apply', '--server-side', '--force-conflicts'],
    ...files.flatMap((f) => ['-f', f]),
  ]);
  await kubectl(cp, [
    ...['wait', '--for=condition=Established', '--timeout=120s'],
    ...NAMES.map((n) => `crd/${n}`),
  ]);
}
