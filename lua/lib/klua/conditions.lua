-- klua.conditions - status conditions as Kubernetes API conventions define them.
--
-- Provides: set(list, cond, now) -> new list, changed; get(list, type);
-- is_true(list, type); rfc3339(epoch). Uses: klua.json (for its null) only.
--
-- A condition is { type, status ("True"|"False"|"Unknown"), reason,
-- message, observedGeneration, lastTransitionTime }. lastTransitionTime
-- moves only when status changes, as metav1.Condition requires, so a
-- repeated failure does not look like a new one.

local json = require "klua.json"

local M = {}

local function is_null(v)
    return v == nil or v == json.null
end

-- Days since 1970-01-01 -> civil date (proleptic Gregorian), so formatting
-- does not depend on os.date, which a sandbox may not offer.
local function civil(days)
    local z = days + 719468
    local era = (z >= 0 and z or z - 146096) // 146097
    local doe = z - era * 146097
    local yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    local y = yoe + era * 400
    local doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    local mp = (5 * doy + 2) // 153
    local d = doy - (153 * mp + 2) // 5 + 1
    local m = mp < 10 and mp + 3 or mp - 9
    if m <= 2 then y = y + 1 end
    return y, m, d
end

--- RFC 3339 UTC with second precision ("2024-05-01T12:00:00Z"), the format
--- of metav1.Time.
---@param epoch number seconds since the epoch
---@return string
function M.rfc3339(epoch)
    local t = math.floor(epoch)
    local days, secs = t // 86400, t % 86400
    local y, m, d = civil(days)
    return string.format("%04d-%02d-%02dT%02d:%02d:%02dZ", y, m, d,
        secs // 3600, secs % 3600 // 60, secs % 60)
end

-- os through the ordinary lookup: a module's environment is an empty table
-- whose __index reaches the globals, so rawget(_ENV, "os") never finds it.
-- pcall: a sandbox may lock its globals so that reading a missing one raises.
local os_time
do
    local ok, os_lib = pcall(function() return os end)
    if ok and type(os_lib) == "table" then os_time = os_lib.time end
end

-- The time argument: epoch seconds, a ctx (the real one is a userdata, a
-- test's fake a table: both have :now()), or nil for the clock.
local function now_of(now)
    if type(now) == "number" then return now end
    local t = type(now)
    if (t == "table" or t == "userdata") and now.now then return now:now() end
    if os_time then return os_time() end
    error("conditions.set: no clock (pass the time or the ctx)", 3)
end

--- The condition of that type in list, or nil.
---@param list table[]|nil
---@param type string
---@return table|nil
function M.get(list, type)
    if is_null(list) then return nil end
    for _, c in ipairs(list) do
        if c.type == type then return c end
    end
    return nil
end

--- True when the condition of that type has status "True".
function M.is_true(list, type)
    local c = M.get(list, type)
    return c ~= nil and c.status == "True"
end

--- A new list with `cond` set (the input is not changed), and whether
--- anything other than lastTransitionTime differs from before.
---@param list table[]|nil   current conditions (status.conditions)
---@param cond table         { type, status, reason, message, observedGeneration }
---@param now? number|klua.Context  the time (epoch seconds) or a ctx; default os.time()
---@return table[] list, boolean changed
function M.set(list, cond, now)
    assert(type(cond) == "table" and type(cond.type) == "string", "conditions.set: cond.type required")
    local out, old = {}, nil
    if not is_null(list) then
        for _, c in ipairs(list) do
            if c.type == cond.type then old = c else out[#out + 1] = c end
        end
    end
    local new = {
        type = cond.type,
        status = cond.status or "Unknown",
        reason = cond.reason or "",
        message = cond.message or "",
        observedGeneration = cond.observedGeneration and math.tointeger(cond.observedGeneration)
            or cond.observedGeneration,
    }
    if old and old.status == new.status and not is_null(old.lastTransitionTime) then
        new.lastTransitionTime = old.lastTransitionTime
    else
        new.lastTransitionTime = M.rfc3339(now_of(now))
    end
    local changed = not old or old.status ~= new.status or old.reason ~= new.reason
        or old.message ~= new.message
        or (math.tointeger(old.observedGeneration) or old.observedGeneration) ~= new.observedGeneration
    -- keep the original position so that a status diff stays small
    local pos = #out + 1
    if not is_null(list) then
        for i, c in ipairs(list) do
            if c.type == cond.type then pos = i; break end
        end
    end
    table.insert(out, math.min(pos, #out + 1), new)
    return out, changed
end

return M
