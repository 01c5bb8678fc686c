// Istio's standard metrics as the proxy keeps them: one series per set of labels, whichever Edge
// object (made again for each configuration, and for each TCP connection) counts into it.

import { Edge, IstioMetrics, type EdgeLabels } from '../../../src/agent/proxy/metrics';

const labels = (over: Partial<EdgeLabels> = {}): EdgeLabels => ({
  reporter: 'source',
  source: {
    workload: 'client',
    namespace: 'default',
    principal: 'spiffe://a',
    app: 'client',
    version: 'v1',
  },
  destination: {
    workload: 'server',
    namespace: 'default',
    principal: 'spiffe://b',
    app: 'server',
    version: 'v1',
  },
  service: 'server.default.svc.cluster.local',
  serviceName: 'server',
  serviceNamespace: 'default',
  protocol: 'http',
  security: 'mutual_tls',
  ...over,
});

/** The exposition's lines of one metric, as `{labels} value` rows. */
const lines = (text: string, metric: string): string[] =>
  text.split('\n').filter((l) => l.startsWith(`${metric}{`));

describe('IstioMetrics', () => {
  it('counts TCP connections of equal labels into one series, whatever Edge each was given', () => {
    const m = new IstioMetrics();
    const tcp = labels({ protocol: 'tcp' });
    for (const [sent, received] of [
      [100, 10],
      [200, 20],
      [300, 30],
    ] as const) {
      const edge = new Edge(tcp); // as the proxy makes one per connection
      m.tcpOpened(edge);
      m.tcpBytes(edge, sent, received);
      m.tcpClosed(edge);
    }
    const other = new Edge(labels({ protocol: 'tcp', security: 'none' }));
    m.tcpOpened(other);
    const text = m.render();
    const opened = lines(text, 'istio_tcp_connections_opened_total');
    expect(opened).toHaveLength(2);
    expect(opened.filter((l) => l.includes('connection_security_policy="mutual_tls"'))).toEqual([
      expect.stringMatching(/\} 3$/),
    ]);
    expect(opened.filter((l) => l.includes('connection_security_policy="none"'))).toEqual([
      expect.stringMatching(/\} 1$/),
    ]);
    expect(lines(text, 'istio_tcp_sent_bytes_total')).toContainEqual(
      expect.stringMatching(
        /connection_security_policy="mutual_tls",request_protocol="tcp"\} 600$/,
      ),
    );
    expect(lines(text, 'istio_tcp_received_bytes_total')).toContainEqual(
      expect.stringMatching(/connection_security_policy="mutual_tls",request_protocol="tcp"\} 60$/),
    );
    expect(lines(text, 'istio_tcp_connections_closed_total')).toContainEqual(
      expect.stringMatching(/connection_security_policy="mutual_tls",request_protocol="tcp"\} 3$/),
    );
  });

  it('keeps counting a request series across Edges made again, and splits it by code and flags', () => {
    const m = new IstioMetrics();
    const first = new Edge(labels());
    m.request(first, 200, '', '-', 3, 100, 1000);
    m.request(first, 200, '', '-', 30, 100, 1000);
    const again = new Edge(labels()); // a new configuration's edge, the same labels
    m.request(again, 200, '', '-', 300, 100, 1000);
    m.request(again, 503, '', 'UH', 1, 100, 0);
    const text = m.render();
    const total = lines(text, 'istio_requests_total');
    expect(total).toHaveLength(2);
    expect(total.filter((l) => l.includes('response_code="200"'))).toEqual([
      expect.stringMatching(/response_flags="-"\} 3$/),
    ]);
    expect(total.filter((l) => l.includes('response_code="503"'))).toEqual([
      expect.stringMatching(/response_flags="UH"\} 1$/),
    ]);
    const buckets = lines(text, 'istio_request_duration_milliseconds_bucket').filter((l) =>
      l.includes('response_code="200"'),
    );
    // 3 ms, 30 ms and 300 ms: one each in the buckets of 5, 50 and 500 (cumulative).
    expect(buckets.find((l) => l.includes('le="5"'))).toMatch(/\} 1$/);
    expect(buckets.find((l) => l.includes('le="50"'))).toMatch(/\} 2$/);
    expect(buckets.find((l) => l.includes('le="500"'))).toMatch(/\} 3$/);
    expect(lines(text, 'istio_request_duration_milliseconds_sum')).toContainEqual(
      expect.stringMatching(/response_code="200".*\} 333$/),
    );
  });

  it('counts each request into its own series when codes, gRPC statuses and flags alternate on one edge', () => {
    const m = new IstioMetrics();
    const edge = new Edge(labels());
    const requests: [number, string, string][] = [
      [200, '', '-'],
      [200, '', '-'],
      [503, '', 'UF,URX'],
      [200, '', '-'],
      [200, '14', '-'],
      [503, '', 'UF,URX'],
      [200, '', 'DC'],
      [200, '', '-'],
    ];
    for (const [code, grpc, flags] of requests) m.request(edge, code, grpc, flags, 1, 1, 1);
    const count = (code: number, grpc: string, flags: string): string | undefined =>
      lines(m.render(), 'istio_requests_total')
        .find(
          (l) =>
            l.includes(`response_code="${code}"`) &&
            l.includes(`grpc_response_status="${grpc}"`) &&
            l.includes(`response_flags="${flags}"`),
        )
        ?.split(' ')
        .pop();
    expect(lines(m.render(), 'istio_requests_total')).toHaveLength(4);
    expect(count(200, '', '-')).toBe('4');
    expect(count(503, '', 'UF,URX')).toBe('2');
    expect(count(200, '14', '-')).toBe('1');
    expect(count(200, '', 'DC')).toBe('1');
  });

  it('reports gRPC requests with request_protocol="grpc" and their status', () => {
    const m = new IstioMetrics();
    m.request(new Edge(labels({ protocol: 'grpc' })), 200, '14', '-', 1, 10, 10);
    expect(lines(m.render(), 'istio_requests_total')).toEqual([
      expect.stringMatching(
        /request_protocol="grpc",response_code="200",grpc_response_status="14",/,
      ),
    ]);
  });
});

describe('Telemetry metric overrides', () => {
  /** Requests on both sides: 2 answered 200 and 1 answered 503, from two source versions. */
  function counted(): IstioMetrics {
    const m = new IstioMetrics();
    for (const reporter of ['source', 'destination'] as const) {
      for (const [version, code, ms] of [
        ['v1', 200, 3],
        ['v2', 200, 30],
        ['v1', 503, 300],
      ] as const) {
        const edge = new Edge(labels({ reporter, source: { ...labels().source, version } }));
        m.request(edge, code, '', '-', ms, 10, 20);
      }
      const tcp = new Edge(labels({ reporter, protocol: 'tcp' }));
      m.tcpOpened(tcp);
    }
    return m;
  }

  it('renders as without overrides when none applies to a metric and side', () => {
    const m = counted();
    const plain = m.render();
    m.configure([{ metric: 'REQUEST_COUNT', mode: 'CLIENT', disabled: false }]);
    expect(m.render().split('\n').sort()).toEqual(plain.split('\n').sort());
  });

  it('leaves out a metric turned off on one side, or all metrics on both', () => {
    const m = counted();
    m.configure([{ metric: 'REQUEST_COUNT', mode: 'CLIENT', disabled: true }]);
    const text = m.render();
    const count = lines(text, 'istio_requests_total');
    expect(count).toHaveLength(3);
    expect(count.every((l) => l.startsWith('istio_requests_total{reporter="destination"'))).toBe(
      true,
    );
    expect(lines(text, 'istio_request_duration_milliseconds_count')).toHaveLength(6);
    m.configure([{ metric: 'ALL_METRICS', mode: 'CLIENT_AND_SERVER', disabled: true }]);
    expect(m.render()).toBe('');
    // A more specific override later turns one back on.
    m.configure([
      { metric: 'ALL_METRICS', mode: 'CLIENT_AND_SERVER', disabled: true },
      { metric: 'TCP_OPENED_CONNECTIONS', mode: 'SERVER', disabled: false },
    ]);
    expect(m.render().trim().split('\n')).toEqual([
      '# TYPE istio_tcp_connections_opened_total counter',
      expect.stringMatching(/^istio_tcp_connections_opened_total\{reporter="destination".*\} 1$/),
    ]);
  });

  it('sums the series a removed label told apart, counters and histograms alike', () => {
    const m = counted();
    m.configure([
      { metric: 'ALL_METRICS', mode: 'SERVER', removeTags: ['source_version', 'response_code'] },
    ]);
    const text = m.render();
    const server = (metric: string): string[] =>
      lines(text, metric).filter((l) => l.includes('reporter="destination"'));
    expect(server('istio_requests_total')).toEqual([
      expect.stringMatching(/^istio_requests_total\{[^}]*\} 3$/),
    ]);
    expect(server('istio_requests_total')[0]).not.toMatch(/source_version|response_code/);
    expect(server('istio_request_duration_milliseconds_sum')).toEqual([
      expect.stringMatching(/\} 333$/),
    ]);
    expect(server('istio_request_duration_milliseconds_bucket')).toContainEqual(
      expect.stringMatching(/le="5"\} 1$/),
    );
    expect(server('istio_request_duration_milliseconds_bucket')).toContainEqual(
      expect.stringMatching(/le="50"\} 2$/),
    );
    // Rendering sums into copies: the series themselves are untouched (a second scrape is equal).
    expect(m.render()).toBe(text);
    // The client side keeps its three series.
    expect(
      lines(text, 'istio_requests_total').filter((l) => l.includes('reporter="source"')),
    ).toHaveLength(3);
  });
});
