// The Grafana dashboard over the data plane's /metrics, generated beside the install manifests
// (`npm run manifests` writes dist/infer-gateway-dashboard.json) and optionally installed as a
// ConfigMap labelled `grafana_dashboard: "1"` (the Grafana Helm chart's sidecar picks those up).
// Every expression names only series the gateway exports: cdk8s/dashboard.test.ts scrapes a running
// data plane and checks each metric and label used here against what it serves.
import { mkdir, writeFile } from 'node:fs/promises'
import { dirname } from 'node:path'
import { ApiObject } from 'cdk8s'
import type { Construct } from 'constructs'
import { COMMON_LABELS } from './crds.js'

export const DASHBOARD_UID = 'infer-gateway'
export const DASHBOARD_FILE = 'infer-gateway-dashboard.json'

type Unit = 's' | 'reqps' | 'percentunit' | 'short' | 'none' | 'µs'

interface Panel {
  readonly title: string
  readonly description: string
  readonly unit: Unit
  readonly exprs: readonly (readonly [expr: string, legend: string])[]
  /** Grid width (of 24); default 12. */
  readonly w?: number
  readonly kind?: 'timeseries' | 'stat'
}

interface Row {
  readonly title: string
  readonly panels: readonly Panel[]
}

/** The label filter every request-level panel carries (Grafana template variables). */
const M = 'model=~"$model"'
const q = (p: number, metric: string, by: string, filter = M): string =>
  `histogram_quantile(${p}, sum by (le, ${by}) (rate(${metric}_bucket{${filter}}[$__rate_interval])))`

const ROWS: readonly Row[] = [
  {
    title: 'Traffic',
    panels: [
      {
        title: 'Requests by model and status',
        description: 'Inference requests per second, by model and status class.',
        unit: 'reqps',
        exprs: [
          [
            `sum by (model, status_class) (rate(infer_gateway_requests_total{${M}}[$__rate_interval]))`,
            '{{model}} {{status_class}}',
          ],
        ],
      },
      {
        title: 'Error ratio (5xx)',
        description:
          'Share of requests answered 5xx (gateway or engine). 429s are load shedding and shown apart.',
        unit: 'percentunit',
        exprs: [
          [
            `sum by (model) (rate(infer_gateway_requests_total{${M}, status_class="5xx"}[$__rate_interval])) / sum by (model) (rate(infer_gateway_requests_total{${M}}[$__rate_interval]))`,
            '{{model}} 5xx',
          ],
          [
            `sum by (model) (rate(infer_gateway_requests_total{${M}, code=~"rate_limit_exceeded|queue_full|tenant_queue_full"}[$__rate_interval])) / sum by (model) (rate(infer_gateway_requests_total{${M}}[$__rate_interval]))`,
            '{{model}} shed (429)',
          ],
        ],
      },
      {
        title: 'Tokens per second',
        description: 'Input and output tokens as reported by engine and provider usage.',
        unit: 'short',
        exprs: [
          [
            `sum by (model, type) (rate(infer_gateway_tokens_total{${M}}[$__rate_interval]))`,
            '{{model}} {{type}}',
          ],
        ],
      },
      {
        title: 'In flight',
        description: 'Requests being proxied, per data-plane pod (scrape target).',
        unit: 'short',
        exprs: [['sum by (instance) (infer_gateway_inflight_requests)', '{{instance}}']],
      },
    ],
  },
  {
    title: 'Latency (router-measured)',
    panels: [
      {
        title: 'Time to first token',
        description:
          'Request received to first generated token (first SSE event with content; whole body when not streamed).',
        unit: 's',
        exprs: [
          [q(0.5, 'infer_gateway_time_to_first_token_seconds', 'model'), 'p50 {{model}}'],
          [q(0.95, 'infer_gateway_time_to_first_token_seconds', 'model'), 'p95 {{model}}'],
          [q(0.99, 'infer_gateway_time_to_first_token_seconds', 'model'), 'p99 {{model}}'],
        ],
      },
      {
        title: 'Time per output token',
        description: 'Mean inter-token latency of each stream.',
        unit: 's',
        exprs: [
          [q(0.5, 'infer_gateway_time_per_output_token_seconds', 'model'), 'p50 {{model}}'],
          [q(0.95, 'infer_gateway_time_per_output_token_seconds', 'model'), 'p95 {{model}}'],
        ],
      },
      {
        title: 'End to end by route and target',
        description:
          'Request received to last byte, p95, per route and target (server or provider).',
        unit: 's',
        exprs: [
          [
            q(
              0.95,
              'infer_gateway_e2e_request_duration_seconds',
              'route, target',
              `${M}, route=~"$route"`,
            ),
            '{{route}} → {{target}}',
          ],
        ],
      },
      {
        title: 'First upstream byte',
        description: 'Request received to the first body byte from the engine (includes queueing).',
        unit: 's',
        exprs: [[q(0.95, 'infer_gateway_time_to_first_byte_seconds', 'model'), 'p95 {{model}}']],
      },
    ],
  },
  {
    title: 'Endpoints and engines',
    panels: [
      {
        title: 'Responses per endpoint',
        description: 'Answers from each engine endpoint, by status class.',
        unit: 'reqps',
        exprs: [
          [
            'sum by (server, upstream_host, status_class) (rate(infer_gateway_endpoint_requests_total{server=~"$server"}[$__rate_interval]))',
            '{{upstream_host}} {{status_class}}',
          ],
        ],
      },
      {
        title: 'Endpoint errors by reason',
        description: 'Failed attempts (connect, 5xx, timeouts) and cut responses per endpoint.',
        unit: 'reqps',
        exprs: [
          [
            'sum by (upstream_host, reason) (rate(infer_gateway_endpoint_errors_total{server=~"$server"}[$__rate_interval]))',
            '{{upstream_host}} {{reason}}',
          ],
        ],
      },
      {
        title: 'In flight per endpoint',
        description: "The gateway's outstanding requests at each endpoint (all data-plane pods).",
        unit: 'short',
        exprs: [
          [
            'sum by (upstream_host) (infer_gateway_endpoint_inflight_requests{server=~"$server"})',
            '{{upstream_host}}',
          ],
        ],
      },
      {
        title: 'Engine KV-cache usage',
        description: "Each engine's KV-cache usage at its last scrape.",
        unit: 'percentunit',
        exprs: [
          [
            'max by (upstream_host) (infer_gateway_engine_kv_cache_usage_ratio{server=~"$server"})',
            '{{upstream_host}}',
          ],
        ],
      },
      {
        title: 'Engine queue (waiting) and batch (running)',
        description: 'Requests queued inside each engine and in its running batch.',
        unit: 'short',
        exprs: [
          [
            'max by (upstream_host) (infer_gateway_engine_waiting_requests{server=~"$server"})',
            'waiting {{upstream_host}}',
          ],
          [
            'max by (upstream_host) (infer_gateway_engine_running_requests{server=~"$server"})',
            'running {{upstream_host}}',
          ],
        ],
      },
      {
        title: 'Gateway queues',
        description:
          "Requests waiting in the gateway's admission queue (fairness) and for an engine connection.",
        unit: 'short',
        exprs: [
          [
            'sum by (server) (infer_gateway_queue_depth{server=~"$server"})',
            'admission {{server}}',
          ],
          [
            'sum by (server) (infer_gateway_upstream_waiting_requests{server=~"$server"})',
            'connection {{server}}',
          ],
        ],
      },
    ],
  },
  {
    title: 'Scheduler and health',
    panels: [
      {
        title: 'Decision time',
        description: 'Time to order the endpoints of one request, p50 and p99.',
        unit: 's',
        exprs: [
          [
            q(
              0.5,
              'infer_gateway_scheduler_decision_duration_seconds',
              'server',
              'server=~"$server"',
            ),
            'p50 {{server}}',
          ],
          [
            q(
              0.99,
              'infer_gateway_scheduler_decision_duration_seconds',
              'server',
              'server=~"$server"',
            ),
            'p99 {{server}}',
          ],
        ],
      },
      {
        title: 'Picks by deciding plugin',
        description: "Which plugin's score decided each pick (single: one candidate).",
        unit: 'reqps',
        exprs: [
          [
            'sum by (server, plugin) (rate(infer_gateway_scheduler_picks_total{server=~"$server"}[$__rate_interval]))',
            '{{server}} {{plugin}}',
          ],
        ],
      },
      {
        title: 'Ejected endpoints',
        description: 'Endpoints passive health keeps out of rotation now.',
        unit: 'short',
        kind: 'stat',
        w: 6,
        exprs: [
          [
            'sum(max by (upstream_host) (infer_gateway_endpoint_ejected{server=~"$server"}))',
            'ejected',
          ],
        ],
      },
      {
        title: 'Ejections and readmissions',
        description: 'Ejection episodes by reason, and endpoints back in rotation.',
        unit: 'short',
        w: 18,
        exprs: [
          [
            'sum by (reason) (increase(infer_gateway_endpoint_ejections_total[$__rate_interval]))',
            'ejected: {{reason}}',
          ],
          [
            'sum(increase(infer_gateway_endpoint_readmissions_total[$__rate_interval]))',
            'readmitted',
          ],
        ],
      },
    ],
  },
  {
    title: 'Providers, fallbacks and limits',
    panels: [
      {
        title: 'Provider requests',
        description: 'Requests sent to external providers, by provider and status class.',
        unit: 'reqps',
        exprs: [
          [
            'sum by (provider, status_class) (rate(infer_gateway_provider_requests_total[$__rate_interval]))',
            '{{provider}} {{status_class}}',
          ],
        ],
      },
      {
        title: 'Provider cost per hour',
        description: 'Estimated from the configured prices, by provider and tier.',
        unit: 'short',
        exprs: [
          [
            'sum by (provider, tier, currency) (rate(infer_gateway_provider_cost_total[$__rate_interval])) * 3600',
            '{{provider}} {{tier}} ({{currency}})',
          ],
        ],
      },
      {
        title: 'Fallbacks',
        description: 'Requests handed to the next target of a rule, by route and reason.',
        unit: 'reqps',
        exprs: [
          [
            'sum by (route, from, to, reason) (rate(infer_gateway_fallbacks_total[$__rate_interval]))',
            '{{route}}: {{from}} → {{to}} ({{reason}})',
          ],
        ],
      },
      {
        title: 'Rate-limit decisions',
        description:
          'Admissions by tier and result (allowed, limited, budget_exhausted, fail_open).',
        unit: 'reqps',
        exprs: [
          [
            'sum by (tier, result) (rate(infer_gateway_ratelimit_decisions_total[$__rate_interval]))',
            '{{tier}} {{result}}',
          ],
        ],
      },
      {
        title: 'Upstream attempt failures',
        description: 'Failed attempts per server and reason (each may have been retried).',
        unit: 'reqps',
        exprs: [
          [
            'sum by (server, reason) (rate(infer_gateway_upstream_attempt_failures_total{server=~"$server"}[$__rate_interval]))',
            '{{server}} {{reason}}',
          ],
        ],
      },
    ],
  },
  {
    title: 'Configuration',
    panels: [
      {
        title: 'Snapshot version',
        description: 'Routing snapshot in use; pods that differ are lagging.',
        unit: 'none',
        kind: 'stat',
        w: 8,
        exprs: [['min(infer_gateway_snapshot_version)', 'oldest pod']],
      },
      {
        title: 'Seconds since last good reload',
        description: 'Time since each pod last loaded its configuration successfully.',
        unit: 's',
        kind: 'stat',
        w: 8,
        exprs: [
          ['time() - min(infer_gateway_config_last_reload_success_timestamp_seconds)', 'oldest'],
        ],
      },
      {
        title: 'Reload failures',
        description: 'Configuration reloads that failed (the previous config keeps serving).',
        unit: 'short',
        w: 8,
        exprs: [
          [
            'sum(increase(infer_gateway_config_reloads_total{result="failure"}[$__rate_interval]))',
            'failures',
          ],
        ],
      },
    ],
  },
]

// biome-ignore lint/suspicious/noTemplateCurlyInString: Grafana's variable syntax (the data source picked on the dashboard)
const DS = { type: 'prometheus', uid: '${datasource}' }

function variable(name: string, label: string, query: string): Record<string, unknown> {
  return {
    name,
    label,
    type: 'query',
    datasource: DS,
    query: { query, refId: `${name}-values` },
    definition: query,
    refresh: 2,
    includeAll: true,
    multi: true,
    allValue: '.*',
    current: { selected: true, text: ['All'], value: ['$__all'] },
    sort: 1,
  }
}

/** The dashboard as Grafana imports it (schema 39; panel and row ids are stable). */
export function grafanaDashboard(): Record<string, unknown> {
  const panels: Record<string, unknown>[] = []
  let id = 1
  let y = 0
  for (const row of ROWS) {
    panels.push({
      id: id++,
      type: 'row',
      title: row.title,
      collapsed: false,
      gridPos: { h: 1, w: 24, x: 0, y },
      panels: [],
    })
    y += 1
    let x = 0
    for (const p of row.panels) {
      const w = p.w ?? 12
      if (x + w > 24) {
        x = 0
        y += 8
      }
      panels.push({
        id: id++,
        type: p.kind ?? 'timeseries',
        title: p.title,
        description: p.description,
        datasource: DS,
        gridPos: { h: 8, w, x, y },
        fieldConfig: { defaults: { unit: p.unit }, overrides: [] },
        options:
          p.kind === 'stat'
            ? { reduceOptions: { calcs: ['lastNotNull'] }, colorMode: 'value' }
            : { legend: { displayMode: 'list', placement: 'bottom' }, tooltip: { mode: 'multi' } },
        targets: p.exprs.map(([expr, legend], i) => ({
          refId: String.fromCharCode(65 + i),
          datasource: DS,
          expr,
          legendFormat: legend,
        })),
      })
      x += w
    }
    y += 8
  }
  return {
    uid: DASHBOARD_UID,
    title: 'Infer Gateway',
    description:
      'Data plane: traffic, router-measured latency, endpoints and engines, scheduler, providers.',
    tags: ['infer-gateway', 'llm'],
    schemaVersion: 39,
    version: 1,
    editable: true,
    time: { from: 'now-1h', to: 'now' },
    refresh: '30s',
    templating: {
      list: [
        {
          name: 'datasource',
          label: 'Data source',
          type: 'datasource',
          query: 'prometheus',
          current: {},
        },
        variable('model', 'Model', 'label_values(infer_gateway_requests_total, model)'),
        variable(
          'route',
          'Route',
          'label_values(infer_gateway_e2e_request_duration_seconds_count, route)',
        ),
        variable(
          'server',
          'Server',
          'label_values(infer_gateway_endpoint_inflight_requests, server)',
        ),
      ],
    },
    panels,
  }
}

/** Every PromQL expression of the dashboard (panel targets and variable queries). */
export function dashboardExpressions(d: Record<string, unknown> = grafanaDashboard()): string[] {
  const out: string[] = []
  for (const p of d['panels'] as { targets?: { expr: string }[] }[])
    for (const t of p.targets ?? []) out.push(t.expr)
  const vars = (d['templating'] as { list: { definition?: string }[] }).list
  for (const v of vars) if (v.definition !== undefined) out.push(v.definition)
  return out
}

/** The dashboard as a ConfigMap Grafana's dashboard sidecar loads (label grafana_dashboard=1). */
export function dashboardConfigMap(scope: Construct, namespace: string): ApiObject {
  return new ApiObject(scope, 'grafana-dashboard', {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: {
      name: 'infer-gateway-dashboard',
      namespace,
      labels: { ...COMMON_LABELS, grafana_dashboard: '1' },
    },
    data: { [DASHBOARD_FILE]: JSON.stringify(grafanaDashboard(), null, 2) },
  })
}

/** Writes the dashboard JSON (as Grafana imports it) to `file`; returns the path. */
export async function writeDashboard(file: string): Promise<string> {
  await mkdir(dirname(file), { recursive: true })
  await writeFile(file, `${JSON.stringify(grafanaDashboard(), null, 2)}\n`)
  return file
}
