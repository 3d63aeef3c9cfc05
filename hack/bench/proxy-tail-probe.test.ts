// The tail probe in a real Node process: an HTTP server that calls itself with fetch (undici) and
// blocks its loop once; the window must hold the requests, the upstream calls, the stall, and a
// CPU profile whose samples inside the stall name the blocking function.
import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { until } from '../../test/helpers/until.js'
import { type CpuProfile, profileSamples, samplesWithin } from './proxy-tail-analysis.js'
import { TAIL_PROBE_SOURCE, type TailWindow } from './proxy-tail-probe.js'

let dir: string | undefined
afterEach(async () => {
  if (dir !== undefined) await rm(dir, { recursive: true, force: true })
  dir = undefined
})

const CHILD = `
const http = require('node:http')
const fs = require('node:fs')
// A fixed amount of arithmetic (no clock in it: where the samples land is this function, and
// 30 M steps hold the loop far past the 3 ms stall threshold on any machine).
function blockTheLoop(steps) {
  let x = 0
  for (let i = 0; i < steps; i++) x += (i * i) % 7
  return x
}
const server = http.createServer((req, res) => res.end('ok'))
server.listen(0, '127.0.0.61', () => {
  const url = 'http://127.0.0.61:' + server.address().port + '/'
  // fetch loads Node's undici on first use (a long stall of its own): before the window.
  fetch(url, { method: 'POST', body: 'x' }).then((r) => r.text()).then(() => process.stdout.write('ready\\n'))
  let blocked = false
  setInterval(() => {
    if (!fs.existsSync(process.env.IGW_TAIL_OUT + '.opened')) return
    fetch(url, { method: 'POST', body: 'x' }).then((r) => r.text()).catch(() => {})
    if (!blocked) {
      blocked = true
      setTimeout(() => {
        // Where the block starts and ends, on the probe's clock, to find it among the stalls.
        const t0 = performance.now()
        blockTheLoop(30000000)
        process.stdout.write('block ' + t0 + ' ' + performance.now() + '\\n')
      }, 200)
    }
  }, 30)
})
`

describe('tail probe', () => {
  it('records requests, upstream calls, a stall with its CPU, and a profile naming what ran', async () => {
    dir = await mkdtemp(join(tmpdir(), 'igw-tail-probe-'))
    const probe = join(dir, 'probe.mjs')
    const outFile = join(dir, 'out.json')
    await writeFile(probe, TAIL_PROBE_SOURCE)
    await writeFile(`${outFile}.cpu`, '')
    const child = spawn(process.execPath, [`--import=${probe}`, '-e', CHILD], {
      env: { ...process.env, IGW_TAIL_OUT: outFile, IGW_TAIL_STALL_MS: '3' },
      stdio: ['ignore', 'pipe', 'inherit'],
    })
    let output = ''
    child.stdout?.on('data', (c: Buffer) => {
      output += c.toString()
    })
    try {
      await until(() => output.includes('ready'), 30_000, 'the child to start')
      child.kill('SIGUSR2')
      await until(() => existsSync(`${outFile}.opened`), 30_000, 'the window to open')
      await new Promise((r) => setTimeout(r, 1000))
      child.kill('SIGUSR2')
      await until(() => existsSync(outFile), 30_000, 'the window to close')
      const w = JSON.parse(await readFile(outFile, 'utf8')) as TailWindow
      expect(w.requests.length).toBeGreaterThanOrEqual(3)
      for (const r of w.requests) expect(r.endMs).toBeGreaterThanOrEqual(r.startMs)
      expect(w.upstream.length).toBeGreaterThanOrEqual(3)
      // The block (the child printed when it ran, on the probe's clock) lies inside exactly one
      // recorded stall, busy (CPU spent across it); on a loaded machine other stalls may be longer.
      const m = /block ([\d.]+) ([\d.]+)/.exec(output)
      const b0 = Number(m?.[1])
      const b1 = Number(m?.[2])
      const holding = w.stalls.filter((s) => s.endMs >= b1 && s.endMs - s.gapMs <= b0)
      expect(holding).toHaveLength(1)
      expect(holding[0]?.cpuMs).toBeGreaterThan(0)
      expect(w.anchorEnd.perfMs).toBeGreaterThan(w.anchor.perfMs)
      // The profile was taken (its file asked for by $IGW_TAIL_OUT.cpu) and written beside it.
      expect(w.profile?.file).toBe(`${outFile}.cpuprofile`)
      const prof = JSON.parse(await readFile(w.profile?.file ?? '', 'utf8')) as CpuProfile
      const samples = profileSamples(
        prof,
        w.profile?.markerStartMs ?? 0,
        () => false,
        w.anchor.hrMs - w.anchor.perfMs,
      )
      const inBlock = samplesWithin(samples, [{ startMs: b0, endMs: b1 }], 'leaf')
      const top = [...inBlock.entries()].sort((a, b) => b[1] - a[1])[0]?.[0]
      expect(top).toMatch(/^blockTheLoop /)
    } finally {
      child.kill('SIGKILL')
    }
  }, 100_000)
})
