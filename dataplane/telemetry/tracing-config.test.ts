import { describe, expect, it } from 'vitest'
import { tracingArgs } from '../command.js'
import { TracingConfigError, tracesUrl, tracingFromEnv } from './tracing-config.js'

describe('tracing settings', () => {
  it('appends /v1/traces to a base URL and keeps a full one', () => {
    expect(tracesUrl('http://collector:4318')).toBe('http://collector:4318/v1/traces')
    expect(tracesUrl('http://collector:4318/otlp/')).toBe('http://collector:4318/otlp/v1/traces')
    expect(tracesUrl('https://c.example/v1/traces')).toBe('https://c.example/v1/traces')
    expect(() => tracesUrl('collector:4318')).toThrow(TracingConfigError)
    expect(() => tracesUrl('not a url')).toThrow(/not a URL/)
  })

  it('reads the OpenTelemetry environment variables, the traces-specific one first', () => {
    expect(tracingFromEnv({})).toBeUndefined()
    expect(tracingFromEnv({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://a:4318' })).toEqual({
      endpoint: 'http://a:4318',
    })
    expect(
      tracingFromEnv({
        OTEL_EXPORTER_OTLP_ENDPOINT: 'http://a:4318',
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://b:4318/v1/traces',
      }),
    ).toEqual({ endpoint: 'http://b:4318/v1/traces' })
  })

  it('flags: off by default, on with a flag or the environment, ratio validated', () => {
    expect(tracingArgs(undefined, undefined, {})).toEqual({})
    expect(tracingArgs('http://c:4318', '0.25', {})).toEqual({
      tracing: { endpoint: 'http://c:4318', sampleRatio: 0.25 },
    })
    expect(
      tracingArgs(undefined, undefined, { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://e:4318' }),
    ).toEqual({
      tracing: { endpoint: 'http://e:4318', sampleRatio: 1 },
    })
    expect(() => tracingArgs('http://c:4318', '1.5', {})).toThrow(/within 0..1/)
    expect(() => tracingArgs('http://c:4318', '', {})).toThrow(/within 0..1/)
    expect(() => tracingArgs(undefined, '0.5', {})).toThrow(/needs --otlp-endpoint/)
    expect(() => tracingArgs('ftp://c', undefined, {})).toThrow(/--otlp-endpoint: .*http\(s\)/)
  })
})
