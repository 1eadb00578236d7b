-- wrk script: POST a Telegram update to /telegram with the secret header and a fresh update_id
-- per request (telehook's redelivery guard answers a repeated update_id from memory, which would
-- flatter it). Body: fixtures/updates/message_text_private.json, compact as Telegram sends it.
-- Usage: wrk -s post.lua ... -- <first_update_id> <secret>

local template = '{"update_id":%d,"message":{"message_id":41,"from":{"id":111111111,"is_bot":false,'
  .. '"first_name":"Alice","last_name":"Liddell","username":"alice_l","language_code":"en"},'
  .. '"chat":{"id":111111111,"first_name":"Alice","last_name":"Liddell","username":"alice_l",'
  .. '"type":"private"},"date":1732320000,"text":"Do you have salted caramel today?"}}'

local next_id = 1
local secret = "s3cr3t_T0ken-for-tests"

function init(args)
  next_id = tonumber(args[1] or "1")
  secret = args[2] or secret
end

function request()
  next_id = next_id + 1
  return wrk.format("POST", "/telegram", {
    ["Content-Type"] = "application/json",
    ["X-Telegram-Bot-Api-Secret-Token"] = secret,
  }, string.format(template, next_id))
end

function done(summary, latency, requests)
  io.write(string.format("RESULT requests=%d non2xx=%d errors=%d rps=%.0f p50_us=%.0f p99_us=%.0f\n",
    summary.requests, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.requests / (summary.duration / 1e6), latency:percentile(50), latency:percentile(99)))
end
