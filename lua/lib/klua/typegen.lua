-- klua.typegen - turns OpenAPI v3 schemas into LuaLS/EmmyLua annotations.
--
-- Used by `klua types` (src/cmd_types.c), which reads the schemas (CRD
-- files, or the API server's /openapi/v3) and hands them over as decoded
-- tables. Pure functions: no I/O, no globals; the same schemas give the same
-- bytes (every table is walked in sorted key order).
--
-- Names. A kind gets the class `<group>.<version>.<Kind>` ("core" for the
-- core group): `apps.v1.Deployment`, `github.klua.dev.v1.Comment`, whether
-- it came from a CRD file or from the cluster. Other shared schemas keep
-- their OpenAPI name, shortened (`io.k8s.api.` -> `k8s.`). An object
-- nested inline in a class is `<Class>.<field>`; an array's inline element
-- `<Class>.<field>.item`; a map's inline value `<Class>.<field>.value`.
-- Every kind also gets `klua.ref.<group>.<version>.<Kind>`, the type of
-- `{ apiVersion = ..., kind = ... }` that makes ctx:get/ctx:list typed, and
-- `klua.Controller.<Class>`, which types reconcile's obj (see render_kinds).

local M = {}

---@alias klua.typegen.Schema table<string, any>

---@class klua.typegen.Kind
---@field group string
---@field version string
---@field kind string
---@field class string
---@field schema klua.typegen.Schema

---@class klua.typegen.Model
---@field kinds table<string, klua.typegen.Kind>   by class name
---@field shared table<string, klua.typegen.Schema> by OpenAPI name
---@field names table<string, string>              OpenAPI name -> class name

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do
    if type(k) == "string" then keys[#keys + 1] = k end
  end
  table.sort(keys)
  return keys
end

local function sanitize(name)
  return (name:gsub("[^%w_.]", "_"))
end

local function kind_class(group, version, kind)
  if group == "" then group = "core" end
  return sanitize(group .. "." .. version .. "." .. kind)
end

local PREFIXES = {
  { "io.k8s.apimachinery.pkg.apis.meta.", "k8s.meta." },
  { "io.k8s.apimachinery.pkg.", "k8s." },
  { "io.k8s.api.", "k8s." },
  { "io.k8s.kube-aggregator.pkg.apis.", "k8s." },
  { "io.k8s.apiextensions-apiserver.pkg.apis.", "k8s." },
}

local function shared_class(name)
  for _, p in ipairs(PREFIXES) do
    if name:sub(1, #p[1]) == p[1] then
      return sanitize(p[2] .. name:sub(#p[1] + 1))
    end
  end
  return sanitize(name)
end

-- One line, no control characters, no runs of blanks.
local function one_line(s)
  if type(s) ~= "string" then return nil end
  s = s:gsub("[%c%s]+", " "):gsub("^ ", ""):gsub(" $", "")
  if s == "" then return nil end
  return s
end

local function is_ident(k)
  return k:match("^[%a_][%w_]*$") ~= nil and not ({
    ["and"] = 1, ["break"] = 1, ["do"] = 1, ["else"] = 1, ["elseif"] = 1, ["end"] = 1,
    ["false"] = 1, ["for"] = 1, ["function"] = 1, ["goto"] = 1, ["if"] = 1, ["in"] = 1,
    ["local"] = 1, ["nil"] = 1, ["not"] = 1, ["or"] = 1, ["repeat"] = 1, ["return"] = 1,
    ["then"] = 1, ["true"] = 1, ["until"] = 1, ["while"] = 1,
  })[k]
end

-- A string as a one-line literal ("%q" would break a line at a newline).
local function quote(v)
  return '"' .. v:gsub('[%c"\\]', function(c) return string.format("\\%03d", c:byte()) end) .. '"'
end

local function literal(v)
  if type(v) == "string" then
    return quote(v)
  elseif math.type(v) == "integer" or type(v) == "boolean" then
    return tostring(v)
  end
  return nil
end

-- The schema a $ref or a one-element allOf stands for, as a class name.
local function ref_name(model, s)
  local ref = s["$ref"]
  if not ref and type(s.allOf) == "table" and #s.allOf == 1 and type(s.allOf[1]) == "table" then
    ref = s.allOf[1]["$ref"]
  end
  if type(ref) ~= "string" then return nil end
  local name = ref:match("^#/components/schemas/(.+)$") or ref:match("^#/definitions/(.+)$")
  if not name then return nil end
  return model.names[name] or shared_class(name)
end

local render_class -- forward

-- The annotation type of schema s, emitting classes for inline objects
-- (named `name`) into out.
local function type_of(model, s, name, out)
  if type(s) ~= "table" then return "any" end
  local r = ref_name(model, s)
  if r then return r end
  if s["x-kubernetes-int-or-string"] or s.format == "int-or-string" then
    return "integer|string"
  end
  -- oneOf / anyOf of alternatives (Quantity: string or number): their union
  local alts = type(s.oneOf) == "table" and s.oneOf or type(s.anyOf) == "table" and s.anyOf
  if alts and #alts > 0 and not s.type and not s.properties then
    local seen, parts = {}, {}
    for i, a in ipairs(alts) do
      local at = type_of(model, a, name .. ".alt" .. i, out)
      if not seen[at] then seen[at] = true parts[#parts + 1] = at end
    end
    return table.concat(parts, "|")
  end
  local t = s.type
  if type(s.enum) == "table" and #s.enum > 0 then
    local lits, all = {}, true
    for _, v in ipairs(s.enum) do
      local l = literal(v)
      if not l then all = false break end
      lits[#lits + 1] = l
    end
    if all then return table.concat(lits, "|") end
  end
  if t == "string" then return "string" end
  if t == "integer" then return "integer" end
  if t == "number" then return "number" end
  if t == "boolean" then return "boolean" end
  if t == "array" then
    local it = type_of(model, s.items, name .. ".item", out)
    if it:find("|", 1, true) then it = "(" .. it .. ")" end
    return it .. "[]"
  end
  if type(s.properties) == "table" and next(s.properties) then
    render_class(model, name, s, nil, out)
    return name
  end
  local ap = s.additionalProperties
  if type(ap) == "table" then
    return "table<string, " .. type_of(model, ap, name .. ".value", out) .. ">"
  end
  if t == nil then return "any" end -- no type (JSON, preserved unknown fields): any value
  return "table<string, any>"
end

-- Emit `---@class name[: parent]` with one @field per property, then the
-- classes of its inline objects (depth first, in field order).
render_class = function(model, name, s, parent, out, skip)
  local lines = {}
  local desc = one_line(s.description)
  if desc then lines[#lines + 1] = "--- " .. desc end
  lines[#lines + 1] = "---@class " .. name .. (parent and (": " .. parent) or "")
  local required = {}
  if type(s.required) == "table" then
    for _, k in ipairs(s.required) do required[k] = true end
  end
  local nested = {}
  local props = type(s.properties) == "table" and s.properties or {}
  for _, k in ipairs(sorted_keys(props)) do
    if not (skip and skip[k]) then
      local ty = type_of(model, props[k], name .. "." .. sanitize(k), nested)
      local key = is_ident(k) and k or "[" .. quote(k) .. "]"
      local d = one_line(type(props[k]) == "table" and props[k].description)
      lines[#lines + 1] = "---@field " .. key .. (required[k] and "" or "?") .. " " .. ty ..
        (d and (" # " .. d) or "")
    end
  end
  out[#out + 1] = table.concat(lines, "\n") .. "\n"
  for _, c in ipairs(nested) do out[#out + 1] = c end
end

local function new_model()
  return { kinds = {}, shared = {}, names = {} }
end

local function add_kind(model, group, version, kind, schema, openapi_name)
  local class = kind_class(group, version, kind)
  model.kinds[class] = {
    group = group, version = version, kind = kind, class = class, schema = schema,
  }
  if openapi_name then model.names[openapi_name] = class end
end

--- Add the versions of each CustomResourceDefinition in docs (decoded
--- YAML/JSON documents; others are skipped). Returns the number of CRDs.
---@param model klua.typegen.Model
---@param docs table[]
---@return integer
function M.add_crds(model, docs)
  local n = 0
  for _, d in ipairs(docs) do
    if type(d) == "table" and d.kind == "CustomResourceDefinition" and type(d.spec) == "table" then
      local spec = d.spec
      local kind = spec.names and spec.names.kind
      if type(spec.group) == "string" and type(kind) == "string" then
        n = n + 1
        for _, v in ipairs(spec.versions or {}) do
          local schema = v.schema and v.schema.openAPIV3Schema
          if type(v.name) == "string" then
            add_kind(model, spec.group, v.name, kind, type(schema) == "table" and schema or {})
          end
        end
      end
    end
  end
  return n
end

--- Add every schema of the API server's OpenAPI v3 documents (one per
--- group-version, decoded): kinds by their x-kubernetes-group-version-kind,
--- the rest as shared classes.
---@param model klua.typegen.Model
---@param docs table[]
function M.add_openapi(model, docs)
  for _, d in ipairs(docs) do
    local schemas = type(d) == "table" and d.components and d.components.schemas
    if type(schemas) == "table" then
      for _, name in ipairs(sorted_keys(schemas)) do
        local s = schemas[name]
        local gvks = s["x-kubernetes-group-version-kind"]
        if type(gvks) == "table" and #gvks == 1 and type(gvks[1].kind) == "string" then
          local g = gvks[1]
          local class = kind_class(g.group or "", g.version, g.kind)
          if model.kinds[class] then
            model.names[name] = class -- a CRD file read first wins: it is the newer
          else
            add_kind(model, g.group or "", g.version, g.kind, s, name)
          end
        elseif model.shared[name] == nil then
          model.shared[name] = s
          model.names[name] = model.names[name] or shared_class(name)
        end
      end
    end
  end
end

M.new_model = new_model

local HEADER = "---@meta\n-- Generated by `klua types`; do not edit. From OpenAPI v3 schemas.\n"

local function api_version(k)
  return k.group == "" and k.version or (k.group .. "/" .. k.version)
end

-- The classes that tie a type reference to its kind's class.
local function render_kinds(model, classes)
  local out = { HEADER }
  out[#out + 1] = [[
-- Per kind: `klua.ref.<Class>`, the type of `{ apiVersion = ..., kind = ... }`
-- (a klua.Ref<Class>: ctx:get and ctx:list of such a reference return that
-- class), and `klua.Controller.<Class>`, a controller declaration whose
-- reconcile and finalize get the object typed:
--
--   ---@type klua.ref.apps.v1.Deployment
--   local DEPLOYMENT = { apiVersion = "apps/v1", kind = "Deployment" }
--   local d = ctx:get(DEPLOYMENT, ns, name)      -- apps.v1.Deployment|nil
--
--   ---@type klua.Controller.apps.v1.Deployment
--   local controller = { watch = DEPLOYMENT, reconcile = function(ctx, d) ... end }
]]
  for _, class in ipairs(classes) do
    local k = model.kinds[class]
    local ref = "klua.ref." .. class
    out[#out + 1] = string.format(
      "---@class %s: klua.Ref<%s>\n---@field apiVersion %q\n---@field kind %q\n",
      ref, class, api_version(k), k.kind)
    out[#out + 1] = string.format(
      "---@class klua.Controller.%s: klua.Controller\n---@field watch %s\n" ..
      "---@field reconcile fun(ctx: klua.Context, obj: %s): klua.Result|nil\n" ..
      "---@field finalize? fun(ctx: klua.Context, obj: %s): klua.Result|nil\n",
      class, ref, class, class)
  end
  return table.concat(out, "\n")
end

--- Render the model: a table of file name -> text. One file per API group
--- (`<group>.lua`, kinds and their inline classes), `k8s.lua` for the shared
--- schemas, and `kinds.lua` with the references and controller classes.
---@param model klua.typegen.Model
---@return table<string, string> files
function M.render(model)
  local files = {}
  local by_group = {}
  for _, class in ipairs(sorted_keys(model.kinds)) do
    local k = model.kinds[class]
    local g = k.group == "" and "core" or k.group
    by_group[g] = by_group[g] or {}
    local out = by_group[g]
    local s = k.schema
    -- apiVersion, kind and metadata come from klua.Object (lua/types/object.lua);
    -- metadata too: an object klua hands over always has it, whatever the
    -- schema says, and the class is the same from a file or from the cluster.
    local skip = { apiVersion = true, kind = true, metadata = true }
    render_class(model, class, s, "klua.Object", out, skip)
  end
  for _, g in ipairs(sorted_keys(by_group)) do
    files[sanitize(g) .. ".lua"] = HEADER .. "\n" .. table.concat(by_group[g], "\n")
  end
  local shared = {}
  for _, name in ipairs(sorted_keys(model.shared)) do
    local s = model.shared[name]
    local cls = model.names[name]
    if type(s.properties) == "table" and next(s.properties) then
      render_class(model, cls, s, nil, shared)
    else
      local nested = {}
      local ty = type_of(model, s, cls .. ".value", nested)
      local d = one_line(s.description)
      shared[#shared + 1] = (d and ("--- " .. d .. "\n") or "") ..
        "---@alias " .. cls .. " " .. ty .. "\n"
      for _, c in ipairs(nested) do shared[#shared + 1] = c end
    end
  end
  if #shared > 0 then
    files["k8s.lua"] = HEADER .. "\n" .. table.concat(shared, "\n")
  end
  -- Lists are kinds too (for their class), but nothing watches or reads one.
  local classes = {}
  for _, class in ipairs(sorted_keys(model.kinds)) do
    local k = model.kinds[class]
    local props = type(k.schema.properties) == "table" and k.schema.properties or {}
    if not (k.kind:match("List$") and props.items) then classes[#classes + 1] = class end
  end
  if #classes > 0 then
    files["kinds.lua"] = render_kinds(model, classes)
  end
  return files
end

return M
