-- stamp.lua - a test controller for spec/e2e/test_reload.py: writes the
-- version of its code (and of its lib module) into data.stamp of each
-- ConfigMap labelled klua-e2e=stamp. The tests edit VERSION while klua runs.
local stamp = require "stamp_lib"

local VERSION = "v1"

return {
  name = "stamp",
  watch = { apiVersion = "v1", kind = "ConfigMap" },
  selector = "klua-e2e=stamp",
  reconcile = function(ctx, cm)
    local want = stamp.format(VERSION)
    if (cm.data or {}).stamp ~= want then
      local _, err = ctx:patch(cm, { data = { stamp = want } })
      if err then error("stamping: " .. tostring(err)) end
    end
  end,
}
