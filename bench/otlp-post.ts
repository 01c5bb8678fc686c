// The CPU of one OTLP/HTTP export's POST: the exporter's `httpPost` (node:http, one kept-alive
// connection) against the same POST with `fetch` (undici), to a local collector that answers 200
// (bench/RESULTS.md, Telemetry). Client and collector run in this process: the figures include
// the collector's side, the same for both.
//
//   node .cache/bench/bench/otlp-post.js [--posts 300] [--spans 3]

import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { httpPost, type Post } from '../src/agent/proxy/telemetry/exporter';

const args = process.argv.slice(2);
const flag = (name: string, fallback: string): string => {
  const i = args.indexOf(`--${name}`);
  return i === -1 ? fallback : (args[i + 1] ?? fallback);
};
const POSTS = Number(flag('posts', '300'));
const SPANS = Number(flag('spans', '3'));

const fetchPost: Post = async (url, body, timeoutMs) => {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body,
    signal: AbortSignal.timeout(timeoutMs),
  });
  await res.arrayBuffer();
  return res.status;
};

async function main(): Promise<void> {
  const span = { traceId: 'a'.repeat(32), spanId: 'b'.repeat(16), name: 'x', attributes: [] };
  const body = JSON.stringify({
    resourceSpans: [{ scopeSpans: [{ spans: new Array(SPANS).fill(span) }] }],
  });
  const collector = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => res.writeHead(200).end('{}'));
  });
  await new Promise<void>((r) => collector.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(collector.address() as AddressInfo).port}/v1/traces`;
  // Twice each, alternating: the first pass of each pays its loading.
  for (const [name, post] of [
    ['fetch', fetchPost],
    ['node:http', httpPost],
    ['fetch', fetchPost],
    ['node:http', httpPost],
  ] as const) {
    const before = process.cpuUsage();
    for (let i = 0; i < POSTS; i++) await post(url, body, 10_000);
    const used = process.cpuUsage(before);
    process.stdout.write(
      `${name}: ${Math.round((used.user + used.system) / POSTS)} µs CPU per POST (${POSTS} POSTs of ${body.length} bytes)\n`,
    );
  }
  collector.close();
  process.exit(0);
}

void main();
