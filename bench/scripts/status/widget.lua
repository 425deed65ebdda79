-- bench/scripts/status/widget.lua - klua's side of the throughput scenario:
-- set status.run to this run's token (KLUA_BENCH_RUN) once per Widget through
-- the status subresource (a merge patch), as the controller-runtime peer
-- (bench/peers/crpeer -mode status) does.
local expect, run
local count = 0

return {
  watch = { apiVersion = "bench.klua.dev/v1", kind = "Widget" },
  workers = 4,
  reconcile = function(ctx, obj)
    run = run or ctx:getenv("KLUA_BENCH_RUN") or "bench"
    if not (obj.status and obj.status.run == run) then
      local _, err = ctx:patch_status(obj, { run = run })
      if err then
        error("patch status of " .. ctx.key .. ": " .. tostring(err))
      end
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
