-- seen_mf.lua - a test controller for spec/e2e/test_cache.py: records in an
-- annotation what its reconcile sees of each ConfigMap labelled
-- klua-e2e=cache-mf (managed_fields = true: it sees them).
local function what(cm)
  return (cm.metadata.managedFields and "mf" or "no-mf") .. "," .. (cm.data and "data" or "no-data")
end

return {
  name = "seen-mf",
  watch = { apiVersion = "v1", kind = "ConfigMap" },
  selector = "klua-e2e=cache-mf",
  cache = { managed_fields = true },
  reconcile = function(ctx, cm)
    local want = what(cm)
    if (cm.metadata.annotations or {})["klua.dev/seen"] ~= want then
      local _, err = ctx:patch(cm, { metadata = { annotations = { ["klua.dev/seen"] = want } } })
      if err then error("annotating: " .. tostring(err)) end
    end
  end,
}
