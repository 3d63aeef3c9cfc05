// Every regex a user writes into config (route header/URI matches, tokenizer model matches) runs on
// RE2JS, a pure-JS port of RE2: matching is linear in the input, so no pattern can block the event
// loop on a crafted header (`^(a+)+$` against 31 bytes took V8's backtracking engine 5.5 s). The
// syntax is RE2's, which is what Kthena's Go `regexp` accepts; features that need backtracking
// (backreferences, lookahead/lookbehind) are refused when the config is validated, with the field
// path, rather than at the first request.
import { RE2JS } from 're2js'

export type RegexTest = (s: string) => boolean

export class RegexSyntaxError extends Error {
  override readonly name = 'RegexSyntaxError'
  readonly code = 'INVALID_REGEX'
}

/** Compiles `source` (unanchored search, as Go's `regexp.MatchString`); throws RegexSyntaxError. */
export function compileRegex(source: string): RegexTest {
  let re: RE2JS
  try {
    re = RE2JS.compile(source)
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e)
    throw new RegexSyntaxError(msg.replace(/^error parsing regexp: /, ''))
  }
  return (s) => re.test(s)
}

/** Why `source` is not an accepted regex, or undefined when it is (for validation messages). */
export function regexProblem(source: string): string | undefined {
  try {
    compileRegex(source)
    return undefined
  } catch (e) {
    return e instanceof RegexSyntaxError ? e.message : String(e)
  }
}
