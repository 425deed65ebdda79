-- greeter.lua - a first reconciler: every ConfigMap labelled
-- klua.dev/greet=true gets a "greeting" key built from its "name" key, and an
-- Event saying so. Run it with:
--   bin/klua run --scripts examples/scripts
return {
  watch    = { apiVersion = "v1", kind = "ConfigMap" },
  selector = "klua.dev/greet=true",   -- only these objects reach the cache
  workers  = 2,

  reconcile = function(ctx, cm)
    local data = cm.data or {}
    local want = "Hello, " .. (data.name or "world") .. "!"
    if data.greeting == want then
      return nil                        -- level-based: nothing to do
    end
    local _, err = ctx:patch(cm, { data = { greeting = want } })
    if err then
      if err.reason == "Conflict" or err.reason == "NotFound" then
        return { requeue = true }       -- changed or gone under us: look again
      end
      error("patching " .. ctx.key .. ": " .. tostring(err))
    end
    ctx.log.info("greeted", { greeting = want })
    ctx:event(cm, "Normal", "Greeted", want)
    return nil
  end,
}
