//! The Lua scripts that make each multi-step change atomic in Redis: an outcome and its
//! acknowledgement, a dead-lettering, a lease renewal. Redis runs a script alone, so no other
//! client sees a step half done, and with AOF the whole script is persisted or none of it.

use std::sync::LazyLock;

use redis::Script;

/// Queues an attempt's job, once: a retry of a call whose answer never came (Redis frozen or
/// slow past the response timeout, then answering everything) returns the entry the first call
/// added instead of adding another.
///
/// The engine's liveness key is renewed in the same step, so a worker never sees a job whose
/// engine's key is missing for want of a renewal (after a Redis restart without persistence,
/// say).
///
/// KEYS: queue stream, the attempt's "queued" mark, the engine's liveness key. ARGV: mark TTL
/// (s), liveness key TTL (s), then the job's fields. Returns the entry id.
pub(crate) static ENQUEUE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
redis.call('SET', KEYS[3], '1', 'EX', ARGV[2])
local id = redis.call('GET', KEYS[2])
if id then return id end
id = redis.call('XADD', KEYS[1], '*', unpack(ARGV, 3))
redis.call('SET', KEYS[2], id, 'EX', ARGV[1])
return id
",
    )
});

/// Records an attempt's outcome, once, and acknowledges its entry.
///
/// KEYS: queue stream, done mark, reply stream. ARGV: group, entry id, consumer, mark TTL (s),
/// reply stream TTL (s), then the reply's fields (none: acknowledge only).
///
/// The first outcome of an attempt sets the done mark and adds the reply; a later one (a
/// redelivered attempt's) changes nothing. The entry is acknowledged and deleted only by the
/// consumer that holds it: a worker whose lease was taken over must not acknowledge the entry
/// another worker now runs (should that one die, the entry would be lost). Returns 1 when this
/// was the first outcome, plus 2 when this consumer held the entry.
pub(crate) static FINISH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local first = false
local kind = redis.call('TYPE', KEYS[3]).ok
if kind == 'stream' or kind == 'none' then
  first = redis.call('SET', KEYS[2], ARGV[3], 'NX', 'EX', ARGV[4])
end
if first and #ARGV > 5 then
  redis.call('XADD', KEYS[3], '*', unpack(ARGV, 6))
  redis.call('EXPIRE', KEYS[3], ARGV[5])
end
local held = 0
local p = redis.pcall('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
if type(p) == 'table' and not p.err and p[1] and p[1][2] == ARGV[3] then
  redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
  redis.call('XDEL', KEYS[1], ARGV[2])
  held = 2
end
if first then return 1 + held end
return held
",
    )
});

/// Moves an entry to the dead-letter stream (with its fields, its id, its delivery count and
/// why), records the attempt as done with the given reply, and acknowledges the entry.
///
/// KEYS: queue stream, dead-letter stream, done mark, reply stream. ARGV: group, entry id,
/// consumer, mark TTL (s), reply stream TTL (s), deliveries, reason, dead-letter stream
/// length cap, then the reply's fields (none: no reply, for an entry that names no engine).
pub(crate) static DEAD_LETTER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local e = redis.call('XRANGE', KEYS[1], ARGV[2], ARGV[2])
local fields = {'source_id', ARGV[2], 'deliveries', ARGV[6], 'reason', ARGV[7]}
if e[1] then
  -- At most 32 of the entry's field pairs (a hostile entry may have thousands).
  for i, v in ipairs(e[1][2]) do
    if i > 64 then break end
    table.insert(fields, v)
  end
  if #fields % 2 == 1 then table.remove(fields) end
end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[8], '*', unpack(fields))
local first = false
local kind = redis.call('TYPE', KEYS[4]).ok
if kind == 'stream' or kind == 'none' then
  first = redis.call('SET', KEYS[3], ARGV[3], 'NX', 'EX', ARGV[4])
end
if first and #ARGV > 8 then
  redis.call('XADD', KEYS[4], '*', unpack(ARGV, 9))
  redis.call('EXPIRE', KEYS[4], ARGV[5])
end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
if first then return 1 end
return 0
",
    )
});

/// Renews a worker's leases and its presence on a queue.
///
/// KEYS: queue stream, the queue's worker set, the queue's worker builds. ARGV: group,
/// consumer, its build id, then the ids of the entries this worker holds. Resets the idle time
/// of each entry the consumer still holds (XCLAIM ... JUSTID, which does not count a delivery)
/// and returns the ids it no longer holds: their leases ran out and another worker took them
/// over.
pub(crate) static HEARTBEAT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
redis.call('ZADD', KEYS[2], tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000), ARGV[2])
redis.call('HSET', KEYS[3], ARGV[2], ARGV[3])
local lost = {}
for i = 4, #ARGV do
  -- pcall: a stream or group Redis lost (restarted without persistence) means lost leases,
  -- not a failed renewal of the others.
  local p = redis.pcall('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if type(p) == 'table' and not p.err and p[1] and p[1][2] == ARGV[2] then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
  else
    table.insert(lost, ARGV[i])
  end
end
return lost
",
    )
});

/// The workers of a queue seen within a time, by Redis's own clock (so that clocks of
/// different machines never matter), and their builds; forgets the others.
///
/// KEYS: the queue's worker set, the queue's worker builds. ARGV: how recent, in milliseconds;
/// the engine's build id. Returns, as text: how many live workers, how many of them are of
/// that build, then the other builds they are of (`unknown`: a worker that names none).
pub(crate) static LIVE_WORKERS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local old = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[1]))
for _, w in ipairs(old) do redis.call('HDEL', KEYS[2], w) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[1]))
local live = redis.call('ZRANGE', KEYS[1], 0, 999)
local matching = 0
local others = {}
for _, w in ipairs(live) do
  local b = redis.call('HGET', KEYS[2], w)
  if b == ARGV[2] then matching = matching + 1 else others[b or 'unknown'] = true end
end
local out = {tostring(redis.call('ZCARD', KEYS[1])), tostring(matching)}
for b, _ in pairs(others) do table.insert(out, b) end
return out
",
    )
});

/// Takes over the jobs of a queue idle for at least a time (their worker's lease ran out, or a
/// worker of another build handed them back) that this worker can run: those of its build, or
/// naming none. A job of another build stays where it is, for a worker of its build. Jobs
/// deleted from the stream are acknowledged (dropped from the pending list).
///
/// KEYS: queue stream. ARGV: group, consumer, minimum idle time (ms), how many to take, this
/// worker's build id, where to start (an XPENDING range start: `-` or `(<id>`), how many
/// pending entries to look at. Returns the next start (`-` at the end), the entries taken and
/// each one's delivery count.
pub(crate) static CLAIM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local pend = redis.call('XPENDING', KEYS[1], ARGV[1], 'IDLE', ARGV[3], ARGV[6], '+', ARGV[7])
local claimed = {}
local deliveries = {}
local last = nil
local full = false
for _, p in ipairs(pend) do
  last = p[1]
  local e = redis.call('XRANGE', KEYS[1], p[1], p[1])
  if not e[1] then
    redis.call('XACK', KEYS[1], ARGV[1], p[1])
  else
    local fields = e[1][2]
    local build = false
    for j = 1, #fields - 1, 2 do
      if fields[j] == 'build' then build = fields[j + 1] break end
    end
    if not build or build == ARGV[5] then
      local c = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], p[1])
      if c[1] then
        table.insert(claimed, c[1])
        table.insert(deliveries, p[4] + 1)
        if #claimed >= tonumber(ARGV[4]) then full = true break end
      end
    end
  end
end
local cursor = '-'
if last and (full or #pend >= tonumber(ARGV[7])) then cursor = '(' .. last end
return {cursor, claimed, deliveries}
",
    )
});

/// Removes a consumer from a queue's group if it holds no job (removing one that does would
/// lose its jobs' pending entries).
///
/// KEYS: queue stream. ARGV: group, consumer. Returns 1 when removed.
pub(crate) static REMOVE_CONSUMER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local p = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2])
if p[1] then return 0 end
redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
return 1
",
    )
});

/// Whether an attempt's entry vanished without an outcome: it is neither in its queue's stream
/// nor marked done (Redis lost it: restarted without persistence, or the stream was deleted).
/// Atomic, so an outcome recorded between two checks cannot look like a loss.
///
/// KEYS: queue stream, done mark. ARGV: entry id. Returns 1 when lost.
pub(crate) static LOST: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
local e = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])
if e[1] then return 0 end
return 1
",
    )
});
