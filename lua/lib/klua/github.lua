-- klua.github - a small GitHub REST client (issue comments) for reconcilers.
--
-- Provides: new(ctx, opts) -> client with create_comment, update_comment,
-- delete_comment, get_comment, list_comments and find_comment. Uses: ctx:http,
-- ctx:sleep, ctx:now, ctx:getenv, ctx:secret (lua/types/klua.lua) and klua.json.
--
-- Failures return `nil, err` with err a klua.GitHubError:
--   kind        "rate_limited" | "server" | "network" | "auth" | "forbidden"
--               | "not_found" | "invalid"
--   status      HTTP status (0 when no answer came)
--   message     GitHub's message, or what went wrong; never the token
--   retry_after seconds to wait before trying again (rate_limited, server, network)
--   method, path  the request ("PATCH", "/repos/o/r/issues/comments/1")
--
-- GitHub's rules (docs.github.com, "Rate limits for the REST API"), kept per
-- token in this module (one Lua state = one klua process), because every
-- reconcile of every Comment shares the token's limits:
--   * 403/429 with retry-after: nobody sends before that many seconds;
--   * x-ratelimit-remaining: 0: nobody sends before x-ratelimit-reset;
--   * a secondary limit without those headers: wait 60 s, doubling on repeats;
--   * while blocked, calls fail at once with "rate_limited" and send nothing:
--     a token that keeps hammering while limited can be banned;
--   * mutating requests (POST/PATCH/DELETE) go one at a time, min_gap seconds
--     apart. Reconciles are coroutines on one thread, so a "next slot" time
--     taken in call order and slept until is a fair FIFO queue, with no lock
--     that a dead coroutine could keep held forever.

---@class klua.GitHubError
---@field kind string
---@field status integer
---@field message string
---@field retry_after? number
---@field method? string
---@field path? string

local json = require "klua.json"

local M = { VERSION = "0.1.0" }

local SECONDARY_MIN = 60       -- seconds; GitHub: "wait at least one minute"
local SECONDARY_MAX = 1800
local OUTAGE_MIN, OUTAGE_MAX = 2, 120
local MAX_PAGES = 100          -- 10,000 comments at per_page 100: enough for any issue
local REQUEST_TIMEOUT = 30
local BUSY_LEASE = REQUEST_TIMEOUT + 5  -- a mutating request in flight holds the queue at most this long
-- ctx:now() reads the wall clock; a requeue_after timer counts whole
-- milliseconds of the monotonic one. A retry due when a limit ends may read
-- a few microseconds short of it: within this slack the limit has ended.
local CLOCK_SLACK = 0.005

-- Per-token state. The key holds the token: this table never leaves the
-- module and is never printed.
local limits = {}

-- client -> token, kept out of the client table so that dumping a client
-- (a debugging habit) cannot print the token.
local tokens = setmetatable({}, { __mode = "k" })

local function state_for(key)
    local s = limits[key]
    if not s then
        s = { blocked_until = 0, blocked_reason = nil, secondary_wait = 0,
              next_slot = 0, busy_until = 0, free_at = 0, outage_since = nil }
        limits[key] = s
    end
    return s
end

--- Forget every token's limits (for tests).
function M._reset()
    limits = {}
end

local err_mt = {
    __tostring = function(e)
        return string.format("%s: %s (%d)", e.kind, e.message, e.status or 0)
    end,
}

local function redact(s, token)
    if type(s) ~= "string" then return s end
    if token and #token > 0 then
        local out, i = {}, 1
        while true do
            local a, b = s:find(token, i, true)
            if not a then break end
            out[#out + 1] = s:sub(i, a - 1)
            out[#out + 1] = "[redacted]"
            i = b + 1
        end
        out[#out + 1] = s:sub(i)
        s = table.concat(out)
    end
    -- one line, bounded: it may end up in a status condition or an Event
    s = s:gsub("[\r\n]+", " ")
    if #s > 300 then s = s:sub(1, 300) .. "..." end
    return s
end

local function mkerr(self, kind, status, message, retry_after, method, path)
    return setmetatable({ kind = kind, status = status or 0, message = redact(message, tokens[self]),
                          retry_after = retry_after, method = method, path = path }, err_mt)
end

-- Integers from JSON may arrive as floats (a codec such as lua-cjson decodes every number as
-- a double): 3000000001.0 must become "3000000001" in a URL.
local function intstr(v)
    local n = math.tointeger(tonumber(v))
    if not n or n < 1 then return nil end
    return string.format("%d", n)
end

local function check_repo(repo)
    if type(repo) ~= "string" then return nil end
    local owner, name = repo:match("^([%w_.-]+)/([%w_.-]+)$")
    -- "." and ".." would be path segments that an HTTP client resolves
    if not owner or owner == "." or owner == ".." or name == "." or name == ".." then
        return nil
    end
    return owner .. "/" .. name
end

local function origin(url)
    return (url:match("^(%a[%w+.-]*://[^/?#]+)"))
end

---@class klua.GitHubOptions
---@field base_url? string    default $GITHUB_API_URL or https://api.github.com
---@field token? string       default ctx:secret("github_token")
---@field min_gap? number     seconds between mutating requests, default $KLUA_GITHUB_MIN_GAP or 1.0
---@field user_agent? string  default "klua/<version>"

--- A client bound to this reconcile's ctx. Returns nil, err (kind "auth")
--- when there is no token.
---@param ctx klua.Context
---@param opts? klua.GitHubOptions
---@return table|nil client, klua.GitHubError|nil err
function M.new(ctx, opts)
    opts = opts or {}
    local base = opts.base_url or ctx:getenv("GITHUB_API_URL")
    if base == nil or base == "" then base = "https://api.github.com" end
    base = base:gsub("/+$", "")
    local gap = opts.min_gap or tonumber(ctx:getenv("KLUA_GITHUB_MIN_GAP") or "") or 1.0
    if gap < 0 then gap = 0 end
    local token = opts.token or ctx:secret("github_token")
    local self = setmetatable({
        ctx = ctx, base_url = base, origin = origin(base), min_gap = gap,
        user_agent = opts.user_agent or ("klua/" .. M.VERSION),
    }, { __index = M })
    if type(token) ~= "string" or token == "" then
        return nil, mkerr(self, "auth", 0,
            "klua has no GitHub token: give klua run --secret github_token=FILE (or set GITHUB_TOKEN)")
    end
    -- errors pass through redact() in case GitHub ever echoes the token
    tokens[self] = token
    self.state = state_for(base .. "\n" .. token)
    return self
end

local function header_number(h, name)
    return tonumber(h[name] or "")
end

-- Classifies an HTTP answer that is not a success, updating the token's
-- shared limits. Returns the error.
function M:_failure(resp, method, path)
    local s, h, now = self.state, resp.headers or {}, self.ctx:now()
    local status = resp.status
    local msg
    local ok, body = pcall(json.decode, resp.body or "")
    if ok and type(body) == "table" and type(body.message) == "string" then
        msg = body.message
        if type(body.errors) == "table" and type(body.errors[1]) == "table" then
            local e = body.errors[1]
            local detail = e.message or ((e.field or "?") .. " " .. (e.code or "invalid"))
            msg = msg .. ": " .. tostring(detail)
        end
    else
        msg = "HTTP " .. status
    end

    if status == 403 or status == 429 then
        local wait
        local retry_after = header_number(h, "retry-after")
        local remaining, reset = header_number(h, "x-ratelimit-remaining"), header_number(h, "x-ratelimit-reset")
        if retry_after then
            wait = math.max(retry_after, 1)
        elseif remaining == 0 and reset then
            wait = math.max(reset - now, 1)
        elseif msg:lower():find("secondary rate limit", 1, true) or status == 429 then
            -- no header says how long: at least a minute, doubling on repeats.
            -- Answers to requests that were in flight together are one
            -- event, not repeats: only a limit hit after a wait doubles it.
            if s.blocked_until > now then
                wait = s.blocked_until - now
            else
                s.secondary_wait = math.min(math.max(s.secondary_wait * 2, SECONDARY_MIN), SECONDARY_MAX)
                wait = s.secondary_wait
            end
        end
        if wait then
            s.blocked_until = math.max(s.blocked_until, now + wait)
            s.blocked_reason, s.blocked_status = msg, status
            return mkerr(self, "rate_limited", status, msg, math.ceil(s.blocked_until - now), method, path)
        end
        return mkerr(self, "forbidden", status, msg, nil, method, path)
    end
    if status == 401 then return mkerr(self, "auth", status, msg, nil, method, path) end
    if status == 404 or status == 410 then return mkerr(self, "not_found", status, msg, nil, method, path) end
    if status >= 500 then
        return mkerr(self, "server", status, msg, self:_outage_wait(now), method, path)
    end
    return mkerr(self, "invalid", status, msg, nil, method, path)
end

-- Back off in proportion to how long GitHub has been failing: 2 s at
-- first, then about as long as the outage has lasted (so doubling), up to
-- two minutes, with jitter so that waiting reconciles do not return together.
function M:_outage_wait(now)
    local s = self.state
    if not s.outage_since then s.outage_since = now end
    local w = math.min(math.max(now - s.outage_since, OUTAGE_MIN), OUTAGE_MAX)
    return math.ceil(w * (1 + math.random() * 0.2))
end

function M:_blocked_error(method, path)
    local s, now = self.state, self.ctx:now()
    if s.blocked_until - now > CLOCK_SLACK then
        -- the message of the answer that set the limit, so that callers see
        -- one stable state rather than a new error per attempt
        return mkerr(self, "rate_limited", s.blocked_status or 0, s.blocked_reason or "rate limited",
            math.ceil(s.blocked_until - now), method, path)
    end
end

-- Waits for this request's turn among mutating requests of the same token.
function M:_take_turn()
    local s, ctx = self.state, self.ctx
    local now = ctx:now()
    local slot = math.max(s.next_slot, now)
    s.next_slot = slot + self.min_gap
    if slot > now then ctx:sleep(slot - now) end
    -- one at a time even when a request outlasts min_gap, and min_gap after
    -- the previous one ended; the lease bounds the wait if the coroutine
    -- holding the turn never came back
    while true do
        now = ctx:now()
        if s.busy_until > now then
            ctx:sleep(math.min(math.max(self.min_gap, 0.05), s.busy_until - now))
        elseif s.free_at > now then
            ctx:sleep(s.free_at - now)
        else
            break
        end
    end
    s.busy_until = now + BUSY_LEASE
end

--- One request. `target` is a path below base_url or an absolute URL on the
--- same origin (a Link header). Returns the decoded body (true for an empty
--- one) and the response, or nil, err.
function M:request(method, target, body)
    local path = target
    local url
    if target:sub(1, 1) == "/" then
        url = self.base_url .. target
    else
        -- never send the token anywhere but the configured API server
        if origin(target) ~= self.origin then
            return nil, mkerr(self, "invalid", 0, "GitHub pointed to another server; not following it", nil, method, "")
        end
        url = target
        path = target:sub(#self.origin + 1)
    end
    local mutating = method ~= "GET" and method ~= "HEAD"
    local e = self:_blocked_error(method, path)
    if e then return nil, e end
    if mutating then
        self:_take_turn()
        e = self:_blocked_error(method, path)  -- a limit may have hit while waiting
        if e then self.state.busy_until = 0; return nil, e end
    end

    local headers = {
        ["Authorization"] = "Bearer " .. tokens[self],
        ["Accept"] = "application/vnd.github+json",
        ["X-GitHub-Api-Version"] = "2022-11-28",
        ["User-Agent"] = self.user_agent,
    }
    local payload
    if body ~= nil then
        payload = json.encode(body)
        headers["Content-Type"] = "application/json"
    end
    local resp, herr = self.ctx:http{ method = method, url = url, headers = headers,
                                      body = payload, timeout = REQUEST_TIMEOUT }
    local s, now = self.state, self.ctx:now()
    if mutating then
        s.busy_until = 0
        s.free_at = now + self.min_gap
    end
    if not resp then
        local why = herr and (herr.message or herr.reason) or "no answer"
        return nil, mkerr(self, "network", 0, "no answer from " .. self.origin .. ": " .. tostring(why),
            self:_outage_wait(now), method, path)
    end
    local h = resp.headers or {}
    if resp.status >= 200 and resp.status < 300 then
        s.outage_since = nil
        -- secondary limits fall on mutating requests (content creation); a
        -- read that passes says nothing about them: only a write that passes
        -- ends the doubling
        if mutating then s.secondary_wait = 0 end
        -- the last request of the hour: hold the next ones until the reset
        if header_number(h, "x-ratelimit-remaining") == 0 and header_number(h, "x-ratelimit-reset") then
            s.blocked_until = math.max(s.blocked_until, header_number(h, "x-ratelimit-reset"))
            s.blocked_reason, s.blocked_status = "rate limit used up until x-ratelimit-reset", 0
        end
        if resp.body == nil or resp.body == "" then return true, resp end
        local ok, decoded = pcall(json.decode, resp.body)
        if not ok then
            return nil, mkerr(self, "server", resp.status, "GitHub answered with invalid JSON",
                self:_outage_wait(now), method, path)
        end
        return decoded, resp
    end
    if resp.status < 500 then s.outage_since = nil end
    return nil, self:_failure(resp, method, path)
end

local function bad_arg(self, what, method)
    return nil, mkerr(self, "invalid", 0, what, nil, method, "")
end

--- POST a comment on an issue. Returns the comment.
function M:create_comment(repo, issue, body)
    local r, n = check_repo(repo), intstr(issue)
    if not r then return bad_arg(self, "repository must be owner/name, got " .. tostring(repo), "POST") end
    if not n then return bad_arg(self, "issue must be a positive integer", "POST") end
    return self:request("POST", "/repos/" .. r .. "/issues/" .. n .. "/comments", { body = body })
end

--- PATCH a comment's body. Returns the comment.
function M:update_comment(repo, id, body)
    local r, n = check_repo(repo), intstr(id)
    if not r then return bad_arg(self, "repository must be owner/name, got " .. tostring(repo), "PATCH") end
    if not n then return bad_arg(self, "comment id must be a positive integer", "PATCH") end
    return self:request("PATCH", "/repos/" .. r .. "/issues/comments/" .. n, { body = body })
end

--- GET one comment.
function M:get_comment(repo, id)
    local r, n = check_repo(repo), intstr(id)
    if not r or not n then return bad_arg(self, "repository or comment id invalid", "GET") end
    return self:request("GET", "/repos/" .. r .. "/issues/comments/" .. n)
end

--- DELETE a comment. Returns true.
function M:delete_comment(repo, id)
    local r, n = check_repo(repo), intstr(id)
    if not r then return bad_arg(self, "repository must be owner/name, got " .. tostring(repo), "DELETE") end
    if not n then return bad_arg(self, "comment id must be a positive integer", "DELETE") end
    local ok, err = self:request("DELETE", "/repos/" .. r .. "/issues/comments/" .. n)
    if not ok then return nil, err end
    return true
end

-- The rel="next" URL of a Link header, or nil.
local function next_link(h)
    local link = h and h["link"]
    if not link then return nil end
    for part in link:gmatch("[^,]+") do
        local url, rel = part:match('<([^>]*)>%s*;%s*rel="([^"]*)"')
        if rel == "next" then return url end
    end
end

--- One page of an issue's comments, oldest first. Returns the comments and
--- the URL of the next page (nil on the last), or nil, err. `page_url`
--- (a Link rel="next") takes the place of per_page/page.
function M:list_comments(repo, issue, per_page, page, page_url)
    local target = page_url
    if not target then
        local r, n = check_repo(repo), intstr(issue)
        if not r then return bad_arg(self, "repository must be owner/name, got " .. tostring(repo), "GET") end
        if not n then return bad_arg(self, "issue must be a positive integer", "GET") end
        target = string.format("/repos/%s/issues/%s/comments?per_page=%d&page=%d", r, n,
            math.tointeger(per_page) or 100, math.tointeger(page) or 1)
    end
    local items, resp = self:request("GET", target)
    if not items then return nil, resp end
    if type(items) ~= "table" then items = {} end
    return items, next_link(resp.headers)
end

--- The first comment on the issue for which predicate(comment) is true,
--- following Link rel="next" through every page; nil (no error) when none.
function M:find_comment(repo, issue, predicate)
    local items, nxt = self:list_comments(repo, issue, 100, 1)
    local pages = 1
    while true do
        if not items then return nil, nxt end
        for _, c in ipairs(items) do
            if predicate(c) then return c end
        end
        if not nxt or pages >= MAX_PAGES then return nil end
        items, nxt = self:list_comments(repo, issue, nil, nil, nxt)
        pages = pages + 1
    end
end

return M
