---@meta
-- The parts every Kubernetes object shares, as LuaLS/EmmyLua annotations.
-- `klua types` makes each kind's class extend klua.Object
-- (`---@class apps.v1.Deployment: klua.Object`), so `obj.metadata.name`
-- is typed for every kind, from CRD files or from the cluster.

---@class klua.Object
---@field apiVersion string
---@field kind string
---@field metadata klua.ObjectMeta

-- The metadata of an object klua hands to a script (from the cache or an
-- API answer): the API server has set name, uid, resourceVersion and
-- creationTimestamp. namespace is absent for cluster-scoped kinds.
---@class klua.ObjectMeta
---@field name string
---@field namespace? string
---@field uid string
---@field resourceVersion string     opaque: never compare or parse it
---@field generation? integer        bumped by the API server on each spec change
---@field creationTimestamp string   RFC 3339
---@field deletionTimestamp? string  set when deletion has started (finalizers pending)
---@field deletionGracePeriodSeconds? integer
---@field labels? table<string, string>
---@field annotations? table<string, string>
---@field finalizers? string[]
---@field ownerReferences? klua.OwnerReference[]
---@field generateName? string
---@field managedFields? table[]

---@class klua.OwnerReference
---@field apiVersion string
---@field kind string
---@field name string
---@field uid string
---@field controller? boolean
---@field blockOwnerDeletion? boolean

---@class klua.Condition
---@field type string
---@field status "True"|"False"|"Unknown"
---@field reason? string
---@field message? string
---@field observedGeneration? integer
---@field lastTransitionTime? string  RFC 3339

-- A type reference { apiVersion = ..., kind = ... } that names the class T
-- of its objects. klua types writes one per kind (klua.ref.apps.v1.Deployment
-- is a klua.Ref<apps.v1.Deployment>); ctx:get and ctx:list of a reference
-- declared with that type return T. A plain table literal stays untyped.

---@class klua.Ref<T>
---@field apiVersion string
---@field kind string
