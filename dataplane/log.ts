// Structured operational logs (JSON lines on stderr), separate from the access log on stdout.
export type LogLevel = 'debug' | 'info' | 'warn' | 'error'
export type LogFields = Record<string, unknown>
export type Logger = (level: LogLevel, msg: string, fields?: LogFields) => void

export function stderrLogger(component: string): Logger {
  return (level, msg, fields) => {
    process.stderr.write(
      `${JSON.stringify({ time: new Date().toISOString(), level, component, msg, ...fields })}\n`,
    )
  }
}

export const silentLogger: Logger = () => {}

/** Collects log records in memory (tests and the reload-failure surface). */
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
