return {
  watch = { apiVersion = "v1", kind = "ConfigMap" },
  finalizer = "cleanup",
  reconcile = function(ctx, obj) end,
  finalize = function(ctx, obj) end,
}
