// `make demo` (root): two Pods in network namespaces, each with the rules of `mooring iptables`
// and a `mooring agent` as UID 1337, and a local `mooring serve --mesh-dir` as their CA and mesh
// server. web calls Service api's ClusterIP (which only the sidecars know); the demo shows the
// answer with the caller's SPIFFE ID in x-forwarded-client-cert, what a capture between the two
// Pods saw (TLS, never the request), and Istio's metrics of both sidecars. Then it waits (Enter or
// Ctrl-C) so that you can look around, and removes everything. `--once` stops at once (the test).
//
// test/netns/demo.test.ts runs it; the README's quick start shows its output.

import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { MeshRig, podObject, serviceObject, sliceObject, type PortSpec } from './mesh-rig';
import { checkPreconditions, removeLeftovers, run } from './support';

const API_IP = '10.96.0.10';
const PORTS: PortSpec[] = [{ name: 'http', port: 80, targetPort: 8080 }];

export interface DemoResult {
  /** The echo app's view of the request: its headers (x-forwarded-client-cert among them). */
  readonly answer: { status?: number; body?: string };
  /** tcpdump -A of the connection between the two Pods. */
  readonly wire: string;
  /** The request's marker: it must not appear on the wire. */
  readonly marker: string;
  /** istio_requests_total of web's (source) and api's (destination) sidecars. */
  readonly metrics: { readonly web: string; readonly api: string };
}

const CALL = `
const http = require('http');
http.get(process.argv[1], { headers: { 'x-demo': process.argv[2] } }, (res) => {
  let text = '';
  res.on('data', (d) => (text += d));
  res.on('end', () => console.log(JSON.stringify({ status: res.statusCode, body: text })));
}).on('error', (e) => console.log(JSON.stringify({ error: e.message })));`;

export async function runDemo(
  print: (line: string) => void,
  wait: (rig: MeshRig) => Promise<void>,
): Promise<DemoResult> {
  await checkPreconditions(['ip', 'iptables', 'setpriv', 'curl', 'tcpdump'], []);
  await removeLeftovers();
  const rig = new MeshRig('demo');
  try {
    print('starting mooring serve (CA and mesh push) in namespace ' + rig.hub + ' on 10.77.0.1');
    await rig.start({
      'token-web': { namespace: 'default', serviceAccount: 'web' },
      'token-api': { namespace: 'default', serviceAccount: 'api' },
    });
    const web = await rig.addPod({ name: 'web', ip: '10.77.0.11', meshed: true });
    const api = await rig.addPod({ name: 'api', ip: '10.77.0.12', meshed: true });
    rig.writeMesh('demo.yaml', [
      serviceObject('api', API_IP, PORTS, { app: 'api' }),
      sliceObject('api', PORTS, [api]),
      podObject(web),
      podObject(api),
    ]);
    await rig.waitReady('web');
    await rig.waitReady('api');
    print(`Pods: web ${web.spec.ip} (${web.ns}), api ${api.spec.ip} (${api.ns}); agents ready`);

    const capture = join(rig.dir, 'wire.pcap');
    let tcpdumpLog = '';
    const tcpdump = rig.spawnLogged(
      // As in test/netns/mesh.test.ts: root (the rig's directory), every packet at once.
      ['ip', 'netns', 'exec', api.ns, 'tcpdump', '-i', 'eth0', '-Z', 'root'].concat([
        '--immediate-mode',
        '-U',
        '-w',
        capture,
        'tcp',
        'and',
        'host',
        web.spec.ip,
      ]),
      (t) => (tcpdumpLog += t),
    );
    await rig.waitFor('tcpdump', () => Promise.resolve(tcpdumpLog.includes('listening')));

    const marker = `demo-${Date.now()}`;
    print(`web's app: GET http://${API_IP}/hello (Service api's ClusterIP) with x-demo: ${marker}`);
    const answer = JSON.parse(
      await rig.node('web', CALL, [`http://${API_IP}/hello`, marker]),
    ) as DemoResult['answer'];
    const echoed = JSON.parse(answer.body ?? '{}') as { headers?: Record<string, string> };
    print(`  answer ${answer.status ?? 'none'} from api's app, which saw:`);
    print(`  x-forwarded-client-cert: ${echoed.headers?.['x-forwarded-client-cert'] ?? '(none)'}`);

    await new Promise((r) => setTimeout(r, 300));
    tcpdump.kill('SIGINT');
    await new Promise((r) => tcpdump.once('exit', r));
    const wire = (await run('tcpdump', ['-r', capture, '-A', '-nn'])).stdout;
    const packets = wire.split('\n').filter((l) => / IP /.test(l)).length;
    print(
      `on the wire between the Pods: ${packets} packets to ${api.spec.ip}:8080, ` +
        (wire.includes(marker)
          ? 'THE REQUEST IN PLAIN TEXT'
          : 'TLS only (the marker is not there)'),
    );

    const metricsOf = async (ns: string): Promise<string> =>
      (await rig.exec(ns, ['curl', '-s', 'http://127.0.0.1:15090/stats/prometheus'])).stdout
        .split('\n')
        .filter((l) => l.startsWith('istio_requests_total{'))
        .join('\n');
    const metrics = { web: await metricsOf(web.ns), api: await metricsOf(api.ns) };
    print("web's sidecar (reporter=source), 15090 /stats/prometheus:");
    print(metrics.web);
    print("api's sidecar (reporter=destination):");
    print(metrics.api);
    print('');
    print('Look around, as root:');
    print(`  ip netns exec ${web.ns} curl -s http://${API_IP}/again`);
    print(`  ip netns exec ${web.ns} curl -s 127.0.0.1:15000/config_dump | head -c 600`);
    print(`  ip netns exec ${api.ns} tcpdump -i eth0 -A -nn tcp port 8080`);
    print(`  node bin/mooring.js proxy-config --proxy-admin http://127.0.0.1:15000 (in ${web.ns})`);
    print(`  edit the mesh live: ${rig.meshDir}/demo.yaml (mooring serve --mesh-dir re-reads it)`);
    await wait(rig);
    return { answer, wire, marker, metrics };
  } finally {
    await rig.stop();
  }
}

if (require.main === module) {
  const once = process.argv.includes('--once');
  runDemo(
    (line) => process.stdout.write(`${line}\n`),
    async () => {
      if (once) return;
      process.stdout.write('\nPress Enter (or Ctrl-C) to stop and remove the namespaces.\n');
      const rl = createInterface({ input: process.stdin });
      await new Promise<void>((resolve) => {
        rl.once('line', () => resolve());
        rl.once('close', () => resolve());
        process.once('SIGINT', () => resolve());
      });
      rl.close();
    },
  ).then(
    () => process.exit(0),
    (err: unknown) => {
      process.stderr.write(`demo failed: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exit(1);
    },
  );
}
