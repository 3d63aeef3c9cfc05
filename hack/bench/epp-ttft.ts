// `npm run bench:epp-ttft -- [--requests 300] [--no-write]`: where the time to first token
// goes on the gateway path alone. The same streamed chat request, one at a time, to engines that
// answer at once (the simulator with zero latency), through three gateways in turn: our data
// plane, Envoy + EPP in GAIE's reference setup (request and response bodies through the EPP, full
// duplex) and Envoy + EPP with the response headers only (test/epp-client/envoy-config.ts). With
// no engine time in it, TTFT here is the gateway's own share; the differences between the rows
// are the extra hops (Envoy, the EPP round trips), the rest of bench:routing's TTFT is the engine.
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import type { ResponsePhase } from '../../test/epp-client/envoy-config.js'
import { freePort } from '../cluster/control-plane.js'
import { createRng } from '../sim/rng.js'
import { startFleet, startGateway } from './fleet-process.js'
import { percentile } from './load.js'
import type { Proc } from './procs.js'
import { fmt, table, writeSection } from './report.js'
import { fleetEndpoints, routingManifests } from './routing-config.js'
import { startEnvoy, startEpp } from './routing-epp.js'
import { words } from './words.js'

const { values: opts } = parseArgs({
  options: {
    requests: { type: 'string', default: '300' },
    'no-write': { type: 'boolean', default: false },
  },
})
const MODEL = 'bench-llm'
const PODS = 4

/** ms from sending the request to the first content token, and to the end. */
async function ttft(url: string, body: string): Promise<[number, number]> {
  const t0 = performance.now()
  const res = await fetch(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body,
  })
  if (res.status !== 200 || res.body === null) throw new Error(`status ${res.status}`)
  let first = -1
  let seen = ''
  const decoder = new TextDecoder()
  for await (const chunk of res.body) {
    if (first < 0) {
      seen += decoder.decode(chunk as Uint8Array, { stream: true })
      if (seen.includes('"content":"')) first = performance.now() - t0
    }
  }
  return [first, performance.now() - t0]
}

async function main(): Promise<void> {
  const n = Number(opts.requests)
  const fleet = await startFleet(
    Array.from({ length: PODS }, (_, i) => ({
      name: `pod-${i}`,
      host: `127.0.0.${131 + i}`,
      port: 0,
      model: MODEL,
      metricsFormat: 'vllm' as const,
      zeroLatency: true,
    })),
  )
  const dir = await mkdtemp(join(tmpdir(), 'igw-epp-ttft-'))
  const procs: Proc[] = []
  const rows: { gateway: string; p50: number; p90: number; p99: number; e2eP50: number }[] = []
  try {
    const file = join(dir, 'gw.yaml')
    await writeFile(
      file,
      routingManifests({
        model: MODEL,
        endpoints: fleetEndpoints(fleet.members),
        retries: 2,
      }),
    )
    const gateways: [string, string][] = []
    const dpPort = await freePort()
    procs.push(await startGateway(file, dpPort, PODS))
    gateways.push(['data plane', `http://127.0.0.1:${dpPort}`])
    const grpcPort = await freePort()
    procs.push(await startEpp(file, grpcPort, await freePort(), PODS))
    const setups: [string, ResponsePhase][] = [
      ['Envoy + EPP, response body through the EPP (GAIE reference)', 'body'],
      ['Envoy + EPP, response headers only', 'headers'],
    ]
    for (const [i, [name, response]] of setups.entries()) {
      const port = await freePort()
      procs.push(
        await startEnvoy(dir, port, grpcPort, fleet, response, (process.pid % 10_000) * 2 + i),
      )
      gateways.push([name, `http://127.0.0.1:${port}`])
    }
    // 16 prompt groups as bench:routing's shared-prefix regime, 16 tokens each.
    const rng = createRng(7)
    const systems = Array.from({ length: 16 }, (_, g) => words(1500, createRng(100 + g)))
    const bodies = Array.from({ length: n + 20 }, () =>
      JSON.stringify({
        model: MODEL,
        messages: [
          { role: 'system', content: systems[Math.floor(rng() * 16)] },
          { role: 'user', content: words(60, rng) },
        ],
        max_tokens: 16,
        stream: true,
      }),
    )
    const samples = gateways.map(() => [] as [number, number][])
    // Interleaved: each request goes to the three gateways in turn, so a busy moment of the
    // machine falls on all of them alike. The first 20 warm up connections and caches.
    for (const [i, body] of bodies.entries())
      for (const [g, [, url]] of gateways.entries()) {
        const s = await ttft(url, body)
        if (i >= 20) samples[g]?.push(s)
      }
    for (const [g, [name]] of gateways.entries()) {
      const t = (samples[g] ?? []).map((s) => s[0]).sort((a, b) => a - b)
      const e = (samples[g] ?? []).map((s) => s[1]).sort((a, b) => a - b)
      rows.push({
        gateway: name,
        p50: percentile(t, 50),
        p90: percentile(t, 90),
        p99: percentile(t, 99),
        e2eP50: percentile(e, 50),
      })
    }
  } finally {
    for (const p of procs.reverse()) await p.stop()
    await fleet.stop()
    await rm(dir, { recursive: true, force: true })
  }
  const md = [
    '## TTFT on the gateway path (Envoy + EPP vs the data plane)',
    '',
    `\`npm run bench:epp-ttft\`: ${n} streamed chat requests (a 1500-token system prompt of 16 groups + 60-token question, 16 tokens out), one at a time, each to the three gateways in turn, ${PODS} simulated engines answering at once (zero latency): the TTFT is the gateway path's own. Envoy 1.40 with the ext_proc filter on \`infer-gateway epp\` (request body FULL_DUPLEX_STREAMED).`,
    '',
    table(
      ['gateway', 'TTFT p50 ms', 'TTFT p90 ms', 'TTFT p99 ms', 'e2e p50 ms'],
      rows.map((r) => [r.gateway, fmt(r.p50, 2), fmt(r.p90, 2), fmt(r.p99, 2), fmt(r.e2eP50, 2)]),
    ),
  ].join('\n')
  process.stdout.write(`${md}\n`)
  if (!opts['no-write']) await writeSection('epp-ttft', md, rows)
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`)
  process.exitCode = 1
})
