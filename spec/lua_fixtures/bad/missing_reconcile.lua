-- no reconcile
return {
  watch = { apiVersion = "v1", kind = "ConfigMap" },
}
