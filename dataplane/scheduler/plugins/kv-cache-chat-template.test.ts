// kv-cache with a tokenizer directory that also holds the model's chat template: chat requests are
// hashed over the template's rendering (what vLLM prefills), not the ChatML-shaped prompt.
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest'
import { blockKeys, noneHash } from '../../kv-events/block-hash.js'
import { tinyTokenizerJson } from '../../kv-events/testdata/tokenizer.js'
import { chatTemplateFor, tokenizerFor } from '../../kv-events/tokens.js'
import { encodeBatch } from '../../kv-events/wire.js'
import { flattenPrompt } from '../prompt.js'
import { pickContext, request, scores, server, state } from '../testkit.js'
import { KvCachePlugin } from './kv-cache.js'

const LLAMA = await readFile(
  new URL('../../kv-events/testdata/llama-3.1-chat-template.jinja', import.meta.url),
  'utf8',
)
const CHAT = {
  messages: [
    { role: 'system', content: 'You are a terse helpful assistant.' },
    { role: 'user', content: 'What is the weather in Paris?' },
  ],
}
const RENDERED =
  '<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n' +
  'Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n' +
  'You are a terse helpful assistant.<|eot_id|>' +
  '<|start_header_id|>user<|end_header_id|>\n\nWhat is the weather in Paris?<|eot_id|>' +
  '<|start_header_id|>assistant<|end_header_id|>\n\n'

let root = ''
/** A model directory with tokenizer.json and, optionally, a tokenizer_config.json. */
async function modelDir(name: string, config?: Record<string, unknown>): Promise<string> {
  const dir = join(root, name)
  await mkdir(dir)
  await writeFile(join(dir, 'tokenizer.json'), JSON.stringify(tinyTokenizerJson()))
  if (config !== undefined)
    await writeFile(join(dir, 'tokenizer_config.json'), JSON.stringify(config))
  return join(dir, 'tokenizer.json')
}

/** Start loading and wait until the tokenizer is ready (the load is off the request path). */
async function ready(spec: string): Promise<(t: string) => ArrayLike<number>> {
  return vi.waitFor(
    () => {
      const ids = tokenizerFor(spec)
      if (ids === undefined) throw new Error('loading')
      return ids
    },
    { timeout: 10_000, interval: 10 },
  )
}

const plugins: KvCachePlugin[] = []
function plugin(tokenizer: string): KvCachePlugin {
  // A port nothing listens on: the test feeds the index directly.
  const p = new KvCachePlugin({ eventsPort: 1, tokenizer, blockSize: 4 })
  plugins.push(p)
  return p
}
function req(body: Record<string, unknown>) {
  return request(pickContext(server([]), body, {}), 0)
}

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'kv-chat-template-'))
})
afterEach(() => {
  for (const p of plugins.splice(0)) p.close()
})
afterAll(async () => {
  await rm(root, { recursive: true, force: true })
})

describe('kv-cache with the model chat template', () => {
  it('hashes a chat request to the blocks of the rendered text, as the engine reports them', async () => {
    const tok = await modelDir('llama', {
      bos_token: '<|begin_of_text|>',
      eos_token: '<|eot_id|>',
      chat_template: LLAMA,
    })
    const ids = await ready(tok)
    expect(chatTemplateFor(tok)?.render(CHAT)).toBe(RENDERED)
    const p = plugin(tok)
    const chatKeys = p.keys(req(CHAT))
    const completionKeys = p.keys(req({ prompt: RENDERED }))
    // More than 8 blocks (two 32-bit words per block key); undefined fails here too.
    expect(chatKeys?.length).toBeGreaterThan(16)
    expect(chatKeys).toEqual(completionKeys)
    // Not the ChatML-shaped prompt's blocks (the first block already differs).
    const chatml = p.keys(req({ prompt: flattenPrompt(CHAT) }))
    expect(chatml?.slice(0, 2)).not.toEqual(chatKeys?.slice(0, 2))

    // An engine that rendered and tokenized the same way (its ids, vLLM's chain with seed 0)
    // reports these blocks: the chat request matches all of them.
    const engineKeys = blockKeys(ids(RENDERED), 4, noneHash('0'), null, p.maxBlocks)
    expect(engineKeys).toEqual(chatKeys)
    const ep = state('a', 2)
    const hashes: bigint[] = []
    for (let i = 0; i < engineKeys.length; i += 2)
      hashes.push((BigInt(engineKeys[i] as number) << 32n) | BigInt(engineKeys[i + 1] as number))
    const st = p.subscriber(ep).state
    st.onMessage(
      0n,
      encodeBatch(0, [
        {
          type: 'BlockStored',
          hashes,
          parent: null,
          tokenIds: [],
          blockSize: 4,
          loraId: null,
          medium: null,
        },
      ]),
    )
    expect(scores(p, req(CHAT), [ep])).toEqual([1])
    expect(p.decisions.events).toBe(1)
  })

  it('uses the ChatML-shaped prompt without a chat_template', async () => {
    const tok = await modelDir('no-template', { bos_token: '<s>' })
    await ready(tok)
    expect(chatTemplateFor(tok)).toBe(undefined)
    const p = plugin(tok)
    expect(p.keys(req(CHAT))).toEqual(p.keys(req({ prompt: flattenPrompt(CHAT) })))
  })

  it('falls back to the ChatML-shaped prompt when the template fails, without failing', async () => {
    const tok = await modelDir('raising', {
      chat_template:
        "{% if messages[0].role == 'system' %}{{ raise_exception('no system role') }}{% endif %}x",
    })
    await ready(tok)
    const p = plugin(tok)
    const keys = p.keys(req(CHAT))
    expect(keys).toEqual(p.keys(req({ prompt: flattenPrompt(CHAT) })))
    expect(p.debug()['chatTemplate']).toEqual({
      renderErrors: 1,
      lastError: expect.stringContaining('no system role'),
    })
    // A template that does not parse: no template, the reason in /debug, ChatML hashing.
    const broken = await modelDir('broken', { chat_template: '{% for m in messages %}' })
    await ready(broken)
    const q = plugin(broken)
    expect(q.keys(req(CHAT))).toEqual(q.keys(req({ prompt: flattenPrompt(CHAT) })))
    expect(q.debug()['chatTemplateError']).toContain('tokenizer_config.json')
  })
})
