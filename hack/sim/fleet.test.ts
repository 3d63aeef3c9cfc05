import { describe, expect, it } from 'vitest'
import { parseSimArgs, runSimCommand, simHelp } from './command.js'
import { SimError } from './errors.js'
import { startFleet, startSimulator } from './server.js'
import { parseProm, postJson } from './testkit.js'

describe('startFleet', () => {
  it('runs several instances on distinct loopback addresses with independent state', async () => {
    const fleet = await startFleet([
      {
        name: 'v',
        host: '127.0.0.2',
        port: 0,
        model: 'm',
        metricsFormat: 'vllm',
        zeroLatency: true,
      },
      {
        name: 's',
        host: '127.0.0.3',
        port: 0,
        model: 'm',
        metricsFormat: 'sglang',
        zeroLatency: true,
      },
    ])
    try {
      const [v, s] = fleet.sims
      if (v === undefined || s === undefined) throw new Error('fleet incomplete')
      expect(v.url).toMatch(/^http:\/\/127\.0\.0\.2:\d+$/)
      expect(s.url).toMatch(/^http:\/\/127\.0\.0\.3:\d+$/)
      const r = await fetch(`${s.url}/health`)
      expect(r.headers.get('x-inference-pod')).toBe('s')
      await postJson(`${v.url}/v1/completions`, { prompt: 'a b c', max_tokens: 2 })
      expect(v.stats().completed).toBe(1)
      expect(s.stats().completed).toBe(0)
      const text = await (await fetch(`${s.url}/metrics`)).text()
      expect(parseProm(text).some((x) => x.name === 'sglang:num_running_reqs')).toBe(true)
    } finally {
      await fleet.close()
    }
  })

  it('the same port on two addresses works, and a failed start closes the others', async () => {
    const a = await startSimulator({
      name: 'a',
      host: '127.0.0.2',
      port: 0,
      model: 'm',
      metricsFormat: 'tgi',
    })
    try {
      const ok = await startSimulator({
        name: 'b',
        host: '127.0.0.3',
        port: a.port,
        model: 'm',
        metricsFormat: 'tgi',
      })
      await ok.close()
      await expect(
        startFleet([
          { name: 'c', host: '127.0.0.3', port: 0, model: 'm', metricsFormat: 'vllm' },
          { name: 'd', host: '127.0.0.2', port: a.port, model: 'm', metricsFormat: 'vllm' },
        ]),
      ).rejects.toMatchObject({ code: 'listen_failed' })
    } finally {
      await a.close()
    }
  })

  it('restart: same address, refused while down, then an empty cache and fresh counters', async () => {
    const fleet = await startFleet([
      {
        name: 'r0',
        host: '127.0.0.2',
        port: 0,
        model: 'm',
        metricsFormat: 'vllm',
        zeroLatency: true,
      },
      {
        name: 'r1',
        host: '127.0.0.3',
        port: 0,
        model: 'm',
        metricsFormat: 'vllm',
        zeroLatency: true,
      },
    ])
    try {
      const before = fleet.sims[1]
      if (before === undefined) throw new Error('fleet incomplete')
      const prompt = Array.from({ length: 64 }, (_, i) => `w${i}`).join(' ')
      await postJson(`${before.url}/v1/completions`, { prompt, max_tokens: 2 })
      await postJson(`${before.url}/v1/completions`, { prompt, max_tokens: 2 })
      expect(before.stats().prefixHitTokens).toBeGreaterThan(0)
      const twoPrompts = before.stats().promptTokens
      const startOf = async (url: string) =>
        parseProm(await (await fetch(`${url}/metrics`)).text()).find(
          (x) => x.name === 'process_start_time_seconds',
        )?.value
      const started = await startOf(before.url)
      expect(started).toBeGreaterThan(0)
      const restarting = fleet.restart('r1', 200)
      // The listener closes at once: a new connection is refused while the engine is down.
      await new Promise((r) => setTimeout(r, 50))
      await expect(fetch(`${before.url}/health`)).rejects.toThrow()
      const after = await restarting
      expect(after.url).toBe(before.url)
      expect(fleet.sims[1]).toBe(after)
      expect(after.stats().requests).toBe(0)
      await postJson(`${after.url}/v1/completions`, { prompt, max_tokens: 2 })
      // Nothing survived the restart: the first repeat of the prompt misses.
      expect(after.stats().prefixHitTokens).toBe(0)
      const prom = parseProm(await (await fetch(`${after.url}/metrics`)).text())
      const prompts = prom.find((x) => x.name === 'vllm:prompt_tokens_total')
      // Counters start again from zero (a scraper sees them go backwards): one prompt, not three.
      expect(prompts?.value).toBe(twoPrompts / 2)
      // A new process start time, as a restarted engine process reports.
      expect(await startOf(after.url)).toBeGreaterThan(started ?? Number.POSITIVE_INFINITY)
      // The other instance was left alone.
      expect(fleet.sims[0]?.stats().requests).toBe(0)
      await expect(fleet.restart('nope', 0)).rejects.toMatchObject({ code: 'unknown_instance' })
    } finally {
      await fleet.close()
    }
  })

  it('rejects invalid options with a typed error', async () => {
    await expect(
      startSimulator({
        name: 'x',
        host: '127.0.0.2',
        port: 0,
        model: 'm',
        metricsFormat: 'vllm',
        maxNumSeqs: 0,
      }),
    ).rejects.toBeInstanceOf(SimError)
  })
})

describe('sim command', () => {
  it('parses flags into one options object per consecutive address', () => {
    const opts = parseSimArgs([
      '--count',
      '3',
      '--host-base',
      '127.0.0.5',
      '--port',
      '9000',
      '--model',
      'q',
      '--format',
      'sglang',
      '--lora',
      'a, b',
      '--time-scale',
      '0.5',
    ])
    if (opts === 'help') throw new Error('unexpected help')
    expect(opts.map((o) => o.host)).toEqual(['127.0.0.5', '127.0.0.6', '127.0.0.7'])
    expect(opts[1]).toMatchObject({
      name: 'sim-1',
      port: 9000,
      model: 'q',
      metricsFormat: 'sglang',
      loras: ['a', 'b'],
      timeScale: 0.5,
      seed: 43,
    })
    expect(parseSimArgs(['--help'])).toBe('help')
    expect(() => parseSimArgs(['--format', 'xyz'])).toThrow(/format/)
    expect(() => parseSimArgs(['--bogus'])).toThrow(SimError)
    expect(() => parseSimArgs(['--count', '0'])).toThrow(/count/)
  })

  it('--help prints usage', async () => {
    const lines: string[] = []
    await runSimCommand(['--help'], { out: (l) => lines.push(l) })
    expect(lines).toEqual([simHelp])
    expect(simHelp).toContain('--host-base')
  })

  it('starts the fleet, prints one line per instance and stops on abort', async () => {
    const lines: string[] = []
    const ac = new AbortController()
    const done = runSimCommand(['--count', '2', '--port', '0', '--zero-latency'], {
      out: (l) => {
        lines.push(l)
        if (lines.length === 2) ac.abort()
      },
      signal: ac.signal,
    })
    await done
    expect(lines).toHaveLength(2)
    expect(lines[0]).toMatch(/^sim-0 http:\/\/127\.0\.0\.2:\d+ format=vllm model=sim-model$/)
    expect(lines[1]).toMatch(/^sim-1 http:\/\/127\.0\.0\.3:\d+ /)
    const url = lines[0]?.split(' ')[1] ?? ''
    await expect(fetch(`${url}/health`)).rejects.toThrow()
  })
})
