// Standalone configuration for provider tests: ExternalModelProvider / ModelRoute documents as
// YAML, a secrets volume laid out like a mounted Secret, and a gateway wired to both.
import type { AccessLogEntry } from '../../dataplane/access-log.js'
import { type Gateway, type GatewayOptions, startGateway } from '../../dataplane/gateway.js'
import { RoundRobinPicker } from '../../dataplane/picker.js'
import { ConfigVolume } from './config.js'

export type Obj = Record<string, unknown>

export function providerDoc(name: string, spec: Obj): Obj {
  return {
    apiVersion: 'networking.matrixinfer.ai/v1alpha1',
    kind: 'ExternalModelProvider',
    metadata: { name },
    spec: { allowInsecureHTTP: true, ...spec },
  }
}

export function routeDoc(name: string, modelName: string, rules: Obj[]): Obj {
  return {
    apiVersion: 'networking.matrixinfer.ai/v1alpha1',
    kind: 'ModelRoute',
    metadata: { name },
    spec: { modelName, rules },
  }
}

export function serverDocs(
  name: string,
  endpoints: { name: string; address: string; port: number; ready?: boolean }[],
  extra: Obj = {},
): Obj[] {
  return [
    {
      apiVersion: 'networking.matrixinfer.ai/v1alpha1',
      kind: 'ModelServer',
      metadata: { name },
      spec: {
        inferenceEngine: 'vLLM',
        workloadSelector: { matchLabels: { app: name } },
        workloadPort: { port: endpoints[0]?.port ?? 8000 },
        ...extra,
      },
    },
    {
      apiVersion: 'standalone.infer-gateway.io/v1alpha1',
      kind: 'StaticEndpoints',
      metadata: { name },
      endpoints,
    },
  ]
}

/** One provider → one route with the provider's name as the model name. */
export function simpleRoute(provider: string, model = provider): Obj {
  return routeDoc(provider, model, [{ targetModels: [{ externalModelProviderName: provider }] }])
}

export function yaml(docs: readonly Obj[]): string {
  return docs.map((d) => JSON.stringify(d, null, 2)).join('\n---\n')
}

/** The secret entry name the compiler derives for `auth.secretRef` in namespace default. */
export function secretEntry(secret: string, key: string): string {
  return `provider_default_${secret}_${key}`
}

export interface ProviderGateway {
  readonly gw: Gateway
  readonly config: ConfigVolume
  readonly secrets: ConfigVolume
  readonly log: AccessLogEntry[]
  close(): Promise<void>
}

export async function startProviderGateway(
  docs: readonly Obj[],
  secrets: Record<string, string>,
  /** More gateway options (e.g. tracing). */
  extra: Partial<GatewayOptions> = {},
): Promise<ProviderGateway> {
  const config = await ConfigVolume.create({ 'gateway.yaml': yaml(docs) })
  const secretVol = await ConfigVolume.create(secrets)
  const log: AccessLogEntry[] = []
  const gw = await startGateway({
    config: { kind: 'manifests', paths: [config.dir] },
    secretsDir: secretVol.dir,
    secretsPollMs: 100,
    port: 0,
    pollMs: 100,
    // The simulators listen on loopback, which provider baseURLs may name only when allowed.
    allowPrivateProviderAddresses: true,
    picker: new RoundRobinPicker(),
    accessLog: (e) => log.push(e),
    ...extra,
  })
  return {
    gw,
    config,
    secrets: secretVol,
    log,
    async close() {
      await gw.shutdown({ drainDelayMs: 0, deadlineMs: 1000 })
      await config.remove()
      await secretVol.remove()
    },
  }
}
