-- fake_ctx.lua - a stand-in for klua's reconcile ctx (lua/types/klua.lua) in busted specs.
--
-- Provides: new(opts) -> ctx whose http answers come from a script (a queue of
-- responses, or a handler function) and which records what a reconciler
-- did: requests, sleeps, status patches, events, log lines. A virtual
-- clock makes time explicit; run(fns) runs several functions as coroutines
-- on that clock, the way klua runs concurrent reconciles, so sleeps and
-- in-flight HTTP interleave. JSON goes through klua.json, the codec klua
-- itself runs (built as build/lua/klua/json.so; .busted puts it on cpath).
-- Uses: klua.json.

local found, json = pcall(require, "klua.json")
if not found then   -- run without .busted's cpath: look where the Makefile puts it
    package.cpath = "build/lua/?.so;" .. package.cpath
    found, json = pcall(require, "klua.json")
end
if not found then
    error("klua.json is not built (run `make lua-modules` from the repository root): " .. tostring(json), 0)
end

local M = {}
local Ctx = {}
Ctx.__index = Ctx

--- A JSON body; an empty table is "[]" (a body the fake answers with is a
--- list when empty: GitHub's "no comments").
function M.json(v)
    if type(v) == "table" and next(v) == nil then return "[]" end
    return json.encode(v)
end

---@param opts? table  { responses = {...} | handler = fn(req), env, secrets, now,
---                      latency (seconds per HTTP exchange), clock (shared table) }
function M.new(opts)
    opts = opts or {}
    local ctx = setmetatable({
        key = "default/hello", namespace = "default", name = "hello", controller = "comment",
        clock = opts.clock or { t = opts.now or 1700000000 },
        env = opts.env or { GITHUB_API_URL = "https://gh.test", KLUA_GITHUB_MIN_GAP = "1" },
        secrets = opts.secrets or { github_token = "tok-SECRET-123" },
        responses = opts.responses or {},
        handler = opts.handler,
        latency = opts.latency or 0,
        requests = {}, sleeps = {}, statuses = {}, events = {}, logs = {},
        status_error = nil,   -- set to a klua.Error to make patch_status fail
    }, Ctx)
    local function logger(level)
        return function(msg, fields)
            ctx.logs[#ctx.logs + 1] = { level = level, msg = msg, fields = fields }
        end
    end
    ctx.log = { info = logger("info"), warn = logger("warn"), error = logger("error"), debug = logger("debug") }
    return ctx
end

-- Passes virtual time: yields to the scheduler inside run(), else jumps the clock.
function Ctx:_wait(seconds)
    if seconds <= 0 then return end
    if coroutine.isyieldable() and M._scheduling then
        coroutine.yield(self.clock.t + seconds)
    else
        self.clock.t = self.clock.t + seconds
    end
end

function Ctx:now() return self.clock.t end

function Ctx:sleep(seconds)
    self.sleeps[#self.sleeps + 1] = seconds
    self:_wait(seconds)
end

function Ctx:getenv(name) return self.env[name] end

function Ctx:secret(name) return self.secrets[name] end

function Ctx:http(req)
    local rec = { method = req.method or "GET", url = req.url, headers = req.headers or {},
                  body = req.body, timeout = req.timeout, at = self.clock.t }
    self.requests[#self.requests + 1] = rec
    local r
    if self.handler then
        r = self.handler(rec, self)
    else
        r = table.remove(self.responses, 1)
        if type(r) == "function" then r = r(rec, self) end
    end
    if r == nil then error("fake_ctx: unexpected request " .. rec.method .. " " .. rec.url, 2) end
    self:_wait(self.latency)
    rec.done = self.clock.t
    if r.error then return nil, r.error end
    local body = r.body
    if type(body) == "table" then body = M.json(body) end
    return { status = r.status or 200, headers = r.headers or {}, body = body or "" }
end

function Ctx:patch_status(obj, status)
    if self.status_error then return nil, self.status_error end
    self.statuses[#self.statuses + 1] = status
    -- the patched object, as the API server would answer
    obj.status = obj.status or {}
    for k, v in pairs(status) do obj.status[k] = v end
    return obj
end

function Ctx:event(obj, type, reason, message)
    self.events[#self.events + 1] = { type = type, reason = reason, message = message }
end

--- Everything the ctx recorded, as one string (to check that a secret
--- appears nowhere).
function Ctx:transcript()
    local parts = {}
    local function add(v, depth)
        if depth > 8 then return end
        if type(v) == "table" then
            for k, x in pairs(v) do add(k, depth + 1); add(x, depth + 1) end
        else
            parts[#parts + 1] = tostring(v)
        end
    end
    add(self.statuses, 0); add(self.events, 0); add(self.logs, 0)
    return table.concat(parts, "\n")
end

--- Runs fns as coroutines on the shared virtual clock, like klua's event
--- loop: the one whose wake-up time comes first runs next. Returns their
--- results in order.
function M.run(clock, fns)
    local tasks, results = {}, {}
    for i, fn in ipairs(fns) do tasks[#tasks + 1] = { i = i, co = coroutine.create(fn), wake = clock.t } end
    M._scheduling = true
    while #tasks > 0 do
        table.sort(tasks, function(a, b) if a.wake ~= b.wake then return a.wake < b.wake end return a.i < b.i end)
        local t = table.remove(tasks, 1)
        if t.wake > clock.t then clock.t = t.wake end
        local ok, v = coroutine.resume(t.co)
        if not ok then M._scheduling = false; error(v, 0) end
        if coroutine.status(t.co) == "dead" then
            results[t.i] = v
        else
            t.wake = v
            tasks[#tasks + 1] = t
        end
    end
    M._scheduling = false
    return results
end

return M
