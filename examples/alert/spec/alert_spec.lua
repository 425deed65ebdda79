-- alert_spec.lua - the pager Alert controller (examples/alert/alert.lua).
-- `klua test examples/alert` (in-memory API) or add `--cluster`.
local ALERT = { apiVersion = "pager.klua.dev/v1", kind = "Alert" }
local PAGER = "http://pager.test/page"

describe("the Alert controller", function()
  before_each(function(kt)
    kt.setenv("KLUA_PAGER_URL", PAGER)
  end)

  it("pages once and records the delivery", function(kt)
    local page = kt.http.expect({ method = "POST", url = PAGER, status = 201, body = { id = "pg-1" } })
    local alert = kt.create(kt.yaml("../alert.yaml")[1])
    kt.run()

    local got = kt.get(ALERT, nil, "disk-full")
    assert.equal("pg-1", got.status.pageID)
    assert.not_nil(got.status.deliveredAt)
    assert.equal("True", got.status.conditions[1].status)
    -- the page: JSON with the Alert's uid, which is also the Idempotency-Key
    local req = kt.http.calls[1]
    assert.equal(alert.metadata.uid, req.headers["idempotency-key"])
    assert.same({ alert = kt.namespace .. "/disk-full", severity = "critical",
                  message = "/var on db-0 is 95% full", uid = alert.metadata.uid }, req.json)
    assert.equal(1, page.seen)
    assert.equal("Paged", kt.events(got)[1].reason)

    -- a later change to the Alert pages no more (no expectation is left:
    -- another page would fail the test)
    kt.patch(got, { metadata = { labels = { seen = "yes" } } })
    kt.run()
    assert.equal(1, #kt.http.calls)
  end)

  it("records a ReconcileError and retries with backoff until the endpoint answers", function(kt)
    kt.http.expect({ method = "POST", url = PAGER, status = 503, times = 2 })
    kt.http.expect({ method = "POST", url = PAGER, status = 200, body = { id = "pg-2" } })
    kt.create({ apiVersion = "pager.klua.dev/v1", kind = "Alert", metadata = { name = "a" },
                spec = { severity = "warning", message = "m" } })
    -- the first retries come 5 and 10 ms later (client-go's backoff): kt.run
    -- lets them happen, as a cluster would
    kt.run()
    kt.advance(1)
    local a = kt.get(ALERT, nil, "a")
    assert.equal("pg-2", a.status.pageID)
    assert.equal(3, #kt.http.calls)
    local ev = kt.events(a)
    assert.equal("ReconcileError", ev[1].reason)
    assert.matches("HTTP 503", ev[1].note)
    assert.equal("Paged", ev[#ev].reason)
  end)
end)
