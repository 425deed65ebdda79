-- flaky.lua - spec/e2e/test_safety.py: a Comment controller that records a
-- condition of its own ("Seen") and then fails while the Comment carries
-- the label klua-e2e-fail=yes. klua adds Ready=False (reason ReconcileError)
-- next to Seen, and takes it away once a reconcile succeeds.
return {
  watch = { apiVersion = "github.klua.dev/v1", kind = "Comment" },
  reconcile = function(ctx, c)
    local labels = c.metadata.labels or {}
    local conds = (c.status or {}).conditions or {}
    local seen = false
    for _, x in ipairs(conds) do
      if x.type == "Seen" then seen = true end
    end
    if not seen then
      local list = {}
      for _, x in ipairs(conds) do list[#list + 1] = x end
      list[#list + 1] = { type = "Seen", status = "True", reason = "Seen", message = "seen",
                          lastTransitionTime = "2024-01-01T00:00:00Z" }
      local _, err = ctx:patch(c, { status = { conditions = list } }, { subresource = "status" })
      if err then error("recording Seen: " .. tostring(err)) end
      return { requeue = true }
    end
    if labels["klua-e2e-fail"] == "yes" then
      error("flaky: failing on purpose") -- FLAKY-ERROR-LINE
    end
    if labels["klua-e2e-fail"] == "garbage" then
      return { requeue_afterr = 5 }
    end
  end,
}
