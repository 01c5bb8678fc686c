// Property-based fuzzing of the DER reader and of the CSR path, which parse bytes from the
// network (seeded, a fixed number of runs, each property bounded in time):
// - the reader reads every valid DER tree exactly as written, and whatever it accepts (random
//   bytes, mangled CSRs), node-forge's independent ASN.1 parser reads as the same tree;
// - a mutated, truncated or random CSR given to the CA (Authority.issueWorkload, both crypto
//   modes) is issued or refused with a coded 4xx, never anything else. This is the fuzzer that
//   found the empty and truncated curve identifiers that answered 500 (csr.test.ts keeps them).

import fc from 'fast-check';
import forge from 'node-forge';
import type { Authority } from '../../../src/ca/authority';
import type { CryptoMode } from '../../../src/ca/csr';
import { toPem } from '../../../src/ca/der';
import {
  applyCsrMutation,
  byteMutation,
  CORPUS_STATUSES,
  csrCorpus,
  csrMutation,
  FUZZ_ID,
  fuzzAuthority,
  randomTree,
  readTree,
  SEED,
  statusOf,
  writeTree,
  type CorpusEntry,
  type Tree,
} from './der-fuzz';
import { testKey } from './fixtures';

const RUNS = Number(process.env.FC_RUNS ?? 1500);
/** The mutated-CSR property found the curve identifiers after 115 to 2,802 runs (6 seeds). */
const CSR_RUNS = Number(process.env.FC_RUNS ?? 4000);
/** Each property stops after this long on a slow machine (the runs done so far still count). */
const BUDGET_MS = 40_000;
const settings = (numRuns = RUNS) => ({ seed: SEED, numRuns, interruptAfterTimeLimit: BUDGET_MS });

// --- node-forge as the reference parser ----------------------------------------------------

const asn1FromDer = forge.asn1.fromDer as unknown as (
  bytes: forge.util.ByteStringBuffer,
  options: { decodeBitStrings: boolean; strict: boolean },
) => forge.asn1.Asn1;

function forgeTree(node: forge.asn1.Asn1): Tree {
  const tag = node.tagClass | (node.constructed ? 0x20 : 0) | node.type;
  return Array.isArray(node.value)
    ? { tag, items: node.value.map(forgeTree) }
    : { tag, content: Buffer.from(node.value, 'binary') };
}

/** node-forge's reading of `der` (strict: every byte used, bit strings left as they are). */
function forgeRead(der: Buffer): Tree {
  const bytes = forge.util.createBuffer(der.toString('binary'));
  return forgeTree(asn1FromDer(bytes, { decodeBitStrings: false, strict: true }));
}

/** node-forge decodes a BMPString (type 30, of any class) into characters: not comparable. */
const hasBmpString = (tree: Tree): boolean =>
  'items' in tree ? tree.items.some(hasBmpString) : (tree.tag & 0x1f) === 0x1e;

/** Whatever our reader accepts, node-forge reads as the same tree. */
function expectForgeAgrees(der: Buffer): void {
  const ours = ourRead(der);
  if (ours !== null && !hasBmpString(ours)) expect(forgeRead(der)).toEqual(ours);
}

/** Our reading, or null when the reader refuses the bytes (it must throw, not crash). */
function ourRead(der: Buffer): Tree | null {
  try {
    return readTree(der);
  } catch (err) {
    if ((err as Error).name !== 'DerError') throw err;
    return null;
  }
}

// --- the corpus: valid CSRs of every accepted key type, ours and openssl's -----------------

let corpus: CorpusEntry[];
let authorities: Record<CryptoMode, Authority>;

beforeAll(async () => {
  corpus = csrCorpus();
  authorities = {
    sync: await fuzzAuthority('sync'),
    threadpool: await fuzzAuthority('threadpool'),
    batched: await fuzzAuthority('batched'),
  };
});

describe('the DER reader', () => {
  it('reads every valid DER tree exactly as it was written, as node-forge does', () => {
    fc.assert(
      fc.property(randomTree, (tree) => {
        const der = writeTree(tree);
        expect(readTree(der)).toEqual(tree);
        if (!hasBmpString(tree)) expect(forgeRead(der)).toEqual(tree);
      }),
      settings(),
    );
  });

  it('reads random bytes either as node-forge does or not at all', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        expectForgeAgrees(Buffer.from(bytes));
      }),
      settings(),
    );
  });

  it('reads mangled CSRs either as node-forge does or not at all', () => {
    fc.assert(
      fc.property(csrMutation, (m) => {
        expectForgeAgrees(applyCsrMutation(corpus, m));
      }),
      settings(),
    );
  });
});

describe('the CA given bytes from the network', () => {
  const issue = (der: Buffer, mode: CryptoMode) => () =>
    authorities[mode].issueWorkload({
      csrPem: toPem('CERTIFICATE REQUEST', der),
      spiffeId: FUZZ_ID,
    });
  const mode = fc.constantFrom<CryptoMode>('sync', 'threadpool', 'batched');
  const issuedOr4xx = (status: number): boolean => status === 0 || (status >= 400 && status < 500);

  it('issues the CSRs of the corpus, and refuses the two with foreign names (the mutations start from valid requests)', async () => {
    const statuses = [];
    for (const entry of corpus) statuses.push(await statusOf(issue(entry.der, 'sync')));
    expect(statuses).toEqual(CORPUS_STATUSES);
  });

  it('answers mutated, truncated and re-signed CSRs with a certificate or a coded 4xx', async () => {
    await fc.assert(
      fc.asyncProperty(csrMutation, mode, async (m, cryptoMode) => {
        const status = await statusOf(issue(applyCsrMutation(corpus, m), cryptoMode));
        expect(issuedOr4xx(status)).toBe(true);
      }),
      settings(CSR_RUNS),
    );
  });

  it('answers random DER and random bytes in a CSR PEM with a coded 4xx', async () => {
    const garbage = fc.oneof(
      randomTree.map(writeTree),
      fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b)),
      fc
        .tuple(randomTree, fc.array(byteMutation, { maxLength: 2 }))
        .map(([t, edits]) =>
          applyCsrMutation(
            [{ der: writeTree(t), key: testKey('ecdsa-p256').privateKey, hash: 'sha256' }],
            { corpus: 0, tree: [], resign: false, bytes: edits, cutAt: undefined },
          ),
        ),
    );
    await fc.assert(
      fc.asyncProperty(garbage, mode, async (der, cryptoMode) => {
        const status = await statusOf(issue(der, cryptoMode));
        expect(status >= 400 && status < 500).toBe(true);
      }),
      settings(),
    );
  });
});
