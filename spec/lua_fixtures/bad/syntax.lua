return {
  watch = { apiVersion = "v1", kind = "ConfigMap" },
  reconcile = function(ctx, obj)
    if obj then
  end,
}
