import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'

const CLI = fileURLToPath(new URL('../bin/infer-gateway.js', import.meta.url))
const run = (...args: string[]) =>
  spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 30_000 })

describe('infer-gateway CLI', () => {
  it('lists commands and gives --help for each', () => {
    const root = run('--help')
    expect(root.status).toBe(0)
    for (const cmd of ['dataplane', 'sim', 'demo', 'compile']) {
      expect(root.stdout).toContain(cmd)
      const r = run(cmd, '--help')
      expect(r.status, `${cmd} --help: ${r.stderr}`).toBe(0)
      expect(r.stdout).toMatch(/Usage/)
    }
  })

  it('exits 2 on an unknown command and on bad flags', () => {
    expect(run('nope').status).toBe(2)
    const r = run('dataplane', '--config', 'a.yaml', '--snapshot', 'b.json')
    expect(r.status).toBe(2)
    expect(r.stderr).toContain('cannot be combined')
  })

  it('compile prints the snapshot of the demo config', () => {
    const models = fileURLToPath(new URL('../examples/demo/models.yaml', import.meta.url))
    const ok = run(
      'compile',
      models,
      fileURLToPath(new URL('../examples/demo/endpoints.yaml', import.meta.url)),
    )
    expect(ok.status, ok.stderr).toBe(0)
    expect(JSON.parse(ok.stdout)).toMatchObject({ schemaVersion: 1, version: 1 })
  })

  it('compile names file, line and field for an invalid object', () => {
    const dir = mkdtempSync(join(tmpdir(), 'igw-cli-'))
    const file = join(dir, 'bad.yaml')
    writeFileSync(
      file,
      [
        'apiVersion: networking.matrixinfer.ai/v1alpha1',
        'kind: ModelServer',
        'metadata: { name: s }',
        'spec:',
        '  inferenceEngine: vLLM',
        '  workloadSelector: { matchLabels: { a: b } }',
        '  workloadPort: { port: 70000 }',
        '',
      ].join('\n'),
    )
    const r = run('compile', file)
    rmSync(dir, { recursive: true, force: true })
    expect(r.status).toBe(1)
    expect(r.stderr).toMatch(/bad\.yaml:7:\d+: spec\.workloadPort\.port: /)
  })

  it('compile reads a directory and exits 1 on an error diagnostic (snapshot still printed)', {
    timeout: 120_000,
  }, () => {
    const dir = mkdtempSync(join(tmpdir(), 'igw-cli-'))
    writeFileSync(
      join(dir, 'route.yaml'),
      [
        'apiVersion: networking.serving.volcano.sh/v1alpha1',
        'kind: ModelRoute',
        'metadata: { name: r }',
        'spec:',
        '  modelName: m',
        '  rules:',
        '    - name: default',
        '      targetModels: [{ modelServerName: missing }]',
        '',
      ].join('\n'),
    )
    writeFileSync(join(dir, 'notes.txt'), 'not a manifest')
    const r = run('compile', dir)
    expect(r.stderr).toContain('ModelServerNotFound')
    expect(JSON.parse(r.stdout)).toMatchObject({ schemaVersion: 1 })
    expect(r.status).toBe(1)
    writeFileSync(
      join(dir, 'server.yaml'),
      [
        'apiVersion: networking.serving.volcano.sh/v1alpha1',
        'kind: ModelServer',
        'metadata: { name: missing }',
        'spec:',
        '  inferenceEngine: vLLM',
        '  workloadSelector: { matchLabels: { app: m } }',
        '  workloadPort: { port: 8000 }',
        '',
      ].join('\n'),
    )
    const ok = run('compile', dir)
    rmSync(dir, { recursive: true, force: true })
    expect(ok.stderr).not.toContain('error:')
    expect(ok.status, ok.stderr).toBe(0)
  })
})
