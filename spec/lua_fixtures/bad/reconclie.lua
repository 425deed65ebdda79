-- A typo in a key of the controller table.
return {
  watch = { apiVersion = "v1", kind = "ConfigMap" },
  reconclie = function(ctx, obj) end,
}
