// The hardening section of docs/benchmarks.md (between `<!-- bench:hardening:start -->` and
// `<!-- bench:hardening:end -->`), written by the long-form runs. The fuzz and the soak each keep
// their last result in docs/bench/hardening.json; the section is re-rendered from both, so running
// one does not erase the other.
import { readFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { fmt, table, writeSection } from '../bench/report.js'

export interface RunRecord {
  readonly command: string
  readonly date: string
  readonly node: string
  readonly seconds: number
  readonly requests: number
  readonly byStatus: Readonly<Record<number, number>>
  readonly gateway5xx: number
  readonly engine5xx: number
  readonly transportErrors: number
  readonly unshaped: number
  readonly inflightAtEnd: number
  readonly rssStartMB: number
  readonly rssEndMB: number
  readonly rssMaxMB: number
  /**
   * After two forced full GCs (through the gateway's inspector), at start and at end: what the
   * gateway still holds. Raw RSS above is a sawtooth of V8 garbage not yet collected (large fuzz
   * bodies grow the heap before a major GC runs), so growth is judged on these.
   */
  readonly afterGc?: {
    readonly rssStartMB: number
    readonly rssEndMB: number
    readonly heapUsedStartMB: number
    readonly heapUsedEndMB: number
  }
  readonly gatewayCpuSeconds: number
  /** What else the run did (soak: reloads, bad-engine modes, slow clients). */
  readonly notes: readonly string[]
  /** Up to 20 examples of problems. */
  readonly samples: readonly string[]
  readonly pass: boolean
}

export interface HardeningData {
  fuzz?: RunRecord
  soak?: RunRecord
}

const JSON_PATH = fileURLToPath(new URL('../../docs/bench/hardening.json', import.meta.url))

async function load(): Promise<HardeningData> {
  try {
    return JSON.parse(await readFile(JSON_PATH, 'utf8')) as HardeningData
  } catch {
    return {}
  }
}

function statuses(s: Readonly<Record<number, number>>): string {
  return Object.entries(s)
    .sort(([a], [b]) => Number(a) - Number(b))
    .map(([k, v]) => `${k === '0' ? 'no answer' : k}: ${v}`)
    .join(', ')
}

const pct = (start: number, end: number): number =>
  start > 0 ? (end / start - 1) * 100 : Number.NaN

function section(title: string, r: RunRecord, target: string): string {
  const growth = pct(r.rssStartMB, r.rssEndMB)
  const g = r.afterGc
  return [
    `### ${title}`,
    '',
    `\`${r.command}\` — ${r.date}, Node ${r.node}, ${r.seconds} s. Target: ${target}.`,
    '',
    table(
      [
        'requests',
        'gateway-made 5xx',
        'engine 5xx',
        'no answer',
        'unshaped errors',
        'in-flight at end',
        'RSS start → end (max), MB',
        'RSS growth',
        'after full GC: RSS start → end, MB (growth)',
        'after full GC: V8 heap used start → end, MB (growth)',
        'gateway CPU s',
        'result',
      ],
      [
        [
          r.requests,
          `**${r.gateway5xx}**`,
          r.engine5xx,
          r.transportErrors,
          r.unshaped,
          `**${r.inflightAtEnd}**`,
          `${fmt(r.rssStartMB, 0)} → ${fmt(r.rssEndMB, 0)} (${fmt(r.rssMaxMB, 0)})`,
          g === undefined ? `**${fmt(growth, 1)} %**` : `${fmt(growth, 1)} %`,
          g === undefined
            ? 'not measured'
            : `${fmt(g.rssStartMB, 0)} → ${fmt(g.rssEndMB, 0)} (**${fmt(pct(g.rssStartMB, g.rssEndMB), 1)} %**)`,
          g === undefined
            ? 'not measured'
            : `${fmt(g.heapUsedStartMB, 1)} → ${fmt(g.heapUsedEndMB, 1)} (**${fmt(pct(g.heapUsedStartMB, g.heapUsedEndMB), 1)} %**)`,
          fmt(r.gatewayCpuSeconds, 1),
          r.pass ? 'pass' : '**FAIL**',
        ],
      ],
    ),
    '',
    `Statuses: ${statuses(r.byStatus)}.`,
    ...(r.notes.length > 0 ? ['', ...r.notes.map((n) => `- ${n}`)] : []),
    ...(r.samples.length > 0
      ? ['', 'Examples of problems:', '', '```', ...r.samples.map((s) => s.slice(0, 300)), '```']
      : []),
  ].join('\n')
}

export async function writeHardening(kind: 'fuzz' | 'soak', r: RunRecord): Promise<string> {
  const data = await load()
  data[kind] = r
  const parts = [
    '## Hardening (`npm run hardening:fuzz`, `npm run hardening:soak`)',
    '',
    'The long forms of the CI hardening suite (`test/hardening/`): a real data-plane process',
    '(standalone YAML, scheduler with fairness, model rewrite) in front of simulated engines on',
    'loopback. "Gateway-made 5xx" are 5xx answers without the engine header `x-inference-pod`;',
    'RSS is the gateway process’s own (`/proc/<pid>/status`), "start" after a warm-up (500 valid',
    'requests; the fuzz also 1,000 fuzzed bodies of another seed). RSS sampled while running is a',
    'sawtooth: fuzzed bodies carry strings up to 1 MiB, and V8 lets its heap grow with that garbage',
    '(heap reserved up to ~150 MB) before a major GC; a forced full GC brings it back. The memory',
    'target is therefore judged after a full GC (forced through the gateway’s inspector): RSS and',
    'the V8 heap still in use, start vs end. A leak shows as heap-used growth; raw RSS is reported',
    'beside it, not judged.',
    'A run smaller than its target (100,000 bodies; 30 minutes) proves the script, not the target.',
  ]
  if (data.fuzz)
    parts.push(
      '',
      section(
        'Fuzz',
        data.fuzz,
        '0 gateway-made 5xx, in-flight gauge 0 at the end, memory growth < 10 % after a full GC (RSS and V8 heap used; 100,000 bodies)',
      ),
    )
  if (data.soak)
    parts.push(
      '',
      section(
        'Soak',
        data.soak,
        'no gateway-made 5xx, in-flight 0 at the end, flat memory: growth < 10 % after a full GC (30 minutes)',
      ),
    )
  return writeSection('hardening', parts.join('\n'), data)
}

export function mb(bytes: number): number {
  return Math.round((bytes / (1024 * 1024)) * 10) / 10
}
