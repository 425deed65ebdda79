/* controller_gate.c - a gate several controllers share (see
 * controller_gate.h).
 *
 * Provides: controller_gate.
 * Uses: libc.
 */
#include "controller_gate.h"

#include <stdlib.h>

typedef struct member {
    void (*on_open)(void *ud);
    void *ud;
    struct member *next;
} member;

struct controller_gate {
    int open;
    member *members;
};

controller_gate *controller_gate_new(int open)
{
    controller_gate *g = calloc(1, sizeof *g);
    if (g)
        g->open = open;
    return g;
}

void controller_gate_set(controller_gate *g, int open)
{
    g->open = open;
    for (member *m = g->members; open && m; m = m->next)
        m->on_open(m->ud);
}

int controller_gate_is_open(const controller_gate *g) { return g->open; }

int controller_gate_join(controller_gate *g, void (*on_open)(void *ud), void *ud)
{
    member *m = calloc(1, sizeof *m);
    if (!m)
        return -1;
    m->on_open = on_open;
    m->ud = ud;
    m->next = g->members;
    g->members = m;
    return 0;
}

void controller_gate_leave(controller_gate *g, void *ud)
{
    for (member **p = &g->members; *p; p = &(*p)->next) {
        if ((*p)->ud == ud) {
            member *m = *p;
            *p = m->next;
            free(m);
            return;
        }
    }
}

void controller_gate_free(controller_gate *g)
{
    if (!g)
        return;
    while (g->members) {
        member *m = g->members;
        g->members = m->next;
        free(m);
    }
    free(g);
}
