// norm_walk.h - private to the norm kernels: how a pass walks a plan.
//
// A pass keyed by statistics (moments, the input gradient's sums) or by parameters (Scaling
// and Biases gradients) sees the plan's outer dims as two sets: "block" dims, along which the
// key changes, and "row" dims, along which it does not. The inner dim is the contiguous loop;
// when the key changes along it a block owns a vector of nbuckets keys, else one. Rows of a
// block are cut into chunks of rows_per_chunk (a function of the shape only), which are the
// pool's items: item = block * nchunks + chunk. Elementwise passes use no key: one block, all
// outer dims are rows.
#ifndef ND_NORM_WALK_H
#define ND_NORM_WALK_H

#include <stddef.h>
#include <stdint.h>

#include "core/norm_kernels.h"

// Elements per chunk: large enough that a hand-off is cheap next to the work, small enough
// that a 2-core machine gets dozens of items from a 25 MB tensor.
#define ND__CHUNK_ELEMS ((int64_t)16384)
// Keyed passes whose key moves along the inner dim keep a vector of sums per chunk: bigger
// chunks mean fewer partial vectors to write and add (still dozens of chunks for 25 MB).
#define ND__CHUNK_ELEMS_VECTOR ((int64_t)65536)

enum nd__key {
    ND__KEY_NONE,
    ND__KEY_STAT,
    ND__KEY_PARAM,
};

// Offsets of one element: in the data, the statistics and the parameters.
struct nd__pos {
    int64_t x, s, p;
};

// The position k rows (of step each) further.
static inline struct nd__pos nd__pos_add(struct nd__pos pos, struct nd__pos step, int64_t k) {
    return (struct nd__pos){pos.x + k * step.x, pos.s + k * step.s, pos.p + k * step.p};
}

struct nd__dimset {
    int32_t n;
    int64_t size[ND_PLAN_MAX_DIMS];
    struct nd__pos stride[ND_PLAN_MAX_DIMS];
};

struct nd__walk {
    enum nd__key key;
    struct nd__dimset blocks, rows;
    int64_t inner;   // inner dim length
    int64_t s_inner; // statistic stride along the inner dim (0 or 1)
    int64_t p_inner; // parameter stride along the inner dim (0 or 1)
    int64_t nblocks, nrows, rows_per_chunk, nchunks;
    int64_t nbuckets; // keys per block: inner when the key changes along it, else 1
};

void nd__walk_init(struct nd__walk *w, const struct nd_norm_plan *plan, enum nd__key key);

// Doubles of partial sums the keyed pass needs: two per bucket per chunk, none when every
// block is one chunk (it then writes its sums in place).
size_t nd__walk_partial_doubles(const struct nd__walk *w);

// Scratch doubles a plan's passes use themselves (without a fine twin's share).
size_t nd__plan_own_scratch(const struct nd_norm_plan *plan);

// The offsets of block b's first element.
struct nd__pos nd__walk_block_base(const struct nd__walk *w, int64_t b);

// The key of block b's first bucket; buckets follow with stride 1.
int64_t nd__walk_block_key(const struct nd__walk *w, int64_t b);

// Calls run(ctx, first, nrows, step) for consecutive runs of rows [r0, r1) of the block at
// base: each run is a stretch of the innermost row dim, so a run's rows are `step` apart.
typedef void (*nd__run_fn)(void *ctx, struct nd__pos first, int64_t nrows, struct nd__pos step);
void nd__walk_rows(const struct nd__walk *w, struct nd__pos base, int64_t r0, int64_t r1,
                   nd__run_fn run, void *ctx);

#endif
