-- Every declaration key of the reconciler API v1 (spec/e2e/test_api.py).
return {
  watch = { apiVersion = "v1", kind = "ConfigMap", predicate = { "generation", "labels" } },
  owns = { { apiVersion = "v1", kind = "Secret", predicate = "any" } },
  watches = {
    { apiVersion = "v1", kind = "Service", namespace = "default", selector = "app in (a, b)",
      predicate = function(old, new) return old.spec ~= new.spec end,
      map = function(obj) return { obj.metadata.namespace .. "/" .. obj.metadata.name } end },
  },
  selector = "klua.dev/api=v1",
  finalizer = "example.com/cleanup",
  error_condition = false,
  reconcile = function(ctx, obj) end,
  finalize = function(ctx, obj) end,
}
