import { describe, expect, it } from 'vitest'
import { tracingArgs } from '../command.js'
import {
  otlpProtocol,
  protocolFromEnv,
  TracingConfigError,
  tracesUrl,
  tracingFromEnv,
} from './tracing-config.js'

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
    expect(tracingArgs({}, {})).toEqual({})
    expect(tracingArgs({ endpoint: 'http://c:4318', ratio: '0.25' }, {})).toEqual({
      tracing: { endpoint: 'http://c:4318', sampleRatio: 0.25 },
    })
    expect(tracingArgs({}, { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://e:4318' })).toEqual({
      tracing: { endpoint: 'http://e:4318', sampleRatio: 1 },
    })
    expect(() => tracingArgs({ endpoint: 'http://c:4318', ratio: '1.5' }, {})).toThrow(
      /within 0..1/,
    )
    expect(() => tracingArgs({ endpoint: 'http://c:4318', ratio: '' }, {})).toThrow(/within 0..1/)
    expect(() => tracingArgs({ ratio: '0.5' }, {})).toThrow(/needs --otlp-endpoint/)
    expect(() => tracingArgs({ endpoint: 'ftp://c' }, {})).toThrow(/--otlp-endpoint: .*http\(s\)/)
  })

  it('protocol: protobuf unless the flag or the environment says json; others refused by name', () => {
    // Unset: the tracer's default (http/protobuf, tracing.ts).
    expect(tracingArgs({ endpoint: 'http://c:4318' }, {})).toEqual({
      tracing: { endpoint: 'http://c:4318', sampleRatio: 1 },
    })
    expect(tracingArgs({ endpoint: 'http://c:4318', protocol: 'http/json' }, {})).toEqual({
      tracing: { endpoint: 'http://c:4318', sampleRatio: 1, protocol: 'http/json' },
    })
    // The traces-specific variable first, then the general one; the flag over both.
    const env = {
      OTEL_EXPORTER_OTLP_ENDPOINT: 'http://e:4318',
      OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
      OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'http/protobuf',
    }
    expect(tracingArgs({}, env).tracing?.protocol).toBe('http/protobuf')
    expect(
      tracingArgs({}, { ...env, OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: '' }).tracing?.protocol,
    ).toBe('http/json')
    expect(tracingArgs({ protocol: 'http/json' }, env).tracing?.protocol).toBe('http/json')
    expect(protocolFromEnv({})).toBeUndefined()
    expect(() => tracingArgs({ endpoint: 'http://c:4318', protocol: 'grpc' }, {})).toThrow(
      '--otlp-protocol must be one of http/protobuf, http/json, got "grpc"',
    )
    expect(() => tracingArgs({}, { ...env, OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'json' })).toThrow(
      /^OTEL_EXPORTER_OTLP_TRACES_PROTOCOL must be one of/,
    )
    expect(() => tracingArgs({ protocol: 'http/json' }, {})).toThrow(
      '--otlp-protocol needs --otlp-endpoint',
    )
    try {
      otlpProtocol('http', 'tracing.protocol')
      expect.unreachable()
    } catch (e) {
      expect(e).toBeInstanceOf(TracingConfigError)
      expect((e as TracingConfigError).code).toBe('invalid_tracing_protocol')
    }
  })
})
