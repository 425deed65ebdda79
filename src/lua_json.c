/* lua_json.c - the klua.json module (see lua_json.h for why it is ours).
 *
 * Provides: luaopen_klua_json, lua_json_push, lua_json_encode,
 * lua_json_mark_array.
 * C memory a script makes this module hold (encode output, a decode's
 * tokens) counts against the script's memory cap (lua_host_charge) for as
 * long as it is held, and lives in a holder userdata that is a
 * to-be-closed variable of the C function: a Lua error thrown in the
 * middle (a memory error pushing the result, a kill) frees it at once, not
 * at some later collection. Bytes encoded and decoded are work charged to
 * the running task's budget (lua_host_work: an instruction per 2 bytes,
 * about what the same time buys in Lua).
 * Uses: json (tokenizer, string escaping), lua_host (charging), buf, err, Lua.
 */
#include "lua_json.h"

#include "json.h"
#include "lua_host.h"

#include <lauxlib.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Registry keys and sentinel values: addresses of statics, never strings,
 * so scripts cannot forge them. */
static char array_mt_key;
static char null_sentinel;
static char empty_array_sentinel;
#define DOC_MT "klua.json.doc"

/* C memory of one decode or encode, held by a userdata so that a Lua error
 * in the middle frees it (__close when it is a to-be-closed variable, __gc
 * otherwise). */
typedef struct doc_holder {
    json_doc doc;
    kl_buf tmp;       /* unescaped strings; encode output */
    size_t charged;   /* bytes charged to the script's cap for this */
} doc_holder;

/* Free what h holds and give back what was charged for it. */
static void holder_release(lua_State *L, doc_holder *h)
{
    json_doc_free(&h->doc);
    kl_buf_free(&h->tmp);
    if (h->charged) {
        lua_host_discharge(L, h->charged);
        h->charged = 0;
    }
}

static int doc_gc(lua_State *L)
{
    holder_release(L, luaL_checkudata(L, 1, DOC_MT));
    return 0;
}

static doc_holder *push_holder(lua_State *L);

static void push_array_mt(lua_State *L)
{
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &array_mt_key) != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_createtable(L, 0, 1);                        /* [mt] */
        lua_pushliteral(L, "klua.json.array");
        lua_setfield(L, -2, "__name");
        lua_pushvalue(L, -1);
        lua_rawsetp(L, LUA_REGISTRYINDEX, &array_mt_key);
    }
}

void lua_json_mark_array(lua_State *L, int idx)
{
    idx = lua_absindex(L, idx);
    push_array_mt(L);                                    /* [.., mt] */
    lua_setmetatable(L, idx);
}

static void push_number(lua_State *L, const json_doc *d, const json_tok *t)
{
    char num[64];
    size_t n = t->end - t->start;
    if (n < sizeof num) {
        memcpy(num, d->src + t->start, n);
        num[n] = '\0';
        /* JSON numbers are Lua numerals: "12" -> integer, "1.5"/"1e3" ->
         * float, an integer too big for int64 -> float. */
        if (lua_stringtonumber(L, num) != 0)
            return;
    }
    /* Very long numerals: a NUL-terminated copy in Lua's memory. */
    lua_pushlstring(L, d->src + t->start, n);
    double v = strtod(lua_tostring(L, -1), NULL);
    lua_pop(L, 1);
    lua_pushnumber(L, v);
}

/* Push the value at token i. Depth is bounded by the parser. */
static void push_tok(lua_State *L, doc_holder *h, int i)
{
    const json_doc *d = &h->doc;
    const json_tok *t = &d->toks[i];
    luaL_checkstack(L, 4, "JSON nesting");
    switch (t->type) {
    case JSON_NULL: lua_pushlightuserdata(L, &null_sentinel); break;
    case JSON_FALSE: lua_pushboolean(L, 0); break;
    case JSON_TRUE: lua_pushboolean(L, 1); break;
    case JSON_NUMBER: push_number(L, d, t); break;
    case JSON_STRING:
        if (!t->escaped) {
            lua_pushlstring(L, d->src + t->start, t->end - t->start);
        } else {
            kl_buf_reset(&h->tmp);
            if (json_str_append(d, i, &h->tmp) != 0)
                luaL_error(L, "out of memory decoding JSON");
            lua_pushlstring(L, h->tmp.data ? h->tmp.data : "", h->tmp.len);
        }
        break;
    case JSON_ARRAY: {
        lua_createtable(L, (int)t->size, 0);             /* [arr] */
        lua_Integer n = 1;
        for (int e = json_first(d, i); e >= 0; e = json_next(d, e)) {
            push_tok(L, h, e);
            lua_rawseti(L, -2, n++);
        }
        lua_json_mark_array(L, -1);
        break;
    }
    default: { /* JSON_OBJECT */
        lua_createtable(L, 0, (int)t->size);             /* [obj] */
        for (int k = json_first(d, i); k >= 0; k = json_next(d, k + 1)) {
            if (d->toks[k + 1].type == JSON_NULL)
                continue; /* null members are absent, as Kubernetes reads them */
            push_tok(L, h, k);                           /* [obj, key] */
            push_tok(L, h, k + 1);                       /* [obj, key, value] */
            lua_rawset(L, -3);
        }
        break;
    }
    }
}

/* Decode s and push the value. With charge (a script's json.decode), the
 * tokens count against the script's cap while the tables are built, and
 * the holder is a to-be-closed slot: an error on the way frees them. */
static int push_doc(lua_State *L, const char *s, size_t len, int charge, kl_err *err)
{
    luaL_checkstack(L, 8, "JSON decode");
    charge = charge && lua_host_is_host(L);
    doc_holder *h = push_holder(L);                      /* [holder] */
    if (charge)
        lua_toclose(L, -1);
    int rc = json_parse(&h->doc, s, len, err);
    if (rc == 0 && charge) {
        size_t held = (size_t)h->doc.cap * sizeof(json_tok);
        if (lua_host_charge(L, held) == 0)
            h->charged = held;
        else
            rc = kl_err_set(err, KL_ENOMEM, "memory limit exceeded decoding %zu bytes of JSON "
                                            "(see --lua-memory)", len);
    }
    if (rc == 0)
        push_tok(L, h, 0);                               /* [holder, value] */
    if (charge)
        lua_closeslot(L, rc == 0 ? -2 : -1);             /* releases h */
    else
        holder_release(L, h);
    lua_remove(L, rc == 0 ? -2 : -1);                    /* [value] or [] */
    return rc;
}

int lua_json_push(lua_State *L, const char *s, size_t len, kl_err *err)
{
    return push_doc(L, s, len, 0, err);
}

/* ---- encoding ---- */

/* The output and how long it may grow: a script's encode stops at the
 * memory the script has left, whatever the value (a table referencing
 * itself twice per level doubles the output per level). */
typedef struct enc_ctx {
    kl_buf *out;
    size_t limit;     /* out->len may not pass this */
} enc_ctx;

/* 0 while the output is within its limit, else the error. */
static int enc_room(enc_ctx *e, kl_err *err)
{
    if (e->out->len <= e->limit)
        return 0;
    return kl_err_set(err, KL_ENOMEM, "memory limit exceeded: the JSON would be larger than "
                                      "the script's memory limit (see --lua-memory)");
}

static int is_array_table(lua_State *L, int idx, lua_Integer *len)
{
    lua_Integer count = 0, max = 0;
    if (lua_getmetatable(L, idx)) {                      /* [mt] */
        /* No allocation here: the encoder must not raise. */
        int t = lua_rawgetp(L, LUA_REGISTRYINDEX, &array_mt_key); /* [mt, array_mt] */
        int marked = t == LUA_TTABLE && lua_rawequal(L, -1, -2);
        lua_pop(L, 2);
        if (marked) {
            *len = (lua_Integer)lua_rawlen(L, idx);
            return 1;
        }
    }
    lua_pushnil(L);
    while (lua_next(L, idx)) {                           /* [k, v] */
        lua_pop(L, 1);
        if (!lua_isinteger(L, -1)) {
            lua_pop(L, 1);
            return 0;
        }
        lua_Integer k = lua_tointeger(L, -1);
        if (k < 1) {
            lua_pop(L, 1);
            return 0;
        }
        if (k > max)
            max = k;
        count++;
    }
    *len = count;
    return count > 0 && max == count;
}

static int enc_number(lua_State *L, int idx, enc_ctx *e, kl_err *err)
{
    if (lua_isinteger(L, idx))
        return kl_buf_printf(e->out, "%lld", (long long)lua_tointeger(L, idx));
    double v = lua_tonumber(L, idx);
    if (!isfinite(v))
        return kl_err_set(err, KL_EINVAL, "cannot encode %s as JSON", isnan(v) ? "NaN" : "infinity");
    if (v == floor(v) && fabs(v) < 9007199254740992.0)
        return kl_buf_printf(e->out, "%.0f", v);
    char tmp[64];
    snprintf(tmp, sizeof tmp, "%.14g", v);
    if (strtod(tmp, NULL) != v)
        snprintf(tmp, sizeof tmp, "%.17g", v);
    return kl_buf_puts(e->out, tmp);
}

static int enc_value(lua_State *L, int idx, enc_ctx *e, int depth, kl_err *err);

static int enc_table(lua_State *L, int idx, enc_ctx *e, int depth, kl_err *err)
{
    lua_Integer n;
    if (is_array_table(L, idx, &n)) {
        if (kl_buf_putc(e->out, '[') != 0)
            return kl_err_set(err, KL_ENOMEM, "out of memory encoding JSON");
        for (lua_Integer i = 1; i <= n; i++) {
            if (i > 1 && kl_buf_putc(e->out, ',') != 0)
                return kl_err_set(err, KL_ENOMEM, "out of memory encoding JSON");
            lua_rawgeti(L, idx, i);
            int rc = enc_value(L, lua_gettop(L), e, depth + 1, err);
            lua_pop(L, 1);
            if (rc != 0)
                return -1;
        }
        return kl_buf_putc(e->out, ']') == 0 ? 0 : kl_err_set(err, KL_ENOMEM, "out of memory");
    }
    if (kl_buf_putc(e->out, '{') != 0)
        return kl_err_set(err, KL_ENOMEM, "out of memory encoding JSON");
    int first = 1;
    lua_pushnil(L);
    while (lua_next(L, idx)) {                           /* [k, v] */
        if (lua_type(L, -2) != LUA_TSTRING) {
            lua_pop(L, 2);
            return kl_err_set(err, KL_EINVAL,
                              "cannot encode a table mixing array items and named fields as JSON");
        }
        size_t kl;
        const char *k = lua_tolstring(L, -2, &kl);
        if ((!first && kl_buf_putc(e->out, ',') != 0) || json_escape_append(e->out, k, kl) != 0 ||
            kl_buf_putc(e->out, ':') != 0) {
            lua_pop(L, 2);
            return kl_err_set(err, KL_ENOMEM, "out of memory encoding JSON");
        }
        first = 0;
        int rc = enc_value(L, lua_gettop(L), e, depth + 1, err);
        lua_pop(L, 1);
        if (rc != 0) {
            lua_pop(L, 1);
            return -1;
        }
    }
    return kl_buf_putc(e->out, '}') == 0 ? 0 : kl_err_set(err, KL_ENOMEM, "out of memory");
}

static int enc_value(lua_State *L, int idx, enc_ctx *e, int depth, kl_err *err)
{
    if (depth > JSON_MAX_DEPTH)
        return kl_err_set(err, KL_EINVAL,
                          "cannot encode JSON nested deeper than %d levels (a cycle?)",
                          JSON_MAX_DEPTH);
    if (!lua_checkstack(L, 4))
        return kl_err_set(err, KL_ENOMEM, "out of Lua stack encoding JSON");
    if (enc_room(e, err) != 0)
        return -1;
    int rc = 0;
    switch (lua_type(L, idx)) {
    case LUA_TNIL: rc = kl_buf_puts(e->out, "null"); break;
    case LUA_TBOOLEAN: rc = kl_buf_puts(e->out, lua_toboolean(L, idx) ? "true" : "false"); break;
    case LUA_TNUMBER:
        if (enc_number(L, idx, e, err) != 0)
            return -1;
        break;
    case LUA_TSTRING: {
        size_t n;
        const char *s = lua_tolstring(L, idx, &n);
        rc = json_escape_append(e->out, s, n);
        break;
    }
    case LUA_TTABLE: return enc_table(L, idx, e, depth, err);
    case LUA_TLIGHTUSERDATA:
        if (lua_touserdata(L, idx) == &null_sentinel) {
            rc = kl_buf_puts(e->out, "null");
            break;
        }
        if (lua_touserdata(L, idx) == &empty_array_sentinel) {
            rc = kl_buf_puts(e->out, "[]");
            break;
        }
        /* fall through */
    default:
        return kl_err_set(err, KL_EINVAL, "cannot encode a %s value as JSON",
                          lua_typename(L, lua_type(L, idx)));
    }
    if (rc != 0)
        return kl_err_set(err, KL_ENOMEM, "out of memory encoding JSON");
    return enc_room(e, err);
}

/* Encode with the output bounded by `room` more bytes. */
static int encode_within(lua_State *L, int idx, kl_buf *out, size_t room, kl_err *err)
{
    enc_ctx e = {out, room > SIZE_MAX - out->len ? SIZE_MAX : out->len + room};
    return enc_value(L, lua_absindex(L, idx), &e, 0, err);
}

int lua_json_encode(lua_State *L, int idx, kl_buf *out, kl_err *err)
{
    return encode_within(L, idx, out, lua_host_is_host(L) ? lua_host_mem_room(L) : SIZE_MAX, err);
}

/* ---- the Lua module ---- */

static doc_holder *push_holder(lua_State *L)
{
    doc_holder *h = lua_newuserdatauv(L, sizeof *h, 0); /* [holder] */
    memset(h, 0, sizeof *h);
    if (luaL_newmetatable(L, DOC_MT)) {
        lua_pushcfunction(L, doc_gc);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, doc_gc);
        lua_setfield(L, -2, "__close");
    }
    lua_setmetatable(L, -2);
    return h;
}

/* json.encode(v) -> string, or raises on a value JSON cannot hold. The
 * output buffer belongs to a to-be-closed holder: a memory error while
 * pushing the result, or a kill, frees it at once. The output may use at
 * most the memory the script has left, and it counts while the string is
 * made from it, so output and string together stay within the cap. */
static int l_encode(lua_State *L)
{
    luaL_checkany(L, 1);
    lua_settop(L, 1);
    doc_holder *h = push_holder(L);                      /* [v, holder] */
    lua_toclose(L, 2);
    kl_err err = {0};
    int host = lua_host_is_host(L);
    /* half the room: the buffer's capacity may be twice its length */
    if (encode_within(L, 1, &h->tmp, host ? lua_host_mem_room(L) / 2 : SIZE_MAX, &err) != 0) {
        holder_release(L, h);
        return luaL_error(L, "json.encode: %s", err.msg);
    }
    if (host) {
        lua_host_work(L, h->tmp.len / 2);
        if (lua_host_charge(L, h->tmp.cap) != 0) {
            holder_release(L, h);
            return luaL_error(L, "json.encode: memory limit exceeded: the JSON and its copy would "
                                 "be larger than the script's memory limit (see --lua-memory)");
        }
        h->charged = h->tmp.cap;
    }
    lua_pushlstring(L, h->tmp.data ? h->tmp.data : "", h->tmp.len); /* [v, holder, json] */
    holder_release(L, h);
    return 1;
}

/* json.decode(s) -> value, or nil, message for invalid JSON. */
static int l_decode(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    kl_err err = {0};
    lua_host_work(L, n / 2);
    if (push_doc(L, s, n, 1, &err) != 0) {
        lua_pushnil(L);
        lua_pushstring(L, err.msg);
        return 2;
    }
    return 1;
}

/* json.array(t) -> t, marked to encode as a JSON array even when empty. */
static int l_array(lua_State *L)
{
    if (lua_isnoneornil(L, 1)) {
        lua_settop(L, 0);
        lua_newtable(L);
    }
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    lua_json_mark_array(L, 1);
    return 1;
}

static const luaL_Reg json_funcs[] = {
    {"encode", l_encode},
    {"decode", l_decode},
    {"array", l_array},
    {NULL, NULL},
};

int luaopen_klua_json(lua_State *L)
{
    luaL_newlib(L, json_funcs);                          /* [mod] */
    lua_pushlightuserdata(L, &null_sentinel);
    lua_setfield(L, -2, "null");
    lua_pushlightuserdata(L, &empty_array_sentinel);
    lua_setfield(L, -2, "empty_array");
    return 1;
}
