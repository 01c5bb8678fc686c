// What `helm template` renders for the defaults and for several value sets.
import { parse } from 'yaml';
import { validateConfig } from '../../src/config/validate';
import type { Config } from '../../src/config/types';
import { CHART_DIR, kinds, one, render, runHelm, type KubeObject } from './helm';

interface Container {
  name: string;
  image: string;
  args: string[];
  env: { name: string; valueFrom?: { fieldRef?: { fieldPath: string } } }[];
  ports: { name: string; containerPort: number }[];
  securityContext: Record<string, unknown>;
  resources: Record<string, unknown>;
  volumeMounts: { name: string; mountPath: string; readOnly?: boolean }[];
  livenessProbe: { httpGet: { path: string; port: string } };
  readinessProbe: { httpGet: { path: string; port: string } };
  startupProbe: { httpGet: { path: string; port: string } };
}
interface Deployment extends KubeObject {
  spec: {
    replicas: number;
    selector: { matchLabels: Record<string, string> };
    template: {
      metadata: { labels: Record<string, string>; annotations: Record<string, string> };
      spec: {
        serviceAccountName: string;
        securityContext: Record<string, unknown>;
        topologySpreadConstraints?: Record<string, unknown>[];
        containers: Container[];
        volumes: {
          name: string;
          secret?: { secretName: string; defaultMode: number };
          configMap?: { name: string };
          emptyDir?: object;
        }[];
      };
    };
  };
}
interface Service extends KubeObject {
  spec: {
    selector: Record<string, string>;
    ports: { name: string; port: number; targetPort: string }[];
  };
}
interface Pdb extends KubeObject {
  spec: { minAvailable: number; selector: { matchLabels: Record<string, string> } };
}
interface Rule {
  apiGroups: string[];
  resources: string[];
  verbs: string[];
  resourceNames?: string[];
}
interface Role extends KubeObject {
  rules: Rule[];
}
interface Binding extends KubeObject {
  roleRef: { kind: string; name: string };
  subjects: { kind: string; name: string; namespace: string }[];
}
interface Webhook {
  name: string;
  clientConfig: { url?: string; caBundle?: string; service?: Record<string, unknown> };
  failurePolicy: string;
}
interface WebhookConfiguration extends KubeObject {
  webhooks: Webhook[];
}

const PEM = '-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----';

function configOf(objects: readonly KubeObject[]): Config {
  const cm = one<KubeObject & { data: Record<string, string> }>(objects, 'ConfigMap');
  const text = cm.data['config.yaml'];
  if (text === undefined) throw new Error('the ConfigMap has no config.yaml');
  return validateConfig(parse(text), 'the rendered config.yaml');
}

function container(objects: readonly KubeObject[]): Container {
  const [first, ...rest] = one<Deployment>(objects, 'Deployment').spec.template.spec.containers;
  if (first === undefined || rest.length > 0) throw new Error('expected one container');
  return first;
}

/** The rules of every Role and ClusterRole, as `kind/name: group/resource[names]: verbs`. */
function ruleLines(objects: readonly KubeObject[]): string[] {
  return objects
    .filter((o) => o.kind === 'Role' || o.kind === 'ClusterRole')
    .flatMap((role) =>
      (role as Role).rules.flatMap((r) =>
        r.apiGroups.flatMap((g) =>
          r.resources.map(
            (res) =>
              `${role.kind}/${role.metadata.name}: ${g === '' ? 'core' : g}/${res}` +
              `${r.resourceNames ? `[${r.resourceNames.join(',')}]` : ''}: ${r.verbs.join(',')}`,
          ),
        ),
      ),
    );
}

describe('chart rendering', () => {
  describe('with the default values', () => {
    let objects: KubeObject[];
    beforeAll(async () => {
      objects = await render();
    });

    it('renders exactly the objects of a Mooring install', () => {
      expect(kinds(objects)).toEqual([
        'ClusterRole/mooring',
        'ClusterRole/mooring-certificate-issuer',
        'ClusterRoleBinding/mooring',
        'ConfigMap/mooring',
        'Deployment/mooring',
        'MutatingWebhookConfiguration/mooring-sidecar-injector',
        'PodDisruptionBudget/mooring',
        'Role/mooring',
        'RoleBinding/mooring',
        'Service/mooring',
        'ServiceAccount/mooring',
        'ValidatingWebhookConfiguration/mooring-traffic-validator',
      ]);
    });

    it('puts every namespaced object into the release namespace', () => {
      const cluster = [
        'ClusterRole',
        'ClusterRoleBinding',
        'MutatingWebhookConfiguration',
        'ValidatingWebhookConfiguration',
      ];
      for (const o of objects.filter((x) => !cluster.includes(x.kind))) {
        expect([o.kind, o.metadata.namespace]).toEqual([o.kind, 'mooring-system']);
      }
    });

    it('runs two replicas of `mooring serve --config /etc/mooring/config.yaml`', () => {
      const deployment = one<Deployment>(objects, 'Deployment');
      expect(deployment.spec.replicas).toBe(2);
      const c = container(objects);
      expect(c.image).toBe('ghcr.io/mooring-dev/mooring:0.1.0');
      expect(c.args).toEqual(['serve', '--config', '/etc/mooring/config.yaml']);
      expect(c.env).toContainEqual({
        name: 'POD_NAMESPACE',
        valueFrom: { fieldRef: { fieldPath: 'metadata.namespace' } },
      });
      expect(c.ports).toEqual([
        { name: 'https', containerPort: 8443, protocol: 'TCP' },
        { name: 'admin', containerPort: 9090, protocol: 'TCP' },
      ]);
    });

    it('runs non-root with a read-only root filesystem, no capabilities and RuntimeDefault seccomp', () => {
      const pod = one<Deployment>(objects, 'Deployment').spec.template.spec;
      expect(pod.securityContext).toMatchObject({
        runAsNonRoot: true,
        runAsUser: 65532,
        seccompProfile: { type: 'RuntimeDefault' },
      });
      expect(container(objects).securityContext).toEqual({
        runAsNonRoot: true,
        readOnlyRootFilesystem: true,
        allowPrivilegeEscalation: false,
        privileged: false,
        capabilities: { drop: ['ALL'] },
        seccompProfile: { type: 'RuntimeDefault' },
      });
    });

    it('gives every writable path an emptyDir and mounts the configuration read-only', () => {
      const pod = one<Deployment>(objects, 'Deployment').spec.template.spec;
      const volumes = new Map(pod.volumes.map((v) => [v.name, v]));
      for (const mount of container(objects).volumeMounts) {
        const volume = volumes.get(mount.name);
        expect(volume).toBeDefined();
        if (mount.readOnly !== true) expect(volume?.emptyDir).toBeDefined();
      }
      expect(container(objects).volumeMounts).toContainEqual({
        name: 'config',
        mountPath: '/etc/mooring',
        readOnly: true,
      });
      expect(volumes.get('config')?.configMap).toEqual({ name: 'mooring' });
      expect(configOf(objects).server.dataDir).toBe('/var/lib/mooring');
    });

    it('sets resources and probes liveness /healthz and readiness /readyz on the admin port', () => {
      const c = container(objects);
      expect(c.resources).toEqual({
        requests: { cpu: '100m', memory: '128Mi' },
        limits: { memory: '512Mi' },
      });
      expect(c.livenessProbe.httpGet).toEqual({ path: '/healthz', port: 'admin' });
      expect(c.readinessProbe.httpGet).toEqual({ path: '/readyz', port: 'admin' });
      expect(c.startupProbe.httpGet).toEqual({ path: '/healthz', port: 'admin' });
    });

    it('spreads the replicas over nodes without making it a scheduling condition', () => {
      const pod = one<Deployment>(objects, 'Deployment').spec.template.spec;
      expect(pod.topologySpreadConstraints).toEqual([
        {
          maxSkew: 1,
          topologyKey: 'kubernetes.io/hostname',
          whenUnsatisfiable: 'ScheduleAnyway',
          labelSelector: {
            matchLabels: {
              'app.kubernetes.io/name': 'mooring',
              'app.kubernetes.io/instance': 'mooring',
            },
          },
          matchLabelKeys: ['pod-template-hash'],
        },
      ]);
    });

    it('selects the same Pods from the Deployment, the Service and the PodDisruptionBudget', () => {
      const deployment = one<Deployment>(objects, 'Deployment');
      const selector = deployment.spec.selector.matchLabels;
      expect(selector).toEqual({
        'app.kubernetes.io/name': 'mooring',
        'app.kubernetes.io/instance': 'mooring',
      });
      expect(deployment.spec.template.metadata.labels).toMatchObject(selector);
      expect(one<Service>(objects, 'Service').spec.selector).toEqual(selector);
      expect(one<Pdb>(objects, 'PodDisruptionBudget').spec.selector.matchLabels).toEqual(selector);
    });

    it("keeps the server's own Pods out of its webhook", () => {
      const labels = one<Deployment>(objects, 'Deployment').spec.template.metadata.labels;
      expect(labels['mooring.dev/inject']).toBe('false');
    });

    it('keeps one replica through voluntary disruptions', () => {
      expect(one<Pdb>(objects, 'PodDisruptionBudget').spec.minAvailable).toBe(1);
    });

    it('exposes 443 to the https port 8443 and the admin port 9090 on the Service', () => {
      expect(one<Service>(objects, 'Service').spec.ports).toEqual([
        { name: 'https', port: 443, targetPort: 'https', protocol: 'TCP' },
        { name: 'admin', port: 9090, targetPort: 'admin', protocol: 'TCP' },
      ]);
    });

    it('grants exactly the least-privilege rules, each named object by resourceNames', () => {
      expect(ruleLines(objects)).toEqual([
        'ClusterRole/mooring: core/namespaces: get,list,watch',
        'ClusterRole/mooring: core/configmaps[mooring-ca-root-cert]: list,watch,update',
        'ClusterRole/mooring: core/configmaps: create',
        'ClusterRole/mooring: core/services: list,watch',
        'ClusterRole/mooring: core/pods: list,watch',
        'ClusterRole/mooring: core/nodes: list,watch',
        'ClusterRole/mooring: discovery.k8s.io/endpointslices: list,watch',
        'ClusterRole/mooring: security.istio.io/peerauthentications: list,watch',
        'ClusterRole/mooring: security.istio.io/authorizationpolicies: list,watch',
        'ClusterRole/mooring: security.istio.io/requestauthentications: list,watch',
        'ClusterRole/mooring: telemetry.istio.io/telemetries: list,watch',
        'ClusterRole/mooring: networking.istio.io/virtualservices: list,watch',
        'ClusterRole/mooring: networking.istio.io/destinationrules: list,watch',
        'ClusterRole/mooring: networking.istio.io/serviceentries: list,watch',
        'ClusterRole/mooring: networking.istio.io/sidecars: list,watch',
        'ClusterRole/mooring: networking.istio.io/workloadentries: list,watch',
        'ClusterRole/mooring: gateway.networking.k8s.io/httproutes: list,watch',
        'ClusterRole/mooring: gateway.networking.k8s.io/grpcroutes: list,watch',
        'ClusterRole/mooring: gateway.networking.k8s.io/tcproutes: list,watch',
        'ClusterRole/mooring: gateway.networking.k8s.io/tlsroutes: list,watch',
        'ClusterRole/mooring: gateway.networking.k8s.io/httproutes/status: update',
        'ClusterRole/mooring: gateway.networking.k8s.io/grpcroutes/status: update',
        'ClusterRole/mooring: gateway.networking.k8s.io/tcproutes/status: update',
        'ClusterRole/mooring: gateway.networking.k8s.io/tlsroutes/status: update',
        'ClusterRole/mooring: apiextensions.k8s.io/customresourcedefinitions[peerauthentications.security.istio.io,authorizationpolicies.security.istio.io,requestauthentications.security.istio.io,telemetries.telemetry.istio.io,virtualservices.networking.istio.io,destinationrules.networking.istio.io,serviceentries.networking.istio.io,sidecars.networking.istio.io,workloadentries.networking.istio.io,httproutes.gateway.networking.k8s.io,grpcroutes.gateway.networking.k8s.io,tcproutes.gateway.networking.k8s.io,tlsroutes.gateway.networking.k8s.io]: get',
        'ClusterRole/mooring: authentication.k8s.io/tokenreviews: create',
        'ClusterRole/mooring: authorization.k8s.io/subjectaccessreviews: create',
        'ClusterRole/mooring: admissionregistration.k8s.io/mutatingwebhookconfigurations[mooring-sidecar-injector]: list,watch,update',
        'ClusterRole/mooring: admissionregistration.k8s.io/validatingwebhookconfigurations[mooring-traffic-validator]: list,watch,update',
        'ClusterRole/mooring: certificates.k8s.io/certificatesigningrequests: list,watch',
        'ClusterRole/mooring: certificates.k8s.io/certificatesigningrequests/status: update',
        'ClusterRole/mooring: certificates.k8s.io/signers[mooring.dev/workload]: sign',
        'ClusterRole/mooring-certificate-issuer: mooring.dev/certificates: create',
        'Role/mooring: core/secrets[mooring-ca]: get,list,watch,update',
        'Role/mooring: core/secrets: create',
        'Role/mooring: coordination.k8s.io/leases[mooring-ca-rotation]: get,update',
        'Role/mooring: coordination.k8s.io/leases: create',
      ]);
    });

    it('has no wildcard anywhere in a rule', () => {
      const roles = objects.filter((o) => o.kind === 'Role' || o.kind === 'ClusterRole');
      expect(roles.length).toBeGreaterThan(0);
      for (const role of roles) {
        for (const rule of (role as Role).rules) {
          expect(JSON.stringify(rule)).not.toContain('*');
          expect(Object.keys(rule)).not.toContain('nonResourceURLs');
        }
      }
    });

    it('binds the Role and the ClusterRole (not the issuer role) to the ServiceAccount', () => {
      const subject = { kind: 'ServiceAccount', name: 'mooring', namespace: 'mooring-system' };
      const roleBinding = one<Binding>(objects, 'RoleBinding');
      expect(roleBinding.roleRef).toMatchObject({ kind: 'Role', name: 'mooring' });
      expect(roleBinding.subjects).toEqual([subject]);
      const clusterBindings = objects.filter((o) => o.kind === 'ClusterRoleBinding') as Binding[];
      expect(clusterBindings.map((b) => [b.roleRef.name, b.subjects])).toEqual([
        ['mooring', [subject]],
      ]);
      const deployment = one<Deployment>(objects, 'Deployment');
      expect(deployment.spec.template.spec.serviceAccountName).toBe('mooring');
    });

    it("writes a config.yaml that the server's schema accepts, naming the chart's objects", () => {
      const config = configOf(objects);
      expect(config.cluster).toMatchObject({
        namespace: 'mooring-system',
        serviceName: 'mooring',
        webhookConfigName: 'mooring-sidecar-injector',
        validatingWebhookConfigName: 'mooring-traffic-validator',
        patchCABundle: true,
      });
      expect(config.server.listen).toBe('0.0.0.0:8443');
      expect(config.server.adminListen).toBe('0.0.0.0:9090');
      expect(config.injector.caAddress).toBe('https://mooring.mooring-system.svc:443');
      expect(config.injector.initImage).toBe('ghcr.io/mooring-dev/mooring:0.1.0');
      expect(config.injector.proxyImage).toBe('ghcr.io/mooring-dev/mooring:0.1.0');
      expect(config.ca.pluginDir).toBeNull();
    });

    it('points both webhooks at the Service, with no caBundle (the server patches it)', () => {
      const mwc = one<WebhookConfiguration>(objects, 'MutatingWebhookConfiguration');
      for (const w of mwc.webhooks) {
        expect(w.clientConfig).toEqual({
          service: { namespace: 'mooring-system', name: 'mooring', path: '/inject', port: 443 },
        });
        expect(w.failurePolicy).toBe('Fail');
      }
    });
  });

  describe('the ValidatingWebhookConfiguration of the traffic kinds', () => {
    interface Rule {
      operations: string[];
      apiGroups: string[];
      apiVersions: string[];
      resources: string[];
      scope: string;
    }
    interface Vwc extends KubeObject {
      webhooks: (Webhook & {
        admissionReviewVersions: string[];
        rules: Rule[];
        sideEffects: string;
        timeoutSeconds: number;
        matchPolicy: string;
      })[];
    }
    const vwcOf = (objects: readonly KubeObject[]): Vwc =>
      one<Vwc>(objects, 'ValidatingWebhookConfiguration');

    it('sends CREATE and UPDATE of the thirteen traffic kinds, each in its own versions, to /validate on the Service, Ignore by default', async () => {
      const [webhook, ...more] = vwcOf(await render()).webhooks;
      expect(more).toEqual([]);
      expect(webhook).toMatchObject({
        name: 'traffic.validator.mooring.dev',
        admissionReviewVersions: ['v1'],
        clientConfig: {
          service: { namespace: 'mooring-system', name: 'mooring', path: '/validate', port: 443 },
        },
        failurePolicy: 'Ignore',
        sideEffects: 'None',
        matchPolicy: 'Equivalent',
        timeoutSeconds: 5,
      });
      expect(webhook?.clientConfig.caBundle).toBeUndefined();
      const lines = (webhook?.rules ?? []).flatMap((r) =>
        r.resources.map(
          (res) =>
            `${r.apiGroups.join()}/${res} ${r.apiVersions.join()} ${r.operations.join()} ${r.scope}`,
        ),
      );
      expect(lines).toEqual([
        'networking.istio.io/virtualservices v1,v1beta1 CREATE,UPDATE Namespaced',
        'networking.istio.io/destinationrules v1,v1beta1 CREATE,UPDATE Namespaced',
        'networking.istio.io/serviceentries v1,v1beta1 CREATE,UPDATE Namespaced',
        'networking.istio.io/sidecars v1,v1beta1 CREATE,UPDATE Namespaced',
        'networking.istio.io/workloadentries v1,v1beta1 CREATE,UPDATE Namespaced',
        'security.istio.io/peerauthentications v1,v1beta1 CREATE,UPDATE Namespaced',
        'security.istio.io/authorizationpolicies v1,v1beta1 CREATE,UPDATE Namespaced',
        'security.istio.io/requestauthentications v1,v1beta1 CREATE,UPDATE Namespaced',
        'telemetry.istio.io/telemetries v1,v1alpha1 CREATE,UPDATE Namespaced',
        'gateway.networking.k8s.io/httproutes v1,v1beta1 CREATE,UPDATE Namespaced',
        'gateway.networking.k8s.io/grpcroutes v1,v1alpha2 CREATE,UPDATE Namespaced',
        'gateway.networking.k8s.io/tcproutes v1,v1alpha2 CREATE,UPDATE Namespaced',
        'gateway.networking.k8s.io/tlsroutes v1,v1alpha3,v1alpha2 CREATE,UPDATE Namespaced',
      ]);
    });

    it('takes Fail from validatingWebhook.failurePolicy, leaving the injector alone', async () => {
      const objects = await render({ validatingWebhook: { failurePolicy: 'Fail' } });
      expect(vwcOf(objects).webhooks[0]?.failurePolicy).toBe('Fail');
      const mwc = one<WebhookConfiguration>(objects, 'MutatingWebhookConfiguration');
      expect(mwc.webhooks.map((w) => w.failurePolicy)).toEqual(['Fail', 'Fail']);
      const ignore = await render({ webhook: { failurePolicy: 'Ignore' } });
      expect(vwcOf(ignore).webhooks[0]?.failurePolicy).toBe('Ignore');
    });

    it('renames the configuration, its RBAC grant and the config key together', async () => {
      const objects = await render({ validatingWebhook: { name: 'mesh-validator' } });
      expect(vwcOf(objects).metadata.name).toBe('mesh-validator');
      expect(configOf(objects).cluster.validatingWebhookConfigName).toBe('mesh-validator');
      const grants = ruleLines(objects).filter((l) => l.includes('validatingwebhook'));
      expect(grants).toEqual([
        'ClusterRole/mooring: admissionregistration.k8s.io/validatingwebhookconfigurations[mesh-validator]: list,watch,update',
      ]);
    });

    it('is gone with validatingWebhook.enabled false, with its grant, and the server patches nothing', async () => {
      const objects = await render({ validatingWebhook: { enabled: false } });
      expect(objects.some((o) => o.kind === 'ValidatingWebhookConfiguration')).toBe(false);
      expect(ruleLines(objects).filter((l) => l.includes('validatingwebhook'))).toEqual([]);
      expect(configOf(objects).cluster.validatingWebhookConfigName).toBeNull();
    });

    it('follows webhook.url (path /validate) and webhook.caBundle, like the injector', async () => {
      const objects = await render({
        webhook: { url: 'https://10.0.0.5:8443/hooks/inject', caBundle: PEM },
      });
      expect(vwcOf(objects).webhooks[0]?.clientConfig).toEqual({
        url: 'https://10.0.0.5:8443/validate',
        caBundle: Buffer.from(`${PEM}\n`).toString('base64'),
      });
      expect(configOf(objects).cluster.patchCABundle).toBe(false);
    });

    it('points at the release Service in another namespace', async () => {
      const objects = await render({}, { release: 'mesh', namespace: 'infra' });
      expect(vwcOf(objects).webhooks[0]?.clientConfig.service).toEqual({
        namespace: 'infra',
        name: 'mesh-mooring',
        path: '/validate',
        port: 443,
      });
    });
  });

  describe('NOTES.txt', () => {
    const notes = async (args: readonly string[]): Promise<string> => {
      const result = await runHelm([
        ...['install', 'mooring', CHART_DIR, '--namespace', 'mooring-system'],
        ...['--dry-run=client', ...args],
      ]);
      if (result.code !== 0) throw new Error(result.stderr);
      return result.stdout.slice(result.stdout.indexOf('NOTES:'));
    };

    it('tells how to label a namespace and how to check a Pod', async () => {
      const text = await notes([]);
      expect(text).toContain('kubectl label namespace my-app mooring.dev/inject=enabled');
      expect(text).toContain('mooring.dev/inject: "true"');
      expect(text).toContain('rollout status deployment/mooring');
      expect(text).toContain('Secret mooring-ca');
    });

    it('says where the webhook goes when it is a URL', async () => {
      const text = await notes([
        ...['--set', 'webhook.url=https://10.0.0.5:8443'],
        ...['--set-string', `webhook.caBundle=${PEM}`],
      ]);
      expect(text).toContain('https://10.0.0.5:8443/inject');
      expect(text).not.toContain('rollout status');
    });

    it('warns that nothing sets the caBundle when patching is off and none is given', async () => {
      const text = await notes(['--set', 'config.cluster.patchCABundle=false']);
      expect(text).toContain('WARNING: config.cluster.patchCABundle is false');
      expect(text).toContain('refuses every Pod of an injected namespace');
      expect(text).not.toContain('The server patches the caBundle');
      const given = await notes([
        ...['--set', 'config.cluster.patchCABundle=false'],
        ...['--set-string', `webhook.caBundle=${PEM}`],
      ]);
      expect(given).not.toContain('WARNING');
      expect(given).toContain('is set by this release');
    });
  });

  describe('with other values', () => {
    it.each<[string, Record<string, unknown>, number, boolean]>([
      [
        'one replica has no PodDisruptionBudget (it would block every drain)',
        { replicaCount: 1 },
        1,
        false,
      ],
      ['three replicas keep the PodDisruptionBudget', { replicaCount: 3 }, 3, true],
      [
        'podDisruptionBudget.enabled false drops it',
        { podDisruptionBudget: { enabled: false } },
        2,
        false,
      ],
    ])('%s', async (_name, values, replicas, pdb) => {
      const objects = await render(values);
      expect(one<Deployment>(objects, 'Deployment').spec.replicas).toBe(replicas);
      expect(objects.some((o) => o.kind === 'PodDisruptionBudget')).toBe(pdb);
    });

    it('names every object after the release and fills the configuration to match', async () => {
      const objects = await render({}, { release: 'mesh', namespace: 'infra' });
      const deployment = one<Deployment>(objects, 'Deployment', 'mesh-mooring');
      expect(deployment.spec.selector.matchLabels['app.kubernetes.io/instance']).toBe('mesh');
      one(objects, 'Service', 'mesh-mooring');
      one(objects, 'ServiceAccount', 'mesh-mooring');
      const config = configOf(objects);
      expect(config.cluster).toMatchObject({ namespace: 'infra', serviceName: 'mesh-mooring' });
      expect(config.injector.caAddress).toBe('https://mesh-mooring.infra.svc:443');
      const mwc = one<WebhookConfiguration>(objects, 'MutatingWebhookConfiguration');
      expect(mwc.webhooks[0]?.clientConfig.service).toEqual({
        namespace: 'infra',
        name: 'mesh-mooring',
        path: '/inject',
        port: 443,
      });
    });

    it('points the webhook at webhook.url (with /inject added) and stops the server patching the caBundle', async () => {
      const objects = await render({ webhook: { url: 'https://10.0.0.5:8443', caBundle: PEM } });
      const mwc = one<WebhookConfiguration>(objects, 'MutatingWebhookConfiguration');
      const caBundle = Buffer.from(`${PEM}\n`).toString('base64');
      expect(mwc.webhooks.map((w) => w.clientConfig)).toEqual([
        { url: 'https://10.0.0.5:8443/inject', caBundle },
        { url: 'https://10.0.0.5:8443/inject', caBundle },
      ]);
      expect(configOf(objects).cluster.patchCABundle).toBe(false);
    });

    it('keeps the path of webhook.url when it has one', async () => {
      const objects = await render({
        webhook: { url: 'https://dev.example:9443/hooks/inject', caBundle: PEM },
      });
      const mwc = one<WebhookConfiguration>(objects, 'MutatingWebhookConfiguration');
      expect(mwc.webhooks[1]?.clientConfig.url).toBe('https://dev.example:9443/hooks/inject');
    });

    it.each<[string, string]>([
      ['a PEM', PEM],
      ['the base64 of a PEM', Buffer.from(`${PEM}\n`).toString('base64')],
    ])('sets the caBundle given as %s and stops the server patching it', async (_name, bundle) => {
      const objects = await render({ webhook: { caBundle: bundle } });
      const mwc = one<WebhookConfiguration>(objects, 'MutatingWebhookConfiguration');
      for (const w of mwc.webhooks) {
        expect(w.clientConfig.caBundle).toBe(Buffer.from(`${PEM}\n`).toString('base64'));
        expect(w.clientConfig.service).toBeDefined();
      }
      expect(configOf(objects).cluster.patchCABundle).toBe(false);
    });

    it('lets the user turn caBundle patching off without setting one', async () => {
      const objects = await render({ config: { cluster: { patchCABundle: false } } });
      expect(configOf(objects).cluster.patchCABundle).toBe(false);
    });

    it('sets webhook.failurePolicy on both webhooks', async () => {
      const objects = await render({ webhook: { failurePolicy: 'Ignore' } });
      const mwc = one<WebhookConfiguration>(objects, 'MutatingWebhookConfiguration');
      expect(mwc.webhooks.map((w) => w.failurePolicy)).toEqual(['Ignore', 'Ignore']);
    });

    it('renames the webhook configuration, its RBAC grant and the config key together', async () => {
      const objects = await render({ webhook: { name: 'mesh-injector' } });
      one(objects, 'MutatingWebhookConfiguration', 'mesh-injector');
      expect(configOf(objects).cluster.webhookConfigName).toBe('mesh-injector');
      expect(ruleLines(objects)).toContain(
        'ClusterRole/mooring: admissionregistration.k8s.io/mutatingwebhookconfigurations[mesh-injector]: list,watch,update',
      );
    });

    it('mounts a plug-in CA Secret read-only and points ca.pluginDir at it', async () => {
      const objects = await render({ ca: { pluginSecretName: 'cacerts' } });
      const pod = one<Deployment>(objects, 'Deployment').spec.template.spec;
      expect(pod.volumes).toContainEqual({
        name: 'plugin-ca',
        secret: { secretName: 'cacerts', defaultMode: 0o440 },
      });
      expect(container(objects).volumeMounts).toContainEqual({
        name: 'plugin-ca',
        mountPath: '/etc/mooring-plugin-ca',
        readOnly: true,
      });
      expect(configOf(objects).ca.pluginDir).toBe('/etc/mooring-plugin-ca');
    });

    it('adds the approve permission on the signer only with csrAutoApprove', async () => {
      const objects = await render({ config: { cluster: { csrAutoApprove: true } } });
      expect(ruleLines(objects)).toEqual(
        expect.arrayContaining([
          'ClusterRole/mooring: certificates.k8s.io/certificatesigningrequests/approval: update',
          'ClusterRole/mooring: certificates.k8s.io/signers[mooring.dev/workload]: approve',
        ]),
      );
      expect(ruleLines(await render())).not.toEqual(
        expect.arrayContaining([expect.stringContaining('approv')]),
      );
    });

    it('drops every CSR permission when the CSR signer is off', async () => {
      const objects = await render({ config: { cluster: { csrSigner: false } } });
      expect(ruleLines(objects).filter((l) => l.includes('certificates.k8s.io'))).toEqual([]);
    });

    it('renders no RBAC with rbac.create false, and uses an existing ServiceAccount', async () => {
      const objects = await render({
        rbac: { create: false },
        serviceAccount: { create: false, name: 'platform-mooring' },
      });
      expect(kinds(objects).filter((k) => /Role|ServiceAccount/.test(k))).toEqual([]);
      const deployment = one<Deployment>(objects, 'Deployment');
      expect(deployment.spec.template.spec.serviceAccountName).toBe('platform-mooring');
    });

    it('pins the image by digest and uses it for the injected containers too', async () => {
      const digest = `sha256:${'a'.repeat(64)}`;
      const objects = await render({ image: { repository: 'registry.local/mooring', digest } });
      expect(container(objects).image).toBe(`registry.local/mooring@${digest}`);
      expect(configOf(objects).injector.initImage).toBe(`registry.local/mooring@${digest}`);
      expect(configOf(objects).injector.proxyImage).toBe(`registry.local/mooring@${digest}`);
    });

    it('runs one image in the three roles: image.repository and image.tag set the server, mooring-init and mooring-proxy', async () => {
      const objects = await render({ image: { repository: 'mirror.local/mooring', tag: '9.9.9' } });
      const { injector } = configOf(objects);
      expect([container(objects).image, injector.initImage, injector.proxyImage]).toEqual([
        'mirror.local/mooring:9.9.9',
        'mirror.local/mooring:9.9.9',
        'mirror.local/mooring:9.9.9',
      ]);
    });

    it('keeps images and a caAddress that the values set', async () => {
      const objects = await render({
        config: {
          injector: {
            initImage: 'mirror/mooring:1',
            proxyImage: 'mirror/proxy:2',
            caAddress: 'https://ca.example:443',
          },
        },
      });
      expect(configOf(objects).injector).toMatchObject({
        initImage: 'mirror/mooring:1',
        proxyImage: 'mirror/proxy:2',
        caAddress: 'https://ca.example:443',
      });
    });

    it('drops the topology spread when it is disabled', async () => {
      const objects = await render({ topologySpread: { enabled: false } });
      const pod = one<Deployment>(objects, 'Deployment').spec.template.spec;
      expect(pod.topologySpreadConstraints).toBeUndefined();
    });

    it('rolls the Pods when the configuration changes (checksum annotation)', async () => {
      const checksum = (objects: KubeObject[]): string | undefined =>
        one<Deployment>(objects, 'Deployment').spec.template.metadata.annotations[
          'checksum/config'
        ];
      const before = checksum(await render());
      const after = checksum(await render({ config: { server: { logLevel: 'debug' } } }));
      expect(before).toMatch(/^[0-9a-f]{64}$/);
      expect(after).not.toBe(before);
    });
  });
});
