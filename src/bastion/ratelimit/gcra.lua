
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local cost = tonumber(ARGV[1])
local reply = {1, now}
for i = 1, #KEYS do
  local tat = tonumber(redis.call('GET', KEYS[i]) or '') or now
  if tat < now then tat = now end
  reply[i + 2] = tat
  if tat + cost * tonumber(ARGV[2 * i]) - tonumber(ARGV[2 * i + 1]) > now then
    reply[1] = 0
  end
end
if reply[1] == 1 and cost > 0 then
  for i = 1, #KEYS do
    local new = reply[i + 2] + cost * tonumber(ARGV[2 * i])
    local ttl = math.max(1, math.ceil((new - now) / 1000))
    redis.call('SET', KEYS[i], string.format('%d', new), 'PX', string.format('%d', ttl))
  end
end
return reply
