-- github_spec.lua - klua.github as the Comment controller uses it, through the
-- real runtime: what goes on the wire, paging that never leaves the server,
-- how GitHub's answers become the Comment's Delivered condition, the
-- per-token rate limits and the pacing of mutating requests, on klua test's
-- clock. Run as lua/spec/comment_spec.lua is (bin/klua test lua --crds crds).
local json = require "klua.json"

local GH = "http://gh.test"
local TOKEN = "tok-SECRET-456"
local LIST = "^http://gh%.test/repos/o/r/issues/7/comments%?"
local POST_URL = GH .. "/repos/o/r/issues/7/comments"

local function comment(name, over)
  local obj = { apiVersion = "github.klua.dev/v1", kind = "Comment", metadata = { name = name },
                spec = { repository = "o/r", issue = 7, message = "m " .. name } }
  for k, v in pairs(over or {}) do obj.spec[k] = v end
  return obj
end

local function delivered(obj)
  for _, c in ipairs((obj.status or {}).conditions or {}) do
    if c.type == "Delivered" then return c end
  end
end

local function marker(obj) return "<!-- klua:comment-uid=" .. obj.metadata.uid .. " -->" end

-- The calls made with that method (and URL pattern), in order.
local function calls_of(kt, method, pattern)
  local out = {}
  for _, c in ipairs(kt.http.calls) do
    if c.method == method and (not pattern or c.url:find(pattern)) then out[#out + 1] = c end
  end
  return out
end

describe("klua.github", function()
  local posts, next_id
  local function post(req)
    next_id = next_id + 1
    posts[#posts + 1] = { at = req.at, body = req.json.body }
    return { status = 201, body = { id = next_id, body = req.json.body,
                                     html_url = "https://github.com/o/r/issues/7#issuecomment-" .. next_id } }
  end
  -- GitHub's error body
  local function gh_body(msg) return { message = msg, documentation_url = "https://docs.github.com/rest" } end

  before_each(function(kt)
    posts, next_id = {}, 100
    kt.setenv("GITHUB_API_URL", GH)
    kt.setenv("KLUA_GITHUB_MIN_GAP", "1")
    kt.secret("github_token", TOKEN)
  end)

  describe("requests", function()
    it("sends the token as Bearer with GitHub's headers, and the body as JSON", function(kt)
      kt.http.expect({ method = "GET", url = POST_URL .. "?per_page=100&page=1", body = json.array({}) })
      kt.http.expect({ method = "POST", url = POST_URL, respond = post })
      local c = kt.create(comment("a"))
      kt.run()
      local h = kt.http.calls[2].headers
      assert.equal("Bearer " .. TOKEN, h["authorization"])
      assert.equal("application/vnd.github+json", h["accept"])
      assert.equal("2022-11-28", h["x-github-api-version"])
      assert.matches("^klua/%d+%.%d+%.%d+$", h["user-agent"])
      assert.same({ body = "m a\n\n" .. marker(c) }, kt.http.calls[2].json)
    end)

    it("strips a trailing slash from GITHUB_API_URL", function(kt)
      kt.setenv("GITHUB_API_URL", GH .. "/api/v3/")
      kt.http.expect({ method = "GET", url = GH .. "/api/v3/repos/o/r/issues/7/comments?per_page=100&page=1",
                       body = json.array({}) })
      kt.http.expect({ method = "POST", url = GH .. "/api/v3/repos/o/r/issues/7/comments", respond = post })
      local c = kt.create(comment("a"))
      kt.run()
      assert.equal("True", delivered(kt.get(c)).status)
    end)

    it("defaults to https://api.github.com; no answer backs off as long as the outage has lasted", function(kt)
      kt.setenv("GITHUB_API_URL", nil)
      kt.http.expect({ method = "CONNECT", url = "api.github.com:443", times = "any" })
      local c = kt.create(comment("a"))
      kt.run()
      local d = delivered(kt.get(c))
      assert.equal("GitHubUnavailable", d.reason)
      assert.matches("^GitHub could not be reached %(no answer from https://api%.github%.com", d.message)
      kt.advance(300)
      local tries = calls_of(kt, "CONNECT")
      assert.truthy(#tries >= 5, #tries .. " tries in 300 s")
      local t0 = tries[1].at
      for i = 2, #tries do
        -- the wait: the outage so far (2 s at least, 120 at most), plus up to 20 % jitter
        local want = math.min(math.max(tries[i - 1].at - t0, 2), 120)
        local gap = tries[i].at - tries[i - 1].at
        assert.truthy(gap >= want - 0.05 and gap <= math.ceil(want * 1.2) + 0.05,
          string.format("try %d came %.2f s after the one before, %.2f s into the outage", i, gap, tries[i - 1].at - t0))
      end
    end)

    it("writes ids decoded as floats as integers in URLs", function(kt)
      local c = kt.create(comment("a"))
      -- an earlier klua's comment, listed with a float id
      kt.http.expect({ method = "GET", match = LIST, body = '[{"id":3000000001.0,"body":"old\\n\\n' .. marker(c)
        .. '","html_url":"https://github.com/o/r/issues/7#issuecomment-3000000001"}]' })
      kt.http.expect({ method = "PATCH", url = GH .. "/repos/o/r/issues/comments/3000000001",
        respond = function(req)
          return { body = { id = 3000000001, body = req.json.body,
                            html_url = "https://github.com/o/r/issues/7#issuecomment-3000000001" } }
        end })
      kt.run()
      local got = kt.get(c)
      assert.equal("Adopted", delivered(got).reason)
      assert.equal(3000000001, got.status.commentID)
      assert.equal("integer", math.type(got.status.commentID))
    end)

    it("refuses repositories that are not owner/name before sending anything", function(kt)
      local bad = { "o", "o/r/x", "../r", "o/..", "o/r?x=1", "" }
      local made = {}
      for i, repo in ipairs(bad) do made[i] = kt.create(comment("bad" .. i, { repository = repo })) end
      kt.run()
      assert.equal(0, #kt.http.calls)
      for i, c in ipairs(made) do
        assert.equal("Invalid", delivered(kt.get(c)).reason, "repository " .. string.format("%q", bad[i]))
      end
    end)
  end)

  describe("pagination", function()
    -- a page of comments 1..n, each "c<id>", with Link next (and last) when more follow
    local function page(from, to, next_page)
      local items = json.array({})
      for id = from, to do items[#items + 1] = { id = id, body = "c" .. id } end
      local h = {}
      if next_page then
        h.link = string.format('<%s?per_page=100&page=%d>; rel="next", <%s?per_page=100&page=9>; rel="last"',
          POST_URL, next_page, POST_URL)
      end
      return { status = 200, headers = h, body = items }
    end

    it("follows Link rel=next and stops at the page with the marker", function(kt)
      local c = kt.create(comment("a"))
      local p1 = page(1, 100, 2)
      local p2 = page(101, 200, 3)
      p2.body[50] = { id = 150, body = "m a\n\n" .. marker(c) }
      kt.http.expect({ method = "GET", url = POST_URL .. "?per_page=100&page=1", status = 200, headers = p1.headers,
                       body = p1.body })
      kt.http.expect({ method = "GET", url = POST_URL .. "?per_page=100&page=2", status = 200, headers = p2.headers,
                       body = p2.body })
      kt.run()
      assert.equal(2, #kt.http.calls) -- page 3 is never asked for
      for _, call in ipairs(kt.http.calls) do assert.equal("Bearer " .. TOKEN, call.headers["authorization"]) end
      local got = kt.get(c)
      assert.equal("Adopted", delivered(got).reason)
      assert.equal(150, got.status.commentID)
    end)

    it("posts when no page has the marker", function(kt)
      local p1, p2 = page(1, 100, 2), page(101, 120)
      kt.http.expect({ method = "GET", url = POST_URL .. "?per_page=100&page=1", headers = p1.headers, body = p1.body })
      kt.http.expect({ method = "GET", url = POST_URL .. "?per_page=100&page=2", body = p2.body })
      kt.http.expect({ method = "POST", url = POST_URL, respond = post })
      local c = kt.create(comment("a"))
      kt.run()
      assert.equal(3, #kt.http.calls)
      assert.equal("Posted", delivered(kt.get(c)).reason)
    end)

    it("never follows a Link to another server (the token would go along)", function(kt)
      kt.http.expect({ method = "GET", match = LIST,
                       headers = { link = '<http://evil.test/repos/o/r/issues/7/comments?page=2>; rel="next"' },
                       body = json.array({}) })
      local c = kt.create(comment("a"))
      kt.run()
      -- a request to evil.test would have failed this test as unexpected
      assert.equal(1, #kt.http.calls)
      local d = delivered(kt.get(c))
      assert.equal("Invalid", d.reason)
      assert.matches("GitHub pointed to another server; not following it", d.message)
    end)
  end)

  describe("answers", function()
    -- GET answers an empty list; the POST answers `resp` (then succeeds)
    local function post_answers(kt, resp)
      kt.http.expect({ method = "GET", match = LIST, body = json.array({}), times = "any" })
      resp.method, resp.url = "POST", POST_URL
      kt.http.expect(resp)
      kt.http.expect({ method = "POST", url = POST_URL, respond = post, times = "any" })
    end

    it("403 without rate-limit signs is Forbidden, retried after five minutes", function(kt)
      post_answers(kt, { status = 403, headers = { ["x-ratelimit-remaining"] = "4999" },
                         body = gh_body("Resource not accessible by integration") })
      local c = kt.create(comment("a"))
      kt.run()
      assert.equal("Forbidden", delivered(kt.get(c)).reason)
      kt.advance(295)
      assert.equal(2, #kt.http.calls)
      kt.advance(5)
      assert.equal("True", delivered(kt.get(c)).status)
    end)

    it("403 with retry-after is RateLimited for that long", function(kt)
      post_answers(kt, { status = 403, headers = { ["retry-after"] = "30" }, body = gh_body("x") })
      local c = kt.create(comment("a"))
      kt.run()
      assert.equal("RateLimited", delivered(kt.get(c)).reason)
      kt.advance(27)
      assert.equal(2, #kt.http.calls)
      kt.advance(3)
      assert.equal("True", delivered(kt.get(c)).status)
    end)

    it("429 with retry-after is RateLimited for that long", function(kt)
      post_answers(kt, { status = 429, headers = { ["retry-after"] = "7" }, body = gh_body("Too Many") })
      local c = kt.create(comment("a"))
      kt.run()
      assert.equal("RateLimited", delivered(kt.get(c)).reason)
      kt.advance(5)
      assert.equal(2, #kt.http.calls)
      kt.advance(2)
      assert.equal("True", delivered(kt.get(c)).status)
    end)

    it("x-ratelimit-remaining 0 holds every request until x-ratelimit-reset", function(kt)
      local reset = math.floor(kt.now()) + 120
      kt.http.expect({ method = "GET", match = "^http://gh%.test/", status = 403, body = { message = "rate limit" },
                       headers = { ["x-ratelimit-remaining"] = "0", ["x-ratelimit-reset"] = tostring(reset) } })
      local c = kt.create(comment("a"))
      kt.run()
      assert.equal("RateLimited", delivered(kt.get(c)).reason)
      kt.advance(100)
      assert.equal(1, #kt.http.calls) -- nothing while the limit holds
      kt.http.expect({ method = "GET", match = "^http://gh%.test/", body = json.array({}) })
      kt.http.expect({ method = "POST", url = POST_URL, respond = post })
      kt.advance(25)
      assert.equal("True", delivered(kt.get(c)).status)
    end)

    it("a secondary limit without headers waits 60 s", function(kt)
      local limited = gh_body("You have exceeded a secondary rate limit.")
      kt.http.expect({ method = "GET", match = LIST, body = json.array({}), times = "any" })
      local first = kt.http.expect({ method = "POST", url = POST_URL, status = 403, body = limited })
      kt.http.expect({ method = "POST", url = POST_URL, respond = post })
      local a = kt.create(comment("a"))
      kt.run()
      assert.equal(1, first.seen)
      local d = delivered(kt.get(a))
      assert.equal("RateLimited", d.reason)
      assert.equal("GitHub rate limit reached (You have exceeded a secondary rate limit.); klua holds every "
        .. "request until the limit resets and then retries", d.message)
      kt.advance(57)
      assert.equal(0, #posts)
      kt.advance(3)
      assert.equal(1, #posts)
      assert.equal("True", delivered(kt.get(a)).status)
    end)

    it("a secondary limit hitting again after its wait doubles it, though reads pass between", function(kt)
      local limited = gh_body("You have exceeded a secondary rate limit.")
      kt.http.expect({ method = "GET", match = LIST, body = json.array({}), times = "any" })
      local refused = kt.http.expect({ method = "POST", url = POST_URL, status = 403, body = limited,
                                       times = 2 })
      kt.http.expect({ method = "POST", url = POST_URL, respond = post })
      local a = kt.create(comment("a"))
      kt.run()
      kt.advance(60)            -- the retry's GET passes, its POST is refused again
      assert.equal(2, refused.seen)
      assert.equal("RateLimited", delivered(kt.get(a)).reason)
      kt.advance(117)
      assert.equal(0, #posts)   -- 120 s this time, not 60
      kt.advance(3)
      assert.equal(1, #posts)
      assert.equal("True", delivered(kt.get(a)).status)
    end)

    it("secondary-limit answers to requests made together do not double the wait", function(kt)
      local limited = kt.http.expect({ method = "GET", match = LIST, status = 403, times = "any",
                                       body = gh_body("You have exceeded a secondary rate limit") })
      local a, b = kt.create(comment("a")), kt.create(comment("b"))
      kt.run()
      assert.equal("RateLimited", delivered(kt.get(a)).reason)
      assert.equal("RateLimited", delivered(kt.get(b)).reason)
      local n = #kt.http.calls
      kt.advance(57)
      assert.equal(n, #kt.http.calls)
      limited.times = limited.seen -- GitHub answers again
      kt.http.expect({ method = "GET", match = LIST, body = json.array({}), times = "any" })
      kt.http.expect({ method = "POST", url = POST_URL, respond = post, times = 2 })
      kt.advance(3)
      kt.advance(1) -- the second POST's turn
      assert.equal("True", delivered(kt.get(a)).status)
      assert.equal("True", delivered(kt.get(b)).status)
    end)

    it("404 and 410 are IssueNotFound", function(kt)
      kt.http.expect({ method = "GET", url = POST_URL .. "?per_page=100&page=1", status = 404,
                       body = gh_body("Not Found") })
      kt.http.expect({ method = "GET", url = GH .. "/repos/o/r/issues/8/comments?per_page=100&page=1", status = 410,
                       body = gh_body("Issues are disabled for this repo") })
      local a, b = kt.create(comment("a")), kt.create(comment("b", { issue = 8 }))
      kt.run()
      assert.equal("IssueNotFound", delivered(kt.get(a)).reason)
      local d = delivered(kt.get(b))
      assert.equal("IssueNotFound", d.reason)
      assert.matches("^GitHub answered 410 Issues are disabled for this repo for o/r issue 8", d.message)
    end)

    it("422 is Invalid, with GitHub's field error", function(kt)
      post_answers(kt, { status = 422, body = { message = "Validation Failed",
        errors = { { resource = "IssueComment", code = "missing_field", field = "body" } } } })
      local c = kt.create(comment("a"))
      kt.run()
      local d = delivered(kt.get(c))
      assert.equal("Invalid", d.reason)
      assert.equal("GitHub refused the comment for o/r issue 7 (422 Validation Failed: body missing_field): "
        .. "check spec.message", d.message)
    end)

    it("5xx with an HTML body is GitHubUnavailable, retried after 2 to 3 s", function(kt)
      post_answers(kt, { status = 502, body = "<html>bad gateway</html>" })
      local c = kt.create(comment("a"))
      kt.run()
      assert.equal("GitHub is answering with server errors; klua retries with backoff", delivered(kt.get(c)).message)
      kt.advance(1.5)
      assert.equal(0, #posts)
      kt.advance(1.6)
      assert.equal(1, #posts)
    end)

    it("never puts the token in the condition, even when GitHub echoes it", function(kt)
      kt.http.expect({ method = "GET", match = LIST, status = 401, body = gh_body("token " .. TOKEN .. " is revoked") })
      local c = kt.create(comment("a"))
      kt.run()
      assert.matches("^GitHub answered 401 token %[redacted%] is revoked: check the token", delivered(kt.get(c)).message)
    end)
  end)

  describe("rate-limit blocking", function()
    it("while blocked, no request of the token goes out; another token has its own limits", function(kt)
      kt.http.expect({ method = "GET", match = LIST, body = json.array({}), times = "any" })
      kt.http.expect({ method = "POST", url = POST_URL, status = 429, headers = { ["retry-after"] = "30" }, body = "{}" })
      local a = kt.create(comment("a"))
      kt.run()
      kt.advance(10)
      local n = #kt.http.calls
      local b = kt.create(comment("b"))
      kt.run()
      assert.equal(n, #kt.http.calls) -- b asked GitHub nothing
      assert.equal("RateLimited", delivered(kt.get(b)).reason)
      kt.advance(15) -- not yet 30 s, whatever the real clock added
      assert.equal(n, #kt.http.calls)
      -- the token is replaced (a rotated secret): the new one is not blocked
      kt.secret("github_token", "tok-OTHER")
      kt.http.expect({ method = "POST", url = POST_URL, respond = post, times = 3 })
      local c = kt.create(comment("c"))
      kt.run()
      assert.equal("Bearer tok-OTHER", kt.http.calls[#kt.http.calls].headers["authorization"])
      assert.equal("True", delivered(kt.get(c)).status)
      kt.advance(7)
      assert.equal("True", delivered(kt.get(a)).status)
      assert.equal("True", delivered(kt.get(b)).status)
    end)

    it("a success that used the last request of the hour holds the next until the reset", function(kt)
      local reset = math.floor(kt.now()) + 100
      kt.http.expect({ method = "GET", match = LIST, body = json.array({}), times = "any" })
      kt.http.expect({ method = "POST", url = POST_URL, respond = function(req)
        local r = post(req)
        r.headers = { ["x-ratelimit-remaining"] = "0", ["x-ratelimit-reset"] = tostring(reset) }
        return r
      end })
      local a = kt.create(comment("a"))
      kt.run()
      assert.equal("True", delivered(kt.get(a)).status)
      local n = #kt.http.calls
      local b = kt.create(comment("b"))
      kt.run()
      assert.equal(n, #kt.http.calls)
      assert.equal("RateLimited", delivered(kt.get(b)).reason)
      kt.http.expect({ method = "POST", url = POST_URL, respond = post })
      kt.advance(101)
      assert.equal("True", delivered(kt.get(b)).status)
    end)
  end)

  describe("pacing of mutating requests", function()
    it("sends mutating requests one at a time, KLUA_GITHUB_MIN_GAP apart, and leaves reads alone", function(kt)
      local t0 = kt.now()
      kt.http.expect({ method = "GET", match = "^http://gh%.test/", body = json.array({}), times = "any" })
      kt.http.expect({ method = "POST", url = POST_URL, times = 3, respond = post })
      for _, n in ipairs({ "a", "b", "c" }) do kt.create(comment(n)) end
      kt.run()
      assert.equal(3, #posts)
      for i = 2, 3 do
        local gap = posts[i].at - posts[i - 1].at
        assert.truthy(gap >= 0.99, "posts " .. (i - 1) .. " and " .. i .. " are " .. gap .. " s apart")
      end
      for _, g in ipairs(calls_of(kt, "GET")) do
        assert.truthy(g.at - t0 < 0.9, "a read waited " .. (g.at - t0) .. " s")
      end
    end)

    it("takes the gap from KLUA_GITHUB_MIN_GAP", function(kt)
      kt.setenv("KLUA_GITHUB_MIN_GAP", "0.25")
      kt.http.expect({ method = "GET", match = LIST, body = json.array({}), times = "any" })
      kt.http.expect({ method = "POST", url = POST_URL, times = 2, respond = post })
      kt.create(comment("a"))
      kt.create(comment("b"))
      kt.run()
      assert.equal(2, #posts)
      local gap = posts[2].at - posts[1].at
      assert.truthy(gap >= 0.24 and gap < 0.9, "posts are " .. gap .. " s apart")
    end)

    it("a wait for its turn ends without a request when a rate limit hits meanwhile", function(kt)
      kt.http.expect({ method = "GET", match = LIST, body = json.array({}), times = "any" })
      kt.http.expect({ method = "POST", url = POST_URL, status = 429, headers = { ["retry-after"] = "60" }, body = "{}" })
      local a, b = kt.create(comment("a")), kt.create(comment("b"))
      kt.run()
      assert.equal(1, #calls_of(kt, "POST"))
      assert.equal("RateLimited", delivered(kt.get(a)).reason)
      assert.equal("RateLimited", delivered(kt.get(b)).reason)
      kt.http.expect({ method = "POST", url = POST_URL, times = 2, respond = post })
      kt.advance(62)
      assert.equal(2, #posts)
    end)
  end)
end)
