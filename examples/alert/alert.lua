-- alert.lua - the pager: each Alert (pager.klua.dev/v1) sends one page to an
-- HTTP endpoint, exactly once, and records the delivery in its status.
--
-- The endpoint is $KLUA_PAGER_URL in klua's environment. A page is a POST of
-- {"alert", "severity", "message", "uid"} as JSON; any 2xx answer means
-- delivered (a JSON body's "id" is kept as status.pageID). An Alert whose
-- status has deliveredAt is never paged again. Each page carries the Alert's
-- uid as Idempotency-Key: if klua stops after the endpoint accepted a page
-- but before the status write, the page sent again after the restart has
-- the same key, and an endpoint that honours the key drops it. A failed page
-- (no answer, or not 2xx) raises: klua records a Warning Event and retries
-- with backoff.
local json = require "klua.json"
local conditions = require "klua.conditions"

---@param alert pager.klua.dev.v1.Alert
---@return string
local function page_body(alert)
  return json.encode({
    alert = alert.metadata.namespace .. "/" .. alert.metadata.name,
    severity = alert.spec.severity or "warning",
    message = alert.spec.message,
    uid = alert.metadata.uid,
  })
end

---@type klua.Controller.pager.klua.dev.v1.Alert
local controller = {
  watch = { apiVersion = "pager.klua.dev/v1", kind = "Alert" },
  workers = 4,

  ---@param ctx klua.Context
  ---@param alert pager.klua.dev.v1.Alert
  ---@return klua.Result|nil
  reconcile = function(ctx, alert)
    local status = alert.status or {}
    if status.deliveredAt then
      return nil -- paged already: never twice
    end
    local url = ctx:getenv("KLUA_PAGER_URL")
    if not url or url == "" then
      error("KLUA_PAGER_URL is not set: there is nowhere to page")
    end
    local resp, err = ctx:http({
      method = "POST",
      url = url,
      headers = {
        ["Content-Type"] = "application/json",
        ["Idempotency-Key"] = alert.metadata.uid,
      },
      body = page_body(alert),
      timeout = 10,
    })
    if not resp then
      error("paging " .. url .. ": " .. tostring(err))
    end
    if resp.status < 200 or resp.status > 299 then
      error("paging " .. url .. ": HTTP " .. resp.status)
    end
    local answer = json.decode(resp.body)
    local page_id = type(answer) == "table" and answer.id or nil
    local now = ctx:now()
    local conds = conditions.set(status.conditions, {
      type = "Delivered",
      status = "True",
      reason = "Paged",
      message = "the endpoint accepted the page (HTTP " .. resp.status .. ")",
      observedGeneration = alert.metadata.generation,
    }, now)
    local _, perr = ctx:patch_status(alert, {
      deliveredAt = conditions.rfc3339(now),
      pageID = type(page_id) == "string" and page_id or nil,
      conditions = conds,
    })
    if perr and perr.reason ~= "NotFound" then
      -- The page went out but is not recorded: the retry pages again with the
      -- same Idempotency-Key.
      error("recording the delivery of " .. ctx.key .. ": " .. tostring(perr))
    end
    ctx.log.info("paged", { severity = alert.spec.severity or "warning", status = resp.status })
    ctx:event(alert, "Normal", "Paged", "page delivered to the on-call endpoint")
    return nil
  end,
}

return controller
