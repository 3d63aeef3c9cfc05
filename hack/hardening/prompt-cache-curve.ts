// `npx tsx hack/hardening/prompt-cache-curve.ts [cases] [seed]`: how the gateway's prompt-piece
// cache (dataplane/scheduler/prompt-hasher.ts) fills under the soak's fuzz stream. Every fuzz case
// whose body is a chat or completions prompt the hasher can read is hashed through a fresh cache as
// the scheduler would (64-byte blocks); its stats are printed every 5,000 cases. An upper bound of
// the soak's rate: the gateway refuses some of these bodies before the scheduler. Diagnosis for
// docs/hardening-soak.md (the soak fills the cache before its memory baseline).
import { chainSeed, promptPieces } from '../../dataplane/scheduler/prompt.js'
import { PromptHasher } from '../../dataplane/scheduler/prompt-hasher.js'
import { fuzzCase } from './fuzz-bodies.js'

const n = Number(process.argv[2] ?? '50000')
const seed = Number(process.argv[3] ?? '7')
const h = new PromptHasher()
let read = 0
for (let i = 0; i < n; i++) {
  const c = fuzzCase(seed, i, { model: 'chat', maxStringBytes: 64 * 1024 })
  if (c.path !== '/v1/chat/completions' && c.path !== '/v1/completions') continue
  let body: unknown
  try {
    body = JSON.parse(c.body.toString('utf8'))
  } catch {
    continue
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) continue
  let pieces: string[]
  try {
    pieces = promptPieces(body as Record<string, unknown>)
  } catch {
    continue
  }
  read++
  h.hash(pieces, 64, 2048, chainSeed('upstream-model'))
  if ((i + 1) % 5000 === 0) {
    const s = h.stats()
    process.stdout.write(
      `${i + 1} cases (${read} prompts read): ${s.entries} entries, ${s.texts} texts, ${(s.bytes / 1048576).toFixed(2)} MiB counted\n`,
    )
  }
}
