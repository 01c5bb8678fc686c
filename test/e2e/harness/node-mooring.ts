// Mooring installed in a node cluster (./node.ts): `mooring serve --kubeconfig` on the host, on the
// node's hostIP (Pods cannot reach the host's 127.0.0.1), the webhook registered by URL
// (`mooring webhook-config --url`), and the injector configured with the image that
// hack/build-images.sh built and imported, so that every injected Pod runs Mooring's own
// image as mooring-init and mooring-proxy, and its agent calls this server's CA.
//
// Why not the chart's Deployment: without kube-proxy and DNS (see ./node.ts) a Pod reaches
// neither the apiserver's Service nor a Service's name, and the apiserver calls a webhook
// Service by its name. The server process is the same code the image runs.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { freePorts } from './control-plane';
import { installMeshCrds } from './crds';
import { createNamespace, kubectl } from './kube';
import type { NodeCluster } from './node';
import {
  bundleText,
  runMooring,
  startMooring,
  testConfig,
  waitFor,
  type MooringServer,
} from '../support/mooring';

export const MOORING_NAMESPACE = 'mooring-system';

export interface MooringOnNodeOptions {
  /** More configuration, merged over the test defaults (short rotation steps, the images). */
  readonly config?: Record<string, unknown>;
  /** Leave the server running when this process exits (make cluster-up). */
  readonly persistent?: boolean;
}

/** The configuration of a server whose injector makes Pods of this node's images. */
export function nodeMooringConfig(
  cluster: NodeCluster,
  caUrl: string,
  extra: Record<string, unknown> = {},
): Record<string, unknown> {
  return testConfig(MOORING_NAMESPACE, {
    injector: {
      proxyImage: cluster.images.mooring,
      initImage: cluster.images.mooring,
      // The images are imported, never pulled (and nothing could be pulled from here).
      imagePullPolicy: 'IfNotPresent',
      caAddress: caUrl,
    },
    ...extra,
  });
}

/**
 * Starts Mooring for this cluster and registers its webhook; resolves once Pods can use it.
 * Istio's CRDs and the Gateway API's HTTPRoute are installed first, so that the server watches
 * PeerAuthentications, AuthorizationPolicies and the traffic rules from its start (a CRD installed later is found
 * within 30 s).
 */
export async function installMooring(
  cluster: NodeCluster,
  opts: MooringOnNodeOptions = {},
): Promise<MooringServer> {
  await createNamespace(cluster.controlPlane, MOORING_NAMESPACE);
  await installMeshCrds(cluster.controlPlane);
  const ports = (await freePorts(2)) as [number, number];
  const caUrl = `https://${cluster.hostIP}:${ports[0]}`;
  const server = await startMooring(cluster.controlPlane, {
    namespace: MOORING_NAMESPACE,
    listenHost: cluster.hostIP,
    ports,
    persistent: opts.persistent ?? false,
    config: nodeMooringConfig(cluster, caUrl, opts.config),
  });
  cluster.recordProcess('mooring', server.pid);
  cluster.recordDir(path.dirname(server.logPath));
  try {
    const bundleFile = path.join(cluster.dir, 'mooring-bundle.pem');
    fs.writeFileSync(bundleFile, bundleText(await server.trustBundle()));
    const rendered = await runMooring([
      ...['webhook-config', '--url', `${server.url}/inject`, '--ca-bundle', bundleFile],
    ]);
    if (rendered.code !== 0) throw new Error(`mooring webhook-config: ${rendered.stderr}`);
    await kubectl(cluster.controlPlane, ['apply', '-f', '-'], rendered.stdout);
    // The trust bundle every injected Pod mounts, distributed to each namespace.
    await waitFor('the mooring-ca-root-cert ConfigMap', async () => {
      await kubectl(cluster.controlPlane, [
        ...['get', 'configmap', 'mooring-ca-root-cert', '-n', 'default', '-o', 'name'],
      ]);
      return true;
    });
  } catch (err) {
    await server.stop();
    throw err;
  }
  return server;
}
