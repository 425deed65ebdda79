return {
  watch = { apiVersion = "v1", kind = "ConfigMap",
            predicate = "status" },
  reconcile = function(ctx, obj) end,
}
