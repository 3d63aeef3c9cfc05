// Writes standalone config files for tests, and swaps them the way kubelet updates a ConfigMap
// volume (new timestamped dir + atomic `..data` symlink rename), so reload tests exercise the real
// production update path.
import { mkdir, mkdtemp, rename, rm, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

export interface ServerSpec {
  name: string
  model?: string
  engine?: string
  endpoints: { name: string; address: string; port: number; ready?: boolean }[]
  trafficPolicy?: Record<string, unknown>
  scheduler?: Record<string, unknown>
}

export interface RouteSpec {
  name: string
  modelName?: string
  loraAdapters?: string[]
  rules: {
    name?: string
    modelMatch?: Record<string, unknown>
    targetModels: { modelServerName: string; weight?: number }[]
  }[]
}

export function manifests(servers: readonly ServerSpec[], routes: readonly RouteSpec[]): string {
  const docs: unknown[] = []
  for (const s of servers) {
    docs.push({
      apiVersion: 'networking.matrixinfer.ai/v1alpha1',
      kind: 'ModelServer',
      metadata: { name: s.name },
      spec: {
        ...(s.model ? { model: s.model } : {}),
        inferenceEngine: s.engine ?? 'vLLM',
        workloadSelector: { matchLabels: { app: s.name } },
        workloadPort: { port: s.endpoints[0]?.port ?? 8000 },
        ...(s.trafficPolicy ? { trafficPolicy: s.trafficPolicy } : {}),
        ...(s.scheduler ? { scheduler: s.scheduler } : {}),
      },
    })
    docs.push({
      apiVersion: 'standalone.infer-gateway.io/v1alpha1',
      kind: 'StaticEndpoints',
      metadata: { name: s.name },
      endpoints: s.endpoints,
    })
  }
  for (const r of routes) {
    docs.push({
      apiVersion: 'networking.matrixinfer.ai/v1alpha1',
      kind: 'ModelRoute',
      metadata: { name: r.name },
      spec: {
        ...(r.modelName ? { modelName: r.modelName } : {}),
        ...(r.loraAdapters ? { loraAdapters: r.loraAdapters } : {}),
        rules: r.rules,
      },
    })
  }
  // JSON is valid YAML; one document per object keeps line numbers meaningful.
  return docs.map((d) => JSON.stringify(d, null, 2)).join('\n---\n')
}

/** A ConfigMap-like volume: `<dir>/gateway.yaml -> ..data/gateway.yaml`, `..data -> ..<ts>`. */
export class ConfigVolume {
  readonly dir: string
  private n = 0
  private constructor(dir: string) {
    this.dir = dir
  }

  static async create(files: Record<string, string>): Promise<ConfigVolume> {
    const dir = await mkdtemp(join(tmpdir(), 'igw-config-'))
    const v = new ConfigVolume(dir)
    await v.update(files, true)
    return v
  }

  async update(files: Record<string, string>, first = false): Promise<void> {
    const ts = `..${Date.now()}_${this.n++}`
    await mkdir(join(this.dir, ts))
    for (const [name, text] of Object.entries(files))
      await writeFile(join(this.dir, ts, name), text)
    await symlink(ts, join(this.dir, '..data_tmp'))
    await rename(join(this.dir, '..data_tmp'), join(this.dir, '..data'))
    if (first) {
      for (const name of Object.keys(files))
        await symlink(join('..data', name), join(this.dir, name))
    }
  }

  async remove(): Promise<void> {
    await rm(this.dir, { recursive: true, force: true })
  }
}
