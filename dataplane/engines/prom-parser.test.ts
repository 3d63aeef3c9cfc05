import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { seededRandom } from '../seeded-random.js'
import { labelOf } from './adapters/common.js'
import { type MetricFamily, type ParsedMetrics, parsePrometheusText } from './prom-parser.js'

const fixture = (name: string): string =>
  readFileSync(new URL(`./testdata/${name}`, import.meta.url), 'utf8')

const FIXTURES = [
  'vllm-metrics-sample.txt',
  'llm-d-inference-sim-metrics-sample.txt',
  'epp-metrics-sample.txt',
  'epp-metrics-legacy-gaie-names-sample.txt',
  'sglang-metrics-sample.txt',
  'tgi-metrics-sample.txt',
  'trtllm-serve-metrics-sample.txt',
  'llamacpp-metrics-sample.txt',
] as const

function family(parsed: ParsedMetrics, name: string): MetricFamily {
  const f = parsed.families.get(name)
  if (f === undefined) throw new Error(`family ${name} not parsed`)
  return f
}

describe('parsePrometheusText: format features', () => {
  it('reads HELP, TYPE, labels and values into families', () => {
    const parsed = parsePrometheusText(
      [
        '# HELP http_requests_total The total number of HTTP requests.',
        '# TYPE http_requests_total counter',
        'http_requests_total{method="post",code="200"} 1027 1395066363000',
        'http_requests_total{method="post",code="400"}    3 1395066363000',
        '# A free-form comment that must be skipped',
        '# TYPE temp gauge',
        'temp -3.5',
      ].join('\n'),
    )
    expect(parsed.errors).toEqual([])
    expect(parsed.sampleCount).toBe(3)
    expect(family(parsed, 'http_requests_total')).toEqual({
      name: 'http_requests_total',
      type: 'counter',
      help: 'The total number of HTTP requests.',
      samples: [
        {
          name: 'http_requests_total',
          labels: { method: 'post', code: '200' },
          value: 1027,
          timestamp: 1395066363000,
        },
        {
          name: 'http_requests_total',
          labels: { method: 'post', code: '400' },
          value: 3,
          timestamp: 1395066363000,
        },
      ],
    })
    expect(family(parsed, 'temp')).toEqual({
      name: 'temp',
      type: 'gauge',
      samples: [{ name: 'temp', labels: {}, value: -3.5 }],
    })
    expect([...parsed.families.keys()]).toEqual(['http_requests_total', 'temp'])
  })

  it('unescapes label values (\\\\, \\", \\n) and keeps unknown escapes verbatim', () => {
    const parsed = parsePrometheusText(
      'm{path="C:\\\\DIR\\\\FILE.TXT",q="say \\"hi\\"",nl="a\\nb",odd="x\\ty",end="\\\\"} 1\n',
    )
    expect(parsed.errors).toEqual([])
    expect(family(parsed, 'm').samples[0]?.labels).toEqual({
      path: 'C:\\DIR\\FILE.TXT',
      q: 'say "hi"',
      nl: 'a\nb',
      odd: 'x\\ty',
      end: '\\',
    })
  })

  it('unescapes HELP text and keeps the first of duplicate HELP lines (TGI does this)', () => {
    const parsed = parsePrometheusText(
      [
        '# HELP a line one\\nline two \\\\ done',
        '# HELP a second text is ignored',
        '# HELP b',
        'a 1',
        'b 2',
      ].join('\n'),
    )
    expect(parsed.errors).toEqual([])
    expect(family(parsed, 'a').help).toBe('line one\nline two \\ done')
    expect(family(parsed, 'b').help).toBe('')
  })

  it('parses every number form engines emit', () => {
    const values: Array<[string, number]> = [
      ['3', 3],
      ['3.0', 3],
      ['0.41', 0.41],
      ['8.75436e+06', 8754360],
      ['4.0560164864e+10', 40560164864],
      ['1E3', 1000],
      ['1.5e-3', 0.0015],
      ['.5', 0.5],
      ['-0.25', -0.25],
      ['+7', 7],
      ['+Inf', Infinity],
      ['-Inf', -Infinity],
      ['Inf', Infinity],
      ['0.00015000000000000001', 0.00015000000000000001],
    ]
    const text = values.map(([v], i) => `v{i="${i}"} ${v}`).join('\n')
    const parsed = parsePrometheusText(text)
    expect(parsed.errors).toEqual([])
    expect(family(parsed, 'v').samples.map((s) => s.value)).toEqual(values.map(([, n]) => n))
    const nan = parsePrometheusText('a NaN\nb nan\n')
    expect(nan.errors).toEqual([])
    expect(Number.isNaN(family(nan, 'a').samples[0]?.value)).toBe(true)
    expect(Number.isNaN(family(nan, 'b').samples[0]?.value)).toBe(true)
  })

  it('accepts optional timestamps, negative ones included', () => {
    const parsed = parsePrometheusText('a 1 1700000000123\nb 2 -5\nc 3\n')
    expect(parsed.errors).toEqual([])
    expect(family(parsed, 'a').samples[0]?.timestamp).toBe(1700000000123)
    expect(family(parsed, 'b').samples[0]?.timestamp).toBe(-5)
    expect(family(parsed, 'c').samples[0]).toEqual({ name: 'c', labels: {}, value: 3 })
  })

  it('tolerates CRLF, blank lines, tabs, spaces in label sets, trailing commas and {}', () => {
    const parsed = parsePrometheusText(
      '\r\n# TYPE x gauge\r\n\r\n  x{ a = "1" , b="2", }\t5\r\nx{} 6\r\ny{a="1",} 7\r\n\n',
    )
    expect(parsed.errors).toEqual([])
    expect(family(parsed, 'x').samples).toEqual([
      { name: 'x', labels: { a: '1', b: '2' }, value: 5 },
      { name: 'x', labels: {}, value: 6 },
    ])
    expect(family(parsed, 'y').samples).toEqual([{ name: 'y', labels: { a: '1' }, value: 7 }])
  })

  it('groups histogram and summary series under their family in any order', () => {
    const parsed = parsePrometheusText(
      [
        '# TYPE vllm:ttft_seconds histogram',
        'vllm:ttft_seconds_sum{engine="0"} 1.5',
        'vllm:ttft_seconds_bucket{engine="0",le="0.1"} 1',
        'vllm:ttft_seconds_bucket{le="+Inf",engine="0"} 3',
        'vllm:ttft_seconds_count{engine="0"} 3',
        '# TYPE rpc summary',
        'rpc{quantile="0.5"} 0.2',
        'rpc_sum 10',
        'rpc_count 40',
        '# TYPE reqs counter',
        'reqs_total 4',
        '# TYPE other_count gauge',
        'other_count 9',
      ].join('\n'),
    )
    expect(parsed.errors).toEqual([])
    expect([...parsed.families.keys()]).toEqual(['vllm:ttft_seconds', 'rpc', 'reqs', 'other_count'])
    expect(family(parsed, 'vllm:ttft_seconds').samples.map((s) => s.name)).toEqual([
      'vllm:ttft_seconds_sum',
      'vllm:ttft_seconds_bucket',
      'vllm:ttft_seconds_bucket',
      'vllm:ttft_seconds_count',
    ])
    expect(family(parsed, 'vllm:ttft_seconds').samples[2]?.labels).toEqual({
      le: '+Inf',
      engine: '0',
    })
    expect(family(parsed, 'rpc').samples.map((s) => [s.name, s.value])).toEqual([
      ['rpc', 0.2],
      ['rpc_sum', 10],
      ['rpc_count', 40],
    ])
    expect(family(parsed, 'reqs').samples).toEqual([{ name: 'reqs_total', labels: {}, value: 4 }])
    expect(family(parsed, 'other_count').type).toBe('gauge')
  })

  it('keeps samples without a TYPE line as untyped families of their own name', () => {
    const parsed = parsePrometheusText('foo_bucket{le="1"} 2\nfoo_sum 3\n')
    expect(parsed.errors).toEqual([])
    expect(family(parsed, 'foo_bucket').type).toBe('untyped')
    expect(family(parsed, 'foo_sum').samples).toEqual([{ name: 'foo_sum', labels: {}, value: 3 }])
  })

  it('skips malformed lines, reports each with its code and line number, keeps the rest', () => {
    const lines = [
      'good 1', // 1
      '9bad 1', // 2
      'bad-name 1', // 3
      'x{a="1" 2', // 4
      'x{a="unterminated} 2', // 5
      'x{a=1} 2', // 6
      'x{1a="1"} 2', // 7
      'x{a="1",a="2"} 2', // 8
      'x{a="1"}', // 9
      'x abc', // 10
      'x 0x10', // 11
      'x 1 1.5', // 12
      'x 1 2 3', // 13
      '# TYPE x bogus', // 14
      '# TYPE', // 15
      '# TYPE good gauge', // 16
      '# TYPE good counter', // 17
      'x{a="1"} Infinityy', // 18
      'also_good{a="\\""} 2', // 19
    ]
    const parsed = parsePrometheusText(lines.join('\n'))
    expect(parsed.errors.map((e) => [e.line, e.code])).toEqual([
      [2, 'PROM_INVALID_METRIC_NAME'],
      [3, 'PROM_INVALID_METRIC_NAME'],
      [4, 'PROM_INVALID_LABEL'],
      [5, 'PROM_UNTERMINATED_LABEL_VALUE'],
      [6, 'PROM_INVALID_LABEL'],
      [7, 'PROM_INVALID_LABEL'],
      [8, 'PROM_DUPLICATE_LABEL'],
      [9, 'PROM_MISSING_VALUE'],
      [10, 'PROM_INVALID_VALUE'],
      [11, 'PROM_INVALID_VALUE'],
      [12, 'PROM_INVALID_TIMESTAMP'],
      [13, 'PROM_TRAILING_GARBAGE'],
      [14, 'PROM_INVALID_TYPE'],
      [15, 'PROM_INVALID_COMMENT'],
      [17, 'PROM_TYPE_CONFLICT'],
      [18, 'PROM_INVALID_VALUE'],
    ])
    expect(parsed.errorCount).toBe(16)
    expect(parsed.errors[1]?.message).toContain('"bad-name 1"')
    expect(family(parsed, 'good')).toEqual({
      name: 'good',
      type: 'gauge',
      samples: [{ name: 'good', labels: {}, value: 1 }],
    })
    expect(family(parsed, 'also_good').samples[0]?.labels).toEqual({ a: '"' })
    expect(parsed.families.has('x')).toBe(false)
    expect(parsed.sampleCount).toBe(2)
  })

  it('stores a __proto__ label as data, not as a prototype change', () => {
    const parsed = parsePrometheusText('m{__proto__="x",b="y"} 1\n')
    expect(parsed.errors).toEqual([])
    const labels = family(parsed, 'm').samples[0]?.labels ?? {}
    expect(Object.getPrototypeOf(labels)).toBe(Object.prototype)
    expect(Object.entries(labels)).toEqual([
      ['__proto__', 'x'],
      ['b', 'y'],
    ])
  })

  it('caps the input at maxLength on a line boundary and says so', () => {
    const text = 'a 1\nb 2\nc 3\n'
    const parsed = parsePrometheusText(text, { maxLength: 9 })
    expect(parsed.truncated).toBe(true)
    expect([...parsed.families.keys()]).toEqual(['a', 'b'])
    expect(parsed.errors).toEqual([
      {
        code: 'PROM_INPUT_TRUNCATED',
        line: 3,
        message: 'input of 12 characters exceeds maxLength 9; the rest was not read',
      },
    ])
    const whole = parsePrometheusText(text, { maxLength: 12 })
    expect(whole.truncated).toBe(false)
    expect(whole.families.size).toBe(3)
  })

  it('keeps at most maxErrors records but counts them all', () => {
    const text = Array.from({ length: 500 }, () => '!!').join('\n')
    const parsed = parsePrometheusText(text, { maxErrors: 10 })
    expect(parsed.errors).toHaveLength(10)
    expect(parsed.errorCount).toBe(500)
    expect(parsed.errors[9]?.line).toBe(10)
  })
})

describe('parsePrometheusText: fixtures', () => {
  // Independent count: every non-blank line that is not a comment is one sample.
  const sampleLines = (text: string): number =>
    text.split('\n').filter((l) => l.trim() !== '' && !l.trimStart().startsWith('#')).length

  it.each(FIXTURES)('%s parses without errors, every sample line kept', (name) => {
    const text = fixture(name)
    const parsed = parsePrometheusText(text)
    expect(parsed.errors).toEqual([])
    expect(parsed.truncated).toBe(false)
    expect(parsed.sampleCount).toBe(sampleLines(text))
    let inFamilies = 0
    for (const f of parsed.families.values()) inFamilies += f.samples.length
    expect(inFamilies).toBe(parsed.sampleCount)
  })

  it('vLLM: histogram buckets of both engines under one family, le kept as written', () => {
    const parsed = parsePrometheusText(fixture('vllm-metrics-sample.txt'))
    const ttft = family(parsed, 'vllm:time_to_first_token_seconds')
    expect(ttft.type).toBe('histogram')
    expect(ttft.samples).toHaveLength(2 * 25)
    expect(
      ttft.samples.find(
        (s) => labelOf(s.labels, 'le') === '1.0' && labelOf(s.labels, 'engine') === '1',
      )?.value,
    ).toBe(100)
    expect(ttft.samples.at(-1)).toEqual({
      name: 'vllm:time_to_first_token_seconds_sum',
      labels: { engine: '1', model_name: 'Qwen/Qwen3-32B' },
      value: 16.19999999999999,
    })
    expect(family(parsed, 'vllm:prefix_cache_queries_total').samples[0]?.value).toBe(1843712)
  })

  it('SGLang: _sum before buckets (multiprocess order) still lands in the histogram', () => {
    const parsed = parsePrometheusText(fixture('sglang-metrics-sample.txt'))
    const ttft = family(parsed, 'sglang:time_to_first_token_seconds')
    expect(ttft.type).toBe('histogram')
    expect(ttft.samples[0]?.name).toBe('sglang:time_to_first_token_seconds_sum')
    expect(ttft.samples.filter((s) => s.name.endsWith('_count')).map((s) => s.value)).toEqual([
      369, 1473,
    ])
    expect(family(parsed, 'sglang:prefill_effective_tokens_total').samples[0]?.value).toBe(8754360)
  })

  it('TGI: summary family with quantiles, counters without _total, HELP-less families', () => {
    const parsed = parsePrometheusText(fixture('tgi-metrics-sample.txt'))
    const skipped = family(parsed, 'tgi_request_skipped_tokens')
    expect(skipped.type).toBe('summary')
    expect(skipped.samples.map((s) => labelOf(s.labels, 'quantile') ?? s.name)).toEqual([
      '0',
      '0.5',
      '0.9',
      '0.95',
      '0.99',
      '0.999',
      '1',
      'tgi_request_skipped_tokens_sum',
      'tgi_request_skipped_tokens_count',
    ])
    expect(family(parsed, 'tgi_request_count')).toMatchObject({ type: 'counter' })
    expect(family(parsed, 'tgi_request_count').samples[0]?.value).toBe(1851)
    expect(family(parsed, 'tgi_batch_max_total_tokens')).toEqual({
      name: 'tgi_batch_max_total_tokens',
      type: 'gauge',
      samples: [{ name: 'tgi_batch_max_total_tokens', labels: {}, value: 45312 }],
    })
    expect(family(parsed, 'tgi_batch_current_max_tokens').help).toBe(
      'Maximum tokens for the current batch',
    )
  })

  it('EPP legacy names: spaces after commas and an empty {} label set', () => {
    const parsed = parsePrometheusText(fixture('epp-metrics-legacy-gaie-names-sample.txt'))
    expect(family(parsed, 'inference_objective_request_error_total').samples[0]?.labels).toEqual({
      error_code: 'Internal',
      model_name: 'm10',
      target_model_name: 't10',
    })
    const e2e = family(parsed, 'inference_extension_scheduler_e2e_duration_seconds')
    expect(e2e.samples.at(-1)).toEqual({
      name: 'inference_extension_scheduler_e2e_duration_seconds_count',
      labels: {},
      value: 9,
    })
  })
})

// ---------------------------------------------------------------------------------------------
// Fuzzing. A seeded generator keeps failures reproducible: the seed is in the test name.

interface Gen {
  int(n: number): number
  pick<T>(xs: readonly T[]): T
  chance(p: number): boolean
}

function gen(seed: number): Gen {
  const r = seededRandom(seed)
  return {
    int: (n) => Math.floor(r() * n),
    pick: (xs) => {
      const x = xs[Math.floor(r() * xs.length)]
      if (x === undefined) throw new Error('empty pick')
      return x
    },
    chance: (p) => r() < p,
  }
}

const NAME_START = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_:'
const NAME_CHARS = `${NAME_START}0123456789`
const LABEL_START = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_'
const LABEL_CHARS = `${LABEL_START}0123456789`
const VALUE_CHARS = [...'abcXYZ019 ,={}#.-+_/:', '\\', '"', '\n', '\t', 'é', '😀', '\\n', '\\"']

function ident(g: Gen, start: string, chars: string, max: number): string {
  let s = g.pick([...start])
  const n = g.int(max)
  for (let i = 0; i < n; i++) s += g.pick([...chars])
  return s
}

/** A value's text and the number a correct parser must read from it. */
function genValue(g: Gen): [string, number] {
  switch (g.int(9)) {
    case 0:
      return ['NaN', Number.NaN]
    case 1:
      return ['+Inf', Infinity]
    case 2:
      return ['-Inf', -Infinity]
    case 3: {
      const n = g.int(2_000_000) - 1_000_000
      return [String(n), n]
    }
    case 4: {
      const s = (g.int(1_000_000) / 997).toExponential(g.int(8))
      return [s, Number(s)]
    }
    case 5: {
      const s = `${g.int(99)}.${g.int(99999)}e${g.chance(0.5) ? '-' : '+'}${g.int(30)}`
      return [s, Number(s)]
    }
    case 6: {
      const s = `${g.int(1000)}.0`
      return [s, Number(s)]
    }
    default: {
      const v = (g.int(1 << 30) - (1 << 29)) / 1024
      return [String(v), v]
    }
  }
}

function escapeLabel(v: string): string {
  return v.replaceAll('\\', '\\\\').replaceAll('"', '\\"').replaceAll('\n', '\\n')
}

function escapeHelp(v: string): string {
  return v.replaceAll('\\', '\\\\').replaceAll('\n', '\\n')
}

interface ExpectedSample {
  name: string
  labels: Record<string, string>
  value: number
  timestamp?: number
}

interface ExpectedFamily {
  name: string
  type: string
  help?: string
  samples: ExpectedSample[]
}

function blank(g: Gen): string {
  return g.pick([' ', ' ', '  ', '\t', ' \t '])
}

/** A random valid exposition and the families it must parse into. */
function genExposition(seed: number): { text: string; expected: ExpectedFamily[] } {
  const g = gen(seed)
  const eol = g.chance(0.3) ? '\r\n' : '\n'
  const lines: string[] = []
  const expected: ExpectedFamily[] = []
  const nFamilies = 1 + g.int(8)
  for (let f = 0; f < nFamilies; f++) {
    // The index prefix keeps family names unique and free of suffix collisions (`x` vs `x_sum`).
    const name = `f${f}_${ident(g, NAME_START, NAME_CHARS, 12)}`
    const type = g.pick(['counter', 'gauge', 'histogram', 'summary', 'untyped'] as const)
    const fam: ExpectedFamily = { name, type, samples: [] }
    if (g.chance(0.2)) lines.push('')
    if (g.chance(0.2)) lines.push(`# free comment ${g.int(1000)} "quoted" {not a sample}`)
    if (g.chance(0.7)) {
      let help = ''
      const n = g.int(20)
      for (let i = 0; i < n; i++) help += g.pick(VALUE_CHARS)
      // Leading blanks after the single separator are part of the text; avoid them for clarity.
      help = help.trimStart()
      fam.help = help
      lines.push(`# HELP ${name} ${escapeHelp(help)}`)
    }
    if (type !== 'untyped' || g.chance(0.5)) lines.push(`# TYPE ${name} ${type}`)
    const nSeries = 1 + g.int(4)
    for (let s = 0; s < nSeries; s++) {
      const labels: Record<string, string> = {}
      const nLabels = g.int(4)
      for (let l = 0; l < nLabels; l++) {
        const ln = `l${l}${ident(g, LABEL_START, LABEL_CHARS, 6)}`
        let v = ''
        const len = g.int(12)
        for (let i = 0; i < len; i++) v += g.pick(VALUE_CHARS)
        labels[ln] = v
      }
      const emit = (sampleName: string, extra: Record<string, string>): void => {
        const all = { ...labels, ...extra }
        const entries = Object.entries(all)
        let labelText = ''
        if (entries.length > 0 || g.chance(0.2)) {
          const parts = entries.map(([k, v]) =>
            g.chance(0.15) ? `${k} = "${escapeLabel(v)}"` : `${k}="${escapeLabel(v)}"`,
          )
          labelText = `{${parts.join(g.chance(0.2) ? ', ' : ',')}${entries.length > 0 && g.chance(0.2) ? ',' : ''}}`
        }
        const [vText, value] = genValue(g)
        const sample: ExpectedSample = { name: sampleName, labels: all, value }
        let line = `${sampleName}${labelText}${blank(g)}${vText}`
        if (g.chance(0.2)) {
          const ts = g.int(2_000_000_000_000) - 1000
          sample.timestamp = ts
          line += `${blank(g)}${ts}`
        }
        if (g.chance(0.1)) line += blank(g)
        lines.push(line)
        fam.samples.push(sample)
      }
      if (type === 'histogram') {
        for (const le of ['0.1', '1', '+Inf']) emit(`${name}_bucket`, { le })
        emit(`${name}_sum`, {})
        emit(`${name}_count`, {})
      } else if (type === 'summary') {
        for (const quantile of ['0.5', '0.99']) emit(name, { quantile })
        emit(`${name}_sum`, {})
        emit(`${name}_count`, {})
      } else {
        emit(name, {})
      }
    }
    expected.push(fam)
  }
  return { text: lines.join(eol) + (g.chance(0.5) ? eol : ''), expected }
}

function asPlain(parsed: ParsedMetrics): ExpectedFamily[] {
  return [...parsed.families.values()].map((f) => {
    const out: ExpectedFamily = {
      name: f.name,
      type: f.type,
      samples: f.samples.map((s) => ({ ...s, labels: { ...s.labels } })),
    }
    if (f.help !== undefined) out.help = f.help
    return out
  })
}

const FUZZ_SEEDS = Array.from({ length: 300 }, (_, i) => 0x5eed + i * 7919)

describe('parsePrometheusText: fuzz', () => {
  it('round-trips 300 random valid expositions exactly', () => {
    for (const seed of FUZZ_SEEDS) {
      const { text, expected } = genExposition(seed)
      const parsed = parsePrometheusText(text)
      expect(parsed.errors, `seed ${seed}`).toEqual([])
      expect(asPlain(parsed), `seed ${seed}`).toEqual(expected)
    }
  })

  it('never throws on mutated expositions and stays within the input size', () => {
    const g = gen(0xbad)
    const noise = ['"', '\\', '{', '}', ',', '=', '#', '\n', '\r', ' ', 'NaN', '+', 'e', '\u0000']
    for (const seed of FUZZ_SEEDS) {
      let text = genExposition(seed).text
      const mutations = 1 + g.int(10)
      for (let m = 0; m < mutations; m++) {
        const at = g.int(text.length + 1)
        switch (g.int(4)) {
          case 0:
            text = text.slice(0, at) + text.slice(at + 1 + g.int(10))
            break
          case 1:
            text = text.slice(0, at) + g.pick(noise) + text.slice(at)
            break
          case 2:
            text = text.slice(0, at) + text.slice(g.int(text.length), at) + text.slice(at)
            break
          default:
            text = text.slice(0, at)
        }
      }
      const lines = text.split('\n').length
      const parsed = parsePrometheusText(text)
      for (const e of parsed.errors) {
        expect(e.line).toBeGreaterThanOrEqual(1)
        expect(e.line).toBeLessThanOrEqual(lines)
      }
      expect(parsed.errorCount).toBeGreaterThanOrEqual(parsed.errors.length)
      let samples = 0
      for (const f of parsed.families.values()) {
        samples += f.samples.length
        for (const s of f.samples) expect(typeof s.value).toBe('number')
      }
      expect(samples).toBe(parsed.sampleCount)
      expect(parsed.sampleCount).toBeLessThanOrEqual(lines)
    }
  })

  it('terminates on random garbage and pathological inputs, reporting the malformed ones', () => {
    const g = gen(42)
    const alphabet = [...'a{}="\\,# \n\r\t0.9eE+-:_'].concat(['NaN', 'Inf', 'le', '\u2028'])
    const inputs: string[] = []
    for (let i = 0; i < 100; i++) {
      let s = ''
      const n = g.int(4000)
      for (let j = 0; j < n; j++) s += g.pick(alphabet)
      inputs.push(s)
    }
    // Long single lines of the characters that drive the label and escape scanners.
    const big = 1_000_000
    inputs.push(`m{a="${'\\'.repeat(big)}`, `m{${'a="1",'.repeat(big / 6)}`, '{'.repeat(big))
    inputs.push(`${'x{a="'.repeat(big / 5)}`, `${'"\n'.repeat(big / 2)}`, '#'.repeat(big))
    // Linear work is what keeps this fast: a quadratic scanner would take hours on the 1 MB lines
    // and hit the test's timeout (timing is not asserted here; a benchmark's question).
    const parsed = inputs.map((input) => parsePrometheusText(input))
    for (const p of parsed) expect(Number.isInteger(p.errorCount)).toBe(true)
    // The long lines are all malformed except the comment-only one: each is reported, not parsed.
    const longLines = parsed.slice(-6)
    expect(longLines.map((p) => p.errorCount > 0)).toEqual([true, true, true, true, true, false])
    expect(longLines.map((p) => p.sampleCount)).toEqual([0, 0, 0, 0, 0, 0])
  }, 60_000)

  it('bounds a huge input by maxLength', () => {
    const line = 'vllm:num_requests_waiting{engine="0",model_name="m"} 3\n'
    const huge = line.repeat(Math.ceil((40 * 1024 * 1024) / line.length))
    const parsed = parsePrometheusText(huge, { maxLength: 1024 * 1024 })
    expect(parsed.truncated).toBe(true)
    expect(parsed.sampleCount).toBe(Math.floor((1024 * 1024) / line.length))
    expect(parsed.errors.map((e) => e.code)).toEqual(['PROM_INPUT_TRUNCATED'])
  })
})

describe('parsePrometheusText: large input', () => {
  it('parses ~8 MB of realistic engine text (every fixture, many engines) without an error', () => {
    // All engine fixtures, with the DP label varied so series differ, repeated to ~8 MB. How fast
    // is a benchmark's question (no wall-clock assertion in a unit test).
    const base = FIXTURES.map(fixture).join('\n')
    const one = parsePrometheusText(base, { maxLength: 64 * 1024 * 1024 })
    const parts: string[] = []
    let size = 0
    for (let i = 0; size < 8 * 1024 * 1024; i++) {
      const part = base.replaceAll('engine="0"', `engine="${i}"`)
      parts.push(part)
      size += part.length
    }
    const parsed = parsePrometheusText(parts.join('\n'), { maxLength: 64 * 1024 * 1024 })
    expect(parsed.errorCount).toBe(0)
    expect(parsed.truncated).toBe(false)
    expect(parsed.sampleCount).toBe(one.sampleCount * parts.length)
  }, 60_000)
})

describe('parsePrometheusText: histogramBuckets false', () => {
  const text = [
    '# TYPE lat histogram',
    'lat_bucket{le="0.1"} 1',
    'lat_bucket{le="+Inf"} 3',
    'lat_sum 0.9',
    'lat_count 3',
    '# TYPE depth_bucket gauge',
    'depth_bucket{q="a"} 4',
    'plain_bucket 5',
    '# TYPE old counter',
    'old_bucket 6',
  ].join('\n')

  it('counts a histogram family’s buckets but keeps only its other samples', () => {
    const full = parsePrometheusText(text)
    const lean = parsePrometheusText(text, { histogramBuckets: false })
    expect(lean.sampleCount).toBe(full.sampleCount)
    expect(lean.families.get('lat')?.samples.map((s) => s.name)).toEqual(['lat_sum', 'lat_count'])
    expect(full.families.get('lat')?.samples.map((s) => s.name)).toEqual([
      'lat_bucket',
      'lat_bucket',
      'lat_sum',
      'lat_count',
    ])
    // `_bucket` names outside a histogram are ordinary samples.
    for (const name of ['depth_bucket', 'plain_bucket', 'old_bucket']) {
      expect(lean.families.get(name)).toEqual(full.families.get(name))
    }
    expect([...lean.families.keys()]).toEqual([...full.families.keys()])
  })

  it('does not read a skipped bucket line, so its errors go unreported', () => {
    const bad = '# TYPE lat histogram\nlat_bucket{le="0.1" 1\nlat_count x\n'
    expect(parsePrometheusText(bad).errors.map((e) => e.code)).toEqual([
      'PROM_INVALID_LABEL',
      'PROM_INVALID_VALUE',
    ])
    const lean = parsePrometheusText(bad, { histogramBuckets: false })
    expect(lean.errors.map((e) => e.code)).toEqual(['PROM_INVALID_VALUE'])
    expect(lean.sampleCount).toBe(1)
  })

  it('leaves every fixture’s non-bucket samples as the full parse has them', () => {
    for (const name of FIXTURES) {
      const full = parsePrometheusText(fixture(name))
      const lean = parsePrometheusText(fixture(name), { histogramBuckets: false })
      expect(lean.sampleCount).toBe(full.sampleCount)
      expect(lean.errorCount).toBe(full.errorCount)
      expect([...lean.families.keys()]).toEqual([...full.families.keys()])
      for (const [k, f] of full.families) {
        const kept =
          f.type === 'histogram' ? f.samples.filter((s) => s.name !== `${k}_bucket`) : f.samples
        expect(lean.families.get(k)).toEqual({ ...f, samples: kept })
      }
    }
  })
})
