// The Grafana dashboards of the chart: rendered as ConfigMaps for Grafana's sidecar only when
// enabled, and built on Istio's standard metrics and labels alone (the end-to-end test runs every
// query against a real Prometheus: test/netns/observability.test.ts).
import { render, type KubeObject } from './helm';
import { dashboard, dashboardText, DASHBOARDS, queries } from './dashboards';

const STANDARD_METRICS = [
  'istio_requests_total',
  'istio_request_duration_milliseconds_bucket',
  'istio_request_bytes_bucket',
  'istio_response_bytes_bucket',
  'istio_tcp_sent_bytes_total',
  'istio_tcp_received_bytes_total',
  'istio_tcp_connections_opened_total',
  'istio_tcp_connections_closed_total',
];
const STANDARD_LABELS = [
  'reporter',
  'source_workload',
  'source_workload_namespace',
  'source_principal',
  'source_app',
  'source_version',
  'destination_workload',
  'destination_workload_namespace',
  'destination_principal',
  'destination_app',
  'destination_version',
  'destination_service',
  'destination_service_name',
  'destination_service_namespace',
  'request_protocol',
  'response_code',
  'grpc_response_status',
  'response_flags',
  'connection_security_policy',
  'le',
];

interface ConfigMap extends KubeObject {
  data: Record<string, string>;
}

describe('the Grafana dashboards', () => {
  it('are not rendered by default', async () => {
    const objects = await render({});
    expect(objects.filter((o) => o.metadata.name.includes('dashboard'))).toEqual([]);
  });

  it("are three ConfigMaps for Grafana's sidecar when enabled, holding the files", async () => {
    const objects = await render({
      grafana: {
        dashboards: {
          enabled: true,
          namespace: 'monitoring',
          annotations: { grafana_folder: 'Mooring' },
        },
      },
    });
    const maps = objects.filter((o): o is ConfigMap => o.metadata.name.includes('-dashboard-'));
    expect(maps.map((m) => m.metadata.name).sort()).toEqual([
      'mooring-dashboard-mesh',
      'mooring-dashboard-service',
      'mooring-dashboard-workload',
    ]);
    for (const m of maps) {
      const name = m.metadata.name.replace('mooring-dashboard-', '');
      expect(m.metadata.namespace).toBe('monitoring');
      expect(m.metadata.labels?.grafana_dashboard).toBe('1');
      expect(m.metadata.annotations?.grafana_folder).toBe('Mooring');
      expect(JSON.parse(m.data[`mooring-${name}.json`] as string)).toEqual(
        JSON.parse(dashboardText(name)),
      );
    }
  });

  it.each(DASHBOARDS)(
    '%s uses only the standard metrics and labels, with a data source variable',
    (name) => {
      const d = dashboard(name);
      expect(d.uid).toBe(`mooring-${name}`);
      expect(d.templating.list[0]).toMatchObject({ name: 'datasource', type: 'datasource' });
      const all = queries(d);
      expect(all.length).toBeGreaterThanOrEqual(8);
      for (const [panel, expr] of all) {
        const metrics = expr.match(/\b[a-z_]+(?=\{)/g) ?? [];
        expect({ panel, unknown: metrics.filter((m) => !STANDARD_METRICS.includes(m)) }).toEqual({
          panel,
          unknown: [],
        });
        const labels = [
          ...[...expr.matchAll(/by \(([^)]*)\)/g)].flatMap((m) =>
            (m[1] as string).split(',').map((l) => l.trim()),
          ),
          ...[...expr.matchAll(/([a-z_]+)(?:=~|!~|!=|=)"/g)].map((m) => m[1] as string),
        ];
        expect({ panel, unknown: labels.filter((l) => !STANDARD_LABELS.includes(l)) }).toEqual({
          panel,
          unknown: [],
        });
      }
      const ids = d.panels.map((p) => p.id);
      expect(new Set(ids).size).toBe(ids.length);
    },
  );
});
