// `npx tsx hack/bench/proxy-sse-chunk.ts`: what the stream path's own reading costs per engine
// chunk, in process: the SSE scanner (first token, usage) and the usage-only stripper over a
// 200-token stream sent one token per chunk, as an engine that streams at its own pace does (the
// zero-latency sim of proxy-cost.ts sends a whole stream in one chunk, so its numbers hide the
// per-chunk part). Prints ns per chunk (median and best of 7 rounds); run it in two checkouts
// (a `git worktree` of each) alternately to compare.
import { SseUsageScanner } from '../../dataplane/proxy/respond.js'
import { UsageChunkStripper } from '../../dataplane/proxy/usage-strip.js'

/** A token event as vLLM sends it when asked for usage (`"usage":null` in each). */
const event = (t: string): Buffer =>
  Buffer.from(
    `data: {"id":"chatcmpl-8f1c","object":"chat.completion.chunk","created":1733180000,"model":"bench-model","choices":[{"index":0,"delta":{"content":"${t}"},"logprobs":null,"finish_reason":null}],"usage":null}\n\n`,
  )
const TOKENS = 200
const chunks = Array.from({ length: TOKENS }, (_, i) => event(`tok${i} `))
const last = Buffer.from(
  `data: {"id":"x","choices":[],"usage":{"prompt_tokens":12,"completion_tokens":${TOKENS},"total_tokens":${TOKENS + 12}}}\n\ndata: [DONE]\n\n`,
)

let written = 0
function stream(): void {
  const scanner = new SseUsageScanner()
  const filter = new UsageChunkStripper()
  for (const c of chunks) {
    scanner.push(c)
    written += filter.transform(c).out?.byteLength ?? 0
  }
  scanner.push(last)
  filter.transform(last)
  if (scanner.usage?.completionTokens !== TOKENS || filter.dropped !== 1)
    throw new Error('the usage event was not read and removed')
}

for (let i = 0; i < 2000; i++) stream()
const perChunk: number[] = []
for (let r = 0; r < 7; r++) {
  const t0 = process.hrtime.bigint()
  for (let i = 0; i < 1000; i++) stream()
  perChunk.push(Number(process.hrtime.bigint() - t0) / (1000 * (TOKENS + 1)))
}
perChunk.sort((a, b) => a - b)
process.stdout.write(
  `scanner + usage stripper: ${perChunk[3]?.toFixed(0)} ns per chunk (best ${perChunk[0]?.toFixed(0)}; ${written > 0 ? 'bytes passed on' : 'nothing passed on'})\n`,
)
