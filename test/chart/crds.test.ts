// crds.install: the chart's copies of the CRDs (charts/mooring/charts/crds/crd-files, written by
// hack/chart-crds.sh) are the upstream texts of .cache/crds (`make crds`: istio.io/api and
// sigs.k8s.io/gateway-api through the Go module proxy), and the chart renders exactly them, off by
// default, each annotated helm.sh/resource-policy: keep and otherwise unchanged.
// `helm template` has no cluster for `lookup`, so every CRD renders here; test/e2e/helm.test.ts
// installs with an existing CRD.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { CHART_DIR, REPO_ROOT, render, type KubeObject } from './helm';

const CACHE = join(REPO_ROOT, '.cache', 'crds');
const COPIES = join(CHART_DIR, 'charts', 'crds', 'crd-files');
const STALE = 'the chart copies differ from upstream: run `make chart-crds` and commit the result';
const KEEP = 'helm.sh/resource-policy';

const ISTIO = [
  'authorizationpolicies.security.istio.io',
  'destinationrules.networking.istio.io',
  'peerauthentications.security.istio.io',
  'requestauthentications.security.istio.io',
  'serviceentries.networking.istio.io',
  'sidecars.networking.istio.io',
  'telemetries.telemetry.istio.io',
  'virtualservices.networking.istio.io',
  'workloadentries.networking.istio.io',
];
/** The Gateway API's standard channel (config/crd/standard of v1.6.3, the CRDs only). */
const GATEWAY_API = [
  'backendtlspolicies',
  'gatewayclasses',
  'gateways',
  'grpcroutes',
  'httproutes',
  'listenersets',
  'referencegrants',
  'tcproutes',
  'tlsroutes',
  'udproutes',
].map((r) => `${r}.gateway.networking.k8s.io`);

function requireCache(): void {
  if (!existsSync(join(CACHE, 'istio.yaml'))) {
    throw new Error(`${CACHE}/istio.yaml is missing: fetch the upstream CRDs first (make crds)`);
  }
}

/** The documents of a multi-document file as hack/chart-crds.sh cuts them (at lines `---`). */
function documents(text: string): string[] {
  return text
    .split(/^---\n/m)
    .filter((d) => d.trim() !== '')
    .map((d) => (d.endsWith('\n') ? d : `${d}\n`));
}

const nameOf = (doc: string): string =>
  (parse(doc) as { metadata: { name: string } }).metadata.name;

const yamlFiles = (dir: string): string[] =>
  readdirSync(dir)
    .filter((f) => f.endsWith('.yaml'))
    .sort();

describe('the CRDs the chart installs (crds.install)', () => {
  describe('the committed copies', () => {
    beforeAll(requireCache);

    it('name the upstream versions of .cache/crds', () => {
      expect({ versions: readFileSync(join(COPIES, 'VERSIONS'), 'utf8'), note: STALE }).toEqual({
        versions: readFileSync(join(CACHE, 'stamp'), 'utf8'),
        note: STALE,
      });
      expect(readFileSync(join(COPIES, 'VERSIONS'), 'utf8')).toBe(
        'istio.io/api=v1.32.0 sigs.k8s.io/gateway-api=v1.6.3\n',
      );
    });

    it("are Istio's VirtualService, DestinationRule, ServiceEntry, Sidecar, WorkloadEntry, PeerAuthentication, AuthorizationPolicy, RequestAuthentication and Telemetry documents, text for text", () => {
      const upstream = new Map(
        documents(readFileSync(join(CACHE, 'istio.yaml'), 'utf8')).map((d) => [nameOf(d), d]),
      );
      expect(yamlFiles(join(COPIES, 'istio'))).toEqual(ISTIO.map((n) => `${n}.yaml`));
      for (const name of ISTIO) {
        const copy = readFileSync(join(COPIES, 'istio', `${name}.yaml`), 'utf8');
        expect({ name, equal: copy === upstream.get(name), note: STALE }).toEqual({
          name,
          equal: true,
          note: STALE,
        });
      }
    });

    it("are every CRD of the Gateway API's standard channel, text for text", () => {
      const dir = join(CACHE, 'gateway-api-standard');
      expect(yamlFiles(join(COPIES, 'gateway-api'))).toEqual(yamlFiles(dir));
      expect(yamlFiles(dir).map((f) => nameOf(readFileSync(join(dir, f), 'utf8')))).toEqual(
        GATEWAY_API,
      );
      for (const file of yamlFiles(dir)) {
        const copy = readFileSync(join(COPIES, 'gateway-api', file), 'utf8');
        const equal = copy === readFileSync(join(dir, file), 'utf8');
        expect({ file, equal, note: STALE }).toEqual({ file, equal: true, note: STALE });
      }
    });
  });

  describe('rendered', () => {
    const crds = (objects: readonly KubeObject[]): KubeObject[] =>
      objects.filter((o) => o.kind === 'CustomResourceDefinition');
    // 1.7 MB of YAML to parse: once, with time to spare on a busy machine.
    let installed: KubeObject[];
    let byDefault: KubeObject[];
    beforeAll(async () => {
      installed = await render({ crds: { install: true } });
      byDefault = await render();
    }, 120_000);

    it('are off by default', () => {
      expect(byDefault.length).toBeGreaterThan(0);
      expect(crds(byDefault)).toEqual([]);
    });

    it('are exactly those CRDs with crds.install, each kept on uninstall, the rest of upstream unchanged', () => {
      const rendered = crds(installed);
      expect(rendered.map((c) => c.metadata.name).sort()).toEqual(
        [...GATEWAY_API, ...ISTIO].sort(),
      );
      const copies = new Map<string, KubeObject>();
      for (const dir of ['istio', 'gateway-api']) {
        for (const file of yamlFiles(join(COPIES, dir))) {
          const doc = parse(readFileSync(join(COPIES, dir, file), 'utf8')) as KubeObject;
          copies.set(doc.metadata.name, doc);
        }
      }
      for (const crd of rendered) {
        expect([crd.metadata.name, crd.metadata.annotations?.[KEEP]]).toEqual([
          crd.metadata.name,
          'keep',
        ]);
        const copy = copies.get(crd.metadata.name);
        expect(copy).toBeDefined();
        if (copy === undefined) continue;
        expect(crd).toEqual({
          ...copy,
          metadata: {
            ...copy.metadata,
            annotations: { ...copy.metadata.annotations, [KEEP]: 'keep' },
          },
        });
      }
    });

    it('leave the rest of the release as it is', () => {
      expect(installed.filter((o) => o.kind !== 'CustomResourceDefinition')).toEqual(byDefault);
    });
  });
});
