-- runner_spec.lua - klua.runner: the finalizer handling around reconcile and
-- finalize that every reconcile coroutine runs.
package.path = "lua/lib/?.lua;" .. package.path
local runner = require "klua.runner"

local FIN = "klua.dev/test"

-- A ctx that records JSON patches and answers them as told.
local function fake_ctx(answer)
  local ctx = { patches = {} }
  function ctx:patch(obj, patch, opts)
    table.insert(self.patches, { obj = obj, patch = patch, opts = opts })
    if answer then return answer(obj, patch) end
    local updated = { metadata = { name = obj.metadata.name, resourceVersion = "2",
                                   finalizers = { FIN } } }
    return updated
  end
  return ctx
end

local function err(code)
  return setmetatable({ code = code, reason = "R" .. code, message = "m" },
                      { __tostring = function(e) return e.reason .. ": " .. e.message end })
end

local function obj(md)
  md.name = md.name or "x"
  md.resourceVersion = md.resourceVersion or "1"
  return { metadata = md }
end

describe("klua.runner", function()
  it("without finalize, runs reconcile and says so, no patch", function()
    local ctx = fake_ctx()
    local run = runner.new(function(_, o) return { requeue_after = 3, seen = o } end, nil, FIN)
    local o = obj({})
    local r, fn = run(ctx, o)
    assert.equal("reconcile", fn)
    assert.equal(3, r.requeue_after)
    assert.equal(o, r.seen)
    assert.same({}, ctx.patches)
  end)

  it("adds the finalizer first, testing the resourceVersion, then reconciles the answer", function()
    local ctx = fake_ctx()
    local got
    local run = runner.new(function(_, o) got = o end, function() end, FIN)
    local r, fn = run(ctx, obj({ resourceVersion = "7" }))
    assert.is_nil(r)
    assert.equal("reconcile", fn)
    assert.equal(1, #ctx.patches)
    assert.same({ type = "json" }, ctx.patches[1].opts)
    assert.same({ { op = "test", path = "/metadata/resourceVersion", value = "7" },
                  { op = "add", path = "/metadata/finalizers", value = { FIN } } },
                ctx.patches[1].patch)
    assert.equal("2", got.metadata.resourceVersion)   -- the patched object
  end)

  it("appends to finalizers others already set", function()
    local ctx = fake_ctx()
    local run = runner.new(function() end, function() end, FIN)
    run(ctx, obj({ finalizers = { "other.io/x" } }))
    assert.same({ op = "add", path = "/metadata/finalizers/-", value = FIN }, ctx.patches[1].patch[2])
  end)

  it("does not patch when the finalizer is there", function()
    local ctx = fake_ctx()
    local run = runner.new(function() return { requeue = true } end, function() end, FIN)
    local r, fn = run(ctx, obj({ finalizers = { FIN } }))
    assert.same({ requeue = true }, r)
    assert.equal("reconcile", fn)
    assert.same({}, ctx.patches)
  end)

  it("turns a failed finalizer patch into nothing (404), a requeue (409, 422) or an error", function()
    local reconciled = false
    local run = runner.new(function() reconciled = true end, function() end, FIN)
    assert.is_nil(run(fake_ctx(function() return nil, err(404) end), obj({})))
    assert.same({ requeue = true }, run(fake_ctx(function() return nil, err(409) end), obj({})))
    assert.same({ requeue = true }, run(fake_ctx(function() return nil, err(422) end), obj({})))
    local ok, msg = pcall(run, fake_ctx(function() return nil, err(403) end), obj({}))
    assert.is_false(ok)
    assert.equal("adding finalizer " .. FIN .. ": R403: m", msg)
    assert.is_false(reconciled)
  end)

  it("finalizes an object being deleted, then removes the finalizer with a test", function()
    local ctx = fake_ctx()
    local finalized
    local run = runner.new(function() error("not reconcile") end,
                           function(_, o) finalized = o.metadata.name end, FIN)
    local r = run(ctx, obj({ deletionTimestamp = "now", finalizers = { "a", FIN } }))
    assert.is_nil(r)
    assert.equal("x", finalized)
    assert.same({ { op = "test", path = "/metadata/finalizers/1", value = FIN },
                  { op = "remove", path = "/metadata/finalizers/1" } }, ctx.patches[1].patch)
  end)

  it("keeps the finalizer while finalize returns a result, and says finalize gave it", function()
    local ctx = fake_ctx()
    local run = runner.new(function() end, function() return { requeue_after = 5 } end, FIN)
    local r, fn = run(ctx, obj({ deletionTimestamp = "now", finalizers = { FIN } }))
    assert.same({ requeue_after = 5 }, r)
    assert.equal("finalize", fn)
    assert.same({}, ctx.patches)
  end)

  it("leaves an object being deleted without our finalizer alone", function()
    local ctx = fake_ctx()
    local called = false
    local run = runner.new(function() called = true end, function() called = true end, FIN)
    assert.is_nil(run(ctx, obj({ deletionTimestamp = "now", finalizers = { "other" } })))
    assert.is_false(called)
    assert.same({}, ctx.patches)
  end)

  it("reports a failed finalizer removal like a failed add", function()
    local run = runner.new(function() end, function() end, FIN)
    local deleting = obj({ deletionTimestamp = "now", finalizers = { FIN } })
    assert.is_nil(run(fake_ctx(function() return nil, err(404) end), deleting))
    local ok, msg = pcall(run, fake_ctx(function() return nil, err(500) end), deleting)
    assert.is_false(ok)
    assert.equal("removing finalizer " .. FIN .. ": R500: m", msg)
  end)

  describe("stale finalizers (put by klua, declared no more)", function()
    -- answers a JSON patch of metadata.finalizers as the API server would
    local function apply(o, patch)
      local fins = {}
      for i, f in ipairs(o.metadata.finalizers or {}) do fins[i] = f end
      for _, op in ipairs(patch) do
        if op.op == "remove" then
          table.remove(fins, tonumber(op.path:match("(%d+)$")) + 1)
        end
      end
      return { metadata = { name = o.metadata.name, resourceVersion = "2",
                            deletionTimestamp = o.metadata.deletionTimestamp,
                            finalizers = fins } }
    end

    local function logging_ctx(answer)
      local ctx = fake_ctx(answer or apply)
      ctx.warned = {}
      ctx.log = { warn = function(msg, f) table.insert(ctx.warned, f.finalizer) end }
      return ctx
    end

    it("takes those the deleting object carries off first, from the end, then goes on", function()
      local ctx = logging_ctx()
      local seen
      local run = runner.new(function(_, o) seen = o end, nil, FIN)
      local o = obj({ deletionTimestamp = "t",
                      finalizers = { "klua.dev/old", "example.com/keep", "klua.dev/older" } })
      local r, fn = run(ctx, o, { "klua.dev/old", "klua.dev/older" })
      assert.is_nil(r)
      assert.equal("reconcile", fn)
      -- without finalize, reconcile sees the deleting object, as the patch answered it
      assert.same({ "example.com/keep" }, seen.metadata.finalizers)
      assert.equal("2", seen.metadata.resourceVersion)
      assert.same({ "klua.dev/old", "klua.dev/older" }, ctx.warned)
      assert.same({ { op = "test", path = "/metadata/finalizers/2", value = "klua.dev/older" },
                    { op = "remove", path = "/metadata/finalizers/2" },
                    { op = "test", path = "/metadata/finalizers/0", value = "klua.dev/old" },
                    { op = "remove", path = "/metadata/finalizers/0" } },
                  ctx.patches[1].patch)
    end)

    it("stops when no finalizer is left: the API server is deleting the object", function()
      local ctx = logging_ctx()
      local ran = false
      local run = runner.new(function() ran = true end, nil, FIN)
      local r, fn = run(ctx, obj({ deletionTimestamp = "t", finalizers = { "klua.dev/old" } }),
                        { "klua.dev/old" })
      assert.is_nil(r)
      assert.equal("finalize", fn)
      assert.is_false(ran)
      assert.equal(1, #ctx.patches)
    end)

    it("leaves objects not being deleted, and goes on when none is there", function()
      local ctx = logging_ctx()
      local seen = 0
      local run = runner.new(function() seen = seen + 1 end, nil, FIN)
      run(ctx, obj({ finalizers = { "klua.dev/old" } }), { "klua.dev/old" })
      run(ctx, obj({ deletionTimestamp = "t", finalizers = { "example.com/x" } }),
          { "klua.dev/old" })
      assert.equal(2, seen)
      assert.same({}, ctx.patches)
    end)

    it("runs finalize first when the object lacks this version's finalizer", function()
      local ctx = logging_ctx()
      local finalized = 0
      local run = runner.new(function() error("reconcile ran") end,
                             function() finalized = finalized + 1 end, FIN)
      local r = run(ctx, obj({ deletionTimestamp = "t", finalizers = { "klua.dev/old" } }),
                    { "klua.dev/old" })
      assert.is_nil(r)
      assert.equal(1, finalized)
      assert.same({ { op = "test", path = "/metadata/finalizers/0", value = "klua.dev/old" },
                    { op = "remove", path = "/metadata/finalizers/0" } }, ctx.patches[1].patch)
      -- carrying this version's finalizer too: the stale one goes first, then
      -- finalize runs once, in the same reconcile, and takes its own off
      ctx = logging_ctx()
      run(ctx, obj({ deletionTimestamp = "t", finalizers = { "klua.dev/old", FIN } }),
          { "klua.dev/old" })
      assert.equal(2, finalized)
      assert.equal(2, #ctx.patches)
      assert.same({ op = "remove", path = "/metadata/finalizers/0" }, ctx.patches[2].patch[2])
      -- finalize asking to requeue keeps the stale finalizer
      ctx = logging_ctx()
      local again = runner.new(function() end, function() return { requeue = true } end, FIN)
      local r2, fn = again(ctx, obj({ deletionTimestamp = "t", finalizers = { "klua.dev/old" } }),
                           { "klua.dev/old" })
      assert.same({ requeue = true }, r2)
      assert.equal("finalize", fn)
      assert.same({}, ctx.patches)
    end)

    it("requeues when the finalizers changed under it", function()
      local ctx = logging_ctx(function() return nil, err(422) end)
      local run = runner.new(function() end, nil, FIN)
      local r = run(ctx, obj({ deletionTimestamp = "t", finalizers = { "klua.dev/old" } }),
                    { "klua.dev/old" })
      assert.same({ requeue = true }, r)
    end)
  end)
end)
