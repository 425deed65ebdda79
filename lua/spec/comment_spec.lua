-- comment_spec.lua - lua/comment.lua, the GitHub Comment controller, through
-- the real runtime (informers, workqueue, finalizer handling, sandbox, ctx)
-- against klua test's API and a stand-in GitHub at http://gh.test.
--   bin/klua test lua --crds crds              (in-memory API)
--   bin/klua test lua --crds crds --cluster    (the local control plane)
-- The busted specs in spec/lua/ test the same controller piece by piece
-- against a fake ctx; these test it as klua runs it.
local json = require "klua.json"

local COMMENT = { apiVersion = "github.klua.dev/v1", kind = "Comment" }
local TOKEN = "tok-SECRET-123"
local GH = "http://gh.test"

-- An in-memory GitHub: issue comments with per_page/page and Link headers.
-- `fail(method, path)` -> response lets a test inject an answer.
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

describe("the Comment controller", function()
  local gh
  before_each(function(kt)
    gh = new_github()
    kt.setenv("GITHUB_API_URL", GH)
    kt.setenv("KLUA_GITHUB_MIN_GAP", "1")
    kt.secret("github_token", TOKEN)
    kt.http.serve(GH, gh.handler)
  end)

  it("posts a new Comment with its marker, records status, an Event and a finalizer", function(kt)
    local c = kt.create(comment())
    kt.run()
    assert.equal(1, #gh.comments)
    assert.equal("Hello from klua!\n\n" .. marker(c), gh.comments[1].body)
    local got = kt.get(c)
    assert.equal(3000000001, got.status.commentID)
    assert.equal("https://github.com/o/r/issues/7#issuecomment-3000000001", got.status.url)
    assert.equal(got.metadata.generation, got.status.observedGeneration)
    assert.equal("True", delivered(got).status)
    assert.equal("Posted", delivered(got).reason)
    assert.same({ "klua.dev/comment" }, got.metadata.finalizers)
    assert.equal("Posted", reasons(kt, got))
    -- the token went to GitHub, as a bearer token
    assert.equal("Bearer " .. TOKEN, kt.http.calls[1].headers["authorization"])
    -- level-based: later resyncs and events ask GitHub nothing more
    local n = #gh.requests
    kt.advance(600)
    assert.equal(n, #gh.requests)
  end)

  it("adopts a marked comment found on page 2 instead of posting again", function(kt)
    local c = kt.create(comment())
    -- a comment a crashed klua posted before recording it (uid known only now)
    for i = 1, 150 do gh.add("o/r", 7, "someone else " .. i) end
    gh.add("o/r", 7, "Hello from klua!\n\n" .. marker(c))
    kt.run()
    assert.equal(151, #gh.comments)
    assert.equal("Adopted", delivered(kt.get(c)).reason)
  end)

  it("edits the comment when the message changes, posting nothing new", function(kt)
    local c = kt.create(comment())
    kt.run()
    kt.advance(1) -- the 1 s gap between mutating requests
    kt.patch(c, { spec = { message = "Edited" } })
    kt.run()
    assert.equal(1, #gh.comments)
    assert.equal("Edited\n\n" .. marker(c), gh.comments[1].body)
    local got = kt.get(c)
    assert.equal(2, got.status.observedGeneration)
    assert.equal("Updated", delivered(got).reason)
    assert.equal("Posted Updated", reasons(kt, got))
  end)

  it("with deletionPolicy Delete removes the GitHub comment before the Comment goes", function(kt)
    local c = kt.create(comment("bye", { deletionPolicy = "Delete" }))
    kt.run()
    assert.equal(1, #gh.comments)
    kt.delete(c)
    kt.run()
    assert.equal(0, #gh.comments)
    local gone, err = kt.get(c)
    assert.is_nil(gone)
    assert.equal("NotFound", err.reason)
  end)

  it("with Retain (the default) leaves GitHub alone on delete", function(kt)
    local c = kt.create(comment())
    kt.run()
    kt.delete(c)
    kt.run()
    assert.equal(1, #gh.comments)
    assert.is_nil(kt.get(c))
  end)

  describe("on GitHub errors", function()
    it("404 sets IssueNotFound once, then retries only after five minutes", function(kt)
      gh.fail = function() return { status = 404, body = { message = "Not Found" } } end
      local c = kt.create(comment())
      kt.run()
      local d = delivered(kt.get(c))
      assert.equal("False", d.status)
      assert.equal("IssueNotFound", d.reason)
      assert.matches("check spec.repository and spec.issue", d.message)
      assert.equal("IssueNotFound", reasons(kt, c))
      local n = #gh.requests
      kt.advance(299)
      assert.equal(n, #gh.requests)
      gh.fail = nil -- the issue exists now
      kt.advance(1)
      assert.equal("True", delivered(kt.get(c)).status)
      assert.equal(1, #gh.comments)
    end)

    it("401 sets Unauthorized and the token appears in no status or Event", function(kt)
      gh.fail = function() return { status = 401, body = { message = "Bad credentials " .. TOKEN } } end
      local c = kt.create(comment())
      kt.run()
      local got = kt.get(c)
      assert.equal("Unauthorized", delivered(got).reason)
      assert.is_nil(json.encode(got):find(TOKEN, 1, true))
      assert.is_nil(json.encode(kt.events(got)):find(TOKEN, 1, true))
    end)

    it("429 waits for Retry-After, sending nothing meanwhile", function(kt)
      gh.fail = function() return { status = 429, headers = { ["retry-after"] = "30" }, body = { message = "slow down" } } end
      local c = kt.create(comment())
      kt.run()
      assert.equal("RateLimited", delivered(kt.get(c)).reason)
      gh.fail = nil
      local n = #gh.requests
      kt.advance(29)
      assert.equal(n, #gh.requests)
      kt.advance(1)
      assert.equal("True", delivered(kt.get(c)).status)
    end)

    it("5xx sets GitHubUnavailable and delivers once GitHub is back", function(kt)
      gh.fail = function() return { status = 503, body = { message = "Service Unavailable" } } end
      local c = kt.create(comment())
      kt.run()
      assert.equal("GitHubUnavailable", delivered(kt.get(c)).reason)
      gh.fail = nil
      kt.advance(10)
      assert.equal("True", delivered(kt.get(c)).status)
      assert.equal(1, #gh.comments)
    end)
  end)
end)
