-- hostile.lua - spec/e2e/test_safety.py: a reconcile that tries every way
-- to outlive klua's CPU limits (issue 9): the kill fires in a coroutine it
-- made, then it catches the error in a loop, and loops over C calls the
-- count hook cannot see. klua must cut the whole reconcile each time.
return {
  watch = { apiVersion = "v1", kind = "ConfigMap" },
  selector = "klua-e2e=hostile",
  reconcile = function(ctx, cm)
    pcall(coroutine.wrap(function() while true do end end))
    local s = string.rep("a", 2e6)
    while true do
      pcall(string.find, s, ".-.-b") -- HOSTILE-LINE
      pcall(function() for i = 1, 1e6 do end end)
    end
  end,
}
