-- bench/scripts/webhook/widget.lua - klua's side of the webhook benchmark:
-- a trivial validate (allow everything but the probe the load generator
-- uses to see that a webhook configuration is in effect), as
-- bench/peers/webhookpeer does with controller-runtime. The reconcile does
-- nothing.
return {
  watch = { apiVersion = "bench.klua.dev/v1", kind = "Widget" },
  reconcile = function(ctx, obj) end,
  validate = function(ctx, req) return req.name ~= "probe-deny", "probe" end,
}
