-- stamp_lib.lua - the lib module stamp.lua requires (test_reload.py edits it).
local M = {}

function M.format(version)
  return "lib1:" .. version
end

return M
