import { describe, expect, it } from 'vitest'
import {
  formatIssue,
  formatPath,
  parsePath,
  type ValidationIssue,
  validateModelRoute,
  validateModelServer,
} from './validate.js'

type Obj = Record<string, unknown>

function route(spec: Obj): Obj {
  return {
    apiVersion: 'networking.matrixinfer.ai/v1alpha1',
    kind: 'ModelRoute',
    metadata: { name: 'r' },
    spec,
  }
}
function server(spec: Obj = {}): Obj {
  return {
    metadata: { name: 's' },
    spec: {
      inferenceEngine: 'vLLM',
      workloadSelector: { matchLabels: { app: 'x' } },
      workloadPort: { port: 8000 },
      ...spec,
    },
  }
}
const target = (name: string, weight?: number) =>
  weight === undefined ? { modelServerName: name } : { modelServerName: name, weight }

function issuesOf(r: { ok: true } | { ok: false; issues: ValidationIssue[] }): string[] {
  return r.ok ? [] : r.issues.map(formatIssue)
}
function codesOf(r: { ok: true } | { ok: false; issues: ValidationIssue[] }): string[] {
  return r.ok ? [] : r.issues.map((i) => i.code)
}

describe('paths', () => {
  it('formats and parses field paths both ways', () => {
    const segs = ['spec', 'rules', 1, 'modelMatch', 'headers', 'x-user id', 'exact']
    const p = formatPath(segs)
    expect(p).toBe('spec.rules[1].modelMatch.headers["x-user id"].exact')
    expect(parsePath(p)).toEqual(segs)
    expect(parsePath('spec.rules[1].targetModels[0].weight')).toEqual([
      'spec',
      'rules',
      1,
      'targetModels',
      0,
      'weight',
    ])
  })
})

describe('validateModelRoute: schema', () => {
  it('accepts a valid route', () => {
    const r = validateModelRoute(
      route({ modelName: 'm', rules: [{ targetModels: [target('a')] }] }),
    )
    expect(r.ok).toBe(true)
  })

  it('names the field and the bound for an out-of-range weight', () => {
    const r = validateModelRoute(
      route({
        modelName: 'm',
        rules: [{ targetModels: [target('a')] }, { targetModels: [target('a', 101)] }],
      }),
    )
    expect(issuesOf(r)).toEqual(['spec.rules[1].targetModels[0].weight: must be 0..100'])
    expect(codesOf(r)).toEqual(['OUT_OF_RANGE'])
  })

  it('reports missing, wrongly typed and unknown fields in plain words', () => {
    const r = validateModelRoute({
      metadata: { name: 'Bad_Name' },
      spec: { modelName: 3, rule: [] },
    })
    const msgs = issuesOf(r)
    expect(msgs).toContain(
      'metadata.name: must be a lowercase DNS-1123 subdomain (a-z, 0-9, "-", ".")',
    )
    expect(msgs).toContain('spec.modelName: must be a string, not a number')
    expect(msgs).toContain('spec.rules: is required')
    expect(msgs).toContain('spec.rule: unknown field')
    expect(codesOf(r)).toContain('UNKNOWN_FIELD')
    expect(codesOf(r)).toContain('REQUIRED')
  })

  it('bounds rules, targets and lora adapters', () => {
    const many = Array.from({ length: 17 }, () => ({ targetModels: [target('a')] }))
    expect(issuesOf(validateModelRoute(route({ modelName: 'm', rules: many })))).toEqual([
      'spec.rules: must have at most 16 rules',
    ])
    expect(
      issuesOf(validateModelRoute(route({ modelName: 'm', rules: [{ targetModels: [] }] }))),
    ).toEqual(['spec.rules[0].targetModels: must have at least one target'])
    const loras = Array.from({ length: 11 }, (_, i) => `l${i}`)
    expect(
      issuesOf(
        validateModelRoute(
          route({ loraAdapters: loras, rules: [{ targetModels: [target('a')] }] }),
        ),
      ),
    ).toEqual(['spec.loraAdapters: must have at most 10 entries'])
  })

  it('rejects a wrong apiVersion or kind when present', () => {
    const r = validateModelRoute({
      ...route({ modelName: 'm', rules: [{ targetModels: [target('a')] }] }),
      kind: 'ModelServer',
    })
    expect(issuesOf(r)).toEqual(['kind: must be one of ModelRoute'])
  })
})

describe('validateModelRoute: semantic checks (Kthena webhook parity)', () => {
  const ok = { targetModels: [target('a')] }

  it('requires modelName or loraAdapters', () => {
    expect(issuesOf(validateModelRoute(route({ rules: [ok] })))).toEqual([
      'spec: modelName or loraAdapters must be set',
    ])
    expect(validateModelRoute(route({ loraAdapters: ['l1'], rules: [ok] })).ok).toBe(true)
  })

  it('rejects empty lora names', () => {
    expect(issuesOf(validateModelRoute(route({ loraAdapters: ['l1', ' '], rules: [ok] })))).toEqual(
      ['spec.loraAdapters[1]: must not be empty'],
    )
  })

  it('needs exactly one of modelServerName / externalModelProviderName', () => {
    const both = { modelServerName: 'a', externalModelProviderName: 'p' }
    const r = validateModelRoute(route({ modelName: 'm', rules: [{ targetModels: [both, {}] }] }))
    expect(codesOf(r)).toEqual(['TARGET_ONE_OF', 'TARGET_ONE_OF'])
    expect(issuesOf(r)[1]).toBe(
      'spec.rules[0].targetModels[1]: exactly one of modelServerName or externalModelProviderName (or inferencePoolName) must be set',
    )
  })

  it('lora routes must target a model server', () => {
    const r = validateModelRoute(
      route({
        loraAdapters: ['l1'],
        rules: [{ targetModels: [{ externalModelProviderName: 'openai' }] }],
      }),
    )
    expect(issuesOf(r)).toEqual([
      'spec.rules[0].targetModels[0].externalModelProviderName: lora routes must target a modelServerName',
    ])
    // The same target is fine on a base-model route.
    expect(
      validateModelRoute(
        route({
          modelName: 'm',
          rules: [{ targetModels: [{ externalModelProviderName: 'openai' }] }],
        }),
      ).ok,
    ).toBe(true)
  })

  it('weights: an unset weight is 100 (Kthena), also beside set ones; the total must be > 0', () => {
    expect(
      validateModelRoute(
        route({ modelName: 'm', rules: [{ targetModels: [target('a', 30), target('b', 70)] }] }),
      ).ok,
    ).toBe(true)
    expect(
      validateModelRoute(
        route({ modelName: 'm', rules: [{ targetModels: [target('a'), target('b')] }] }),
      ).ok,
    ).toBe(true)
    const mixed = validateModelRoute(
      route({ modelName: 'm', rules: [{ targetModels: [target('a', 30), target('b')] }] }),
    )
    expect(mixed.ok).toBe(true)
    expect(mixed.ok && mixed.value.spec.rules[0]?.targetModels.map((t) => t.weight)).toEqual([
      30, 100,
    ])
    const zero = validateModelRoute(
      route({ modelName: 'm', rules: [{ targetModels: [target('a', 0), target('b', 0)] }] }),
    )
    expect(issuesOf(zero)).toEqual([
      'spec.rules[0].targetModels: total weight must be greater than 0',
    ])
  })

  it('every regex must compile; the message names the field', () => {
    const r = validateModelRoute(
      route({
        modelName: 'm',
        rules: [
          {
            modelMatch: { uri: { regex: '^/v1/(chat' }, headers: { 'x-a': { regex: 'ok.*' } } },
            targetModels: [target('a')],
          },
        ],
      }),
    )
    expect(codesOf(r)).toEqual(['INVALID_REGEX'])
    expect(issuesOf(r)[0]).toBe(
      'spec.rules[0].modelMatch.uri.regex: invalid regex (RE2 syntax): missing closing ): `^/v1/(chat`',
    )
  })

  it('regexes that need backtracking (backreferences, lookaround) are refused by field path', () => {
    const r = validateModelRoute(
      route({
        modelName: 'm',
        rules: [
          {
            modelMatch: {
              headers: { 'x-a': { regex: '^(a)\\1$' }, 'x-b': { regex: '^(?=a)a' } },
              uri: { regex: '^(a+)+$' },
            },
            targetModels: [target('a')],
          },
        ],
      }),
    )
    // `^(a+)+$` is fine: on a linear-time engine it cannot blow up.
    expect(issuesOf(r)).toEqual([
      'spec.rules[0].modelMatch.headers["x-a"].regex: invalid regex (RE2 syntax): invalid escape sequence: `\\1`',
      'spec.rules[0].modelMatch.headers["x-b"].regex: invalid regex (RE2 syntax): invalid or unsupported Perl syntax: `(?=`',
    ])
  })

  it('header names must be tokens and string matches need exactly one kind', () => {
    const r = validateModelRoute(
      route({
        modelName: 'm',
        rules: [
          {
            modelMatch: {
              headers: { 'bad header': { exact: 'x' }, 'x-ok': { exact: 'a', prefix: 'b' } },
              uri: {},
            },
            targetModels: [target('a')],
          },
        ],
      }),
    )
    expect(issuesOf(r)).toEqual([
      'spec.rules[0].modelMatch.headers["bad header"]: invalid header name "bad header"',
      'spec.rules[0].modelMatch.headers["x-ok"]: exactly one of exact, prefix or regex must be set',
      'spec.rules[0].modelMatch.uri: exactly one of exact, prefix or regex must be set',
    ])
  })
})

describe('validateModelServer', () => {
  it('accepts Kthena fields and our additions', () => {
    const r = validateModelServer(
      server({
        model: 'meta-llama/Llama-3.1-8B',
        trafficPolicy: {
          timeout: '30s',
          timeouts: { connect: '2s', idle: '1m' },
          retry: { attempts: 2, retryInterval: '100ms', maxRetryInterval: '1s', retryOn: ['5xx'] },
        },
        kvConnector: { type: 'nixl' },
        scheduler: { plugins: [{ name: 'prefix-cache', weight: 3 }, { name: 'least-pending' }] },
      }),
    )
    expect(r.ok).toBe(true)
  })

  it('names bad enums, ports, durations and selectors', () => {
    const r = validateModelServer({
      metadata: { name: 's' },
      spec: {
        inferenceEngine: 'llama.cpp',
        workloadSelector: { matchLabels: {} },
        workloadPort: { port: 70000, protocol: 'grpc' },
        trafficPolicy: { timeout: 'soon', retry: { attempts: -1 } },
      },
    })
    expect(issuesOf(r)).toEqual([
      'spec.inferenceEngine: must be one of vLLM, SGLang, TGI, TensorRT-LLM, Generic',
      'spec.workloadSelector.matchLabels: must have at least one label',
      'spec.workloadPort.port: must be 1..65535',
      'spec.workloadPort.protocol: must be one of http, https',
      'spec.trafficPolicy.timeout: must be a duration like 500ms, 30s or 1m30s',
      'spec.trafficPolicy.retry.attempts: must be an integer >= 0',
    ])
  })

  it('says "is required" for missing required fields', () => {
    const r = validateModelServer({
      metadata: { name: 's' },
      spec: { workloadSelector: { matchLabels: { a: 'b' } } },
    })
    expect(issuesOf(r)).toEqual([
      'spec.inferenceEngine: is required',
      'spec.workloadPort: is required',
    ])
  })

  it('checks the retry interval cap against the interval', () => {
    const r = validateModelServer(
      server({
        trafficPolicy: { retry: { attempts: 1, retryInterval: '2s', maxRetryInterval: '1s' } },
      }),
    )
    expect(issuesOf(r)).toEqual([
      'spec.trafficPolicy.retry.maxRetryInterval: must not be less than retryInterval',
    ])
  })
})
