-- klua.scaffold - the files `klua init` writes (kubebuilder's `create api`, for Lua).
--
-- Used by src/cmd_init.c: files(opts) validates the names and returns a table
-- of relative path -> text; the C side writes them (never over an existing
-- file) and then generates DIR/types from the CRD with `klua types`.
-- Pure functions: no I/O, no globals.

local M = {}

---@class klua.scaffold.Opts
---@field group string        "example.klua.dev"
---@field version string      "v1"
---@field kind string         "Widget"
---@field plural? string      default: the kind in lower case, English plural
---@field namespaced boolean
---@field klua_types? string  absolute path of klua's lua/types (for .luarc.json)
---@field klua_lib? string    absolute path of klua's lua/lib (klua's modules' sources)
---@field deploy_base? string path from DIR to klua's deploy/ (the kustomize base)

--- The English plural of a lower-case kind, as kubebuilder guesses it.
---@param s string
---@return string
function M.plural(s)
  if s:match("[sxz]$") or s:match("[cs]h$") then return s .. "es" end
  if s:match("[^aeiou]y$") then return s:sub(1, -2) .. "ies" end
  return s .. "s"
end

local function check(opts)
  local g, v, k = opts.group, opts.version, opts.kind
  if type(g) ~= "string" or not g:match("^[a-z0-9][a-z0-9.-]*$") or not g:match("[a-z0-9]$") or not g:find(".", 1, true)
      or #g > 253 then
    error(string.format("--group %q must be a DNS subdomain with a dot (example.com)", tostring(g)), 0)
  end
  if g:match("k8s%.io$") or g:match("kubernetes%.io$") then
    error(string.format("--group %q: groups under k8s.io and kubernetes.io are reserved " ..
      "for the Kubernetes project; use your own domain", g), 0)
  end
  if type(v) ~= "string" or not (v:match("^v[1-9][0-9]*$") or v:match("^v[1-9][0-9]*alpha[1-9][0-9]*$")
      or v:match("^v[1-9][0-9]*beta[1-9][0-9]*$")) then
    error(string.format("--version %q must look like v1, v1beta1 or v2alpha1", tostring(v)), 0)
  end
  if type(k) ~= "string" or not k:match("^[A-Z][A-Za-z0-9]*$") or #k > 63 then
    error(string.format("--kind %q must be CamelCase, starting with a capital letter", tostring(k)), 0)
  end
  local p = opts.plural or M.plural(k:lower())
  if not p:match("^[a-z][a-z0-9-]*$") or #p > 63 then
    error(string.format("--plural %q must be lower case letters and digits", p), 0)
  end
  return p
end

local function subst(text, vars)
  return (text:gsub("%${(%w+)}", function(name)
    local v = vars[name]
    assert(v ~= nil, "scaffold: no value for ${" .. name .. "}")
    return v
  end))
end

local CRD = [[
# The ${Kind} custom resource (${group}/${version}), scaffolded by `klua init`.
# Edit the schema, then run `klua types --crds crds -o types` again.
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: ${plural}.${group}
spec:
  group: ${group}
  scope: ${scope}
  names:
    kind: ${Kind}
    listKind: ${Kind}List
    plural: ${plural}
    singular: ${singular}
  versions:
    - name: ${version}
      served: true
      storage: true
      subresources:
        status: {}
      additionalPrinterColumns:
        - name: Ready
          type: string
          jsonPath: .status.conditions[?(@.type=="Ready")].status
        - name: Age
          type: date
          jsonPath: .metadata.creationTimestamp
      schema:
        openAPIV3Schema:
          type: object
          description: A ${Kind}, reconciled by ${singular}.lua.
          required: [spec]
          properties:
            apiVersion:
              type: string
            kind:
              type: string
            metadata:
              type: object
            spec:
              type: object
              description: What the ${Kind} asks for.
              required: [message]
              properties:
                message:
                  type: string
                  description: A message; the reconciler copies it to status.message.
                  minLength: 1
            status:
              type: object
              description: What the reconciler observed and did.
              properties:
                observedGeneration:
                  type: integer
                  description: The metadata.generation this status describes.
                message:
                  type: string
                  description: The spec.message last reconciled.
                conditions:
                  type: array
                  x-kubernetes-list-type: map
                  x-kubernetes-list-map-keys: [type]
                  items:
                    type: object
                    required: [type, status]
                    properties:
                      type:
                        type: string
                      status:
                        type: string
                        enum: ["True", "False", "Unknown"]
                      reason:
                        type: string
                      message:
                        type: string
                      observedGeneration:
                        type: integer
                      lastTransitionTime:
                        type: string
                        format: date-time
]]

local SCRIPT = [[
-- ${singular}.lua - reconciles ${Kind} (${apiVersion}); scaffolded by `klua init`.
--
-- Level-based: compare the ${Kind}'s spec with what its status says was done,
-- do what is missing, record it in status. `klua check --types types .` checks
-- it against the CRD's schema (types/ comes from `klua types --crds crds -o types`).
local conditions = require "klua.conditions"

---@type klua.Controller.${class}
local controller = {
  watch = { apiVersion = "${apiVersion}", kind = "${Kind}" },
  workers = 2,

  ---@param ctx klua.Context
  ---@param obj ${class}
  ---@return klua.Result|nil
  reconcile = function(ctx, obj)
    local status = obj.status or {}
    local generation = obj.metadata.generation
    if status.observedGeneration == generation and status.message == obj.spec.message
        and conditions.is_true(status.conditions, "Ready") then
      return nil -- nothing to do
    end
    local conds = conditions.set(status.conditions, {
      type = "Ready",
      status = "True",
      reason = "Reconciled",
      message = "spec.message is in status",
      observedGeneration = generation,
    }, ctx:now())
    local _, err = ctx:patch_status(obj, {
      observedGeneration = generation,
      message = obj.spec.message,
      conditions = conds,
    })
    if err then
      if err.reason == "Conflict" or err.reason == "NotFound" then
        return { requeue = true } -- changed or gone under us: look again
      end
      error("updating the status of " .. ctx.key .. ": " .. tostring(err))
    end
    ctx.log.info("reconciled", { generation = generation })
    ctx:event(obj, "Normal", "Reconciled", "message: " .. obj.spec.message)
    return nil
  end,
}

return controller
]]

local SPEC = [[
-- ${singular}_spec.lua - the specs of ${singular}.lua, for `klua test` (issue 11 §4:
-- the real host against an in-memory API server, or the local control plane
-- with --cluster). Scaffolded by `klua init`; `klua test` is not part of this
-- klua yet, so nothing runs this file today.
describe("${Kind}", function()
  it("copies spec.message to status and reports Ready", function()
    local api = klua_test.api()
    local obj = api:create(klua_test.yaml("examples/${singular}.yaml"))
    api:run_until_idle()
    local got = api:get(obj)
    assert.are.equal(obj.spec.message, got.status.message)
    assert.are.equal(got.metadata.generation, got.status.observedGeneration)
    assert.are.equal("True", got.status.conditions[1].status)
  end)
end)
]]

local EXAMPLE = [[
# An example ${Kind}: `kubectl apply -f examples/${singular}.yaml${nsflag}`
apiVersion: ${apiVersion}
kind: ${Kind}
metadata:
  name: example
spec:
  message: Hello from ${Kind}
]]

local KUSTOMIZATION = [[
# A kustomize overlay on klua's deploy/ base that adds ${Kind} to klua: its CRD,
# its script in the klua-scripts ConfigMap, and RBAC for ${plural}.${group}.
#
#   kubectl kustomize .    # or: kubectl apply -k .
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - ${deploy}
  - crds/${plural}.${group}.yaml
configMapGenerator:
  - name: klua-scripts
    namespace: klua-system
    behavior: merge
    files:
      - ${singular}.lua
patches:
  - target:
      group: rbac.authorization.k8s.io
      version: v1
      kind: ClusterRole
      name: klua
    patch: |-
      - op: add
        path: /rules/-
        value:
          apiGroups: ["${group}"]
          resources: ["${plural}"]
          verbs: ["get", "list", "watch", "patch", "update"]
      - op: add
        path: /rules/-
        value:
          apiGroups: ["${group}"]
          resources: ["${plural}/status"]
          verbs: ["get", "patch", "update"]
]]

local function json_string(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    return string.format("\\u%04x", c:byte())
  end) .. '"'
end

--- The files of a new controller, as relative path -> text.
---@param opts klua.scaffold.Opts
---@return table<string, string>
function M.files(opts)
  local plural = check(opts)
  local singular = opts.kind:lower()
  local vars = {
    group = opts.group, version = opts.version, Kind = opts.kind, plural = plural,
    singular = singular, scope = opts.namespaced and "Namespaced" or "Cluster",
    apiVersion = opts.group .. "/" .. opts.version,
    class = opts.group .. "." .. opts.version .. "." .. opts.kind,
    nsflag = opts.namespaced and " -n NAMESPACE" or "",
    deploy = opts.deploy_base or "../deploy",
  }
  local library = { '"types"' }
  if opts.klua_types then library[#library + 1] = json_string(opts.klua_types) end
  if opts.klua_lib then library[#library + 1] = json_string(opts.klua_lib) end
  local files = {
    ["crds/" .. plural .. "." .. opts.group .. ".yaml"] = subst(CRD, vars),
    [singular .. ".lua"] = subst(SCRIPT, vars),
    ["spec/" .. singular .. "_spec.lua"] = subst(SPEC, vars),
    ["examples/" .. singular .. ".yaml"] = subst(EXAMPLE, vars),
    ["kustomization.yaml"] = subst(KUSTOMIZATION, vars),
    [".luarc.json"] = "{\n" ..
      '  "runtime.version": "Lua 5.4",\n' ..
      '  "runtime.path": ["?.lua", "?/init.lua", "lib/?.lua", "lib/?/init.lua"],\n' ..
      '  "workspace.library": [' .. table.concat(library, ", ") .. "],\n" ..
      '  "workspace.ignoreDir": ["spec"],\n' ..
      '  "diagnostics.globals": ["describe", "it", "klua_test"]\n' ..
      "}\n",
  }
  return files
end

return M
