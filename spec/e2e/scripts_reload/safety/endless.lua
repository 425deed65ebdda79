-- endless.lua - spec/e2e/test_safety.py: a reconcile that never ends, even
-- when it catches errors. klua must cut it (deadline) and back the key off
-- while the other controllers keep working.
return {
  watch = { apiVersion = "v1", kind = "ConfigMap" },
  selector = "klua-e2e=endless",
  reconcile = function(ctx, cm)
    while true do
      pcall(function() while true do end end) -- ENDLESS-LINE
    end
  end,
}
