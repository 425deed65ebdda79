return {
  name = "bad-watch",

  watch = { apiVersion = "v1", kind = "configmap" },
  reconcile = function(ctx, obj) end,
}
