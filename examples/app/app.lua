-- app.lua - each App (platform.klua.dev/v1) gets a Deployment and a Service of
-- the same name, kept in step with the App's spec and owned by it (controller
-- ownerReferences: deleting the App deletes them through the garbage
-- collector; changing or deleting either one reconciles the App, which puts
-- it back). The App's status reports the Deployment's ready pods.
--
-- Writes are server-side applies of the fields this controller owns, made
-- only when the cached object differs from what the App asks for.
local conditions = require "klua.conditions"

---@type klua.ref.apps.v1.Deployment
local DEPLOYMENT = { apiVersion = "apps/v1", kind = "Deployment" }
---@type klua.ref.core.v1.Service
local SERVICE = { apiVersion = "v1", kind = "Service" }
local FIELD_MANAGER = "klua-app"

---@param app platform.klua.dev.v1.App
---@return klua.OwnerReference[]
local function owned_by(app)
  return { {
    apiVersion = app.apiVersion, kind = app.kind, name = app.metadata.name,
    uid = app.metadata.uid, controller = true, blockOwnerDeletion = true,
  } }
end

---@param app platform.klua.dev.v1.App
---@return table<string, string>
local function selector(app)
  return { ["app.kubernetes.io/name"] = app.metadata.name, ["app.kubernetes.io/managed-by"] = "klua" }
end

---@param app platform.klua.dev.v1.App
local function desired_deployment(app)
  local port = app.spec.port or 8080
  return {
    apiVersion = "apps/v1", kind = "Deployment",
    metadata = {
      name = app.metadata.name, namespace = app.metadata.namespace,
      labels = selector(app), ownerReferences = owned_by(app),
    },
    spec = {
      replicas = app.spec.replicas or 1,
      selector = { matchLabels = selector(app) },
      template = {
        metadata = { labels = selector(app) },
        spec = {
          containers = { {
            name = "app", image = app.spec.image,
            ports = { { name = "http", containerPort = port, protocol = "TCP" } },
          } },
        },
      },
    },
  }
end

---@param app platform.klua.dev.v1.App
local function desired_service(app)
  return {
    apiVersion = "v1", kind = "Service",
    metadata = {
      name = app.metadata.name, namespace = app.metadata.namespace,
      labels = selector(app), ownerReferences = owned_by(app),
    },
    spec = {
      selector = selector(app),
      ports = { { name = "http", port = app.spec.port or 8080, targetPort = "http", protocol = "TCP" } },
    },
  }
end

---@param obj klua.Object|nil
---@param app platform.klua.dev.v1.App
---@return boolean
local function owned(obj, app)
  for _, ref in ipairs(obj and obj.metadata.ownerReferences or {}) do
    if ref.uid == app.metadata.uid and ref.controller then return true end
  end
  return false
end

---@param d apps.v1.Deployment|nil
---@param app platform.klua.dev.v1.App
---@return boolean
local function deployment_in_step(d, app)
  if not d or not owned(d, app) then return false end
  local c = d.spec.template.spec.containers[1]
  local p = c and c.ports and c.ports[1]
  return d.spec.replicas == (app.spec.replicas or 1) and c ~= nil and c.image == app.spec.image
    and p ~= nil and p.containerPort == (app.spec.port or 8080)
end

---@param s core.v1.Service|nil
---@param app platform.klua.dev.v1.App
---@return boolean
local function service_in_step(s, app)
  if not s or not owned(s, app) then return false end
  local p = s.spec and s.spec.ports and s.spec.ports[1]
  return p ~= nil and p.port == (app.spec.port or 8080)
end

---@param ctx klua.Context
---@param obj table
---@param what string
local function apply(ctx, obj, what)
  local _, err = ctx:apply(obj, { field_manager = FIELD_MANAGER, force = true })
  if err then
    error("applying the " .. what .. " of " .. ctx.key .. ": " .. tostring(err))
  end
  ctx.log.info("applied", { kind = obj.kind, name = obj.metadata.name })
end

---@type klua.Controller.platform.klua.dev.v1.App
local controller = {
  watch = { apiVersion = "platform.klua.dev/v1", kind = "App" },
  owns = { DEPLOYMENT, SERVICE },
  workers = 4,

  ---@param ctx klua.Context
  ---@param app platform.klua.dev.v1.App
  ---@return klua.Result|nil
  reconcile = function(ctx, app)
    local ns, name = app.metadata.namespace, app.metadata.name
    local d = ctx:get(DEPLOYMENT, ns, name)
    if not deployment_in_step(d, app) then
      apply(ctx, desired_deployment(app), "Deployment")
    end
    local s = ctx:get(SERVICE, ns, name)
    if not service_in_step(s, app) then
      apply(ctx, desired_service(app), "Service")
    end

    local want = app.spec.replicas or 1
    local ready = d and d.status and d.status.readyReplicas or 0
    local status = app.status or {}
    local conds, changed = conditions.set(status.conditions, {
      type = "Ready",
      status = ready >= want and "True" or "False",
      reason = ready >= want and "Available" or "Progressing",
      message = ready .. " of " .. want .. " pods ready",
      observedGeneration = app.metadata.generation,
    }, ctx:now())
    if changed or status.observedGeneration ~= app.metadata.generation
        or status.readyReplicas ~= ready then
      local _, err = ctx:patch_status(app, {
        observedGeneration = app.metadata.generation, readyReplicas = ready, conditions = conds,
      })
      if err and err.reason ~= "NotFound" then
        error("updating the status of " .. ctx.key .. ": " .. tostring(err))
      end
    end
    return nil
  end,
}

return controller
