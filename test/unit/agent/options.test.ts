import { AGENT_ENV } from '../../../src/constants';
import { MooringError } from '../../../src/errors';
import { AGENT_DEFAULTS, parseDuration, resolveAgentOptions } from '../../../src/agent/options';

describe('parseDuration', () => {
  it.each([
    ['a bare number is seconds', '90', 90],
    ['seconds', '90s', 90],
    ['milliseconds', '1500ms', 1.5],
    ['minutes', '5m', 300],
    ['hours', '24h', 86400],
    ['days', '7d', 604800],
    ['a compound duration', '1h30m', 5400],
    ['a fraction', '0.5s', 0.5],
    ['surrounding spaces', ' 4s ', 4],
  ])('reads %s', (_name, text, seconds) => {
    expect(parseDuration(text)).toBe(seconds);
  });

  it.each([
    ['a unit alone', 's'],
    ['a negative number', '-5'],
    ['an unknown unit', '5w'],
    ['words', 'soon'],
    ['empty', ''],
  ])('refuses %s', (_name, text) => {
    expect(parseDuration(text)).toBeNull();
  });
});

/** The Pod the built-in proxy needs, as the injector sets it; each test adds what it checks. */
const POD_ENV = { [AGENT_ENV.podName]: 'web-1', [AGENT_ENV.podNamespace]: 'default' };
const resolve = (
  flags: Parameters<typeof resolveAgentOptions>[0],
  env: NodeJS.ProcessEnv,
  command?: readonly string[],
) => resolveAgentOptions(flags, { ...POD_ENV, ...env }, command);

const problemsOf = (fn: () => unknown): readonly string[] => {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(MooringError);
    expect((err as MooringError).code).toBe('CFG_ERR_INVALID');
    return (err as MooringError).details;
  }
  throw new Error('expected an error');
};

describe('resolveAgentOptions', () => {
  it('uses defaults that match the injected Pod when nothing is set', () => {
    const o = resolve({}, {});
    expect(o.caUrl.href).toBe(`${AGENT_DEFAULTS.caUrl.replace(':443', '')}/`);
    expect(o.tokenFile).toBe('/var/run/secrets/mooring.dev/token/token');
    expect(o.rootCert).toBe('/var/run/secrets/mooring.dev/root/root-cert.pem');
    expect(o.outDir).toBe('/var/run/secrets/mooring.dev/certs');
    expect(o.keyType).toBe('ecdsa-p256');
    expect(o.renewFraction).toBe(0.5);
    expect(o.drainSeconds).toBe(5);
    expect(o.ttlSeconds).toBeUndefined();
    expect(o.readinessPort).toBe(15021);
    expect(o.agentPort).toBe(15020);
    expect(o.listenHost).toBe('0.0.0.0');
    expect(o.appProbes.size).toBe(0);
    expect(o.command).toEqual([]);
  });

  it('reads every option from the environment the injector sets', () => {
    const o = resolve(
      {},
      {
        [AGENT_ENV.caUrl]: 'https://ca.example:8443',
        [AGENT_ENV.tokenFile]: '/t/token',
        [AGENT_ENV.rootCert]: '/r/root.pem',
        [AGENT_ENV.outDir]: '/out',
        [AGENT_ENV.ttl]: '2h',
        [AGENT_ENV.keyType]: 'ed25519',
        [AGENT_ENV.renewFraction]: '0.66',
        [AGENT_ENV.drain]: '30',
        [AGENT_ENV.logLevel]: 'debug',
        [AGENT_ENV.appProbes]: '{"web/livez":{"tcpSocket":{"port":8080}}}',
      },
    );
    expect(o).toMatchObject({
      tokenFile: '/t/token',
      rootCert: '/r/root.pem',
      outDir: '/out',
      ttlSeconds: 7200,
      keyType: 'ed25519',
      renewFraction: 0.66,
      drainSeconds: 30,
      logLevel: 'debug',
    });
    expect(o.caUrl.host).toBe('ca.example:8443');
    expect(o.appProbes.get('web/livez')).toEqual({ tcpSocket: { port: 8080 }, timeoutSeconds: 1 });
  });

  it('lets flags beat the environment', () => {
    const o = resolve(
      { caUrl: 'https://flag:1', ttl: '60', keyType: 'rsa-2048', drain: '0', outDir: '/flag' },
      {
        [AGENT_ENV.caUrl]: 'https://env:2',
        [AGENT_ENV.ttl]: '3600',
        [AGENT_ENV.keyType]: 'ecdsa-p384',
        [AGENT_ENV.drain]: '9',
        [AGENT_ENV.outDir]: '/env',
      },
    );
    expect(o.caUrl.host).toBe('flag:1');
    expect(o.ttlSeconds).toBe(60);
    expect(o.keyType).toBe('rsa-2048');
    expect(o.drainSeconds).toBe(0);
    expect(o.outDir).toBe('/flag');
  });

  it('treats an empty environment variable as unset', () => {
    expect(resolve({}, { [AGENT_ENV.ttl]: '', [AGENT_ENV.keyType]: '' }).keyType).toBe(
      'ecdsa-p256',
    );
  });

  it.each<[string, NodeJS.ProcessEnv, string]>([
    ['the Pod IP of the downward API', { POD_IP: '10.1.2.3' }, '10.1.2.3'],
    ['an IPv6 Pod IP', { POD_IP: 'fd00::7' }, 'fd00::7'],
    ['loopback without a Pod IP', {}, '127.0.0.1'],
    ['loopback for a Pod IP that is not an address', { POD_IP: 'pending' }, '127.0.0.1'],
  ])('probes apps at %s', (_name, env, host) => {
    expect(resolve({}, env).probeHost).toBe(host);
  });

  it('refuses the same port for readiness and the agent', () => {
    expect(() => resolve({ readinessPort: '15021', agentPort: '15021' }, {})).toThrow(
      '--readiness-port and --agent-port must differ (both are 15021)',
    );
  });

  it('keeps the proxy command', () => {
    expect(resolve({}, {}, ['envoy', '-c', 'x']).command).toEqual(['envoy', '-c', 'x']);
  });

  it('reads test ports and the listen host', () => {
    const o = resolve({ readinessPort: '0', agentPort: '25020', listenHost: '127.0.0.1' }, {});
    expect([o.readinessPort, o.agentPort, o.listenHost]).toEqual([0, 25020, '127.0.0.1']);
  });

  it.each([
    ['a plain-HTTP CA URL', { caUrl: 'http://ca:80' }, '--ca-url / MOORING_CA_URL'],
    ['a CA URL that is not a URL', { caUrl: 'not a url' }, '--ca-url / MOORING_CA_URL'],
    ['an unknown key type', { keyType: 'dsa' }, '--key-type / MOORING_KEY_TYPE'],
    ['a renew fraction of 1', { renewFraction: '1' }, '--renew-fraction'],
    ['a renew fraction of 0', { renewFraction: '0' }, '--renew-fraction'],
    ['a renew fraction that is not a number', { renewFraction: 'half' }, '--renew-fraction'],
    ['a TTL that is not a duration', { ttl: 'forever' }, '--ttl / MOORING_TTL'],
    ['a TTL of zero', { ttl: '0' }, '--ttl'],
    ['a drain that is not a duration', { drain: 'x' }, '--drain / MOORING_DRAIN'],
    ['an unknown log level', { logLevel: 'loud' }, '--log-level'],
    ['a port above 65535', { agentPort: '70000' }, '--agent-port'],
    ['app probes that are not JSON', { appProbes: '{' }, '--app-probes / MOORING_APP_PROBES'],
    ['an empty token file', { tokenFile: ' ' }, '--token-file'],
  ])('refuses %s, naming the flag', (_name, flags, where) => {
    const problems = problemsOf(() => resolve(flags, {}));
    expect(problems).toHaveLength(1);
    expect(problems[0]).toContain(where);
  });

  it('names the environment variable when the bad value came from it', () => {
    const problems = problemsOf(() => resolve({}, { [AGENT_ENV.renewFraction]: '2' }));
    expect(problems[0]).toContain('MOORING_RENEW_FRACTION');
    expect(problems[0]).toContain('"2"');
  });

  it('lists every bad value at once', () => {
    expect(problemsOf(() => resolve({ keyType: 'x', ttl: 'y', drain: 'z' }, {}))).toHaveLength(3);
  });
  describe("the Pod and the mesh server (the proxy's mesh client)", () => {
    it('takes the mesh from the CA by default; without the proxy it needs no Pod', () => {
      const o = resolveAgentOptions({ caUrl: 'https://ca.example:8443', proxy: false }, {});
      expect(o.meshUrl.href).toBe('https://ca.example:8443/');
      expect(o.pod).toEqual({ name: null, namespace: null, ip: null });
      expect(o.proxy.enabled).toBe(false);
    });

    it('the built-in proxy needs the Pod, and says how to give it or turn the proxy off', () => {
      const problems = problemsOf(() => resolveAgentOptions({}, {}));
      expect(problems).toEqual([
        '--pod-name and --pod-namespace are needed by the built-in proxy (the injector sets MOORING_POD_NAME and MOORING_POD_NAMESPACE); give them, or --no-proxy',
      ]);
    });

    it('reads the Pod from the downward-API environment, flags winning', () => {
      const env = {
        [AGENT_ENV.podName]: 'web-1',
        [AGENT_ENV.podNamespace]: 'shop',
        [AGENT_ENV.podIp]: '10.0.0.5',
        [AGENT_ENV.meshUrl]: 'https://mesh.example',
      };
      expect(resolve({}, env)).toMatchObject({
        pod: { name: 'web-1', namespace: 'shop', ip: '10.0.0.5' },
        meshUrl: new URL('https://mesh.example'),
        probeHost: '10.0.0.5',
      });
      expect(
        resolve(
          {
            podName: 'web-2',
            podNamespace: 'ops',
            podIp: 'fd00::7',
            meshUrl: 'https://other:9443',
          },
          env,
        ),
      ).toMatchObject({
        pod: { name: 'web-2', namespace: 'ops', ip: 'fd00::7' },
        meshUrl: new URL('https://other:9443'),
      });
    });

    it.each([
      ['--pod-name', { podName: 'Web_1' }, 'is not a Pod name'],
      ['--pod-namespace', { podNamespace: 'Shop' }, 'is not a namespace name'],
      ['--pod-ip', { podIp: '10.0.0.300' }, 'is not an IP address'],
      ['--mesh-url', { meshUrl: 'http://mesh.example' }, 'must be an https:// URL'],
      ['--mesh-url', { meshUrl: 'not a url' }, 'is not a URL'],
    ])('refuses a bad %s, naming it', (flag, flags, message) => {
      const problems = problemsOf(() => resolve(flags, {}));
      expect(problems).toHaveLength(1);
      expect(problems[0]).toContain(flag);
      expect(problems[0]).toContain(message);
    });
  });
});

describe('resolveAgentOptions: the built-in proxy', () => {
  it('is on by default, on the ports of the contract', () => {
    expect(resolve({}, {}).proxy).toEqual({
      enabled: true,
      outboundPort: 15001,
      inboundPort: 15006,
      adminPort: 15000,
      statsPort: 15090,
    });
  });

  it('--no-proxy turns it off', () => {
    expect(resolve({ proxy: false }, {}).proxy.enabled).toBe(false);
  });

  it('takes other ports, and refuses two of its ports that are the same', () => {
    const o = resolve(
      { outboundPort: '25001', inboundPort: '25006', proxyAdminPort: '25000', statsPort: '25090' },
      {},
    );
    expect(o.proxy).toMatchObject({
      outboundPort: 25001,
      inboundPort: 25006,
      adminPort: 25000,
      statsPort: 25090,
    });
    expect(problemsOf(() => resolve({ inboundPort: '15001' }, {}))).toEqual([
      '--outbound-port and --inbound-port must differ (both are 15001)',
    ]);
    expect(problemsOf(() => resolve({ statsPort: '15020' }, {}))).toEqual([
      '--agent-port and --stats-port must differ (both are 15020)',
    ]);
  });
});
