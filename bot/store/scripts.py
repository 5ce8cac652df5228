"""Lua scripts of the store: each one is a single round trip and atomic.

The per-thread keys passed to one script always share the thread's hash tag.
Scripts that also get the global keys (index, ids, user set) receive them
only on a single Redis; on Cluster the store updates those in a second step.
"""

# KEYS: lock, [thread], [seen]. ARGV: token, lock_ttl_ms, claim(1|0), pending_ttl_ms
# The one lock of every thread (and of the janitor's lease, which passes the lock key alone).
# With a claim, the message's marker becomes 'p:<token>' until answered, then 'done'. Idempotent for
# one token, so a client retry after a lost reply cannot mistake our own claim for a duplicate.
# Returns {'dup'}, {'busy'} or {'ok', thread_id, backend, summary, context mark}.
ACQUIRE = """
if ARGV[3] == '1' and redis.call('GET', KEYS[3]) ~= 'p:' .. ARGV[1] then
  if not redis.call('SET', KEYS[3], 'p:' .. ARGV[1], 'NX', 'PX', ARGV[4]) then
    return {'dup'}
  end
end
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
    return {'busy'}
  end
end
if KEYS[2] then
  local v = redis.call('HMGET', KEYS[2], 'thread_id', 'backend', 'summary', 'ctx')
  return {'ok', v[1] or '', v[2] or '', v[3] or '', v[4] or ''}
end
return {'ok', '', '', '', ''}
"""

# KEYS: thread, turns, lock, seen, fold, [index, index_ids, user, daily_tokens, [joined]]
# ARGV: token, thread_id, backend, now, ttl_ms, dedupe_ttl_ms, max_items, key_id,
#       input_tokens, output_tokens, n_turns, fold(1|0), turn_1 .. turn_n,
#       [mark, reseeded, item ids, field_1 .. field_m]
# Records the turn only while the lock is still ours: a retried call, or one whose lock
# lapsed while a forget or the janitor ran, must not write the mapping back. With fold, kept
# items that leave the window move to the fold list (memory folds them into the summary).
# The answer's shared record (bot/store/shared.py: the context mark, who said what) comes first, in the
# same step: with the lock, or once it lapsed while the thread still exists (erasure must find a speaker's
# words even in a turn that lapsed); on a single Redis its joined platform thread (KEYS[10]) too.
# Returns {recorded(1|0), items waiting in the fold list, shared record written(1|0)}.
FINISH = """
redis.call('SET', KEYS[4], 'done', 'PX', ARGV[6])
local n = tonumber(ARGV[11])
local at = 13 + n
local ours = redis.call('GET', KEYS[3]) == ARGV[1]
local shared = 0
if ARGV[at] and (ours or redis.call('HEXISTS', KEYS[1], 'thread_id') == 1) then
  shared = 1
  if ARGV[at] ~= '' then redis.call('HSET', KEYS[1], 'ctx', ARGV[at]) end
  if ARGV[at + 1] == '1' then redis.call('HSET', KEYS[1], 'reseeded', '1') end
  if ARGV[at + 2] ~= '' then
    for i = at + 3, #ARGV do
      local cur = redis.call('HGET', KEYS[1], ARGV[i])
      if cur and cur ~= '' then
        redis.call('HSET', KEYS[1], ARGV[i], cur .. ' ' .. ARGV[at + 2])
      else
        redis.call('HSET', KEYS[1], ARGV[i], ARGV[at + 2])
      end
    end
  end
  if KEYS[10] then redis.call('SET', KEYS[10], '1', 'PX', ARGV[5]) end
end
if not ours then return {0, 0, shared} end
redis.call('DEL', KEYS[3])
local now = ARGV[4]
redis.call('HSET', KEYS[1], 'thread_id', ARGV[2], 'backend', ARGV[3], 'last_active', now)
redis.call('HSETNX', KEYS[1], 'created', now)
if tonumber(ARGV[9]) > 0 then redis.call('HINCRBY', KEYS[1], 'input_tokens', ARGV[9]) end
if tonumber(ARGV[10]) > 0 then redis.call('HINCRBY', KEYS[1], 'output_tokens', ARGV[10]) end
redis.call('PEXPIRE', KEYS[1], ARGV[5])
local max = tonumber(ARGV[7])
if max == 0 then
  redis.call('DEL', KEYS[2])
elseif n > 0 then
  for i = 1, n do redis.call('RPUSH', KEYS[2], ARGV[12 + i]) end
  local extra = redis.call('LLEN', KEYS[2]) - max
  if extra > 0 and ARGV[12] == '1' then
    redis.call('RPUSH', KEYS[5], unpack(redis.call('LRANGE', KEYS[2], 0, extra - 1)))
    redis.call('LTRIM', KEYS[5], -200, -1)
  end
  redis.call('LTRIM', KEYS[2], -max, -1)
end
redis.call('PEXPIRE', KEYS[2], ARGV[5])
local folding = redis.call('LLEN', KEYS[5])
if folding > 0 then redis.call('PEXPIRE', KEYS[5], ARGV[5]) end
if KEYS[6] then
  redis.call('ZADD', KEYS[6], now, ARGV[8])
  redis.call('HSET', KEYS[7], ARGV[8], ARGV[3] .. ' ' .. ARGV[2])
  redis.call('SADD', KEYS[8], ARGV[8])
  local used = tonumber(ARGV[9]) + tonumber(ARGV[10])
  if used > 0 then
    redis.call('INCRBY', KEYS[9], used)
    redis.call('EXPIRE', KEYS[9], 172800)
  end
end
return {1, folding, shared}
"""

# KEYS: thread, fold. ARGV: summary, folded items, thread_id, previous summary, last folded item.
# The summary replaces the old one and the folded items leave the fold list, in one step, and only
# while nothing changed since the fold read them: the same thread, the same summary, the same items
# (a fold that finishes after /forget, or after one speaker's erasure, writes nothing back).
SAVE_SUMMARY = """
if redis.call('HGET', KEYS[1], 'thread_id') ~= ARGV[3] then return 0 end
if (redis.call('HGET', KEYS[1], 'summary') or '') ~= ARGV[4] then return 0 end
if redis.call('LINDEX', KEYS[2], tonumber(ARGV[2]) - 1) ~= ARGV[5] then return 0 end
redis.call('HSET', KEYS[1], 'summary', ARGV[1])
redis.call('LTRIM', KEYS[2], tonumber(ARGV[2]), -1)
return 1
"""

# KEYS: thread, turns, [index, index_ids, user, tombstones].
# ARGV: thread_id, backend, now, ttl_ms, key_id, gone_thread_id ('' = none)
# A new thread for a key. If the durable index still names an older thread (say its mapping
# expired before the janitor came by), that one is queued for remote deletion, never orphaned,
# unless it is the one the provider just said is gone: nothing is left to delete there.
SAVE = """
redis.call('HSET', KEYS[1], 'thread_id', ARGV[1], 'backend', ARGV[2], 'created', ARGV[3], 'last_active', ARGV[3])
redis.call('HDEL', KEYS[1], 'input_tokens', 'output_tokens')
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
if KEYS[3] then
  local entry = ARGV[2] .. ' ' .. ARGV[1]
  local old = redis.call('HGET', KEYS[4], ARGV[5])
  if old and old ~= entry then
    local sp = string.find(old, ' ', 1, true)
    if sp and string.sub(old, sp + 1) ~= ARGV[6] then
      redis.call('HSET', KEYS[6], string.sub(old, sp + 1), string.sub(old, 1, sp - 1) .. ' ' .. ARGV[5])
    end
  end
  redis.call('ZADD', KEYS[3], ARGV[3], ARGV[5])
  redis.call('HSET', KEYS[4], ARGV[5], entry)
  redis.call('SADD', KEYS[5], ARGV[5])
end
return 1
"""

# KEYS: lock, [seen]. ARGV: token, mode(done|drop|keep), dedupe_ttl_ms
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
if not KEYS[2] then return 1 end
if ARGV[2] == 'done' then
  redis.call('SET', KEYS[2], 'done', 'PX', ARGV[3])
elseif ARGV[2] == 'drop' then
  if redis.call('GET', KEYS[2]) == 'p:' .. ARGV[1] then redis.call('DEL', KEYS[2]) end
end
return 1
"""

# KEYS: lock, [seen]. ARGV: token, lock_ttl_ms, pending_ttl_ms. 1 while the lock is still ours.
RENEW = """
local ok = 0
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  ok = 1
end
if KEYS[2] and redis.call('GET', KEYS[2]) == 'p:' .. ARGV[1] then
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
end
return ok
"""

# KEYS: thread, turns, fold, [index, index_ids, user]. ARGV: key_id, expected_thread_id ('' = any)
# Mapping, kept turns, memory (the summary lives in the thread hash) and index entries go together.
# Returns 0 when the mapping now points at another thread (someone started a new one).
DELETE_LOCAL = """
local cur = redis.call('HGET', KEYS[1], 'thread_id')
if ARGV[2] ~= '' and cur and cur ~= ARGV[2] then return 0 end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
if KEYS[4] then
  local entry = redis.call('HGET', KEYS[5], ARGV[1])
  if ARGV[2] == '' or not entry or string.sub(entry, -string.len(ARGV[2])) == ARGV[2] then
    redis.call('ZREM', KEYS[4], ARGV[1])
    redis.call('HDEL', KEYS[5], ARGV[1])
    redis.call('SREM', KEYS[6], ARGV[1])
  end
end
return 1
"""

# KEYS: rate counter, rate notice, daily tokens, budget notice (one user's hash tag).
# ARGV: rate limit (0 = off), window_ms, daily budget (0 = off), notice_ttl_ms.
# Returns {verdict, what}: verdict 0 = admitted, 1 = over (tell the user once), 2 = over (already told);
# what = 'rate' or 'budget'.
ADMIT = """
if tonumber(ARGV[1]) > 0 then
  local n = redis.call('INCR', KEYS[1])
  if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
  if n > tonumber(ARGV[1]) then
    if redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[2]) then return {1, 'rate'} end
    return {2, 'rate'}
  end
end
if tonumber(ARGV[3]) > 0 then
  local used = tonumber(redis.call('GET', KEYS[3]) or '0')
  if used >= tonumber(ARGV[3]) then
    if redis.call('SET', KEYS[4], '1', 'NX', 'PX', ARGV[4]) then return {1, 'budget'} end
    return {2, 'budget'}
  end
end
return {0, ''}
"""
