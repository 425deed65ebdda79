-- comment_webhooks_spec.lua - klua.comment_webhooks: what a user is told
-- when a Comment is refused, the deletionPolicy default, and v1alpha1 <-> v1
-- conversion (round trips lose nothing).
package.path = "lua/lib/?.lua;spec/lua/support/?.lua;" .. package.path
local hooks = require "klua.comment_webhooks"

local function req(spec, op, old)
    return { operation = op or "CREATE", object = { spec = spec },
             oldObject = old and { spec = old } or nil, warnings = {} }
end

local function valid(over)
    local spec = { repository = "klua-dev/demo", issue = 1, message = "hi" }
    for k, v in pairs(over or {}) do spec[k] = v end
    return spec
end

describe("klua.comment_webhooks", function()
    it("accepts a well-formed Comment", function()
        assert.is_true(hooks.validate(nil, req(valid())))
    end)

    it("explains what is wrong with the repository", function()
        local cases = {
            { "nope", 'spec.repository "nope" must be "owner/name" (one slash), e.g. "klua-dev/demo"' },
            { "a/b/c", 'spec.repository "a/b/c" must be "owner/name"' },
            { "-bad/x", 'the owner "-bad" is not a GitHub user or organisation name' },
            { "ok/..", 'the name ".." is not a GitHub repository name' },
            { "ok/sp ace", 'the name "sp ace" is not a GitHub repository name' },
        }
        for _, c in ipairs(cases) do
            local ok, msg = hooks.validate(nil, req(valid({ repository = c[1] })))
            assert.is_false(ok)
            assert.truthy(msg:find(c[2], 1, true), msg)
        end
        local ok, msg = hooks.validate(nil, req({ issue = 1, message = "m" }))
        assert.is_false(ok)
        assert.truthy(msg:find("spec.repository is required", 1, true))
    end)

    it("holds the message to GitHub's limit less klua's marker, in characters", function()
        assert.equal(65472, hooks.MESSAGE_MAX)
        -- the marker klua appends (lua/comment.lua) is exactly MARKER_LEN long
        local marker = "\n\n<!-- klua:comment-uid=" .. string.rep("0", 36) .. " -->"
        assert.equal(hooks.MARKER_LEN, #marker)
        assert.is_true(hooks.validate(nil, req(valid({ message = string.rep("x", 65472) }))))
        local ok, msg = hooks.validate(nil, req(valid({ message = string.rep("x", 65500) })))
        assert.is_false(ok)
        assert.equal("spec.message has 65500 characters; a GitHub comment takes at most 65472 "
            .. "(GitHub's limit of 65536, less 64 for klua's hidden marker): shorten it by 28", msg)
        -- characters, not bytes: 65472 two-byte characters fit
        assert.is_true(hooks.validate(nil, req(valid({ message = string.rep("é", 65472) }))))
    end)

    it("checks the issue number", function()
        local ok, msg = hooks.validate(nil, req(valid({ issue = 0 })))
        assert.is_false(ok)
        assert.truthy(msg:find("spec.issue must be the issue or pull request number", 1, true))
        assert.is_false((hooks.validate(nil, req(valid({ issue = 1.5 })))))
    end)

    it("warns when an update moves the Comment, and ignores deletes", function()
        local r = req(valid({ issue = 2 }), "UPDATE", valid())
        assert.is_true(hooks.validate(nil, r))
        assert.equal(1, #r.warnings)
        assert.truthy(r.warnings[1]:find("posts a new GitHub comment", 1, true))
        assert.is_true(hooks.validate(nil, { operation = "DELETE", warnings = {} }))
    end)

    it("defaults deletionPolicy to Retain and leaves a set one", function()
        local r = req(valid())
        hooks.mutate(nil, r)
        assert.equal("Retain", r.object.spec.deletionPolicy)
        r = req(valid({ deletionPolicy = "Delete" }))
        hooks.mutate(nil, r)
        assert.equal("Delete", r.object.spec.deletionPolicy)
    end)

    it("converts v1 <-> v1alpha1 without loss", function()
        local v1 = { apiVersion = "github.klua.dev/v1", kind = "Comment",
                     metadata = { name = "n", labels = { a = "b" } },
                     spec = valid({ deletionPolicy = "Delete" }), status = { commentID = 7 } }
        local alpha = hooks.convert(nil, v1, "github.klua.dev/v1alpha1")
        assert.equal("github.klua.dev/v1alpha1", alpha.apiVersion)
        assert.same({ repository = "klua-dev/demo", issue = 1, text = "hi",
                      deletionPolicy = "Delete" }, alpha.spec)
        local back = hooks.convert(nil, alpha, "github.klua.dev/v1")
        assert.same({ repository = "klua-dev/demo", issue = 1, message = "hi",
                      deletionPolicy = "Delete" }, back.spec)
        assert.same({ commentID = 7 }, back.status)
        assert.same({ a = "b" }, back.metadata.labels)
        local none, msg = hooks.convert(nil, back, "github.klua.dev/v2")
        assert.is_nil(none)
        assert.truthy(msg:find("no version", 1, true))
    end)
end)
