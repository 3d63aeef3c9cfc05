// Kthena v1.0-shaped manifests (test/fixtures/kthena, every field of its three networking kinds)
// are accepted unchanged in both API groups, and nothing in them is silently ignored.
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import { compileSnapshot, parseManifests } from './index.js'

const fixture = (group: string) => {
  const name = fileURLToPath(
    new URL(`../test/fixtures/kthena/${group}/kthena.yaml`, import.meta.url),
  )
  return { name, text: readFileSync(name, 'utf8') }
}

describe.each(['volcano', 'matrixinfer'])('Kthena-shaped manifests (%s group)', (group) => {
  const parsed = parseManifests([fixture(group)])
  const { snapshot, diagnostics } = compileSnapshot({
    routes: parsed.routes,
    servers: parsed.servers,
    endpoints: parsed.endpoints,
    providers: parsed.providers,
    version: 1,
  })
  const byReason = (reason: string) =>
    diagnostics.filter((d) => d.reason === reason).map((d) => `${d.kind} ${d.key} ${d.path ?? ''}`)

  it('parses every document without an issue', () => {
    expect(parsed.issues).toEqual([])
    expect([parsed.routes.length, parsed.servers.length, parsed.providers.length]).toEqual([
      4, 3, 1,
    ])
  })

  it('refuses pdGroup and kvConnector by name (Unsupported), not silently', () => {
    expect(byReason('Unsupported')).toEqual([
      'ModelRoute kthena/qwen-pd spec.rules[0].targetModels[0]',
      'ModelServer kthena/qwen-pd spec.workloadSelector.pdGroup',
    ])
    expect(snapshot.servers['kthena/qwen-pd']).toBeUndefined()
  })

  it('serves the rest: every other route and server is in the snapshot, no other error', () => {
    // The route whose only target is the prefill/decode server has nothing left to serve.
    expect(
      diagnostics
        .filter((d) => d.severity === 'error' && d.reason !== 'Unsupported')
        .map((d) => `${d.key} ${d.reason}`),
    ).toEqual(['kthena/qwen-pd NoUsableRules'])
    expect(snapshot.routes.map((r) => r.key).sort()).toEqual([
      'kthena/gpt',
      'kthena/qwen',
      'kthena/qwen-internal',
    ])
    const qwen = snapshot.routes.find((r) => r.key === 'kthena/qwen')
    expect(qwen?.rules.map((r) => r.targets.map((t) => t.weight))).toEqual([[100], [80, 20], [100]])
    expect(qwen?.rateLimit).toBeDefined()
  })
})
