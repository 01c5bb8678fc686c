// The stress run's CSR fuzzer, kept (seeded, bounded): mutated, truncated and re-signed CSRs
// through both CA routes of the real CA answer a certificate or a coded 4xx, never a 5xx, and
// nothing is logged at error level (a 500 logged a stack trace for any token holder to cause).

import fc from 'fast-check';
import type { FastifyInstance } from 'fastify';
import { toPem } from '../../src/ca/der';
import { ERROR_CATALOG, type ErrorCode } from '../../src/errors';
import {
  applyCsrMutation,
  csrCorpus,
  csrMutation,
  FUZZ_ID,
  fuzzAuthority,
  SEED,
  type CorpusEntry,
} from '../unit/ca/der-fuzz';
import type { LogSink } from './helpers';
import { ADMIN_TOKEN, buildTestWebhookApp, JSON_HEADERS, WORKLOAD_TOKEN } from './helpers';

// Without the fix of the curve identifiers, this seed fails at run 1,993.
const RUNS = Number(process.env.FC_RUNS ?? 4000);

let app: FastifyInstance;
let sink: LogSink;
let corpus: CorpusEntry[];

beforeAll(async () => {
  corpus = csrCorpus();
  // As `mooring serve` runs it in one process: checks and signatures in the thread pool.
  const authority = await fuzzAuthority('threadpool');
  // The workload's identity is the one the corpus asks for, so that mutations reach the profile.
  const certificates = new Proxy(authority, {
    get: (target, name) => {
      if (name === 'spiffeIdOf') return () => FUZZ_ID;
      const value: unknown = Reflect.get(target, name);
      return typeof value === 'function' ? (value as () => unknown).bind(target) : value;
    },
  });
  ({ app, sink } = buildTestWebhookApp({ certificates }));
});
afterAll(() => app.close());

const routes = {
  admin: { url: '/v1/admin/certificates', token: ADMIN_TOKEN, spiffeId: FUZZ_ID },
  workload: { url: '/v1/certificates', token: WORKLOAD_TOKEN, spiffeId: undefined },
} as const;

it('answers mangled CSRs on both CA routes with a certificate or a coded 4xx, and logs no error', async () => {
  const seen = new Set<string>();
  await fc.assert(
    fc.asyncProperty(csrMutation, fc.constantFrom('admin', 'workload'), async (m, name) => {
      const route = routes[name];
      const csr = toPem('CERTIFICATE REQUEST', applyCsrMutation(corpus, m));
      const res = await app.inject({
        method: 'POST',
        url: route.url,
        headers: { ...JSON_HEADERS, authorization: `Bearer ${route.token}` },
        payload: JSON.stringify({ csr, spiffeId: route.spiffeId }),
      });
      if (res.statusCode === 200) {
        seen.add('issued');
        return;
      }
      // A code of the catalog, with its status, and that status a 4xx.
      const code = res.json<{ code: ErrorCode }>().code;
      expect(ERROR_CATALOG[code].status).toBe(res.statusCode);
      expect(res.statusCode >= 400 && res.statusCode < 500).toBe(true);
      seen.add(code);
    }),
    { seed: SEED, numRuns: RUNS, interruptAfterTimeLimit: 60_000 },
  );
  // The mutations reach every stage: parsing, the key, the signature, the names, issuance.
  expect([...seen].sort()).toEqual(
    ['CA_ERR_CSR', 'CA_ERR_CSR_SIGNATURE', 'CA_ERR_KEY_TYPE', 'CA_ERR_SAN', 'issued'].sort(),
  );
  expect(sink.lines.filter((l) => (l.level as number) >= 50)).toEqual([]);
}, 90_000);
