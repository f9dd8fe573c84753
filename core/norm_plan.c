// norm_plan.c - turns a batched shape and its reduce/parameter/group masks into merged dims.
#include <string.h>

#include "core/alloc.h"
#include "core/norm_kernels.h"
#include "core/norm_walk.h"

// ---- expansion and strides ----

struct plan_dim {
    int64_t size;
    bool kept;  // has its own statistic index
    bool param; // parameter arrays vary along it
};

// Splits grouped dims into (groups: kept, group size: reduced); both keep the parameter role,
// so a grouped channel dim keeps its channel index (group * size/g + position).
static enum nd_status expand_dims(const struct nd_norm_dims *dims, struct plan_dim *out,
                                  int32_t *n_out, struct nd_error *err) {
    int32_t n = 0;
    for (int32_t i = 0; i < dims->ndim; i++) {
        int64_t d = dims->size[i], g = dims->groups[i] > 0 ? dims->groups[i] : 1;
        bool reduced = dims->reduce_mask & (1u << i), param = dims->param_mask & (1u << i);
        if (d < 0)
            return nd_error_set(err, ND_STATUS_INVALID_ARGUMENT, "dimension %d is negative",
                                (int)i);
        if (g > 1 && !reduced)
            return nd_error_set_field(err, ND_STATUS_SHAPE_MISMATCH, "input",
                                      "groups on dimension %d, which is not aggregated", (int)i);
        if (g > 1 && d % g != 0)
            return nd_error_set_field(err, ND_STATUS_SHAPE_MISMATCH, "input",
                                      "dimension %d of size %lld does not split into %lld "
                                      "groups",
                                      (int)i, (long long)d, (long long)g);
        if (g > 1)
            out[n++] = (struct plan_dim){.size = g, .kept = true, .param = param};
        out[n++] = (struct plan_dim){.size = d / (g > 1 ? g : 1), .kept = !reduced, .param = param};
    }
    *n_out = n;
    return ND_STATUS_OK;
}

// Row-major strides over the kept dims (statistics) and the parameter dims (parameters).
static void assign_strides(struct nd_norm_plan *plan, const struct plan_dim *e, int32_t n) {
    int64_t acc_s = 1, acc_p = 1;
    for (int32_t i = n - 1; i >= 0; i--) {
        plan->size[i] = e[i].size;
        plan->sstride[i] = e[i].kept ? acc_s : 0;
        plan->pstride[i] = e[i].param ? acc_p : 0;
        if (e[i].kept)
            acc_s *= e[i].size;
        if (e[i].param)
            acc_p *= e[i].size;
    }
    plan->ndim = n;
    plan->nstat = acc_s;
    plan->nparam = acc_p;
}

// Drops size-1 dims and merges neighbours whose statistic and parameter strides both continue
// each other, so a (N, C, H, W) batch norm becomes (N, C, H*W) and NHWC becomes (N*H*W, C).
static void merge_dims(struct nd_norm_plan *plan) {
    int32_t n = 0;
    for (int32_t i = 0; i < plan->ndim; i++) {
        int64_t sz = plan->size[i], ss = plan->sstride[i], ps = plan->pstride[i];
        if (sz == 1 && plan->ndim > 1)
            continue;
        if (n > 0 && plan->sstride[n - 1] == ss * sz && plan->pstride[n - 1] == ps * sz) {
            plan->size[n - 1] *= sz;
            plan->sstride[n - 1] = ss;
            plan->pstride[n - 1] = ps;
            continue;
        }
        plan->size[n] = sz;
        plan->sstride[n] = ss;
        plan->pstride[n] = ps;
        n++;
    }
    if (n == 0) { // every dim had size 1: one element
        plan->size[0] = 1;
        plan->sstride[0] = 0;
        plan->pstride[0] = 0;
        n = 1;
    }
    plan->ndim = n;
}

// ---- public ----

// Decides whether a grouped plan runs on its fine twin: one grouped dim, whose in-group part is
// the innermost (short, strided) dim of the coarse plan, and other reduced values beside the
// group's channels. Without those ((N, C) groups) each (example, group) is one contiguous row,
// which the per-row path reduces fast, while the fine twin would keep a statistic per element.
static void plan_fine(struct nd_norm_plan *plan, const struct nd_norm_dims *dims) {
    int32_t g = -1, ngrouped = 0;
    for (int32_t i = 0; i < dims->ndim; i++)
        if (dims->groups[i] > 1) {
            g = i;
            ngrouped++;
        }
    int32_t last = plan->ndim - 1;
    if (ngrouped != 1 || plan->sstride[last] != 0 || plan->size[last] >= 16)
        return;
    int64_t fold_group = dims->size[g] / dims->groups[g];
    if (plan->count <= fold_group)
        return;
    int64_t tail = 1; // kept elements after the grouped dim
    for (int32_t i = g + 1; i < dims->ndim; i++)
        if (!(dims->reduce_mask & (1u << i)))
            tail *= dims->size[i];
    plan->use_fine = true;
    plan->fine_dims = *dims;
    plan->fine_dims.reduce_mask &= ~(1u << g);
    plan->fine_dims.groups[g] = 1;
    plan->fold_group = fold_group;
    plan->fold_tail = tail;
    plan->fine_nstat = plan->nstat * plan->fold_group;
}

enum nd_status nd_norm_plan_build(struct nd_norm_plan *plan, const struct nd_norm_dims *dims,
                                  struct nd_error *err) {
    if (!plan || !dims)
        return nd_error_set(err, ND_STATUS_INVALID_ARGUMENT, "nd_norm_plan_build: NULL argument");
    if (dims->ndim < 1 || dims->ndim > ND_MAX_DIMS)
        return nd_error_set(err, ND_STATUS_INVALID_ARGUMENT, "rank %d is not in 1..%d",
                            (int)dims->ndim, ND_MAX_DIMS);
    struct plan_dim e[ND_PLAN_MAX_DIMS];
    int32_t n = 0;
    enum nd_status st = expand_dims(dims, e, &n, err);
    if (st != ND_STATUS_OK)
        return st;
    int64_t numel = 1;
    for (int32_t i = 0; i < n; i++)
        if (!nd_count_mul(numel, e[i].size, &numel))
            return nd_error_set_field(err, ND_STATUS_LIMIT_EXCEEDED, "input",
                                      "tensor has too many elements");
    memset(plan, 0, sizeof *plan);
    assign_strides(plan, e, n);
    merge_dims(plan);
    plan->numel = numel;
    plan->count = plan->nstat > 0 ? numel / plan->nstat : 0;
    plan->param_is_stat = true;
    for (int32_t i = 0; i < plan->ndim; i++)
        if (plan->sstride[i] != plan->pstride[i])
            plan->param_is_stat = false;
    plan_fine(plan, dims);
    return ND_STATUS_OK;
}

size_t nd__plan_own_scratch(const struct nd_norm_plan *plan) {
    struct nd__walk by_stat, by_param;
    nd__walk_init(&by_stat, plan, ND__KEY_STAT);
    nd__walk_init(&by_param, plan, ND__KEY_PARAM);
    size_t partials = nd__walk_partial_doubles(&by_stat);
    size_t p2 = nd__walk_partial_doubles(&by_param);
    if (p2 > partials)
        partials = p2;
    size_t keys = (size_t)(plan->nstat > plan->nparam ? plan->nstat : plan->nparam);
    // partials, two double sums per key, the moments' shifts, two float factors per statistic
    return partials + 2 * keys + 2 * (size_t)plan->nstat;
}

size_t nd_norm_scratch_doubles(const struct nd_norm_plan *plan) {
    size_t own = nd__plan_own_scratch(plan);
    if (!plan->use_fine)
        return own;
    struct nd_norm_plan fine;
    if (nd_norm_plan_build(&fine, &plan->fine_dims, NULL) != ND_STATUS_OK)
        return own;
    // the fine plan's own scratch, then its per-statistic doubles (mean, var) and floats (a, c)
    size_t need = nd__plan_own_scratch(&fine) + 3 * (size_t)fine.nstat;
    return need > own ? need : own;
}

// ---- walking a plan (norm_walk.h) ----

static void dimset_push(struct nd__dimset *set, int64_t size, struct nd__pos stride) {
    set->size[set->n] = size;
    set->stride[set->n] = stride;
    set->n++;
}

void nd__walk_init(struct nd__walk *w, const struct nd_norm_plan *plan, enum nd__key key) {
    memset(w, 0, sizeof *w);
    w->key = key;
    int32_t last = plan->ndim - 1;
    int64_t xstride = plan->size[last];
    w->nblocks = 1;
    w->nrows = 1;
    // Walk outward so each dim knows its data stride; push into the sets in reverse, then flip.
    struct nd__dimset blocks = {0}, rows = {0};
    for (int32_t i = last - 1; i >= 0; i--) {
        struct nd__pos stride = {xstride, plan->sstride[i], plan->pstride[i]};
        int64_t kstride = key == ND__KEY_STAT    ? plan->sstride[i]
                          : key == ND__KEY_PARAM ? plan->pstride[i]
                                                 : 0;
        if (kstride != 0) {
            dimset_push(&blocks, plan->size[i], stride);
            w->nblocks *= plan->size[i];
        } else {
            dimset_push(&rows, plan->size[i], stride);
            w->nrows *= plan->size[i];
        }
        xstride *= plan->size[i];
    }
    for (int32_t i = 0; i < blocks.n; i++)
        dimset_push(&w->blocks, blocks.size[blocks.n - 1 - i], blocks.stride[blocks.n - 1 - i]);
    for (int32_t i = 0; i < rows.n; i++)
        dimset_push(&w->rows, rows.size[rows.n - 1 - i], rows.stride[rows.n - 1 - i]);
    w->inner = plan->size[last];
    w->s_inner = plan->sstride[last];
    w->p_inner = plan->pstride[last];
    int64_t kinner = key == ND__KEY_STAT ? w->s_inner : key == ND__KEY_PARAM ? w->p_inner : 0;
    w->nbuckets = kinner ? w->inner : 1;
    int64_t chunk = w->nbuckets > 1 ? ND__CHUNK_ELEMS_VECTOR : ND__CHUNK_ELEMS;
    int64_t per = w->inner > 0 ? chunk / w->inner : 1;
    w->rows_per_chunk = per > 0 ? per : 1;
    w->nchunks = (w->nrows + w->rows_per_chunk - 1) / w->rows_per_chunk;
    if (w->nchunks < 1)
        w->nchunks = 1;
}

size_t nd__walk_partial_doubles(const struct nd__walk *w) {
    if (w->nchunks <= 1)
        return 0;
    return 2 * (size_t)w->nblocks * (size_t)w->nchunks * (size_t)w->nbuckets;
}

struct nd__pos nd__walk_block_base(const struct nd__walk *w, int64_t b) {
    struct nd__pos pos = {0, 0, 0};
    for (int32_t i = w->blocks.n - 1; i >= 0; i--) {
        int64_t coord = b % w->blocks.size[i];
        b /= w->blocks.size[i];
        pos.x += coord * w->blocks.stride[i].x;
        pos.s += coord * w->blocks.stride[i].s;
        pos.p += coord * w->blocks.stride[i].p;
    }
    return pos;
}

int64_t nd__walk_block_key(const struct nd__walk *w, int64_t b) {
    struct nd__pos pos = nd__walk_block_base(w, b);
    return w->key == ND__KEY_PARAM ? pos.p : pos.s;
}

void nd__walk_rows(const struct nd__walk *w, struct nd__pos base, int64_t r0, int64_t r1,
                   nd__run_fn run, void *ctx) {
    const struct nd__dimset *rows = &w->rows;
    if (rows->n == 0) { // a single row
        if (r0 < r1)
            run(ctx, base, 1, (struct nd__pos){0, 0, 0});
        return;
    }
    int64_t idx[ND_PLAN_MAX_DIMS];
    struct nd__pos pos = base;
    int64_t r = r0;
    for (int32_t i = rows->n - 1; i >= 0; i--) { // mixed-radix digits of r0
        idx[i] = r % rows->size[i];
        r /= rows->size[i];
        pos.x += idx[i] * rows->stride[i].x;
        pos.s += idx[i] * rows->stride[i].s;
        pos.p += idx[i] * rows->stride[i].p;
    }
    int32_t last = rows->n - 1;
    for (r = r0; r < r1;) {
        int64_t len = rows->size[last] - idx[last];
        if (len > r1 - r)
            len = r1 - r;
        run(ctx, pos, len, rows->stride[last]);
        r += len;
        // Advance by len along the innermost row dim, carrying into the outer ones.
        idx[last] += len;
        pos.x += len * rows->stride[last].x;
        pos.s += len * rows->stride[last].s;
        pos.p += len * rows->stride[last].p;
        for (int32_t i = last; i > 0 && idx[i] == rows->size[i]; i--) {
            idx[i] = 0;
            pos.x -= rows->size[i] * rows->stride[i].x;
            pos.s -= rows->size[i] * rows->stride[i].s;
            pos.p -= rows->size[i] * rows->stride[i].p;
            idx[i - 1]++;
            pos.x += rows->stride[i - 1].x;
            pos.s += rows->stride[i - 1].s;
            pos.p += rows->stride[i - 1].p;
        }
    }
}
