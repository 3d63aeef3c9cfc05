import { appendFile, mkdtemp, rm, utimes, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  documentCount,
  FileChangedError,
  readFileStable,
  watchEventMatters,
} from './config-source.js'

let dir: string
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'igw-cs-'))
})
afterAll(async () => {
  await rm(dir, { recursive: true, force: true })
})

describe('readFileStable', () => {
  it('returns the content of a file nobody is writing', async () => {
    const f = join(dir, 'still.yaml')
    await writeFile(f, 'a: 1\n')
    expect((await readFileStable(f)).toString()).toBe('a: 1\n')
  })

  it('throws FileChangedError when the file changes while it is read', async () => {
    const f = join(dir, 'moving.yaml')
    await writeFile(f, 'a: 1\n')
    await expect(readFileStable(f, () => appendFile(f, 'b: 2\n'))).rejects.toBeInstanceOf(
      FileChangedError,
    )
  })

  it('waits for a writer that may still be at work: a file modified within settleMs is not read', async () => {
    const f = join(dir, 'fresh.yaml')
    await writeFile(f, 'spec:\n  modelName: lla')
    await expect(readFileStable(f, undefined, 60_000)).rejects.toBeInstanceOf(FileChangedError)
    // The same file, last modified long ago (or in the future: clock skew), is settled.
    const old = new Date('2020-01-01T00:00:00Z')
    await utimes(f, old, old)
    expect((await readFileStable(f, undefined, 60_000)).toString()).toContain('lla')
    const future = new Date('2100-01-01T00:00:00Z')
    await utimes(f, future, future)
    expect((await readFileStable(f, undefined, 60_000)).toString()).toContain('lla')
  })
})

describe('documentCount', () => {
  it('counts documents with content; empty and comment-only streams count none', () => {
    expect(documentCount('')).toBe(0)
    expect(documentCount('\n\n')).toBe(0)
    expect(documentCount('# only a comment\n---\n# another\n---\n')).toBe(0)
    expect(documentCount('a: 1\n---\n# c\n---\nb: 2\n')).toBe(2)
    // A syntax error is content (reported by the parser with its line), not emptiness.
    expect(documentCount('{ "kind": ')).toBe(1)
  })
})

describe('watchEventMatters', () => {
  it('keeps events of the config file and kubelet swaps, drops other files of its directory', () => {
    const paths = ['/etc/igw/gateway.yaml']
    expect(watchEventMatters(paths, '/etc/igw', 'gateway.yaml')).toBe(true)
    expect(watchEventMatters(paths, '/etc/igw', '..data')).toBe(true)
    expect(watchEventMatters(paths, '/etc/igw', '..2026_12_02_01_00_00.123')).toBe(true)
    expect(watchEventMatters(paths, '/etc/igw', null)).toBe(true)
    // A benchmark's result file beside the config: no re-read.
    expect(watchEventMatters(paths, '/etc/igw', 'rate-ours-1.bin')).toBe(false)
    expect(watchEventMatters(paths, '/etc/igw', 'other.yaml')).toBe(false)
  })

  it('keeps every YAML/JSON of a configured directory, not its dotfiles or other files', () => {
    const paths = ['/etc/igw']
    expect(watchEventMatters(paths, '/etc/igw', 'routes.yaml')).toBe(true)
    expect(watchEventMatters(paths, '/etc/igw', 'snap.json.gz')).toBe(true)
    expect(watchEventMatters(paths, '/etc/igw', Buffer.from('b.yml'))).toBe(true)
    expect(watchEventMatters(paths, '/etc/igw', '.routes.yaml.swp')).toBe(false)
    expect(watchEventMatters(paths, '/etc/igw', 'notes.txt')).toBe(false)
  })
})
