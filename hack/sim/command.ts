// `infer-gateway sim …`: start N simulated engines on consecutive loopback addresses
// (127.0.0.2, .3, …) so that each looks like a separate pod on the same port.

import { parseArgs } from 'node:util'
import { SimError } from './errors.js'
import { METRICS_FORMATS, type MetricsFormat } from './metrics.js'
import { SIM_ROLES, type SimRole } from './pd.js'
import { type Fleet, type SimOptions, startFleet } from './server.js'

export const simHelp = `Usage: sim [options]

Start simulated OpenAI-compatible inference engines (vLLM / SGLang / TGI look-alikes).

Options:
  --count <n>          number of instances (default 1)
  --host-base <ip>     first loopback address; later instances increment the last octet (default 127.0.0.2)
  --port <n>           port for every instance, 0 = ephemeral (default 8000)
  --model <name>       served base model (default sim-model)
  --format <f>         metrics format: vllm | sglang | tgi (default vllm)
  --lora <a,b>         known LoRA adapters (comma-separated)
  --max-loras <n>      LoRA slots per instance (default 1)
  --max-num-seqs <n>   concurrent sequences per instance (default 16)
  --num-gpu-blocks <n> KV cache blocks (default 2048)
  --block-size <n>     tokens per KV block (default 16)
  --time-scale <x>     multiply all modelled latencies (default 1)
  --zero-latency       answer immediately (benchmarks)
  --role <r>           prefill | decode | both: prefill/decode disaggregation role (default both)
  --kv-transfer-ms-per-token <x>
                       KV received from a prefill pod: ms per prompt token (default 0.02)
  --prefill-interference
                       prefill stalls decode on this engine (aggregated engines in PD studies)
  --seed <n>           base seed; instance i uses seed + i (default 42)
  --help               print this help
`

export interface SimCommandIo {
  /** Where instance lines go (default: console.log). */
  out?: (line: string) => void
  /** Stops the fleet when aborted (default: SIGINT / SIGTERM). */
  signal?: AbortSignal
}

function int(name: string, v: string | undefined, dflt: number, min: number): number {
  if (v === undefined) return dflt
  const n = Number(v)
  if (!Number.isInteger(n) || n < min)
    throw new SimError(400, 'invalid_sim_args', `--${name} must be an integer >= ${min}, got ${v}`)
  return n
}

function num(name: string, v: string): number {
  const n = Number(v)
  if (!Number.isFinite(n) || n < 0)
    throw new SimError(400, 'invalid_sim_args', `--${name} must be a number >= 0, got ${v}`)
  return n
}

function role(v: string | undefined): SimRole {
  if (v === undefined) return 'both'
  if (!(SIM_ROLES as readonly string[]).includes(v))
    throw new SimError(
      400,
      'invalid_sim_args',
      `--role must be one of ${SIM_ROLES.join(', ')}, got ${v}`,
    )
  return v as SimRole
}

function hostAt(base: string, i: number): string {
  const parts = base.split('.').map(Number)
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255)) {
    throw new SimError(400, 'invalid_sim_args', `--host-base must be an IPv4 address, got ${base}`)
  }
  const last = (parts[3] ?? 0) + i
  if (last > 254)
    throw new SimError(
      400,
      'invalid_sim_args',
      `--host-base ${base} leaves no room for ${i + 1} instances`,
    )
  return `${parts[0]}.${parts[1]}.${parts[2]}.${last}`
}

/** Parse CLI flags into one SimOptions per instance (exported for tests). */
export function parseSimArgs(args: readonly string[]): SimOptions[] | 'help' {
  let parsed: ReturnType<typeof parse>
  try {
    parsed = parse(args)
  } catch (e) {
    throw new SimError(400, 'invalid_sim_args', e instanceof Error ? e.message : String(e))
  }
  const v = parsed.values
  if (v.help === true) return 'help'
  const format = v.format ?? 'vllm'
  if (!(METRICS_FORMATS as readonly string[]).includes(format)) {
    throw new SimError(
      400,
      'invalid_sim_args',
      `--format must be one of ${METRICS_FORMATS.join(', ')}, got ${format}`,
    )
  }
  const timeScale = v['time-scale'] === undefined ? 1 : Number(v['time-scale'])
  if (!Number.isFinite(timeScale) || timeScale < 0) {
    throw new SimError(
      400,
      'invalid_sim_args',
      `--time-scale must be a number >= 0, got ${v['time-scale']}`,
    )
  }
  const count = int('count', v.count, 1, 1)
  const seed = int('seed', v.seed, 42, 0)
  const loras = (v.lora ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '')
  const out: SimOptions[] = []
  for (let i = 0; i < count; i++) {
    out.push({
      name: `sim-${i}`,
      host: hostAt(v['host-base'] ?? '127.0.0.2', i),
      port: int('port', v.port, 8000, 0),
      model: v.model ?? 'sim-model',
      metricsFormat: format as MetricsFormat,
      seed: seed + i,
      timeScale,
      zeroLatency: v['zero-latency'] === true,
      maxNumSeqs: int('max-num-seqs', v['max-num-seqs'], 16, 1),
      numGpuBlocks: int('num-gpu-blocks', v['num-gpu-blocks'], 2048, 1),
      blockSize: int('block-size', v['block-size'], 16, 1),
      loras,
      maxLoras: int('max-loras', v['max-loras'], 1, 1),
      role: role(v.role),
      ...(v['kv-transfer-ms-per-token'] !== undefined
        ? { kvTransferMsPerToken: num('kv-transfer-ms-per-token', v['kv-transfer-ms-per-token']) }
        : {}),
      prefillInterference: v['prefill-interference'] === true,
    })
  }
  return out
}

function parse(args: readonly string[]) {
  return parseArgs({
    args: [...args],
    strict: true,
    allowPositionals: false,
    options: {
      count: { type: 'string' },
      'host-base': { type: 'string' },
      port: { type: 'string' },
      model: { type: 'string' },
      format: { type: 'string' },
      lora: { type: 'string' },
      'max-loras': { type: 'string' },
      'max-num-seqs': { type: 'string' },
      'num-gpu-blocks': { type: 'string' },
      'block-size': { type: 'string' },
      'time-scale': { type: 'string' },
      'zero-latency': { type: 'boolean' },
      role: { type: 'string' },
      'kv-transfer-ms-per-token': { type: 'string' },
      'prefill-interference': { type: 'boolean' },
      seed: { type: 'string' },
      help: { type: 'boolean' },
    },
  })
}

export async function runSimCommand(args: readonly string[], io: SimCommandIo = {}): Promise<void> {
  const out = io.out ?? ((line: string) => console.log(line))
  const opts = parseSimArgs(args)
  if (opts === 'help') {
    out(simHelp)
    return
  }
  const fleet: Fleet = await startFleet(opts)
  for (const [i, s] of fleet.sims.entries()) {
    const o = opts[i]
    out(`${s.name} ${s.url} format=${o?.metricsFormat ?? '?'} model=${o?.model ?? '?'}`)
  }
  await new Promise<void>((resolve) => {
    const stop = () => {
      process.off('SIGINT', stop)
      process.off('SIGTERM', stop)
      io.signal?.removeEventListener('abort', stop)
      resolve()
    }
    if (io.signal !== undefined) {
      if (io.signal.aborted) return stop()
      io.signal.addEventListener('abort', stop, { once: true })
    }
    process.once('SIGINT', stop)
    process.once('SIGTERM', stop)
  })
  await fleet.close()
}
