-- wrk script for the userservice REST API: `wrk ... -s users.lua URL -- OP IDS_FILE RUN_TAG [TOKEN_FILE [GET_PATH]]`
-- TOKEN_FILE: a bearer token sent with every request ("-": none); GET_PATH: where get finds a user by id
-- (default /v1/users/; the peer's admin read is /users/).
-- OP: get (by random seeded id), list (country filter, page of 50), create (unique users), patch (random id),
-- search (email prefix, page of 50: the prefix is bench/stack.py's SEARCH_EMAIL_PREFIX),
-- verify (verifyPassword of a random seeded user with the right password; IDS_FILE then holds logins),
-- scim_get (SCIM get by random seeded id), scim_filter (SCIM filter userName eq "seed<i>" of a random seeded user);
-- kratos_list (Ory Kratos's admin list, page of 50) and kratos_create (its admin create with a password):
-- the Go peer's counterparts of list and create (its get is get with GET_PATH /admin/identities/).
-- done() prints one JSON line, prefixed with BENCH, that bench/http_load.py reads.

local threads = {}
local next_id = 0

function setup(thread)
  thread:set("tid", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

local op, ids, tag, n = "get", {}, "t", 0
local get_path = "/v1/users/"
local auth = {}

function init(args)
  op = args[1]
  tag = args[3] or "t"
  for line in io.lines(args[2]) do
    ids[#ids + 1] = line
  end
  if args[4] and args[4] ~= "-" then
    local f = assert(io.open(args[4]))
    auth = { Authorization = "Bearer " .. f:read("*l") }
    f:close()
  end
  get_path = args[5] or get_path
  math.randomseed(os.time() * 1000 + tid)
end

local function with_auth(headers)
  local out = {}
  for k, v in pairs(auth) do out[k] = v end
  for k, v in pairs(headers or {}) do out[k] = v end
  return out
end

local json_headers = { ["Content-Type"] = "application/json" }
local patch_headers = { ["Content-Type"] = "application/merge-patch+json" }

function request()
  n = n + 1
  if op == "get" then
    return wrk.format("GET", get_path .. ids[math.random(#ids)], auth)
  elseif op == "list" then
    return wrk.format("GET", "/v1/users?country=GB&page_size=50", auth)
  elseif op == "create" then
    local nick = "w" .. tag .. "t" .. tid .. "n" .. n
    local body = '{"first_name":"Ada","last_name":"Lovelace","nickname":"' .. nick ..
      '","email":"' .. nick .. '@example.com","country":"GB","password":"correct horse battery staple"}'
    return wrk.format("POST", "/v1/users", with_auth(json_headers), body)
  elseif op == "search" then
    return wrk.format("GET", "/v1/users?email_prefix=seed12&page_size=50", auth)
  elseif op == "patch" then
    return wrk.format("PATCH", "/v1/users/" .. ids[math.random(#ids)], with_auth(patch_headers),
      '{"first_name":"P' .. tid .. "x" .. n .. '"}')
  elseif op == "scim_get" then
    return wrk.format("GET", "/scim/v2/Users/" .. ids[math.random(#ids)], auth)
  elseif op == "scim_filter" then
    -- bench/stack.py's seed() nicknames user i "seed<i>"
    return wrk.format("GET", "/scim/v2/Users?filter=userName%20eq%20%22seed" .. (math.random(#ids) - 1) .. "%22", auth)
  elseif op == "kratos_list" then
    return wrk.format("GET", "/admin/identities?page_size=50", auth)
  elseif op == "kratos_create" then
    local nick = "k" .. tag .. "t" .. tid .. "n" .. n
    local body = '{"schema_id":"user","traits":{"first_name":"Ada","last_name":"Lovelace","nickname":"' .. nick ..
      '","email":"' .. nick .. '@example.com","country":"GB"},' ..
      '"credentials":{"password":{"config":{"password":"correct horse battery staple"}}}}'
    return wrk.format("POST", "/admin/identities", with_auth(json_headers), body)
  elseif op == "verify" then
    return wrk.format("POST", "/v1/users:verifyPassword", with_auth(json_headers),
      '{"login":"' .. ids[math.random(#ids)] .. '","password":"correct horse battery staple"}')
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH{"requests":%d,"duration_us":%d,"errors":%d,"status_errors":%d,"p50_us":%d,"p99_us":%d}\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99)))
end
