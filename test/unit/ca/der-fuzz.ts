// Fuzzing helpers for the DER reader and the CSR path: DER as a tree (read with our reader,
// written back with correct lengths), structure-aware mutations of that tree (a node emptied,
// cut, replaced, re-tagged, a child dropped or repeated), byte-level mutations that break the
// lengths, and random DER trees. All of it is fast-check arbitraries, so that runs are seeded
// and shrink to a small failing input.

import { execFileSync } from 'node:child_process';
import { sign, type KeyObject } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { Authority } from '../../../src/ca/authority';
import { csrDerFromPem, type CryptoMode } from '../../../src/ca/csr';
import { children, contentOf, readRoot, tlv, type Node } from '../../../src/ca/der';
import type { KeyAlgorithm } from '../../../src/ca/ports';
import { ERROR_CATALOG, isMooringError } from '../../../src/errors';
import {
  cachedKeyGenerator,
  caConfig,
  countingRandom,
  csrDer,
  fixedClock,
  MemoryStore,
  testKey,
  withDns,
  withEmail,
  withIp,
  withKeyType,
  withSubject,
  withUri,
} from './fixtures';

/** A DER element: primitive (its content bytes) or constructed (its children). */
export type Tree =
  | { readonly tag: number; readonly content: Buffer }
  | { readonly tag: number; readonly items: readonly Tree[] };

export const isConstructed = (tag: number): boolean => (tag & 0x20) !== 0;

function treeOf(buf: Buffer, node: Node): Tree {
  return isConstructed(node.tag)
    ? { tag: node.tag, items: children(buf, node).map((c) => treeOf(buf, c)) }
    : { tag: node.tag, content: Buffer.from(contentOf(buf, node)) };
}

/** Reads the whole of `der` with our reader, every constructed element down to its leaves. */
export function readTree(der: Buffer): Tree {
  return treeOf(der, readRoot(der));
}

export function writeTree(tree: Tree): Buffer {
  return 'content' in tree
    ? tlv(tree.tag, tree.content)
    : tlv(tree.tag, ...tree.items.map(writeTree));
}

/** The nodes of a tree in pre-order, with their paths (child indexes from the root). */
function paths(tree: Tree, at: number[] = []): number[][] {
  const out = [at];
  if ('items' in tree) tree.items.forEach((c, i) => out.push(...paths(c, [...at, i])));
  return out;
}

function replaceAt(tree: Tree, path: readonly number[], f: (t: Tree) => Tree): Tree {
  if (path.length === 0) return f(tree);
  if (!('items' in tree)) return tree;
  const [i, ...rest] = path as [number, ...number[]];
  return {
    tag: tree.tag,
    items: tree.items.map((c, j) => (j === i ? replaceAt(c, rest, f) : c)),
  };
}

const OPS = ['empty', 'cut', 'random', 'retag', 'drop', 'repeat', 'append'] as const;

export interface TreeMutation {
  readonly node: number;
  readonly op: (typeof OPS)[number];
  readonly n: number;
  readonly bytes: Uint8Array;
}

export const treeMutation: fc.Arbitrary<TreeMutation> = fc.record({
  node: fc.nat(),
  op: fc.constantFrom(...OPS),
  n: fc.nat(),
  bytes: fc.uint8Array({ maxLength: 12 }),
});

/** Applies one mutation to one node (chosen by pre-order index, modulo the node count). */
export function mutateTree(tree: Tree, m: TreeMutation): Tree {
  const all = paths(tree);
  const path = all[m.node % all.length] as number[];
  return replaceAt(tree, path, (t): Tree => {
    const size = 'content' in t ? t.content.length : t.items.length;
    switch (m.op) {
      case 'empty':
        return 'content' in t
          ? { tag: t.tag, content: Buffer.alloc(0) }
          : { tag: t.tag, items: [] };
      case 'cut': {
        const keep = size === 0 ? 0 : m.n % size;
        return 'content' in t
          ? { tag: t.tag, content: t.content.subarray(0, keep) }
          : { tag: t.tag, items: t.items.slice(0, keep) };
      }
      case 'random':
        return { tag: t.tag & ~0x20, content: Buffer.from(m.bytes) };
      case 'retag': {
        const tag = (m.bytes[0] ?? m.n) & 0xff;
        // Keep the shape the new tag announces; a multi-byte tag form (0x1f) is left to the reader.
        if (isConstructed(tag)) return 'items' in t ? { tag, items: t.items } : { tag, items: [] };
        return 'content' in t ? { tag, content: t.content } : { tag, content: writeTree(t) };
      }
      case 'drop':
        return 'items' in t && size > 0
          ? { tag: t.tag, items: t.items.filter((_, i) => i !== m.n % size) }
          : t;
      case 'repeat':
        return 'items' in t && size > 0
          ? { tag: t.tag, items: [...t.items, t.items[m.n % size] as Tree] }
          : {
              tag: t.tag,
              content: Buffer.concat([
                'content' in t ? t.content : Buffer.alloc(0),
                Buffer.from(m.bytes),
              ]),
            };
      case 'append':
        return 'items' in t
          ? {
              tag: t.tag,
              items: [
                ...t.items,
                { tag: (m.bytes[0] ?? 5) & ~0x20, content: Buffer.from(m.bytes.subarray(1)) },
              ],
            }
          : { tag: t.tag, content: Buffer.concat([t.content, Buffer.from(m.bytes)]) };
    }
  });
}

export interface ByteMutation {
  readonly at: number;
  readonly op: 'flip' | 'set' | 'insert' | 'delete';
  readonly value: number;
}

export const byteMutation: fc.Arbitrary<ByteMutation> = fc.record({
  at: fc.nat(),
  op: fc.constantFrom('flip', 'set', 'insert', 'delete'),
  value: fc.integer({ min: 0, max: 255 }),
});

/** Byte-level edits (which break lengths and tags), then an optional cut. */
export function mutateBytes(der: Buffer, edits: readonly ByteMutation[], cutAt?: number): Buffer {
  let out = Buffer.from(der);
  for (const e of edits) {
    if (out.length === 0) break;
    const i = e.at % out.length;
    if (e.op === 'flip') out[i] = (out[i] as number) ^ (1 << (e.value % 8));
    else if (e.op === 'set') out[i] = e.value;
    else if (e.op === 'insert')
      out = Buffer.concat([out.subarray(0, i), Buffer.from([e.value]), out.subarray(i)]);
    else out = Buffer.concat([out.subarray(0, i), out.subarray(i + 1)]);
  }
  return cutAt === undefined || out.length === 0 ? out : out.subarray(0, cutAt % out.length);
}

/** The CertificationRequestInfo of a CSR tree re-signed by `key`, as the CSR's owner would. */
export function resign(csr: Tree, key: KeyObject, hash: string | null): Tree {
  if (!('items' in csr) || csr.items.length !== 3) return csr;
  const [info, algId] = csr.items as [Tree, Tree, Tree];
  const signature = sign(hash, writeTree(info), key);
  return {
    tag: csr.tag,
    items: [info, algId, { tag: 0x03, content: Buffer.concat([Buffer.from([0]), signature]) }],
  };
}

/** How a CSR is mangled: structure edits (optionally re-signed), byte edits, a cut. */
export interface CsrMutation {
  readonly corpus: number;
  readonly tree: readonly TreeMutation[];
  readonly resign: boolean;
  readonly bytes: readonly ByteMutation[];
  readonly cutAt: number | undefined;
}

export const csrMutation: fc.Arbitrary<CsrMutation> = fc.record({
  corpus: fc.nat(),
  tree: fc.array(treeMutation, { minLength: 0, maxLength: 3 }),
  resign: fc.boolean(),
  bytes: fc.array(byteMutation, { maxLength: 3 }),
  cutAt: fc.option(fc.nat(), { nil: undefined }),
});

export interface CorpusEntry {
  readonly der: Buffer;
  readonly key: KeyObject;
  readonly hash: string | null;
}

export function applyCsrMutation(corpus: readonly CorpusEntry[], m: CsrMutation): Buffer {
  const entry = corpus[m.corpus % corpus.length] as CorpusEntry;
  let tree = readTree(entry.der);
  for (const t of m.tree) tree = mutateTree(tree, t);
  if (m.resign) tree = resign(tree, entry.key, entry.hash);
  return mutateBytes(writeTree(tree), m.bytes, m.cutAt);
}

const HASH: Readonly<Record<KeyAlgorithm, string | null>> = {
  'ecdsa-p256': 'sha256',
  'ecdsa-p384': 'sha384',
  'rsa-2048': 'sha256',
  'rsa-3072': 'sha256',
  'rsa-4096': 'sha256',
  ed25519: null,
};

/** The SPIFFE ID the corpus's first CSRs ask for (and the fuzz tests issue to). */
export const FUZZ_ID = 'spiffe://cluster.local/ns/shop/sa/cart';

/**
 * Valid CSRs of every accepted key type, ours and one of openssl's. The CA issues the first
 * five as they are and refuses the last two for their names other than the caller's
 * (CA_ERR_SAN): those keep the names parser within the mutations' reach.
 */
export function csrCorpus(): CorpusEntry[] {
  const ours = (type: KeyAlgorithm, ...more: Parameters<typeof csrDer>): CorpusEntry => ({
    der: csrDer(withKeyType(type), ...more),
    key: testKey(type).privateKey,
    hash: HASH[type],
  });
  const dir = mkdtempSync(join(tmpdir(), 'mooring-der-fuzz-'));
  try {
    const keyFile = join(dir, 'p256.pem');
    const key = testKey('ecdsa-p256').privateKey;
    writeFileSync(keyFile, key.export({ format: 'pem', type: 'pkcs8' }));
    const opensslPem = execFileSync(
      'openssl',
      [
        'req',
        '-new',
        '-key',
        keyFile,
        '-subj',
        '/CN=web/O=shop',
        '-addext',
        `subjectAltName=URI:${FUZZ_ID}`,
      ],
      { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] },
    );
    return [
      ours('ecdsa-p256', withUri(FUZZ_ID)),
      ours('ecdsa-p384', withSubject('db')),
      ours('rsa-2048'),
      ours('ed25519'),
      { der: csrDerFromPem(opensslPem), key, hash: 'sha256' },
      ours('ecdsa-p256', withDns('db.shop.svc'), withIp([10, 0, 0, 1])),
      ours('rsa-2048', withEmail('a@b.c'), withIp([0xfe, 0x80, ...Array<number>(14).fill(1)])),
    ];
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** A CA of the default configuration in memory, checking and signing in `cryptoMode`. */
export function fuzzAuthority(cryptoMode: CryptoMode): Promise<Authority> {
  return Authority.open(
    {
      trustDomain: 'cluster.local',
      ca: caConfig(),
      clock: fixedClock(),
      random: countingRandom(),
      store: new MemoryStore(),
      generateKey: cachedKeyGenerator(),
      cryptoMode,
      schedule: (flush) => setImmediate(flush),
    },
    { create: true },
  );
}

/** What the CA answers each entry of csrCorpus() with: issued (0) or refused (400). */
export const CORPUS_STATUSES = [0, 0, 0, 0, 0, 400, 400];

/** Random DER trees (valid encodings of arbitrary tags and contents), a few levels deep. */
export const randomTree: fc.Arbitrary<Tree> = fc.letrec<{ tree: Tree }>((tie) => ({
  tree: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.record({
      // Primitive, single-byte tags (the reader refuses the multi-byte form 0x1f).
      tag: fc.integer({ min: 0, max: 255 }).map((t) => {
        const primitive = t & ~0x20 & 0xff;
        return (primitive & 0x1f) === 0x1f ? primitive - 1 : primitive;
      }),
      content: fc.uint8Array({ maxLength: 40 }).map((b) => Buffer.from(b)),
    }),
    fc.record({
      tag: fc.constantFrom(0x30, 0x31, 0xa0, 0xa3, 0x24),
      items: fc.array(tie('tree'), { maxLength: 5 }),
    }),
  ),
})).tree;

/** The status of what `fn` threw: 0 when it did not throw, -1 when it threw something uncoded. */
export async function statusOf(fn: () => unknown): Promise<number> {
  try {
    await fn();
    return 0;
  } catch (err) {
    return isMooringError(err) ? ERROR_CATALOG[err.code].status : -1;
  }
}

/** Fixed seeds, so that a failure is found again by the next run; FC_SEED overrides. */
export const SEED = Number(process.env.FC_SEED ?? 20261204);
