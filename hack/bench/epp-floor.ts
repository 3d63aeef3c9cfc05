// The transport floor of `npm run bench:epp`: an ext_proc server that decides nothing — a fixed
// destination, the body echoed — on the EPP's own stack (grpc-js with proto-loader's serializers,
// a TCP_NODELAY listener, the two answers written as the EPP writes them: call-writer.ts). Run
// beside the real EPP with the same client and body, it separates what the decision costs from
// what one ext_proc stream costs in Node whatever the EPP does. Run by epp.ts through
// spawnScript: prints `READY <port>` and stops on SIGTERM.
// `--transport http2` (or EPP_FLOOR_TRANSPORT=http2): the same server on node:http2 directly
// (hack/bench/epp-h2-grpc.ts) instead of grpc-js, the same serializers: what grpc-js's layers cost.
import { createServer } from 'node:net'
import { parseArgs } from 'node:util'
import { setFlagsFromString } from 'node:v8'
import * as grpc from '@grpc/grpc-js'
import type { MethodDefinition } from '@grpc/proto-loader'
import { type CallWriter, callWriter } from '../../dataplane/epp/call-writer.js'
import {
  extProcPackage,
  type ProcessingRequest,
  type ProcessingResponse,
} from '../../dataplane/epp/proto.js'
import { listenBidi } from './epp-h2-grpc.js'

const { values: opts } = parseArgs({
  options: {
    transport: { type: 'string', default: process.env['EPP_FLOOR_TRANSPORT'] ?? 'grpc-js' },
  },
})
if (opts.transport !== 'grpc-js' && opts.transport !== 'http2')
  throw new Error(`--transport ${opts.transport}: grpc-js or http2`)

const DESTINATION = '127.0.0.1:9,127.0.0.2:9'

// GC pauses as lines on stdout, counted by epp.ts per run as for the EPP (a trace flag, so it can
// be turned on from inside the process).
if (process.env['EPP_FLOOR_TRACE_GC'] === '1') setFlagsFromString('--trace-gc')

function header(key: string, value: string) {
  return { header: { key, raw_value: Buffer.from(value) }, append_action: 2 }
}

/** The request phase's two answers in full duplex: a fixed destination, the body echoed. */
function answer(send: CallWriter['send'], chunks: readonly Buffer[]): void {
  send({
    request_headers: {
      response: {
        header_mutation: {
          set_headers: [header('x-gateway-destination-endpoint', DESTINATION)],
        },
        clear_route_cache: true,
      },
    },
    dynamic_metadata: {
      fields: {
        'envoy.lb': {
          struct_value: {
            fields: { 'x-gateway-destination-endpoint': { string_value: DESTINATION } },
          },
        },
      },
    },
  })
  const body = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks)
  send({
    request_body: {
      response: { body_mutation: { streamed_response: { body, end_of_stream: true } } },
    },
  })
}

/** The phases as the EPP answers them in full duplex, minus the decision. */
function stream(w: Pick<CallWriter, 'send' | 'together'>): (req: ProcessingRequest) => void {
  const send = w.send
  let chunks: Buffer[] = []
  return (req) => {
    if (req.request === 'request_body') {
      const b = req.request_body
      if (b?.body !== undefined && b.body.length > 0) chunks.push(b.body)
      if (b?.end_of_stream !== true) return
      // Both answers in one socket write, as the EPP writes them (call-writer.ts).
      const all = chunks
      chunks = []
      w.together(() => answer(send, all))
    } else if (req.request === 'response_headers') {
      send({ response_headers: { response: {} } })
    } else if (req.request === 'response_body') {
      const b = req.response_body
      send({
        response_body: {
          response: {
            body_mutation: {
              streamed_response: {
                body: b?.body ?? Buffer.alloc(0),
                end_of_stream: b?.end_of_stream === true,
              },
            },
          },
        },
      })
    }
  }
}

if (opts.transport === 'http2') {
  const def = extProcPackage()['envoy.service.ext_proc.v3.ExternalProcessor'] as unknown as Record<
    string,
    MethodDefinition<ProcessingRequest, ProcessingResponse>
  >
  const m = def['Process'] as MethodDefinition<ProcessingRequest, ProcessingResponse>
  const server = await listenBidi<ProcessingRequest, ProcessingResponse>(
    {
      path: m.path,
      decode: m.requestDeserialize,
      encode: m.responseSerialize,
      maxMessageBytes: 4 * 1024 * 1024,
      open: (call) => {
        const on = stream(call)
        return { onMessage: on, onEnd: () => call.end(), onCancel: () => {} }
      },
    },
    '127.0.0.1',
    0,
  )
  process.stdout.write(`READY ${server.port}\n`)
  process.once('SIGTERM', () => void server.close())
} else {
  const pkg = grpc.loadPackageDefinition(extProcPackage()) as unknown as {
    envoy: { service: { ext_proc: { v3: { ExternalProcessor: grpc.ServiceClientConstructor } } } }
  }
  const server = new grpc.Server()
  server.addService(pkg.envoy.service.ext_proc.v3.ExternalProcessor.service, {
    Process: (call: grpc.ServerDuplexStream<ProcessingRequest, ProcessingResponse>) => {
      const on = stream(callWriter(call))
      call.on('data', on)
      call.on('end', () => call.end())
    },
  })
  const injector = server.createConnectionInjector(grpc.ServerCredentials.createInsecure())
  const listener = createServer({ noDelay: true }, (s) => injector.injectConnection(s))
  listener.listen(0, '127.0.0.1', () => {
    const a = listener.address()
    process.stdout.write(`READY ${typeof a === 'object' && a !== null ? a.port : 0}\n`)
  })
  process.once('SIGTERM', () => {
    listener.close()
    server.forceShutdown()
  })
}
