---@meta klua.json
-- klua.json, the JSON codec compiled into klua (src/lua_json.c), as
-- LuaLS/EmmyLua annotations: `local json = require "klua.json"`.
-- Integers stay integers; decoded arrays remember they were arrays (so []
-- round-trips); object members that are null are dropped; null inside an
-- array is json.null. Nesting deeper than 200 levels is an error; encode raises on a value
-- JSON cannot hold.

---@class klua.json
local json = {}

--- Encode a value as JSON text. Tables with only keys 1..n are arrays, other
--- tables objects (string keys only). Raises on functions, cycles, NaN.
---@param value any
---@return string
function json.encode(value) end

--- Decode JSON text: the value, or nil and a message for invalid JSON.
---@param text string
---@return any value, string|nil err
function json.decode(text) end

--- The JSON null inside arrays (a light userdata).
---@type lightuserdata
json.null = nil

--- A value that encodes as [] (a light userdata).
---@type lightuserdata
json.empty_array = nil

--- Mark t (default: a new table) as an array, so an empty one encodes as []; returns it.
---@generic T: table
---@param t? T
---@return T
function json.array(t) end

return json
