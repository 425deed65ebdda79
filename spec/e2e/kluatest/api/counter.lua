-- counter.lua - counts its reconciles of each ConfigMap labelled
-- kt/count=yes into data.seen (the API conformance specs need a controller
-- to start a runtime; this one also shows watch events reaching it).
return {
  watch = { apiVersion = "v1", kind = "ConfigMap" },
  selector = "kt/count=yes",
  reconcile = function(ctx, cm)
    local seen = tonumber((cm.data or {}).seen or "0")
    if (cm.data or {}).want == tostring(seen) then return nil end
    local _, err = ctx:patch(cm, { data = { seen = tostring(seen + 1) } })
    if err then return { requeue = true } end
    -- the watch's echo of this patch does not reconcile again: ask for it
    if (cm.data or {}).want ~= tostring(seen + 1) then return { requeue = true } end
    return nil
  end,
}
