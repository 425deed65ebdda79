-- bench/scripts/status/widget.lua - klua's side of the throughput scenario:
-- set status.done once per Widget through the status subresource (a merge
-- patch), as the controller-runtime peer (bench/peers/crpeer -mode status) does.
local expect
local count = 0

return {
  watch = { apiVersion = "bench.klua.dev/v1", kind = "Widget" },
  workers = 4,
  reconcile = function(ctx, obj)
    if not (obj.status and obj.status.done) then
      local _, err = ctx:patch_status(obj, { done = true })
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
