import { readFileSync } from 'node:fs'
import { Worker } from 'node:worker_threads'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type SimHandle, startSimulator } from './server.js'

// A gateway opening many connections while the engine's event loop is busy must find them all
// queued by the kernel, as uvicorn's backlog of 2048 queues them for vLLM. Node's default of 511
// dropped the SYNs past 512, and each retry came a second later (the 504s of 5,000 streams).
// Here the test's own thread (the simulator's) is blocked, so nothing is accepted: only the
// kernel's accept queue can hold the connections a worker thread opens meanwhile.
const CONNECTIONS = 800

function somaxconn(): number {
  try {
    return Number(readFileSync('/proc/sys/net/core/somaxconn', 'utf8').trim())
  } catch {
    return 0 // not Linux: the kernel's cap is unknown
  }
}

// Opens `n` connections to host:port, counts those the kernel completed in shared[1], and sets
// shared[0] to 1 (waking the blocked thread) once all are connected.
const OPENER = `
const { workerData } = require('node:worker_threads')
const net = require('node:net')
const { host, port, n, sab } = workerData
const shared = new Int32Array(sab)
const sockets = []
for (let i = 0; i < n; i++) {
  const s = net.connect({ host, port })
  s.on('error', () => {})
  s.on('connect', () => {
    if (Atomics.add(shared, 1, 1) + 1 === n) {
      Atomics.store(shared, 0, 1)
      Atomics.notify(shared, 0)
    }
  })
  sockets.push(s)
}
`

let sim: SimHandle

beforeAll(async () => {
  sim = await startSimulator({
    name: 'backlog',
    host: '127.0.0.9',
    port: 0,
    model: 'base-model',
    metricsFormat: 'vllm',
    seed: 1,
  })
})
afterAll(() => sim.close())

describe('listen backlog', () => {
  it.skipIf(somaxconn() <= CONNECTIONS)(
    `queues ${CONNECTIONS} connections opened while the engine accepts none`,
    async () => {
      const sab = new SharedArrayBuffer(8)
      const shared = new Int32Array(sab)
      const worker = new Worker(OPENER, {
        eval: true,
        workerData: { host: sim.host, port: sim.port, n: CONNECTIONS, sab },
      })
      try {
        // Blocks this thread, the simulator's: no accept() runs until the wait ends. With room
        // for 512 only, the rest wait for SYN retries the full queue drops again, and the wait
        // ends at its bound with the count short.
        Atomics.wait(shared, 0, 0, 8_000)
        expect(Atomics.load(shared, 1)).toBe(CONNECTIONS)
      } finally {
        await worker.terminate()
      }
    },
  )
})
