// A fixed piece of work timed beside a measured one, to tell the machine's tail from the code's.
// On a shared virtual machine (this one: 2 vCPUs) a computation that does exactly the same thing
// every call still has a wide tail: interrupts, the hypervisor taking the core (steal), frequency
// changes. Timed alone, an arithmetic loop over an L1-resident array that takes 49 µs at p50 took
// 107-125 µs at p99 here. A decision's p99 against a budget means little without that
// reference, so the benches time the loop right after each measured call, sized to the measured
// call's median, and print both tails side by side.

/** The loop's data: 32 KiB of doubles, resident in L1/L2 after the first pass. */
const DATA = Float64Array.from({ length: 4096 }, (_, i) => (i % 97) * 1.25)

/**
 * `rounds` passes of a multiply-add over DATA: the same instructions and memory every call, no
 * allocation (nothing for the GC to do). Returns the sum so the work cannot be dropped.
 */
export function fixedWork(rounds: number): number {
  let s = 0
  for (let k = 1; k <= rounds; k++) {
    const f = k * 0.5
    for (let i = 0; i < DATA.length; i++) s += (DATA[i] as number) * f
  }
  return s
}

/**
 * Rounds of fixedWork whose median time is closest to `targetUs`, from `perRoundUs` (the measured
 * median µs of one round): at least 1.
 */
export function roundsFor(targetUs: number, perRoundUs: number): number {
  if (!(perRoundUs > 0) || !Number.isFinite(targetUs)) return 1
  return Math.max(1, Math.round(targetUs / perRoundUs))
}

/**
 * The median µs of one round of fixedWork on this machine now (`samples` timings of `probe`
 * rounds each, after a warm-up so the loop is optimised). `clock` is in ms (performance.now).
 */
export function perRoundUs(clock: () => number = () => performance.now(), samples = 200): number {
  const probe = 8
  let sink = 0
  for (let i = 0; i < 50; i++) sink += fixedWork(probe)
  const times: number[] = []
  for (let i = 0; i < samples; i++) {
    const t0 = clock()
    sink += fixedWork(probe)
    times.push(((clock() - t0) * 1000) / probe)
  }
  times.sort((a, b) => a - b)
  // Used, so the loop's result is live.
  if (Number.isNaN(sink)) throw new Error('fixedWork returned NaN')
  return times[Math.floor(times.length / 2)] as number
}
