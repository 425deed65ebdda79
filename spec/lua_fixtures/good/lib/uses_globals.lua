-- A lib module that reads standard globals at call time and sets one of
-- its own: test_lua_host.c checks that a script reassigning globals cannot
-- break it, and that its global stays private.
local M = {}
MODULE_GLOBAL = "module"
function M.describe(x)
  return string.format("%s-%d", tostring(x), #x) .. "-" .. tostring(MODULE_GLOBAL)
end
return M
