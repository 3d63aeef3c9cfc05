import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  describeFailures,
  ensureVegeta,
  failures,
  parseVegetaReport,
  VEGETA_VERSION,
  VegetaError,
} from './proxy-vegeta.js'

// Verbatim shape of `vegeta report -type=json` (v12.13.0), trimmed numbers.
const REPORT = JSON.stringify({
  latencies: {
    total: 131616757,
    mean: 1316167,
    '50th': 530780,
    '90th': 2558372,
    '95th': 9052479,
    '99th': 12345123,
    max: 12452329,
    min: 129803,
  },
  bytes_in: { total: 0, mean: 0 },
  bytes_out: { total: 0, mean: 0 },
  earliest: '2026-12-01T23:09:35.668660044Z',
  latest: '2026-12-01T23:09:36.699024293Z',
  end: '2026-12-01T23:09:36.699452145Z',
  duration: 1030364249,
  wait: 427852,
  requests: 100,
  rate: 97.05,
  throughput: 96.5,
  success: 0.98,
  status_codes: { '200': 98, '0': 2 },
  errors: ['Post "http://127.0.0.1:1/v1": connect: connection refused'],
})

describe('parseVegetaReport', () => {
  it('converts nanosecond latencies to ms and keeps counts', () => {
    const r = parseVegetaReport(REPORT)
    expect(r.p50Ms).toBeCloseTo(0.53078, 6)
    expect(r.p99Ms).toBeCloseTo(12.345123, 6)
    expect(r.maxMs).toBeCloseTo(12.452329, 6)
    expect(r.requests).toBe(100)
    expect(r.throughput).toBe(96.5)
    expect(r.statusCodes).toEqual({ '200': 98, '0': 2 })
    expect(r.errors).toHaveLength(1)
    expect(failures(r)).toBe(2)
    expect(describeFailures(r)).toBe(
      ' (no response×2; first error: Post "http://127.0.0.1:1/v1": connect: connection refused)',
    )
    expect(describeFailures({ ...r, success: 1 })).toBe('')
  })

  it('names the missing field', () => {
    const bad = JSON.parse(REPORT) as { latencies: Record<string, unknown> }
    delete bad.latencies['99th']
    expect(() => parseVegetaReport(JSON.stringify(bad))).toThrow(/latencies\.99th/)
  })

  it('refuses text that is not JSON with a stable code', () => {
    try {
      parseVegetaReport('Requests [total, rate] 100, 97.05')
      expect.unreachable()
    } catch (e) {
      expect(e).toBeInstanceOf(VegetaError)
      expect((e as VegetaError).code).toBe('VEGETA_BAD_REPORT')
    }
  })
})

describe('ensureVegeta', () => {
  let dir: string
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'igw-vegeta-'))
  })
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true })
  })

  it('reuses a cached binary without running go', async () => {
    const bin = join(dir, `vegeta-${VEGETA_VERSION}`, 'vegeta')
    await mkdir(join(bin, '..'), { recursive: true })
    await writeFile(bin, '#!/bin/sh\n')
    await chmod(bin, 0o755)
    const r = await ensureVegeta({ dir, go: join(dir, 'no-go') })
    expect(r).toEqual({ ok: true, bin, version: VEGETA_VERSION })
  })

  it('returns the reason instead of throwing when go is missing', async () => {
    const other = join(dir, 'empty')
    const r = await ensureVegeta({ dir: other, go: join(dir, 'no-go') })
    expect(r.ok).toBe(false)
    if (!r.ok) expect(r.reason).toContain('go install github.com/tsenart/vegeta/v12')
  })
})
