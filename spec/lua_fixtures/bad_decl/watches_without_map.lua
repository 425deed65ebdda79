return {
  watch = { apiVersion = "v1", kind = "ConfigMap" },
  watches = {
    { apiVersion = "v1", kind = "Secret" },
  },
  reconcile = function(ctx, obj) end,
}
