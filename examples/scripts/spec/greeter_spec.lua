-- greeter_spec.lua - examples/scripts/greeter.lua.
local CM = { apiVersion = "v1", kind = "ConfigMap" }

local function configmap(name, labels, data)
  return { apiVersion = "v1", kind = "ConfigMap", metadata = { name = name, labels = labels }, data = data }
end

describe("the greeter", function()
  it("greets a labelled ConfigMap by name, with an Event", function(kt)
    kt.create(configmap("hi", { ["klua.dev/greet"] = "true" }, { name = "Ada" }))
    kt.run()
    local cm = kt.get(CM, nil, "hi")
    assert.equal("Hello, Ada!", cm.data.greeting)
    local ev = kt.events(cm)
    assert.equal(1, #ev)
    assert.equal("Greeted", ev[1].reason)
    assert.equal("Hello, Ada!", ev[1].note)
  end)

  it("leaves ConfigMaps without the label alone", function(kt)
    kt.create(configmap("plain", nil, { name = "Bob" }))
    kt.run()
    assert.is_nil(kt.get(CM, nil, "plain").data.greeting)
  end)

  it("greets again when the name changes, and writes nothing when in step", function(kt)
    local cm = kt.create(configmap("hi", { ["klua.dev/greet"] = "true" }, { name = "Ada" }))
    kt.run()
    kt.patch(cm, { data = { name = "Grace" } })
    kt.run()
    cm = kt.get(CM, nil, "hi")
    assert.equal("Hello, Grace!", cm.data.greeting)
    local rv = cm.metadata.resourceVersion
    kt.advance(60)
    assert.equal(rv, kt.get(CM, nil, "hi").metadata.resourceVersion)
  end)
end)
