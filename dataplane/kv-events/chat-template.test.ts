import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Template } from '@huggingface/jinja'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  chatTemplateConfig,
  compileChatTemplate,
  contentFormatOf,
  loadChatTemplate,
} from './chat-template.js'

const LLAMA = await readFile(
  new URL('./testdata/llama-3.1-chat-template.jinja', import.meta.url),
  'utf8',
)
// As in Meta's tokenizer_config.json, where bos_token is an AddedToken object in older exports.
const LLAMA_CONFIG = {
  bos_token: { content: '<|begin_of_text|>', lstrip: false },
  eos_token: '<|eot_id|>',
  chat_template: LLAMA,
}

function llama() {
  const cfg = chatTemplateConfig(LLAMA_CONFIG)
  if (cfg === undefined) throw new Error('no template')
  return compileChatTemplate(Template, cfg)
}

const SYSTEM_USER = {
  messages: [
    { role: 'system', content: 'You are a terse assistant.' },
    { role: 'user', content: 'Hi there!' },
  ],
}

let dir = ''
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'chat-template-'))
})
afterAll(async () => {
  await rm(dir, { recursive: true, force: true })
})

describe('chat template', () => {
  it("renders Llama 3.1's template for system + user with the generation prompt", () => {
    expect(llama().render(SYSTEM_USER)).toBe(
      '<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n' +
        'Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n' +
        'You are a terse assistant.<|eot_id|>' +
        '<|start_header_id|>user<|end_header_id|>\n\nHi there!<|eot_id|>' +
        '<|start_header_id|>assistant<|end_header_id|>\n\n',
    )
  })

  it('renders as transformers does (reference strings from testdata/render-reference.py)', async () => {
    const ref = JSON.parse(
      await readFile(new URL('./testdata/llama-3.1-transformers.json', import.meta.url), 'utf8'),
    ) as { cases: { body: Record<string, unknown>; expected: string }[] }
    expect(ref.cases.length).toBe(5)
    const t = llama()
    for (const c of ref.cases) expect(t.render(c.body)).toBe(c.expected)
    expect(t.renderErrors).toBe(0)
  })

  it('joins text parts, parses tool-call arguments and passes tools as vLLM does', () => {
    const t = llama()
    const parts = t.render({
      messages: [
        {
          role: 'user',
          content: [
            { type: 'text', text: 'Hi' },
            { type: 'text', text: 'there' },
          ],
        },
      ],
      add_generation_prompt: false,
    })
    expect(parts).toContain('<|start_header_id|>user<|end_header_id|>\n\nHi\nthere<|eot_id|>')
    expect(parts?.endsWith('<|eot_id|>')).toBe(true)
    const withTools = t.render({
      messages: [
        { role: 'user', content: 'What is the weather in Paris?' },
        {
          role: 'assistant',
          content: null,
          tool_calls: [
            {
              id: 'c1',
              type: 'function',
              function: { name: 'weather', arguments: '{"city":"Paris"}' },
            },
          ],
        },
        { role: 'tool', tool_call_id: 'c1', content: 'sunny' },
      ],
      tools: [{ type: 'function', function: { name: 'weather', parameters: { type: 'object' } } }],
    })
    expect(withTools).toContain('Environment: ipython\n')
    // Tools go into the first user message, as JSON.
    expect(withTools).toContain('Given the following functions')
    expect(withTools).toContain('"name": "weather"')
    expect(withTools).toContain('What is the weather in Paris?<|eot_id|>')
    // The arguments arrive as an object, so tojson prints them as JSON (not a quoted string).
    expect(withTools).toContain('{"name": "weather", "parameters": {"city": "Paris"}}<|eot_id|>')
    // A string `is iterable` in Jinja too, so Meta's template prints the tool result as JSON.
    expect(withTools).toContain('<|start_header_id|>ipython<|end_header_id|>\n\n"sunny"<|eot_id|>')
  })

  it('takes the "default" entry of the list form and both shapes of special tokens', () => {
    const cfg = chatTemplateConfig({
      bos_token: '<s>',
      eos_token: { content: '</s>' },
      chat_template: [
        { name: 'tool_use', template: 'TOOLS' },
        { name: 'default', template: '{{ bos_token }}{{ messages[0].content }}{{ eos_token }}' },
      ],
    })
    expect(cfg?.specialTokens).toEqual({ bos_token: '<s>', eos_token: '</s>' })
    expect(cfg && compileChatTemplate(Template, cfg).render(SYSTEM_USER)).toBe(
      '<s>You are a terse assistant.</s>',
    )
    expect(chatTemplateConfig({ chat_template: [{ name: 'tool_use', template: 'x' }] })).toBe(
      undefined,
    )
    expect(chatTemplateConfig({ bos_token: '<s>' })).toBe(undefined)
  })

  it("passes content as a list of parts to templates that loop over it (vLLM's openai format)", () => {
    expect(contentFormatOf(LLAMA)).toBe('string')
    const src =
      '{% for m in messages %}{{ m.role }}:{% for c in m.content %}[{{ c.type }}={{ c.text }}]' +
      '{% endfor %}|{% endfor %}'
    expect(contentFormatOf(src)).toBe('openai')
    expect(contentFormatOf("{%- for part in message['content'] %}")).toBe('openai')
    const t = compileChatTemplate(Template, { source: src, specialTokens: {} })
    expect(
      t.render({
        messages: [
          { role: 'system', content: 'Be terse.' },
          { role: 'user', content: [{ type: 'text', text: 'Hi' }] },
        ],
      }),
    ).toBe('system:[text=Be terse.]|user:[text=Hi]|')
  })

  it('renders nothing for a completion body', () => {
    expect(llama().render({ prompt: 'Hi there' })).toBe(undefined)
  })

  it('counts a render error, reports the first only, and never throws', () => {
    const cfg = chatTemplateConfig({
      chat_template:
        "{% if messages|length > 1 %}{{ raise_exception('one message only') }}{% endif %}ok",
    })
    if (cfg === undefined) throw new Error('no template')
    const seen: string[] = []
    const t = compileChatTemplate(Template, cfg, (m) => seen.push(m))
    expect(t.render({ messages: [{ role: 'user', content: 'a' }] })).toBe('ok')
    expect(t.render(SYSTEM_USER)).toBe(undefined)
    expect(t.render(SYSTEM_USER)).toBe(undefined)
    expect(t.renderErrors).toBe(2)
    expect(t.lastError).toContain('one message only')
    expect(seen).toEqual([t.lastError])
  })

  it('loads the template beside tokenizer.json; none or a broken one gives no template', async () => {
    const tok = join(dir, 'tokenizer.json')
    expect(await loadChatTemplate(tok)).toEqual({ template: undefined })
    await writeFile(join(dir, 'tokenizer_config.json'), JSON.stringify(LLAMA_CONFIG))
    const ok = await loadChatTemplate(tok)
    expect(ok.template?.render(SYSTEM_USER)).toBe(llama().render(SYSTEM_USER))
    await writeFile(
      join(dir, 'tokenizer_config.json'),
      JSON.stringify({ chat_template: '{% for m in messages %}{{ m.content }' }),
    )
    const bad = await loadChatTemplate(tok)
    expect(bad.template).toBe(undefined)
    expect('error' in bad && bad.error).toContain('tokenizer_config.json')
    await writeFile(join(dir, 'tokenizer_config.json'), '{not json')
    const notJson = await loadChatTemplate(tok)
    expect(notJson.template).toBe(undefined)
    expect('error' in notJson && notJson.error).toContain('JSON')
  })
})
