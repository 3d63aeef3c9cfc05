// `infer-gateway epp` flags: what is required, what is refused with a usage error.
import { describe, expect, it } from 'vitest'
import { silentLogger } from '../log.js'
import { parseEppArgs } from './command.js'
import { BodyMode } from './proto.js'

const parse = (...a: string[]) => parseEppArgs(a, silentLogger)

describe('parseEppArgs', () => {
  it('--pool with the operator push channel and its token; defaults as GAIE EPPs', () => {
    const o = parse(
      '--pool',
      'llm/pool',
      '--push-url',
      'http://op/v1/snapshot',
      '--push-token-file',
      '/t',
    )
    expect(o?.pool).toEqual({ kind: 'pool', key: 'llm/pool' })
    expect(o?.pushTokenFile).toBe('/t')
    expect([o?.grpcPort, o?.metricsPort, o?.fallbacks, o?.bodyMode]).toEqual([
      9002,
      9090,
      2,
      BodyMode.FULL_DUPLEX_STREAMED,
    ])
  })

  it('--server, --body-mode buffered, --metrics-port off, --fallbacks 0', () => {
    const o = parse(
      '--server',
      'default/s',
      '--config',
      'a.yaml',
      '--body-mode',
      'buffered',
      '--metrics-port',
      'off',
      '--fallbacks',
      '0',
    )
    expect(o?.pool).toEqual({ kind: 'server', key: 'default/s' })
    expect(o?.bodyMode).toBe(BodyMode.BUFFERED)
    expect(o?.metricsPort).toBeUndefined()
    expect(o?.fallbacks).toBe(0)
    expect(o?.config).toEqual({ kind: 'manifests', paths: ['a.yaml'] })
  })

  it('refuses missing or double pools, bad names, modes and config combinations', () => {
    const usage = (a: string[], msg: RegExp) => expect(() => parse(...a)).toThrow(msg)
    usage(['--config', 'a'], /exactly one of --pool/)
    usage(['--pool', 'a/b', '--server', 'a/b', '--config', 'a'], /exactly one of --pool/)
    usage(['--pool', 'nope', '--config', 'a'], /--pool must be namespace\/name/)
    usage(['--pool', 'a/b'], /give --config/)
    usage(['--pool', 'a/b', '--config', 'a', '--snapshot', 's'], /cannot be combined/)
    usage(
      ['--pool', 'a/b', '--config', 'a', '--body-mode', 'partial'],
      /--body-mode must be one of/,
    )
    usage(['--pool', 'a/b', '--config', 'a', '--max-body-bytes', '0'], /at least 1/)
  })

  it('--help returns nothing to run', () => {
    expect(parse('--help')).toBeUndefined()
  })
})
