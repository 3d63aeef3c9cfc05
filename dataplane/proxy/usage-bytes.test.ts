import { describe, expect, it } from 'vitest'
import { parseUsage } from './respond.js'
import { NOT_PLAIN, usageCounts } from './usage-bytes.js'

const at = (s: string) => usageCounts(Buffer.from(s), 0)

describe('usageCounts', () => {
  it('reads the plain shapes engines send, as JSON.parse and parseUsage read them', () => {
    const plain = [
      '{"prompt_tokens":12,"completion_tokens":16,"total_tokens":28,"prompt_tokens_details":{"cached_tokens":0}}',
      '{"prompt_tokens":12,"total_tokens":12,"completion_tokens":0,"prompt_tokens_details":null}',
      '{ "prompt_tokens" : 9 ,\n\t"total_tokens": 9 }',
      '{"input_tokens":5,"output_tokens":2,"output_tokens_details":{"reasoning_tokens":0}}',
      // `??`: a null prompt count gives the input count; a later duplicate key wins.
      '{"prompt_tokens":null,"input_tokens":7,"completion_tokens":null,"output_tokens":3}',
      '{"prompt_tokens":1,"prompt_tokens":4}',
      // No prompt count, or one that is not a number: no usage.
      '{"total_tokens":3}',
      '{"prompt_tokens":true,"completion_tokens":2}',
      '{"prompt_tokens":{"a":1},"input_tokens":2}',
      '{}',
      '{"prompt_tokens":0,"completion_tokens":false}',
      '{"prompt_tokens":123456789012345,"x":{"y":{"z":null}}}',
      '{"pr\u00f6mpt_tokens":3,"prompt_tokens":2}',
    ]
    for (const s of plain) {
      const got = at(s)
      expect(got, s).not.toBe(NOT_PLAIN)
      expect(got, s).toEqual(parseUsage(JSON.parse(s)))
    }
  })

  it('leaves anything else to JSON.parse', () => {
    const other = [
      '{"prompt_tokens":1.5}',
      '{"prompt_tokens":-1}',
      '{"prompt_tokens":1e3}',
      '{"prompt_tokens":0123}',
      '{"prompt_tokens":1234567890123456}',
      '{"prompt\\u005ftokens":3}',
      '{"prompt_tokens":"3"}',
      '{"prompt_tokens":[1]}',
      '{"a":{"b":{"c":{"d":{"e":{"f":1}}}}},"prompt_tokens":1}',
      '{"prompt_tokens":1,}',
      '{"prompt_tokens":1',
      '{"prompt_tokens" 1}',
      '{"prompt_tokens":nul}',
      '{prompt_tokens:1}',
      '{"a\nb":1}',
    ]
    for (const s of other) expect(at(s), s).toBe(NOT_PLAIN)
  })

  it('reads the object where it opens and stops at its end', () => {
    const b = Buffer.from('{"usage":{"prompt_tokens":3,"completion_tokens":4}} trailing')
    expect(usageCounts(b, b.indexOf('{', 1))).toEqual({ promptTokens: 3, completionTokens: 4 })
  })
})
