-- memhog.lua - spec/e2e/test_safety.py: a reconcile that allocates without
-- bound. It must get a memory error, not take klua down.
return {
  watch = { apiVersion = "v1", kind = "ConfigMap" },
  selector = "klua-e2e=memhog",
  reconcile = function(ctx, cm)
    local t = {}
    for i = 1, math.huge do
      t[i] = string.rep("x", 1000000) .. i
    end
  end,
}
