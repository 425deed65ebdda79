-- klua.replay - `klua replay FILE --scripts DIR` (src/cmd_test.c runs it).
--
-- Feeds the informer events of a `klua run --record` file, in order, to the
-- controllers of DIR's scripts running against klua test's in-memory API
-- (klua.fakeapi): each event makes the recorded object state the stored one
-- and the runtime runs until idle (ctx:now() answers the event's recorded
-- time). The scripts' writes are answered as dry runs (the API computes the
-- result but keeps the recorded state), their ctx:http calls get the
-- recorded answers of the same method and URL in recorded order (else 502:
-- not in the recording). Then, per key, the writes and HTTP calls made now
-- are compared with the recorded ones: unchanged lines start "  ", recorded
-- only "- ", made now only "+ ". Bodies are compared as JSON with sorted keys.
local json = require "klua.json"
local fakeapi = require "klua.fakeapi"

local M = {}

-- JSON with sorted keys, for comparing bodies.
local function canon(v)
  if type(v) == "table" then
    local n = #v
    local is_arr = getmetatable(v) == getmetatable(json.array({})) or (n > 0 and next(v, n) == nil)
    local parts = {}
    if is_arr then
      for i = 1, n do parts[i] = canon(v[i]) end
      return "[" .. table.concat(parts, ",") .. "]"
    end
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = tostring(k) end
    table.sort(keys)
    for _, k in ipairs(keys) do parts[#parts + 1] = json.encode(k) .. ":" .. canon(v[k]) end
    return "{" .. table.concat(parts, ",") .. "}"
  end
  if v == nil then return "null" end
  return json.encode(v)
end

local function body_text(b)
  if type(b) == "string" then
    local ok, v = pcall(json.decode, b)
    if ok and type(v) == "table" then return canon(v) end
    return b == "" and "" or json.encode(b)
  end
  if b == nil then return "" end
  return canon(b)
end

local function line_of(a)
  if a.url then
    return string.format("HTTP %s %s %s -> %s", a.method, a.url, body_text(a.body), tostring(a.code))
  end
  local target = (a.namespace ~= "" and a.namespace .. "/" or "") .. (a.name or "")
  if a.subresource and a.subresource ~= "" then target = target .. "/" .. a.subresource end
  return string.format("%s %s %s %s", a.method, a.kind, target, body_text(a.body))
end

-- The longest common subsequence diff of two lists of lines.
local function diff(old, new)
  local n, m = #old, #new
  local L = {}
  for i = 0, n do L[i] = {} for j = 0, m do L[i][j] = 0 end end
  for i = n - 1, 0, -1 do
    for j = m - 1, 0, -1 do
      if old[i + 1] == new[j + 1] then L[i][j] = L[i + 1][j + 1] + 1
      else L[i][j] = math.max(L[i + 1][j], L[i][j + 1]) end
    end
  end
  local out, i, j, changed = {}, 0, 0, false
  while i < n or j < m do
    if i < n and j < m and old[i + 1] == new[j + 1] then
      out[#out + 1] = "  " .. old[i + 1]; i = i + 1; j = j + 1
    elseif i < n and (j == m or L[i + 1][j] >= L[i][j + 1]) then
      out[#out + 1] = "- " .. old[i + 1]; i = i + 1; changed = true
    else
      out[#out + 1] = "+ " .. new[j + 1]; j = j + 1; changed = true
    end
  end
  return out, changed
end

local function key_of(a)
  local ns, name = a.namespace_of_key or "", a.name_of_key or ""
  return (ns ~= "" and ns .. "/" or "") .. name
end

function M.main(host, file)
  local fp, err = io.open(file, "r")
  if not fp then error(err, 0) end
  local records = {}
  local n = 0
  for line in fp:lines() do
    n = n + 1
    if line:match("%S") then
      local ok, rec = pcall(json.decode, line)
      if not ok or type(rec) ~= "table" then
        fp:close()
        error(string.format("%s:%d: not a JSON object", file, n), 0)
      end
      records[#records + 1] = rec
    end
  end
  fp:close()

  local fake = fakeapi.new(host.emit, host.now)
  local recorded, now, answers = {}, {}, {}
  local order, controllers = {}, {}
  local function note(key, controller)
    if not recorded[key] then
      recorded[key], now[key] = {}, {}
      order[#order + 1] = key
    end
    controllers[key] = controllers[key] or controller
  end
  local nevents = 0
  for _, rec in ipairs(records) do
    if rec.t == "resource" then
      local g, v = rec.apiVersion:match("^(.+)/(.+)$")
      fake:add_resource({ group = g or "", version = v or rec.apiVersion, plural = rec.plural,
                          kind = rec.kind, namespaced = rec.namespaced, status = rec.status })
    elseif rec.t == "write" or rec.t == "http" then
      note(rec.key, rec.controller)
      table.insert(recorded[rec.key], line_of(rec))
      if rec.t == "http" then
        local k = rec.method .. " " .. rec.url
        answers[k] = answers[k] or {}
        table.insert(answers[k], rec)
      end
    elseif rec.t == "event" then
      nevents = nevents + 1
    end
  end

  local unanswered = {}
  local function http(method, url, headers, body)
    local q = answers[method .. " " .. url]
    if not q or #q == 0 then
      unanswered[#unanswered + 1] = method .. " " .. url
      return 502, {}, "klua replay: no recorded answer for " .. method .. " " .. url
    end
    local rec = table.remove(q, 1)
    if #q == 0 then q[1] = rec end -- asked more often than recorded: the last answer again
    return rec.code, rec.headers or {}, rec.response or ""
  end
  local function api(method, target, ctype, body, id)
    if method ~= "GET" then
      target = target .. (target:find("?", 1, true) and "&" or "?") .. "dryRun=All"
    end
    return fake:handle(method, target, ctype, body, id)
  end
  host.set_handlers(api, http, function(id) fake:closed(id) end)
  host.set_tap(function(a)
    local key = key_of(a)
    note(key, a.controller)
    table.insert(now[key], line_of(a))
  end)
  local ok, serr = host.start({})
  if not ok then error(serr, 0) end
  for _, rec in ipairs(records) do
    if rec.t == "event" then
      if rec.ts then host.set_now(rec.ts) end
      local put_ok, perr = fake:put(rec.apiVersion, rec.kind, rec.type, rec.object)
      if not put_ok then error(perr, 0) end
      local run_ok, rerr = host.run()
      if not run_ok then error(rerr, 0) end
    end
  end
  host.stop()

  table.sort(order)
  local changed_keys = 0
  print(string.format("replay of %s: %d events, %d keys", file, nevents, #order))
  for _, key in ipairs(order) do
    local lines, changed = diff(recorded[key], now[key])
    if changed then
      changed_keys = changed_keys + 1
      print(string.format("%s (%s): changed", key, controllers[key] or "?"))
      for _, l in ipairs(lines) do print("  " .. l) end
    else
      print(string.format("%s (%s): unchanged, %d writes and calls", key, controllers[key] or "?", #lines))
    end
  end
  for _, u in ipairs(unanswered) do print("note: no recorded answer for " .. u .. " (answered 502)") end
  print(string.format("%d keys: %d changed, %d unchanged", #order, changed_keys, #order - changed_keys))
  return changed_keys > 0 and 1 or 0
end

return M
