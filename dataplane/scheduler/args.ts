// Typed access to plugin arguments from the snapshot. The API validated them (types, bounds), so
// these readers only guard against a hand-written or newer snapshot: a value of the wrong type
// falls back to the default and an out-of-range number is clamped, rather than failing a request.

import type { SchedulerArgValue } from '../../api/snapshot.js'

type Args = Readonly<Record<string, SchedulerArgValue>>

export function numArg(args: Args, key: string, dflt: number, min: number, max: number): number {
  const v = args[key]
  if (typeof v !== 'number' || !Number.isFinite(v)) return dflt
  return Math.min(max, Math.max(min, v))
}

export function intArg(args: Args, key: string, dflt: number, min: number, max: number): number {
  return Math.round(numArg(args, key, dflt, min, max))
}

export function strArg(args: Args, key: string, dflt: string): string {
  const v = args[key]
  return typeof v === 'string' && v !== '' ? v : dflt
}

export function optStrArg(args: Args, key: string): string | undefined {
  const v = args[key]
  return typeof v === 'string' && v !== '' ? v : undefined
}

export function strListArg(args: Args, key: string, dflt: readonly string[]): readonly string[] {
  const v = args[key]
  return Array.isArray(v) && v.every((x) => typeof x === 'string') ? v : dflt
}

export function numMapArg(args: Args, key: string): ReadonlyMap<string, number> {
  const v = args[key]
  const out = new Map<string, number>()
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return out
  for (const [k, n] of Object.entries(v as Readonly<Record<string, unknown>>)) {
    if (typeof n === 'number' && Number.isFinite(n) && n > 0) out.set(k, n)
  }
  return out
}
