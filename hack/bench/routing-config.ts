// Standalone gateway configuration for scheduling tests and the routing benchmark: one ModelServer
// (with an optional scheduler profile) over a list of static endpoints, plus ModelRoutes for the
// base model and its LoRA adapters. JSON documents (valid YAML) so no template can mis-indent.

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

export interface RoutingConfig {
  readonly server?: string
  readonly model: string
  readonly loras?: readonly string[]
  readonly endpoints: readonly RoutingEndpoint[]
  /** Omit for the data plane's default profile. */
  readonly plugins?: readonly SchedulerPluginSpec[]
  /** Retries after the first try (Kthena's `retry.attempts`). */
  readonly retries?: number
  readonly engine?: 'vLLM' | 'SGLang' | 'TGI'
}

export function routingManifests(c: RoutingConfig): string {
  const server = c.server ?? 'pool'
  const docs: unknown[] = [
    {
      apiVersion: 'networking.matrixinfer.ai/v1alpha1',
      kind: 'ModelServer',
      metadata: { name: server },
      spec: {
        inferenceEngine: c.engine ?? 'vLLM',
        workloadSelector: { matchLabels: { app: server } },
        workloadPort: { port: c.endpoints[0]?.port ?? 8000 },
        trafficPolicy: {
          retry: { attempts: c.retries ?? 2, retryInterval: '10ms' },
          timeouts: { connect: '1s' },
        },
        ...(c.plugins !== undefined ? { scheduler: { plugins: c.plugins } } : {}),
      },
    },
    {
      apiVersion: 'standalone.infer-gateway.io/v1alpha1',
      kind: 'StaticEndpoints',
      metadata: { name: server },
      endpoints: c.endpoints.map((e) => ({
        name: e.name,
        address: e.address,
        port: e.port,
        ...(e.labels !== undefined ? { labels: e.labels } : {}),
      })),
    },
    {
      apiVersion: 'networking.matrixinfer.ai/v1alpha1',
      kind: 'ModelRoute',
      metadata: { name: 'base' },
      spec: { modelName: c.model, rules: [{ targetModels: [{ modelServerName: server }] }] },
    },
  ]
  if (c.loras !== undefined && c.loras.length > 0) {
    // One route per 10 adapters: the CRD caps loraAdapters at 10 entries.
    for (let i = 0; i < c.loras.length; i += 10) {
      docs.push({
        apiVersion: 'networking.matrixinfer.ai/v1alpha1',
        kind: 'ModelRoute',
        metadata: { name: `loras-${i / 10}` },
        spec: {
          loraAdapters: c.loras.slice(i, i + 10),
          rules: [{ targetModels: [{ modelServerName: server }] }],
        },
      })
    }
  }
  return docs.map((d) => JSON.stringify(d, null, 2)).join('\n---\n')
}
