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
--     watches   = { { apiVersion = "v1", kind = "Secret",   -- optional: mapped kinds
--                     map = function(s) return { s.metadata.namespace .. "/app" } end } },
--     namespace = nil,                      -- optional: only this namespace
--     selector  = nil,                      -- optional: label selector
--     workers   = 4,                        -- concurrent reconciles (coroutines)
--     cache     = { keep = { "spec" } },    -- optional: what the cache keeps
--     finalizer = "example.com/cleanup",    -- optional, default "klua.dev/<name>"
--     error_condition = "Ready",            -- optional: the condition set on errors, or false
--     reconcile = function(ctx, obj) ... end,
--     finalize  = function(ctx, obj) ... end, -- optional; adds/removes the finalizer
--   }
--
-- reconcile(ctx, obj) is called with a fresh decoded copy of the cached
-- object (changing it changes nothing in the cache). It returns nil (done),
-- or a klua.Result. An update of the watched object that changes only its
-- status, metadata.resourceVersion or metadata.managedFields does not run it
-- (watch.predicate changes that). An error raised in reconcile is logged
-- once with file and line, recorded as a Warning Event on the object, and
-- the key backs off exponentially; when the resource has a status
-- subresource and the object has status.conditions, klua also sets the
-- error_condition (`Ready` by default; status "False", reason
-- "ReconcileError", message "file:line: ...") and removes it after the
-- next successful reconcile. A condition of that type that the script wrote
-- itself for the object's current generation is never overwritten, and
-- klua touches no other condition type. Any other return value (a string,
-- a table with other keys, a negative requeue_after) is an error naming the
-- script. When the object is gone from the cache, reconcile is not called
-- (level-based). With finalize declared, objects being deleted go to
-- finalize and never to reconcile; without it, reconcile sees them
-- (obj.metadata.deletionTimestamp set). A finalizer klua put on objects and
-- no script declares any more (a renamed script, a reload that dropped
-- finalize) is taken off objects being deleted, with a warning. The
-- watch's echo of the reconcile's own write (the object, or a child it
-- created, at the resourceVersion the write answered) does not queue the
-- key again: return { requeue = true } to have another pass.
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

-- Any kind: ctx:get and ctx:list of a klua.TypeRef return plain tables.
---@class klua.TypeRef: klua.Ref<table>
---@field apiVersion string   e.g. "v1", "github.klua.dev/v1"
---@field kind string         e.g. "ConfigMap", "Comment"

-- Which updates enqueue: "any" (every update), "generation" (generation,
-- deletionTimestamp or finalizers changed), "labels", "annotations", a list
-- of those (any may match), or a function(old, new) returning a boolean
-- (it may not call ctx; an error lets the update through and is logged
-- once). Adds and deletes always enqueue. Default for watch: any change but
-- status, metadata.resourceVersion and metadata.managedFields; for owns and
-- watches: "any".
---@alias klua.PredicateName "any"|"generation"|"labels"|"annotations"
---@alias klua.Predicate klua.PredicateName|klua.PredicateName[]|fun(old: table, new: table): boolean

-- watch and owns entries may carry a predicate:
-- `watch = { apiVersion = "v1", kind = "ConfigMap", predicate = "generation" }`.
---@class klua.WatchRef: klua.TypeRef
---@field predicate? klua.Predicate

-- A secondary kind whose objects map to keys of the watched kind
-- (controller-runtime's EnqueueRequestsFromMapFunc). On an update, the old
-- and the new object are both mapped.
---@class klua.MappedWatch
---@field apiVersion string
---@field kind string
---@field namespace? string         only this namespace (default: the controller's)
---@field selector? string          label selector, checked at load time
---@field predicate? klua.Predicate default "any"
---@field map fun(obj: table): string[]  keys of the watched kind, "ns/name" (or "name")

---@class klua.Controller
---@field name? string
---@field watch klua.Ref<any>|klua.WatchRef  a klua.TypeRef, or a klua.ref.* from klua types
---@field owns? (klua.Ref<any>|klua.WatchRef)[]  mapped back by ownerReferences
---@field watches? klua.MappedWatch[]
---@field namespace? string
---@field selector? string          label selector, checked at load time
---@field workers? integer          1 to 1024, default 1
---@field finalizer? string         the finalizer finalize manages, default "klua.dev/<name>"
---@field error_condition? string|false  the condition set on errors, default "Ready"
---@field cache? klua.CacheOptions
---@field reconcile fun(ctx: klua.Context, obj: table): klua.Result|nil
---@field finalize? fun(ctx: klua.Context, obj: table): klua.Result|nil
---@field validate? fun(ctx: klua.Context, req: klua.WebhookRequest): boolean, string?  see klua.WebhookRequest
---@field mutate? fun(ctx: klua.Context, req: klua.WebhookRequest): boolean?, string?  change req.object
---@field convert? fun(ctx: klua.Context, obj: table, to_version: string): table|nil, string?

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
---@field owner? string      uid of an owner: objects whose ownerReferences name it (cache only)
---@field live? boolean      read from the API server, not the cache (controller-runtime's APIReader)

---@class klua.GetOptions
---@field live? boolean      read from the API server, not the cache

---@class klua.OwnerReference
---@field apiVersion string
---@field kind string
---@field name string
---@field uid string
---@field controller boolean
---@field blockOwnerDeletion boolean

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

--- Structured log lines on klua's stderr (at most 8 fields; the message, each
--- field name and each value is cut at 16 KiB, and secret values are replaced
--- by "[redacted]"). The line counts against the script's memory cap while it
--- is written. With `--log-format json`, numbers, booleans and tables keep their
--- types (tables are encoded as JSON); other values are strings. debug lines
--- show at `-v 1` and above.
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

--- Read one object from the informer cache (a fresh copy). A missing object is
--- nil, err with err.reason "NotFound", from the cache as from the API server.
--- For a kind that no controller watches or owns, or with opts.live, this is a
--- live GET (yields). Reads your own writes: after a ctx write to this object
--- returns, the cached read answers that write (or newer), or NotFound after a
--- delete, even before the watch has brought it.
---@generic T
---@param type klua.Ref<T>  a type reference; typed when declared as a klua.ref.* (klua types)
---@param namespace string|nil  default: the reconciled object's namespace
---@param name string
---@param opts? klua.GetOptions
---@return T|nil obj, klua.Error|nil err
function Context:get(type, namespace, name, opts) end

--- List objects of a kind (fresh copies), filtered; without opts.namespace, in
--- every namespace (cached and live alike). From the cache (with your own
--- writes, as ctx:get), else (a kind nobody caches, or opts.live) a live LIST
--- (yields). nil, err on failure, e.g. err.reason "BadRequest" for a bad selector
--- (annotated T[] so that `for _, o in ipairs(ctx:list(T))` stays typed).
---@generic T
---@param type klua.Ref<T>
---@param opts? klua.ListOptions
---@return T[] objs, klua.Error|nil err
function Context:list(type, opts) end

--- A controller ownerReference to obj (controller = true, blockOwnerDeletion =
--- true), controller-runtime's SetControllerReference: put it in a child's
--- metadata.ownerReferences, so the child is deleted with obj and `owns` maps
--- the child's changes back to obj. obj needs apiVersion, kind, metadata.name
--- and metadata.uid (an object read from the API server has them).
---@param obj table
---@return klua.OwnerReference
function Context:owner_reference(obj) end

--- Create an object (apiVersion, kind and metadata in obj). Yields.
---@generic T: table
---@param obj T                 apiVersion, kind, metadata.name (or generateName), namespace
---@param opts? klua.WriteOptions
---@return T|nil created, klua.Error|nil err   err.reason "AlreadyExists" when the name is taken
function Context:create(obj, opts) end

--- Replace an object; obj.metadata.resourceVersion guards against lost
--- updates (a stale one returns err.reason == "Conflict"). Yields.
---@generic T: table
---@param obj T                 a whole object, as read (changed)
---@param opts? klua.WriteOptions|{subresource?: string}
---@return T|nil updated, klua.Error|nil err
function Context:update(obj, opts) end

--- Patch an object. `patch` is a table (encoded as JSON) or a JSON string.
--- opts.type: "merge" (default), "json" (RFC 6902 list) or "apply" (server-side apply).
---@param obj table            names the target: apiVersion, kind, metadata.namespace/name
---@param patch table|string
---@param opts? klua.WriteOptions|{type?: "merge"|"json"|"apply", subresource?: string}
---@return table|nil patched, klua.Error|nil err
function Context:patch(obj, patch, opts) end

--- Server-side apply of a whole desired object (opts.force defaults to true). Yields.
---@generic T: table
---@param obj T                 the fields this field manager owns: apiVersion, kind, metadata.name...
---@param opts? klua.WriteOptions
---@return T|nil applied, klua.Error|nil err
function Context:apply(obj, opts) end

--- Delete an object. A missing object is not an error (returns true). Yields.
---@param obj table             names the target: apiVersion, kind, metadata.namespace/name
---@param opts? klua.DeleteOptions
---@return boolean|nil ok, klua.Error|nil err
function Context:delete(obj, opts) end

--- Merge-patch the status subresource: `ctx:patch_status(obj, { observedGeneration = 3 })`.
--- Yields.
---@param obj table
---@param status table
---@return table|nil patched, klua.Error|nil err
function Context:patch_status(obj, status) end

--- Record a Kubernetes Event (events.k8s.io/v1) about obj. Returns at once (the
--- write is asynchronous; a failed write is logged, never raised). The Event
--- carries reportingController "klua.dev/<controller>" and reportingInstance
--- ($POD_NAME, else the host name). Repeats of the same (obj, type, reason,
--- message) within 6 minutes update the first Event's series (count,
--- lastObservedTime) instead of creating new Events, as client-go does; series
--- writes go out at most every 30 s.
---@param obj table
---@param type "Normal"|"Warning"
---@param reason string   CamelCase, e.g. "Delivered"
---@param message string
function Context:event(obj, type, reason, message) end

---@class klua.Task

--- Start fn(...) as a task: a coroutine of this reconcile that may call ctx (each
--- task has its own call in flight, so tasks wait at the same time). It runs at
--- once until its first wait. The instruction budget, CPU deadline and memory
--- cap cover the reconcile and all its tasks. Tasks not waited for are cancelled
--- when the reconcile returns. Call from the reconcile itself (not from a task).
---@param fn fun(...): ...
---@return klua.Task
function Context:spawn(fn, ...) end

--- Wait for tasks and return their results in order: for one task, all of its
--- results; for several, the first result of each. An error a task raised is
--- raised here, as it was (its file:line in front). Yields.
---@param ... klua.Task
---@return any ...
function Context:wait(...) end

--- Outbound HTTP(S), TLS verified, sent with `User-Agent: klua/VERSION` unless
--- req.headers sets one. Returns nil, err when no whole HTTP answer came:
--- err.reason "ConnectionError" or "Timeout"; "ResponseTooLarge" when the body
--- (of any status) would pass the script's memory cap (`--lua-memory`), and
--- "RequestTooLarge" when the request body and headers would (nothing is sent).
--- Any HTTP status is a response. Yields.
---@param req klua.HttpRequest
---@return klua.HttpResponse|nil resp, klua.Error|nil err
function Context:http(req) end

--- Sleep without blocking other reconciles. Yields.
---@param seconds number
function Context:sleep(seconds) end

--- Seconds since the epoch (float).
---@return number
function Context:now() end

--- Environment variable of the klua process, if its name matches an
--- `klua run --allow-env PATTERN` glob (default: `KLUA_*` and `GITHUB_API_URL`).
--- Any other name returns nil, and klua logs one warning naming the variable
--- and the flag. Secrets go through ctx:secret, not the environment.
---@param name string
---@return string|nil
function Context:getenv(name) end

--- A secret given to klua with `klua run --secret NAME=FILE` (the file is read
--- again when it changes, so a rotated Kubernetes Secret volume is picked up).
--- `github_token` may also come from `--github-token-file FILE` or
--- `$GITHUB_TOKEN`. nil when there is no such secret. klua replaces secret values
--- with "[redacted]" in ctx.log lines, ctx:event texts and reconcile errors.
---@param name string  e.g. "github_token"
---@return string|nil
function Context:secret(name) end

-- Modules provided by klua (require them in scripts):
--   require "klua.json"   -> { encode = fn, decode = fn, null = lightuserdata, empty_array = ... }
--   require "klua.github" -> the GitHub REST client used by lua/comment.lua
--   require "klua.conditions" -> set(list, {type=, status=, reason=, message=, observedGeneration=}, now)
--                                 returns new_list, changed; get(list, type); is_true(list, type)
-- Their annotations: klua.json in lua/types/klua/json.lua; klua.github and
-- klua.conditions in their sources (lua/lib/klua/), which a checker reads as a
-- library (the repository's .luarc.json, `klua check --types`). Kinds:
-- lua/types/object.lua (klua.Object, klua.Ref<T>) and what `klua types` writes.

-- Webhooks (klua run --webhook-addr ADDR [--webhook-cert-dir DIR | --dev]).
-- A script may declare validate, mutate and convert next to reconcile; klua
-- serves them over HTTPS at /validate/<controller>, /mutate/<controller>
-- and /convert/<controller> (AdmissionReview v1, ConversionReview v1) for
-- the kind it watches. `--dev` makes a local CA and certificate and installs
-- the ValidatingWebhookConfiguration, MutatingWebhookConfiguration (both
-- named klua-dev) and the CRD's conversion stanza pointing at klua; hot
-- reload swaps handlers as it swaps reconcile.
--   validate(ctx, req)  return true, or false and a message: kubectl shows
--                       'admission webhook "<name>.validate.klua.dev" denied
--                       the request: <message>'.
--   mutate(ctx, req)    change req.object in place; klua sends the JSON
--                       Patch. Return false, "message" to deny.
--   convert(ctx, obj, to_version)  return obj in to_version
--                       ("group/version"; apiVersion is set for you).
-- Handlers run to the end at once under the script's limits (the
-- --lua-timeout CPU deadline is the per-request deadline, below the
-- webhooks' timeoutSeconds of 10): they may read the cache (ctx:get,
-- ctx:list of watched and owned kinds), ctx.log and ctx:now, but never
-- write or wait: ctx:create/update/patch/apply/delete/patch_status/event
-- raise "webhook handlers cannot write", ctx:http/sleep "cannot wait". A
-- handler that raises, loops or returns something else denies (conversion:
-- fails) with its file:line and reason; klua goes on.

---@class klua.WebhookRequest
---@field uid string
---@field operation "CREATE"|"UPDATE"|"DELETE"|"CONNECT"
---@field object? table        the object (absent on DELETE)
---@field oldObject? table     the object before an UPDATE or DELETE
---@field userInfo table       { username =, uid =, groups = { ... }, extra = { ... } }
---@field dryRun boolean       the request makes no change (kubectl --dry-run=server)
---@field namespace string
---@field name string
---@field kind klua.TypeRef    what was sent (matchPolicy Equivalent: the watched version)
---@field warnings string[]    add strings here: kubectl prints them as "Warning: ..."
