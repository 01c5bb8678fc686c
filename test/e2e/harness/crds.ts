// The CRDs of the APIs Mooring reads, installed as a user installs them: Istio's (istio.io/api:
// PeerAuthentication, AuthorizationPolicy, RequestAuthentication, VirtualService, DestinationRule,
// ServiceEntry, Sidecar, Telemetry, WorkloadEntry...: istio.yaml holds every Istio CRD) and the
// Gateway API's HTTPRoute, GRPCRoute, TLSRoute and TCPRoute (standard channel), as fetched by
// fetch-crds.sh (`make crds`) into .cache/crds.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { REPO_ROOT, type ControlPlane } from './control-plane';
import { kubectl, kubectlJson } from './kube';

export const CRDS_DIR = path.join(REPO_ROOT, '.cache', 'crds');

const FILES = [
  'istio.yaml',
  'gateway-api-standard/gateway.networking.k8s.io_httproutes.yaml',
  'gateway-api-standard/gateway.networking.k8s.io_grpcroutes.yaml',
  'gateway-api-standard/gateway.networking.k8s.io_tlsroutes.yaml',
  'gateway-api-standard/gateway.networking.k8s.io_tcproutes.yaml',
];
const NAMES = [
  'peerauthentications.security.istio.io',
  'authorizationpolicies.security.istio.io',
  'requestauthentications.security.istio.io',
  'virtualservices.networking.istio.io',
  'destinationrules.networking.istio.io',
  'serviceentries.networking.istio.io',
  'sidecars.networking.istio.io',
  'telemetries.telemetry.istio.io',
  'workloadentries.networking.istio.io',
  'httproutes.gateway.networking.k8s.io',
  'grpcroutes.gateway.networking.k8s.io',
  'tlsroutes.gateway.networking.k8s.io',
  'tcproutes.gateway.networking.k8s.io',
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
  await waitForCrds(cp, NAMES);
}

interface CrdStatus {
  readonly metadata: { readonly name: string };
  readonly status?: { readonly conditions?: readonly { type: string; status: string }[] };
}

/**
 * Waits until every named CRD is Established. Polls rather than `kubectl wait`: a CRD just created
 * may have no `.status.conditions` yet, and `kubectl wait --for=condition=...` then fails at once
 * ("<nil> is of the type <nil>") instead of waiting.
 */
export async function waitForCrds(
  cp: Pick<ControlPlane, 'kubeconfigPath'>,
  names: readonly string[],
  timeoutMs = 120_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const list = (await kubectlJson(cp, ['get', ...names.map((n) => `crd/${n}`)])) as {
      items?: readonly CrdStatus[];
    };
    const items = list.items ?? [list as unknown as CrdStatus];
    const established = new Set(
      items
        .filter((crd) =>
          (crd.status?.conditions ?? []).some(
            (c) => c.type === 'Established' && c.status === 'True',
          ),
        )
        .map((crd) => crd.metadata.name),
    );
    const pending = names.filter((n) => !established.has(n));
    if (pending.length === 0) return;
    if (Date.now() > deadline) {
      throw new Error(`CRDs not Established within ${timeoutMs} ms: ${pending.join(', ')}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}
