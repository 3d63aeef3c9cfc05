// `npm start`: four simulated engines (vLLM ×2 — one serving a LoRA adapter —, SGLang, TGI) and
// the gateway in standalone mode on :8080 with the example config in examples/demo/. Prints
// copy-paste examples and stops everything on Ctrl-C.
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { intArg, untilSignal } from '../dataplane/command.js'
import { startGateway } from '../dataplane/gateway.js'
import { stderrLogger } from '../dataplane/log.js'
import { type SimOptions, startFleet } from './sim/server.js'

export const demoHelp = `Usage: infer-gateway demo [--port 8080] [--host 127.0.0.1] [--time-scale 0.5]

Starts 4 simulated engines on 127.0.0.2-5:8000 and the gateway on --port with examples/demo/*.yaml.
Edit those files while it runs: the gateway hot-reloads them. Ctrl-C stops everything.
`

const LLAMA = 'meta-llama/Llama-3.1-8B-Instruct'
const QWEN = 'Qwen/Qwen2.5-7B-Instruct'

export async function runDemoCommand(args: readonly string[]): Promise<void> {
  const { values } = parseArgs({
    args: [...args],
    options: {
      port: { type: 'string', default: '8080' },
      host: { type: 'string', default: '127.0.0.1' },
      'time-scale': { type: 'string', default: '0.5' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  })
  if (values.help) {
    process.stdout.write(demoHelp)
    return
  }
  const timeScale = Number(values['time-scale'])
  const base = { port: 8000, timeScale, maxNumSeqs: 8 } as const
  const sims: SimOptions[] = [
    {
      ...base,
      name: 'sim-0',
      host: '127.0.0.2',
      model: LLAMA,
      metricsFormat: 'vllm',
      loras: ['sql-lora'],
      maxLoras: 2,
      seed: 1,
    },
    { ...base, name: 'sim-1', host: '127.0.0.3', model: LLAMA, metricsFormat: 'vllm', seed: 2 },
    { ...base, name: 'sim-2', host: '127.0.0.4', model: LLAMA, metricsFormat: 'sglang', seed: 3 },
    { ...base, name: 'sim-3', host: '127.0.0.5', model: QWEN, metricsFormat: 'tgi', seed: 4 },
  ]
  const fleet = await startFleet(sims)
  for (const s of fleet.sims)
    process.stdout.write(
      `engine ${s.name} (${sims.find((o) => o.name === s.name)?.metricsFormat}) on ${s.url}\n`,
    )
  const configDir = fileURLToPath(new URL('../examples/demo/', import.meta.url))
  let gw: Awaited<ReturnType<typeof startGateway>>
  try {
    gw = await startGateway({
      config: { kind: 'manifests', paths: [configDir] },
      host: values.host,
      port: intArg('port', values.port),
      accessLog: process.stdout,
      log: stderrLogger('dataplane'),
      debugEndpoints: true,
    })
  } catch (e) {
    await fleet.close()
    throw e
  }
  const url = `http://${values.host === '0.0.0.0' ? '127.0.0.1' : values.host}:${gw.port}`
  process.stdout.write(examples(url, configDir))
  await untilSignal()
  process.stdout.write('\nstopping…\n')
  await gw.shutdown({ drainDelayMs: 0, deadlineMs: 5000 })
  await fleet.close()
}

function examples(url: string, configDir: string): string {
  return `
Infer Gateway demo is up on ${url}  (config: ${configDir}, hot-reloaded)

  Models: llama-3.1-8b (90% vLLM pool / 10% SGLang canary), sql-lora (LoRA on sim-0), qwen-2.5-7b (TGI)

  curl ${url}/v1/models
  curl ${url}/v1/chat/completions -H 'content-type: application/json' \\
    -d '{"model":"llama-3.1-8b","messages":[{"role":"user","content":"Hello!"}],"max_tokens":20}'
  curl -N ${url}/v1/chat/completions -H 'content-type: application/json' \\
    -d '{"model":"qwen-2.5-7b","stream":true,"messages":[{"role":"user","content":"Stream please"}]}'
  curl ${url}/v1/completions -H 'content-type: application/json' -d '{"model":"sql-lora","prompt":"SELECT"}'
  curl ${url}/v1/embeddings -H 'content-type: application/json' -d '{"model":"llama-3.1-8b","input":"hi"}'
  curl ${url}/metrics

  # OpenAI SDK (npm i openai), node --input-type=module:
  import OpenAI from 'openai'
  const client = new OpenAI({ baseURL: '${url}/v1', apiKey: 'unused' })
  const r = await client.chat.completions.create({ model: 'llama-3.1-8b', messages: [{ role: 'user', content: 'Hi' }] })
  console.log(r.choices[0].message.content)

Ctrl-C stops the gateway and the engines.
`
}
