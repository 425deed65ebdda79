-- comment_spec.lua - lua/comment.lua, the GitHub Comment controller, through
-- the real runtime (informers, workqueue, finalizer handling, sandbox, ctx,
-- klua.json) against klua test's API and a stand-in GitHub at http://gh.test.
--   bin/klua test lua --crds crds              (in-memory API)
--   bin/klua test lua --crds crds --cluster    (the local control plane)
-- What each test checks is what a user sees: the requests GitHub gets, the
-- Comment's status and Events, and when klua tries again.
local json = require "klua.json"

local COMMENT = { apiVersion = "github.klua.dev/v1", kind = "Comment" }
local TOKEN = "tok-SECRET-123"
local GH = "http://gh.test"

-- An in-memory GitHub: issue comments with per_page/page and Link headers.
-- `fail(method, path)` -> response lets a test inject an answer; every
-- request is recorded as "METHOD path" in `requests`.
local function new_github()
  local gh = { comments = {}, next_id = 3000000001, fail = nil, requests = {} }
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
    local path = req.url:sub(#GH + 1)
    gh.requests[#gh.requests + 1] = req.method .. " " .. path
    if gh.fail then
      local r = gh.fail(req.method, path)
      if r then return r end
    end
    local repo, issue, query = path:match("^/repos/([^/]+/[^/]+)/issues/(%d+)/comments%??(.*)$")
    if repo and req.method == "POST" then
      return { status = 201, body = out(gh.add(repo, tonumber(issue), req.json.body)) }
    elseif repo and req.method == "GET" then
      local per_page = tonumber(query:match("per_page=(%d+)")) or 30
      local page = tonumber(("&" .. query):match("&page=(%d+)")) or 1
      local mine = {}
      for _, c in ipairs(gh.comments) do
        if c.repo == repo and c.issue == tonumber(issue) then mine[#mine + 1] = out(c) end
      end
      local items = json.array({})
      for i = (page - 1) * per_page + 1, math.min(page * per_page, #mine) do items[#items + 1] = mine[i] end
      local h = {}
      if page * per_page < #mine then
        h.link = string.format('<%s/repos/%s/issues/%s/comments?per_page=%d&page=%d>; rel="next"',
          GH, repo, issue, per_page, page + 1)
      end
      return { status = 200, headers = h, body = items }
    end
    local crepo, id = path:match("^/repos/([^/]+/[^/]+)/issues/comments/(%d+)$")
    for i, c in ipairs(gh.comments) do
      if crepo and c.id == tonumber(id) and c.repo == crepo then
        if req.method == "PATCH" then
          c.body = req.json.body
          return { status = 200, body = out(c) }
        elseif req.method == "DELETE" then
          table.remove(gh.comments, i)
          return { status = 204 }
        end
      end
    end
    return { status = 404, body = { message = "Not Found" } }
  end
  --- The methods GitHub was asked for since request n ("GET POST").
  function gh.methods(n)
    local m = {}
    for i = (n or 0) + 1, #gh.requests do m[#m + 1] = gh.requests[i]:match("^%S+") end
    return table.concat(m, " ")
  end
  return gh
end

local function comment(name, over)
  local obj = { apiVersion = "github.klua.dev/v1", kind = "Comment", metadata = { name = name or "hello" },
                spec = { repository = "o/r", issue = 7, message = "Hello from klua!" } }
  for k, v in pairs(over or {}) do obj.spec[k] = v end
  return obj
end

local function delivered(obj)
  for _, c in ipairs((obj.status or {}).conditions or {}) do
    if c.type == "Delivered" then return c end
  end
end

local function marker(obj) return "<!-- klua:comment-uid=" .. obj.metadata.uid .. " -->" end

local function reasons(kt, obj)
  local r = {}
  for _, e in ipairs(kt.events(obj)) do r[#r + 1] = e.reason end
  return table.concat(r, " ")
end

local function rfc3339(t) return os.date("!%Y-%m-%dT%H:%M:%SZ", math.floor(t)) end

local function serve(kt, gh)
  kt.setenv("GITHUB_API_URL", GH)
  kt.setenv("KLUA_GITHUB_MIN_GAP", "1")
  kt.http.serve(GH, gh.handler)
end

-- Creates a Comment and runs until it is delivered; returns it as stored.
local function posted(kt, gh, name, over)
  local c = kt.create(comment(name, over))
  kt.run()
  local got = kt.get(c)
  assert.equal("True", delivered(got).status, "delivered first")
  kt.advance(1) -- the 1 s gap between mutating requests
  return got
end

describe("the Comment controller", function()
  local gh
  before_each(function(kt)
    gh = new_github()
    serve(kt, gh)
    kt.secret("github_token", TOKEN)
  end)

  it("declares 4 workers and is loaded as klua loads it", function()
    -- what the watch and the finalizer do is what the tests below see
    local here = debug.getinfo(1, "S").source:match("^@(.*)/spec/[^/]*$") or "lua"
    local decl = dofile(here .. "/comment.lua")
    assert.same(COMMENT, decl.watch)
    assert.equal(4, decl.workers)
  end)

  it("posts a new Comment with its marker, records status, an Event and a finalizer", function(kt)
    local t0 = kt.now()
    local c = kt.create(comment())
    kt.run()
    local t1 = kt.now()
    assert.equal("GET POST", gh.methods())
    assert.equal(1, #gh.comments)
    assert.equal("Hello from klua!\n\n" .. marker(c), gh.comments[1].body)
    local got = kt.get(c)
    assert.equal(3000000001, got.status.commentID)
    assert.equal("integer", math.type(got.status.commentID))
    assert.equal("https://github.com/o/r/issues/7#issuecomment-3000000001", got.status.url)
    assert.equal(1, got.status.observedGeneration)
    local d = delivered(got)
    local when = d.lastTransitionTime
    assert.truthy(when == rfc3339(t0) or when == rfc3339(t1) or (when > rfc3339(t0) and when < rfc3339(t1)),
      "lastTransitionTime " .. tostring(when) .. " is not between " .. rfc3339(t0) .. " and " .. rfc3339(t1))
    assert.same({ type = "Delivered", status = "True", reason = "Posted", observedGeneration = 1,
      message = "comment posted to o/r issue 7: https://github.com/o/r/issues/7#issuecomment-3000000001",
      lastTransitionTime = when }, d)
    assert.same({ "klua.dev/comment" }, got.metadata.finalizers)
    local ev = kt.events(got)
    assert.equal(1, #ev)
    assert.equal("Normal", ev[1].type)
    assert.equal("Posted", ev[1].reason)
    assert.equal(d.message, ev[1].note)
    -- the token went to GitHub, as a bearer token
    assert.equal("Bearer " .. TOKEN, kt.http.calls[1].headers["authorization"])
    -- level-based: later resyncs and events ask GitHub nothing more
    local n = #gh.requests
    kt.advance(600)
    assert.equal(n, #gh.requests)
  end)

  it("does nothing when status already shows this generation delivered", function(kt)
    local c = posted(kt, gh)
    local n = #gh.requests
    -- a change that is not the spec's reaches reconcile, which finds nothing to do
    local labelled = kt.patch(c, { metadata = { labels = { team = "docs" } } })
    kt.run()
    assert.equal(n, #gh.requests)
    local got = kt.get(c)
    assert.equal(labelled.metadata.resourceVersion, got.metadata.resourceVersion) -- no status write
    assert.equal("Posted", reasons(kt, got))
  end)

  it("adopts a marked comment found on page 2 instead of posting again", function(kt)
    local c = kt.create(comment())
    -- a comment a crashed klua posted before recording it (uid known only now)
    for i = 1, 150 do gh.add("o/r", 7, "someone else " .. i) end
    local mine = gh.add("o/r", 7, "Hello from klua!\n\n" .. marker(c))
    gh.add("o/r", 7, "after")
    kt.run()
    assert.equal("GET GET", gh.methods())
    assert.matches("page=2", gh.requests[2])
    assert.equal(152, #gh.comments)
    local got = kt.get(c)
    assert.equal(mine.id, got.status.commentID)
    assert.equal("Adopted", delivered(got).reason)
    assert.equal("Adopted", reasons(kt, got))
  end)

  it("adopting a comment whose message changed meanwhile edits it", function(kt)
    local c = kt.create(comment())
    local mine = gh.add("o/r", 7, "old text\n\n" .. marker(c))
    kt.run()
    assert.equal("GET PATCH", gh.methods())
    assert.equal("PATCH /repos/o/r/issues/comments/" .. mine.id, gh.requests[2])
    assert.equal("Hello from klua!\n\n" .. marker(c), mine.body)
    assert.equal(1, #gh.comments)
    assert.equal("Adopted", delivered(kt.get(c)).reason)
  end)

  it("edits the comment when the message changes, posting nothing new", function(kt)
    local c = posted(kt, gh)
    local first = delivered(c).lastTransitionTime
    local n = #gh.requests
    kt.patch(c, { spec = { message = "Edited" } })
    kt.run()
    assert.equal("PATCH", gh.methods(n))
    assert.equal("PATCH /repos/o/r/issues/comments/3000000001", gh.requests[n + 1])
    assert.equal(1, #gh.comments)
    assert.equal("Edited\n\n" .. marker(c), gh.comments[1].body)
    local got = kt.get(c)
    assert.equal(2, got.status.observedGeneration)
    assert.equal("Updated", delivered(got).reason)
    assert.equal(first, delivered(got).lastTransitionTime) -- still True: the time stays
    assert.equal("Posted Updated", reasons(kt, got))
  end)

  it("posts anew when the comment was deleted on GitHub (PATCH 404)", function(kt)
    local c = posted(kt, gh)
    gh.comments = {} -- someone deleted it on GitHub
    local n = #gh.requests
    kt.patch(c, { spec = { message = "Edited" } })
    kt.run()
    assert.equal("PATCH GET POST", gh.methods(n))
    assert.equal(1, #gh.comments)
    assert.equal("Edited\n\n" .. marker(c), gh.comments[1].body)
    local got = kt.get(c)
    assert.equal(3000000002, got.status.commentID)
    assert.equal("Posted", delivered(got).reason)
  end)

  it("posts on the new issue when spec.issue moved (Retain leaves the old one)", function(kt)
    local c = posted(kt, gh)
    local n = #gh.requests
    kt.patch(c, { spec = { issue = 8 } })
    kt.run()
    assert.equal("GET POST", gh.methods(n))
    assert.equal("POST /repos/o/r/issues/8/comments", gh.requests[n + 2])
    assert.equal(2, #gh.comments)
    assert.equal(7, gh.comments[1].issue)
    assert.equal(8, gh.comments[2].issue)
    local got = kt.get(c)
    assert.equal("https://github.com/o/r/issues/8#issuecomment-3000000002", got.status.url)
    assert.equal("Posted", delivered(got).reason)
  end)

  it("a failed status write requeues, and the retry adopts instead of posting twice", function(kt)
    if kt.cluster then kt.skip("the real API server cannot be told to fail a status write") end
    kt.api.fail({ method = "PATCH", match = "/comments/hello/status", status = 500, message = "etcd" })
    -- the finalizer already on: no write of klua's own wakes the key, only the requeue
    local obj = comment()
    obj.metadata.finalizers = { "klua.dev/comment" }
    local c = kt.create(obj)
    kt.run()
    assert.equal("GET POST GET", gh.methods())
    assert.equal(1, #gh.comments)
    local got = kt.get(c)
    assert.equal(3000000001, got.status.commentID)
    assert.equal("Adopted", delivered(got).reason)
  end)

  it("with deletionPolicy Delete removes the GitHub comment before the Comment goes", function(kt)
    local c = posted(kt, gh, "bye", { deletionPolicy = "Delete" })
    local n = #gh.requests
    kt.delete(c)
    kt.run()
    assert.equal("DELETE", gh.methods(n))
    assert.equal("DELETE /repos/o/r/issues/comments/3000000001", gh.requests[n + 1])
    assert.equal(0, #gh.comments)
    local gone, err = kt.get(c)
    assert.is_nil(gone)
    assert.equal("NotFound", err.reason)
    assert.equal("Posted Deleted", reasons(kt, c))
  end)

  it("with Delete treats a comment already deleted on GitHub as done", function(kt)
    local c = posted(kt, gh, "bye", { deletionPolicy = "Delete" })
    gh.comments = {}
    local n = #gh.requests
    kt.delete(c)
    kt.run()
    assert.equal("DELETE", gh.methods(n))
    local gone, err = kt.get(c)
    assert.is_nil(gone)
    assert.equal("NotFound", err.reason)
  end)

  it("with Delete keeps the finalizer while GitHub fails", function(kt)
    local c = posted(kt, gh, "bye", { deletionPolicy = "Delete" })
    gh.fail = function() return { status = 502, body = "bad gateway" } end
    local n = #gh.requests
    kt.delete(c)
    kt.run()
    assert.equal("DELETE", gh.methods(n))
    local held = kt.get(c)
    assert.not_nil(held, "the Comment is still there")
    assert.not_nil(held.metadata.deletionTimestamp)
    assert.same({ "klua.dev/comment" }, held.metadata.finalizers)
    assert.equal("GitHubUnavailable", delivered(held).reason)
    assert.equal(1, #gh.comments)
    -- backs off (2 to 3 s) before asking again
    kt.advance(1.5)
    assert.equal("DELETE", gh.methods(n))
    gh.fail = nil
    kt.advance(1.6)
    assert.equal(0, #gh.comments)
    assert.is_nil(kt.get(c))
  end)

  it("with Delete and no recorded id finds the comment by its marker", function(kt)
    -- never delivered (GitHub was down), yet posted: a crash before the status write
    gh.fail = function() return { status = 503, body = { message = "Service Unavailable" } } end
    local c = kt.create(comment("bye", { deletionPolicy = "Delete" }))
    kt.run()
    assert.is_nil(kt.get(c).status.commentID)
    local mine = gh.add("o/r", 7, "Hello from klua!\n\n" .. marker(c))
    gh.fail = nil
    local n = #gh.requests
    kt.delete(c)
    kt.advance(5)
    -- one DELETE, of the marked comment (on a real API server the finalizer's
    -- removal may be retried, looking once more and finding nothing)
    assert.matches("^GET DELETE[GET ]*$", gh.methods(n))
    assert.equal("DELETE /repos/o/r/issues/comments/" .. mine.id, gh.requests[n + 2])
    assert.equal(0, #gh.comments)
    assert.is_nil(kt.get(c))
  end)

  it("with Retain (the default) leaves GitHub alone on delete", function(kt)
    local a = posted(kt, gh)
    local b = posted(kt, gh, "kept", { deletionPolicy = "Retain" })
    local n = #gh.requests
    kt.delete(a)
    kt.delete(b)
    kt.run()
    assert.equal("", gh.methods(n))
    assert.equal(2, #gh.comments)
    assert.is_nil(kt.get(a))
    assert.is_nil(kt.get(b))
  end)

  describe("on GitHub errors", function()
    it("after a failure, its own status write does not call GitHub again; a spec change does", function(kt)
      gh.fail = function() return { status = 502, body = { message = "Bad Gateway" } } end
      local c = kt.create(comment())
      kt.run()
      -- one attempt, though the Delivered=False write came back as an update
      assert.equal("GET", gh.methods())
      assert.equal("GitHubUnavailable", delivered(kt.get(c)).reason)
      assert.equal("GitHubUnavailable", reasons(kt, c))
      -- a spec change (a new generation) is tried at once: the user may have fixed it
      kt.patch(c, { spec = { message = "Edited" } })
      kt.run()
      assert.equal("GET GET", gh.methods())
    end)

    it("404 sets IssueNotFound once, then retries only after five minutes", function(kt)
      gh.fail = function() return { status = 404, body = { message = "Not Found" } } end
      local c = kt.create(comment())
      kt.run()
      local got = kt.get(c)
      local d = delivered(got)
      assert.equal("False", d.status)
      assert.equal("IssueNotFound", d.reason)
      assert.equal("GitHub answered 404 Not Found for o/r issue 7: check spec.repository and spec.issue, "
        .. "and that the token can see the repository", d.message)
      assert.is_nil(got.status.commentID)
      local ev = kt.events(got)
      assert.equal(1, #ev)
      assert.equal("Warning", ev[1].type)
      assert.equal("IssueNotFound", ev[1].reason)
      assert.equal(d.message, ev[1].note)
      local n = #gh.requests
      kt.advance(299)
      assert.equal(n, #gh.requests)
      -- the same failure again: asked, but no status write and no new Event
      kt.advance(1)
      assert.equal("GET", gh.methods(n))
      assert.equal(got.metadata.resourceVersion, kt.get(c).metadata.resourceVersion)
      ev = kt.events(got)
      assert.equal(1, #ev)
      assert.is_nil(ev[1].series, "the Event was not repeated")
      gh.fail = nil -- the issue exists now
      kt.advance(300)
      assert.equal("True", delivered(kt.get(c)).status)
      assert.equal(1, #gh.comments)
    end)

    it("401 sets Unauthorized, says what to check, and the token appears in no status or Event", function(kt)
      gh.fail = function() return { status = 401, body = { message = "Bad credentials " .. TOKEN } } end
      local c = kt.create(comment())
      kt.run()
      local got = kt.get(c)
      local d = delivered(got)
      assert.equal("Unauthorized", d.reason)
      assert.truthy(d.message:find("--secret github_token=FILE, --github-token-file or GITHUB_TOKEN", 1, true),
        d.message)
      assert.is_nil(json.encode(got):find(TOKEN, 1, true))
      assert.is_nil(json.encode(kt.events(got)):find(TOKEN, 1, true))
    end)

    it("403 without rate-limit signs sets Forbidden and retries only after five minutes", function(kt)
      gh.fail = function(m)
        if m == "POST" then return { status = 403, body = { message = "Resource not accessible by integration" } } end
      end
      local c = kt.create(comment())
      kt.run()
      assert.equal("GET POST", gh.methods())
      local d = delivered(kt.get(c))
      assert.equal("Forbidden", d.reason)
      assert.equal("GitHub answered 403 Resource not accessible by integration for o/r issue 7: "
        .. "the token needs permission to write issues on the repository", d.message)
      local n = #gh.requests
      kt.advance(295)
      assert.equal(n, #gh.requests)
    end)

    it("422 sets Invalid", function(kt)
      gh.fail = function(m)
        if m == "POST" then return { status = 422, body = { message = "Validation Failed" } } end
      end
      local c = kt.create(comment())
      kt.run()
      local d = delivered(kt.get(c))
      assert.equal("Invalid", d.reason)
      assert.equal("GitHub refused the comment for o/r issue 7 (422 Validation Failed): check spec.message",
        d.message)
      assert.equal(0, #gh.comments)
    end)

    it("429 waits for Retry-After, sending and writing nothing meanwhile", function(kt)
      gh.fail = function() return { status = 429, headers = { ["retry-after"] = "30" }, body = { message = "slow down" } } end
      local c = kt.create(comment())
      kt.run()
      local got = kt.get(c)
      assert.equal("RateLimited", delivered(got).reason)
      local ev = kt.events(got)
      assert.equal("Warning", ev[1].type)
      assert.equal("RateLimited", ev[1].reason)
      gh.fail = nil
      local n = #gh.requests
      kt.advance(29)
      assert.equal(n, #gh.requests)
      assert.equal(got.metadata.resourceVersion, kt.get(c).metadata.resourceVersion)
      kt.advance(1)
      assert.equal("True", delivered(kt.get(c)).status)
    end)

    it("5xx sets GitHubUnavailable, backs off 2 to 3 s, and delivers once GitHub is back", function(kt)
      gh.fail = function() return { status = 503, body = { message = "Service Unavailable" } } end
      local c = kt.create(comment())
      kt.run()
      assert.equal("GitHubUnavailable", delivered(kt.get(c)).reason)
      local n = #gh.requests
      kt.advance(1.5)
      assert.equal(n, #gh.requests)
      gh.fail = nil
      kt.advance(1.6)
      local got = kt.get(c)
      assert.equal("True", delivered(got).status)
      assert.equal("Posted", delivered(got).reason)
      assert.equal(1, #gh.comments)
    end)
  end)
end)

describe("the Comment controller without a GitHub token", function()
  it("sets Unauthorized, sends nothing, and retries only after five minutes", function(kt)
    local gh = new_github()
    serve(kt, gh)
    local c = kt.create(comment())
    kt.run()
    assert.equal(0, #kt.http.calls)
    local d = delivered(kt.get(c))
    assert.equal("False", d.status)
    assert.equal("Unauthorized", d.reason)
    assert.matches("klua has no GitHub token", d.message)
    assert.equal("Unauthorized", reasons(kt, c))
    kt.advance(295)
    assert.equal(0, #kt.http.calls)
  end)
end)
