// Structured operational logs for the operator: JSON lines on stderr. Same shape as the data
// plane's logger, kept separate because operator/ may import only api/.
export type LogLevel = 'debug' | 'info' | 'warn' | 'error'
export type LogFields = Record<string, unknown>
export type Logger = (level: LogLevel, msg: string, fields?: LogFields) => void

const ORDER: Record<LogLevel, number> = { debug: 0, info: 1, warn: 2, error: 3 }

export function stderrLogger(component: string, min: LogLevel = 'info'): Logger {
  return (level, msg, fields) => {
    if (ORDER[level] < ORDER[min]) return
    process.stderr.write(
      `${JSON.stringify({ time: new Date().toISOString(), level, component, msg, ...fields })}\n`,
    )
  }
}

export const silentLogger: Logger = () => {}

/** Collects records in memory (tests assert on what was logged). */
export function memoryLogger(): Logger & {
  records: { level: LogLevel; msg: string; fields: LogFields }[]
} {
  const records: { level: LogLevel; msg: string; fields: LogFields }[] = []
  const fn = ((level: LogLevel, msg: string, fields?: LogFields) => {
    records.push({ level, msg, fields: fields ?? {} })
  }) as Logger & { records: typeof records }
  fn.records = records
  return fn
}

/**
 * Error text for logs. client-node's ApiException message embeds the raw body and every response
 * header; log the status code and the API server's own message instead.
 */
export function errorText(e: unknown): string {
  if (!(e instanceof Error)) return String(e)
  const { code, body } = e as { code?: unknown; body?: unknown }
  if (typeof code === 'number' && body !== undefined) {
    let message: unknown
    try {
      message = (
        typeof body === 'string'
          ? (JSON.parse(body) as { message?: unknown })
          : (body as { message?: unknown })
      )?.message
    } catch {
      message = typeof body === 'string' ? body.slice(0, 300) : undefined
    }
    return `HTTP ${code}: ${typeof message === 'string' ? message : e.message.split('\n')[0]}`
  }
  return e.message
}
