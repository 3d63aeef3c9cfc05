// `npx tsx hack/bench/kv-events-cost.ts [--events N]`: what KV-event handling costs the data plane.
// Encodes vLLM-shaped batches once (the simulator's encoder: stores of 1–4 blocks with their 16
// token ids each, removals of single blocks, as an engine step under load emits them), then times
// decode + apply into one endpoint's index on this core. Prints events/s and the share of one core
// that 100k events/s would take. Run with `nice -n -15`; numbers from a busy machine are indicative.

import { parseArgs } from 'node:util'
import { EndpointKvIndex } from '../../dataplane/kv-events/endpoint-index.js'
import { encodeBatch, type WireEvent } from '../../dataplane/kv-events/wire.js'

const { values } = parseArgs({ options: { events: { type: 'string', default: '2000000' } } })
const total = Number(values.events)
const PER_BATCH = 32

let x = 0x2545f491n
function next64(): bigint {
  x ^= (x << 13n) & 0xffffffffffffffffn
  x ^= x >> 7n
  x ^= (x << 17n) & 0xffffffffffffffffn
  return x
}

// A pool of batches replayed in a loop; stores and removals balance so the index stays at ~50k.
const live: bigint[] = []
const payloads: Uint8Array[] = []
for (let b = 0; b < 2000; b++) {
  const events: WireEvent[] = []
  for (let e = 0; e < PER_BATCH; e++) {
    if (live.length > 50_000 || (live.length > 0 && e % 2 === 1)) {
      const h = live.splice(Math.floor(Math.random() * live.length), 1)
      events.push({ type: 'BlockRemoved', hashes: h, medium: 'GPU' })
    } else {
      const n = 1 + (e % 4)
      const hashes = Array.from({ length: n }, next64)
      live.push(...hashes)
      events.push({
        type: 'BlockStored',
        hashes,
        parent: next64(),
        tokenIds: Array.from({ length: 16 * n }, (_, i) => (i * 7919) % 151_000),
        blockSize: 16,
        loraId: null,
        medium: 'GPU',
      })
    }
  }
  payloads.push(encodeBatch(Date.now() / 1000, events))
}

const ix = new EndpointKvIndex(4_000_000)
let seq = 0n
// Warm-up (JIT), then the measured run.
for (let i = 0; i < 500; i++) ix.onMessage(seq++, payloads[i % payloads.length] as Uint8Array)
const batches = Math.ceil(total / PER_BATCH)
const cpu0 = process.cpuUsage()
const t0 = performance.now()
for (let i = 0; i < batches; i++) ix.onMessage(seq++, payloads[i % payloads.length] as Uint8Array)
const ms = performance.now() - t0
const cpu = process.cpuUsage(cpu0)
const cpuMs = (cpu.user + cpu.system) / 1000
const events = batches * PER_BATCH
const rate = events / (cpuMs / 1000)
console.log(
  JSON.stringify({
    events,
    wallMs: Math.round(ms),
    cpuMs: Math.round(cpuMs),
    eventsPerSecOneCore: Math.round(rate),
    coreShareAt100kEventsPerSec: `${((100_000 / rate) * 100).toFixed(2)}%`,
    indexBlocks: ix.index.size,
    gaps: ix.stats.gaps,
  }),
)
