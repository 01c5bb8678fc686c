// One sidecar in a process of its own, for bench/proxy.ts: the real Sidecar of `mooring agent`,
// with its original destination fixed by the bench (the same for every connection, as an
// iptables redirect to one port gives) instead of read from iptables, so that it can run next
// to nginx on loopback without root. Reads its setup as JSON from argv[2]; prints its ports.

import { readFileSync } from 'node:fs';
import {
  MESH_API_VERSION,
  applyMeshMessage,
  type MeshMessage,
  type MeshState,
} from '../src/api/mesh';
import { IstioMetrics } from '../src/agent/proxy/metrics';
import { Sidecar } from '../src/agent/proxy/sidecar';

interface Setup {
  /** Where every redirected connection "was sent". */
  originalDestination: { address: string; port: number };
  /** A MeshMessage snapshot, as JSON. */
  meshFile: string;
  credentials: { chainPem: string; keyPem: string; roots: string[]; spiffeId: string };
  outboundPort?: number;
  inboundPort?: number;
}

const setup = JSON.parse(process.argv[2] ?? '{}') as Setup;
const snapshot = JSON.parse(readFileSync(setup.meshFile, 'utf8')) as MeshMessage;
if (snapshot.apiVersion !== MESH_API_VERSION) throw new Error('not a mesh snapshot');
const state = applyMeshMessage(null, snapshot) as MeshState;
const dst = { ...setup.originalDestination, family: 4 as const };
const metrics = new IstioMetrics();
const quiet = {
  debug: () => {},
  info: () => {},
  warn: () => {},
  error: (o: object, m: string) => process.stderr.write(`${m} ${JSON.stringify(o)}\n`),
};
const sidecar = new Sidecar(
  { log: quiet, originalDestination: () => dst, random: Math.random, nowMs: Date.now, metrics },
  {
    outboundPort: setup.outboundPort ?? 0,
    inboundPort: setup.inboundPort ?? 0,
    listenHost: '127.0.0.1',
    connectTimeoutMs: 10_000,
    handshakeTimeoutMs: 10_000,
    ownPorts: [],
  },
);
sidecar.setCredentials(setup.credentials, new Date());
sidecar.setMesh(state);
void sidecar.start().then((ports) => {
  process.stdout.write(
    `${JSON.stringify({ outbound: ports.outbound.port, inbound: ports.inbound.port })}\n`,
  );
});
process.on('SIGTERM', () => {
  void sidecar.close().then(() => process.exit(0));
});
// The bench reads the metrics once at the end (their rendering is part of the real cost).
process.on('SIGUSR2', () => {
  const m = process.memoryUsage();
  const mib = (n: number): string => (n / 1048576).toFixed(1);
  process.stderr.write(
    `memory rss=${mib(m.rss)} heapTotal=${mib(m.heapTotal)} heapUsed=${mib(m.heapUsed)} external=${mib(m.external)} arrayBuffers=${mib(m.arrayBuffers)} metrics-bytes=${metrics.render().length}\n`,
  );
});
