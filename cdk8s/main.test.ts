import { execFile } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parseAllDocuments } from 'yaml'
import { installObjects, main, synthInstall } from './main.js'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
let tmp: string

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'manifests-test-'))
})
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true })
})

function run(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return promisify(execFile)(process.execPath, ['--import', 'tsx', 'cdk8s/main.ts', ...args], {
    cwd: ROOT,
  }).then(
    (r) => ({ code: 0, ...r }),
    (e: { code?: number; stdout?: string; stderr?: string }) => ({
      code: e.code ?? 1,
      stdout: e.stdout ?? '',
      stderr: e.stderr ?? '',
    }),
  )
}

describe('dist/install.yaml', () => {
  it('matches the committed golden file byte for byte (review changes to it like code)', async () => {
    const text = await readFile(await synthInstall(join(tmp, 'install.yaml')), 'utf8')
    await expect(text).toMatchFileSnapshot('./__snapshots__/install.yaml')
  })

  it('holds exactly installObjects(), one YAML document each', async () => {
    const text = await readFile(await synthInstall(join(tmp, 'a', 'b', 'install.yaml')), 'utf8')
    const docs = parseAllDocuments(text).map((d) => d.toJS() as unknown)
    expect(docs).toEqual(installObjects())
  })

  it('is what `npm run manifests` writes, with --image and --namespace', async () => {
    const out = join(tmp, 'cli.yaml')
    const chart = join(tmp, 'chart')
    const r = await run([
      ...['--out', out, '--chart', chart],
      ...['--image', 'registry.local/ig:dev', '--namespace', 'gw'],
    ])
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    expect(r.stdout).toBe(`wrote ${out}\nwrote ${chart}\n`)
    const docs = parseAllDocuments(await readFile(out, 'utf8')).map((d) => d.toJS() as unknown)
    expect(docs).toEqual(installObjects({ image: 'registry.local/ig:dev', namespace: 'gw' }))
  }, 120_000)

  it('pins the image by digest from the image build record, and refuses to guess without one', async () => {
    const digest = `sha256:${'ab'.repeat(32)}`
    const record = join(tmp, 'image-build.json')
    await writeFile(record, JSON.stringify({ repository: 'ghcr.io/x/ig', tag: '1.2.3', digest }))
    const out = join(tmp, 'pinned.yaml')
    const base = ['--out', out, '--chart', join(tmp, 'chart-pinned')]
    // In-process (the CLI's process start is what costs time; one spawned run is above).
    await main([...base, '--image-record', record, '--autoscaling', '--service-monitor'])
    const docs = parseAllDocuments(await readFile(out, 'utf8')).map((d) => d.toJS() as unknown)
    expect(docs).toEqual(
      installObjects({
        image: `ghcr.io/x/ig@${digest}`,
        autoscaling: { minReplicas: 2, maxReplicas: 10, targetCPUUtilizationPercentage: 70 },
        serviceMonitor: true,
      }),
    )
    expect(await readFile(join(tmp, 'chart-pinned', 'values.yaml'), 'utf8')).toContain(
      `image: ghcr.io/x/ig@${digest}`,
    )
    await expect(main([...base, '--image-record', join(tmp, 'none.json')])).rejects.toThrow(
      /no image build record at .*npm run image.*--image/,
    )
    await writeFile(record, JSON.stringify({ repository: 'ghcr.io/x/ig', digest: 'latest' }))
    await expect(main([...base, '--image-record', record])).rejects.toThrow(
      /digest: expected sha256:<64 hex digits>/,
    )
  }, 60_000)

  it('fails with a message on an unknown flag', async () => {
    const r = await run(['--outfile', join(tmp, 'x.yaml')])
    expect(r.code).toBe(1)
    expect(r.stderr).toMatch(/^manifests: .*--outfile/)
  }, 120_000)
})
