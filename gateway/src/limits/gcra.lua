-- One call of a tenant on a route, counted by GCRA (the generic cell rate algorithm) exactly as
-- the governor crate counts it in one gateway, but in Redis, so that every gateway replica using
-- this Redis shares the quota. Run atomically by Redis (EVALSHA): no two calls interleave.
--
-- KEYS[1]  <prefix>:<route name>:<tid>; holds the theoretical arrival time (TAT) of the
--          tenant's next call, in microseconds of Redis' clock
-- ARGV[1]  the emission interval T: a minute divided by the route's limit, in microseconds
-- ARGV[2]  the tolerance: T * (limit - 1), how far the TAT may run ahead of now, so that a
--          tenant may spend its whole minute's quota at once
--
-- Returns 0 when the call is admitted (and counted), or else the microseconds until a call would
-- be. A refused call writes nothing, so a client that keeps retrying early is not pushed back.
--
-- The time is Redis' own (TIME), so the replicas' clocks need not agree. Calling TIME before a
-- write needs effects replication, the default since Redis 5.
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local time = redis.call('TIME')
-- Microseconds since 1970 are below 2^53: exact in Lua's doubles.
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
-- A tenant never seen, or idle until its key expired, starts from now with a full quota.
local tat = tonumber(redis.call('GET', KEYS[1])) or now
local earliest = tat - tolerance
if now < earliest then
  return earliest - now
end
tat = math.max(tat, now) + interval
-- Once now reaches the TAT the key says no more than a missing one: it expires then, so idle
-- tenants leave nothing behind. ('%.0f': tostring would round to 14 digits.)
redis.call('SET', KEYS[1], string.format('%.0f', tat),
  'PX', math.max(1, math.ceil((tat - now) / 1000)))
return 0
