-- klua.fakeapi - the Kubernetes semantics of `klua test`'s in-memory API server.
--
-- src/fakeapi.c carries HTTP; src/cmd_test.c hands each API request to
-- server:handle() and writes watch events with the emit function given to
-- new(). What it does, as kube-apiserver does it:
--   * discovery (/api, /apis, /api/v1, /apis/G/V) for built-in kinds and
--     every CRD added (add_crd, or a CRD created through the API);
--   * get, list (labelSelector, fieldSelector on metadata.name/namespace),
--     create (generateName, uid, creationTimestamp, generation 1;
--     AlreadyExists), update (Conflict on a stale resourceVersion; NotFound),
--     delete (preconditions; finalizers set deletionTimestamp, and the
--     object goes when the last finalizer is removed; dependents named by
--     ownerReferences are garbage-collected);
--   * the status subresource: writes to the object keep its status, writes
--     to /status keep everything else; generation moves on spec changes only;
--     a write that changes nothing keeps the resourceVersion (no event);
--   * patches: merge (RFC 7386, null deletes), JSON patch (RFC 6902 with
--     test), strategic merge as a merge patch (lists are replaced, not merged
--     by key), and server-side apply approximated: the applied object is merged
--     into the live one (or created), with no field ownership, so a field a
--     manager stops applying is not removed and no apply conflict is raised;
--   * watch from a resourceVersion (events kept in memory) or from now
--     (synthetic ADDED events), with label and field selectors, and the
--     streaming list (sendInitialEvents=true: ADDED events, then the
--     k8s.io/initial-events-end bookmark), which klua's informers use first.
-- Paging is not simulated: a list returns everything, without `continue`.
local M = {}

local json = require "klua.json"

local Server = {}
Server.__index = Server

local BUILTIN = {
  { "", "v1", "namespaces", "Namespace", false, true },
  { "", "v1", "configmaps", "ConfigMap", true, false },
  { "", "v1", "secrets", "Secret", true, false },
  { "", "v1", "services", "Service", true, true },
  { "", "v1", "serviceaccounts", "ServiceAccount", true, false },
  { "", "v1", "pods", "Pod", true, true },
  { "", "v1", "events", "Event", true, false },
  { "apps", "v1", "deployments", "Deployment", true, true },
  { "apps", "v1", "statefulsets", "StatefulSet", true, true },
  { "apps", "v1", "replicasets", "ReplicaSet", true, true },
  { "batch", "v1", "jobs", "Job", true, true },
  { "events.k8s.io", "v1", "events", "Event", true, false },
  { "coordination.k8s.io", "v1", "leases", "Lease", true, false },
  { "apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition", false, true },
}

local function gv_of(group, version)
  return group == "" and version or (group .. "/" .. version)
end

--- A new fake API server.
---@param emit fun(stream_id: integer, chunk: string) writes one watch event
---@param now fun(): string RFC 3339 time for timestamps
function M.new(emit, now)
  local s = setmetatable({ emit = emit, now = now, rv = 1, uidn = 0, resources = {},
                           by_gv = {}, objects = {}, log = {}, watchers = {} }, Server)
  for _, b in ipairs(BUILTIN) do
    s:add_resource({ group = b[1], version = b[2], plural = b[3], kind = b[4],
                     namespaced = b[5], status = b[6] })
  end
  return s
end

function Server:add_resource(r)
  local gv = gv_of(r.group, r.version)
  r.gv = gv
  self.resources[gv .. "|" .. r.plural] = r
  self.by_gv[gv] = self.by_gv[gv] or {}
  for i, x in ipairs(self.by_gv[gv]) do
    if x.plural == r.plural then table.remove(self.by_gv[gv], i) break end
  end
  table.insert(self.by_gv[gv], r)
  self.objects[gv .. "|" .. r.plural] = self.objects[gv .. "|" .. r.plural] or {}
end

--- Serve the kinds a CustomResourceDefinition declares (every served version).
function Server:add_crd(crd)
  local spec = crd.spec or {}
  local names = spec.names or {}
  for _, v in ipairs(spec.versions or {}) do
    if v.served ~= false then
      self:add_resource({ group = spec.group, version = v.name, plural = names.plural,
                          kind = names.kind, namespaced = spec.scope ~= "Cluster", crd = true,
                          status = (v.subresources or {}).status ~= nil })
    end
  end
end

-- ---- helpers ----

local function copy(v)
  if type(v) ~= "table" then return v end
  local t = {}
  for k, x in pairs(v) do t[k] = copy(x) end
  return setmetatable(t, getmetatable(v))
end

local function is_array(t)
  return type(t) == "table" and (getmetatable(t) == getmetatable(json.array({})) or
                                  (#t > 0 and next(t, #t) == nil))
end

local function equal(a, b)
  if type(a) ~= type(b) then return false end
  if type(a) ~= "table" then return a == b end
  for k, v in pairs(a) do if not equal(v, b[k]) then return false end end
  for k in pairs(b) do if a[k] == nil then return false end end
  return true
end

local function status_obj(code, reason, message, name, kind)
  return code, { kind = "Status", apiVersion = "v1", status = "Failure", message = message,
                 reason = reason, code = code, details = { name = name, kind = kind } }
end

local function url_decode(s)
  return (s:gsub("+", " "):gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

local function parse_query(q)
  local t = {}
  for pair in (q or ""):gmatch("[^&]+") do
    local k, v = pair:match("^([^=]*)=?(.*)$")
    t[url_decode(k)] = url_decode(v)
  end
  return t
end

-- ---- label and field selectors ----

local function parse_selector(sel)
  local reqs = {}
  if not sel or sel == "" then return reqs end
  -- split on commas outside parentheses
  local parts, depth, cur = {}, 0, ""
  for ch in sel:gmatch(".") do
    if ch == "(" then depth = depth + 1 elseif ch == ")" then depth = depth - 1 end
    if ch == "," and depth == 0 then parts[#parts + 1] = cur; cur = "" else cur = cur .. ch end
  end
  parts[#parts + 1] = cur
  for _, p in ipairs(parts) do
    p = p:match("^%s*(.-)%s*$")
    local k, op, vals = p:match("^(%S+)%s+(notin)%s*%((.*)%)$")
    if not k then k, op, vals = p:match("^(%S+)%s+(in)%s*%((.*)%)$") end
    if k then
      local set = {}
      for v in vals:gmatch("[^,%s]+") do set[v] = true end
      reqs[#reqs + 1] = { key = k, op = op, set = set }
    else
      local a, b = p:match("^([^!=]+)!=(.*)$")
      if a then reqs[#reqs + 1] = { key = a, op = "!=", value = b }
      else
        a, b = p:match("^([^=]+)==?(.*)$")
        if a then reqs[#reqs + 1] = { key = a, op = "=", value = b }
        elseif p:sub(1, 1) == "!" then reqs[#reqs + 1] = { key = p:sub(2), op = "!" }
        else reqs[#reqs + 1] = { key = p, op = "exists" } end
      end
    end
  end
  return reqs
end

local function matches(reqs, labels)
  for _, r in ipairs(reqs) do
    local v = labels[r.key]
    if r.op == "=" and v ~= r.value then return false end
    if r.op == "!=" and v == r.value then return false end
    if r.op == "in" and not (v and r.set[v]) then return false end
    if r.op == "notin" and v and r.set[v] then return false end
    if r.op == "exists" and v == nil then return false end
    if r.op == "!" and v ~= nil then return false end
  end
  return true
end

local function field_values(obj)
  local md = obj.metadata or {}
  return { ["metadata.name"] = md.name, ["metadata.namespace"] = md.namespace or "" }
end

-- ---- the request path ----

-- "/api/v1/namespaces/ns/configmaps/name/status" -> resource, ns, name, sub
function Server:route(path)
  local segs = {}
  for seg in path:gmatch("[^/]+") do segs[#segs + 1] = url_decode(seg) end
  local gv, rest
  if segs[1] == "api" and segs[2] then
    gv, rest = segs[2], 3
  elseif segs[1] == "apis" and segs[3] then
    gv, rest = segs[2] .. "/" .. segs[3], 4
  else
    return nil
  end
  local function res(plural) return self.resources[gv .. "|" .. (plural or "")] end
  if segs[rest] == "namespaces" and segs[rest + 2] and res(segs[rest + 2]) then
    return res(segs[rest + 2]), segs[rest + 1], segs[rest + 3], segs[rest + 4], gv
  end
  return res(segs[rest]), nil, segs[rest + 1], segs[rest + 2], gv
end

function Server:discovery(path)
  if path == "/api" then
    return 200, { kind = "APIVersions", versions = json.array({ "v1" }) }
  end
  if path == "/apis" then
    local groups, seen = json.array({}), {}
    for gv in pairs(self.by_gv) do
      local g, v = gv:match("^(.+)/(.+)$")
      if g then
        if not seen[g] then
          seen[g] = { name = g, versions = json.array({}) }
          groups[#groups + 1] = seen[g]
        end
        table.insert(seen[g].versions, { groupVersion = gv, version = v })
        seen[g].preferredVersion = seen[g].preferredVersion or { groupVersion = gv, version = v }
      end
    end
    table.sort(groups, function(a, b) return a.name < b.name end)
    return 200, { kind = "APIGroupList", apiVersion = "v1", groups = groups }
  end
  local gv = path:match("^/api/(v1)$") or path:match("^/apis/([^/]+/[^/]+)$")
  if gv and self.by_gv[gv] then
    local list = json.array({})
    for _, r in ipairs(self.by_gv[gv]) do
      list[#list + 1] = { name = r.plural, kind = r.kind, namespaced = r.namespaced,
                          singularName = "", verbs = json.array({ "create", "delete", "get",
                          "list", "patch", "update", "watch" }) }
      if r.status then
        list[#list + 1] = { name = r.plural .. "/status", kind = r.kind,
                            namespaced = r.namespaced, singularName = "",
                            verbs = json.array({ "get", "patch", "update" }) }
      end
    end
    return 200, { kind = "APIResourceList", apiVersion = "v1", groupVersion = gv,
                  resources = list }
  end
  return nil
end

-- ---- storage and watch ----

local function key_of(ns, name) return (ns or "") .. "/" .. name end

function Server:store_of(r) return self.objects[r.gv .. "|" .. r.plural] end

function Server:next_rv()
  self.rv = self.rv + 1
  return tostring(self.rv)
end

function Server:notify(r, type_, obj)
  local ev = { rv = self.rv, r = r, type = type_, obj = copy(obj) }
  self.log[#self.log + 1] = ev
  for id, w in pairs(self.watchers) do
    if w.r == r then self:deliver(id, w, ev) end
  end
end

function Server:visible(w, obj)
  local md = obj.metadata or {}
  if w.ns and md.namespace ~= w.ns then return false end
  if not matches(w.labels, md.labels or {}) then return false end
  return matches(w.fields, field_values(obj))
end

function Server:deliver(id, w, ev)
  if not self:visible(w, ev.obj) then return end
  self.emit(id, json.encode({ type = ev.type, object = ev.obj }) .. "\n")
end

function Server:closed(id) self.watchers[id] = nil end

-- ---- verbs ----

local function rv_int(s) return tonumber(s or "") end

function Server:list(r, ns, q)
  local labels, fields = parse_selector(q.labelSelector), parse_selector(q.fieldSelector)
  local items, keys = json.array({}), {}
  for k, obj in pairs(self:store_of(r)) do
    local md = obj.metadata
    if (not ns or md.namespace == ns) and matches(labels, md.labels or {}) and
       matches(fields, field_values(obj)) then
      keys[#keys + 1] = k
    end
  end
  table.sort(keys)
  for _, k in ipairs(keys) do items[#items + 1] = self:store_of(r)[k] end
  return 200, { kind = r.kind .. "List", apiVersion = r.gv,
                metadata = { resourceVersion = tostring(self.rv) }, items = items }
end

function Server:watch(r, ns, q, stream_id)
  local w = { r = r, ns = ns, labels = parse_selector(q.labelSelector),
              fields = parse_selector(q.fieldSelector) }
  local from = rv_int(q.resourceVersion)
  local initial = {}
  local function add(ev)
    if self:visible(w, ev.obj) then
      initial[#initial + 1] = json.encode({ type = ev.type, object = ev.obj }) .. "\n"
    end
  end
  if q.sendInitialEvents == "true" then
    -- the streaming list: the current objects as ADDED events, then the
    -- bookmark that says the initial events are over (as the API server does
    -- with resourceVersionMatch=NotOlderThan)
    local _, l = self:list(r, ns, q)
    for _, o in ipairs(l.items) do add({ type = "ADDED", obj = o }) end
    initial[#initial + 1] = json.encode({ type = "BOOKMARK", object = {
      kind = r.kind, apiVersion = r.gv,
      metadata = { resourceVersion = tostring(self.rv),
                   annotations = { ["k8s.io/initial-events-end"] = "true" } } } }) .. "\n"
  elseif not from or from == 0 then
    local _, l = self:list(r, ns, q)
    for _, o in ipairs(l.items) do add({ type = "ADDED", obj = o }) end
  else
    for _, ev in ipairs(self.log) do
      if ev.r == r and ev.rv > from then add(ev) end
    end
  end
  self.watchers[stream_id] = w
  return 200, table.concat(initial), true
end

function Server:new_uid()
  self.uidn = self.uidn + 1
  return string.format("00000000-0000-4000-8000-%012d", self.uidn)
end

function Server:create(r, ns, obj, q)
  if type(obj) ~= "table" or type(obj.metadata) ~= "table" then
    return status_obj(400, "BadRequest", "the body is not an object with metadata")
  end
  local md = obj.metadata
  if r.namespaced then md.namespace = ns or md.namespace or "default" else md.namespace = nil end
  if (md.name == nil or md.name == "") and md.generateName then
    self.uidn = self.uidn + 1
    md.name = md.generateName .. string.format("%05x", self.uidn)
  end
  if not md.name or md.name == "" then
    return status_obj(422, "Invalid", r.kind .. " is invalid: metadata.name: Required value")
  end
  local store = self:store_of(r)
  local k = key_of(md.namespace, md.name)
  if store[k] then
    return status_obj(409, "AlreadyExists",
                      string.format('%s.%s "%s" already exists', r.plural, r.group, md.name),
                      md.name, r.plural)
  end
  if r.status and r.crd then obj.status = nil end
  obj.apiVersion, obj.kind = r.gv, r.kind
  md.uid = self:new_uid()
  md.creationTimestamp = self.now()
  md.generation = 1
  md.resourceVersion = nil
  md.deletionTimestamp = nil
  if q.dryRun then return 201, obj end
  md.resourceVersion = self:next_rv()
  store[k] = obj
  if r.kind == "CustomResourceDefinition" then self:add_crd(obj) end
  self:notify(r, "ADDED", obj)
  return 201, obj
end

local function without(obj, field)
  local t = {}
  for k, v in pairs(obj) do if k ~= field and k ~= "metadata" then t[k] = v end end
  return t
end

-- Store new as the next version of old (both whole objects), as an update
-- through the main resource or its status subresource would.
function Server:commit(r, old, new, sub, q)
  local md, omd = new.metadata or {}, old.metadata
  new.metadata = md
  if md.resourceVersion and md.resourceVersion ~= "" and md.resourceVersion ~= omd.resourceVersion then
    return status_obj(409, "Conflict", string.format(
      'Operation cannot be fulfilled on %s.%s "%s": the object has been modified; please apply your changes to the latest version and try again',
      r.plural, r.group, omd.name), omd.name, r.plural)
  end
  if r.status and sub == "status" then
    local keep = copy(old)
    keep.status = new.status
    keep.metadata = omd
    new = keep
  elseif r.status then
    new.status = copy(old.status)
  end
  md = new.metadata
  if sub == "status" then md = copy(omd); new.metadata = md end
  md.name, md.namespace, md.uid = omd.name, omd.namespace, omd.uid
  md.creationTimestamp, md.deletionTimestamp = omd.creationTimestamp, omd.deletionTimestamp
  md.generation = omd.generation
  md.resourceVersion = omd.resourceVersion
  new.apiVersion, new.kind = r.gv, r.kind
  if omd.deletionTimestamp and md.finalizers then
    -- finalizers may only be removed once deletion has begun
    local had = {}
    for _, f in ipairs(omd.finalizers or {}) do had[f] = true end
    for _, f in ipairs(md.finalizers) do
      if not had[f] then
        return status_obj(422, "Invalid", "metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted")
      end
    end
  end
  if equal(new, old) then return 200, old end
  if not equal(without(new, "status"), without(old, "status")) then
    md.generation = (omd.generation or 1) + 1
  end
  if q.dryRun then return 200, new end
  md.resourceVersion = self:next_rv()
  local store = self:store_of(r)
  local k = key_of(md.namespace, md.name)
  if md.deletionTimestamp and (md.finalizers == nil or #md.finalizers == 0) then
    store[k] = nil
    self:notify(r, "DELETED", new)
    self:collect(md.uid)
    return 200, new
  end
  store[k] = new
  self:notify(r, "MODIFIED", new)
  return 200, new
end

function Server:remove(r, obj, q)
  local md = obj.metadata
  if md.finalizers and #md.finalizers > 0 then
    if md.deletionTimestamp then return 200, obj end
    local new = copy(obj)
    new.metadata.deletionTimestamp = self.now()
    new.metadata.deletionGracePeriodSeconds = 0
    if q.dryRun then return 200, new end
    new.metadata.resourceVersion = self:next_rv()
    self:store_of(r)[key_of(md.namespace, md.name)] = new
    self:notify(r, "MODIFIED", new)
    return 200, new
  end
  if q.dryRun then return 200, obj end
  self:store_of(r)[key_of(md.namespace, md.name)] = nil
  self:next_rv()
  obj.metadata.resourceVersion = tostring(self.rv)
  self:notify(r, "DELETED", obj)
  self:collect(md.uid)
  return 200, obj
end

-- Garbage collection: delete the objects owned by uid (background).
function Server:collect(uid)
  for _, r in pairs(self.resources) do
    local victims = {}
    for _, o in pairs(self:store_of(r)) do
      for _, ref in ipairs(o.metadata.ownerReferences or {}) do
        if ref.uid == uid then victims[#victims + 1] = o break end
      end
    end
    for _, o in ipairs(victims) do self:remove(r, o, {}) end
  end
end

-- ---- patches ----

local function merge_patch(target, patch)
  if type(patch) ~= "table" or is_array(patch) then return copy(patch) end
  if type(target) ~= "table" or is_array(target) then target = {} end
  for k, v in pairs(patch) do
    if v == json.null then target[k] = nil
    else target[k] = merge_patch(target[k], v) end
  end
  return target
end

local function pointer(path)
  local parts = {}
  for p in (path .. "/"):sub(2):gmatch("([^/]*)/") do
    parts[#parts + 1] = p:gsub("~1", "/"):gsub("~0", "~")
  end
  return parts
end

local function locate(doc, path)
  local parts = pointer(path)
  local parent = doc
  for i = 1, #parts - 1 do
    local p = parts[i]
    if is_array(parent) then parent = parent[(tonumber(p) or -1) + 1] else parent = parent[p] end
    if type(parent) ~= "table" then return nil end
  end
  return parent, parts[#parts]
end

local function get_at(parent, last)
  if is_array(parent) then return parent[(tonumber(last) or -1) + 1] end
  return parent[last]
end

local function json_patch(doc, ops)
  for i, op in ipairs(ops) do
    local parent, last = locate(doc, op.path or "")
    if not parent then return nil, string.format("op %d: path %s does not exist", i, op.path) end
    local arr = is_array(parent)
    local idx = arr and (last == "-" and #parent + 1 or (tonumber(last) or -1) + 1)
    if op.op == "test" then
      if not equal(get_at(parent, last), op.value) then
        return nil, string.format("op %d: test failed at %s", i, op.path)
      end
    elseif op.op == "remove" or op.op == "replace" then
      if get_at(parent, last) == nil then
        return nil, string.format("op %d: %s: path does not exist", i, op.path)
      end
      if op.op == "remove" then
        if arr then table.remove(parent, idx) else parent[last] = nil end
      else
        if arr then parent[idx] = copy(op.value) else parent[last] = copy(op.value) end
      end
    elseif op.op == "add" then
      if arr then
        if idx < 1 or idx > #parent + 1 then return nil, string.format("op %d: index out of range", i) end
        table.insert(parent, idx, copy(op.value))
      else parent[last] = copy(op.value) end
    elseif op.op == "move" or op.op == "copy" then
      local fp, fl = locate(doc, op.from or "")
      local v = fp and get_at(fp, fl)
      if v == nil then return nil, string.format("op %d: from %s does not exist", i, op.from) end
      if op.op == "move" then
        if is_array(fp) then table.remove(fp, (tonumber(fl) or -1) + 1) else fp[fl] = nil end
      end
      local _, err = json_patch(doc, { { op = "add", path = op.path, value = copy(v) } })
      if err then return nil, err end
    else
      return nil, string.format("op %d: unknown op %s", i, tostring(op.op))
    end
  end
  return doc
end

-- A JSON decoder that keeps null as json.null (klua.json drops null object
-- members, which a merge patch needs to delete fields).
local function decode_keep_null(s)
  local pos = 1
  local function ws() pos = s:find("[^ \t\r\n]", pos) or #s + 1 end
  local value
  local function str()
    local out, i = {}, pos + 1
    while true do
      local c = s:sub(i, i)
      if c == '"' then pos = i + 1 return table.concat(out) end
      if c == "" then error("unterminated string") end
      if c == "\\" then
        local e = s:sub(i + 1, i + 1)
        local map = { b = "\b", f = "\f", n = "\n", r = "\r", t = "\t" }
        if e == "u" then
          local cp = tonumber(s:sub(i + 2, i + 5), 16)
          if cp >= 0xD800 and cp <= 0xDBFF and s:sub(i + 6, i + 7) == "\\u" then
            local lo = tonumber(s:sub(i + 8, i + 11), 16)
            cp = 0x10000 + (cp - 0xD800) * 0x400 + (lo - 0xDC00)
            i = i + 6
          end
          out[#out + 1] = utf8.char(cp)
          i = i + 6
        else
          out[#out + 1] = map[e] or e
          i = i + 2
        end
      else
        out[#out + 1] = c
        i = i + 1
      end
    end
  end
  function value()
    ws()
    local c = s:sub(pos, pos)
    if c == "{" then
      local t = {}
      pos = pos + 1
      ws()
      if s:sub(pos, pos) == "}" then pos = pos + 1 return t end
      while true do
        ws()
        local k = str()
        ws()
        pos = pos + 1 -- ':'
        t[k] = value()
        ws()
        local d = s:sub(pos, pos)
        pos = pos + 1
        if d == "}" then return t end
      end
    elseif c == "[" then
      local t = json.array({})
      pos = pos + 1
      ws()
      if s:sub(pos, pos) == "]" then pos = pos + 1 return t end
      while true do
        t[#t + 1] = value()
        ws()
        local d = s:sub(pos, pos)
        pos = pos + 1
        if d == "]" then return t end
      end
    elseif c == '"' then
      return str()
    elseif s:sub(pos, pos + 3) == "null" then pos = pos + 4 return json.null
    elseif s:sub(pos, pos + 3) == "true" then pos = pos + 4 return true
    elseif s:sub(pos, pos + 4) == "false" then pos = pos + 5 return false
    end
    local num = s:match("^-?%d+%.?%d*[eE]?[-+]?%d*", pos)
    if not num or num == "" then error("bad JSON at " .. pos) end
    pos = pos + #num
    return math.tointeger(tonumber(num)) or tonumber(num)
  end
  return value()
end

function Server:patch(r, ns, name, sub, ctype, body, q)
  local store = self:store_of(r)
  local old = store[key_of(r.namespaced and ns or nil, name)]
  ctype = (ctype or ""):match("^[^;]*")
  local ok, patch = pcall(decode_keep_null, body)
  if not ok then return status_obj(400, "BadRequest", "the patch is not JSON: " .. tostring(patch)) end
  if ctype == "application/apply-patch+yaml" then
    if not old then
      if sub == "status" then return status_obj(404, "NotFound", string.format('%s.%s "%s" not found', r.plural, r.group, name), name, r.plural) end
      patch.metadata = patch.metadata or {}
      patch.metadata.name = name
      return self:create(r, ns, merge_patch({}, patch), q)
    end
    local new = merge_patch(copy(old), patch)
    new.metadata.resourceVersion = nil
    return self:commit(r, old, new, sub, q)
  end
  if not old then
    return status_obj(404, "NotFound", string.format('%s.%s "%s" not found', r.plural, r.group, name), name, r.plural)
  end
  local new
  if ctype == "application/json-patch+json" then
    local err
    new, err = json_patch(copy(old), patch)
    if not new then return status_obj(422, "Invalid", "the JSON patch failed: " .. err, name, r.plural) end
    if new.metadata.resourceVersion ~= old.metadata.resourceVersion then
      -- a patch that rewrote resourceVersion is a precondition
    else
      new.metadata.resourceVersion = nil
    end
  elseif ctype == "application/merge-patch+json" or ctype == "application/strategic-merge-patch+json" then
    new = merge_patch(copy(old), patch)
    if not (patch.metadata and patch.metadata ~= json.null and patch.metadata.resourceVersion) then
      new.metadata.resourceVersion = nil
    end
  else
    return status_obj(415, "UnsupportedMediaType", "unsupported patch type " .. ctype)
  end
  return self:commit(r, old, new, sub, q)
end

--- The resource serving apiVersion + kind, or nil.
function Server:find(api_version, kind)
  for _, r in ipairs(self.by_gv[api_version] or {}) do
    if r.kind == kind then return r end
  end
end

--- Make obj the stored state as a watch event of type_ says (klua replay):
--- ADDED/MODIFIED store it (with a resourceVersion of this server), DELETED
--- removes it; watchers see the event.
function Server:put(api_version, kind, type_, obj)
  local r = self:find(api_version, kind)
  if not r then return nil, "no resource for " .. api_version .. " " .. kind end
  local md = obj.metadata
  local k = key_of(r.namespaced and md.namespace or nil, md.name)
  obj.apiVersion, obj.kind = r.gv, r.kind
  md.resourceVersion = self:next_rv()
  if type_ == "DELETED" then
    if not self:store_of(r)[k] then return true end
    self:store_of(r)[k] = nil
  else
    type_ = self:store_of(r)[k] and "MODIFIED" or "ADDED"
    self:store_of(r)[k] = obj
  end
  self:notify(r, type_, obj)
  return true
end

--- Answer one API request: returns status, body (a table or a string),
--- and true when the connection becomes a watch stream.
function Server:handle(method, target, ctype, body, stream_id)
  local path, qs = target:match("^([^?]*)%??(.*)$")
  local q = parse_query(qs)
  if method == "GET" then
    local code, doc = self:discovery(path)
    if code then return code, doc end
  end
  if path == "/version" then return 200, { major = "1", minor = "37", gitVersion = "v1.37.0-klua-fake" } end
  local r, ns, name, sub = self:route(path)
  if not r then return status_obj(404, "NotFound", "the server could not find the requested resource") end
  if not r.namespaced then ns = nil end
  local store = self:store_of(r)
  local obj = name and store[key_of(ns, name)]
  local function notfound()
    return status_obj(404, "NotFound", string.format('%s.%s "%s" not found', r.plural, r.group, name), name, r.plural)
  end
  if method == "GET" and not name then
    if q.watch == "1" or q.watch == "true" then return self:watch(r, ns, q, stream_id) end
    return self:list(r, ns, q)
  end
  if method == "GET" then
    if not obj then return notfound() end
    return 200, obj
  end
  if method == "POST" and not name then
    local ok, o = pcall(json.decode, body)
    if not ok or type(o) ~= "table" then return status_obj(400, "BadRequest", "the body is not a JSON object") end
    return self:create(r, ns, o, q)
  end
  if not name then return status_obj(405, "MethodNotAllowed", method .. " on a collection") end
  if method == "PUT" then
    if not obj then return notfound() end
    local ok, o = pcall(json.decode, body)
    if not ok or type(o) ~= "table" then return status_obj(400, "BadRequest", "the body is not a JSON object") end
    return self:commit(r, obj, o, sub, q)
  end
  if method == "PATCH" then return self:patch(r, ns, name, sub, ctype, body, q) end
  if method == "DELETE" then
    if not obj then return notfound() end
    local ok, opts = pcall(json.decode, body ~= "" and body or "{}")
    local pre = ok and type(opts) == "table" and opts.preconditions or {}
    if (pre.uid and pre.uid ~= obj.metadata.uid) or
       (pre.resourceVersion and pre.resourceVersion ~= obj.metadata.resourceVersion) then
      return status_obj(409, "Conflict", "Precondition failed: the object has changed", name, r.plural)
    end
    return self:remove(r, obj, q)
  end
  return status_obj(405, "MethodNotAllowed", "method " .. method .. " is not allowed")
end

return M
