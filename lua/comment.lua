-- comment.lua - the GitHub Comment controller: keeps one GitHub issue
-- comment per Comment resource (github.klua.dev/v1, crds/comment.yaml).
--
-- Provides: the controller table klua loads from the script directory.
-- Uses: klua.github (REST client, rate limits), klua.conditions, klua.json,
-- and the ctx API of lua/types/klua.lua.
--
-- Level-based: each reconcile compares the Comment with what status says
-- is on GitHub and does the one step that is missing.
--   * new Comment: look for a comment carrying this resource's marker
--     (a crash between posting and recording status leaves one behind:
--     adopting it is what prevents a duplicate), else post one;
--   * spec changed: edit the comment (gone on GitHub: post it again);
--   * deleted: with deletionPolicy Delete, delete the GitHub comment first.
-- GitHub trouble never becomes an error storm: rate limits and outages
-- requeue after the wait GitHub asks for; problems a user must fix
-- (token, permissions, repository, issue) set Delivered=False with a
-- message saying what to check, and retry only every five minutes.

local github = require "klua.github"
local conditions = require "klua.conditions"
local json = require "klua.json"
local webhooks = require "klua.comment_webhooks"

local PERMANENT_RETRY = 300  -- seconds between retries of what a user must fix

-- A failure returns requeue_after: klua holds the key that long. The watch's
-- echo of this reconcile's own writes (the finalizer, Delivered=False) does
-- not queue it again; a spec change (a new generation) does, at once: the
-- user may have fixed what was wrong.
local CONDITION = "Delivered"

local function val(v)
    if v == json.null then return nil end
    return v
end

local function marker(uid)
    return "<!-- klua:comment-uid=" .. uid .. " -->"
end

local function body_of(obj)
    return obj.spec.message .. "\n\n" .. marker(obj.metadata.uid)
end

local function where(spec)
    return string.format("%s issue %s", tostring(spec.repository),
        string.format("%d", math.tointeger(tonumber(spec.issue)) or 0))
end

-- What the user reads in the condition (and the Warning Event) for each
-- kind of failure. Messages avoid volatile details (seconds left), so a
-- repeated failure does not rewrite the status every time.
local FAILURES = {
    rate_limited = { reason = "RateLimited", retry = true, text = function(spec, e)
        return "GitHub rate limit reached (" .. e.message .. "); klua holds every request until "
            .. "the limit resets and then retries" end },
    server = { reason = "GitHubUnavailable", retry = true, text = function(spec, e)
        -- no status code or text here: they vary from one failure to the
        -- next, and a changing message would rewrite the status each time
        return "GitHub is answering with server errors; klua retries with backoff" end },
    network = { reason = "GitHubUnavailable", retry = true, text = function(spec, e)
        return "GitHub could not be reached (" .. e.message .. "); klua retries with backoff" end },
    auth = { reason = "Unauthorized", text = function(spec, e)
        if e.status == 0 then return e.message end
        return "GitHub answered 401 " .. e.message .. ": check the token klua was given "
            .. "(--secret github_token=FILE, --github-token-file or GITHUB_TOKEN); it may be expired or revoked" end },
    forbidden = { reason = "Forbidden", text = function(spec, e)
        return "GitHub answered 403 " .. e.message .. " for " .. where(spec)
            .. ": the token needs permission to write issues on the repository" end },
    not_found = { reason = "IssueNotFound", text = function(spec, e)
        return string.format("GitHub answered %d %s for %s: check spec.repository and "
            .. "spec.issue, and that the token can see the repository", e.status, e.message, where(spec)) end },
    invalid = { reason = "Invalid", text = function(spec, e)
        return string.format("GitHub refused the comment for %s (%d %s): check spec.message",
            where(spec), e.status, e.message) end },
}

-- Records a failure: Delivered=False (patched and announced only when it
-- changes), and how long to wait before the next try.
local function fail(ctx, obj, e)
    local f = FAILURES[e.kind] or FAILURES.server
    local spec, status = obj.spec, val(obj.status) or {}
    local msg = f.text(spec, e)
    local list, changed = conditions.set(val(status.conditions), {
        type = CONDITION, status = "False", reason = f.reason, message = msg,
        observedGeneration = obj.metadata.generation,
    }, ctx:now())
    if changed then
        local _, perr = ctx:patch_status(obj, { conditions = list })
        if perr then ctx.log.warn("could not record Delivered=False", { error = tostring(perr) }) end
        ctx:event(obj, "Warning", f.reason, msg)
    end
    ctx.log.info("GitHub request failed", { kind = e.kind, status = e.status, retry_after = e.retry_after })
    local wait = f.retry and math.max(e.retry_after or 5, 1) or PERMANENT_RETRY
    return { requeue_after = wait }
end

-- Finds the comment carrying this resource's marker (adopting it) or
-- posts a new one. Returns comment, how ("Adopted"|"Posted"), or nil, err.
local function adopt_or_post(gh, obj, body)
    local spec, mark = obj.spec, marker(obj.metadata.uid)
    local found, err = gh:find_comment(spec.repository, spec.issue, function(c)
        return type(c.body) == "string" and c.body:find(mark, 1, true) ~= nil
    end)
    if err then return nil, err end
    if found then
        if found.body ~= body then
            -- the message changed while the earlier attempt was unrecorded
            local c, uerr = gh:update_comment(spec.repository, found.id, body)
            if not c then return nil, uerr end
            found = c
        end
        return found, "Adopted"
    end
    local c, perr = gh:create_comment(spec.repository, spec.issue, body)
    if not c then return nil, perr end
    return c, "Posted"
end

-- Whether status.url still points at spec's repository and issue (the
-- user may have moved the Comment to another issue).
local function same_target(url, spec)
    if type(url) ~= "string" then return true end
    local needle = string.format("/%s/issues/%d#", spec.repository:lower(),
        math.tointeger(tonumber(spec.issue)) or 0)
    return url:lower():find(needle, 1, true) ~= nil
end

local function reconcile(ctx, obj)
    local spec, meta = obj.spec or {}, obj.metadata
    local status = val(obj.status) or {}
    local id = val(status.commentID)
    local gen = math.tointeger(meta.generation) or meta.generation
    if id and val(status.observedGeneration) == meta.generation
        and conditions.is_true(val(status.conditions), CONDITION) then
        return nil
    end

    local gh, err = github.new(ctx)
    if not gh then return fail(ctx, obj, err) end
    local body = body_of(obj)
    local comment, how

    if id and not same_target(val(status.url), spec) then
        -- moved to another issue: the old comment is left (or removed, under
        -- Delete) and the new place gets its own
        if spec.deletionPolicy == "Delete" then
            local ok, derr = gh:delete_comment(spec.repository, id)
            if not ok and derr.kind ~= "not_found" then return fail(ctx, obj, derr) end
        end
        id = nil
    end
    if id then
        comment, err = gh:update_comment(spec.repository, id, body)
        how = "Updated"
        if not comment and err.kind == "not_found" then
            -- deleted on GitHub (or the repository is gone: the search says which)
            ctx.log.info("comment is gone from GitHub; posting it again", { id = id })
            comment, how = adopt_or_post(gh, obj, body)
            if not comment then err = how end
        end
    else
        comment, how = adopt_or_post(gh, obj, body)
        if not comment then err = how end
    end
    if not comment then return fail(ctx, obj, err) end

    local cid = math.tointeger(tonumber(comment.id)) or comment.id
    local verb = ({ Posted = "posted to", Updated = "updated on", Adopted = "adopted on" })[how]
    local msg = string.format("comment %s %s: %s", verb, where(spec), tostring(val(comment.html_url)))
    local list = conditions.set(val(status.conditions), {
        type = CONDITION, status = "True", reason = how, message = msg, observedGeneration = gen,
    }, ctx:now())
    local _, perr = ctx:patch_status(obj, {
        commentID = cid, url = val(comment.html_url), observedGeneration = gen, conditions = list,
    })
    if perr then
        -- the marker makes the next attempt adopt this comment, not post twice
        ctx.log.warn("comment delivered but status not recorded", { id = cid, error = tostring(perr) })
        return { requeue = true }
    end
    ctx.log.info(msg, { id = cid })
    ctx:event(obj, "Normal", how, msg)
    return nil
end

local function finalize(ctx, obj)
    local spec = obj.spec or {}
    if spec.deletionPolicy ~= "Delete" then  -- Retain: leave it on GitHub
        return nil
    end
    local status = val(obj.status) or {}
    local gh, err = github.new(ctx)
    if not gh then return fail(ctx, obj, err) end
    local id = val(status.commentID)
    if not id then
        -- posted but never recorded (a crash)? the marker finds it
        local found, ferr = gh:find_comment(spec.repository, spec.issue, function(c)
            return type(c.body) == "string" and c.body:find(marker(obj.metadata.uid), 1, true) ~= nil
        end)
        if ferr and ferr.kind ~= "not_found" then return fail(ctx, obj, ferr) end
        if not found then return nil end
        id = found.id
    end
    local ok, derr = gh:delete_comment(spec.repository, id)
    if not ok and derr.kind ~= "not_found" then
        local res = fail(ctx, obj, derr)
        if not FAILURES[derr.kind] or not FAILURES[derr.kind].retry then
            ctx.log.warn("the GitHub comment could not be deleted; the Comment keeps its "
                .. "finalizer (set spec.deletionPolicy to Retain to let it go)", { id = id })
        end
        return res
    end
    ctx:event(obj, "Normal", "Deleted", "comment deleted from " .. where(spec))
    return nil
end

return {
    name = "comment",
    watch = { apiVersion = "github.klua.dev/v1", kind = "Comment" },
    workers = 4,
    reconcile = reconcile,
    finalize = finalize,

    -- Webhooks (served with klua run --webhook-addr; see klua.comment_webhooks):
    -- validation of repository, issue and message size, the deletionPolicy
    -- default, and conversion from and to github.klua.dev/v1alpha1.
    validate = webhooks.validate,
    mutate = webhooks.mutate,
    convert = webhooks.convert,
}
