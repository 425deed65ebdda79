/* store_arena.c - the memory a store's objects live in (store_arena.h).
 *
 * Provides: store_arena_* (store_arena.h).
 * Uses: mmap. With AddressSanitizer, released pieces are poisoned (past
 * their first PIECE_HEADER bytes, which the owner reads to walk a block),
 * so a stale pointer into the cache is caught as it would be with malloc.
 *
 * A block starts with its header; pieces follow, bumped from `used`. Only
 * the block being filled (a->cur) takes new pieces: a freed piece's space
 * comes back when its whole block does (the owner moves the survivors of
 * sparse blocks out, see store.c), so there is no free list to fragment.
 */
#include "store_arena.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define POISON(p, n) ASAN_POISON_MEMORY_REGION(p, n)
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define POISON(p, n) ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

#define PIECE_HEADER STORE_ARENA_PIECE_HEADER

struct store_arena_block {
    store_arena *arena;          /* NULL once the arena is freed */
    store_arena_block *prev, *next;
    size_t used;                 /* bytes handed out, header included */
    size_t live;                 /* bytes of pieces not released */
};

struct store_arena {
    store_arena_block *blocks;   /* every block, newest first */
    store_arena_block *cur;      /* the one being filled, or NULL */
    size_t used, live, nblocks;
};

#define HEAD (((sizeof(store_arena_block)) + 7) & ~(size_t)7)

static size_t round8(size_t n) { return (n + 7) & ~(size_t)7; }

/* A block aligned to its size: map twice the size and unmap the rest. */
static store_arena_block *block_map(store_arena *a)
{
    size_t sz = STORE_ARENA_BLOCK;
    char *p = mmap(NULL, 2 * sz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    uintptr_t at = ((uintptr_t)p + sz - 1) & ~(uintptr_t)(sz - 1);
    size_t lead = (size_t)(at - (uintptr_t)p);
    if (lead)
        munmap(p, lead);
    munmap((char *)at + sz, sz - lead);
    store_arena_block *b = (store_arena_block *)at;
    b->arena = a;
    b->prev = NULL;
    b->next = a->blocks;
    if (a->blocks)
        a->blocks->prev = b;
    a->blocks = b;
    b->used = HEAD;
    b->live = 0;
    a->used += HEAD;
    a->nblocks++;
    return b;
}

static void block_unmap(store_arena_block *b)
{
    store_arena *a = b->arena;
    if (a) {
        if (b->prev)
            b->prev->next = b->next;
        else
            a->blocks = b->next;
        if (b->next)
            b->next->prev = b->prev;
        if (a->cur == b)
            a->cur = NULL;
        a->used -= b->used;
        a->nblocks--;
    }
    /* the shadow of a poisoned piece would outlive the mapping */
    UNPOISON(b, STORE_ARENA_BLOCK);
    munmap(b, STORE_ARENA_BLOCK);
}

static store_arena_block *block_of(const void *p)
{
    return (store_arena_block *)((uintptr_t)p & ~(uintptr_t)(STORE_ARENA_BLOCK - 1));
}

store_arena *store_arena_new(void) { return calloc(1, sizeof(store_arena)); }

void store_arena_free(store_arena *a)
{
    if (!a)
        return;
    store_arena_block *b = a->blocks, *next;
    for (; b; b = next) {
        next = b->next;
        b->arena = NULL;
        if (!b->live)
            block_unmap(b);
    }
    free(a);
}

void *store_arena_alloc(store_arena *a, size_t n)
{
    n = round8(n);
    if (!n || n > STORE_ARENA_MAX_PIECE)
        return NULL;
    store_arena_block *b = a->cur;
    if (!b || STORE_ARENA_BLOCK - b->used < n) {
        if (b && !b->live) {
            block_unmap(b); /* filled, and every piece already gone */
        }
        if (!(b = block_map(a)))
            return NULL;
        a->cur = b;
    }
    char *p = (char *)b + b->used;
    b->used += n;
    b->live += n;
    a->used += n;
    a->live += n;
    return p;
}

void store_arena_release(void *p, size_t n)
{
    store_arena_block *b = block_of(p);
    n = round8(n);
    b->live -= n;
    if (b->arena)
        b->arena->live -= n;
    if (n > PIECE_HEADER)
        POISON((char *)p + PIECE_HEADER, n - PIECE_HEADER);
    if (!b->live && (!b->arena || b->arena->cur != b))
        block_unmap(b);
}

size_t store_arena_block_live(const store_arena_block *b) { return b->live; }
size_t store_arena_used(const store_arena *a) { return a->used; }
size_t store_arena_live(const store_arena *a) { return a->live; }

size_t store_arena_bytes(const store_arena *a)
{
    size_t n = 0;
    for (const store_arena_block *b = a->blocks; b; b = b->next)
        n += b->used;
    return n;
}

static int skipped(const store_arena_block *b, store_arena_block *const *skip, size_t nskip)
{
    for (size_t i = 0; i < nskip; i++)
        if (skip[i] == b)
            return 1;
    return 0;
}

store_arena_block *store_arena_sparsest(const store_arena *a, store_arena_block *const *skip,
                                        size_t nskip, char **first, char **end)
{
    store_arena_block *best = NULL;
    for (store_arena_block *b = a->blocks; b; b = b->next)
        if (b != a->cur && (!best || b->live * best->used < best->live * b->used) &&
            !skipped(b, skip, nskip))
            best = b;
    if (best) {
        *first = (char *)best + HEAD;
        *end = (char *)best + best->used;
    }
    return best;
}
