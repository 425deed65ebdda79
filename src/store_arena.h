/* store_arena.h - the memory a store's objects live in.
 *
 * Provides: store_arena, blocks of STORE_ARENA_BLOCK bytes (mapped from the
 * kernel, aligned to their size) handing out 8-byte-aligned pieces one after
 * another. A piece's block is found from its address alone, so a piece can
 * be released without its arena at hand; a block is unmapped as soon as it
 * holds no live piece (and is not the one being filled). The arena counts
 * the bytes handed out and the bytes still live, and names the block with
 * the fewest live bytes, so that its owner can move those pieces elsewhere
 * (store.c) and let the block go.
 *
 * Why not malloc: objects are kept for hours while the short-lived
 * allocations of the same moment (work queue items, decode buffers, Lua
 * garbage) are freed within milliseconds; from one heap, those leave a hole
 * between every two objects that the kernel can never take back. Kept apart,
 * the objects pack, and the heap's holes join up.
 * Uses: nothing but libc and mmap.
 */
#ifndef KLUA_STORE_ARENA_H
#define KLUA_STORE_ARENA_H

#include <stddef.h>

#define STORE_ARENA_BLOCK ((size_t)256 * 1024)
#define STORE_ARENA_MAX_PIECE (STORE_ARENA_BLOCK / 8) /* larger: the caller mallocs */
/* A released piece's first bytes stay readable (its owner's header, which
 * says how long the piece is); the rest is poisoned under ASan. */
#define STORE_ARENA_PIECE_HEADER 88

typedef struct store_arena store_arena;
typedef struct store_arena_block store_arena_block;

store_arena *store_arena_new(void);   /* NULL when out of memory */
/* Unmaps every block without live pieces; a block still holding a piece
 * released later (a removed object its caller owns) goes with that piece. */
void store_arena_free(store_arena *a);

/* n bytes (rounded up to 8), 8-byte aligned; NULL when n is 0 or above
 * STORE_ARENA_MAX_PIECE, or memory is short. */
void *store_arena_alloc(store_arena *a, size_t n);
/* The piece p of n bytes (as allocated) is dead; its block goes once empty. */
void store_arena_release(void *p, size_t n);

/* Bytes handed out (live or dead) and still live, over every block. */
size_t store_arena_used(const store_arena *a);
size_t store_arena_live(const store_arena *a);
/* Bytes of the blocks touched so far (what the arena costs in memory). */
size_t store_arena_bytes(const store_arena *a);

/* The block with the lowest share of live bytes, other than the one being
 * filled and the nskip blocks in skip, or NULL; *first and *end bound its
 * pieces (in the order handed out). */
store_arena_block *store_arena_sparsest(const store_arena *a, store_arena_block *const *skip,
                                        size_t nskip, char **first, char **end);
/* Live bytes of b: the walk over its pieces ends when they are all moved
 * (releasing the last one unmaps b). */
size_t store_arena_block_live(const store_arena_block *b);

#endif
