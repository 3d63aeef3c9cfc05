// Writes a benchmark's section into docs/benchmarks.md between its own markers (so each
// benchmark owns one section and re-runs replace it) and its raw numbers to docs/bench/<name>.json.
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const DOCS = fileURLToPath(new URL('../../docs/', import.meta.url))

export async function writeSection(name: string, markdown: string, data: unknown): Promise<string> {
  const md = join(DOCS, 'benchmarks.md')
  let text: string
  try {
    text = await readFile(md, 'utf8')
  } catch {
    text =
      '# Benchmarks\n\nNumbers measured on the project machine (2 cores, no GPU); each section is rewritten by its `npm run bench:*` script.\n'
  }
  const start = `<!-- bench:${name}:start -->`
  const end = `<!-- bench:${name}:end -->`
  const block = `${start}\n${markdown.trim()}\n${end}`
  const i = text.indexOf(start)
  const j = text.indexOf(end)
  text =
    i >= 0 && j > i
      ? text.slice(0, i) + block + text.slice(j + end.length)
      : `${text.trimEnd()}\n\n${block}\n`
  await writeFile(md, text)
  const json = join(DOCS, 'bench', `${name}.json`)
  await mkdir(dirname(json), { recursive: true })
  await writeFile(json, `${JSON.stringify(data, null, 2)}\n`)
  return md
}

export function table(
  header: readonly string[],
  rows: readonly (readonly (string | number)[])[],
): string {
  const line = (cells: readonly (string | number)[]) => `| ${cells.join(' | ')} |`
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n')
}

export function fmt(n: number, digits = 3): string {
  return Number.isFinite(n) ? n.toFixed(digits) : 'n/a'
}
