return {
  watch = { apiVersion = "v1", kind = "ConfigMap" },
  reconcile = function() end,
  workers = 1e300,
}
