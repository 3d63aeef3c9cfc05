// The snapshot-source flags, parsed once for the data plane and the EPP (snapshotSourceArgs).
import { describe, expect, it } from 'vitest'
import {
  engineClientArg,
  scrapeModeArg,
  scrapeOption,
  snapshotSourceArgs,
  UsageError,
} from './command.js'

describe('snapshotSourceArgs', () => {
  it('--config (repeatable) is the standalone YAML source', () => {
    expect(snapshotSourceArgs({ config: ['a.yaml', 'dir/'] })).toEqual({
      config: { kind: 'manifests', paths: ['a.yaml', 'dir/'] },
    })
  })

  it('--snapshot with --push-url and its token file: both sources, the token file kept', () => {
    expect(
      snapshotSourceArgs({
        snapshot: 's.json',
        'push-url': 'http://op/v1',
        'push-token-file': '/t',
      }),
    ).toEqual({
      config: { kind: 'snapshot', paths: ['s.json'] },
      pushUrl: 'http://op/v1',
      pushTokenFile: '/t',
    })
    expect(snapshotSourceArgs({ 'push-url': 'http://op/v1' })).toEqual({ pushUrl: 'http://op/v1' })
  })

  it('refuses no source and --config beside --snapshot or --push-url, as usage errors', () => {
    expect(() => snapshotSourceArgs({})).toThrow(/give --config, or --snapshot and\/or --push-url/)
    expect(() => snapshotSourceArgs({ config: [] })).toThrow(UsageError)
    for (const other of [{ snapshot: 's.json' }, { 'push-url': 'http://op/v1' }])
      expect(() => snapshotSourceArgs({ config: ['a.yaml'], ...other })).toThrow(
        /--config \(standalone YAML\) cannot be combined/,
      )
  })
})

describe('--scrape (data plane and EPP)', () => {
  it('thread, inline and off map to the scheduler option; anything else is a usage error', () => {
    expect(scrapeOption(scrapeModeArg('thread'))).toEqual({ thread: true })
    expect(scrapeOption(scrapeModeArg('inline'))).toEqual({ thread: false })
    expect(scrapeOption(scrapeModeArg('off'))).toBe(false)
    expect(() => scrapeModeArg('worker')).toThrow(UsageError)
    expect(() => scrapeModeArg('')).toThrow(/--scrape must be one of thread, inline, off, got ""/)
  })
})

describe('--engine-client', () => {
  it('raw and undici are the clients; anything else is a usage error', () => {
    expect(engineClientArg('raw')).toBe('raw')
    expect(engineClientArg('undici')).toBe('undici')
    expect(() => engineClientArg('http')).toThrow(
      /--engine-client must be one of raw, undici, got "http"/,
    )
  })
})
