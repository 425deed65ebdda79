-- bench/scripts/noop/widget.lua - klua's side of the benchmark's no-op
-- reconciler (initial sync, footprint, event latency). It does what the Go
-- peers do (bench/peers): report spec.seq with the reconcile's own clock,
-- and say once when it has run KLUA_BENCH_EXPECT times.
local expect
local count = 0

return {
  watch = { apiVersion = "bench.klua.dev/v1", kind = "Widget" },
  workers = 4,
  reconcile = function(ctx, obj)
    local seq = obj.spec and obj.spec.seq
    if seq and seq > 0 then
      -- Stamp first: the time is the moment the reconcile saw this seq.
      local t = ctx:now()
      ctx.log.info("BENCH seen", { obj = ctx.key, seq = string.format("%.0f", seq),
                                   t = string.format("%.0f", t * 1e9) })
    end
    if expect == nil then
      expect = tonumber(ctx:getenv("KLUA_BENCH_EXPECT") or "") or -1
    end
    count = count + 1
    if count == expect then
      ctx.log.info("BENCH reconciled_all", { n = tostring(count) })
    end
  end,
}
