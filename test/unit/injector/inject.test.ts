import { PassThrough } from 'node:stream';
import { resolveAgentOptions } from '../../../src/agent/options';
import { main } from '../../../src/cli/main';
import { validateConfig } from '../../../src/config/validate';
import {
  ANNOTATION,
  DEFAULT_CONTAINER_ANNOTATION,
  INIT_CONTAINER_NAME,
  PROXY_CONTAINER_NAME,
  STATUS_ANNOTATION,
} from '../../../src/constants';
import { isMooringError } from '../../../src/errors';
import { inject, type InjectionContext, type InjectOutcome } from '../../../src/injector';
import type { Container, Pod } from '../../../src/injector/pod';
import {
  container,
  execProbe,
  httpGet,
  largeEnvPod,
  pod,
  typicalPod,
  withAnnotation,
  withContainer,
  withContainers,
  withInitContainer,
  withNamespace,
  withPort,
  withProbe,
  withSpecField,
  withVolume,
} from '../../fixtures/pods';

const ctx: InjectionContext = { config: validateConfig({}), namespace: 'shop', version: '1.2.3' };

function injected(
  p: Pod,
  context: InjectionContext = ctx,
): Extract<InjectOutcome, { action: 'injected' }> {
  const outcome = inject(p, context);
  if (outcome.action !== 'injected') throw new Error(`skipped: ${outcome.reason}`);
  return outcome;
}

const names = (containers: readonly Container[] | undefined): string[] =>
  (containers ?? []).map((c) => c.name);
const find = (p: Pod, name: string): Container => {
  const found = [...(p.spec.initContainers ?? []), ...p.spec.containers].find(
    (c) => c.name === name,
  );
  if (found === undefined) throw new Error(`no container ${name}`);
  return found;
};
/** The container's environment as the kubelet gives it: downward-API fields filled from `pod`. */
const envOf = (c: Container, pod: Record<string, string> = DOWNWARD): Record<string, string> =>
  Object.fromEntries(
    (c.env ?? []).map((e) => [
      e.name,
      e.value ??
        pod[
          (e.valueFrom as { fieldRef?: { fieldPath?: string } } | undefined)?.fieldRef?.fieldPath ??
            ''
        ] ??
        '',
    ]),
  );
const DOWNWARD: Record<string, string> = {
  'metadata.name': 'web-7d9f',
  'metadata.namespace': 'shop',
  'status.podIP': '10.1.2.3',
};

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object') {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

const classic = withAnnotation(ANNOTATION.nativeSidecar, 'false');
const noHold = withAnnotation(ANNOTATION.holdApplication, 'false');
const appInit = withInitContainer(container('setup'));

describe('inject: where the sidecar goes', () => {
  it.each([
    [
      'native with hold',
      [],
      ['mooring-init', 'mooring-proxy', 'setup'],
      ['app', 'worker'],
      true,
      false,
    ],
    [
      'native without hold',
      [noHold],
      ['mooring-init', 'mooring-proxy', 'setup'],
      ['app', 'worker'],
      false,
      false,
    ],
    [
      'classic with hold',
      [classic],
      ['setup', 'mooring-init'],
      ['mooring-proxy', 'app', 'worker'],
      true,
      true,
    ],
    [
      'classic without hold',
      [classic, noHold],
      ['setup', 'mooring-init'],
      ['app', 'worker', 'mooring-proxy'],
      true,
      false,
    ],
  ])('%s', (_name, mods, initContainers, containers, startupProbe, postStart) => {
    const { pod: out } = injected(pod('web', appInit, withContainer(container('worker')), ...mods));
    expect(names(out.spec.initContainers)).toEqual(initContainers);
    expect(names(out.spec.containers)).toEqual(containers);
    const proxy = find(out, PROXY_CONTAINER_NAME);
    expect(proxy.restartPolicy).toBe(mods.includes(classic) ? undefined : 'Always');
    expect(proxy.startupProbe !== undefined).toBe(startupProbe);
    expect(proxy.lifecycle !== undefined).toBe(postStart);
  });

  it('holds the app in classic mode with a postStart hook running `mooring agent wait`', () => {
    const proxy = find(injected(pod('web', classic)).pod, PROXY_CONTAINER_NAME);
    expect(proxy.lifecycle).toEqual({
      postStart: { exec: { command: ['mooring', 'agent', 'wait'] } },
    });
  });

  it('gives the proxy a startup probe on 15021 /healthz/ready in native hold mode', () => {
    const proxy = find(injected(pod('web')).pod, PROXY_CONTAINER_NAME);
    expect(proxy.startupProbe).toMatchObject({ httpGet: { path: '/healthz/ready', port: 15021 } });
    expect(proxy.readinessProbe).toMatchObject({
      httpGet: { path: '/healthz/ready', port: 15021 },
    });
  });
});

describe('inject: the containers', () => {
  const out = injected(typicalPod()).pod;
  const init = find(out, INIT_CONTAINER_NAME);
  const proxy = find(out, PROXY_CONTAINER_NAME);

  it('mooring-init runs `mooring iptables` as root with NET_ADMIN and NET_RAW only, not privileged', () => {
    expect(init.image).toBe(ctx.config.injector.initImage);
    expect(init.command?.slice(0, 2)).toEqual(['mooring', 'iptables']);
    expect(init.securityContext).toEqual({
      runAsUser: 0,
      runAsGroup: 0,
      runAsNonRoot: false,
      privileged: false,
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { add: ['NET_ADMIN', 'NET_RAW'], drop: ['ALL'] },
    });
    expect(init.resources).toEqual({
      requests: { cpu: '10m', memory: '16Mi' },
      limits: { cpu: '100m', memory: '64Mi' },
    });
  });

  it('mooring-proxy runs `mooring agent` as 1337, non-root, read-only, no escalation, no capabilities', () => {
    expect(proxy.command).toEqual(['mooring', 'agent']);
    expect(proxy.securityContext).toMatchObject({
      runAsUser: 1337,
      runAsGroup: 1337,
      runAsNonRoot: true,
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
      capabilities: { drop: ['ALL'] },
    });
    expect(proxy.ports?.map((p) => [p.name, p.containerPort])).toEqual([
      ['mooring-out', 15001],
      ['mooring-in', 15006],
      ['mooring-metrics', 15090],
      ['mooring-ready', 15021],
      ['mooring-agent', 15020],
    ]);
    expect(proxy.resources).toEqual({
      requests: { cpu: '100m', memory: '128Mi' },
      limits: { memory: '1Gi' },
    });
  });

  it('mooring-proxy gets the downward API and mounts the token, the roots and the cert dir', () => {
    const fields = (proxy.env ?? []).filter((e) => e.valueFrom !== undefined).map((e) => e.name);
    expect(fields).toEqual(['MOORING_POD_NAME', 'MOORING_POD_NAMESPACE', 'MOORING_POD_IP']);
    expect(proxy.volumeMounts?.map((m) => [m.name, m.mountPath, m.readOnly ?? false])).toEqual([
      ['mooring-token', '/var/run/secrets/mooring.dev/token', true],
      ['mooring-ca-root-cert', '/var/run/secrets/mooring.dev/root', true],
      ['mooring-certs', '/var/run/secrets/mooring.dev/certs', false],
    ]);
  });

  it("mooring-proxy's environment is accepted by the agent, which needs no flags", () => {
    const options = resolveAgentOptions({}, envOf(proxy), []);
    expect(options.caUrl.href).toBe('https://mooring.mooring-system.svc/');
    expect(options.tokenFile).toBe('/var/run/secrets/mooring.dev/token/token');
    expect(options.rootCert).toBe('/var/run/secrets/mooring.dev/root/root-cert.pem');
    expect(options.outDir).toBe('/var/run/secrets/mooring.dev/certs');
    expect(options.drainSeconds).toBe(5);
    // The built-in proxy knows its Pod from the downward API, and probes go to the Pod's IP.
    expect(options.proxy.enabled).toBe(true);
    expect(options.pod).toEqual({ name: 'web-7d9f', namespace: 'shop', ip: '10.1.2.3' });
    expect(options.meshUrl.href).toBe('https://mooring.mooring-system.svc/');
    expect(options.probeHost).toBe('10.1.2.3');
    expect([...options.appProbes.keys()]).toEqual(['web/livez', 'web/readyz', 'web/startupz']);
    expect(options.appProbes.get('web/readyz')).toMatchObject({
      httpGet: { port: 8080, path: '/ready' },
    });
  });

  it("mooring-init's arguments are accepted by `mooring iptables`, and exclude the sidecar's ports", async () => {
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    const out: Buffer[] = [];
    stdout.on('data', (c: Buffer) => out.push(c));
    const args = (init.command ?? []).slice(1);
    const code = await main(['node', 'mooring', ...args, '--dry-run'], {
      stdin: new PassThrough(),
      stdout,
      stderr,
    });
    expect(code).toBe(0);
    const rules = Buffer.concat(out).toString('utf8');
    for (const port of [15020, 15021, 15090]) expect(rules).toContain(`--dport ${port} -j RETURN`);
    expect(rules).toContain('--to-ports 15006');
    expect(rules).toContain('--to-ports 15001');
    expect(rules).toContain('--uid-owner 1337');
  });

  it('adds the four volumes: the mooring-ca token, the root ConfigMap, a memory emptyDir and /run of mooring-init', () => {
    expect(out.spec.volumes?.slice(-4)).toEqual([
      {
        name: 'mooring-token',
        projected: {
          sources: [
            {
              serviceAccountToken: {
                audience: 'mooring-ca',
                expirationSeconds: 3600,
                path: 'token',
              },
            },
          ],
        },
      },
      { name: 'mooring-ca-root-cert', configMap: { name: 'mooring-ca-root-cert' } },
      { name: 'mooring-certs', emptyDir: { medium: 'Memory' } },
      { name: 'mooring-xtables-lock', emptyDir: {} },
    ]);
    expect(out.spec.volumes?.[0]?.name).toBe('config');
  });

  it('gives mooring-init, whose root filesystem is read-only, a writable /run for the xtables lock', () => {
    const init = [...(out.spec.initContainers ?? [])].find((c) => c.name === 'mooring-init');
    expect(init?.securityContext).toMatchObject({ readOnlyRootFilesystem: true });
    expect(init?.volumeMounts).toEqual([{ name: 'mooring-xtables-lock', mountPath: '/run' }]);
  });
});

describe('inject: volumes of the Pod mounted into the proxy (proxy.mooring.dev/user-volume-mount)', () => {
  const dbTls = withVolume({ name: 'db-tls', secret: { secretName: 'db-client' } });
  const mounts = (value: string) => withAnnotation(ANNOTATION.userVolumeMount, value);

  it('mounts them after its own, read-only unless asked otherwise', () => {
    const p = pod(
      'orders',
      dbTls,
      withVolume({ name: 'scratch', emptyDir: {} }),
      mounts(
        '[{"name": "db-tls", "mountPath": "/etc/db-tls"}, {"name": "scratch", "mountPath": "/tmp/x", "readOnly": false, "subPath": "a"}]',
      ),
    );
    const proxy = find(injected(p).pod, 'mooring-proxy');
    expect(proxy.volumeMounts?.slice(3)).toEqual([
      { name: 'db-tls', mountPath: '/etc/db-tls', readOnly: true },
      { name: 'scratch', mountPath: '/tmp/x', readOnly: false, subPath: 'a' },
    ]);
    // The app containers are untouched.
    expect(find(injected(p).pod, 'app').volumeMounts ?? []).toEqual([]);
  });

  it.each([
    ['[{"name": "nope", "mountPath": "/etc/x"}]', 'names no volume of the Pod: nope'],
    ['{"name": "db-tls"}', 'must be a JSON array of mounts'],
    ['[{"name": "db-tls", "mountPath": "etc"}]', 'whose mountPath is not an absolute path'],
    [
      '[{"name": "db-tls", "mountPath": "/var/run/secrets/mooring.dev/certs/x"}]',
      "over one of the proxy's own",
    ],
    ['[{"name": "db-tls", "mountPath": "/etc/a", "mode": 1}]', 'unknown field mode'],
    ['not json', 'is not JSON'],
  ])('refuses %s, naming the key', (value, reason) => {
    let error: unknown;
    try {
      inject(pod('orders', dbTls, mounts(value)), ctx);
    } catch (err) {
      error = err;
    }
    expect(isMooringError(error) && error.code).toBe('INJ_ERR_ANNOTATION');
    expect((error as Error).message).toContain(`${ANNOTATION.userVolumeMount}: `);
    expect((error as Error).message).toContain(reason);
  });
});

describe('inject: annotations it writes', () => {
  it('records what it added in mooring.dev/status', () => {
    const { pod: out } = injected(pod('web', classic));
    expect(JSON.parse(out.metadata?.annotations?.[STATUS_ANNOTATION] ?? '')).toEqual({
      initContainers: ['mooring-init'],
      containers: ['mooring-proxy'],
      volumes: ['mooring-token', 'mooring-ca-root-cert', 'mooring-certs', 'mooring-xtables-lock'],
      image: 'ghcr.io/mooring-dev/mooring:0.1.0',
      version: '1.2.3',
    });
  });

  it('names the first app container as the default container, even when the proxy comes first', () => {
    const { pod: out } = injected(
      pod('web', withContainers(container('main'), container('side')), classic),
    );
    expect(out.spec.containers[0]?.name).toBe(PROXY_CONTAINER_NAME);
    expect(out.metadata?.annotations?.[DEFAULT_CONTAINER_ANNOTATION]).toBe('main');
  });

  it('keeps a default container the Pod already names', () => {
    const { pod: out } = injected(
      pod('web', withAnnotation(DEFAULT_CONTAINER_ANNOTATION, 'other')),
    );
    expect(out.metadata?.annotations?.[DEFAULT_CONTAINER_ANNOTATION]).toBe('other');
  });
});

describe('inject: idempotence and purity', () => {
  it.each([
    ['a typical Pod', typicalPod()],
    ['the 1,500-variable Pod', largeEnvPod()],
    ['a classic Pod', pod('web', classic)],
  ])('re-injecting the output of %s is skipped as already_injected, with no patch', (_name, p) => {
    const first = injected(p);
    const again = inject(first.pod, ctx);
    expect(again).toMatchObject({ action: 'skipped', reason: 'already_injected' });
    expect('patch' in again).toBe(false);
  });

  it('never changes its input', () => {
    const input = deepFreeze(typicalPod());
    const copy = structuredClone(input);
    injected(input);
    expect(input).toEqual(copy);
  });

  it('reads the namespace from the context, not from the Pod', () => {
    const p = pod('web', withNamespace('kube-system'));
    expect(inject(p, ctx).action).toBe('injected');
    expect(inject(pod('web'), { ...ctx, namespace: 'kube-system' })).toMatchObject({
      reason: 'ignored_namespace',
    });
  });

  it('tolerates malformed fields the API server validates later', () => {
    const odd = pod(
      'web',
      withContainers({
        ...container('app'),
        ports: {} as never,
        livenessProbe: { httpGet: 'x' } as never,
      }),
    );
    const outcome = injected(odd);
    expect(outcome.warnings).toEqual([
      'container app: livenessProbe port undefined is not a port number; the probe is not rewritten and the kubelet calls the app directly',
    ]);
  });

  it('refuses something that is not a Pod with INJ_ERR_INPUT', () => {
    for (const bad of [
      {},
      { spec: {} },
      { spec: { containers: [] } },
      { spec: { containers: [{}] } },
    ]) {
      let error: unknown;
      try {
        inject(bad as Pod, ctx);
      } catch (err) {
        error = err;
      }
      expect(isMooringError(error) && error.code).toBe('INJ_ERR_INPUT');
    }
  });
});

describe('inject: warnings', () => {
  it('warns about an app container on a port the sidecar needs', () => {
    const { warnings } = injected(pod('web', withContainers(container('app', withPort(15021)))));
    expect(warnings).toEqual([
      'container app uses port 15021, which the Mooring sidecar needs: the two will clash',
    ]);
  });

  it('warns that a classic sidecar keeps a Pod meant to finish from completing', () => {
    const { warnings } = injected(pod('job', classic, withSpecField('restartPolicy', 'Never')));
    expect(warnings.join()).toContain('never completes');
    expect(injected(pod('job', withSpecField('restartPolicy', 'Never'))).warnings).toEqual([]);
  });

  it('warns about an inbound port listed for capture that the sidecar owns', () => {
    const { warnings } = injected(
      pod('web', withAnnotation(ANNOTATION.includeInboundPorts, '8080,15020')),
    );
    expect(warnings).toEqual([
      'inbound port 15020 is listed for capture but belongs to the sidecar: it is never captured',
    ]);
  });

  it('has no warnings for a plain Pod', () => {
    expect(injected(typicalPod()).warnings).toEqual([]);
  });
});

describe('inject: probes', () => {
  it('rewrites only when rewrite-probes is on', () => {
    const p = (mods: Parameters<typeof pod>[1][]) =>
      pod(
        'web',
        withContainers(container('app', withPort(8080), withProbe('livenessProbe', httpGet(8080)))),
        ...mods,
      );
    expect(find(injected(p([])).pod, 'app').livenessProbe?.httpGet?.port).toBe(15020);
    const off = injected(p([withAnnotation(ANNOTATION.rewriteProbes, 'false')])).pod;
    expect(find(off, 'app').livenessProbe?.httpGet?.port).toBe(8080);
    expect(envOf(find(off, PROXY_CONTAINER_NAME)).MOORING_APP_PROBES).toBeUndefined();
  });

  it("rewrites the app's native sidecars' probes too, never the proxy's", () => {
    const sidecar = container(
      'logs',
      withPort(2020, 'admin'),
      withProbe('startupProbe', httpGet('admin')),
    );
    const { pod: out } = injected(
      pod('web', withInitContainer({ ...sidecar, restartPolicy: 'Always' })),
    );
    expect(find(out, 'logs').startupProbe?.httpGet).toEqual({
      path: '/app-health/logs/startupz',
      port: 15020,
      scheme: 'HTTP',
    });
    expect(find(out, PROXY_CONTAINER_NAME).readinessProbe?.httpGet?.port).toBe(15021);
  });

  it('leaves exec probes alone', () => {
    const probe = execProbe('true');
    const { pod: out } = injected(
      pod('web', withContainers(container('app', withProbe('livenessProbe', probe)))),
    );
    expect(find(out, 'app').livenessProbe).toEqual(probe);
  });
});
