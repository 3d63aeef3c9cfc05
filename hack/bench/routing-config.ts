// Standalone gateway configuration for scheduling tests and the routing benchmarks: one ModelServer
// (with an optional scheduler profile, prefill/decode groups and KV connector) over a list of
// static endpoints, a ModelRoute for the base model (with an optional fallback, e.g. spill-over to
// a provider) and ModelRoutes for its LoRA adapters, plus the providers and gateway policy a
// fallback or tier needs. JSON documents (valid YAML) so no template can mis-indent. Every bench
// writes its config here, so a change to the CRDs is made once.
import type { z } from 'zod'
import {
  API_VERSION,
  type externalModelProviderSpecSchema,
  type gatewayPolicySchema,
  type kvConnectorTypes,
  type ruleFallbackSchema,
  STANDALONE_API_VERSION,
} from '../../api/index.js'

export interface RoutingEndpoint {
  readonly name: string
  readonly address: string
  readonly port: number
  readonly labels?: Readonly<Record<string, string>>
}

export interface SchedulerPluginSpec {
  readonly name: string
  readonly weight?: number
  readonly args?: Readonly<Record<string, unknown>>
}

/** Prefill/decode disaggregation: the ModelServer's `workloadSelector.pdGroup` and `kvConnector`. */
export interface RoutingPd {
  /** Endpoint label whose value pairs prefill endpoints with decode endpoints. */
  readonly groupKey: string
  readonly prefillLabels: Readonly<Record<string, string>>
  readonly decodeLabels: Readonly<Record<string, string>>
  /** Omit for the connector the engine implies (Kthena's rule: sglang for SGLang, else http). */
  readonly connector?: (typeof kvConnectorTypes)[number]
}

/** An ExternalModelProvider document (a fallback target names it). */
export interface RoutingProvider {
  readonly name: string
  readonly spec: z.input<typeof externalModelProviderSpecSchema>
}

export interface RoutingConfig {
  readonly server?: string
  readonly model: string
  readonly loras?: readonly string[]
  readonly endpoints: readonly RoutingEndpoint[]
  /** Omit for the data plane's default profile. */
  readonly plugins?: readonly SchedulerPluginSpec[]
  /** Retries after the first try (Kthena's `retry.attempts`); 0 = one try, the default policy's. */
  readonly retries?: number
  readonly engine?: 'vLLM' | 'SGLang' | 'TGI'
  readonly pd?: RoutingPd
  /** The base route's rule fallback (targets, `on`, spill-over `saturation`). */
  readonly fallback?: z.input<typeof ruleFallbackSchema>
  readonly providers?: readonly RoutingProvider[]
  /** Spec of the GatewayPolicy `gateway` (API keys, tiers). */
  readonly policy?: z.input<typeof gatewayPolicySchema>['spec']
}

/** A simulated fleet's members (hack/bench/routing-fleet.ts) as endpoints, labelled per member. */
export function fleetEndpoints(
  members: readonly { readonly name: string; readonly host: string; readonly port: number }[],
  labels?: (name: string) => Readonly<Record<string, string>>,
): RoutingEndpoint[] {
  return members.map((m) => ({
    name: m.name,
    address: m.host,
    port: m.port,
    ...(labels !== undefined ? { labels: labels(m.name) } : {}),
  }))
}

/**
 * One ModelServer `bench` over one engine `sim-0`, no retries: the proxy path with nothing else
 * on it (bench:proxy, proxy-cost, proxy-tail, proxy-workers, bench:tracing).
 */
export function singleEngineManifests(model: string, host: string, port: number): string {
  return routingManifests({
    server: 'bench',
    model,
    endpoints: [{ name: 'sim-0', address: host, port }],
    retries: 0,
  })
}

export function routingManifests(c: RoutingConfig): string {
  const server = c.server ?? 'pool'
  const pd = c.pd
  const docs: unknown[] = [
    {
      apiVersion: API_VERSION,
      kind: 'ModelServer',
      metadata: { name: server },
      spec: {
        inferenceEngine: c.engine ?? 'vLLM',
        workloadSelector: {
          matchLabels: { app: server },
          ...(pd !== undefined
            ? {
                pdGroup: {
                  groupKey: pd.groupKey,
                  prefillLabels: pd.prefillLabels,
                  decodeLabels: pd.decodeLabels,
                },
              }
            : {}),
        },
        workloadPort: { port: c.endpoints[0]?.port ?? 8000 },
        ...(pd?.connector !== undefined ? { kvConnector: { type: pd.connector } } : {}),
        trafficPolicy: {
          retry: { attempts: c.retries ?? 2, retryInterval: '10ms' },
          timeouts: { connect: '1s' },
        },
        ...(c.plugins !== undefined ? { scheduler: { plugins: c.plugins } } : {}),
      },
    },
    {
      apiVersion: STANDALONE_API_VERSION,
      kind: 'StaticEndpoints',
      metadata: { name: server },
      endpoints: c.endpoints.map((e) => ({
        name: e.name,
        address: e.address,
        port: e.port,
        ...(e.labels !== undefined ? { labels: e.labels } : {}),
      })),
    },
    ...(c.providers ?? []).map((p) => ({
      apiVersion: API_VERSION,
      kind: 'ExternalModelProvider',
      metadata: { name: p.name },
      spec: p.spec,
    })),
    {
      apiVersion: API_VERSION,
      kind: 'ModelRoute',
      metadata: { name: 'base' },
      spec: {
        modelName: c.model,
        rules: [
          {
            targetModels: [{ modelServerName: server }],
            ...(c.fallback !== undefined ? { fallback: c.fallback } : {}),
          },
        ],
      },
    },
  ]
  if (c.loras !== undefined && c.loras.length > 0) {
    // One route per 10 adapters: the CRD caps loraAdapters at 10 entries.
    for (let i = 0; i < c.loras.length; i += 10) {
      docs.push({
        apiVersion: API_VERSION,
        kind: 'ModelRoute',
        metadata: { name: `loras-${i / 10}` },
        spec: {
          loraAdapters: c.loras.slice(i, i + 10),
          rules: [{ targetModels: [{ modelServerName: server }] }],
        },
      })
    }
  }
  if (c.policy !== undefined)
    docs.push({
      apiVersion: API_VERSION,
      kind: 'GatewayPolicy',
      metadata: { name: 'gateway' },
      spec: c.policy,
    })
  return docs.map((d) => JSON.stringify(d, null, 2)).join('\n---\n')
}
