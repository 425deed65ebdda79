-- A valid controller used by the C unit tests (test_lua_host.c).
local helper = require "helper"
local util = require "util"

return {
  watch = { apiVersion = "v1", kind = "ConfigMap" },
  owns = { { apiVersion = "apps/v1", kind = "Deployment" } },
  workers = 2,
  reconcile = function(ctx, obj)
    return helper.answer() + util.one
  end,
  finalize = function(ctx, obj) end,
}
