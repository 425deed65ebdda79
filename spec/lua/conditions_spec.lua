-- conditions_spec.lua - klua.conditions: metav1.Condition semantics, with
-- JSON through klua.json, the codec klua runs.
package.path = "lua/lib/?.lua;" .. package.path
package.cpath = "build/lua/?.so;" .. package.cpath   -- klua.json, if .busted did not say
local conditions = require "klua.conditions"
local json = require "klua.json"

describe("klua.conditions", function()
    it("formats RFC 3339 UTC times, leap days included", function()
        assert.equal("1970-01-01T00:00:00Z", conditions.rfc3339(0))
        assert.equal("2000-02-29T00:00:00Z", conditions.rfc3339(951782400))
        assert.equal("2023-11-14T22:13:20Z", conditions.rfc3339(1700000000.9))
        assert.equal("2100-03-01T12:00:00Z", conditions.rfc3339(4107585600))
    end)

    it("adds a condition with every field and reports a change", function()
        local list, changed = conditions.set(nil, { type = "Delivered", status = "True", reason = "Posted",
            message = "ok", observedGeneration = 2.0 }, 1700000000)
        assert.is_true(changed)
        assert.same({ { type = "Delivered", status = "True", reason = "Posted", message = "ok",
            observedGeneration = 2, lastTransitionTime = "2023-11-14T22:13:20Z" } }, list)
        assert.equal("integer", math.type(list[1].observedGeneration))
    end)

    it("keeps lastTransitionTime while the status stays, moves it when the status changes", function()
        local l1 = conditions.set({}, { type = "Delivered", status = "False", reason = "RateLimited", message = "a" }, 1000)
        local l2, ch2 = conditions.set(l1, { type = "Delivered", status = "False", reason = "GitHubUnavailable", message = "b" }, 2000)
        assert.is_true(ch2)
        assert.equal(l1[1].lastTransitionTime, l2[1].lastTransitionTime)
        assert.equal("GitHubUnavailable", l2[1].reason)
        local l3 = conditions.set(l2, { type = "Delivered", status = "True", reason = "Posted", message = "c" }, 3000)
        assert.equal(conditions.rfc3339(3000), l3[1].lastTransitionTime)
    end)

    it("reports no change when only the time would differ", function()
        local c = { type = "Delivered", status = "False", reason = "IssueNotFound", message = "m", observedGeneration = 1 }
        local l1 = conditions.set(nil, c, 1000)
        local decoded = json.decode(json.encode(l1))  -- as read back from the API
        assert.equal("integer", math.type(decoded[1].observedGeneration))
        local l2, changed = conditions.set(decoded, c, 5000)
        assert.is_false(changed)
        assert.same(l1, l2)
        -- a float generation (a script's arithmetic) is the same generation
        decoded[1].observedGeneration = 1.0
        local _, changed_f = conditions.set(decoded, c, 5000)
        assert.is_false(changed_f)
    end)

    it("leaves other conditions in place and does not modify its input", function()
        local input = { { type = "Ready", status = "True", reason = "X", message = "", lastTransitionTime = "t" },
                        { type = "Delivered", status = "False", reason = "Y", message = "", lastTransitionTime = "t" } }
        local out = conditions.set(input, { type = "Delivered", status = "True", reason = "Posted", message = "" }, 0)
        assert.equal("Ready", out[1].type)
        assert.equal("Delivered", out[2].type)
        assert.equal("True", out[2].status)
        assert.equal("False", input[2].status)
        assert.equal(2, #out)
    end)

    it("takes the time from anything with a now method", function()
        -- klua's ctx is a userdata: spec/e2e/test_ctx.py reads the time it
        -- gives back from the API server
        local clock = { now = function() return 951782400 end }
        local l = conditions.set(nil, { type = "A", status = "True" }, clock)
        assert.equal("2000-02-29T00:00:00Z", l[1].lastTransitionTime)
    end)

    it("get and is_true find a condition by type, tolerating JSON null", function()
        local l = { { type = "A", status = "True" }, { type = "B", status = "False" } }
        assert.equal("False", conditions.get(l, "B").status)
        assert.is_nil(conditions.get(l, "C"))
        assert.is_nil(conditions.get(json.null, "A"))
        assert.is_nil(conditions.get(json.decode('{"conditions":null}').conditions, "A"))
        assert.is_true(conditions.is_true(l, "A"))
        assert.is_false(conditions.is_true(l, "B"))
        assert.is_false(conditions.is_true(nil, "A"))
    end)
end)
