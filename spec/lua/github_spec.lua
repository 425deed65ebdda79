-- github_spec.lua - klua.github: the two rules of the client that klua test
-- cannot show through the Comment controller (lua/spec/github_spec.lua has the
-- rest, through the real runtime): a repeated secondary limit doubles the
-- wait (the controller's GET before each POST succeeds and resets it), and a
-- mutating request that outlasts the gap still holds the next one (klua
-- test's stand-in answers at once; here the fake ctx gives each exchange a
-- latency on a virtual clock).
package.path = "lua/lib/?.lua;spec/lua/support/?.lua;" .. package.path
local fake = require "fake_ctx"
local github = require "klua.github"

local COMMENT = { id = 3000000001, body = "hi", html_url = "https://github.com/o/r/issues/7#issuecomment-3000000001" }

local function gh_body(msg) return { message = msg, documentation_url = "https://docs.github.com/rest" } end

describe("klua.github", function()
    before_each(function() github._reset() end)

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
end)
