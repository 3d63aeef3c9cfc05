// Every expression of the Grafana dashboard names metrics (and labels) the gateway actually
// exports: a real data plane (scheduler on, one simulated engine, one request so labelled series
// exist) is scraped and each selector, `by (...)` label and variable query is checked against it.
import { App, Chart } from 'cdk8s'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { type Gateway, startGateway } from '../dataplane/gateway.js'
import { type SimHandle, startSimulator } from '../hack/sim/index.js'
import { ConfigVolume, manifests } from '../test/helpers/config.js'
import {
  DASHBOARD_FILE,
  dashboardConfigMap,
  dashboardExpressions,
  grafanaDashboard,
} from './dashboard.js'
import { installObjects } from './install.js'

let sim: SimHandle
let gw: Gateway
let vol: ConfigVolume
/** Metric family → its type and the label names seen on its samples. */
const families = new Map<string, { type: string; labels: Set<string> }>()
/** Labels Prometheus adds at scrape time (every target has them). */
const TARGET_LABELS = new Set(['instance', 'job'])

beforeAll(async () => {
  sim = await startSimulator({
    name: 'dash',
    host: '127.0.0.90',
    port: 0,
    model: 'm',
    metricsFormat: 'vllm',
    timeScale: 0.01,
  })
  vol = await ConfigVolume.create({
    'gateway.yaml': manifests(
      [{ name: 'pool', model: 'm', endpoints: [{ name: 'p', address: sim.host, port: sim.port }] }],
      [{ name: 'r', modelName: 'm', rules: [{ targetModels: [{ modelServerName: 'pool' }] }] }],
    ),
  })
  gw = await startGateway({ config: { kind: 'manifests', paths: [vol.dir] }, port: 0 })
  const res = await fetch(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      model: 'm',
      messages: [{ role: 'user', content: 'hi' }],
      max_tokens: 3,
      stream: true,
    }),
  })
  await res.text()
  // Engine gauges come with the first scrape of the engine (every 200 ms).
  const text = await vi.waitFor(
    async () => {
      const t = await (await fetch(`${gw.url}/metrics`)).text()
      if (!t.includes('infer_gateway_engine_kv_cache_usage_ratio{'))
        throw new Error('no engine gauge on /metrics yet')
      return t
    },
    { timeout: 10_000, interval: 50 },
  )
  for (const line of text.split('\n')) {
    const t = /^# TYPE (\S+) (\S+)$/.exec(line)
    if (t !== null) {
      families.set(t[1] as string, { type: t[2] as string, labels: new Set() })
      continue
    }
    if (line === '' || line.startsWith('#')) continue
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s/.exec(line)
    if (m === null) continue
    const fam = familyOf(m[1] as string)
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="/g))
      if (l[1] !== 'le') fam?.labels.add(l[1] as string)
  }
}, 60_000)

afterAll(async () => {
  await gw?.shutdown({ deadlineMs: 1000 })
  await sim?.close()
  await vol?.remove()
})

/** The family a sample name belongs to (histograms export _bucket/_sum/_count). */
function familyOf(name: string): { type: string; labels: Set<string> } | undefined {
  const f = families.get(name)
  if (f !== undefined) return f
  const base = name.replace(/_(bucket|sum|count)$/, '')
  const h = families.get(base)
  return h?.type === 'histogram' ? h : undefined
}

/**
 * Label names of a family: from its samples in the scrape, or, for a family this traffic did not
 * produce (providers, ejections), as the running gateway's registry declares them.
 */
function labelsOf(name: string, fam: { labels: Set<string> }): Set<string> {
  if (fam.labels.size > 0) return fam.labels
  const base = families.has(name) ? name : name.replace(/_(bucket|sum|count)$/, '')
  const m = gw.metrics.registry.getSingleMetric(base) as
    | { labelNames?: readonly string[] }
    | undefined
  // prom-client keeps the configured label names on the metric; without them the check must fail.
  if (m?.labelNames === undefined) throw new Error(`no label names for ${base}`)
  return new Set(m.labelNames)
}

/** `metric{matchers}` selectors of an expression, with the label names they match on. */
function selectors(expr: string): { name: string; labels: string[] }[] {
  const out: { name: string; labels: string[] }[] = []
  for (const m of expr.matchAll(/\b(infer_gateway_[a-z0-9_]+)(\{([^}]*)\})?/g)) {
    const labels = [...(m[3] ?? '').matchAll(/([a-z_]+)\s*(?:=~|!~|!=|=)/g)].map(
      (x) => x[1] as string,
    )
    out.push({ name: m[1] as string, labels })
  }
  return out
}

describe('Grafana dashboard', () => {
  const exprs = dashboardExpressions()

  it('has panels over the new series (TTFT, TPOT, endpoints, scheduler, engines)', () => {
    const all = exprs.join('\n')
    for (const name of [
      'infer_gateway_time_to_first_token_seconds_bucket',
      'infer_gateway_time_per_output_token_seconds_bucket',
      'infer_gateway_e2e_request_duration_seconds_bucket',
      'infer_gateway_endpoint_requests_total',
      'infer_gateway_endpoint_errors_total',
      'infer_gateway_endpoint_inflight_requests',
      'infer_gateway_scheduler_decision_duration_seconds_bucket',
      'infer_gateway_scheduler_picks_total',
      'infer_gateway_endpoint_ejections_total',
      'infer_gateway_endpoint_readmissions_total',
      'infer_gateway_engine_kv_cache_usage_ratio',
      'infer_gateway_engine_waiting_requests',
      'infer_gateway_queue_depth',
    ])
      expect(all).toContain(name)
  })

  it('every expression names metrics the running data plane exports, with their labels', () => {
    expect(families.size).toBeGreaterThan(20)
    const problems: string[] = []
    for (const expr of exprs) {
      const sels = selectors(expr)
      if (sels.length === 0) problems.push(`no gateway metric in: ${expr}`)
      const known = new Set<string>(TARGET_LABELS)
      for (const s of sels) {
        const fam = familyOf(s.name)
        if (fam === undefined) {
          problems.push(`${s.name} is not exported (in: ${expr})`)
          continue
        }
        const labels = labelsOf(s.name, fam)
        for (const l of labels) known.add(l)
        for (const l of s.labels) if (!labels.has(l)) problems.push(`${s.name} has no label ${l}`)
      }
      // Aggregation labels must exist on the series aggregated (le is the histogram's own).
      for (const by of expr.matchAll(/by \(([^)]*)\)/g))
        for (const l of (by[1] as string).split(',').map((x) => x.trim()))
          if (l !== 'le' && !known.has(l)) problems.push(`by (${l}) on series without it: ${expr}`)
    }
    expect(problems).toEqual([])
  })

  it('checks label matchers against series that carry labels', () => {
    // The label check above is only meaningful if the labelled families have samples here.
    for (const name of [
      'infer_gateway_requests_total',
      'infer_gateway_time_to_first_token_seconds',
      'infer_gateway_endpoint_requests_total',
      'infer_gateway_engine_kv_cache_usage_ratio',
      'infer_gateway_scheduler_decision_duration_seconds',
    ])
      expect(familyOf(name)?.labels.size ?? 0).toBeGreaterThan(0)
  })

  it('is valid Grafana JSON with stable ids and ships as a sidecar ConfigMap', () => {
    const d = grafanaDashboard()
    const panels = d['panels'] as { id: number; gridPos: { w: number; x: number } }[]
    expect(new Set(panels.map((p) => p.id)).size).toBe(panels.length)
    for (const p of panels) expect(p.gridPos.x + p.gridPos.w).toBeLessThanOrEqual(24)
    const chart = new Chart(new App(), 'c')
    dashboardConfigMap(chart, 'infer-gateway-system')
    const [cm] = chart.toJson() as {
      metadata: { labels: Record<string, string> }
      data: Record<string, string>
    }[]
    expect(cm?.metadata.labels['grafana_dashboard']).toBe('1')
    expect(JSON.parse(cm?.data[DASHBOARD_FILE] ?? '{}')).toEqual(d)
  })

  it('is in the install manifests only when asked for (grafanaDashboard)', () => {
    const named = (objs: Record<string, unknown>[]) =>
      objs.filter((o) => (o['metadata'] as { name?: string }).name === 'infer-gateway-dashboard')
    expect(named(installObjects())).toEqual([])
    const found = named(installObjects({ grafanaDashboard: true, namespace: 'obs' }))
    expect(found).toHaveLength(1)
    const cm = found[0] ?? {}
    expect(cm['kind']).toBe('ConfigMap')
    expect((cm['metadata'] as { namespace?: string }).namespace).toBe('obs')
  })
})
