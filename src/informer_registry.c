/* informer_registry.c - shared informers.
 *
 * Provides: the informer_registry_* functions of informer.h: one informer
 * per (resource, namespace, label selector, cache transform), shared among
 * controllers and counting references; it is freed at the last release.
 * Uses: informer_int (the informer's resource, namespace, selector and
 * transform), store_transform.
 */
#include "informer_int.h"

#include <stdlib.h>
#include <string.h>

typedef struct reg_entry {
    informer *inf;
    unsigned refs;
} reg_entry;

struct informer_registry {
    kube_client *client;
    reg_entry *entries;
    size_t n;
    informer_skip_cb on_skip;
    void *skip_ud;
    informer_new_cb on_new;      /* klua run --record */
    void *new_ud;
};

informer_registry *informer_registry_new(kube_client *c)
{
    informer_registry *reg = calloc(1, sizeof *reg);
    if (reg)
        reg->client = c;
    return reg;
}

void informer_registry_free(informer_registry *reg)
{
    if (!reg)
        return;
    for (size_t i = 0; i < reg->n; i++)
        informer_free(reg->entries[i].inf);
    free(reg->entries);
    free(reg);
}

static int str_same(const char *a, const char *b)
{
    return !strcmp(a ? a : "", b ? b : "");
}

informer *informer_registry_get(informer_registry *reg, const kube_resource *r, const char *ns,
                                const char *label_selector)
{
    return informer_registry_get_cached(reg, r, ns, label_selector, NULL);
}

informer *informer_registry_get_cached(informer_registry *reg, const kube_resource *r,
                                       const char *ns, const char *label_selector,
                                       const store_transform *t)
{
    static const store_transform dflt = STORE_TRANSFORM_DEFAULT;
    if (!t)
        t = &dflt;
    for (size_t i = 0; i < reg->n; i++) {
        informer *inf = reg->entries[i].inf;
        if (!strcmp(inf->res.group, r->group) && !strcmp(inf->res.version, r->version) &&
            !strcmp(inf->res.resource, r->resource) && str_same(inf->ns, ns) &&
            str_same(inf->selector, label_selector) && store_transform_same(&inf->transform, t)) {
            reg->entries[i].refs++;
            return inf;
        }
    }
    reg_entry *n = realloc(reg->entries, (reg->n + 1) * sizeof *n);
    if (!n)
        return NULL;
    reg->entries = n;
    informer *inf = informer_new(reg->client, r, ns, label_selector);
    if (!inf)
        return NULL;
    if (informer_set_transform(inf, t) != 0) {
        informer_free(inf);
        return NULL;
    }
    informer_set_skip_handler(inf, reg->on_skip, reg->skip_ud);
    if (reg->on_new)
        reg->on_new(reg->new_ud, inf);
    reg->entries[reg->n].inf = inf;
    reg->entries[reg->n].refs = 1;
    reg->n++;
    informer_start(inf);
    return inf;
}

void informer_registry_release(informer_registry *reg, informer *inf)
{
    for (size_t i = 0; i < reg->n; i++) {
        if (reg->entries[i].inf != inf)
            continue;
        if (--reg->entries[i].refs == 0) {
            informer_free(inf);
            reg->entries[i] = reg->entries[--reg->n];
        }
        return;
    }
}

void informer_registry_set_new_listener(informer_registry *reg, informer_new_cb cb, void *ud)
{
    reg->on_new = cb;
    reg->new_ud = ud;
}

void informer_registry_set_skip_handler(informer_registry *reg, informer_skip_cb cb, void *ud)
{
    reg->on_skip = cb;
    reg->skip_ud = ud;
    for (size_t i = 0; i < reg->n; i++)
        informer_set_skip_handler(reg->entries[i].inf, cb, ud);
}
