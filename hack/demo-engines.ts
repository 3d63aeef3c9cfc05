// examples/demo/ with its engines as simulators (hack/sim) on 127.0.0.x, for tests that run a
// built data plane (the bundle, the single executable, the container image) against the demo.
import { copyFile, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseAllDocuments, stringify } from 'yaml'
import { type Fleet, type MetricsFormat, type SimOptions, startFleet } from './sim/index.js'

const DEMO_DIR = fileURLToPath(new URL('../examples/demo/', import.meta.url))

interface Doc {
  kind?: string
  metadata?: { name?: string }
  spec?: {
    model?: string
    inferenceEngine?: string
    modelName?: string
    loraAdapters?: string[]
  }
  endpoints?: { name: string; address: string; port?: number; labels?: Record<string, string> }[]
}

const FORMATS: Record<string, MetricsFormat> = { vLLM: 'vllm', SGLang: 'sglang', TGI: 'tgi' }

export interface Demo {
  readonly configDir: string
  readonly fleet: Fleet
  /** The names clients may ask for: every route's modelName and LoRA adapters. */
  readonly models: readonly string[]
}

/**
 * examples/demo/ with its engines started as simulators (addresses from 127.0.0.<hostBase>): one per endpoint name, serving the model
 * its ModelServer names, with the engine's metrics format and every LoRA adapter a route lists.
 */
export async function demoWithEngines(
  hostBase: number,
  cleanups: (() => Promise<void>)[],
): Promise<Demo> {
  const files = (await readdir(DEMO_DIR)).filter((f) => f.endsWith('.yaml'))
  const parsed = await Promise.all(
    files.map(async (f) => ({
      f,
      docs: parseAllDocuments(await readFile(join(DEMO_DIR, f), 'utf8')).map(
        (d) => d.toJS() as Doc,
      ),
    })),
  )
  const all = parsed.flatMap((p) => p.docs)
  const servers = new Map(
    all.filter((d) => d.kind === 'ModelServer').map((d) => [d.metadata?.name, d.spec]),
  )
  const routes = all.filter((d) => d.kind === 'ModelRoute')
  const loras = routes.flatMap((r) => r.spec?.loraAdapters ?? [])
  const models = routes.flatMap((r) => [
    ...(r.spec?.modelName ? [r.spec.modelName] : []),
    ...(r.spec?.loraAdapters ?? []),
  ])
  const sims = new Map<string, SimOptions>()
  for (const d of all.filter((x) => x.kind === 'StaticEndpoints')) {
    const spec = servers.get(d.metadata?.name)
    for (const e of d.endpoints ?? []) {
      const known = sims.get(e.name)
      if (known && (known.model !== 'unknown' || !spec?.model)) continue
      sims.set(e.name, {
        name: e.name,
        host: known?.host ?? `127.0.0.${hostBase + sims.size}`,
        port: 0,
        model: spec?.model ?? 'unknown',
        metricsFormat: FORMATS[spec?.inferenceEngine ?? ''] ?? 'vllm',
        loras,
        maxLoras: Math.max(1, loras.length),
        zeroLatency: true,
      })
    }
  }
  const fleet = await startFleet([...sims.values()])
  cleanups.push(() => fleet.close())
  const at = new Map(fleet.sims.map((s) => [s.name, s]))
  const configDir = await mkdtemp(join(tmpdir(), 'igw-demo-config-'))
  cleanups.push(() => rm(configDir, { recursive: true, force: true }))
  for (const { f, docs } of parsed) {
    if (!docs.some((d) => d.kind === 'StaticEndpoints')) {
      await copyFile(join(DEMO_DIR, f), join(configDir, f))
      continue
    }
    const moved = docs.map((d) =>
      d.kind !== 'StaticEndpoints'
        ? d
        : {
            ...d,
            endpoints: (d.endpoints ?? []).map((e) => {
              const sim = at.get(e.name)
              if (!sim) throw new Error(`no simulator for endpoint ${e.name}`)
              return { ...e, address: sim.host, port: sim.port }
            }),
          },
    )
    await writeFile(join(configDir, f), moved.map((d) => stringify(d)).join('---\n'))
  }
  return { configDir, fleet, models }
}
