---@meta
-- `klua test`'s spec API (lua/lib/klua/testkit.lua), as LuaLS annotations.
-- Never loaded by klua. A spec file (NAME_spec.lua beside the scripts or in
-- spec/) calls describe/it; each `it` function gets a kt.Test.

---@class kt.Ref
---@field apiVersion string
---@field kind string

---@class kt.Error
---@field code integer HTTP status (0: no answer)
---@field reason string NotFound, Conflict, AlreadyExists, Invalid, ...
---@field message string

---@class kt.HttpRequest
---@field method string
---@field url string
---@field headers table<string, string> lower-case names
---@field body string
---@field json any the body decoded, when it is JSON
---@field at number when it arrived, on the test clock (kt.now())

---@class kt.HttpAnswer
---@field status? integer default 200
---@field headers? table<string, string>
---@field body? string|table a table is sent as JSON

---@class kt.Expectation: kt.HttpAnswer
---@field method? string any method when absent; "CONNECT" (url "host:443") takes an https:// request and refuses it with status (default 403)
---@field url? string the exact URL
---@field match? string a Lua pattern for the URL, instead of url
---@field times? integer|"any" default 1; "any": zero or more
---@field respond? fun(req: kt.HttpRequest): kt.HttpAnswer
---@field seen integer how many requests it answered (set by klua test)

---@class kt.Http
---@field calls kt.HttpRequest[] every ctx:http request of this test, in order
local Http = {}
---@param e kt.Expectation
---@return kt.Expectation
function Http.expect(e) end
---@param base_url string
---@param fn fun(req: kt.HttpRequest): kt.HttpAnswer
function Http.serve(base_url, fn) end

---@class kt.Fault
---@field method? string any method when absent
---@field match string a Lua pattern for the request's path and query
---@field status? integer default 500
---@field reason? string default "InternalError"
---@field message? string
---@field times? integer|"any" default 1; a fault not used by the end fails the test
---@field seen integer how many requests it answered (set by klua test)

---@class kt.Api
local Api = {}
--- Make the in-memory API answer matching requests (the scripts' and the
--- spec's own) with an error Status, as an API server in trouble would.
--- Raises with --cluster: a real API server cannot be told to fail.
---@param f kt.Fault
---@return kt.Fault
function Api.fail(f) end

---@class kt.Test
---@field namespace string where objects go by default ("default", or the test's own with --cluster)
---@field cluster boolean running against a real API server
---@field http kt.Http
---@field api kt.Api faults of the in-memory API
local Test = {}
--- End this test here, counted as skipped ("SKIP name: reason"; the summary
--- adds ", N pending"), for what one mode cannot do.
---@param reason string
function Test.skip(reason) end
---@generic T: table
---@param obj T
---@return T created raises on failure
function Test.create(obj) end
---@param ref kt.Ref|table a reference, or an object (then ns and name come from it)
---@param ns? string nil: kt.namespace
---@param name? string
---@return table|nil obj, kt.Error|nil err
function Test.get(ref, ns, name) end
---@param ref kt.Ref
---@param opts? { namespace?: string, selector?: string }
---@return table[]
function Test.list(ref, opts) end
---@return table|nil obj, kt.Error|nil err
function Test.update(obj) end
---@return table|nil obj, kt.Error|nil err
function Test.update_status(obj) end
---@param obj table
---@param patch table
---@param opts? { type?: "merge"|"json"|"strategic", status?: boolean }
---@return table|nil obj, kt.Error|nil err
function Test.patch(obj, patch, opts) end
---@return true|nil ok, kt.Error|nil err
function Test.delete(obj) end
---@return table[] events the events.k8s.io/v1 Events about obj, oldest first
function Test.events(obj) end
---@return number seconds the test clock in epoch seconds (what ctx:now() answers)
function Test.now() end
--- Run until nothing happens (a reconcile in ctx:sleep jumps the clock to its wake-up).
function Test.run() end
---@param seconds number move the clock forward, timer by timer, then run until idle
function Test.advance(seconds) end
---@param name string
---@param value string
function Test.secret(name, value) end
---@param name string
---@param value string|nil restored after the test
function Test.setenv(name, value) end
---@param path string relative to the spec file
---@return table[] documents
function Test.yaml(path) end

---@param name string
---@param fn fun()
function describe(name, fn) end
---@param name string
---@param fn fun(kt: kt.Test)
function it(name, fn) end
---@param fn fun(kt: kt.Test)
function before_each(fn) end
---@param fn fun(kt: kt.Test)
function after_each(fn) end
---@param name string
function pending(name) end
