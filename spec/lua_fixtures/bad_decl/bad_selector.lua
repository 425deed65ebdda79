return {
  watch = { apiVersion = "v1", kind = "ConfigMap" },
  selector = "a in (b",
  reconcile = function(ctx, obj) end,
}
