// How many processes `mooring serve` runs (server.workers) and how fast it replaces one.

import { restartDelayMs } from '../../src/cli/serve-workers';
import { resolveConfig, workerCount } from '../../src/cli/serve';
import { validateConfig } from '../../src/config/validate';

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
