-- forbidden.lua - spec/e2e/test_safety.py: tries each thing a script must
-- not be able to do and writes what happened into the ConfigMap's data
-- ("refused: <message>" or "absent"), so the test can check every one.
local function try(f)
  local ok, err = pcall(f)
  if ok then return "allowed" end
  return "refused: " .. tostring(err)
end

local function absent(v)
  if v == nil then return "absent" end
  return "present"
end

return {
  watch = { apiVersion = "v1", kind = "ConfigMap" },
  selector = "klua-e2e=forbidden",
  reconcile = function(ctx, cm)
    if (cm.data or {}).done then return nil end
    local r = {
      io = absent(io),
      debug = absent(debug),
      dofile = absent(dofile),
      loadfile = absent(loadfile),
      os_execute = absent(os.execute),
      os_getenv = absent(os.getenv),
      os_exit = absent(os.exit),
      package = absent(package),
      binary_chunk = try(function() assert(load(string.dump(function() end))) end),
      binary_mode = try(function() load("return 1", "x", "b") end),
      collectgarbage = try(function() collectgarbage("stop") end),
      require_os = try(function() require "os" end),
      require_escape = try(function() require "../../etc/passwd" end),
      string_write = try(function() string.upper = nil end),
      string_metatable = tostring(getmetatable("")),
      rep_bomb = try(function() return string.rep("x", 1e10) end),
      pattern_bomb = try(function() return string.rep("a", 5000):find(".-.-.-.-b") end),
      gc_metamethod = try(function() setmetatable({}, { __gc = function() end }) end),
      done = "yes",
    }
    local _, err = ctx:patch(cm, { data = r })
    if err then error("writing the results: " .. tostring(err)) end
  end,
}
