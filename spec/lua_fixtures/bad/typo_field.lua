return {
  watch = { apiVersion = "v1", kind = "ConfigMap" },
  reconcile = function(ctx, obj) end,
  worker = 3,
}
