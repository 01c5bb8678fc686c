// How many processes `mooring serve` runs (server.workers), how many inject threads each has
// (server.injectThreads), and how fast a dead one is replaced.

import { cgroupCpuLimit, cpusFromCpuMax, usableCpus } from '../../../src/adapters/cpus';
import { restartDelayMs } from '../../../src/backoff';
import { injectThreadCount, resolveConfig, workerCount } from '../../../src/server/config';
import { validateConfig } from '../../../src/config/validate';

const withWorkers = (workers: unknown) => validateConfig({ server: { workers } });

describe('server.workers', () => {
  it('is one process by default', () => {
    expect(workerCount(validateConfig({}))).toBe(1);
  });

  it.each([
    [1, 4, 1],
    [3, 4, 3],
    ['auto', 4, 4],
    ['auto', 1, 1],
    ['auto', 200, 64],
  ])('%s on %i CPUs runs %i processes', (workers, cpus, expected) => {
    expect(workerCount(withWorkers(workers), () => cpus)).toBe(expected);
  });

  it.each([
    [0, '/server/workers: must be >= 1'],
    [65, '/server/workers: must be <= 64'],
    ['two', '/server/workers: must be "auto"'],
    [1.5, '/server/workers: must be integer'],
  ])('refuses %p with a message naming the key', (workers, message) => {
    expect(() => withWorkers(workers)).toThrow(message);
  });

  it('takes --workers over the configuration file', () => {
    expect(resolveConfig({ workers: '3' }).server.workers).toBe(3);
    expect(resolveConfig({ workers: 'auto' }).server.workers).toBe('auto');
  });
});

const withThreads = (injectThreads: unknown, workers: unknown = 1) =>
  validateConfig({ server: { injectThreads, workers } });

describe('server.injectThreads', () => {
  it("is 'auto' by default: one thread beside the event loop when there is a second CPU", () => {
    const config = validateConfig({});
    expect(config.server.injectThreads).toBe('auto');
    expect(injectThreadCount(config, 'single', () => 2)).toBe(1);
    expect(injectThreadCount(config, 'single', () => 8)).toBe(1);
    expect(injectThreadCount(config, 'single', () => 1)).toBe(0);
  });

  it("'auto' gives none to a worker of --workers: the other workers use the other CPUs", () => {
    expect(injectThreadCount(withThreads('auto', 2), 'worker', () => 2)).toBe(0);
  });

  it.each([
    [0, 'single', 0],
    [3, 'single', 3],
    [2, 'worker', 2],
  ] as const)('%i in a %s process runs %i threads, whatever the CPUs', (n, role, expected) => {
    expect(injectThreadCount(withThreads(n), role, () => 1)).toBe(expected);
  });

  it.each([
    [-1, '/server/injectThreads: must be >= 0'],
    [65, '/server/injectThreads: must be <= 64'],
    ['many', '/server/injectThreads: must be "auto"'],
  ])('refuses %p with a message naming the key', (threads, message) => {
    expect(() => withThreads(threads)).toThrow(message);
  });

  it('takes --inject-threads over the configuration file', () => {
    expect(resolveConfig({ injectThreads: '0' }).server.injectThreads).toBe(0);
    expect(resolveConfig({ injectThreads: 'auto' }).server.injectThreads).toBe('auto');
  });
});

describe('replacing a worker that died', () => {
  it.each([
    [1, 1000],
    [2, 2000],
    [3, 4000],
    [5, 16_000],
    [6, 30_000],
    [50, 30_000],
  ])('after %i failures in the last minute waits %i ms', (failures, ms) => {
    expect(restartDelayMs(failures)).toBe(ms);
  });
});

describe('the CPUs `--workers auto` counts', () => {
  it.each([
    ['max 100000', null],
    ['100000 100000', 1],
    ['150000 100000', 2],
    ['50000 100000', 1],
    ['400000 100000', 4],
  ])('cgroup v2 cpu.max %p allows %p', (text, cpus) => {
    expect(cpusFromCpuMax(text)).toBe(cpus);
  });

  const files =
    (map: Record<string, string>) =>
    (path: string): string | null =>
      map[path] ?? null;

  it("reads the process's own cgroup v2 group first", () => {
    const read = files({
      '/proc/self/cgroup': '0::/kubepods/pod1/c1\n',
      '/sys/fs/cgroup/kubepods/pod1/c1/cpu.max': '200000 100000\n',
      '/sys/fs/cgroup/cpu.max': 'max 100000\n',
    });
    expect(cgroupCpuLimit(read)).toBe(2);
  });

  it('reads the root of the hierarchy inside a cgroup namespace', () => {
    const read = files({
      '/proc/self/cgroup': '0::/\n',
      '/sys/fs/cgroup/cpu.max': '100000 100000',
    });
    expect(cgroupCpuLimit(read)).toBe(1);
  });

  it('reads a cgroup v1 quota, where -1 means none', () => {
    const v1 = (quota: string) =>
      files({
        '/sys/fs/cgroup/cpu/cpu.cfs_quota_us': quota,
        '/sys/fs/cgroup/cpu/cpu.cfs_period_us': '100000\n',
      });
    expect(cgroupCpuLimit(v1('300000\n'))).toBe(3);
    expect(cgroupCpuLimit(v1('-1\n'))).toBeNull();
    expect(cgroupCpuLimit(files({}))).toBeNull();
  });

  it.each([
    [16, 1, 1],
    [16, null, 16],
    [2, 4, 2],
  ])('%i CPUs with a limit of %p: %i', (parallelism, limit, expected) => {
    expect(
      usableCpus(
        () => parallelism,
        () => limit,
      ),
    ).toBe(expected);
  });
});
