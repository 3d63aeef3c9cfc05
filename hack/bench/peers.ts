// Peer routers for the routing benchmark: sglang-router and vllm-router from PyPI, installed once
// into a cached virtualenv (like hack/cluster caches the control-plane binaries) and started with
// `--policy cache_aware` in front of the same simulated engines as our data plane. Anything that
// goes wrong while installing is returned as a reason to print ("skipped: …"), never thrown: the
// benchmark still runs our policies without them.
import { execFile } from 'node:child_process'
import { access, constants, mkdir } from 'node:fs/promises'
import { homedir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { type OutputProc, spawnProc } from './procs.js'

const run = promisify(execFile)

export type PeerName = 'sglang' | 'vllm'

interface PeerPackage {
  readonly pkg: string
  readonly version: string
  readonly bin: string
  /** argv after the binary, before the common flags. */
  readonly subcommand: readonly string[]
  /** Its quiet log level (the two CLIs spell it differently). */
  readonly logLevel: string
}

/**
 * Versions pinned so every run compares against the same code (the ones the issue measured;
 * `pip download --no-deps` served both on 2026-12-01). Override with SGLANG_ROUTER_VERSION /
 * VLLM_ROUTER_VERSION.
 */
export const PEERS: Readonly<Record<PeerName, PeerPackage>> = {
  sglang: {
    pkg: 'sglang-router',
    version: process.env['SGLANG_ROUTER_VERSION'] || '0.3.2',
    bin: 'sglang-router',
    subcommand: ['launch'],
    logLevel: 'warn',
  },
  vllm: {
    pkg: 'vllm-router',
    version: process.env['VLLM_ROUTER_VERSION'] || '0.1.17',
    bin: 'vllm-router',
    subcommand: [],
    logLevel: 'warning',
  },
}

export type PeerInstall =
  | { readonly ok: true; readonly bin: string; readonly version: string }
  | { readonly ok: false; readonly reason: string }

export function peersDir(): string {
  const cache = process.env['INFER_GATEWAY_CACHE'] || join(homedir(), '.cache', 'infer-gateway')
  return join(cache, 'peers')
}

async function exists(p: string): Promise<boolean> {
  try {
    await access(p, constants.X_OK)
    return true
  } catch {
    return false
  }
}

function firstLine(e: unknown): string {
  const err = e as { stderr?: string; message?: string }
  const text = (err.stderr || err.message || String(e)).trim().split('\n')
  // pip's last line names the actual failure ("No matching distribution…", network errors).
  return (text[text.length - 1] ?? '').slice(0, 200)
}

export interface EnsureOptions {
  /** Where the venvs live (default: peersDir()). */
  readonly dir?: string
  /** The interpreter that creates them (default: python3 on PATH). */
  readonly python?: string
}

/**
 * One venv per peer and version under ~/.cache/infer-gateway/peers/<pkg>-<version>; installed on
 * first use (`python3 -m venv`, `pip install <pkg>==<version>`), reused afterwards.
 */
export async function ensurePeer(name: PeerName, o: EnsureOptions = {}): Promise<PeerInstall> {
  const p = PEERS[name]
  const dir = o.dir ?? peersDir()
  const python = o.python ?? 'python3'
  const venv = join(dir, `${p.pkg}-${p.version}`)
  const bin = join(venv, 'bin', p.bin)
  if (await exists(bin)) return { ok: true, bin, version: p.version }
  try {
    await mkdir(dir, { recursive: true })
    await run(python, ['-m', 'venv', venv], { timeout: 120_000 })
  } catch (e) {
    return { ok: false, reason: `${python} -m venv failed: ${firstLine(e)}` }
  }
  try {
    await run(
      join(venv, 'bin', 'pip'),
      ['install', '--quiet', '--disable-pip-version-check', `${p.pkg}==${p.version}`],
      { timeout: 600_000 },
    )
  } catch (e) {
    return { ok: false, reason: `pip install ${p.pkg}==${p.version} failed: ${firstLine(e)}` }
  }
  if (!(await exists(bin))) {
    return { ok: false, reason: `${p.pkg}==${p.version} installed no ${p.bin} executable` }
  }
  return { ok: true, bin, version: p.version }
}

export interface PeerStart {
  readonly install: Extract<PeerInstall, { ok: true }>
  readonly name: PeerName
  readonly host: string
  readonly port: number
  /** Each router also serves Prometheus metrics on a port of its own (default 29000 for both). */
  readonly metricsPort: number
  readonly workerUrls: readonly string[]
}

/**
 * Starts the router with its defaults except the policy (cache_aware, the one both projects
 * recommend for prefix reuse) and the listen addresses; resolves once it proxies a request
 * (GET /v1/models answered by a worker).
 */
export async function startPeer(s: PeerStart): Promise<OutputProc> {
  const p = PEERS[s.name]
  const args = [
    ...p.subcommand,
    '--host',
    s.host,
    '--port',
    String(s.port),
    '--worker-urls',
    ...s.workerUrls,
    '--policy',
    'cache_aware',
    '--prometheus-host',
    '127.0.0.1',
    '--prometheus-port',
    String(s.metricsPort),
    '--log-level',
    p.logLevel,
  ]
  const proc = spawnProc(s.install.bin, args, { RUST_LOG: 'warn' })
  const url = `http://${s.host}:${s.port}/v1/models`
  const deadline = Date.now() + 30_000
  for (;;) {
    if (proc.child.exitCode !== null) {
      throw new Error(`${p.bin} exited with ${proc.child.exitCode}:\n${proc.output()}`)
    }
    try {
      const res = await fetch(url)
      await res.arrayBuffer()
      if (res.status === 200) return proc
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      await proc.stop()
      throw new Error(`${p.bin} not ready after 30 s:\n${proc.output()}`)
    }
    await new Promise((r) => setTimeout(r, 100))
  }
}
