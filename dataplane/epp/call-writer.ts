// Writing the EPP's answers on a grpc-js bidi call, the two answers of a full-duplex decision
// (the destination, then the echoed body) in one socket write.
//
// Why (issue 13): grpc-js's call object is a Node Writable that hands grpc-js one message at a
// time (its _write calls the call's sendMessage and the next message waits for that write's
// callback), and node:http2 calls back once the bytes are on the socket, from the turn after the
// one that wrote. So the body answer was encoded and written a turn later than the destination,
// in a second socket write, after the thread had woken the gateway with the first. On the
// 2-core development machine under load the thread was then often off its core (the woken
// client and other processes on it): `epp --debug-phases` measured 142 + 12 + 127 µs p50 from the
// first answer handed to node:http2 to the body's write callback, 222 µs of the stream's 490 µs
// spent runnable but not running.
//
// `together` sends its answers straight to the call's sendMessage (exactly what grpc-js's _write
// does with each message) with the call's HTTP/2 stream corked, so node:http2 gets them as one
// writev and nghttp2 sends both (and the response headers of a first answer) in one socket
// write. It needs two fields of grpc-js's objects that are not its public API (`call.call`,
// `call.call.stream`, grpc-js 1.14); without them, or while grpc-js's own queue is not empty
// (the answers must not pass a message written before them), the answers go through call.write,
// one at a time, as before.
import type * as grpc from '@grpc/grpc-js'
import type { ProcessingRequest, ProcessingResponse } from './proto.js'

/** What `together` reads of grpc-js's ServerDuplexStreamImpl (its `call`: the intercepting call). */
interface CallInternals {
  readonly call?: {
    readonly sendMessage?: (message: unknown, callback: () => void) => void
    /** The node:http2 server stream of the call. */
    readonly stream?: { readonly cork?: () => void; readonly uncork?: () => void }
  }
}

export type ExtProcCall = grpc.ServerDuplexStream<ProcessingRequest, ProcessingResponse>

export interface CallWriter {
  /** Writes one answer; `written` once node:http2 has it on the socket. */
  send(r: ProcessingResponse, written?: () => void): void
  /** Runs `write` (several `send`s) so that its answers leave in one socket write when it can. */
  together(write: () => void): void
  /** How many `together`s wrote their answers as one (the rest went one at a time). */
  readonly joined: number
}

const noop = (): void => {}

export function callWriter(call: ExtProcCall): CallWriter {
  let direct: ((r: ProcessingResponse, written: () => void) => void) | undefined
  let joined = 0
  return {
    send(r, written) {
      if (direct !== undefined) direct(r, written ?? noop)
      else call.write(r, written)
    },
    together(write) {
      const inner = (call as unknown as CallInternals).call
      const send = inner?.sendMessage
      const h2 = inner?.stream
      if (
        send === undefined ||
        typeof h2?.cork !== 'function' ||
        typeof h2.uncork !== 'function' ||
        // A message of ours still in grpc-js's queue: later ones must wait behind it there.
        call.writableLength > 0 ||
        direct !== undefined
      ) {
        write()
        return
      }
      h2.cork()
      direct = (r, written) => send.call(inner, r, written)
      try {
        write()
        joined++
      } finally {
        direct = undefined
        h2.uncork()
      }
    },
    get joined() {
      return joined
    },
  }
}
