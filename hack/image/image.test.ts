// `npm run image` for real: the OCI layout is built twice from the same inputs and must have the
// same digest; a third-party tool (umoci) unpacks it, checking every blob's digest; and a real
// container runtime (runc) runs the data-plane bundle from it, serving examples/demo/ to the
// official openai client, with the demo's engines as simulators on 127.0.0.x (the container
// shares the host's network namespace, so loopback is the same on both sides).
//
// Needs the Debian tools (apt-get, dpkg-deb: the base layer), a cached Node 24
// (`npm run node:fetch`), and for the run umoci + runc (`apt-get install umoci runc`;
// hack/ensure-test-deps.sh installs them). Without them the parts that need them are skipped,
// and the test says why.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { chmod, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import OpenAI from 'openai'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { buildAll } from '../build.js'
import { freePort } from '../cluster/control-plane.js'
import { demoWithEngines } from '../demo-engines.js'
import { cachedNode, IMAGE_NODE_MAJOR } from '../sea/node-dist.js'
import { buildImage, dependencyClosure } from './build-image.js'
import { IMAGE_PATHS, IMAGE_UID, type ImageRecord } from './record.js'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
/** Simulated engines' addresses: none other test uses 127.0.0.190+. */
const SIM_HOST_BASE = 190
const EPOCH = 1_700_000_000

const has = (cmd: string) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0
const node24 = await cachedNode(IMAGE_NODE_MAJOR)
const canBuild = has('apt-get') && has('dpkg-deb') && node24 !== undefined
const canRun = canBuild && has('umoci') && has('runc') && process.getuid?.() === 0
const canPush = canBuild && has('skopeo') && has('docker-registry')
if (!canBuild)
  process.stdout.write(
    `hack/image/image.test.ts: skipping the image build: needs apt-get, dpkg-deb and a cached Node ${IMAGE_NODE_MAJOR} (npm run node:fetch)\n`,
  )
else if (!canRun)
  process.stdout.write(
    'hack/image/image.test.ts: skipping the container run: needs umoci and runc (apt-get install umoci runc) as root\n',
  )
if (canBuild && !canPush)
  process.stdout.write(
    'hack/image/image.test.ts: skipping the push: needs skopeo and docker-registry (apt-get install skopeo docker-registry)\n',
  )

// Inside the repository, at one depth, so the bundles' source maps hold the same relative paths.
const work = join(ROOT, 'dist', `.image-test-${process.pid}`)
let tmp: string
let first: ImageRecord
const cleanups: (() => Promise<void>)[] = []

beforeAll(async () => {
  if (!canBuild) return
  tmp = await mkdtemp(join(tmpdir(), 'igw-image-'))
  await buildAll(join(work, 'bundles'), { sea: false })
  first = await buildImage({
    layout: join(tmp, 'a'),
    recordFile: join(tmp, 'a.json'),
    stageDir: join(work, 'stage'),
    bundlesDir: join(work, 'bundles'),
    epoch: EPOCH,
    tag: 'test',
    // Fixed: other commits may land between the two builds (the label is HEAD by default).
    revision: 'test-revision',
    ...(node24 ? { node: node24 } : {}),
  })
}, 600_000)

afterAll(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => {})
  await rm(work, { recursive: true, force: true })
  if (tmp) await rm(tmp, { recursive: true, force: true })
})

describe('dependencyClosure (what /app/node_modules carries)', () => {
  it('takes an installed external with its dependencies and leaves out an optional one that is not installed', () => {
    const c = dependencyClosure(['zeromq', 'bufferutil'])
    expect([...c.keys()].sort()).toEqual(['cmake-ts', 'node-addon-api', 'zeromq'])
  })
})

describe.skipIf(!canBuild)('npm run image', () => {
  it('gives the same digest, layer for layer, when built again from the same inputs', async () => {
    const again = await buildImage({
      layout: join(tmp, 'b'),
      recordFile: join(tmp, 'b.json'),
      stageDir: join(work, 'stage'),
      bundlesDir: join(work, 'bundles'),
      epoch: EPOCH,
      tag: 'test',
      // Fixed: other commits may land between the two builds (the label is HEAD by default).
      revision: 'test-revision',
      ...(node24 ? { node: node24 } : {}),
    })
    expect(again.digest).toMatch(/^sha256:[0-9a-f]{64}$/)
    expect(again.layers).toEqual(first.layers)
    expect(again.digest).toBe(first.digest)
    expect(await readFile(join(tmp, 'b', 'index.json'), 'utf8')).toBe(
      await readFile(join(tmp, 'a', 'index.json'), 'utf8'),
    )
    expect(first.reference).toBe(`${first.repository}@${first.digest}`)
    expect(first.layers.map((l) => l.createdBy.split(' ')[0])).toEqual([
      'debian',
      'node',
      'infer-gateway',
    ])
  }, 600_000)

  it.skipIf(!canPush)(
    'pushes by digest to a registry (hack/image/push.sh), which then serves that very manifest',
    async () => {
      // A real registry (Debian's docker-registry, distribution v2) on loopback, storage in tmp.
      const port = await freePort()
      const config = join(tmp, 'registry.yml')
      await writeFile(
        config,
        `version: 0.1\nlog: {level: error}\nstorage: {filesystem: {rootdirectory: ${join(tmp, 'registry')}}}\nhttp: {addr: "127.0.0.1:${port}"}\n`,
      )
      const registry = spawn('docker-registry', ['serve', config], { stdio: 'ignore' })
      cleanups.push(async () => {
        registry.kill('SIGKILL')
      })
      for (let i = 0; ; i++) {
        const up = await fetch(`http://127.0.0.1:${port}/v2/`).then(
          (r) => r.status === 200,
          () => false,
        )
        if (up) break
        if (i > 300) throw new Error('registry did not start')
        await new Promise((r) => setTimeout(r, 100))
      }
      const repo = `127.0.0.1:${port}/infer-gateway`
      const r = spawnSync('bash', [join(ROOT, 'hack/image/push.sh'), join(tmp, 'a.json')], {
        cwd: ROOT,
        encoding: 'utf8',
        env: {
          ...process.env,
          REPOSITORY: repo,
          SKOPEO_DEST_FLAGS: '--dest-tls-verify=false',
          SKOPEO_SRC_FLAGS: '--tls-verify=false',
        },
      })
      expect(r.stderr + r.stdout, 'push.sh').toContain(`${repo}@${first.digest}`)
      expect(r.status).toBe(0)
      // The tag points at the same manifest.
      const byTag = await fetch(`http://${repo.replace('/', '/v2/')}/manifests/test`, {
        headers: { accept: 'application/vnd.oci.image.manifest.v1+json' },
      })
      expect(byTag.headers.get('docker-content-digest')).toBe(first.digest)
    },
    180_000,
  )

  it.skipIf(!canRun)(
    'unpacks with umoci (every blob digest checked) into a Debian root with Node 24, the bundles and the nonroot user',
    async () => {
      const bundle = join(tmp, 'bundle')
      const r = spawnSync('umoci', ['unpack', '--image', `${join(tmp, 'a')}:test`, bundle], {
        encoding: 'utf8',
      })
      expect(r.stderr + r.stdout, 'umoci unpack').not.toMatch(/error|fatal/i)
      expect(r.status).toBe(0)
      const rootfs = join(bundle, 'rootfs')
      for (const p of [IMAGE_PATHS.node, IMAGE_PATHS.cli, IMAGE_PATHS.dataplane, '/etc/os-release'])
        expect(existsSync(join(rootfs, p)), p).toBe(true)
      expect(await readFile(join(rootfs, 'etc/passwd'), 'utf8')).toContain(
        `nonroot:x:${IMAGE_UID}:${IMAGE_UID}:`,
      )
      expect(await readFile(join(rootfs, 'etc/os-release'), 'utf8')).toContain('bookworm')
      const cfg = JSON.parse(await readFile(join(bundle, 'config.json'), 'utf8')) as {
        process: { user: { uid: number }; args: string[] }
      }
      expect(cfg.process.user.uid).toBe(IMAGE_UID)
      // The native addon the bundles leave external (zeromq, engine KV events) is in
      // /app/node_modules and loads with the image's own libraries (chroot: nothing from the host).
      expect(first.externals).toContain('zeromq')
      const z = spawnSync(
        'chroot',
        [
          rootfs,
          IMAGE_PATHS.node,
          '-e',
          "const r = require('module').createRequire('/app/'); console.log(typeof r('zeromq').Subscriber)",
        ],
        { encoding: 'utf8' },
      )
      expect(z.stderr).toBe('')
      expect(z.stdout.trim()).toBe('function')
      expect(cfg.process.args.slice(0, 2)).toEqual([IMAGE_PATHS.node, '--enable-source-maps'])
    },
    120_000,
  )

  it.skipIf(!canRun)(
    'runs the data plane in runc (read-only root, user 65532) serving examples/demo/ to the openai client',
    async () => {
      const bundle = join(tmp, 'bundle')
      const demo = await demoWithEngines(SIM_HOST_BASE, cleanups)
      // mkdtemp makes it 0700 for root; the container runs as 65532, as in a pod.
      await chmod(demo.configDir, 0o755)
      for (const f of await readdir(demo.configDir)) await chmod(join(demo.configDir, f), 0o644)
      const port = await freePort()
      const cfgFile = join(bundle, 'config.json')
      const cfg = JSON.parse(await readFile(cfgFile, 'utf8')) as {
        process: { args: string[]; terminal: boolean }
        root: { readonly: boolean }
        mounts: { destination: string; type: string; source: string; options: string[] }[]
        linux: { namespaces: { type: string }[] }
      }
      cfg.process.terminal = false
      cfg.process.args = [
        IMAGE_PATHS.node,
        '--enable-source-maps',
        IMAGE_PATHS.dataplane,
        '--config',
        '/config',
        '--host',
        '127.0.0.1',
        '--port',
        String(port),
        '--drain-delay',
        '0',
      ]
      cfg.root.readonly = true
      cfg.mounts.push({
        destination: '/config',
        type: 'bind',
        source: demo.configDir,
        options: ['rbind', 'ro'],
      })
      // The host's network namespace: the simulated engines and the test client are on loopback.
      cfg.linux.namespaces = cfg.linux.namespaces.filter((n) => n.type !== 'network')
      await writeFile(cfgFile, JSON.stringify(cfg))

      const id = `igw-image-test-${process.pid}`
      let output = ''
      const proc: ChildProcess = spawn('runc', ['run', '--bundle', bundle, id], {
        stdio: ['ignore', 'pipe', 'pipe'],
      })
      proc.stdout?.on('data', (b: Buffer) => {
        output += b.toString()
      })
      proc.stderr?.on('data', (b: Buffer) => {
        output += b.toString()
      })
      cleanups.push(async () => {
        spawnSync('runc', ['kill', id, 'KILL'])
        spawnSync('runc', ['delete', '--force', id])
      })
      const base = `http://127.0.0.1:${port}`
      // Ready, or the container's exit (fails at once, with its output).
      const died = new Promise<never>((_, reject) =>
        proc.once('exit', (code) => reject(new Error(`runc exited ${code}: ${output}`))),
      )
      await Promise.race([
        died,
        vi.waitFor(
          async () => {
            const r = await fetch(`${base}/readyz`, { signal: AbortSignal.timeout(2000) })
            expect(r.status, output).toBe(200)
          },
          { timeout: 120_000, interval: 200 },
        ),
      ])
      const client = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'unused', maxRetries: 0 })
      expect(demo.models).toContain('llama-3.1-8b')
      for (const model of demo.models) {
        const r = await client.chat.completions.create({
          model,
          messages: [{ role: 'user', content: `Hello ${model}` }],
          max_tokens: 4,
        })
        expect(r.choices[0]?.message.content, model).toMatch(/\S/)
      }
      const stream = await client.chat.completions.create({
        model: 'llama-3.1-8b',
        messages: [{ role: 'user', content: 'Stream please' }],
        max_tokens: 4,
        stream: true,
      })
      let text = ''
      for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? ''
      expect(text).toMatch(/\S/)
      // SIGTERM to the container's PID 1 (node): a graceful stop, exit code 0.
      const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)))
      spawnSync('runc', ['kill', id, 'TERM'])
      expect(await exited, output).toBe(0)
    },
    180_000,
  )
})
