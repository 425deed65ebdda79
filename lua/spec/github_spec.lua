-- github_spec.lua - klua.github as the Comment controller uses it, through the
-- real runtime: headers, Link paging that never leaves the server, rate
-- limits and the pacing of mutating requests on klua test's clock.
-- (spec/lua/github_spec.lua tests the client piece by piece with busted.)
local json = require "klua.json"

local GH = "http://gh.test"
local TOKEN = "tok-SECRET-456"

local function comment(name)
  return { apiVersion = "github.klua.dev/v1", kind = "Comment", metadata = { name = name },
           spec = { repository = "o/r", issue = 7, message = "m " .. name } }
end

local function delivered(obj)
  for _, c in ipairs((obj.status or {}).conditions or {}) do
    if c.type == "Delivered" then return c end
  end
end

describe("klua.github", function()
  local posts, next_id
  local function post(req)
    next_id = next_id + 1
    posts[#posts + 1] = { at = req.at, body = req.json.body }
    return { status = 201, body = { id = next_id, body = req.json.body,
                                     html_url = "https://github.com/o/r/issues/7#issuecomment-" .. next_id } }
  end

  before_each(function(kt)
    posts, next_id = {}, 100
    kt.setenv("GITHUB_API_URL", GH)
    kt.setenv("KLUA_GITHUB_MIN_GAP", "1")
    kt.secret("github_token", TOKEN)
  end)

  it("sends the token as Bearer with GitHub's headers", function(kt)
    kt.http.expect({ method = "GET", match = "^http://gh%.test/repos/o/r/issues/7/comments", body = json.array({}) })
    kt.http.expect({ method = "POST", url = GH .. "/repos/o/r/issues/7/comments", respond = post })
    kt.create(comment("a"))
    kt.run()
    local h = kt.http.calls[2].headers
    assert.equal("Bearer " .. TOKEN, h["authorization"])
    assert.equal("application/vnd.github+json", h["accept"])
    assert.equal("2022-11-28", h["x-github-api-version"])
    assert.truthy(h["user-agent"])
  end)

  it("never follows a Link to another server (the token would go along)", function(kt)
    kt.http.expect({ method = "GET", match = "^http://gh%.test/repos/o/r/issues/7/comments",
                     headers = { link = '<http://evil.test/repos/o/r/issues/7/comments?page=2>; rel="next"' },
                     body = json.array({}) })
    kt.http.expect({ method = "POST", url = GH .. "/repos/o/r/issues/7/comments", respond = post, times = "any" })
    local c = kt.create(comment("a"))
    kt.run()
    -- a request to evil.test would have failed this test as unexpected
    for _, call in ipairs(kt.http.calls) do assert.matches("^http://gh%.test/", call.url) end
    assert.not_nil(delivered(kt.get(c)))
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
    kt.http.expect({ method = "POST", url = GH .. "/repos/o/r/issues/7/comments", respond = post })
    kt.advance(25)
    assert.equal("True", delivered(kt.get(c)).status)
  end)

  it("sends mutating requests one at a time, KLUA_GITHUB_MIN_GAP apart", function(kt)
    kt.http.expect({ method = "GET", match = "^http://gh%.test/", body = json.array({}), times = "any" })
    kt.http.expect({ method = "POST", url = GH .. "/repos/o/r/issues/7/comments", times = 3,
                     respond = function(req) req.at = kt.now() return post(req) end })
    for _, n in ipairs({ "a", "b", "c" }) do kt.create(comment(n)) end
    kt.run()
    assert.equal(3, #posts)
    for i = 2, 3 do
      local gap = posts[i].at - posts[i - 1].at
      assert.truthy(gap >= 0.99, "posts " .. (i - 1) .. " and " .. i .. " are " .. gap .. " s apart")
    end
  end)
end)
