---@meta
-- klua's Lua API, as LuaLS annotations. This file is documentation for
-- editors and readers; it is never loaded by klua.
--
-- A reconciler is a script in the script directory (top-level *.lua files;
-- library modules live in lib/ and are found by `require`). The script
-- returns a table that declares one controller:
--
--   return {
--     name      = "comment",                -- optional, default: file name
--     watch     = { apiVersion = "github.klua.dev/v1", kind = "Comment" },
--     owns      = { { apiVersion = "v1", kind = "ConfigMap" } },
--     namespace = nil,                      -- optional: only this namespace
--     selector  = nil,                      -- optional: label selector
--     workers   = 4,                        -- concurrent reconciles (coroutines)
--     cache     = { keep = { "spec" } },    -- optional: what the cache keeps
--     reconcile = function(ctx, obj) ... end,
--     finalize  = function(ctx, obj) ... end, -- optional; adds/removes a finalizer
--   }
--
-- reconcile(ctx, obj) is called with a fresh decoded copy of the cached
-- object (changing it changes nothing in the cache). It returns nil (done),
-- or a klua.Result. An error raised in reconcile is logged once with file
-- and line, recorded as a Warning Event on the object, and the key backs
-- off exponentially; when the resource has a status subresource and the
-- object has status.conditions, klua also sets a `Ready` condition
-- (status "False", reason "ReconcileError", message "file:line: ...") and
-- removes it after the next successful reconcile. klua touches no other
-- condition type. Any other return value (a string, a table with other
-- keys, a negative requeue_after) is an error naming the script. When the
-- object is gone from the cache, reconcile is not called (level-based:
-- deletions are handled by finalize).
--
-- The sandbox. Each script has its own Lua state: base functions without
-- dofile/loadfile (load takes text only; collectgarbage only "count"),
-- coroutine, string, table, math, utf8, os.time/clock/date/difftime. No io,
-- debug, package or os.execute. `require` finds lib/NAME.lua,
-- lib/NAME/init.lua and klua's modules (klua.json, klua.github,
-- klua.conditions); each module runs in its own environment (its globals
-- are its own; reading a standard global always gives the standard one).
-- The library tables (string, table, math, utf8, coroutine, os) are
-- read-only: keep your own helpers in a local table. setmetatable refuses
-- a __gc field. warn(...) writes a warning with file and line.
--
-- Limits (klua run flags): --lua-memory MiB per script (default 64; over it
-- an allocation fails with "memory limit exceeded"), --lua-budget
-- instructions per reconcile (default 1e8), --lua-timeout ms of CPU a
-- reconcile may run without waiting in a ctx call (default 200). A script
-- stopped by the budget or the deadline cannot catch it with pcall or
-- xpcall. C functions the budget cannot see are capped: string.rep results
-- (16 MiB), string.find/match/gmatch/gsub (a pattern needing more than 1e7
-- matching steps on its subject is refused before it runs; a plain find
-- over more than 1e9 byte comparisons too), table.move/insert/remove/sort
-- (2^24 elements per call).
--
-- Hot reload: `klua run --dev` (or SIGHUP) reloads a script when it, or a
-- lib module it required, changes: the new code applies to every object;
-- reconciles in flight finish on the old code; if the new code does not
-- load, the old one keeps running and the error is logged once. Globals
-- and upvalues do not survive a reload: keep state in the cluster.
-- `klua check DIR` loads scripts without a cluster and also reports
-- warn() calls and globals assigned at the top level.
--
-- Every ctx call that waits (API writes, live reads, HTTP, sleep) yields
-- the coroutine; the event loop runs other reconciles meanwhile.
-- Operational failures (not found, conflict, timeout, HTTP errors at the
-- transport level) return `nil, err` with err a klua.Error; misuse (wrong
-- argument types, unknown kinds) raises an error.

---@class klua.TypeRef
---@field apiVersion string   e.g. "v1", "github.klua.dev/v1"
---@field kind string         e.g. "ConfigMap", "Comment"

---@class klua.Controller
---@field name? string
---@field watch klua.TypeRef
---@field owns? klua.TypeRef[]
---@field namespace? string
---@field selector? string
---@field workers? integer
---@field cache? klua.CacheOptions
---@field reconcile fun(ctx: klua.Context, obj: table): klua.Result|nil
---@field finalize? fun(ctx: klua.Context, obj: table): klua.Result|nil

-- What the cache keeps of each watched object (and so what reconcile sees).
-- By default everything but metadata.managedFields. Scripts that keep
-- different things get different caches (and LISTs); the same, one shared.
---@class klua.CacheOptions
---@field managed_fields? boolean  true: keep metadata.managedFields too
---@field keep? string[]  only these dotted paths ("spec", "metadata.annotations",
---                       "status.conditions"), plus apiVersion, kind and the metadata
---                       klua needs (name, namespace, uid, resourceVersion, generation,
---                       deletionTimestamp, finalizers, ownerReferences, labels)

---@class klua.Result
---@field requeue_after? number  seconds until the key is reconciled again
---@field requeue? boolean       requeue with rate-limited backoff

---@class klua.Error
---@field code integer       HTTP status (0 when no answer was received)
---@field reason string      "NotFound", "Conflict", "AlreadyExists", "Invalid", "Forbidden",
---                          "Gone", "Timeout", "ConnectionError", ...
---@field message string
-- tostring(err) gives "reason: message (code)".

---@class klua.ListOptions
---@field namespace? string  default: all namespaces
---@field selector? string   label selector, e.g. "app=web,tier!=db"
---@field owner? string      uid of an owner: objects whose ownerReferences name it

---@class klua.WriteOptions
---@field field_manager? string  default "klua"
---@field force? boolean         apply only: take ownership of conflicting fields
---@field dry_run? boolean

---@class klua.DeleteOptions
---@field propagation? "Foreground"|"Background"|"Orphan"
---@field uid? string              precondition
---@field resource_version? string precondition

---@class klua.HttpRequest
---@field method? string                 default "GET"
---@field url string
---@field headers? table<string,string>
---@field body? string
---@field timeout? number                seconds, default 30

---@class klua.HttpResponse
---@field status integer
---@field headers table<string,string>   names lower-cased
---@field body string

---@class klua.Log
---@field info fun(msg: string, fields?: table<string, any>)
---@field warn fun(msg: string, fields?: table<string, any>)
---@field error fun(msg: string, fields?: table<string, any>)
---@field debug fun(msg: string, fields?: table<string, any>)

---@class klua.Context
---@field key string          "namespace/name" (or "name" when cluster-scoped)
---@field namespace string    "" when cluster-scoped
---@field name string
---@field controller string   the controller's name
---@field log klua.Log        log lines carry controller and key
local Context = {}

--- Read one object from the informer cache (a fresh copy), or nil if absent.
--- For a kind that no controller watches or owns, this is a live GET (yields).
---@param type klua.TypeRef
---@param namespace string|nil
---@param name string
---@return table|nil obj, klua.Error|nil err
function Context:get(type, namespace, name) end

--- List objects of a kind from the cache (fresh copies), filtered.
---@param type klua.TypeRef
---@param opts? klua.ListOptions
---@return table[] objs
function Context:list(type, opts) end

--- Create an object (apiVersion, kind and metadata in obj). Yields.
---@return table|nil created, klua.Error|nil err
function Context:create(obj, opts) end

--- Replace an object; obj.metadata.resourceVersion guards against lost
--- updates (a stale one returns err.reason == "Conflict"). Yields.
---@return table|nil updated, klua.Error|nil err
function Context:update(obj, opts) end

--- Patch an object. `patch` is a table (encoded as JSON) or a JSON string.
--- opts.type: "merge" (default), "json" (RFC 6902 list) or "apply" (server-side apply).
---@param obj table            names the target: apiVersion, kind, metadata.namespace/name
---@param patch table|string
---@param opts? klua.WriteOptions|{type?: "merge"|"json"|"apply", subresource?: string}
---@return table|nil patched, klua.Error|nil err
function Context:patch(obj, patch, opts) end

--- Server-side apply of a whole desired object (opts.force defaults to true). Yields.
---@return table|nil applied, klua.Error|nil err
function Context:apply(obj, opts) end

--- Delete an object. A missing object is not an error (returns true). Yields.
---@param opts? klua.DeleteOptions
---@return boolean|nil ok, klua.Error|nil err
function Context:delete(obj, opts) end

--- Merge-patch the status subresource: `ctx:patch_status(obj, { observedGeneration = 3 })`.
--- Yields.
---@param obj table
---@param status table
---@return table|nil patched, klua.Error|nil err
function Context:patch_status(obj, status) end

--- Record a Kubernetes Event (events.k8s.io/v1) about obj. Never raises for
--- API failures (they are logged). Yields.
---@param obj table
---@param type "Normal"|"Warning"
---@param reason string   CamelCase, e.g. "Delivered"
---@param message string
function Context:event(obj, type, reason, message) end

--- Outbound HTTP(S), TLS verified. Returns nil, err only when no HTTP answer
--- came (err.reason "ConnectionError" or "Timeout"); any HTTP status is a response.
---@param req klua.HttpRequest
---@return klua.HttpResponse|nil resp, klua.Error|nil err
function Context:http(req) end

--- Sleep without blocking other reconciles. Yields.
---@param seconds number
function Context:sleep(seconds) end

--- Seconds since the epoch (float).
---@return number
function Context:now() end

--- Environment variable of the klua process allowed for scripts
--- (only names starting with KLUA_ or GITHUB_ except secrets are readable).
---@param name string
---@return string|nil
function Context:getenv(name) end

--- Read a secret value passed to klua (e.g. the GitHub token from
--- GITHUB_TOKEN or --github-token-file). The value must never be logged.
---@param name string  "github_token"
---@return string|nil
function Context:secret(name) end

-- Modules provided by klua (require them in scripts):
--   require "klua.json"   -> { encode = fn, decode = fn, null = lightuserdata, empty_array = ... }
--   require "klua.github" -> the GitHub REST client used by lua/comment.lua
--   require "klua.conditions" -> set(list, {type=, status=, reason=, message=, observedGeneration=}, now)
--                                 returns new_list, changed; get(list, type); is_true(list, type)
