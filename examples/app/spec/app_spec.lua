-- app_spec.lua - the App controller (examples/app/app.lua): a Deployment and
-- a Service kept in step with each App and owned by it.
local APP = { apiVersion = "platform.klua.dev/v1", kind = "App" }
local DEPLOYMENT = { apiVersion = "apps/v1", kind = "Deployment" }
local SERVICE = { apiVersion = "v1", kind = "Service" }

local function owner_uid(obj)
  return obj.metadata.ownerReferences[1].uid
end

describe("the App controller", function()
  it("creates a Deployment and a Service owned by the App", function(kt)
    local app = kt.create(kt.yaml("../app.yaml")[1])
    kt.run()
    local d = kt.get(DEPLOYMENT, nil, "web")
    assert.equal(2, d.spec.replicas)
    assert.equal("nginx:1.27", d.spec.template.spec.containers[1].image)
    assert.equal(app.metadata.uid, owner_uid(d))
    local s = kt.get(SERVICE, nil, "web")
    assert.equal(80, s.spec.ports[1].port)
    assert.equal(app.metadata.uid, owner_uid(s))
    local got = kt.get(APP, nil, "web")
    assert.equal(got.metadata.generation, got.status.observedGeneration)
    assert.equal("False", got.status.conditions[1].status) -- no pods ready yet
  end)

  it("carries a spec change to the Deployment and the Service", function(kt)
    local app = kt.create(kt.yaml("../app.yaml")[1])
    kt.run()
    kt.patch(app, { spec = { image = "nginx:1.28", port = 8080 } })
    kt.run()
    assert.equal("nginx:1.28", kt.get(DEPLOYMENT, nil, "web").spec.template.spec.containers[1].image)
    assert.equal(8080, kt.get(SERVICE, nil, "web").spec.ports[1].port)
  end)

  it("puts back a hand-scaled Deployment and a deleted Service", function(kt)
    kt.create(kt.yaml("../app.yaml")[1])
    kt.run()
    kt.patch(kt.get(DEPLOYMENT, nil, "web"), { spec = { replicas = 5 } })
    kt.delete(kt.get(SERVICE, nil, "web"))
    kt.run()
    assert.equal(2, kt.get(DEPLOYMENT, nil, "web").spec.replicas)
    assert.not_nil(kt.get(SERVICE, nil, "web"))
  end)

  it("reports the Deployment's ready pods", function(kt)
    kt.create(kt.yaml("../app.yaml")[1])
    kt.run()
    -- what the Deployment controller would write (there is none here)
    local d, err = kt.patch(kt.get(DEPLOYMENT, nil, "web"),
      { status = { replicas = 2, readyReplicas = 2 } }, { status = true })
    assert.not_nil(d, tostring(err))
    kt.run()
    local app = kt.get(APP, nil, "web")
    assert.equal(2, app.status.readyReplicas)
    assert.equal("True", app.status.conditions[1].status)
  end)
end)
