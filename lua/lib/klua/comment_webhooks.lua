-- klua.comment_webhooks - the Comment's webhooks (lua/comment.lua declares
-- them): validation, defaulting, and conversion between github.klua.dev/v1
-- and v1alpha1.
--
-- Provides: validate(ctx, req), mutate(ctx, req), convert(ctx, obj, to).
-- Uses: nothing but the req/obj tables klua hands in (see lua/types/klua.lua).
--
-- validate: spec.repository is "owner/name" (GitHub's characters), the
-- issue a positive integer, and spec.message fits in one GitHub comment:
-- GitHub refuses bodies over 65,536 characters, and klua appends a hidden
-- marker (2 newlines and <!-- klua:comment-uid=UID -->, 64 characters) to
-- find its comment again, so a message may have 65,472 characters.
-- mutate: deletionPolicy defaults to Retain, so the stored object says what
-- will happen on deletion.
-- convert: v1alpha1 called the message `text`; everything else is the same.

local M = {}

M.GITHUB_BODY_MAX = 65536
M.MARKER_LEN = 64   -- "\n\n<!-- klua:comment-uid=" .. 36-character uid .. " -->"
M.MESSAGE_MAX = M.GITHUB_BODY_MAX - M.MARKER_LEN

local OWNER = "^[A-Za-z0-9][A-Za-z0-9-]*$"      -- GitHub user and organisation names
local REPO = "^[A-Za-z0-9_.-]+$"

local function chars(s)
    return utf8.len(s) or #s   -- invalid UTF-8: count bytes
end

local function check_repository(r)
    if type(r) ~= "string" or r == "" then
        return "spec.repository is required: the GitHub repository as \"owner/name\", "
            .. "e.g. \"klua-dev/demo\""
    end
    local owner, name = r:match("^([^/]*)/([^/]*)$")
    if not owner then
        return string.format("spec.repository %q must be \"owner/name\" (one slash), "
            .. "e.g. \"klua-dev/demo\"", r)
    end
    if #owner > 39 or not owner:match(OWNER) then
        return string.format("spec.repository %q: the owner %q is not a GitHub user or "
            .. "organisation name (letters, digits and '-', at most 39)", r, owner)
    end
    if #name > 100 or not name:match(REPO) or name == "." or name == ".." then
        return string.format("spec.repository %q: the name %q is not a GitHub repository "
            .. "name (letters, digits, '.', '-' and '_', at most 100)", r, name)
    end
    return nil
end

local function check_message(m)
    if type(m) ~= "string" or m == "" then
        return "spec.message is required: the text of the GitHub comment"
    end
    local n = chars(m)
    if n > M.MESSAGE_MAX then
        return string.format("spec.message has %d characters; a GitHub comment takes at most "
            .. "%d (GitHub's limit of %d, less %d for klua's hidden marker): shorten it by %d",
            n, M.MESSAGE_MAX, M.GITHUB_BODY_MAX, M.MARKER_LEN, n - M.MESSAGE_MAX)
    end
    return nil
end

function M.validate(ctx, req)
    if req.operation ~= "CREATE" and req.operation ~= "UPDATE" then return true end
    local spec = (req.object or {}).spec
    if type(spec) ~= "table" then
        return false, "a Comment needs a spec with repository, issue and message"
    end
    local why = check_repository(spec.repository) or check_message(spec.message)
    if why then return false, why end
    local issue = spec.issue
    if math.type(issue) ~= "integer" or issue < 1 then
        return false, string.format("spec.issue must be the issue or pull request number "
            .. "(a whole number from 1), got %s", tostring(issue))
    end
    local old = req.oldObject and req.oldObject.spec
    if old and (old.repository ~= spec.repository or old.issue ~= spec.issue) then
        table.insert(req.warnings, "moving a Comment to another repository or issue posts a "
            .. "new GitHub comment; the old one stays")
    end
    return true
end

function M.mutate(ctx, req)
    local spec = req.object and req.object.spec
    if type(spec) == "table" and spec.deletionPolicy == nil then
        spec.deletionPolicy = "Retain"
    end
end

-- v1alpha1 <-> v1: `text` is v1's `message`.
function M.convert(ctx, obj, to)
    local spec = obj.spec
    if type(spec) == "table" then
        if to == "github.klua.dev/v1alpha1" then
            spec.text, spec.message = spec.message, nil
        elseif to == "github.klua.dev/v1" then
            spec.message, spec.text = spec.text, nil
        else
            return nil, "the Comment has no version " .. tostring(to)
        end
    end
    obj.apiVersion = to
    return obj
end

return M
