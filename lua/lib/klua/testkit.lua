-- klua.testkit - `klua test`: describe/it/assert, and `kt`, the handle a spec
-- drives the real runtime with.
--
-- src/cmd_test.c runs this module in a trusted Lua state (not the script
-- sandbox) and hands it `host`, the C side: start/stop the runtime (the
-- scripts' controllers, informers, workqueue, sandbox and ctx, all real)
-- against the in-memory API (klua.fakeapi, served over HTTP on 127.0.0.1)
-- or the real cluster (--cluster), synchronous API requests, run-until-idle,
-- the controllable clock, and the HTTP stand-in (every ctx:http request
-- reaches it as an HTTP proxy; one that no expectation or stand-in handler
-- takes fails the spec).
--
-- Each `it` gets a fresh runtime and a fresh API (in-memory: a new store;
-- --cluster: a new namespace, deleted afterwards). Output: one line per
-- failing test with the spec's file:line, then "N passed, N failed".
local json = require "klua.json"
local fakeapi = require "klua.fakeapi"

local M = {}

-- ---- assertions (a busted/luassert subset) ----

local function fmt(v)
  if type(v) == "string" then return string.format("%q", v) end
  if type(v) == "table" then
    local ok, s = pcall(json.encode, v)
    if ok then return s end
  end
  return tostring(v)
end

local function deep_equal(a, b)
  if type(a) ~= type(b) then return false end
  if type(a) ~= "table" then return a == b end
  for k, v in pairs(a) do if not deep_equal(v, b[k]) then return false end end
  for k in pairs(b) do if a[k] == nil then return false end end
  return true
end

local function fail(msg) error({ kt_failure = msg }, 3) end

local assert_t = {}
function assert_t.equal(expected, actual, msg)
  if expected ~= actual then
    fail((msg and msg .. ": " or "") .. "expected " .. fmt(expected) .. ", got " .. fmt(actual))
  end
end
function assert_t.same(expected, actual, msg)
  if not deep_equal(expected, actual) then
    fail((msg and msg .. ": " or "") .. "expected " .. fmt(expected) .. ", got " .. fmt(actual))
  end
end
function assert_t.truthy(v, msg) if not v then fail(msg or ("expected a true value, got " .. fmt(v))) end end
function assert_t.falsy(v, msg) if v then fail(msg or ("expected a false value, got " .. fmt(v))) end end
function assert_t.is_true(v, msg) if v ~= true then fail(msg or ("expected true, got " .. fmt(v))) end end
function assert_t.is_false(v, msg) if v ~= false then fail(msg or ("expected false, got " .. fmt(v))) end end
function assert_t.is_nil(v, msg) if v ~= nil then fail(msg or ("expected nil, got " .. fmt(v))) end end
function assert_t.not_nil(v, msg) if v == nil then fail(msg or "expected a value, got nil") end end
function assert_t.matches(pattern, s, msg)
  if type(s) ~= "string" or not s:find(pattern) then
    fail((msg and msg .. ": " or "") .. fmt(s) .. " does not match " .. fmt(pattern))
  end
end
function assert_t.has_error(fn, pattern)
  local ok, err = pcall(fn)
  if ok then fail("expected an error") end
  if pattern and not tostring(err):find(pattern, 1, true) then
    fail("error " .. fmt(tostring(err)) .. " does not contain " .. fmt(pattern))
  end
end
assert_t.is_not_nil = assert_t.not_nil
assert_t.are = assert_t
assert_t.is = assert_t
assert_t.error = assert_t.has_error
local assert_mt = {
  __call = function(_, v, msg, ...)
    if not v then fail(msg or "assertion failed") end
    return v, msg, ...
  end,
}
setmetatable(assert_t, assert_mt)

-- ---- the test tree ----

local function new_tree(file)
  local root = { name = nil, children = {}, before = {}, after = {}, file = file }
  local cur = root
  local env = {}
  function env.describe(name, fn)
    local node = { name = name, children = {}, before = {}, after = {}, parent = cur }
    table.insert(cur.children, node)
    local saved = cur
    cur = node
    fn()
    cur = saved
  end
  function env.it(name, fn)
    local info = debug.getinfo(2, "l")
    table.insert(cur.children, { name = name, fn = fn, parent = cur, line = info.currentline })
  end
  function env.pending(name) table.insert(cur.children, { name = name, pending = true, parent = cur }) end
  function env.before_each(fn) table.insert(cur.before, fn) end
  function env.after_each(fn) table.insert(cur.after, fn) end
  env.context = env.describe
  env.assert = assert_t
  return root, env
end

-- ---- kt: what a spec drives ----

local function new_kt(host, opts, file)
  local kt = { namespace = opts.namespace, cluster = opts.cluster, http = {}, api = {} }
  local expects, handlers, calls, problems, faults = {}, {}, {}, {}, {}
  kt.http.calls = calls
  local resources = {}

  local function resolve(obj_or_ref)
    local av, kind = obj_or_ref.apiVersion, obj_or_ref.kind
    if type(av) ~= "string" or type(kind) ~= "string" then
      error("kt: an object or reference needs apiVersion and kind", 3)
    end
    local k = av .. "/" .. kind
    if not resources[k] then
      local r, err = host.resolve(av, kind)
      if not r then error("kt: " .. err, 3) end
      resources[k] = r
    end
    return resources[k]
  end

  local function path_of(r, ns, name, sub)
    local p = r.group == "" and ("/api/" .. r.version) or ("/apis/" .. r.group .. "/" .. r.version)
    if r.namespaced and ns then p = p .. "/namespaces/" .. ns end
    p = p .. "/" .. r.plural
    if name then p = p .. "/" .. name end
    if sub then p = p .. "/" .. sub end
    return p
  end

  local function call(method, path, ctype, body)
    local code, text = host.request(method, path, ctype, body)
    local ok, doc = pcall(json.decode, text ~= "" and text or "null")
    if not ok then doc = nil end
    if code >= 200 and code < 300 then return doc end
    local e = type(doc) == "table" and doc or {}
    local err = setmetatable({ code = code, reason = e.reason or "", message = e.message or text },
      { __tostring = function(x) return x.reason .. ": " .. x.message .. " (" .. x.code .. ")" end })
    return nil, err
  end

  local function ns_of(r, obj_ns)
    if not r.namespaced then return nil end
    return obj_ns or kt.namespace
  end

  --- Create obj (its namespace defaults to kt.namespace); raises on failure.
  function kt.create(obj)
    local r = resolve(obj)
    obj.metadata = obj.metadata or {}
    local ns = ns_of(r, obj.metadata.namespace)
    obj.metadata.namespace = ns
    local out, err = call("POST", path_of(r, ns), nil, json.encode(obj))
    if not out then error("kt.create " .. obj.kind .. " " .. tostring(obj.metadata.name) .. ": " .. tostring(err), 2) end
    return out
  end

  --- Read an object: kt.get(ref, ns, name) (ns nil = kt.namespace) or kt.get(obj).
  --- Returns the object, or nil, err (NotFound when it is gone).
  function kt.get(ref, ns, name)
    local r = resolve(ref)
    if name == nil and ref.metadata then ns, name = ref.metadata.namespace, ref.metadata.name end
    return call("GET", path_of(r, ns_of(r, ns), name))
  end

  --- List: kt.list(ref, { namespace = ns, selector = "a=b" }) -> array.
  function kt.list(ref, o)
    o = o or {}
    local r = resolve(ref)
    local p = path_of(r, ns_of(r, o.namespace))
    if o.selector then p = p .. "?labelSelector=" .. o.selector:gsub("[^%w%-_.~]", function(c)
      return string.format("%%%02X", c:byte()) end) end
    local l, err = call("GET", p)
    if not l then error("kt.list: " .. tostring(err), 2) end
    return l.items
  end

  --- Update (PUT) obj; returns the object or nil, err (Conflict on a stale copy).
  function kt.update(obj)
    local r = resolve(obj)
    return call("PUT", path_of(r, ns_of(r, obj.metadata.namespace), obj.metadata.name), nil, json.encode(obj))
  end

  --- Update obj's status subresource; returns the object or nil, err.
  function kt.update_status(obj)
    local r = resolve(obj)
    return call("PUT", path_of(r, ns_of(r, obj.metadata.namespace), obj.metadata.name, "status"), nil,
      json.encode(obj))
  end

  local PATCH_TYPES = { merge = "application/merge-patch+json", json = "application/json-patch+json",
                        strategic = "application/strategic-merge-patch+json" }
  --- Patch obj: kt.patch(obj, patch, { type = "merge"|"json", status = true }).
  function kt.patch(obj, patch, o)
    o = o or {}
    local r = resolve(obj)
    return call("PATCH", path_of(r, ns_of(r, obj.metadata.namespace), obj.metadata.name,
      o.status and "status" or nil), PATCH_TYPES[o.type or "merge"], json.encode(patch))
  end

  --- Delete obj; returns true, or nil, err.
  function kt.delete(obj)
    local r = resolve(obj)
    local out, err = call("DELETE", path_of(r, ns_of(r, obj.metadata.namespace), obj.metadata.name), nil, "{}")
    if out == nil and err then return nil, err end
    return true
  end

  --- The Events recorded about obj (events.k8s.io/v1), oldest first.
  function kt.events(obj)
    local ns = obj.metadata.namespace or kt.namespace
    local l, err = call("GET", "/apis/events.k8s.io/v1/namespaces/" .. ns .. "/events")
    if not l then error("kt.events: " .. tostring(err), 2) end
    local out = {}
    for _, e in ipairs(l.items) do
      local reg = e.regarding or {}
      if reg.name == obj.metadata.name and reg.kind == obj.kind then out[#out + 1] = e end
    end
    table.sort(out, function(a, b) return (a.metadata.creationTimestamp or "") < (b.metadata.creationTimestamp or "") end)
    return out
  end

  --- Run until nothing happens: reconciles done, queues empty, no request in
  --- flight, no timer due (a reconcile in ctx:sleep jumps the clock).
  function kt.run()
    local ok, err = host.run()
    if not ok then error("kt.run: " .. err, 2) end
  end

  --- Move the clock `seconds` forward (requeue_after, backoff, ctx:sleep and
  --- every other timer due by then fire at once), then run until idle.
  function kt.advance(seconds)
    local ok, err = host.advance(math.floor(seconds * 1000))
    if not ok then error("kt.advance: " .. err, 2) end
  end

  --- The test clock in epoch seconds: what ctx:now() answers now.
  function kt.now() return host.clock() end

  --- A secret scripts read with ctx:secret(name).
  function kt.secret(name, value) host.secret(name, value) end

  --- Set an environment variable for this test (KLUA_* / GITHUB_* reach scripts).
  local env_saved = {}
  function kt.setenv(name, value)
    if env_saved[name] == nil then env_saved[name] = { host.getenv(name) } end
    host.setenv(name, value)
  end

  --- The documents of a YAML (or JSON) file, relative to the spec file.
  function kt.yaml(path)
    if path:sub(1, 1) ~= "/" then path = (file:match("^(.*)/") or ".") .. "/" .. path end
    local docs, err = host.yaml(path)
    if not docs then error("kt.yaml: " .. err, 2) end
    return docs
  end

  --- Stop this test here and count it as skipped, saying why (for what one
  --- mode cannot do: `if kt.cluster then kt.skip("...") end`).
  function kt.skip(reason)
    error({ kt_skip = tostring(reason or "skipped") }, 2)
  end

  -- ---- faults of the in-memory API ----

  --- Make the in-memory API answer requests with an error, as an API server
  --- under trouble would: { method = "PATCH" (any when absent), match = Lua
  --- pattern for the path and query, status = 500, reason = "InternalError",
  --- message = "...", times = 1 (or "any") }. Every request to the in-memory
  --- API is matched, the spec's own kt.* calls included. A fault not used
  --- by the end fails the test. Not with --cluster (raises).
  function kt.api.fail(f)
    if kt.cluster then error("kt.api.fail: only the in-memory API can be made to fail, not --cluster", 2) end
    if type(f) ~= "table" or type(f.match) ~= "string" then
      error("kt.api.fail: { match = pattern, ... } expected", 2)
    end
    f.times = f.times or 1
    f.seen = 0
    f.where = debug.getinfo(2, "Sl")
    faults[#faults + 1] = f
    return f
  end

  --- The injected answer for an API request, or nil to let the in-memory API answer.
  function kt._api_fault(method, target)
    for _, f in ipairs(faults) do
      if (f.method == nil or f.method == method) and target:find(f.match) and
         (f.times == "any" or f.seen < f.times) then
        f.seen = f.seen + 1
        local code = f.status or 500
        return code, { apiVersion = "v1", kind = "Status", metadata = {}, status = "Failure", code = code,
                       reason = f.reason or "InternalError", message = f.message or "injected by kt.api.fail" }
      end
    end
  end

  -- ---- the ctx:http stand-in ----

  --- Expect a request: { method = "POST", url = "http://x/y" (exact) or
  --- match = "lua pattern", status = 200, headers = {}, body = table|string,
  --- respond = function(req) -> { status, headers, body }, times = 1 (or
  --- "any": zero or more) }. An expectation not met by the end fails the test.
  --- method = "CONNECT", url = "host:443" takes an https:// request and
  --- refuses it (status, default 403): the script sees a failed request.
  function kt.http.expect(e)
    e.times = e.times or 1
    e.seen = 0
    e.where = debug.getinfo(2, "Sl")
    expects[#expects + 1] = e
    return e
  end

  --- Serve every request under base_url with fn(req) -> { status, headers, body }.
  function kt.http.serve(base_url, fn)
    handlers[#handlers + 1] = { base = base_url, fn = fn }
  end

  local function answer(spec, req)
    local r = spec
    if spec.respond then r = spec.respond(req) or {} end
    local body = r.body
    if type(body) == "table" then body = json.encode(body) end
    return r.status or 200, r.headers or {}, body or ""
  end

  function kt._http(method, target, headers, body)
    local req = { method = method, url = target, headers = headers, body = body, at = host.clock() }
    pcall(function() req.json = json.decode(body) end)
    if method == "CONNECT" then
      -- an HTTPS request: only an expectation for CONNECT may take it (and
      -- refuse it: the stand-in cannot speak TLS), to show where it went
      for _, e in ipairs(expects) do
        if e.method == "CONNECT" and (e.url == target or (e.match and target:find(e.match))) and
           (e.times == "any" or e.seen < e.times) then
          e.seen = e.seen + 1
          calls[#calls + 1] = req
          return e.status or 403, e.headers or {}, "klua test: HTTPS is refused"
        end
      end
      local msg = "unexpected HTTPS request CONNECT " .. target ..
        " (the stand-in sees plain http:// URLs only: point the script at http://...)"
      problems[#problems + 1] = msg
      return 403, {}, msg
    end
    calls[#calls + 1] = req
    for _, e in ipairs(expects) do
      local hit = e.method == nil or e.method == method
      if hit then
        if e.url then hit = e.url == target else hit = e.match and target:find(e.match) ~= nil end
      end
      if hit and (e.times == "any" or e.seen < e.times) then
        e.seen = e.seen + 1
        return answer(e, req)
      end
    end
    for _, h in ipairs(handlers) do
      if target:sub(1, #h.base) == h.base then
        local ok, st, hd, bd = pcall(answer, { respond = h.fn }, req)
        if ok then return st, hd, bd end
        problems[#problems + 1] = "the stand-in for " .. h.base .. " failed: " .. tostring(st)
        return 500, {}, "stand-in failed"
      end
    end
    problems[#problems + 1] = "unexpected request: " .. method .. " " .. target
    return 501, {}, "klua test: no expectation for " .. method .. " " .. target
  end

  function kt._finish()
    for _, e in ipairs(expects) do
      if e.times ~= "any" and e.seen < e.times then
        problems[#problems + 1] = string.format("%s:%d: expected request not made: %s %s (%d of %d)",
          e.where.short_src, e.where.currentline, e.method or "*", e.url or e.match, e.seen, e.times)
      end
    end
    for _, f in ipairs(faults) do
      if f.times ~= "any" and f.seen < f.times then
        problems[#problems + 1] = string.format("%s:%d: API fault not used: %s %s (%d of %d)",
          f.where.short_src, f.where.currentline, f.method or "*", f.match, f.seen, f.times)
      end
    end
    for name, v in pairs(env_saved) do host.setenv(name, v[1]) end
    return problems
  end

  return kt
end

-- ---- running ----

local function path_names(node)
  local names = {}
  while node do
    if node.name then table.insert(names, 1, node.name) end
    node = node.parent
  end
  return table.concat(names, " > ")
end

-- The first frame in the spec file, for "file:line".
local function where_in(file, level)
  for l = level, 60 do
    local info = debug.getinfo(l, "Sl")
    if not info then break end
    if info.source == "@" .. file and info.currentline > 0 then
      return file .. ":" .. info.currentline
    end
  end
end

local function collect(node, out)
  for _, c in ipairs(node.children) do
    if c.children then collect(c, out) else out[#out + 1] = c end
  end
  return out
end

local function chain(node, field, out)
  local list = {}
  while node do
    table.insert(list, 1, node)
    node = node.parent
  end
  for _, n in ipairs(list) do
    for _, f in ipairs(n[field] or {}) do out[#out + 1] = f end
  end
  return out
end

local function run_test(host, opts, file, t, counts)
  local name = path_names(t)
  if t.pending then
    counts.pending = counts.pending + 1
    return
  end
  local t0 = host.elapsed_ms(0)
  local ns = opts.cluster and string.format("klua-test-%s-%d", host.token(), counts.seq) or "default"
  counts.seq = counts.seq + 1
  local kt = new_kt(host, { namespace = ns, cluster = opts.cluster }, file)
  local fake
  if not opts.cluster then
    fake = fakeapi.new(host.emit, host.now)
    for _, crd in ipairs(opts.crds) do fake:add_crd(crd) end
  end
  local failure, skipped
  host.set_handlers(fake and function(method, target, ...)
      local code, doc = kt._api_fault(method, target)
      if code then return code, doc end
      return fake:handle(method, target, ...)
    end,
    function(...) return kt._http(...) end,
    fake and function(id) fake:closed(id) end)
  local ok, err = host.start({ namespace = opts.cluster and ns or nil })
  if not ok then
    failure = file .. ":" .. (t.line or 0) .. ": the runtime did not start: " .. err
  else
    M.kt = kt
    local function handler(e)
      if type(e) == "table" and e.kt_skip then return e end
      local msg = type(e) == "table" and e.kt_failure or tostring(e)
      local loc = where_in(file, 2)
      if loc and not msg:find(loc, 1, true) then msg = loc .. ": " .. msg end
      return msg
    end
    local good, msg = xpcall(function()
      for _, f in ipairs(chain(t.parent, "before", {})) do f(kt) end
      t.fn(kt)
      local after = chain(t.parent, "after", {})
      for i = #after, 1, -1 do after[i](kt) end
    end, handler)
    if not good and type(msg) == "table" then skipped = msg.kt_skip
    elseif not good then failure = msg end
  end
  local problems = kt._finish()
  host.stop()
  if opts.cluster then host.delete_namespace(ns) end
  if not failure and #problems > 0 then
    local first = problems[1]:match("^[^%s]+:%d+: ") and "" or (file .. ":" .. (t.line or 0) .. ": ")
    failure = first .. table.concat(problems, "; ")
  elseif failure and #problems > 0 then
    failure = failure .. " (also: " .. table.concat(problems, "; ") .. ")"
  end
  if skipped and not failure then
    counts.pending = counts.pending + 1
    print("SKIP " .. name .. ": " .. skipped)
  elseif failure then
    counts.failed = counts.failed + 1
    print("FAIL " .. name .. "\n  " .. failure:gsub("\n", "\n  "))
  else
    counts.passed = counts.passed + 1
    if opts.verbose then print(string.format("ok   %s (%d ms)", name, host.elapsed_ms(t0))) end
  end
end

--- Run every spec file; prints the results and returns passed, failed.
function M.main(host, files, opts)
  local counts = { passed = 0, failed = 0, pending = 0, seq = 1 }
  for _, file in ipairs(files) do
    local root, env = new_tree(file)
    setmetatable(env, { __index = _G })
    local chunk, err = loadfile(file, "t", env)
    local ok = chunk ~= nil
    if ok then ok, err = pcall(chunk) end
    if not ok then
      counts.failed = counts.failed + 1
      print("FAIL " .. file .. "\n  " .. tostring(err))
    else
      for _, t in ipairs(collect(root, {})) do run_test(host, opts, file, t, counts) end
    end
  end
  print(string.format("%d passed, %d failed%s", counts.passed, counts.failed,
    counts.pending > 0 and string.format(", %d pending", counts.pending) or ""))
  return counts.passed, counts.failed
end

return M
