return {
  watch = { apiVersion = "v1", kind = "ConfigMap" },
  watches = {
    { apiVersion = "v1", kind = "Secret", map = function(obj) return {} end,
      selector = "x notin (" },
  },
  reconcile = function(ctx, obj) end,
}
