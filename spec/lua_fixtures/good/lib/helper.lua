local M = {}
function M.answer() return 41 end
return M
