// How many CPUs this process may use: the CPUs it can run on, bounded by its cgroup's CPU quota.
// os.availableParallelism() counts the node's CPUs even in a container limited to one, so
// `--workers auto` in a Pod with `limits.cpu: 1` on a 16-core node would start 16 workers.

import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';

/** CPUs allowed by a cgroup v2 `cpu.max` ("QUOTA PERIOD" or "max PERIOD"), rounded up; null: no limit. */
export function cpusFromCpuMax(text: string): number | null {
  const [quota, period] = text.trim().split(/\s+/);
  if (quota === undefined || quota === 'max') return null;
  return cpusFromQuota(Number(quota), Number(period ?? 100000));
}

/** CPUs allowed by a cgroup v1 quota and period (microseconds), rounded up; null: no limit. */
export function cpusFromQuota(quota: number, period: number): number | null {
  if (!Number.isFinite(quota) || !Number.isFinite(period) || quota <= 0 || period <= 0) return null;
  return Math.max(1, Math.ceil(quota / period));
}

function readText(path: string): string | null {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return null;
  }
}

/** The CPU limit of this process's cgroup (v2, then v1), or null when there is none or no cgroup. */
export function cgroupCpuLimit(read: (path: string) => string | null = readText): number | null {
  // cgroup v2: this process's own group ("0::/PATH" in /proc/self/cgroup), which is the root
  // of the hierarchy inside a container with its own cgroup namespace.
  const own = /^0::(\/.*)$/m.exec(read('/proc/self/cgroup') ?? '')?.[1];
  for (const dir of [own === undefined || own === '/' ? null : own, ''].filter((d) => d !== null)) {
    const v2 = read(`/sys/fs/cgroup${dir}/cpu.max`);
    if (v2 !== null) return cpusFromCpuMax(v2);
  }
  const quota = read('/sys/fs/cgroup/cpu/cpu.cfs_quota_us');
  const period = read('/sys/fs/cgroup/cpu/cpu.cfs_period_us');
  if (quota === null || period === null) return null;
  return cpusFromQuota(Number(quota.trim()), Number(period.trim()));
}

/** The CPUs this process can use: available parallelism, at most the cgroup's CPU limit. */
export function usableCpus(
  parallelism: () => number = availableParallelism,
  limit: () => number | null = cgroupCpuLimit,
): number {
  const cpus = parallelism();
  const quota = limit();
  return quota === null ? cpus : Math.max(1, Math.min(cpus, quota));
}
