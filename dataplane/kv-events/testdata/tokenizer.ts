// A tiny WordPiece `tokenizer.json` for tests: Llama 3's header tokens as special added tokens and a
// few words; anything else is [UNK]. Enough for @huggingface/tokenizers to load and for token ids
// (and so block hashes) to differ where the rendered text differs.

const SPECIALS = [
  '[UNK]',
  '<|begin_of_text|>',
  '<|start_header_id|>',
  '<|end_header_id|>',
  '<|eot_id|>',
  '<|im_start|>',
  '<|im_end|>',
]
const WORDS = (
  'system user assistant ipython You are a terse helpful assistant . , ? : ! Hi there What is the ' +
  'weather in Paris Cutting Knowledge Date December 2023 Today 26 Jul 2024 Given following ' +
  'functions please respond with JSON for function call its proper arguments that best answers ' +
  'prompt Respond format name parameters dictionary of argument and value Do not use variables'
).split(' ')

export function tinyTokenizerJson(): Record<string, unknown> {
  const vocab: Record<string, number> = {}
  for (const w of [...SPECIALS, ...WORDS]) if (!(w in vocab)) vocab[w] = Object.keys(vocab).length
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: SPECIALS.map((content, id) => ({
      id,
      content,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    })),
    normalizer: null,
    pre_tokenizer: { type: 'Whitespace' },
    post_processor: null,
    decoder: null,
    model: {
      type: 'WordPiece',
      unk_token: '[UNK]',
      continuing_subword_prefix: '##',
      max_input_chars_per_word: 100,
      vocab,
    },
  }
}
