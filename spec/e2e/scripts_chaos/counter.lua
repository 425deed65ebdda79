-- counter.lua - the chaos suite's second controller (spec/support/chaos.py
-- runs it beside lua/comment.lua under faults).
--
-- Provides: a controller over ConfigMaps labelled chaos.klua.dev/role:
--   role=increment  "inc-NNNNN", made by the driver: add one to the counter,
--                   exactly once, then delete the increment;
--   role=counter    "counter": data.value, and one key per applied increment
--                   (its name -> the replica that applied it);
--   role=probe      "probe": when data.nonce changes, write what this
--                   replica's informer cache holds (Comments and these
--                   ConfigMaps, "Kind name resourceVersion" per line) to
--                   data.answer, so the driver can compare klua's cache with
--                   a quorum LIST from outside.
-- Uses: ctx:get/list (cache), ctx:update (resourceVersion-guarded), ctx:delete,
-- ctx:getenv("KLUA_CHAOS_REPLICA") (the replica's name, set by the driver).
--
-- Why exactly once holds under SIGKILL and two leaders: the increment and
-- the record that it was applied go in ONE write, guarded by the counter's
-- resourceVersion. A copy read from a stale cache, or a second replica
-- writing meanwhile, gets 409 Conflict and looks again; a crash after the
-- write and before the delete finds its own record and only deletes.

local CM = { apiVersion = "v1", kind = "ConfigMap" }
local COMMENT = { apiVersion = "github.klua.dev/v1", kind = "Comment" }
local ROLE = "chaos.klua.dev/role"

local function replica(ctx)
    return ctx:getenv("KLUA_CHAOS_REPLICA") or "unknown"
end

-- Operational failures (API server down, watch lagging, conflicts) are the
-- chaos itself: look again with backoff rather than raise.
local function retry(ctx, what, err)
    ctx.log.info(what .. " failed; retrying", { error = tostring(err) })
    return { requeue = true }
end

local function increment(ctx, inc)
    local id = inc.metadata.name
    local counter = ctx:get(CM, inc.metadata.namespace, "counter")
    if not counter then return { requeue_after = 1 } end
    local data = counter.data or {}
    if data[id] == nil then
        local n = math.tointeger(tonumber(data.value or "0"))
        if not n then error("counter has a value that is not an integer: " .. tostring(data.value)) end
        data.value = string.format("%d", n + 1)
        data[id] = replica(ctx)
        counter.data = data
        local _, err = ctx:update(counter)   -- metadata.resourceVersion guards it
        if err then return retry(ctx, "increment " .. id, err) end
        ctx.log.info("applied", { increment = id, value = data.value })
    end
    local _, derr = ctx:delete(inc, { uid = inc.metadata.uid })
    if derr then return retry(ctx, "delete " .. id, derr) end
    return nil
end

local function probe(ctx, p)
    local data = p.data or {}
    if not data.nonce or data.nonce == data.answered then return nil end
    local ns = p.metadata.namespace
    local seen = {}
    for _, o in ipairs(ctx:list(COMMENT, { namespace = ns })) do
        seen[#seen + 1] = "Comment " .. o.metadata.name .. " " .. o.metadata.resourceVersion
    end
    for _, o in ipairs(ctx:list(CM, { namespace = ns, selector = ROLE })) do
        if o.metadata.name ~= p.metadata.name then
            seen[#seen + 1] = "ConfigMap " .. o.metadata.name .. " " .. o.metadata.resourceVersion
        end
    end
    table.sort(seen)
    data.answer = table.concat(seen, "\n")
    data.answered = data.nonce
    data.by = replica(ctx)
    p.data = data
    local _, err = ctx:update(p)
    if err then return retry(ctx, "probe answer", err) end
    return nil
end

return {
    name = "counter",
    watch = CM,
    selector = ROLE,
    workers = 2,
    reconcile = function(ctx, cm)
        local role = (cm.metadata.labels or {})[ROLE]
        if role == "increment" then return increment(ctx, cm) end
        if role == "probe" then return probe(ctx, cm) end
        return nil
    end,
}
