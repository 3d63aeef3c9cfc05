// The two Lua scripts behind the Redis backend. Each runs atomically on the Redis server, over the
// counters of one scope (keys sharing a hash tag, so the call is valid on Redis Cluster), with
// Redis' clock (`TIME`) so replicas with skewed clocks still share one bucket. Arithmetic mirrors
// local.ts exactly. Per key, ARGV holds 5 values: kind (b|w), limit, period_ms, window_end_ms, cost.
//
// A denied reservation writes nothing (Kthena's limiter writes state on denied checks, #1456).
import { createHash } from 'node:crypto'

const PRELUDE = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function level(i, kind, limit, period)
  if kind == 'b' then
    local s = redis.call('HMGET', KEYS[i], 't', 'ts')
    local tokens = tonumber(s[1])
    if tokens == nil then return limit end
    local ts = tonumber(s[2]) or now
    if now > ts then return math.min(limit, tokens + (now - ts) * limit / period) end
    return tokens
  end
  return limit - tonumber(redis.call('GET', KEYS[i]) or '0')
end
local function store(i, kind, limit, period, wend, remaining)
  if kind == 'b' then
    redis.call('HSET', KEYS[i], 't', remaining, 'ts', now)
    redis.call('PEXPIRE', KEYS[i], math.ceil((limit - remaining) * period / limit) + 1000)
  else
    redis.call('SET', KEYS[i], limit - remaining, 'PXAT', wend + 3600000)
  end
end
`

/**
 * KEYS: the counters, then one marker key. On success the marker is set (for MARKER_TTL_MS): if
 * the reply is lost (timeout, connection cut), the gateway can later find out whether this
 * reservation was applied and undo it exactly once. Returns {allowed, then per counter:
 * floor(remaining), reset_ms, retry_ms}.
 */
export const RESERVE_SCRIPT = `${PRELUDE}
local n = #KEYS - 1
local avail = {}
local ok = 1
for i = 1, n do
  local b = (i - 1) * 5
  avail[i] = level(i, ARGV[b + 1], tonumber(ARGV[b + 2]), tonumber(ARGV[b + 3]))
  if tonumber(ARGV[b + 5]) > avail[i] then ok = 0 end
end
local out = { ok }
for i = 1, n do
  local b = (i - 1) * 5
  local kind = ARGV[b + 1]
  local limit = tonumber(ARGV[b + 2])
  local period = tonumber(ARGV[b + 3])
  local wend = tonumber(ARGV[b + 4])
  local cost = tonumber(ARGV[b + 5])
  local remaining = avail[i]
  if ok == 1 then
    remaining = avail[i] - cost
    store(i, kind, limit, period, wend, remaining)
  end
  local reset
  if kind == 'b' then reset = math.ceil((limit - remaining) * period / limit) else reset = wend - now end
  if reset < 0 then reset = 0 end
  local retry = 0
  if ok == 0 and cost > avail[i] then
    if cost > limit then retry = -1
    elseif kind == 'b' then retry = math.ceil((cost - avail[i]) * period / limit)
    else retry = wend - now end
  end
  out[#out + 1] = math.floor(remaining)
  out[#out + 1] = reset
  out[#out + 1] = retry
end
if ok == 1 then redis.call('SET', KEYS[n + 1], 1, 'PX', ARGV[n * 5 + 1]) end
return out
`

/**
 * KEYS: the counters, then one marker key. ARGV after the counters: mode, marker ttl.
 * - mode `once`: apply the costs unless the marker exists, then set it. Settlements and charges
 *   are retried until Redis answers; the marker makes a retry of an applied call a no-op.
 * - mode `undo`: if the marker (of a reservation) exists, delete it and apply the costs (the
 *   negated reservation). Rolls back a reservation whose outcome was unknown, exactly once.
 * Buckets stay within [-limit, limit] (debt capped at one period, as local.ts); windows never go
 * below zero.
 */
export const ADJUST_SCRIPT = `${PRELUDE}
local n = #KEYS - 1
local mode = ARGV[n * 5 + 1]
local marker = KEYS[n + 1]
if mode == 'once' then
  if not redis.call('SET', marker, 1, 'NX', 'PX', ARGV[n * 5 + 2]) then return 0 end
elseif redis.call('DEL', marker) == 0 then
  return 0
end
for i = 1, n do
  local b = (i - 1) * 5
  local kind = ARGV[b + 1]
  local limit = tonumber(ARGV[b + 2])
  local period = tonumber(ARGV[b + 3])
  local wend = tonumber(ARGV[b + 4])
  local delta = tonumber(ARGV[b + 5])
  if kind == 'b' then
    local v = math.min(limit, level(i, kind, limit, period) - delta)
    if v < -limit then v = -limit end
    store(i, kind, limit, period, wend, v)
  elseif wend > now then
    local used = limit - level(i, kind, limit, period) + delta
    if used < 0 then used = 0 end
    store(i, kind, limit, period, wend, limit - used)
  end
end
return 1
`

/** How long markers live: longer than any outage we expect to reconcile after. */
export const MARKER_TTL_MS = 120_000

export function scriptSha(script: string): string {
  return createHash('sha1').update(script).digest('hex')
}
