return {
  watch = { apiVersion = "Apps/V1", kind = "Deployment" },
  reconcile = function(ctx, obj) end,
}
