import { execFile } from 'node:child_process'
import { access, constants, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { attack, toolsDir, VEGETA_VERSION } from './proxy-vegeta.js'
import {
  bootstrapMedian,
  type Condition,
  median,
  type Pairing,
  pairedMarkdown,
  roundFits,
  roundOrder,
  type Side,
  splitByUrl,
  summarisePairs,
  verdict,
} from './tracing-paired.js'

describe('median and its bootstrap interval', () => {
  it('takes the middle value, or the mean of the two middle ones', () => {
    expect(median([3, 1, 2])).toBe(2)
    expect(median([4, 1, 3, 2])).toBe(2.5)
    expect(median([])).toBeNaN()
  })

  it('gives the same interval for the same data (seeded) and holds the median', () => {
    const xs = [12, -30, 41, 7, 3, 25, -8, 60, 15, 2, 19, -1]
    const a = bootstrapMedian(xs)
    expect(bootstrapMedian(xs)).toEqual(a)
    expect(a.median).toBe(median(xs))
    expect(a.lo).toBeLessThanOrEqual(a.median)
    expect(a.hi).toBeGreaterThanOrEqual(a.median)
    expect(a.hi).toBeGreaterThan(a.lo)
    // A bootstrap median is always one of the data or the mean of two of them.
    expect(a.lo).toBeGreaterThanOrEqual(-30)
    expect(a.hi).toBeLessThanOrEqual(60)
  })

  it('is narrow for tight data and wide for spread data', () => {
    const tight = bootstrapMedian([10, 11, 9, 10, 12, 8, 10, 11, 9, 10, 10, 11])
    const spread = bootstrapMedian([10, 110, -90, 60, -40, 10, 160, -140, 35, -15, 85, -65])
    expect(tight.hi - tight.lo).toBeLessThanOrEqual(2)
    expect(spread.hi - spread.lo).toBeGreaterThan(50)
  })

  it('a 99 % interval is at least as wide as a 90 % one', () => {
    const xs = [5, 40, -20, 13, 8, 27, -3, 51, 16, 0, 22, 9]
    const i90 = bootstrapMedian(xs, 0.9)
    const i99 = bootstrapMedian(xs, 0.99)
    expect(i99.lo).toBeLessThanOrEqual(i90.lo)
    expect(i99.hi).toBeGreaterThanOrEqual(i90.hi)
  })
})

describe('verdict', () => {
  it('is not resolved when the interval straddles the target, else judged on the median', () => {
    expect(verdict({ median: 10, lo: -5, hi: 30 }, 12)).toBe('met')
    expect(verdict({ median: 80, lo: 60, hi: 95 }, 12)).toBe('not met')
    expect(verdict({ median: 40, lo: 20, hi: 70 }, 12)).toBe('not resolved')
    expect(verdict({ median: 60, lo: 45, hi: 70 }, 12)).toBe('not resolved')
    expect(verdict({ median: 50, lo: 30, hi: 50 }, 12)).toBe('met')
  })

  it('is not resolved on too few rounds, however narrow', () => {
    expect(verdict({ median: 80, lo: 80, hi: 80 }, 1)).toBe('not resolved')
    expect(verdict({ median: 10, lo: 8, hi: 12 }, 4)).toBe('not resolved')
  })
})

describe('roundOrder', () => {
  it('rotates by one each round, so each condition takes each place in turn', () => {
    const c = ['a', 'b', 'c']
    expect(roundOrder(c, 0)).toEqual(['a', 'b', 'c'])
    expect(roundOrder(c, 1)).toEqual(['b', 'c', 'a'])
    expect(roundOrder(c, 2)).toEqual(['c', 'a', 'b'])
    expect(roundOrder(c, 3)).toEqual(['a', 'b', 'c'])
  })
})

describe('roundFits', () => {
  it('runs the first round, then another only if it ends within the budget at the pace so far', () => {
    expect(roundFits(0, 0, 1)).toBe(true)
    expect(roundFits(400_000, 0, 300)).toBe(true)
    // 5 rounds in 125 s: a sixth ends at 150 s.
    expect(roundFits(125_000, 5, 150)).toBe(true)
    expect(roundFits(125_000, 5, 149)).toBe(false)
  })
})

describe('splitByUrl', () => {
  // Verbatim shape of `vegeta encode -to json` (v12.13.0) lines, bodies shortened.
  const line = (url: string, code: number, latency: number, seq: number): string =>
    JSON.stringify({
      attack: '',
      seq,
      code,
      timestamp: '2026-12-02T17:40:00.123456789Z',
      latency,
      bytes_out: 80,
      bytes_in: 312,
      error: code === 200 ? '' : 'connection refused',
      body: 'eyJpZCI6ImNoYXQifQ==',
      method: 'POST',
      url,
      headers: { 'Content-Type': ['application/json'] },
    })

  it('splits latencies (µs) by target and counts failures apart', () => {
    const a = 'http://127.0.0.1:1/v1/chat/completions'
    const b = 'http://127.0.0.1:2/v1/chat/completions'
    const text = [
      line(a, 200, 1_000_000, 0),
      line(b, 200, 1_200_000, 1),
      line(a, 200, 900_000, 2),
      line(b, 0, 30_000, 3),
      line(a, 503, 400_000, 4),
      '',
    ].join('\n')
    const m = splitByUrl(text)
    expect(m.get(a)).toEqual({ latUs: [1000, 900], failed: 1 })
    expect(m.get(b)).toEqual({ latUs: [1200], failed: 1 })
  })

  it('refuses a line without url or latency', () => {
    expect(() => splitByUrl('{"code":200}')).toThrow(/without url\/latency/)
  })
})

const side = (p50Us: number, mainUs: number, extra: Partial<Side> = {}): Side => ({
  requests: 2000,
  failed: 0,
  p50Us,
  mainUs,
  allUs: mainUs + 40,
  workerUs: 0,
  ...extra,
})

describe('summarisePairs and the section', () => {
  // Fixed differences per round: A/A around 0, ratio 1 around +20, ratio 0.1 straddling 50.
  const aa = [3, -4, 6, -2, 0, 5, -7, 2, -1, 4, -3, 1]
  const r1 = [18, 25, 20, 14, 30, 19, 21, 17, 26, 20, 23, 16]
  const r01 = [20, 90, 45, 70, 30, 60, 50, 40, 85, 35, 65, 50]
  const pairs: Pairing[] = []
  const conditions: Condition[] = [undefined, '1', '0.1']
  for (let round = 0; round < 12; round++)
    for (const [c, d] of [
      [undefined, aa],
      ['1', r1],
      ['0.1', r01],
    ] as const)
      pairs.push({
        round,
        condition: c,
        base: side(1000 + round, 100),
        challenger: side(1000 + round + (d[round] as number), 100 + (d[round] as number) / 10, {
          workerUs: c === undefined ? 0 : 40,
        }),
        receiverUs: c === undefined ? 0 : 13,
        dropped: 0,
      })

  it('takes the median of the per-round differences, with an interval and a verdict', () => {
    const [rAA, rOne, rTenth] = summarisePairs(pairs, conditions)
    expect(rAA?.rounds).toBe(12)
    expect(rAA?.p50Us.median).toBe(median(aa))
    // The interval of the median holds it and stays within the rounds' own range (−7 … +6).
    expect(rAA?.p50Us.lo).toBeLessThanOrEqual(median(aa))
    expect(rAA?.p50Us.hi).toBeGreaterThanOrEqual(median(aa))
    expect(rAA?.p50Us.lo).toBeGreaterThanOrEqual(Math.min(...aa))
    expect(rAA?.p50Us.hi).toBeLessThanOrEqual(Math.max(...aa))
    expect(rOne?.p50Us.median).toBe(median(r1))
    expect(rOne?.verdict).toBe('met')
    expect(rOne?.mainUs.median).toBeCloseTo(median(r1) / 10, 6)
    expect(rOne?.workerUs).toBe(40)
    expect(rTenth?.verdict).toBe('not resolved')
    expect(rTenth?.requests).toBe(12 * 4000)
  })

  it('writes the A/A floor, each ratio with its interval and verdict, and the command', () => {
    const md = pairedMarkdown(
      summarisePairs(pairs, conditions),
      { rate: 500, seconds: 4, warmSeconds: 1.5, rounds: 12 },
      {
        command: 'npm run bench:tracing -- --paired',
        receiver: 'at nice +19',
        load: '0.5 0.5 0.5',
        busy: false,
      },
    )
    expect(md).toContain('`npm run bench:tracing -- --paired`')
    expect(md).toMatch(/A\/A control .*p50 [+−]?\d+ \([+−]?\d+ … [+−]?\d+\) µs/)
    expect(md).toContain(`on, ratio 1: +${median(r1)} µs, met`)
    expect(md).toContain(`on, ratio 0.1: +${median(r01)} µs, not resolved`)
    expect(md).toContain('| A/A (off vs off) |')
    expect(md).not.toContain('does not hold 0')
  })
})

// The interleaved attack against two real HTTP servers on loopback: one vegeta attack takes both
// in turn and the results split back by target. Needs the vegeta binary bench:tracing builds
// (ensureVegeta, minutes cold): skipped when it has not been built on this machine.
const VEGETA = join(toolsDir(), `vegeta-${VEGETA_VERSION}`, 'vegeta')
const haveVegeta = await access(VEGETA, constants.X_OK).then(
  () => true,
  () => false,
)

describe.skipIf(!haveVegeta)('one vegeta attack over two targets (real vegeta)', () => {
  const servers: Server[] = []
  const hits = [0, 0]
  let dir = ''

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'igw-paired-'))
    for (const [i, host] of ['127.0.0.5', '127.0.0.6'].entries()) {
      const s = createServer((req, res) => {
        req.resume()
        req.on('end', () => {
          hits[i] = (hits[i] ?? 0) + 1
          res.setHeader('content-type', 'application/json')
          res.end('{}')
        })
      })
      await new Promise<void>((r) => s.listen(0, host, r))
      servers.push(s)
    }
  })

  afterAll(async () => {
    for (const s of servers) await new Promise((r) => s.close(r))
    await rm(dir, { recursive: true, force: true })
  })

  it('sends every other request to each and splits the results by URL', async () => {
    const urls = servers.map((s) => {
      const a = s.address() as AddressInfo
      return `http://${a.address}:${a.port}/v1/chat/completions`
    })
    const body = join(dir, 'body.json')
    await writeFile(body, '{"model":"m"}')
    const out = join(dir, 'r.bin')
    await attack(VEGETA, { url: urls, bodyFile: body, rate: 200, seconds: 1, output: out })
    const { stdout } = await promisify(execFile)(VEGETA, ['encode', '-to', 'json', out], {
      maxBuffer: 64 << 20,
    })
    const m = splitByUrl(stdout)
    const [a, b] = urls.map((u) => m.get(u))
    expect(a?.failed).toBe(0)
    expect(b?.failed).toBe(0)
    // Round-robin: the two counts differ by at most one.
    expect(Math.abs((a?.latUs.length ?? 0) - (b?.latUs.length ?? 0))).toBeLessThanOrEqual(1)
    // Up to 200 (vegeta sends fewer when the machine cannot keep its pace).
    expect((a?.latUs.length ?? 0) + (b?.latUs.length ?? 0)).toBeGreaterThan(20)
    expect(hits).toEqual([a?.latUs.length, b?.latUs.length])
  })
})
