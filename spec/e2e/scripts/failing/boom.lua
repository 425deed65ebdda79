-- boom.lua - a test reconciler whose reconcile fails on purpose (spec/e2e/
-- test_resilience.py): klua must log the error with this file and line,
-- record a Warning Event on the ConfigMap and back the key off.
-- A ConfigMap with data.fail = "no" reconciles fine.
return {
    watch = { apiVersion = "v1", kind = "ConfigMap" },
    selector = "klua-e2e=boom",
    workers = 1,
    reconcile = function(ctx, cm)
        if cm.data and cm.data.fail == "no" then
            return nil
        end
        error("boom: this reconcile fails on purpose") -- E2E-ERROR-LINE
    end,
}
