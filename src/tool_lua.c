/* tool_lua.c - a plain Lua state for klua's command-line tools; see tool_lua.h. */
#include "tool_lua.h"

#include "buf.h"
#include "luamods.h"

#include <errno.h>
#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

/* package.preload[name] = the compiled chunk, for every embedded module. */
static int preload_luamods(lua_State *L)
{
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE); /* [preload] */
    for (const struct klua_luamod *m = klua_luamods; m->name; m++) {
        if (luaL_loadbufferx(L, m->src, m->len, m->chunkname, "t") != LUA_OK)
            return lua_error(L);
        lua_setfield(L, -2, m->name); /* [preload] */
    }
    lua_pop(L, 1);
    return 0;
}

lua_State *tool_lua_new(kl_err *err)
{
    lua_State *L = luaL_newstate();
    if (!L) {
        kl_err_set(err, KL_ENOMEM, "out of memory creating a Lua state");
        return NULL;
    }
    luaL_openlibs(L);
    lua_pushcfunction(L, preload_luamods);
    if (lua_pcall(L, 0, 0, 0) != LUA_OK) {
        kl_err_set(err, KL_EINVAL, "loading klua's modules: %s", lua_tostring(L, -1));
        lua_close(L);
        return NULL;
    }
    return L;
}

static void push_json_string(lua_State *L, const json_doc *d, int tok)
{
    const json_tok *t = &d->toks[tok];
    if (!t->escaped) {
        lua_pushlstring(L, d->src + t->start, t->end - t->start);
        return;
    }
    kl_buf b = KL_BUF_INIT;
    if (json_str_append(d, tok, &b) != 0 || kl_buf_failed(&b)) {
        kl_buf_free(&b);
        luaL_error(L, "out of memory decoding a JSON string");
        return;
    }
    lua_pushlstring(L, b.data ? b.data : "", b.len);
    kl_buf_free(&b);
}

void tool_lua_push_json(lua_State *L, const json_doc *d, int tok)
{
    const json_tok *t = &d->toks[tok];
    luaL_checkstack(L, 3, "JSON nesting");
    switch (t->type) {
    case JSON_NULL: lua_pushnil(L); break;
    case JSON_FALSE: lua_pushboolean(L, 0); break;
    case JSON_TRUE: lua_pushboolean(L, 1); break;
    case JSON_STRING: push_json_string(L, d, tok); break;
    case JSON_NUMBER: {
        int64_t i;
        if (json_get_int64(d, tok, &i) == 0) {
            lua_pushinteger(L, (lua_Integer)i);
        } else {
            char num[64];
            size_t n = t->end - t->start;
            if (n >= sizeof num)
                n = sizeof num - 1;
            memcpy(num, d->src + t->start, n);
            num[n] = '\0';
            lua_pushnumber(L, strtod(num, NULL));
        }
        break;
    }
    case JSON_ARRAY: {
        lua_createtable(L, (int)t->size, 0); /* [arr] */
        lua_Integer i = 1;
        for (int e = json_first(d, tok); e >= 0; e = json_next(d, e)) {
            tool_lua_push_json(L, d, e); /* [arr, v] */
            if (lua_isnil(L, -1)) {
                lua_pop(L, 1);
                lua_pushboolean(L, 0); /* keep the sequence dense */
            }
            lua_rawseti(L, -2, i++); /* [arr] */
        }
        break;
    }
    case JSON_OBJECT: {
        lua_createtable(L, 0, (int)t->size); /* [obj] */
        for (int k = json_first(d, tok); k >= 0; k = json_next(d, k + 1)) {
            push_json_string(L, d, k);         /* [obj, key] */
            tool_lua_push_json(L, d, k + 1);   /* [obj, key, value] */
            lua_rawset(L, -3);                 /* [obj] */
        }
        break;
    }
    default: lua_pushnil(L); break;
    }
}

/* A plain scalar typed as YAML 1.2's core schema does. */
static void push_plain_scalar(lua_State *L, const char *s, size_t n)
{
    if (n == 0 || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") ||
        !strcmp(s, "NULL")) {
        lua_pushnil(L);
        return;
    }
    if (!strcmp(s, "true") || !strcmp(s, "True") || !strcmp(s, "TRUE")) {
        lua_pushboolean(L, 1);
        return;
    }
    if (!strcmp(s, "false") || !strcmp(s, "False") || !strcmp(s, "FALSE")) {
        lua_pushboolean(L, 0);
        return;
    }
    /* lua_stringtonumber accepts what YAML's int and float patterns accept
     * (and hex, which the core schema has too); it must consume all of s. */
    if (strspn(s, "+-0123456789.eExXaAbBcCdDfF") == n && lua_stringtonumber(L, s) == n + 1)
        return;
    lua_pushlstring(L, s, n);
}

typedef struct ydoc {
    lua_State *L;
    yaml_document_t *doc;
    const char *path;
    kl_err *err;
    size_t nodes_left;   /* aliases can make a small file expand without end */
} ydoc;

static int push_node(ydoc *y, yaml_node_t *n, int depth)
{
    lua_State *L = y->L;
    if (depth > JSON_MAX_DEPTH)
        return kl_err_set(y->err, KL_EINVAL, "%s:%lu: nested too deeply", y->path,
                          (unsigned long)n->start_mark.line + 1);
    if (y->nodes_left-- == 0)
        return kl_err_set(y->err, KL_EINVAL,
                          "%s:%lu: more than %d values (aliases repeating each other?)",
                          y->path, (unsigned long)n->start_mark.line + 1, TOOL_YAML_MAX_VALUES);
    luaL_checkstack(L, 3, "YAML nesting");
    switch (n->type) {
    case YAML_SCALAR_NODE: {
        const char *s = (const char *)n->data.scalar.value;
        size_t len = n->data.scalar.length;
        if (n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE)
            push_plain_scalar(L, s, len);
        else
            lua_pushlstring(L, s, len);
        return 0;
    }
    case YAML_SEQUENCE_NODE: {
        lua_newtable(L); /* [arr] */
        lua_Integer i = 1;
        for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top;
             it++) {
            if (push_node(y, yaml_document_get_node(y->doc, *it), depth + 1) != 0) {
                lua_pop(L, 1);
                return -1;
            }
            if (lua_isnil(L, -1)) {
                lua_pop(L, 1);
                lua_pushboolean(L, 0);
            }
            lua_rawseti(L, -2, i++); /* [arr] */
        }
        return 0;
    }
    case YAML_MAPPING_NODE: {
        lua_newtable(L); /* [map] */
        for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top;
             p++) {
            yaml_node_t *k = yaml_document_get_node(y->doc, p->key);
            if (!k || k->type != YAML_SCALAR_NODE) {
                lua_pop(L, 1);
                return kl_err_set(y->err, KL_EINVAL, "%s:%lu: a mapping key is not a scalar",
                                  y->path, (unsigned long)n->start_mark.line + 1);
            }
            lua_pushlstring(L, (const char *)k->data.scalar.value, k->data.scalar.length);
            if (push_node(y, yaml_document_get_node(y->doc, p->value), depth + 1) != 0) {
                lua_pop(L, 2);
                return -1;
            }
            lua_rawset(L, -3); /* [map] */
        }
        return 0;
    }
    default:
        lua_pushnil(L);
        return 0;
    }
}

int tool_lua_push_yaml_file(lua_State *L, const char *path, kl_err *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return kl_err_set(err, KL_EIO, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && st.st_size > TOOL_YAML_MAX_BYTES) {
        fclose(f);
        return kl_err_set(err, KL_EINVAL, "%s: %lld bytes, more than the %d a YAML file may have",
                          path, (long long)st.st_size, TOOL_YAML_MAX_BYTES);
    }
    size_t values_left = TOOL_YAML_MAX_VALUES;
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser)) {
        fclose(f);
        return kl_err_set(err, KL_ENOMEM, "out of memory starting the YAML parser");
    }
    yaml_parser_set_input_file(&parser, f);
    lua_newtable(L); /* [docs] */
    lua_Integer i = 1;
    int rc = 0;
    for (;;) {
        yaml_document_t doc;
        if (!yaml_parser_load(&parser, &doc)) {
            rc = kl_err_set(err, KL_EINVAL, "%s:%lu: %s", path,
                            (unsigned long)parser.problem_mark.line + 1,
                            parser.problem ? parser.problem : "malformed YAML");
            break;
        }
        yaml_node_t *root = yaml_document_get_root_node(&doc);
        if (!root) {
            yaml_document_delete(&doc);
            break; /* end of stream */
        }
        ydoc y = {L, &doc, path, err, values_left};
        rc = push_node(&y, root, 0);
        values_left = y.nodes_left;
        yaml_document_delete(&doc);
        if (rc != 0)
            break;
        if (lua_isnil(L, -1))
            lua_pop(L, 1); /* an empty document between two --- */
        else
            lua_rawseti(L, -2, i++);
    }
    yaml_parser_delete(&parser);
    fclose(f);
    if (rc != 0)
        lua_pop(L, 1);
    return rc;
}

int tool_lua_call(lua_State *L, const char *module, const char *fn, int nargs, int nres,
                  kl_err *err)
{
    lua_getglobal(L, "require");    /* [args..., require] */
    lua_pushstring(L, module);
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
        kl_err_set(err, KL_EINVAL, "%s", lua_tostring(L, -1));
        lua_pop(L, 1 + nargs);
        return -1;
    }
    lua_getfield(L, -1, fn);        /* [args..., mod, fn] */
    lua_remove(L, -2);              /* [args..., fn] */
    lua_insert(L, -1 - nargs);      /* [fn, args...] */
    if (lua_pcall(L, nargs, nres, 0) != LUA_OK) {
        kl_err_set(err, KL_EINVAL, "%s", lua_tostring(L, -1));
        lua_pop(L, 1);
        return -1;
    }
    return 0;
}

/* mkdir -p of the folder part of path (everything before the last '/'). */
static int mkdir_parents(const char *path, kl_err *err)
{
    kl_buf b = KL_BUF_INIT;
    kl_buf_puts(&b, path);
    if (kl_buf_failed(&b))
        return kl_err_set(err, KL_ENOMEM, "out of memory");
    int rc = 0;
    char *last = strrchr(b.data, '/');
    for (char *p = b.data + 1; last && p <= last && rc == 0; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(b.data, 0777) != 0 && errno != EEXIST)
            rc = kl_err_set(err, KL_EIO, "creating %s: %s", b.data, strerror(errno));
        *p = '/';
    }
    kl_buf_free(&b);
    return rc;
}

/* Write data to path through a temporary file beside it, renamed into place. */
static int write_file(const char *path, const char *data, size_t len, kl_err *err)
{
    kl_buf tmp = KL_BUF_INIT;
    kl_buf_printf(&tmp, "%s.tmp%ld", path, (long)getpid());
    if (kl_buf_failed(&tmp))
        return kl_err_set(err, KL_ENOMEM, "out of memory");
    int rc = -1;
    FILE *f = fopen(tmp.data, "wb");
    if (!f) {
        kl_err_set(err, KL_EIO, "%s: %s", tmp.data, strerror(errno));
        goto out;
    }
    size_t w = fwrite(data, 1, len, f);
    int cr = fclose(f);
    if (w != len || cr != 0 || rename(tmp.data, path) != 0) {
        kl_err_set(err, KL_EIO, "writing %s: %s", path, strerror(errno));
        remove(tmp.data);
        goto out;
    }
    rc = 0;
out:
    kl_buf_free(&tmp);
    return rc;
}

static int bad_rel_path(const char *p)
{
    if (!*p || p[0] == '/' || strstr(p, "//"))
        return 1;
    for (const char *s = p; s; s = strchr(s, '/')) {
        if (*s == '/')
            s++;
        if (!strncmp(s, "..", 2) && (s[2] == '/' || s[2] == '\0'))
            return 1;
    }
    return 0;
}

int tool_lua_write_files(lua_State *L, const char *dir, int no_clobber, int *nfiles,
                         kl_err *err)
{
    int files = lua_gettop(L);
    lua_getglobal(L, "table");   /* [files, table] */
    lua_getfield(L, -1, "sort"); /* [files, table, sort] */
    lua_newtable(L);             /* [files, table, sort, names] */
    lua_Integer n = 0;
    lua_pushnil(L);
    while (lua_next(L, files)) {
        lua_pop(L, 1);
        lua_pushvalue(L, -1);
        lua_rawseti(L, -3, ++n);
    }
    lua_pushvalue(L, -1);        /* [files, table, sort, names, names] */
    lua_insert(L, -3);           /* [files, table, names, sort, names] */
    int rc = 0;
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) { /* [files, table, names] */
        lua_settop(L, files - 1);
        return kl_err_set(err, KL_EINVAL, "file names must be strings");
    }
    kl_buf path = KL_BUF_INIT;
    for (int pass = no_clobber ? 0 : 1; pass < 2 && rc == 0; pass++) {
        for (lua_Integer i = 1; i <= n && rc == 0; i++) {
            lua_rawgeti(L, -1, i);          /* [..., names, name] */
            lua_pushvalue(L, -1);
            lua_gettable(L, files);         /* [..., names, name, text] */
            const char *name = lua_tostring(L, -2);
            size_t len;
            const char *text = lua_tolstring(L, -1, &len);
            kl_buf_reset(&path);
            kl_buf_printf(&path, "%s/%s", dir, name ? name : "");
            if (!name || !text || bad_rel_path(name))
                rc = kl_err_set(err, KL_EINVAL, "a generated file has a bad name or text");
            else if (kl_buf_failed(&path))
                rc = kl_err_set(err, KL_ENOMEM, "out of memory");
            else if (pass == 0 && access(path.data, F_OK) == 0)
                rc = kl_err_set(err, KL_EINVAL, "%s exists already; klua init writes only new files",
                                path.data);
            else if (pass == 1 && (mkdir_parents(path.data, err) != 0 ||
                                   write_file(path.data, text, len, err) != 0))
                rc = -1;
            lua_pop(L, 2);
        }
    }
    kl_buf_free(&path);
    lua_settop(L, files - 1);
    if (rc == 0)
        *nfiles = (int)n;
    return rc;
}
