-- steady.lua - spec/e2e/test_safety.py: an ordinary controller beside
-- hostile.lua; copies data.x into data.seen of its ConfigMaps.
return {
  watch = { apiVersion = "v1", kind = "ConfigMap" },
  selector = "klua-e2e=steady",
  reconcile = function(ctx, cm)
    local data = cm.data or {}
    if data.seen ~= data.x then
      local _, err = ctx:patch(cm, { data = { seen = data.x } })
      if err then error("patch: " .. tostring(err)) end
    end
  end,
}
