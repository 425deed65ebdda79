-- fake_ctx.lua - the part of klua's reconcile ctx that klua.github uses
-- (http, sleep, now, getenv, secret), for the two busted cases of
-- spec/lua/github_spec.lua that need what klua test cannot give: an HTTP
-- exchange that takes time. Everything else about the Comment controller and
-- klua.github is specified in lua/spec/ against the real ctx (klua test).
--
-- Provides: new(opts) -> ctx whose http answers come from a queue of
-- responses or a handler, each taking `latency` seconds of a virtual clock,
-- and which records its requests; run(clock, fns) runs functions as
-- coroutines on that clock, the way klua runs concurrent reconciles.
-- Uses: klua.json (build/lua/klua/json.so; .busted puts it on cpath).

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

---@param opts? table  { responses = {...} | handler = fn(req), now, latency (seconds per
---                      HTTP exchange), clock (a table shared by several ctx) }
function M.new(opts)
    opts = opts or {}
    return setmetatable({
        clock = opts.clock or { t = opts.now or 1700000000 },
        env = { GITHUB_API_URL = "https://gh.test", KLUA_GITHUB_MIN_GAP = "1" },
        secrets = { github_token = "tok-SECRET-123" },
        responses = opts.responses or {},
        handler = opts.handler,
        latency = opts.latency or 0,
        requests = {},
    }, Ctx)
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

function Ctx:sleep(seconds) self:_wait(seconds) end

function Ctx:getenv(name) return self.env[name] end

function Ctx:secret(name) return self.secrets[name] end

function Ctx:http(req)
    local rec = { method = req.method or "GET", url = req.url, headers = req.headers or {},
                  body = req.body, at = self.clock.t }
    self.requests[#self.requests + 1] = rec
    local r
    if self.handler then
        r = self.handler(rec, self)
    else
        r = table.remove(self.responses, 1)
    end
    if r == nil then error("fake_ctx: unexpected request " .. rec.method .. " " .. rec.url, 2) end
    self:_wait(self.latency)
    local body = r.body
    if type(body) == "table" then body = json.encode(body) end
    return { status = r.status or 200, headers = r.headers or {}, body = body or "" }
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
