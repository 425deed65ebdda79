-- comment_spec.lua - lua/comment.lua, the GitHub Comment controller, against
-- a small in-memory GitHub behind the fake ctx.
package.path = "lua/lib/?.lua;spec/lua/support/?.lua;" .. package.path
local fake = require "fake_ctx"
local json = require "klua.json"   -- the codec klua runs (lua-cjson is not a dependency)
local github = require "klua.github"

-- reloaded before each test: the controller keeps per-object retry times
local controller = dofile("lua/comment.lua")
local TOKEN = "tok-SECRET-123"
local UID = "0b7a52c4-1111-2222-3333-444455556666"
local MARK = "<!-- klua:comment-uid=" .. UID .. " -->"

-- An in-memory GitHub: issue comments with per_page/page and Link headers.
-- `fail` (method, path) -> response lets a test inject an answer.
local function new_github()
    local gh = { comments = {}, next_id = 3000000001, fail = nil }
    function gh.add(repo, issue, body)
        local c = { id = gh.next_id, repo = repo, issue = issue, body = body }
        gh.next_id = gh.next_id + 1
        gh.comments[#gh.comments + 1] = c
        return c
    end
    local function out(c)
        return { id = c.id, body = c.body,
                 html_url = string.format("https://github.com/%s/issues/%d#issuecomment-%d", c.repo, c.issue, c.id) }
    end
    function gh.handler(req)
        local path = req.url:gsub("^https://gh%.test", "")
        if gh.fail then
            local r = gh.fail(req.method, path)
            if r then return r end
        end
        local repo, issue, query = path:match("^/repos/([^/]+/[^/]+)/issues/(%d+)/comments%??(.*)$")
        if repo and req.method == "POST" then
            return { status = 201, body = out(gh.add(repo, tonumber(issue), json.decode(req.body).body)) }
        elseif repo and req.method == "GET" then
            local per_page = tonumber(query:match("per_page=(%d+)")) or 30
            local page = tonumber(("&" .. query):match("&page=(%d+)")) or 1
            local mine = {}
            for _, c in ipairs(gh.comments) do
                if c.repo == repo and c.issue == tonumber(issue) then mine[#mine + 1] = out(c) end
            end
            local items = {}
            for i = (page - 1) * per_page + 1, math.min(page * per_page, #mine) do items[#items + 1] = mine[i] end
            local h = {}
            if page * per_page < #mine then
                h.link = string.format('<https://gh.test/repos/%s/issues/%s/comments?per_page=%d&page=%d>; rel="next"',
                    repo, issue, per_page, page + 1)
            end
            return { status = 200, headers = h, body = fake.json(items) }
        end
        local crepo, id = path:match("^/repos/([^/]+/[^/]+)/issues/comments/(%d+)$")
        for i, c in ipairs(gh.comments) do
            if crepo and c.id == tonumber(id) and c.repo == crepo then
                if req.method == "PATCH" then
                    c.body = json.decode(req.body).body
                    return { status = 200, body = out(c) }
                elseif req.method == "DELETE" then
                    table.remove(gh.comments, i)
                    return { status = 204 }
                end
            end
        end
        return { status = 404, body = { message = "Not Found" } }
    end
    return gh
end

local function comment(over)
    local obj = {
        apiVersion = "github.klua.dev/v1", kind = "Comment",
        metadata = { name = "hello", namespace = "default", uid = UID, generation = 1 },
        spec = { repository = "o/r", issue = 7, message = "Hello from klua!", deletionPolicy = "Retain" },
    }
    for k, v in pairs(over or {}) do obj[k] = v end
    -- as klua hands it over: decoded from JSON (numbers are floats)
    return json.decode(json.encode(obj))
end

local function setup(gh, opts)
    opts = opts or {}
    return fake.new{ handler = gh.handler, secrets = opts.secrets, now = opts.now }
end

local function methods(ctx)
    local m = {}
    for _, r in ipairs(ctx.requests) do m[#m + 1] = r.method end
    return table.concat(m, " ")
end

local function delivered(status)
    for _, c in ipairs(status.conditions or {}) do
        if c.type == "Delivered" then return c end
    end
end

describe("comment controller", function()
    before_each(function()
        github._reset()
        controller = dofile("lua/comment.lua")
    end)

    it("declares what it watches, its workers and a finalizer", function()
        assert.same({ apiVersion = "github.klua.dev/v1", kind = "Comment" }, controller.watch)
        assert.equal(4, controller.workers)
        assert.is_function(controller.reconcile)
        assert.is_function(controller.finalize)
    end)

    it("posts a new Comment with the marker and records status", function()
        local gh = new_github()
        local ctx = setup(gh)
        assert.is_nil(controller.reconcile(ctx, comment()))
        assert.equal("GET POST", methods(ctx))
        assert.equal(1, #gh.comments)
        assert.equal("Hello from klua!\n\n" .. MARK, gh.comments[1].body)
        assert.equal(1, #ctx.statuses)
        local st = ctx.statuses[1]
        assert.equal(3000000001, st.commentID)
        assert.equal("integer", math.type(st.commentID))
        assert.equal("https://github.com/o/r/issues/7#issuecomment-3000000001", st.url)
        assert.equal(1, st.observedGeneration)
        local d = delivered(st)
        assert.same({ type = "Delivered", status = "True", reason = "Posted", observedGeneration = 1,
            message = "comment posted to o/r issue 7: https://github.com/o/r/issues/7#issuecomment-3000000001",
            lastTransitionTime = "2023-11-14T22:13:20Z" }, d)
        -- the status is valid JSON for the CRD: commentID an integer
        assert.matches('"commentID":3000000001[,}]', json.encode(st))
        assert.same({ type = "Normal", reason = "Posted", message = d.message }, ctx.events[1])
    end)

    it("does nothing when status already shows this generation delivered", function()
        local gh = new_github()
        local ctx = setup(gh)
        local obj = comment()
        controller.reconcile(ctx, obj)   -- obj.status is now what the API server holds
        obj = json.decode(json.encode(obj))
        local again = setup(gh)
        assert.is_nil(controller.reconcile(again, obj))
        assert.equal(0, #again.requests)
        assert.equal(0, #again.statuses)
    end)

    it("adopts a marked comment found on page 2 instead of posting again", function()
        local gh = new_github()
        for i = 1, 150 do gh.add("o/r", 7, "someone else " .. i) end
        local mine = gh.add("o/r", 7, "Hello from klua!\n\n" .. MARK)
        gh.add("o/r", 7, "after")
        local ctx = setup(gh)
        assert.is_nil(controller.reconcile(ctx, comment()))
        assert.equal("GET GET", methods(ctx))
        assert.matches("page=2", ctx.requests[2].url)
        assert.equal(152, #gh.comments)
        assert.equal(mine.id, ctx.statuses[1].commentID)
        assert.equal("Adopted", delivered(ctx.statuses[1]).reason)
    end)

    it("adopting a comment whose message changed meanwhile edits it", function()
        local gh = new_github()
        local mine = gh.add("o/r", 7, "old text\n\n" .. MARK)
        local ctx = setup(gh)
        controller.reconcile(ctx, comment())
        assert.equal("GET PATCH", methods(ctx))
        assert.equal("Hello from klua!\n\n" .. MARK, mine.body)
    end)

    it("edits the comment when the message changes", function()
        local gh = new_github()
        local c = gh.add("o/r", 7, "Hello from klua!\n\n" .. MARK)
        local obj = comment{ status = { commentID = c.id, url = "https://github.com/o/r/issues/7#issuecomment-" .. c.id,
            observedGeneration = 1, conditions = { { type = "Delivered", status = "True", reason = "Posted",
            message = "", lastTransitionTime = "2023-01-01T00:00:00Z" } } } }
        obj.metadata.generation = 2
        obj.spec.message = "Edited"
        local ctx = setup(gh)
        assert.is_nil(controller.reconcile(ctx, obj))
        assert.equal("PATCH", methods(ctx))
        assert.matches("/repos/o/r/issues/comments/3000000001$", ctx.requests[1].url)
        assert.equal("Edited\n\n" .. MARK, c.body)
        local st = ctx.statuses[1]
        assert.equal(2, st.observedGeneration)
        assert.equal("Updated", delivered(st).reason)
        assert.equal("2023-01-01T00:00:00Z", delivered(st).lastTransitionTime)
        assert.equal("Updated", ctx.events[1].reason)
    end)

    it("posts anew when the comment was deleted on GitHub (PATCH 404)", function()
        local gh = new_github()
        local obj = comment{ status = { commentID = 2999999999, observedGeneration = 1,
            url = "https://github.com/o/r/issues/7#issuecomment-2999999999" } }
        obj.metadata.generation = 2
        local ctx = setup(gh)
        assert.is_nil(controller.reconcile(ctx, obj))
        assert.equal("PATCH GET POST", methods(ctx))
        assert.equal(1, #gh.comments)
        assert.equal(3000000001, ctx.statuses[1].commentID)
        assert.equal("Posted", delivered(ctx.statuses[1]).reason)
    end)

    it("posts on the new issue when spec.issue moved (Retain leaves the old one)", function()
        local gh = new_github()
        local old = gh.add("o/r", 7, "Hello from klua!\n\n" .. MARK)
        local obj = comment{ status = { commentID = old.id, observedGeneration = 1,
            url = "https://github.com/o/r/issues/7#issuecomment-" .. old.id } }
        obj.metadata.generation = 2
        obj.spec.issue = 8
        local ctx = setup(gh)
        controller.reconcile(ctx, obj)
        assert.equal("GET POST", methods(ctx))
        assert.equal(2, #gh.comments)
        assert.equal(8, gh.comments[2].issue)
    end)

    it("a failed status write requeues, and the retry adopts instead of posting twice", function()
        local gh = new_github()
        local ctx = setup(gh)
        ctx.status_error = setmetatable({ code = 500, reason = "InternalError", message = "etcd" },
            { __tostring = function() return "InternalError: etcd (500)" end })
        assert.same({ requeue = true }, controller.reconcile(ctx, comment()))
        local retry = setup(gh)
        controller.reconcile(retry, comment())
        assert.equal(1, #gh.comments)
        assert.equal("GET", methods(retry))
        assert.equal("Adopted", delivered(retry.statuses[1]).reason)
    end)

    describe("on GitHub errors", function()
        it("404 sets IssueNotFound with a message to act on, once, and retries slowly", function()
            local gh = new_github()
            gh.fail = function() return { status = 404, body = { message = "Not Found" } } end
            local ctx = setup(gh)
            assert.same({ requeue_after = 300 }, controller.reconcile(ctx, comment()))
            local d = delivered(ctx.statuses[1])
            assert.equal("False", d.status)
            assert.equal("IssueNotFound", d.reason)
            assert.equal("GitHub answered 404 Not Found for o/r issue 7: check spec.repository and spec.issue, "
                .. "and that the token can see the repository", d.message)
            assert.is_nil(ctx.statuses[1].commentID)
            assert.same({ type = "Warning", reason = "IssueNotFound", message = d.message }, ctx.events[1])
            -- the same failure again: no status write, no new Event
            local obj = comment{ status = ctx.statuses[1] }
            local again = setup(gh)
            assert.same({ requeue_after = 300 }, controller.reconcile(again, obj))
            assert.equal(0, #again.statuses)
            assert.equal(0, #again.events)
        end)

        it("401 sets Unauthorized and the token appears nowhere", function()
            local gh = new_github()
            gh.fail = function() return { status = 401, body = { message = "Bad credentials " .. TOKEN } } end
            local ctx = setup(gh)
            assert.same({ requeue_after = 300 }, controller.reconcile(ctx, comment()))
            local d = delivered(ctx.statuses[1])
            assert.equal("Unauthorized", d.reason)
            assert.matches("--secret github_token=FILE, --github-token-file or GITHUB_TOKEN", d.message, 1, true)
            assert.is_nil(ctx:transcript():find(TOKEN, 1, true))
        end)

        it("without a token sets Unauthorized and sends nothing", function()
            local gh = new_github()
            local ctx = setup(gh, { secrets = {} })
            assert.same({ requeue_after = 300 }, controller.reconcile(ctx, comment()))
            assert.equal(0, #ctx.requests)
            assert.equal("Unauthorized", delivered(ctx.statuses[1]).reason)
        end)

        it("403 without limit signs sets Forbidden", function()
            local gh = new_github()
            gh.fail = function(m) if m == "POST" then return { status = 403, body = { message = "Resource not accessible by integration" } } end end
            local ctx = setup(gh)
            assert.same({ requeue_after = 300 }, controller.reconcile(ctx, comment()))
            assert.equal("Forbidden", delivered(ctx.statuses[1]).reason)
        end)

        it("422 sets Invalid", function()
            local gh = new_github()
            gh.fail = function(m) if m == "POST" then return { status = 422, body = { message = "Validation Failed" } } end end
            local ctx = setup(gh)
            controller.reconcile(ctx, comment())
            assert.equal("Invalid", delivered(ctx.statuses[1]).reason)
        end)

        it("429 requeues after Retry-After, and meanwhile sends nothing and writes nothing", function()
            local gh = new_github()
            gh.fail = function() return { status = 429, headers = { ["retry-after"] = "30" }, body = { message = "slow down" } } end
            local ctx = setup(gh)
            assert.same({ requeue_after = 30 }, controller.reconcile(ctx, comment()))
            local d = delivered(ctx.statuses[1])
            assert.equal("RateLimited", d.reason)
            assert.equal("Warning", ctx.events[1].type)
            local other = setup(gh)
            other.clock.t = ctx.clock.t + 10
            local res = controller.reconcile(other, comment{ status = ctx.statuses[1] })
            assert.same({ requeue_after = 20 }, res)
            assert.equal(0, #other.requests)
            assert.equal(0, #other.statuses)
        end)

        it("5xx sets GitHubUnavailable and requeues with a short backoff", function()
            local gh = new_github()
            gh.fail = function() return { status = 503, body = { message = "Service Unavailable" } } end
            local ctx = setup(gh)
            local res = controller.reconcile(ctx, comment())
            assert.is_true(res.requeue_after >= 2 and res.requeue_after <= 3)
            assert.equal("GitHubUnavailable", delivered(ctx.statuses[1]).reason)
            -- GitHub is back: once the backoff has passed, delivered, with the
            -- condition flipped to True
            gh.fail = nil
            local later = setup(gh)
            later.clock.t = ctx.clock.t + res.requeue_after
            assert.is_nil(controller.reconcile(later, comment{ status = ctx.statuses[1] }))
            assert.equal("True", delivered(later.statuses[1]).status)
        end)
    end)

    describe("finalize", function()
        local function posted(gh, policy)
            local c = gh.add("o/r", 7, "Hello from klua!\n\n" .. MARK)
            local obj = comment{ status = { commentID = c.id, observedGeneration = 1 } }
            obj.spec.deletionPolicy = policy
            return obj
        end

        it("with Delete removes the GitHub comment and lets the finalizer go", function()
            local gh = new_github()
            local ctx = setup(gh)
            assert.is_nil(controller.finalize(ctx, posted(gh, "Delete")))
            assert.equal("DELETE", methods(ctx))
            assert.equal(0, #gh.comments)
        end)

        it("with Delete treats an already deleted comment as done", function()
            local gh = new_github()
            local obj = posted(gh, "Delete")
            gh.comments = {}
            assert.is_nil(controller.finalize(setup(gh), obj))
        end)

        it("with Delete keeps the finalizer while GitHub fails", function()
            local gh = new_github()
            local obj = posted(gh, "Delete")
            gh.fail = function() return { status = 502, body = "bad gateway" } end
            local res = controller.finalize(setup(gh), obj)
            assert.is_true(res.requeue_after >= 2)
            assert.equal(1, #gh.comments)
        end)

        it("with Delete and no recorded id finds the comment by its marker", function()
            local gh = new_github()
            posted(gh, "Delete")
            local obj = comment()
            obj.spec.deletionPolicy = "Delete"
            local ctx = setup(gh)
            assert.is_nil(controller.finalize(ctx, obj))
            assert.equal("GET DELETE", methods(ctx))
            assert.equal(0, #gh.comments)
        end)

        it("with Retain (the default) leaves GitHub alone", function()
            local gh = new_github()
            local obj = posted(gh, "Retain")
            local ctx = setup(gh)
            assert.is_nil(controller.finalize(ctx, obj))
            obj.spec.deletionPolicy = nil
            assert.is_nil(controller.finalize(ctx, obj))
            assert.equal(0, #ctx.requests)
            assert.equal(1, #gh.comments)
        end)
    end)
end)
