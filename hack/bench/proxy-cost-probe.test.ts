// The cost probe in a real Node process (opened and closed by SIGUSR2, as proxy-cost.ts does), and
// the strace summary parser.
import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { until } from '../../test/helpers/until.js'
import { PROBE_SOURCE, type ProbeWindow, straceCounts } from './proxy-cost-probe.js'

const STRACE = `% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 61.20    0.412000          20     20010           writev
 20.10    0.135000           6     24402      1201 read
  0.00    0.000000           0         2         2 ioctl
------ ----------- ----------- --------- --------- ----------------
100.00    0.673000          15     44414      1203 total
`

describe('straceCounts', () => {
  it('reads calls per syscall, with and without an errors column, and skips the total', () => {
    const c = straceCounts(STRACE)
    expect(c.get('writev')).toBe(20010)
    expect(c.get('read')).toBe(24402)
    expect(c.get('ioctl')).toBe(2)
    expect(c.has('total')).toBe(false)
    expect(c.size).toBe(3)
  })
})

let dir: string | undefined
afterEach(async () => {
  if (dir !== undefined) await rm(dir, { recursive: true, force: true })
  dir = undefined
})

describe('probe', () => {
  it('a window reports the CPU, collections and allocations of what ran inside it, and its CPU profile', async () => {
    dir = await mkdtemp(join(tmpdir(), 'igw-probe-'))
    const probe = join(dir, 'probe.mjs')
    const outFile = join(dir, 'out.json')
    await writeFile(probe, PROBE_SOURCE)
    await writeFile(`${outFile}.heap`, '')
    await writeFile(`${outFile}.cpu`, '')
    // Allocates about 20 MB a second of short-lived objects until killed.
    const child = spawn(
      process.execPath,
      [
        `--import=${probe}`,
        '-e',
        "process.stdout.write('ready\\n'); let keep; setInterval(() => { keep = Array.from({ length: 20000 }, (_, i) => (i % 10 === 0 ? new Map([[i, i]]) : { i })) }, 20)",
      ],
      { env: { ...process.env, IGW_COST_OUT: outFile }, stdio: ['ignore', 'pipe', 'ignore'] },
    )
    let output = ''
    child.stdout?.on('data', (c: Buffer) => {
      output += c.toString()
    })
    try {
      // The probe's handler is installed before the script runs: once the script speaks, a
      // SIGUSR2 no longer kills the process (a fixed wait did, on a loaded machine).
      await until(() => output.includes('ready'), 30_000, 'the child to start')
      child.kill('SIGUSR2')
      await until(() => existsSync(`${outFile}.opened`), 30_000, 'the window to open')
      await new Promise((r) => setTimeout(r, 800))
      child.kill('SIGUSR2')
      await until(() => existsSync(outFile), 30_000, 'the window to close')
      const w = JSON.parse(await readFile(outFile, 'utf8')) as ProbeWindow
      expect(w.elapsedMs).toBeGreaterThan(500)
      expect(w.cpuUserUs).toBeGreaterThan(0)
      expect(w.gc.minor).toBeGreaterThan(0)
      // 20,000 objects per 20 ms for ~0.8 s: several MB at the very least.
      expect(w.allocatedBytes).toBeGreaterThan(4 * 1024 * 1024)
      expect(w.topAllocations?.length).toBeGreaterThan(0)
      // A built-in (no script of its own) is named with the function that called it.
      expect(w.topAllocations?.some(([k]) => /^Map :0 <- .*\[eval\]:1$/.test(k))).toBe(true)
      expect(w.eventLoopDelay.maxMs).toBeGreaterThan(0)
      // The window's CPU profile (both profilers on one inspector session).
      const prof = JSON.parse(await readFile(`${outFile}.cpuprofile`, 'utf8')) as {
        nodes: { callFrame: { url: string } }[]
      }
      expect(prof.nodes.some((n) => n.callFrame.url === '[eval]')).toBe(true)
    } finally {
      child.kill('SIGKILL')
    }
    // Three waits of up to 30 s each on a loaded machine.
  }, 100_000)
})
