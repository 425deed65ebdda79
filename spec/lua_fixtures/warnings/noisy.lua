-- A valid controller that triggers klua's warnings: a warn() call and a
-- global assigned at the top level (klua check reports both, file:line).
counter = 0
warn("noisy: ", "this controller is only a test")
return {
  watch = { apiVersion = "v1", kind = "ConfigMap" },
  reconcile = function(ctx, obj) end,
}
