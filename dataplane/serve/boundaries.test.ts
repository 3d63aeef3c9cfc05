// The request path's module boundaries, checked on the source: one executor (serve/) runs every
// request; the app does HTTP and filters and never reaches into the proxy; the provider side
// (adapters, transport, credentials, SSE, usage) knows nothing of pickers, routing or engines.
import { readdirSync, readFileSync } from 'node:fs'
import { join, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'

const dataplane = resolve(fileURLToPath(new URL('.', import.meta.url)), '..')

function sources(dir: string): string[] {
  const out: string[] = []
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name)
    if (e.isDirectory()) out.push(...sources(p))
    else if (e.name.endsWith('.ts') && !e.name.endsWith('.test.ts')) out.push(p)
  }
  return out
}

/** Every module a file imports or re-exports, as a path relative to dataplane/ (local ones only). */
function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8')
  const out: string[] = []
  for (const m of text.matchAll(/^\s*(?:import|export)\b[^'"]*?from\s+['"]([^'"]+)['"]/gms)) {
    const spec = m[1]
    if (spec === undefined || !spec.startsWith('.')) continue
    out.push(relative(dataplane, resolve(file, '..', spec)).replace(/\.js$/, ''))
  }
  return out
}

function violations(files: string[], forbidden: (target: string) => boolean): string[] {
  return files.flatMap((f) =>
    importsOf(f)
      .filter(forbidden)
      .map((t) => `${relative(dataplane, f)} → ${t}`),
  )
}

describe('request path boundaries', () => {
  it('the scanner sees imports and re-exports (a file that has them is not read as empty)', () => {
    const app = importsOf(join(dataplane, 'app.ts'))
    expect(app).toContain('serve/chain')
    expect(app).toContain('serve/outcome')
    expect(importsOf(join(dataplane, 'providers/index.ts'))).toContain('providers/credentials')
  })

  it('providers/ imports nothing from the picker, router, proxy, serve, inbound, access log or metrics', () => {
    const files = sources(join(dataplane, 'providers'))
    expect(files.length).toBeGreaterThan(5)
    const bad = violations(files, (t) =>
      /^(picker|router|proxy\/|serve\/|inbound|access-log|metrics|app|scheduler\/)/.test(t),
    )
    expect(bad).toEqual([])
  })

  it('app.ts does not import proxy/* (serving is serve/)', () => {
    const bad = violations([join(dataplane, 'app.ts')], (t) => t.startsWith('proxy/'))
    expect(bad).toEqual([])
  })

  it('proxy/ and the router do not reach back into serve/ or providers/', () => {
    const files = [...sources(join(dataplane, 'proxy')), join(dataplane, 'router.ts')]
    const bad = violations(files, (t) => /^(serve\/|providers\/|app)/.test(t))
    expect(bad).toEqual([])
  })

  it('only serve/ and the assembly use the provider side', () => {
    const files = sources(dataplane).filter((f) => !relative(dataplane, f).startsWith('providers/'))
    const users = new Set(
      files
        .filter((f) => importsOf(f).some((t) => t.startsWith('providers/')))
        .map((f) => relative(dataplane, f).replace(/\/[^/]+$/, '/')),
    )
    // api/messages/ reads event streams with the providers' SSE parser (one parser, not two).
    for (const u of users) expect(['serve/', 'app.ts', 'gateway.ts', 'api/messages/']).toContain(u)
  })
})
