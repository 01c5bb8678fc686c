// POST /inject with real AdmissionReview fixtures (test/fixtures/admission/*.json) and the real
// injector. For each injected fixture, the returned patch applied to request.object must give
// the golden injected Pod (test/golden/admission/<fixture>.injected.json; REFRESH_GOLDEN=1
// rewrites them), the same Pod
// that inject() returns directly, and reviewing that Pod again must change nothing.

import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { applyPatch, type Operation } from 'fast-json-patch';
import type { FastifyInstance } from 'fastify';
import { validateConfig } from '../../src/config/validate';
import { inject, type Pod } from '../../src/injector';
import { buildTestWebhookApp, JSON_HEADERS, type LogSink } from './helpers';
import { injectorUnderTest, TEST_VERSION } from './injector-under-test';

const DIR = join(__dirname, '..', 'fixtures', 'admission');
const GOLDEN = join(__dirname, '..', 'golden', 'admission');
const REFRESH = process.env.REFRESH_GOLDEN === '1';

type Review = {
  request: { uid: string; namespace: string; object: Record<string, unknown> };
} & Record<string, unknown>;
interface Answer {
  response: {
    uid: string;
    allowed: boolean;
    patchType?: string;
    patch?: string;
    status?: { code: number; message: string; reason: string };
    warnings?: string[];
  };
}

const load = (name: string): Review => JSON.parse(readFileSync(join(DIR, name), 'utf8')) as Review;
const decode = (patch: string): Operation[] =>
  JSON.parse(Buffer.from(patch, 'base64').toString('utf8')) as Operation[];

let app: FastifyInstance;
let sink: LogSink;
beforeAll(() => {
  ({ app, sink } = buildTestWebhookApp({ injectPod: injectorUnderTest() }));
});
afterAll(() => app.close());

async function review(body: unknown): Promise<Answer> {
  const res = await app.inject({
    method: 'POST',
    url: '/inject',
    headers: JSON_HEADERS,
    payload: JSON.stringify(body),
  });
  expect(res.statusCode).toBe(200);
  return res.json<Answer>();
}

const INJECTED = [
  'pod-create-deployment.json',
  'pod-create-named.json',
  'pod-create-8k.json',
  'pod-create-ignored-annotation.json',
];

describe('POST /inject with real AdmissionReview fixtures', () => {
  describe.each(INJECTED)('%s', (name) => {
    const body = load(name);
    const golden = join(GOLDEN, name.replace(/\.json$/, '.injected.json'));

    it('echoes the uid and returns a JSONPatch that, applied to request.object, gives the golden Pod', async () => {
      const { response } = await review(body);
      expect(response.uid).toBe(body.request.uid);
      expect(response.allowed).toBe(true);
      expect(response.patchType).toBe('JSONPatch');
      const patched = applyPatch(
        structuredClone(body.request.object),
        decode(response.patch ?? ''),
        true,
        false,
      ).newDocument;
      if (REFRESH) writeFileSync(golden, `${JSON.stringify(patched, null, 2)}\n`);
      expect(existsSync(golden)).toBe(true);
      expect(patched).toEqual(JSON.parse(readFileSync(golden, 'utf8')));
    });

    it('gives the same Pod as inject() itself', async () => {
      const { response } = await review(body);
      const patched = applyPatch(
        structuredClone(body.request.object),
        decode(response.patch ?? ''),
        true,
        false,
      ).newDocument;
      const direct = inject(structuredClone(body.request.object) as unknown as Pod, {
        config: validateConfig({}),
        namespace: body.request.namespace,
        version: TEST_VERSION,
      });
      expect(direct.action).toBe('injected');
      expect(patched).toEqual(direct.action === 'injected' ? direct.pod : null);
    });

    it('changes nothing when the injected Pod is reviewed again (idempotent, no patch field)', async () => {
      const injected = JSON.parse(readFileSync(golden, 'utf8')) as Record<string, unknown>;
      const again = {
        ...body,
        request: { ...body.request, uid: `${body.request.uid.slice(0, -4)}ffff`, object: injected },
      };
      const { response } = await review(again);
      expect(response).toEqual({ uid: again.request.uid, allowed: true });
    });
  });

  it.each<[string, string]>([
    ['pod-create-host-network.json', 'host_network'],
    ['pod-create-kube-system.json', 'ignored_namespace'],
    ['pod-update.json', 'not_create'],
    ['deployment-create.json', 'not_pod'],
  ])('allows %s with no patch field (skipped: %s)', async (name, reason) => {
    const body = load(name);
    const { response } = await review(body);
    expect(response).toEqual({ uid: body.request.uid, allowed: true });
    const line = sink.withMessage('admission review').find((l) => l.uid === body.request.uid);
    expect(line).toMatchObject({ decision: 'skipped', reason });
  });

  it('denies the invalid annotation with allowed false and a message naming key and value', async () => {
    const body = load('pod-create-invalid-annotation.json');
    const { response } = await review(body);
    expect(response.uid).toBe(body.request.uid);
    expect(response.allowed).toBe(false);
    expect(response.patch).toBeUndefined();
    expect(response.status?.code).toBe(400);
    expect(response.status?.message).toMatch(/^INJ_ERR_ANNOTATION: /);
    expect(response.status?.message).toContain('traffic.mooring.dev/include-inbound-ports');
    expect(response.status?.message).toContain('80,abc');
  });

  it('answers the dry-run review exactly like the same review without dryRun', async () => {
    const dry = load('pod-create-dry-run.json');
    const real = { ...dry, request: { ...dry.request, dryRun: false } };
    expect(await review(dry)).toEqual(await review(real));
  });

  it('tells about ignored annotations in the warnings field', async () => {
    const { response } = await review(load('pod-create-ignored-annotation.json'));
    expect(response.warnings).toEqual(
      expect.arrayContaining([
        expect.stringMatching(
          /unknown annotation proxy\.mooring\.dev\/cpu-requests is ignored \(did you mean proxy\.mooring\.dev\/cpu-request\?\)/,
        ),
        expect.stringMatching(/annotation mooring\.dev\/inject has no effect/),
      ]),
    );
  });

  it('has a golden for every injected fixture and no stale golden', () => {
    const goldens = readdirSync(GOLDEN).filter((f) => f.endsWith('.injected.json'));
    expect(goldens.sort()).toEqual(
      INJECTED.map((f) => f.replace(/\.json$/, '.injected.json')).sort(),
    );
  });
});
