// callWriter on a real grpc-js server and client over loopback: answers written together leave
// as one write of the call's HTTP/2 stream (grpc-js's internals as this version has them), in
// order and with every write callback; behind a message still in grpc-js's queue they go through
// it one at a time, still in order.
import * as grpc from '@grpc/grpc-js'
import { afterEach, describe, expect, it } from 'vitest'
import { callWriter, type ExtProcCall } from './call-writer.js'
import { extProcPackage, type ProcessingRequest, type ProcessingResponse } from './proto.js'

type Pkg = {
  envoy: { service: { ext_proc: { v3: { ExternalProcessor: grpc.ServiceClientConstructor } } } }
}

const answer = (n: number): ProcessingResponse => ({
  request_body: {
    response: {
      body_mutation: {
        streamed_response: { body: Buffer.alloc(20_000 + n, n), end_of_stream: false },
      },
    },
  },
})

const sizeOf = (r: ProcessingResponse): number => {
  const m = r.request_body?.response?.body_mutation
  return m !== undefined && 'streamed_response' in m ? m.streamed_response.body.length : -1
}

describe('callWriter', () => {
  const cleanups: (() => Promise<void> | void)[] = []
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c()
  })

  /** A server whose handler runs `onFirst` with the call's writer at the first request. */
  async function serve(
    onFirst: (call: ExtProcCall) => void,
  ): Promise<{ answers: () => Promise<ProcessingResponse[]> }> {
    const pkg = grpc.loadPackageDefinition(extProcPackage()) as unknown as Pkg
    const ctor = pkg.envoy.service.ext_proc.v3.ExternalProcessor
    const server = new grpc.Server()
    server.addService(ctor.service, {
      Process: (call: ExtProcCall) => {
        call.once('data', () => onFirst(call))
        call.on('end', () => call.end())
      },
    })
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) =>
        e ? reject(e) : resolve(p),
      ),
    )
    cleanups.push(() => new Promise<void>((r) => server.tryShutdown(() => r())))
    const client = new ctor(`127.0.0.1:${port}`, grpc.credentials.createInsecure())
    cleanups.push(() => client.close())
    return {
      answers: () =>
        new Promise((resolve, reject) => {
          const call = (
            client as unknown as {
              Process(): grpc.ClientDuplexStream<ProcessingRequest, ProcessingResponse>
            }
          ).Process()
          const got: ProcessingResponse[] = []
          call.on('data', (r: ProcessingResponse) => got.push(r))
          call.on('error', reject)
          call.on('end', () => resolve(got))
          call.write({ request: 'request_headers', request_headers: {} })
          call.end()
        }),
    }
  }

  it('writes the answers of `together` as one, in order, calling back each', async () => {
    let joined = -1
    const written: number[] = []
    const { answers } = await serve((call) => {
      const w = callWriter(call)
      w.together(() => {
        for (const n of [1, 2, 3]) w.send(answer(n), () => written.push(n))
      })
      joined = w.joined
    })
    const got = await answers()
    expect(got.map(sizeOf)).toEqual([20_001, 20_002, 20_003])
    expect(joined).toBe(1)
    expect(written).toEqual([1, 2, 3])
  })

  it("behind a message still in grpc-js's queue: one at a time, in order", async () => {
    let joined = -1
    const { answers } = await serve((call) => {
      const w = callWriter(call)
      w.send(answer(0))
      w.together(() => {
        w.send(answer(1))
        w.send(answer(2))
      })
      joined = w.joined
      w.send(answer(3))
    })
    const got = await answers()
    expect(got.map(sizeOf)).toEqual([20_000, 20_001, 20_002, 20_003])
    expect(joined).toBe(0)
  })
})
