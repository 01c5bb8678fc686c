// The system's sources of time and randomness, behind the CA's Clock and RandomSource ports.

import { randomBytes } from 'node:crypto';
import type { Schedule } from '../ca/crypto-queue';
import type { Clock, RandomSource } from '../ca/ports';

export const systemClock: Clock = { now: () => new Date() };

/** The CA's batched crypto runs its queue after the I/O already waiting (AuthorityOptions.schedule). */
export const nextTurn: Schedule = (flush) => {
  setImmediate(flush);
};

const POOL_SIZE = 4096;

/**
 * Cryptographically secure random bytes from the kernel's CSPRNG (crypto.randomBytes), drawn
 * 4 KiB at a time: one call per 256 serial numbers instead of one each (each call costs a few
 * microseconds). Every byte is handed out once.
 */
export function pooledRandom(poolSize = POOL_SIZE): RandomSource {
  let pool = Buffer.alloc(0);
  let offset = 0;
  return {
    bytes(size: number): Buffer {
      if (size > poolSize) return randomBytes(size);
      if (offset + size > pool.length) {
        pool = randomBytes(poolSize);
        offset = 0;
      }
      const out = Buffer.from(pool.subarray(offset, offset + size));
      pool.fill(0, offset, offset + size);
      offset += size;
      return out;
    },
  };
}

export const systemRandom: RandomSource = pooledRandom();
