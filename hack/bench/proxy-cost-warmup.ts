// `npx tsx hack/bench/proxy-cost-warmup.ts`: does a fresh data plane keep getting cheaper over its
// first tens of thousands of requests (issue 11's falling window p99)? One zero-latency sim, our
// bundle with one worker (and, as the control, the floor proxy, proxy-floor.ts) started fresh,
// then vegeta at a fixed rate for --windows windows of --seconds each with no warm-up, the
// targets alternating window by window so that machine drift hits both alike. Per window, from
// inside each process (proxy-cost-probe.ts): CPU µs per request and GCs; with --trace (Node's
// `--trace-opt --trace-deopt`, written line-buffered to a file and cut at the window boundaries):
// functions compiled by the optimizing tier, deoptimizations by function and reason, compiled
// code thrown away through a broken dependency, and (`--trace-gc`) mark-compacts, those between
// windows too (the probe sees only its windows). A window's trace counts run from the end of the
// one before, so they include the idle gap before it. Counts, not wall time: they hold on a shared
// machine. `--trace` itself costs CPU per trace line, so CPU per request is read from a run
// without it.
//
//   nice -n -15 npx tsx hack/bench/proxy-cost-warmup.ts --windows 12 --seconds 5 --trace
//   nice -n -15 npx tsx hack/bench/proxy-cost-warmup.ts --windows 12 --seconds 5   # CPU only
//   npx tsx hack/bench/proxy-cost-warmup.ts --bundle /tmp/a/dataplane.mjs --compare /tmp/b/dataplane.mjs
//   npx tsx hack/bench/proxy-cost-warmup.ts --trace --no-floor --compare-gateway-arg=--scheduler-warmup=0
//   npx tsx hack/bench/proxy-cost-warmup.ts --trace --no-floor --compare-node-arg=--no-memory-reducer
import { type ChildProcess, spawn } from 'node:child_process'
import { closeSync, existsSync, openSync } from 'node:fs'
import { mkdir, mkdtemp, readFile, rm, stat, unlink, writeFile } from 'node:fs/promises'
import { loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { positiveArg } from './cli-args.js'
import { startZeroLatencySim } from './procs.js'
import {
  benchChatBody,
  benchGatewayArgs,
  benchGatewayNodeArgs,
  bundleDataplane,
} from './proxy-bundle.js'
import { PROBE_SOURCE, type ProbeWindow } from './proxy-cost-probe.js'
import { countV8Trace, tally, type V8TraceCounts } from './proxy-cost-v8trace.js'
import { FLOOR_CLIENTS, type FloorClient, floorBundle } from './proxy-floor.js'
import { attack, ensureVegeta, failures, report } from './proxy-vegeta.js'
import { singleEngineManifests } from './routing-config.js'

const { values: opts } = parseArgs({
  options: {
    windows: { type: 'string', default: '12' },
    seconds: { type: 'string', default: '5' },
    rate: { type: 'string', default: '500' },
    trace: { type: 'boolean', default: false },
    /** A data plane bundle built beforehand (default: bundle the tree). */
    bundle: { type: 'string' },
    /** A second bundle, fresh too, in the same alternation (label B). */
    compare: { type: 'string' },
    /** Data plane options of B only (repeatable; with no --compare: the same bundle). */
    'compare-gateway-arg': { type: 'string', multiple: true, default: [] },
    /** Node options of B only (repeatable; with no --compare: the same bundle). */
    'compare-node-arg': { type: 'string', multiple: true, default: [] },
    /** The control's upstream client (proxy-floor.ts; default raw, as the data plane's). */
    'floor-client': { type: 'string', default: 'raw' },
    'no-floor': { type: 'boolean', default: false },
    /** Extra Node options for every target (repeatable). */
    'node-arg': { type: 'string', multiple: true, default: [] },
    /**
     * A full collection (`gc()`, `--expose-gc`) in every target just before each window opens,
     * outside the window's probe counts: what a mark-compact throws away once the previous
     * window's client connections have closed.
     */
    'gc-before-window': { type: 'boolean', default: false },
    /** Rows of the per-phase function tables. */
    top: { type: 'string', default: '15' },
    /** Keep the trace files in this directory. */
    keep: { type: 'string' },
  },
})

const WINDOWS = positiveArg('windows', opts.windows)
const SECONDS = positiveArg('seconds', opts.seconds)
const RATE = positiveArg('rate', opts.rate)
const FLOOR_CLIENT: FloorClient = (() => {
  const f = FLOOR_CLIENTS.find((c) => c === opts['floor-client'])
  if (f === undefined) throw new Error(`--floor-client must be one of ${FLOOR_CLIENTS.join(', ')}`)
  return f
})()
const TRACE_FLAGS = ['--trace-opt', '--trace-deopt', '--trace-gc']

// Own addresses and ports: proxy-cost.ts and bench:proxy may run at the same time.
const SIM_HOST = '127.0.0.7'
const SIM_PORT = 18150
const GW_PORT = 18151
const MODEL = 'bench-model'
const out = (line: string) => process.stdout.write(`${line}\n`)

async function until(what: string, ok: () => boolean | Promise<boolean>, ms = 30_000) {
  const deadline = performance.now() + ms
  while (!(await ok())) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

interface Target {
  readonly label: string
  readonly child: ChildProcess
  readonly port: number
  readonly probeOut: string
  readonly log: string
  /** Byte offsets of the log at each window's end (index 0: before the first window). */
  readonly cuts: number[]
  readonly windows: { requests: number; failed: number; p99Ms: number; probe: ProbeWindow }[]
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'igw-proxy-warmup-'))
  const children: ChildProcess[] = []
  let sim: { stop(): Promise<void> } | undefined
  try {
    const vegeta = await ensureVegeta()
    if (!vegeta.ok) throw new Error(`vegeta is required: ${vegeta.reason}`)
    const bundle = opts.bundle ?? (await bundleDataplane(join(dir, 'dist')))
    const probe = join(dir, 'probe.mjs')
    await writeFile(probe, PROBE_SOURCE)
    const config = join(dir, 'config', 'gateway.yaml')
    await mkdir(join(dir, 'config'))
    await writeFile(config, singleEngineManifests(MODEL, SIM_HOST, SIM_PORT))
    const bodyFile = join(dir, 'body.json')
    await writeFile(bodyFile, benchChatBody(MODEL, false))
    sim = await startZeroLatencySim(SIM_HOST, SIM_PORT, MODEL)
    const nodeFlags = [
      `--import=${probe}`,
      ...benchGatewayNodeArgs(undefined),
      ...(opts.trace ? TRACE_FLAGS : []),
      ...(opts['gc-before-window'] ? ['--expose-gc'] : []),
      ...(opts['node-arg'] ?? []),
    ]
    const variants: {
      label: string
      file: string
      args: string[]
      ready: RegExp
      nodeArgs?: readonly string[]
    }[] = [
      {
        label: 'A',
        file: bundle,
        args: benchGatewayArgs(config, GW_PORT, ['--workers', '1']),
        ready: /data plane listening/,
      },
    ]
    const compareArgs = opts['compare-gateway-arg'] ?? []
    const compareNodeArgs = opts['compare-node-arg'] ?? []
    if (opts.compare !== undefined || compareArgs.length > 0 || compareNodeArgs.length > 0)
      variants.push({
        label: 'B',
        nodeArgs: compareNodeArgs,
        file: opts.compare ?? bundle,
        args: benchGatewayArgs(config, GW_PORT + 1, ['--workers', '1', ...compareArgs]),
        ready: /data plane listening/,
      })
    if (!opts['no-floor'])
      variants.push({
        label: 'F',
        file: await floorBundle(join(dir, 'floor')),
        args: [
          '--port',
          String(GW_PORT + 2),
          '--upstream',
          `http://${SIM_HOST}:${SIM_PORT}`,
          '--client',
          FLOOR_CLIENT,
        ],
        ready: /floor listening/,
      })
    const targets: Target[] = []
    for (const v of variants) {
      const log = join(dir, `${v.label}.log`)
      const fd = openSync(log, 'w')
      // stdbuf: V8 prints its trace through C stdio, fully buffered into a file; line-buffered,
      // each line lands in the window it happened in.
      const child = spawn(
        'stdbuf',
        ['-oL', '-eL', process.execPath, ...nodeFlags, ...(v.nodeArgs ?? []), v.file, ...v.args],
        {
          stdio: ['ignore', fd, fd],
          env: {
            ...process.env,
            IGW_COST_OUT: join(dir, `probe-${v.label}.json`),
            ...(opts['gc-before-window'] ? { IGW_COST_GC_BEFORE: '1' } : {}),
          },
        },
      )
      closeSync(fd)
      children.push(child)
      const t0 = performance.now()
      await until(`${v.label} ready`, async () => v.ready.test(await readFile(log, 'utf8')))
      const port = Number(v.args[v.args.indexOf('--port') + 1])
      // The data plane listens before its scheduler warm-up (--scheduler-warmup) ends; /readyz
      // says when it has. Traffic's own warm-up is measured from there.
      if (v.label !== 'F')
        await until(`${v.label} /readyz`, async () => {
          const r = await fetch(`http://127.0.0.1:${port}/readyz`).catch(() => undefined)
          return r?.status === 200
        })
      const readyMs = performance.now() - t0
      targets.push({
        label: v.label,
        child,
        port,
        probeOut: join(dir, `probe-${v.label}.json`),
        log,
        cuts: [(await stat(log)).size],
        windows: [],
      })
      out(
        `${v.label}: ${(v.nodeArgs ?? []).join(' ')} ${v.file} ${v.args.join(' ')} (pid ${child.pid}, ready after ${readyMs.toFixed(0)} ms)`,
      )
    }
    out(
      `node flags: ${nodeFlags.slice(1).join(' ')}; load ${loadavg()
        .map((x) => x.toFixed(2))
        .join(' ')}`,
    )

    for (let w = 0; w < WINDOWS; w++) {
      for (const t of targets) {
        const f = t.probeOut
        for (const x of [f, `${f}.opened`]) await unlink(x).catch(() => {})
        t.child.kill('SIGUSR2')
        await until('the probe to open', () => existsSync(`${f}.opened`))
        const file = join(dir, `v-${t.label}-${w}.bin`)
        await attack(vegeta.bin, {
          url: `http://127.0.0.1:${t.port}/v1/chat/completions`,
          bodyFile,
          rate: RATE,
          seconds: SECONDS,
          output: file,
        })
        t.child.kill('SIGUSR2')
        await until('the probe to close', () => existsSync(f))
        t.cuts.push((await stat(t.log)).size)
        const r = await report(vegeta.bin, [file])
        await unlink(file).catch(() => {})
        t.windows.push({
          requests: r.requests,
          failed: failures(r),
          p99Ms: r.p99Ms,
          probe: JSON.parse(await readFile(f, 'utf8')) as ProbeWindow,
        })
      }
      out(`window ${w + 1} done; load ${loadavg()[0]?.toFixed(2)}`)
    }

    const top = Number(opts.top)
    for (const t of targets) {
      const text = await readFile(t.log)
      const slice = (a: number, b: number): V8TraceCounts =>
        countV8Trace(text.subarray(a, b).toString('utf8'))
      const startup = slice(0, t.cuts[0] ?? 0)
      out(`\n== ${t.label}`)
      if (opts.trace)
        out(
          `start-up (to /readyz, the scheduler warm-up included): ${startup.compiledFns.length} optimized compiles, ${startup.deopts.length} deopts`,
        )
      out(
        'window  requests  cpu µs/req  (user/sys)  minor/major GC  GC µs/req  p99 ms' +
          (opts.trace ? '  marked  compiled  deopts  dep.code  mark-compacts (to window end)' : ''),
      )
      let done = 0
      for (const [i, w] of t.windows.entries()) {
        const p = w.probe
        const cpu = (p.cpuUserUs + p.cpuSystemUs) / w.requests
        const c = slice(t.cuts[i] ?? 0, t.cuts[i + 1] ?? 0)
        done += w.requests
        out(
          `${String(i + 1).padStart(6)}  ${String(w.requests).padStart(8)}  ${cpu.toFixed(0).padStart(10)}  (${(p.cpuUserUs / w.requests).toFixed(0)}/${(p.cpuSystemUs / w.requests).toFixed(0)})  ${String(p.gc.minor).padStart(9)}/${p.gc.major}  ${((p.gc.pauseMs * 1000) / w.requests).toFixed(1).padStart(9)}  ${w.p99Ms.toFixed(2).padStart(6)}` +
            (opts.trace
              ? `  ${String(c.marked).padStart(6)}  ${String(c.compiledFns.length).padStart(8)}  ${String(c.deopts.length).padStart(6)}  ${String(c.dependentCode.length).padStart(8)}  ${String(c.markCompacts.length).padStart(3)}`
              : '') +
            `   (${done} requests so far${w.failed > 0 ? `, ${w.failed} failed` : ''})`,
        )
      }
      if (!opts.trace) continue
      const third = Math.max(1, Math.floor(WINDOWS / 4))
      const phases: [string, number, number][] = [
        [`windows 1-${third}`, 0, third],
        [`windows ${WINDOWS - third + 1}-${WINDOWS}`, WINDOWS - third, WINDOWS],
        ['all windows', 0, WINDOWS],
      ]
      for (const [name, a, b] of phases) {
        const c = slice(t.cuts[a] ?? 0, t.cuts[b] ?? 0)
        out(`-- ${name}: compiled (function ×n)`)
        out(
          `   ${tally(c.compiledFns)
            .slice(0, top)
            .map(([k, n]) => `${k} ×${n}`)
            .join(', ')}`,
        )
        if (c.markCompacts.length > 0)
          out(
            `-- ${name}: mark-compacts: ${tally(c.markCompacts)
              .map(([k, n]) => `${k} ×${n}`)
              .join(', ')}`,
          )
        out(`-- ${name}: deopts (function: kind, reason ×n)`)
        for (const [k, n] of tally(c.deopts.map((d) => `${d.fn}: ${d.kind}, ${d.reason}`)).slice(
          0,
          top,
        ))
          out(`   ${String(n).padStart(4)}  ${k}`)
        if (c.dependentCode.length > 0) {
          out(`-- ${name}: dependent code thrown away (function: reason ×n)`)
          for (const [k, n] of tally(c.dependentCode.map((d) => `${d.fn}: ${d.reason}`)).slice(
            0,
            top,
          ))
            out(`   ${String(n).padStart(4)}  ${k}`)
        }
      }
    }
    if (opts.keep !== undefined) {
      await mkdir(opts.keep, { recursive: true })
      for (const t of targets) {
        await writeFile(join(opts.keep, `${t.label}.log`), await readFile(t.log))
        await writeFile(join(opts.keep, `${t.label}.cuts.json`), JSON.stringify(t.cuts))
      }
    }
  } finally {
    for (const c of children) {
      if (c.exitCode === null && c.signalCode === null) {
        const exited = new Promise((r) => c.once('exit', r))
        c.kill('SIGTERM')
        await exited
      }
    }
    await sim?.stop()
    await rm(dir, { recursive: true, force: true })
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`)
  process.exitCode = 1
})
