// `epp --debug-phases`: each decision's steps timed inside the EPP. In process against the real
// scheduler (which steps are recorded, for which answers), then one EPP on loopback driven by a
// grpc-js client: the coding wrappers, node:http2's write callbacks and GET /debug/phases.
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as grpc from '@grpc/grpc-js'
import { afterEach, describe, expect, it } from 'vitest'
import { manifests } from '../../test/helpers/config.js'
import { endpoint, server, snapshot } from '../../test/helpers/snapshot.js'
import { silentLogger } from '../log.js'
import { Scheduler } from '../scheduler/index.js'
import { SnapshotStore } from '../snapshot-store.js'
import { startEpp } from './command.js'
import { EppCore } from './core.js'
import { PhaseRecorder, type PhaseSummary, STEPS } from './phases.js'
import {
  BodyMode,
  extProcPackage,
  type ProcessingRequest,
  type ProcessingResponse,
} from './proto.js'
import { ExtProcStream } from './stream.js'

const hv = (key: string, value: string) => ({ key, raw_value: Buffer.from(value) })
const chat = (content: string) =>
  JSON.stringify({ model: 'm', messages: [{ role: 'user', content }] })

function requestMessages(body: string, mode: BodyMode, chunk = 1024): ProcessingRequest[] {
  const raw = Buffer.from(body)
  const out: ProcessingRequest[] = [
    {
      request: 'request_headers',
      protocol_config: { request_body_mode: mode, response_body_mode: mode },
      request_headers: {
        headers: { headers: [hv(':method', 'POST'), hv(':path', '/v1/chat/completions')] },
      },
    },
  ]
  for (let at = 0; at < raw.length; at += chunk)
    out.push({
      request: 'request_body',
      request_body: {
        body: raw.subarray(at, at + chunk),
        end_of_stream: at + chunk >= raw.length,
      },
    })
  return out
}

const step = (s: PhaseSummary, name: string) => s.steps.find((x) => x.step === name)

describe('PhaseRecorder with ExtProcStream', () => {
  const recorders: PhaseRecorder[] = []
  afterEach(() => {
    for (const r of recorders.splice(0)) r.stop()
  })

  function setup() {
    const eps = [endpoint('a', '10.0.0.1', 8000), endpoint('b', '10.0.0.2', 8000)]
    const srv = server('pool', eps)
    const store = new SnapshotStore()
    const scheduler = new Scheduler({ scrape: false })
    store.onSwap((s) => scheduler.onSnapshot(s))
    store.swap(snapshot([], [srv]))
    const core = new EppCore({ store, picker: scheduler, pool: { kind: 'server', key: srv.key } })
    const phases = new PhaseRecorder()
    recorders.push(phases)
    // As node:http2 does: a write completes in a later turn.
    const sent: ProcessingResponse[] = []
    const open = (mode: BodyMode) =>
      new ExtProcStream(
        core,
        (r, written) => {
          sent.push(r)
          if (written !== undefined) setImmediate(written)
        },
        { bodyMode: mode, maxBodyBytes: 1 << 20, phases },
      )
    return { phases, open, sent }
  }

  const settled = () => new Promise((r) => setImmediate(() => setImmediate(r)))

  it('records a decision once its answers are written and its bookkeeping done, in both body modes', async () => {
    const { phases, open, sent } = setup()
    for (const mode of [BodyMode.FULL_DUPLEX_STREAMED, BodyMode.BUFFERED]) {
      const s = open(mode)
      for (const m of requestMessages(chat('x'.repeat(4000)), mode)) await s.handle(m)
    }
    // Answers are out but not written yet: nothing recorded.
    expect(phases.summary().decisions).toBe(0)
    await settled()
    const sum = phases.summary()
    expect(sum.decisions).toBe(2)
    expect(sum.steps.map((x) => x.step)).toEqual(STEPS.map(([name]) => name))
    for (const name of ['parse', 'pick', 'total', 'bookkept'])
      expect(step(sum, name)?.p99Us).toBeGreaterThan(0)
    // Every step of a decision lies inside its total.
    expect(step(sum, 'total')?.p99Us).toBeGreaterThanOrEqual(step(sum, 'decision')?.p99Us ?? 0)
    expect(sum.slowest.decisions).toBe(1)
    expect(Object.values(sum.slowest.longestStep)).toEqual([1])
    // Full duplex: destination, then the echoed body; buffered: one answer.
    expect(sent.map((r) => Object.keys(r).find((k) => k !== 'dynamic_metadata'))).toEqual([
      'request_headers',
      'request_body',
      'request_headers',
      'request_body',
    ])
  })

  it('a refused request records nothing; reset starts over', async () => {
    const { phases, open } = setup()
    const s = open(BodyMode.FULL_DUPLEX_STREAMED)
    for (const m of requestMessages('{"messages": []}', BodyMode.FULL_DUPLEX_STREAMED))
      await s.handle(m)
    await settled()
    expect(phases.summary().decisions).toBe(0)
    const ok = open(BodyMode.FULL_DUPLEX_STREAMED)
    for (const m of requestMessages(chat('hi'), BodyMode.FULL_DUPLEX_STREAMED)) await ok.handle(m)
    await settled()
    expect(phases.summary().decisions).toBe(1)
    phases.reset()
    expect(phases.summary()).toMatchObject({ decisions: 0, slowest: { decisions: 0 } })
  })
})

describe('epp --debug-phases on loopback', () => {
  const cleanups: (() => Promise<void>)[] = []
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c()
  })

  it('times the coding and the writes of a real grpc-js call; GET /debug/phases, ?reset=1', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'epp-phases-'))
    cleanups.push(() => rm(dir, { recursive: true, force: true }))
    const config = join(dir, 'pool.yaml')
    const eps = [
      { name: 'a', address: '127.0.0.251', port: 9 },
      { name: 'b', address: '127.0.0.252', port: 9 },
    ]
    await writeFile(config, manifests([{ name: 'pool', endpoints: eps }], []))
    const epp = await startEpp({
      pool: { kind: 'server', key: 'default/pool' },
      config: { kind: 'manifests', paths: [config] },
      host: '127.0.0.1',
      grpcPort: 0,
      metricsPort: 0,
      fallbacks: 1,
      bodyMode: BodyMode.FULL_DUPLEX_STREAMED,
      maxBodyBytes: 1 << 20,
      scrape: 'off',
      debugPhases: true,
      log: silentLogger,
    })
    cleanups.push(() => epp.close())
    const pkg = grpc.loadPackageDefinition(extProcPackage()) as unknown as {
      envoy: {
        service: { ext_proc: { v3: { ExternalProcessor: grpc.ServiceClientConstructor } } }
      }
    }
    const client = new pkg.envoy.service.ext_proc.v3.ExternalProcessor(
      epp.server.grpcAddress,
      grpc.credentials.createInsecure(),
    )
    cleanups.push(async () => client.close())
    const body = chat('y'.repeat(40_000))
    const answers = await new Promise<ProcessingResponse[]>((resolve, reject) => {
      const call = (
        client as unknown as {
          Process(): grpc.ClientDuplexStream<ProcessingRequest, ProcessingResponse>
        }
      ).Process()
      const got: ProcessingResponse[] = []
      call.on('data', (r: ProcessingResponse) => {
        got.push(r)
        if (got.length === 2) {
          call.end()
          resolve(got)
        }
      })
      call.on('error', reject)
      for (const m of requestMessages(body, BodyMode.FULL_DUPLEX_STREAMED, 16 * 1024)) call.write(m)
    })
    const echoed = answers[1]?.request_body?.response?.body_mutation
    expect(echoed !== undefined && 'streamed_response' in echoed).toBe(true)
    expect(
      echoed !== undefined && 'streamed_response' in echoed ? echoed.streamed_response.body : '',
    ).toEqual(Buffer.from(body))
    const url = `${epp.server.metricsUrl}/debug/phases`
    let sum: PhaseSummary | undefined
    for (let i = 0; i < 100 && (sum?.decisions ?? 0) === 0; i++) {
      sum = (await (await fetch(`${url}?reset=1`)).json()) as PhaseSummary
      if (sum.decisions === 0) await new Promise((r) => setTimeout(r, 20))
    }
    expect(sum?.decisions).toBe(1)
    // The protobuf coding around grpc-js, and both answers' write callbacks, were seen.
    for (const name of ['decode', 'encode1', 'encode2', 'flush1', 'total'])
      expect(step(sum as PhaseSummary, name)?.p50Us).toBeGreaterThan(0)
    const again = (await (await fetch(url)).json()) as PhaseSummary
    expect(again.decisions).toBe(0)
  })
})
