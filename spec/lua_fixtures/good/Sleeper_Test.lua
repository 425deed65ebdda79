-- Sleeps through the event loop, then returns what it saw.
return {
  watch = { apiVersion = "github.klua.dev/v1", kind = "Comment" },
  reconcile = function(ctx, obj)
    local t0 = ctx:now()
    ctx:sleep(0.05)
    local ok = pcall(function() ctx:sleep(0.01) end)  -- pcall is yieldable
    return { requeue_after = ctx:now() - t0, key = ctx.key, ok = ok, name = obj.metadata.name }
  end,
}
