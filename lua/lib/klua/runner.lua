-- klua.runner - what a reconcile coroutine runs: the script's reconcile and
-- finalize, with klua's finalizer handling around them.
--
-- klua's controller (src/controller_version.c) loads this module once per
-- script version through lua_host_load_internal (a private environment, so
-- a script's globals cannot change ipairs or error) and calls
-- runner.new(reconcile, finalize, finalizer) to get the function each
-- reconcile coroutine starts with: run(ctx, obj) returns the script's
-- result and which of the script's functions gave it ("reconcile" or
-- "finalize"), so that a bad result can be reported with the right line.
--
-- With finalize declared, klua owns the finalizer string `finalizer`:
--   * an object without it that is not being deleted gets it first (one JSON
--     patch that tests the resourceVersion, so a stale copy is refused);
--   * an object being deleted that carries it is finalized, and the
--     finalizer is removed (a JSON patch testing that the entry is still
--     ours) once finalize returns nil;
--   * an object being deleted without it is left alone.
-- A failed patch: 404 (gone) ends the reconcile, 409/422 (changed under
-- us) requeues it, anything else is an error naming what was tried.
--
-- Without finalize, reconcile sees every object, deleting ones included
-- (obj.metadata.deletionTimestamp set), as in controller-runtime.
--
-- Stale finalizers: klua passes run() a third argument for an object being
-- deleted, the finalizers this process put on objects of this kind and no
-- script declares any more (a renamed script, a reload that dropped
-- finalize), and orphans it was told to remove. Those the object carries
-- are taken off first (one JSON patch testing each entry), with a warning
-- naming each; the reconcile then goes on with the object the patch
-- answered (the watch's echo of klua's own write does not queue the key
-- again), unless no finalizer is left: the API server is deleting it. When
-- finalize is declared and the object does not carry this version's
-- finalizer (a script renamed, or its finalizer renamed, before it reached
-- the object), finalize runs first: the stale finalizer stood for this
-- cleanup.
local M = {}

local function index_of(list, v)
  for i, x in ipairs(list or {}) do
    if x == v then return i end
  end
end

local function failed(what, err)
  if err.code == 404 then return nil end
  if err.code == 409 or err.code == 422 then return { requeue = true } end
  error(what .. ": " .. tostring(err), 0)
end

local function add_finalizer(ctx, obj, finalizer)
  local md = obj.metadata
  local test = { op = "test", path = "/metadata/resourceVersion", value = md.resourceVersion }
  local add
  if md.finalizers and #md.finalizers > 0 then
    add = { op = "add", path = "/metadata/finalizers/-", value = finalizer }
  else
    add = { op = "add", path = "/metadata/finalizers", value = { finalizer } }
  end
  return ctx:patch(obj, { test, add }, { type = "json" })
end

local function remove_finalizer(ctx, obj, idx, finalizer)
  local path = "/metadata/finalizers/" .. (idx - 1)
  return ctx:patch(obj, { { op = "test", path = path, value = finalizer },
                          { op = "remove", path = path } }, { type = "json" })
end

local function carries_any(obj, names)
  for _, n in ipairs(names) do
    if index_of(obj.metadata.finalizers, n) then return true end
  end
  return false
end

-- Returns the object the patch answered, or nil and the result to return.
local function remove_stale(ctx, obj, stale)
  local found = {}
  for i, f in ipairs(obj.metadata.finalizers or {}) do
    for _, s in ipairs(stale) do
      if f == s then found[#found + 1] = { idx = i, name = f } end
    end
  end
  if #found == 0 then return obj end
  local ops = {}
  for k = #found, 1, -1 do   -- from the end: earlier indexes stay valid
    local path = "/metadata/finalizers/" .. (found[k].idx - 1)
    ops[#ops + 1] = { op = "test", path = path, value = found[k].name }
    ops[#ops + 1] = { op = "remove", path = path }
  end
  for _, f in ipairs(found) do
    ctx.log.warn("removing a finalizer no script declares any more", { finalizer = f.name })
  end
  local updated, err = ctx:patch(obj, ops, { type = "json" })
  if not updated then return nil, failed("removing finalizer " .. found[1].name, err) end
  return updated
end

--- The function a reconcile coroutine runs.
---@param reconcile function the script's reconcile(ctx, obj)
---@param finalize function|nil the script's finalize(ctx, obj), if declared
---@param finalizer string the finalizer klua manages ("klua.dev/<controller>" by default)
---@return fun(ctx: any, obj: table, stale: string[]|nil): any, string
function M.new(reconcile, finalize, finalizer)
  return function(ctx, obj, stale)
    if stale and obj.metadata.deletionTimestamp ~= nil and carries_any(obj, stale) then
      local own = index_of(obj.metadata.finalizers, finalizer)
      if finalize and not own then
        local r = finalize(ctx, obj)
        if r ~= nil then return r, "finalize" end
      end
      local updated, r = remove_stale(ctx, obj, stale)
      if not updated then return r, "finalize" end
      local left = updated.metadata and updated.metadata.finalizers
      if not left or #left == 0 then return nil, "finalize" end
      obj = updated
    end
    if not finalize then return (reconcile(ctx, obj)), "reconcile" end
    local md = obj.metadata
    local idx = index_of(md.finalizers, finalizer)
    if md.deletionTimestamp == nil then
      if not idx then
        local updated, err = add_finalizer(ctx, obj, finalizer)
        if not updated then return failed("adding finalizer " .. finalizer, err) end
        obj = updated
      end
      return (reconcile(ctx, obj)), "reconcile"
    end
    if not idx then return nil end
    local r = finalize(ctx, obj)
    if r ~= nil then return r, "finalize" end
    local ok, err = remove_finalizer(ctx, obj, idx, finalizer)
    if not ok then return failed("removing finalizer " .. finalizer, err) end
    return nil
  end
end

return M
