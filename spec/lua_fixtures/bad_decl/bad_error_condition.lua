return {
  watch = { apiVersion = "v1", kind = "ConfigMap" },
  error_condition = true,
  reconcile = function(ctx, obj) end,
}
