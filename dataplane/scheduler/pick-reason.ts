// Which plugin decided a pick, for the `infer_gateway_scheduler_picks_total` counter: the plugin
// whose weighted score contributed most to the winner's lead over the runner-up. `single` when
// there was one candidate, `tie` when no plugin separated the two (the rendezvous tie-break did).

/**
 * `rows` holds each scoring plugin's weighted score per candidate (row j at j * n); `names[j]`
 * is row j's plugin, `total` the summed scores, `winner` the index picked.
 */
export function winningPlugin(
  names: readonly string[],
  rows: Float64Array,
  n: number,
  total: Float64Array,
  winner: number,
): string {
  if (n <= 1) return 'single'
  let second = -1
  for (let i = 0; i < n; i++) {
    if (i === winner) continue
    if (second < 0 || (total[i] as number) > (total[second] as number)) second = i
  }
  let best = 'tie'
  let lead = 1e-9
  for (let j = 0; j < names.length; j++) {
    const d = (rows[j * n + winner] as number) - (rows[j * n + second] as number)
    if (d > lead) {
      lead = d
      best = names[j] as string
    }
  }
  return best
}
