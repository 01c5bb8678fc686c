// The mesh push's metrics on the server's registry (/metrics of the admin port). With --workers
// the primary sums the workers' counters and connected proxies; the object gauges use `max`, as
// every worker reads the same objects.

import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { MESH_KINDS, type MeshKind, type ObjectProblem } from '../../mesh';
import type { PushObserver } from './push';

export const PUSH_LATENCY_BUCKETS = [0.01, 0.05, 0.1, 0.15, 0.25, 0.5, 1, 2.5, 5, 10, 30];

export interface MeshMetricSources {
  readonly proxies: () => number;
  readonly waiting: () => number;
  readonly objects: () => Record<MeshKind, number>;
  readonly problems: () => readonly ObjectProblem[];
}

/** Objects with a problem that keeps them out (or on an old version), by kind ('file' for a file). */
export function invalidObjectsByKind(problems: readonly ObjectProblem[]): Map<string, number> {
  const objects = new Map<string, Set<string>>();
  for (const p of problems) {
    if (p.effect === 'field-ignored') continue;
    const kind = p.kind === '' ? 'file' : p.kind;
    let set = objects.get(kind);
    if (set === undefined) objects.set(kind, (set = new Set()));
    set.add(`${p.source}\u0000${p.namespace}\u0000${p.name}`);
  }
  return new Map([...objects].map(([kind, set]) => [kind, set.size]));
}

export function createMeshMetrics(registry: Registry, sources: MeshMetricSources): PushObserver {
  const registers = [registry];
  new Gauge({
    name: 'mooring_mesh_proxies_connected',
    help: 'Proxies with an open GET /v1/mesh/watch stream.',
    registers,
    collect() {
      this.set(sources.proxies());
    },
  });
  new Gauge({
    name: 'mooring_mesh_proxies_waiting',
    help: 'Connected proxies that read too slowly: they get one coalesced delta when they catch up.',
    registers,
    collect() {
      this.set(sources.waiting());
    },
  });
  new Gauge({
    name: 'mooring_mesh_objects',
    help: 'Objects in the mesh model, by kind.',
    labelNames: ['kind'],
    registers,
    aggregator: 'max',
    collect() {
      const counts = sources.objects();
      for (const kind of MESH_KINDS) this.set({ kind }, counts[kind]);
    },
  });
  new Gauge({
    name: 'mooring_mesh_invalid_objects',
    help: 'Objects (or files) left out or kept at their last valid version because they are invalid, by kind.',
    labelNames: ['kind'],
    registers,
    aggregator: 'max',
    collect() {
      this.reset();
      for (const kind of MESH_KINDS) this.set({ kind }, 0);
      for (const [kind, n] of invalidObjectsByKind(sources.problems())) this.set({ kind }, n);
    },
  });
  const messages = new Counter({
    name: 'mooring_mesh_messages_total',
    help: 'Messages written to proxies, by type (snapshot, delta, heartbeat).',
    labelNames: ['type'],
    registers,
  });
  const bytes = new Counter({
    name: 'mooring_mesh_message_bytes_total',
    help: 'Bytes written to proxies, by message type.',
    labelNames: ['type'],
    registers,
  });
  const latency = new Histogram({
    name: 'mooring_mesh_push_latency_seconds',
    help: 'From the first change of a burst to its delta written to a proxy (debounce included).',
    buckets: PUSH_LATENCY_BUCKETS,
    registers,
  });
  const commits = new Counter({
    name: 'mooring_mesh_pushes_total',
    help: 'Pushes: model commits that changed something, each followed by deltas to the proxies it concerns.',
    registers,
  });
  const rebuilt = new Counter({
    name: 'mooring_mesh_services_rebuilt_total',
    help: 'Services rebuilt by the pushes (only those a change touched).',
    registers,
  });
  const stalled = new Counter({
    name: 'mooring_mesh_stalled_streams_total',
    help: 'Streams closed because the proxy read nothing for too long.',
    registers,
  });
  return {
    message(type, n) {
      messages.inc({ type });
      bytes.inc({ type }, n);
    },
    latency: (seconds) => latency.observe(seconds),
    commit(commit) {
      commits.inc();
      rebuilt.inc(commit.rebuilt);
    },
    stalled: () => stalled.inc(),
  };
}
