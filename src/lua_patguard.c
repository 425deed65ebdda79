/* lua_patguard.c - the pattern cost probe (see lua_patguard.h).
 *
 * Lua's matcher (lstrlib.c) backtracks: ".-.-.-x" over a long subject takes
 * time exponential in the pattern, all inside one C call the count hook
 * cannot interrupt. Before a pattern call runs, this probe walks the same
 * backtracking search (written from the Lua 5.4 manual's pattern rules and
 * lstrlib's search order) counting steps, and gives up past a limit; then
 * the call is refused. A malformed pattern stops the probe quietly: the
 * real call raises its own error at the same point.
 * Uses: lua_host.h (the limits), Lua.
 */
#include "lua_patguard.h"

#include "lua_host.h"

#include <ctype.h>
#include <lauxlib.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#define MAX_CAPTURES 32          /* LUA_MAXCAPTURES of lstrlib.c */
#define MATCH_DEPTH 200          /* MAXCCALLS of lstrlib.c */

enum { PROBE_OK, PROBE_COSTLY, PROBE_MALFORMED };
#define CAP_UNFINISHED (-1)
#define CAP_POSITION (-2)

typedef struct probe {
    const char *src_init, *src_end, *p_end;
    unsigned long steps, limit;
    int depth, level, state;
    struct {
        const char *init;
        ptrdiff_t len;
    } cap[MAX_CAPTURES];
} probe;

static int probe_step(probe *ms, unsigned long n)
{
    ms->steps += n;
    if (ms->steps > ms->limit && ms->state == PROBE_OK)
        ms->state = PROBE_COSTLY;
    return ms->state == PROBE_OK;
}

static int probe_class(int c, int cl)
{
    int res;
    switch (tolower(cl)) {
    case 'a': res = isalpha(c); break;
    case 'c': res = iscntrl(c); break;
    case 'd': res = isdigit(c); break;
    case 'g': res = isgraph(c); break;
    case 'l': res = islower(c); break;
    case 'p': res = ispunct(c); break;
    case 's': res = isspace(c); break;
    case 'u': res = isupper(c); break;
    case 'w': res = isalnum(c); break;
    case 'x': res = isxdigit(c); break;
    default: return cl == c;
    }
    if (isupper(cl))
        res = !res;
    return res != 0;
}

/* End of the single-character class at p, or NULL if malformed. */
static const char *probe_class_end(probe *ms, const char *p)
{
    char c = *p++;
    if (c == '%')
        return p >= ms->p_end ? NULL : p + 1;
    if (c == '[') {
        if (*p == '^')
            p++;
        do {
            if (p >= ms->p_end)
                return NULL;
            c = *p++;
            if (c == '%' && p < ms->p_end)
                p++;
        } while (*p != ']');
        return p + 1;
    }
    return p;
}

static int probe_bracket(int c, const char *p, const char *ec)
{
    int sig = 1;
    if (p[1] == '^') {
        sig = 0;
        p++;
    }
    while (++p < ec) {
        if (*p == '%') {
            p++;
            if (probe_class(c, (unsigned char)*p))
                return sig;
        } else if (p[1] == '-' && p + 2 < ec) {
            p += 2;
            if ((unsigned char)p[-2] <= c && c <= (unsigned char)*p)
                return sig;
        } else if ((unsigned char)*p == c) {
            return sig;
        }
    }
    return !sig;
}

static int probe_single(probe *ms, const char *s, const char *p, const char *ep)
{
    if (s >= ms->src_end)
        return 0;
    int c = (unsigned char)*s;
    switch (*p) {
    case '.': return 1;
    case '%': return probe_class(c, (unsigned char)p[1]);
    case '[': return probe_bracket(c, p, ep - 1);
    default: return (unsigned char)*p == c;
    }
}

static const char *probe_match(probe *ms, const char *s, const char *p);

static const char *probe_max_expand(probe *ms, const char *s, const char *p, const char *ep)
{
    ptrdiff_t i = 0;
    while (probe_single(ms, s + i, p, ep)) {
        i++;
        if (!probe_step(ms, 1))
            return NULL;
    }
    for (; i >= 0; i--) {
        const char *r = probe_match(ms, s + i, ep + 1);
        if (r || ms->state != PROBE_OK)
            return r;
    }
    return NULL;
}

static const char *probe_min_expand(probe *ms, const char *s, const char *p, const char *ep)
{
    for (;;) {
        const char *r = probe_match(ms, s, ep + 1);
        if (r || ms->state != PROBE_OK)
            return r;
        if (!probe_single(ms, s, p, ep))
            return NULL;
        s++;
    }
}

static const char *probe_capture(probe *ms, const char *s, const char *p, ptrdiff_t what)
{
    if (ms->level >= MAX_CAPTURES) {
        ms->state = PROBE_MALFORMED;
        return NULL;
    }
    ms->cap[ms->level].init = s;
    ms->cap[ms->level].len = what;
    ms->level++;
    const char *r = probe_match(ms, s, p);
    if (!r)
        ms->level--;
    return r;
}

static const char *probe_end_capture(probe *ms, const char *s, const char *p)
{
    int l = ms->level - 1;
    while (l >= 0 && ms->cap[l].len != CAP_UNFINISHED)
        l--;
    if (l < 0) {
        ms->state = PROBE_MALFORMED;
        return NULL;
    }
    ms->cap[l].len = s - ms->cap[l].init;
    const char *r = probe_match(ms, s, p);
    if (!r)
        ms->cap[l].len = CAP_UNFINISHED;
    return r;
}

static const char *probe_balance(probe *ms, const char *s, const char *p)
{
    if (p >= ms->p_end - 1) {
        ms->state = PROBE_MALFORMED;
        return NULL;
    }
    if (s >= ms->src_end || *s != *p)
        return NULL;
    int b = *p, e = p[1], cont = 1;
    while (++s < ms->src_end) {
        if (!probe_step(ms, 1))
            return NULL;
        if (*s == e) {
            if (--cont == 0)
                return s + 1;
        } else if (*s == b) {
            cont++;
        }
    }
    return NULL;
}

static const char *probe_backref(probe *ms, const char *s, int l)
{
    l -= '1';
    if (l < 0 || l >= ms->level || ms->cap[l].len == CAP_UNFINISHED) {
        ms->state = PROBE_MALFORMED;
        return NULL;
    }
    size_t len = (size_t)ms->cap[l].len;
    if (!probe_step(ms, len / 16))
        return NULL;
    if ((size_t)(ms->src_end - s) >= len && memcmp(ms->cap[l].init, s, len) == 0)
        return s + len;
    return NULL;
}

static const char *probe_match(probe *ms, const char *s, const char *p)
{
    if (ms->depth++ >= MATCH_DEPTH) {
        ms->state = PROBE_MALFORMED;   /* "pattern too complex": Lua raises too */
        return NULL;
    }
    for (;;) {
        if (!probe_step(ms, 1)) {
            s = NULL;
            break;
        }
        if (p == ms->p_end)
            break;
        const char *ep;
        if (*p == '(') {
            s = p[1] == ')' ? probe_capture(ms, s, p + 2, CAP_POSITION)
                            : probe_capture(ms, s, p + 1, CAP_UNFINISHED);
            break;
        }
        if (*p == ')') {
            s = probe_end_capture(ms, s, p + 1);
            break;
        }
        if (*p == '$' && p + 1 == ms->p_end) {
            s = s == ms->src_end ? s : NULL;
            break;
        }
        if (*p == '%' && p[1] == 'b') {
            s = probe_balance(ms, s, p + 2);
            if (s) {
                p += 4;
                continue;
            }
            break;
        }
        if (*p == '%' && p[1] == 'f') {
            p += 2;
            if (*p != '[' || !(ep = probe_class_end(ms, p))) {
                ms->state = PROBE_MALFORMED;
                s = NULL;
                break;
            }
            int prev = s == ms->src_init ? 0 : (unsigned char)s[-1];
            int cur = s < ms->src_end ? (unsigned char)*s : 0;
            if (!probe_bracket(prev, p, ep - 1) && probe_bracket(cur, p, ep - 1)) {
                p = ep;
                continue;
            }
            s = NULL;
            break;
        }
        if (*p == '%' && isdigit((unsigned char)p[1])) {
            s = probe_backref(ms, s, (unsigned char)p[1]);
            if (s) {
                p += 2;
                continue;
            }
            break;
        }
        if (!(ep = probe_class_end(ms, p))) {
            ms->state = PROBE_MALFORMED;
            s = NULL;
            break;
        }
        if (!probe_single(ms, s, p, ep)) {
            if (*ep == '*' || *ep == '?' || *ep == '-') {
                p = ep + 1;
                continue;
            }
            s = NULL;
            break;
        }
        if (*ep == '?') {
            const char *r = probe_match(ms, s + 1, ep + 1);
            if (r || ms->state != PROBE_OK) {
                s = r;
                break;
            }
            p = ep + 1;
            continue;
        }
        if (*ep == '+') {
            s = probe_max_expand(ms, s + 1, p, ep);
            break;
        }
        if (*ep == '*') {
            s = probe_max_expand(ms, s, p, ep);
            break;
        }
        if (*ep == '-') {
            s = probe_min_expand(ms, s, p, ep);
            break;
        }
        s++;
        p = ep;
    }
    ms->depth--;
    return ms->state == PROBE_OK ? s : NULL;
}

/* One match attempt at s (lstrlib's reprepstate + match). */
static const char *probe_try(probe *ms, const char *s, const char *p)
{
    ms->level = 0;
    ms->depth = 0;
    return probe_match(ms, s, p);
}

/* Lua 5.4's posrelatI: a 1-based start from an optional argument. */
static size_t probe_init(lua_Integer pos, size_t len)
{
    if (pos > 0)
        return (size_t)pos;
    if (pos == 0 || pos < -(lua_Integer)len)
        return 1;
    return len + (size_t)pos + 1;
}


/* Refuse (raise) when the search `kind` of pattern p over s would take
 * more than the step limit. The arguments are those of the string
 * function; anything invalid is left for the real function to report. */
void lua_patguard_check(lua_State *L, int kind, const char *fname, lua_patguard_charge_fn charge)
{
    size_t ls, lp;
    const char *s = lua_tolstring(L, 1, &ls);
    const char *p = lua_tolstring(L, 2, &lp);
    if (!s || !p)
        return;
    lua_Integer pos = 1;
    if (kind != LUA_PATGUARD_GSUB && !lua_isnoneornil(L, 3)) {
        int ok;
        pos = lua_tointegerx(L, 3, &ok);
        if (!ok)
            return;
    }
    size_t init = probe_init(pos, ls);
    if (init > ls + 1) {
        if (kind != LUA_PATGUARD_GMATCH)
            return;
        init = ls + 1;
    }
    if (kind == LUA_PATGUARD_FIND && (lua_toboolean(L, 4) || !strpbrk(p, "^$*+?.([%-") ||
                                strlen(p) != lp)) {
        /* A plain search: memchr + memcmp at each position. (A pattern with
         * an embedded NUL is treated the same, which only overestimates.) */
        size_t rest = ls - (init - 1);
        unsigned long long work = lp > 0 && lp <= rest ? (unsigned long long)(rest - lp + 1) * lp
                                                       : 0;
        int refused = work > LUA_HOST_PLAIN_FIND_MAX;
        charge(L, (unsigned long)((refused ? LUA_HOST_PLAIN_FIND_MAX : work) / 16), refused);
        if (refused)
            luaL_error(L, "%s: a plain search for %d bytes in %d bytes is more work than klua "
                          "allows in one call", fname, (int)lp, (int)rest);
        return;
    }
    probe ms = {0};
    ms.src_init = s;
    ms.src_end = s + ls;
    ms.limit = LUA_HOST_PATTERN_STEPS;
    int anchor = kind != LUA_PATGUARD_GMATCH && *p == '^';
    if (anchor) {
        p++;
        lp--;
    }
    ms.p_end = p + lp;
    const char *src = s + init - 1, *last = NULL;
    if (kind == LUA_PATGUARD_FIND || kind == LUA_PATGUARD_MATCH) {
        do {
            if (probe_try(&ms, src, p) || ms.state != PROBE_OK)
                break;
        } while (src++ < ms.src_end && !anchor);
    } else {
        lua_Integer max_n = (lua_Integer)ls + 1;
        if (kind == LUA_PATGUARD_GSUB && !lua_isnoneornil(L, 4)) {
            int ok;
            max_n = lua_tointegerx(L, 4, &ok);
            if (!ok)
                return;
        }
        for (lua_Integer n = 0; n < max_n && ms.state == PROBE_OK;) {
            const char *e = probe_try(&ms, src, p);
            if (e && e != last) {
                n++;
                src = last = e;
            } else if (src < ms.src_end) {
                src++;
            } else {
                break;
            }
            if (anchor)
                break;
        }
    }
    charge(L, ms.steps, ms.state == PROBE_COSTLY);
    if (ms.state == PROBE_COSTLY) {
        char shown[64];
        snprintf(shown, sizeof shown, "%s", lua_tostring(L, 2));
        luaL_error(L, "%s: the pattern \"%s\" needs more than %d matching steps on this "
                      "%d-byte subject; simplify the pattern or shorten the subject",
                   fname, shown, (int)LUA_HOST_PATTERN_STEPS, (int)ls);
    }
}
