-- github_spec.lua - klua.github: what goes on the wire, how GitHub's answers
-- are classified, and the per-token rate-limit and pacing rules.
package.path = "lua/lib/?.lua;spec/lua/support/?.lua;" .. package.path
local fake = require "fake_ctx"
local github = require "klua.github"

local TOKEN = "tok-SECRET-123"
local COMMENT = { id = 3000000001, body = "hi", html_url = "https://github.com/o/r/issues/7#issuecomment-3000000001" }

local function hdr(t) return t end

describe("klua.github", function()
    before_each(function() github._reset() end)

    describe("requests", function()
        it("sends the token as Bearer with GitHub's headers to the configured base URL", function()
            local ctx = fake.new{ responses = { { status = 201, body = COMMENT } } }
            local gh = assert(github.new(ctx))
            local c = assert(gh:create_comment("o/r", 7, "hello"))
            assert.equal(3000000001, c.id)
            local r = ctx.requests[1]
            assert.equal("POST", r.method)
            assert.equal("https://gh.test/repos/o/r/issues/7/comments", r.url)
            assert.equal("Bearer " .. TOKEN, r.headers["Authorization"])
            assert.equal("application/vnd.github+json", r.headers["Accept"])
            assert.equal("2022-11-28", r.headers["X-GitHub-Api-Version"])
            assert.matches("^klua/%d+%.%d+%.%d+$", r.headers["User-Agent"])
            assert.same({ body = "hello" }, require("klua.json").decode(r.body))
        end)

        it("defaults to api.github.com and strips a trailing slash from GITHUB_API_URL", function()
            local ctx = fake.new{ env = {}, responses = { { body = "[]" } } }
            assert(github.new(ctx):list_comments("o/r", 1))
            assert.equal("https://api.github.com/repos/o/r/issues/1/comments?per_page=100&page=1", ctx.requests[1].url)
            ctx = fake.new{ env = { GITHUB_API_URL = "http://127.0.0.1:9/api/v3/" }, responses = { { body = "[]" } } }
            assert(github.new(ctx):list_comments("o/r", 1, 5, 2))
            assert.equal("http://127.0.0.1:9/api/v3/repos/o/r/issues/1/comments?per_page=5&page=2", ctx.requests[1].url)
        end)

        it("writes ids decoded as floats as integers in URLs", function()
            local ctx = fake.new{ responses = { { status = 200, body = COMMENT }, { status = 204 } } }
            local gh = github.new(ctx)
            assert(gh:update_comment("o/r", 3000000001.0, "v2"))
            assert.equal(true, gh:delete_comment("o/r", 3000000001.0))
            assert.equal("https://gh.test/repos/o/r/issues/comments/3000000001", ctx.requests[1].url)
            assert.equal("PATCH", ctx.requests[1].method)
            assert.equal("DELETE", ctx.requests[2].method)
            assert.is_nil(ctx.requests[2].body)
        end)

        it("refuses repositories that are not owner/name before sending anything", function()
            local ctx = fake.new()
            local gh = github.new(ctx)
            for _, bad in ipairs{ "o", "o/r/x", "../r", "o/..", "o/r?x=1", "" } do
                local c, err = gh:create_comment(bad, 1, "x")
                assert.is_nil(c)
                assert.equal("invalid", err.kind)
            end
            local _, err = gh:create_comment("o/r", 0, "x")
            assert.equal("invalid", err.kind)
            assert.equal(0, #ctx.requests)
        end)

        it("without a token answers an auth error and sends nothing", function()
            local ctx = fake.new{ secrets = {} }
            local gh, err = github.new(ctx)
            assert.is_nil(gh)
            assert.equal("auth", err.kind)
            assert.matches("GITHUB_TOKEN", err.message)
            assert.equal(0, #ctx.requests)
        end)
    end)

    describe("pagination", function()
        local function page(ids, next_url)
            local items = {}
            for _, id in ipairs(ids) do items[#items + 1] = { id = id, body = "c" .. id } end
            local h = {}
            if next_url then h.link = '<' .. next_url .. '>; rel="next", <https://gh.test/x?page=9>; rel="last"' end
            return { status = 200, headers = h, body = items }
        end

        it("find_comment follows Link rel=next and stops at the first match", function()
            local ctx = fake.new{ responses = {
                page({ 1, 2 }, "https://gh.test/repos/o/r/issues/7/comments?per_page=100&page=2"),
                page({ 3, 4 }, "https://gh.test/repos/o/r/issues/7/comments?per_page=100&page=3"),
                page({ 5, 6 }, "https://gh.test/repos/o/r/issues/7/comments?per_page=100&page=4"),
            } }
            local c = assert(github.new(ctx):find_comment("o/r", 7, function(x) return x.body == "c5" end))
            assert.equal(5, c.id)
            assert.equal(3, #ctx.requests)
            assert.equal("https://gh.test/repos/o/r/issues/7/comments?per_page=100&page=1", ctx.requests[1].url)
            assert.equal("https://gh.test/repos/o/r/issues/7/comments?per_page=100&page=3", ctx.requests[3].url)
            for _, r in ipairs(ctx.requests) do assert.equal("Bearer " .. TOKEN, r.headers.Authorization) end
        end)

        it("find_comment returns nil without error when no page matches", function()
            local ctx = fake.new{ responses = { page({ 1 }, "https://gh.test/p2"), page({ 2 }) } }
            local c, err = github.new(ctx):find_comment("o/r", 7, function() return false end)
            assert.is_nil(c)
            assert.is_nil(err)
            assert.equal(2, #ctx.requests)
        end)

        it("list_comments returns the next page's URL", function()
            local ctx = fake.new{ responses = { page({ 1, 2 }, "https://gh.test/next") } }
            local items, nxt = github.new(ctx):list_comments("o/r", 7, 2, 1)
            assert.equal(2, #items)
            assert.equal("https://gh.test/next", nxt)
        end)

        it("never follows a Link to another server (the token would go along)", function()
            local ctx = fake.new{ responses = { page({ 1 }, "https://evil.test/steal?page=2") } }
            local c, err = github.new(ctx):find_comment("o/r", 7, function() return false end)
            assert.is_nil(c)
            assert.equal("invalid", err.kind)
            assert.equal(1, #ctx.requests)
        end)
    end)

    describe("error classification", function()
        local function classify(resp, now)
            local ctx = fake.new{ responses = { resp }, now = now }
            local c, err = github.new(ctx):create_comment("o/r", 7, "x")
            assert.is_nil(c)
            return err, ctx
        end
        local function gh_body(msg) return { message = msg, documentation_url = "https://docs.github.com/rest" } end

        it("401 is auth", function()
            local err = classify{ status = 401, body = gh_body("Bad credentials") }
            assert.equal("auth", err.kind)
            assert.equal(401, err.status)
            assert.equal("Bad credentials", err.message)
            assert.is_nil(err.retry_after)
        end)

        it("403 without rate-limit signs is forbidden", function()
            local err = classify{ status = 403, headers = { ["x-ratelimit-remaining"] = "4999" },
                                  body = gh_body("Resource not accessible by integration") }
            assert.equal("forbidden", err.kind)
            assert.is_nil(err.retry_after)
        end)

        it("403 with retry-after is rate_limited for that long", function()
            local err = classify{ status = 403, headers = { ["retry-after"] = "30" }, body = gh_body("x") }
            assert.equal("rate_limited", err.kind)
            assert.equal(30, err.retry_after)
        end)

        it("429 with retry-after is rate_limited for that long", function()
            local err = classify{ status = 429, headers = { ["retry-after"] = "7" }, body = gh_body("Too Many") }
            assert.equal("rate_limited", err.kind)
            assert.equal(7, err.retry_after)
        end)

        it("x-ratelimit-remaining 0 waits until x-ratelimit-reset", function()
            local err = classify({ status = 403, headers = { ["x-ratelimit-remaining"] = "0",
                ["x-ratelimit-reset"] = "1700000500" }, body = gh_body("API rate limit exceeded") }, 1700000000)
            assert.equal("rate_limited", err.kind)
            assert.equal(500, err.retry_after)
        end)

        it("a secondary limit without headers waits 60 s, then doubles", function()
            local resp = { status = 403, body = gh_body("You have exceeded a secondary rate limit.") }
            local ctx = fake.new{ responses = { resp, resp, { status = 201, body = COMMENT }, resp } }
            local gh = github.new(ctx)
            local _, e1 = gh:create_comment("o/r", 7, "x")
            assert.equal("rate_limited", e1.kind)
            assert.equal(60, e1.retry_after)
            ctx.clock.t = ctx.clock.t + 61
            local _, e2 = gh:create_comment("o/r", 7, "x")
            assert.equal(120, e2.retry_after)
            ctx.clock.t = ctx.clock.t + 121
            assert(gh:create_comment("o/r", 7, "x"))  -- a success forgets the repeats
            ctx.clock.t = ctx.clock.t + 2
            local _, e3 = gh:create_comment("o/r", 7, "x")
            assert.equal(60, e3.retry_after)
        end)

        it("secondary-limit answers to requests in flight together do not double the wait", function()
            local clock = { t = 1000 }
            local resp = { status = 403, body = gh_body("You have exceeded a secondary rate limit") }
            local a = fake.new{ clock = clock, latency = 1, responses = { resp } }
            local b = fake.new{ clock = clock, latency = 1, responses = { resp } }
            local res = fake.run(clock, {
                function() local _, e = github.new(a):list_comments("o/r", 7); return e.retry_after end,
                function() local _, e = github.new(b):list_comments("o/r", 7); return e.retry_after end,
            })
            assert.same({ 60, 60 }, res)
        end)

        it("404 and 410 are not_found", function()
            assert.equal("not_found", classify{ status = 404, body = gh_body("Not Found") }.kind)
            assert.equal("not_found", classify{ status = 410, body = gh_body("Issues are disabled for this repo") }.kind)
        end)

        it("422 is invalid, with GitHub's field error", function()
            local err = classify{ status = 422, body = { message = "Validation Failed",
                errors = { { resource = "IssueComment", code = "missing_field", field = "body" } } } }
            assert.equal("invalid", err.kind)
            assert.equal("Validation Failed: body missing_field", err.message)
        end)

        it("5xx is server with a backoff", function()
            local err = classify{ status = 502, body = "<html>bad gateway</html>" }
            assert.equal("server", err.kind)
            assert.equal("HTTP 502", err.message)
            assert.is_true(err.retry_after >= 2 and err.retry_after <= 3)
        end)

        it("no answer is network with a backoff that grows with the outage", function()
            local lost = { error = { code = 0, reason = "ConnectionError", message = "connection refused" } }
            local ctx = fake.new{ responses = { lost, lost } }
            local gh = github.new(ctx)
            local _, e1 = gh:list_comments("o/r", 7)
            assert.equal("network", e1.kind)
            assert.equal(0, e1.status)
            assert.matches("connection refused", e1.message)
            ctx.clock.t = ctx.clock.t + 40
            local _, e2 = gh:list_comments("o/r", 7)
            assert.is_true(e2.retry_after >= 40 and e2.retry_after <= 48)
        end)

        it("never puts the token in an error, even when GitHub echoes it", function()
            local err = classify{ status = 401, body = gh_body("token " .. TOKEN .. " is revoked") }
            assert.equal("token [redacted] is revoked", err.message)
            assert.is_nil(tostring(err):find(TOKEN, 1, true))
            assert.equal("auth: token [redacted] is revoked (401)", tostring(err))
        end)
    end)

    describe("rate-limit blocking", function()
        it("while blocked, calls fail at once without a request, for every client of the token", function()
            local ctx = fake.new{ responses = { { status = 429, headers = { ["retry-after"] = "30" }, body = "{}" } } }
            local _, e = github.new(ctx):create_comment("o/r", 7, "x")
            assert.equal("rate_limited", e.kind)
            ctx.clock.t = ctx.clock.t + 10
            -- another reconcile (another ctx), same token: nothing is sent
            local other = fake.new{ clock = ctx.clock }
            local gh2 = github.new(other)
            for _, call in ipairs{
                function() return gh2:list_comments("o/r", 7) end,
                function() return gh2:create_comment("o/r", 7, "x") end,
                function() return gh2:delete_comment("o/r", 1) end,
            } do
                local r, err = call()
                assert.is_nil(r)
                assert.equal("rate_limited", err.kind)
                assert.equal(20, err.retry_after)
            end
            assert.equal(0, #other.requests)
            -- a different token has its own limits
            local third = fake.new{ clock = ctx.clock, secrets = { github_token = "other" },
                                    responses = { { body = "[]" } } }
            assert(github.new(third):list_comments("o/r", 7))
            -- once the wait is over, requests go out again
            ctx.clock.t = ctx.clock.t + 21
            other.responses = { { body = "[]" } }
            assert(gh2:list_comments("o/r", 7))
            assert.equal(1, #other.requests)
        end)

        it("a success that used the last request of the hour holds the next until the reset", function()
            local ctx = fake.new{ now = 1700000000, responses = { { status = 201, body = COMMENT,
                headers = { ["x-ratelimit-remaining"] = "0", ["x-ratelimit-reset"] = "1700000100" } } } }
            local gh = github.new(ctx)
            assert(gh:create_comment("o/r", 7, "x"))
            local _, err = gh:list_comments("o/r", 7)
            assert.equal("rate_limited", err.kind)
            assert.equal(100, err.retry_after)
            assert.equal(1, #ctx.requests)
        end)
    end)

    describe("pacing of mutating requests", function()
        it("spaces mutating requests by min_gap and leaves reads alone", function()
            local ok = { status = 201, body = COMMENT }
            local ctx = fake.new{ responses = { ok, ok, { body = "[]" }, ok } }
            local gh = github.new(ctx)
            local t0 = ctx.clock.t
            assert(gh:create_comment("o/r", 7, "a"))
            assert(gh:create_comment("o/r", 7, "b"))
            assert(gh:list_comments("o/r", 7))
            assert(gh:create_comment("o/r", 7, "c"))
            local at = {}
            for i, r in ipairs(ctx.requests) do at[i] = r.at - t0 end
            assert.same({ 0, 1, 1, 2 }, at)
            assert.same({ 1, 1 }, ctx.sleeps)
        end)

        it("takes min_gap from KLUA_GITHUB_MIN_GAP", function()
            local ok = { status = 201, body = COMMENT }
            local ctx = fake.new{ env = { GITHUB_API_URL = "https://gh.test", KLUA_GITHUB_MIN_GAP = "0.25" },
                                  responses = { ok, ok } }
            local gh = github.new(ctx)
            assert(gh:create_comment("o/r", 7, "a"))
            assert(gh:create_comment("o/r", 7, "b"))
            assert.same({ 0.25 }, ctx.sleeps)
        end)

        it("concurrent reconciles send one mutating request at a time, in call order", function()
            local clock = { t = 1000 }
            local ctxs, fns = {}, {}
            local log = {}
            for i = 1, 3 do
                ctxs[i] = fake.new{ clock = clock, latency = 2.5, handler = function(req)
                    log[#log + 1] = { i = i, at = req.at }
                    return { status = 201, body = COMMENT }
                end }
                fns[i] = function() return (github.new(ctxs[i]):create_comment("o/r", 7, "m" .. i)) ~= nil end
            end
            local results = fake.run(clock, fns)
            assert.same({ true, true, true }, results)
            -- each starts only after the previous one ended (2.5 s), then min_gap
            assert.same({ { i = 1, at = 1000 }, { i = 2, at = 1003.5 }, { i = 3, at = 1007 } }, log)
        end)

        it("a wait in the queue ends early when a rate limit hits meanwhile", function()
            local clock = { t = 1000 }
            local a = fake.new{ clock = clock, responses = { { status = 429, headers = { ["retry-after"] = "60" }, body = "{}" } } }
            local b = fake.new{ clock = clock }
            local res = fake.run(clock, {
                function() local _, e = github.new(a):create_comment("o/r", 7, "a"); return e.kind end,
                function() local _, e = github.new(b):create_comment("o/r", 7, "b"); return e.kind end,
            })
            assert.same({ "rate_limited", "rate_limited" }, res)
            assert.equal(0, #b.requests)
        end)
    end)
end)
