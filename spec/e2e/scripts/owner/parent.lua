-- parent.lua - e2e fixture: every ConfigMap labelled klua-e2e/parent=yes owns
-- a Secret "<name>-child" (controller ownerReference). The controller owns
-- Secrets, so deleting or editing the child reconciles the parent, which puts
-- the child back.
return {
  watch = { apiVersion = "v1", kind = "ConfigMap" },
  owns = { { apiVersion = "v1", kind = "Secret" } },
  selector = "klua-e2e/parent=yes",
  reconcile = function(ctx, cm)
    local want = (cm.data or {}).value or ""
    local name = cm.metadata.name .. "-child"
    local child = ctx:get({ apiVersion = "v1", kind = "Secret" }, cm.metadata.namespace, name)
    -- Secrets come back base64-encoded: compare through an annotation
    local seen = child and child.metadata.annotations and child.metadata.annotations["klua-e2e/value"]
    if seen == want then return nil end
    local desired = {
      apiVersion = "v1", kind = "Secret",
      metadata = {
        name = name, namespace = cm.metadata.namespace,
        annotations = { ["klua-e2e/value"] = want },
        ownerReferences = { {
          apiVersion = "v1", kind = "ConfigMap", name = cm.metadata.name,
          uid = cm.metadata.uid, controller = true, blockOwnerDeletion = true,
        } },
      },
      stringData = { value = want },
    }
    local _, err = ctx:apply(desired, { field_manager = "parent-e2e", force = true })
    if err then error("apply child: " .. tostring(err)) end
    ctx.log.info("child applied", { child = name, value = want })
  end,
}
