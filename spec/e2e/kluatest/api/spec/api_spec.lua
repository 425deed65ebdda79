-- api_spec.lua - the API semantics a spec relies on. Run in both modes
-- (spec/e2e/test_kluatest.py): the in-memory API must answer as the real
-- kube-apiserver does.
local CM = { apiVersion = "v1", kind = "ConfigMap" }
local DEPLOY = { apiVersion = "apps/v1", kind = "Deployment" }

local function cm(name, labels, data)
  return { apiVersion = "v1", kind = "ConfigMap", metadata = { name = name, labels = labels }, data = data }
end

local function deployment(name)
  return { apiVersion = "apps/v1", kind = "Deployment", metadata = { name = name },
    spec = { replicas = 1, selector = { matchLabels = { app = name } },
      template = { metadata = { labels = { app = name } },
        spec = { containers = { { name = "c", image = "busybox" } } } } } }
end

describe("the API", function()
  it("keeps resourceVersion, uid and creationTimestamp; NotFound and AlreadyExists", function(kt)
    local a = kt.create(cm("a", nil, { k = "v" }))
    assert.not_nil(a.metadata.uid)
    assert.not_nil(a.metadata.resourceVersion)
    assert.not_nil(a.metadata.creationTimestamp)
    local again, err = kt.get(CM, nil, "missing")
    assert.is_nil(again)
    assert.equal("NotFound", err.reason)
    assert.equal(404, err.code)
    assert.has_error(function() kt.create(cm("a")) end, "AlreadyExists")
  end)

  it("refuses an update from a stale copy with Conflict", function(kt)
    local a = kt.create(cm("a", nil, { k = "1" }))
    local b = kt.get(a)
    b.data.k = "2"
    assert.not_nil(kt.update(b))
    a.data.k = "3"
    local out, err = kt.update(a)
    assert.is_nil(out)
    assert.equal("Conflict", err.reason)
    assert.equal(409, err.code)
  end)

  it("keeps the resourceVersion when an update changes nothing", function(kt)
    local a = kt.create(cm("a", nil, { k = "1" }))
    local b = kt.update(kt.get(a))
    assert.equal(a.metadata.resourceVersion, b.metadata.resourceVersion)
  end)

  it("moves generation on spec changes only, and keeps status and spec apart", function(kt)
    local d = kt.create(deployment("d"))
    assert.equal(1, d.metadata.generation)
    d = kt.patch(d, { metadata = { labels = { x = "y" } } })
    assert.equal(1, d.metadata.generation)
    d = kt.patch(d, { spec = { replicas = 3 } })
    assert.equal(2, d.metadata.generation)
    d = kt.patch(d, { status = { observedGeneration = 2 } }, { status = true })
    assert.equal(2, d.metadata.generation)
    assert.equal(2, d.status.observedGeneration)
    -- a status write ignores spec; a main-resource write ignores status
    d = kt.patch(d, { spec = { replicas = 9 }, status = { replicas = 7 } }, { status = true })
    assert.equal(3, d.spec.replicas)
    assert.equal(7, d.status.replicas)
    d = kt.patch(d, { status = { replicas = 1 } })
    assert.equal(7, d.status.replicas)
  end)

  it("applies merge patches (null deletes) and JSON patches (test fails with 422)", function(kt)
    local a = kt.create(cm("a", { keep = "1", drop = "1" }, { k = "v" }))
    local json = require "klua.json"
    a = kt.patch(a, { metadata = { labels = { drop = json.null } } })
    assert.same({ keep = "1" }, a.metadata.labels)
    a = kt.patch(a, { { op = "add", path = "/data/n", value = "2" } }, { type = "json" })
    assert.equal("2", a.data.n)
    local out, err = kt.patch(a, { { op = "test", path = "/data/n", value = "3" },
                                   { op = "remove", path = "/data/n" } }, { type = "json" })
    assert.is_nil(out)
    assert.equal(422, err.code)
  end)

  it("selects by label", function(kt)
    kt.create(cm("a", { tier = "web", env = "prod" }))
    kt.create(cm("b", { tier = "db", env = "prod" }))
    kt.create(cm("c", { tier = "web" }))
    local function names(sel)
      local out = {}
      for _, o in ipairs(kt.list(CM, { selector = sel })) do
        if o.metadata.name ~= "kube-root-ca.crt" then out[#out + 1] = o.metadata.name end
      end
      table.sort(out)
      return table.concat(out, ",")
    end
    assert.equal("a,c", names("tier=web"))
    assert.equal("a", names("tier=web,env=prod"))
    assert.equal("b", names("tier!=web,env"))
    assert.equal("a,c", names("tier notin (db)"))
    assert.equal("c", names("!env"))
    assert.equal("a,b", names("tier in (db,web),env"))
  end)

  it("holds a deleted object with a finalizer until the finalizer goes", function(kt)
    local a = kt.create({ apiVersion = "v1", kind = "ConfigMap",
                          metadata = { name = "f", finalizers = { "kt.dev/hold" } } })
    assert.is_true(kt.delete(a))
    local held = kt.get(a)
    assert.not_nil(held.metadata.deletionTimestamp)
    kt.patch(held, { metadata = { finalizers = require("klua.json").null } })
    local gone, err = kt.get(a)
    assert.is_nil(gone)
    assert.equal("NotFound", err.reason)
  end)

  it("delivers watch events to the controllers", function(kt)
    local a = kt.create(cm("w", { ["kt/count"] = "yes" }, { want = "1" }))
    kt.run()
    assert.equal("1", kt.get(a).data.seen)
    kt.patch(a, { data = { want = "3" } })
    kt.run()
    assert.equal("3", kt.get(a).data.seen)
  end)
end)
