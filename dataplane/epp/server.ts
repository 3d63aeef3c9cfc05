// The EPP's listeners: gRPC (h2c) with envoy.service.ext_proc.v3.ExternalProcessor and
// grpc.health.v1.Health, and a small HTTP port for Prometheus metrics and probes.
import { createServer, type Server as HttpServer } from 'node:http'
import { type AddressInfo, createServer as createNetServer } from 'node:net'
import * as grpc from '@grpc/grpc-js'
import { Counter, Gauge, Histogram } from 'prom-client'
import type { Logger } from '../log.js'
import type { GatewayMetrics } from '../metrics.js'
import type { Scheduler } from '../scheduler/index.js'
import { callWriter } from './call-writer.js'
import type { EppCore } from './core.js'
import type { PhaseRecorder } from './phases.js'
import {
  type BodyMode,
  extProcPackage,
  type ProcessingRequest,
  type ProcessingResponse,
  ServingStatus,
} from './proto.js'
import { ExtProcStream } from './stream.js'

export const EXT_PROC_SERVICE = 'envoy.service.ext_proc.v3.ExternalProcessor'
/** Health service names GAIE's EPPs answer (the conformance manifests probe `inference-extension`). */
const HEALTH_SERVICES = new Set([
  '',
  'liveness',
  'readiness',
  EXT_PROC_SERVICE,
  'inference-extension',
])

export interface EppServerOptions {
  readonly core: EppCore
  readonly scheduler: Scheduler
  readonly metrics: GatewayMetrics
  readonly host: string
  readonly grpcPort: number
  /** Prometheus /metrics, /healthz, /readyz (and /debug/endpoints with `explain`); undefined = off. */
  readonly metricsPort?: number
  readonly bodyMode: BodyMode
  readonly maxBodyBytes: number
  readonly explain?: boolean
  /** `--debug-phases`: time each decision's steps, serve GET /debug/phases (phases.ts). */
  readonly phases?: PhaseRecorder
  readonly log: Logger
}

export interface EppServer {
  /** host:port of the gRPC listener. */
  readonly grpcAddress: string
  readonly metricsUrl: string | undefined
  close(): Promise<void>
}

class ExtProcError extends Error {
  override readonly name = 'ExtProcError'
  readonly code = 'EPP_LISTEN_FAILED'
}

export async function startEppServer(opts: EppServerOptions): Promise<EppServer> {
  const { core, scheduler, metrics, log } = opts
  const registers = [metrics.registry]
  const decisions = new Counter({
    name: 'infer_gateway_epp_decisions_total',
    help: 'Endpoint picker answers by result: routed, or the code of the ImmediateResponse.',
    labelNames: ['result'] as const,
    registers,
  })
  const decisionSeconds = new Histogram({
    name: 'infer_gateway_epp_decision_duration_seconds',
    help: 'From the request headers reaching the EPP to its answer (body buffering included).',
    buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1],
    registers,
  })
  const streams = new Gauge({
    name: 'infer_gateway_epp_streams',
    help: 'Open ext_proc streams (one per HTTP request through the gateway).',
    registers,
  })
  new Gauge({
    name: 'infer_gateway_epp_inflight_requests',
    help: 'Requests picked by this EPP and not finished yet, by endpoint (ip:port).',
    labelNames: ['endpoint'] as const,
    registers,
    collect() {
      this.reset()
      core.settle()
      for (const [id, [requests]] of scheduler.localLoad()) this.set({ endpoint: id }, requests)
    },
  })

  const pkg = grpc.loadPackageDefinition(extProcPackage()) as unknown as {
    envoy: { service: { ext_proc: { v3: { ExternalProcessor: grpc.ServiceClientConstructor } } } }
    grpc: { health: { v1: { Health: grpc.ServiceClientConstructor } } }
  }
  const server = new grpc.Server({
    // Bodies come in 64 KiB chunks; the default 4 MiB message cap covers a BUFFERED body up to
    // it. Above that Envoy refuses to buffer anyway (its own buffer limit).
    'grpc.max_receive_message_length': Math.max(4 * 1024 * 1024, opts.maxBodyBytes + 65_536),
  })
  // proto-loader's (protobufjs) serializers for the messages too: a hand-written codec saved
  // ~10 µs of CPU per stream (docs/epp.md, "Cost per decision"), not worth a second way.
  const phases = opts.phases
  const extProc = timedCoding(pkg.envoy.service.ext_proc.v3.ExternalProcessor.service, phases)
  server.addService(extProc, {
    Process: (call: grpc.ServerDuplexStream<ProcessingRequest, ProcessingResponse>) => {
      streams.inc()
      const writer = callWriter(call)
      const stream = new ExtProcStream(core, writer.send, {
        bodyMode: opts.bodyMode,
        maxBodyBytes: opts.maxBodyBytes,
        onDecision: (result, ms) => {
          decisions.inc({ result })
          decisionSeconds.observe(ms / 1000)
        },
        ...(phases !== undefined ? { phases } : {}),
        together: writer.together,
      })
      // Messages are handled one at a time, in order (admission may wait).
      let chain: Promise<void> = Promise.resolve()
      let closed = false
      const close = (reset: boolean): void => {
        if (closed) return
        closed = true
        streams.dec()
        stream.close(reset)
      }
      call.on('data', (req: ProcessingRequest) => {
        const at = phases !== undefined ? performance.now() : undefined
        chain = chain
          .then(() => stream.handle(req, at))
          .catch((e: unknown) => {
            log('error', 'ext_proc stream failed', {
              error: e instanceof Error ? e.message : String(e),
            })
            close(true)
            call.destroy(e instanceof Error ? e : new Error(String(e)))
          })
      })
      call.on('end', () => {
        void chain.then(() => {
          close(false)
          call.end()
        })
      })
      call.on('cancelled', () => close(true))
      call.on('error', () => close(true))
      call.on('close', () => close(true))
    },
  })
  server.addService(pkg.grpc.health.v1.Health.service, {
    Check: (
      call: grpc.ServerUnaryCall<{ service?: string }, { status: number }>,
      cb: grpc.sendUnaryData<{ status: number }>,
    ) => {
      const service = call.request.service ?? ''
      if (!HEALTH_SERVICES.has(service)) {
        cb({ code: grpc.status.NOT_FOUND, details: `unknown service "${service}"` })
        return
      }
      cb(null, { status: healthStatus(service) })
    },
    Watch: (call: grpc.ServerWritableStream<{ service?: string }, { status: number }>) => {
      const service = call.request.service ?? ''
      let last = -1
      const tick = (): void => {
        const s = HEALTH_SERVICES.has(service)
          ? healthStatus(service)
          : ServingStatus.SERVICE_UNKNOWN
        if (s !== last) call.write({ status: s })
        last = s
      }
      tick()
      const timer = setInterval(tick, 1000)
      call.on('cancelled', () => clearInterval(timer))
      call.on('close', () => clearInterval(timer))
    },
  })
  function healthStatus(service: string): number {
    if (service === 'liveness') return ServingStatus.SERVING
    return core.ready() ? ServingStatus.SERVING : ServingStatus.NOT_SERVING
  }

  // Our own listener, its connections handed to grpc-js: grpc-js's own listener leaves Nagle's
  // algorithm on, and an answer written as two frames (the destination, then the last body chunk)
  // can then sit in the kernel until the gateway's delayed ACK, milliseconds on every unlucky
  // request. The EPP's writes are whole answers: send each at once.
  const injector = server.createConnectionInjector(grpc.ServerCredentials.createInsecure())
  const listener = createNetServer({ noDelay: true, keepAlive: true }, (socket) =>
    injector.injectConnection(socket),
  )
  await new Promise<void>((resolve, reject) => {
    listener.once('error', (err) =>
      reject(new ExtProcError(`gRPC listen on ${opts.host}:${opts.grpcPort}: ${err.message}`)),
    )
    listener.listen(opts.grpcPort, opts.host, () => resolve())
  })
  const port = (listener.address() as AddressInfo).port
  const grpcAddress = `${opts.host.includes(':') ? `[${opts.host}]` : opts.host}:${port}`

  let http: HttpServer | undefined
  let metricsUrl: string | undefined
  if (opts.metricsPort !== undefined) {
    const h = createServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0]
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.writeHead(405, { allow: 'GET, HEAD' }).end()
        return
      }
      if (path === '/metrics') {
        metrics.registry.metrics().then(
          (text) => res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(text),
          () => res.writeHead(500).end(),
        )
        return
      }
      if (path === '/healthz') {
        res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ok"}')
        return
      }
      if (path === '/readyz') {
        const ok = core.ready()
        res
          .writeHead(ok ? 200 : 503, { 'content-type': 'application/json' })
          .end(
            JSON.stringify({ status: ok ? 'ready' : 'pool-not-in-snapshot', pool: core.pool.key }),
          )
        return
      }
      if (path === '/debug/phases' && phases !== undefined) {
        const body = JSON.stringify(phases.summary(), null, 2)
        if (/[?&]reset=1(&|$)/.test(req.url ?? '')) phases.reset()
        res.writeHead(200, { 'content-type': 'application/json' }).end(body)
        return
      }
      if (path === '/debug/endpoints' && opts.explain === true) {
        core.settle()
        res
          .writeHead(200, { 'content-type': 'application/json' })
          .end(JSON.stringify(scheduler.debug(), null, 2))
        return
      }
      res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"not found"}')
    })
    await new Promise<void>((resolve, reject) => {
      h.once('error', reject)
      h.listen(opts.metricsPort, opts.host, () => {
        h.off('error', reject)
        resolve()
      })
    })
    http = h
    const a = h.address() as AddressInfo
    metricsUrl = `http://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`
  }

  return {
    grpcAddress,
    metricsUrl,
    async close() {
      const stopped = new Promise<void>((r) => listener.close(() => r()))
      await new Promise<void>((resolve) => {
        // Open streams are requests in flight at Envoy: give them a moment, then cut.
        const t = setTimeout(() => server.forceShutdown(), 2000)
        server.tryShutdown(() => {
          clearTimeout(t)
          resolve()
        })
      })
      injector.destroy()
      await stopped
      if (http !== undefined) {
        const h = http
        h.closeAllConnections()
        await new Promise<void>((r) => h.close(() => r()))
      }
    },
  }
}

/** With `--debug-phases`, the ext_proc method's protobuf coding timed (phases.ts). */
function timedCoding(
  service: grpc.ServiceDefinition,
  phases: PhaseRecorder | undefined,
): grpc.ServiceDefinition {
  if (phases === undefined) return service
  return Object.fromEntries(
    Object.entries(service).map(([name, m]) => [
      name,
      {
        ...m,
        requestDeserialize: phases.deserializer(m.requestDeserialize),
        responseSerialize: phases.serializer(m.responseSerialize),
      },
    ]),
  )
}
