// norm_kernels.c - the five passes of norm_kernels.h over a plan.
//
// Each pass is an item function for the pool (a chunk of rows of one block) that walks runs
// of rows (norm_walk.h) and calls a row function specialized, through always-inline helpers
// and constant flags, for whether the statistic index (sI) and the parameter index (pI) move
// along the inner dim. Reductions along the inner dim use LANES independent double
// accumulators, combined in a fixed order, so gcc vectorizes them without reassociating.
// Built with -DND_KERNELS_NAIVE (make NAIVE=1), each public entry point hands its call to its
// plain twin in norm_naive.c instead.
#include <math.h>
#include <string.h>

#include "core/norm_kernels.h"
#include "core/norm_naive.h"
#include "core/norm_walk.h"

#define LANES         8
#define ALWAYS_INLINE static inline __attribute__((always_inline))

// The row functions are compiled for baseline x86-64 and for AVX2 and AVX-512 machines, and
// the loader picks one (an ifunc): the statistics passes convert floats to doubles, which
// baseline SSE2 does two at a time. Results do not depend on the clone: lanes keep their
// order and -std=c11 forbids contracting a*b + c into an FMA. ThreadSanitizer instruments the
// ifunc resolvers, which run before its runtime exists (a crash at load time), so sanitized
// builds keep the baseline code.
#if defined(__x86_64__) && defined(__gnu_linux__) && !defined(ND_NO_CLONES) &&                     \
    !defined(__SANITIZE_THREAD__) && !defined(__SANITIZE_ADDRESS__)
#define ROW_CLONES __attribute__((target_clones("default", "arch=x86-64-v3", "arch=x86-64-v4")))
#else
#define ROW_CLONES
#endif

// A kernel entry point (nd__run_fn): fn with constant arguments, so that each entry point is a
// copy of fn specialized for them, compiled once per clone.
#define ROW_RUN(name, fn, ...)                                                                     \
    ROW_CLONES static void name(void *ctx, struct nd__pos pos, int64_t nrows,                      \
                                struct nd__pos step) {                                             \
        fn(ctx, pos, nrows, step, __VA_ARGS__);                                                    \
    }

enum pass_op {
    OP_MOMENTS, // (x - shift), (x - shift)^2            keyed by statistic
    OP_DPARAM,  // dy, dy * xhat                         keyed by parameter
    OP_DSTAT,   // dy * gamma, dy * gamma * xhat         keyed by statistic
};

// Everything a pass reads and writes; shared read-only by the items.
struct pass {
    struct nd__walk w;
    enum pass_op op;
    bool centered;
    const float *x, *dy, *a, *c, *gamma, *beta;
    const float *k_mean, *k_var; // input gradient: -a*sum(g)/n and -a*sum(g*xhat)/d
    float *out;                  // y or dx
    double *sum1, *sum2;         // per key
    double *partial;             // per (block, chunk, bucket), or NULL
    bool per_row;                // every block is one row: rows bind their own sums
    bool finalize;               // moments per row: turn the row's sums into mean and variance
    double inv_count;            // 1 / values per statistic, for finalize
    // The fused forward (one statistic per row): after a row's moments, its factors a_out and
    // c_out (from var*f_scale + f_eps) and its output row in out.
    bool fused;
    float *a_out, *c_out;
    double f_scale, f_eps;
    bool stream; // the output goes to memory past the caches (see STREAM_MIN_BYTES)
};

// Per item: where its sums go and what it subtracts.
struct item {
    const struct pass *ps;
    double *acc1, *acc2;    // (nbuckets) each
    double shift;           // moments along the inner dim: the block's first element
    const float *shift_vec; // moments with a key per inner element: the block's first row
};

static const float one = 1.0f;

// ---- the per-element pairs of the keyed passes ----

// x - shift and its square; the shift is the statistic's first element (0 for RMS).
ALWAYS_INLINE void pair_moments(const struct item *it, const float *x, int64_t j, int sI,
                                double *v1, double *v2) {
    double sh = sI ? (it->shift_vec ? it->shift_vec[j] : 0.0) : it->shift;
    double d = (double)x[j] - sh;
    *v1 = d;
    *v2 = d * d;
}

// dy and dy * xhat (parameter gradients).
ALWAYS_INLINE void pair_dparam(const float *x, const float *dy, const float *a, const float *c,
                               int64_t j, int sI, double *v1, double *v2) {
    float xh = (x[j] - c[sI ? j : 0]) * a[sI ? j : 0];
    *v1 = dy[j];
    *v2 = (double)dy[j] * xh;
}

// g = dy * gamma and g * xhat (the input gradient's statistic sums).
ALWAYS_INLINE void pair_dstat(const float *x, const float *dy, const float *a, const float *c,
                              const float *g, int64_t j, int sI, int pI, double *v1, double *v2) {
    float xh = (x[j] - c[sI ? j : 0]) * a[sI ? j : 0];
    float gj = dy[j] * g[pI ? j : 0];
    *v1 = gj;
    *v2 = (double)gj * xh;
}

ALWAYS_INLINE void pair(const struct item *it, const float *x, const float *dy, const float *a,
                        const float *c, const float *g, int64_t j, int op, int sI, int pI,
                        double *v1, double *v2) {
    if (op == OP_MOMENTS)
        pair_moments(it, x, j, sI, v1, v2);
    else if (op == OP_DPARAM)
        pair_dparam(x, dy, a, c, j, sI, v1, v2);
    else
        pair_dstat(x, dy, a, c, g, j, sI, pI, v1, v2);
}

// Eight lanes as GCC vector types: gcc lowers them to whatever the target has (two SSE2
// registers per four doubles on baseline x86-64, one AVX-512 register with NATIVE=1) and keeps
// lane k's sum in lane k, so the order of additions is the same on every target. Scalar
// partial sums in plain C stay unvectorized: gcc may not reassociate them without -ffast-math.
typedef float v8f __attribute__((vector_size(32)));
typedef double v8d __attribute__((vector_size(64)));

// Vectors travel through pointers: by value they would change the calling convention with
// the target's vector width (gcc's -Wpsabi), which these always-inline helpers never use anyway.
ALWAYS_INLINE void load8(v8f *v, const float *p) {
    memcpy(v, p, sizeof *v); // an unaligned load
}

ALWAYS_INLINE void splat8(v8f *v, float f) {
    *v = (v8f){0} + f;
}

typedef float v16f __attribute__((vector_size(64)));

ALWAYS_INLINE void load16(v16f *v, const float *p) {
    memcpy(v, p, sizeof *v);
}

ALWAYS_INLINE void splat16(v16f *v, float f) {
    *v = (v16f){0} + f;
}

// An output this large is written with non-temporal stores: whole cache lines go to memory
// without being read first (an ordinary store reads each line before it overwrites it, a third
// of the traffic of y = f(x)), and without evicting x from the caches. Measured on this
// project's machine, STREAM's scale-add over 24.5 MiB arrays: 45.6 GB/s with ordinary stores,
// 60.3 with non-temporal ones, one thread; oneDNN's inference kernels stream their output too.
// Smaller outputs stay in the cache for whoever reads them next (the reply's writer).
#define STREAM_MIN_BYTES ((int64_t)8 << 20)

#if defined(__x86_64__) && defined(__SSE__)
typedef float v4f __attribute__((vector_size(16)));

// Sixteen floats to a 64-byte aligned p with non-temporal stores. gcc: four SSE stores, since
// SSE is in every clone (a 512-bit store would not compile for the baseline one), and four
// stores filling one line leave the write-combining buffer as one whole-line write. clang has
// no movntps builtin but a generic one, lowered to what the target has.
ALWAYS_INLINE void store16_stream(float *p, const v16f *v) {
#if defined(__clang__)
    __builtin_nontemporal_store(*v, (v16f *)(void *)p);
#else
    for (int k = 0; k < 4; k++) {
        v4f q;
        memcpy(&q, (const float *)v + 4 * k, sizeof q);
        __builtin_ia32_movntps(p + 4 * k, q);
    }
#endif
}

// Non-temporal stores are ordered by nothing but a fence: the pool's hand-back must not
// publish the output before they land.
ALWAYS_INLINE void stream_fence(void) {
    __builtin_ia32_sfence();
}
#else
ALWAYS_INLINE void store16_stream(float *p, const v16f *v) {
    memcpy(p, v, sizeof *v);
}

ALWAYS_INLINE void stream_fence(void) {
}
#endif

ALWAYS_INLINE void store16(float *p, const v16f *v) {
    memcpy(p, v, sizeof *v);
}

ALWAYS_INLINE void store8(float *p, const v8f *v) {
    memcpy(p, v, sizeof *v);
}

// Lane by lane, not __builtin_convertvector: gcc 12 lowers that (and a loop) to two 4-wide
// conversions joined by a shuffle even on AVX-512, where this is one vcvtps2pd to a zmm
// register (measured: the moments pass spent a third of its instructions on the join).
ALWAYS_INLINE void widen8(v8d *out, const v8f *in) {
    const v8f v = *in;
    *out = (v8d){v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]};
}

// The keyed pairs of eight consecutive elements starting at j (statistic/parameter index
// fixed along the row unless sI/pI).
ALWAYS_INLINE void pair8(const struct item *it, const float *x, const float *dy, const float *a,
                         const float *c, const float *g, int64_t j, int op, int sI, int pI, v8d *v1,
                         v8d *v2) {
    v8f xv, av, cv, gv, tv;
    v8d d, e;
    load8(&xv, x + j);
    if (op == OP_MOMENTS) { // a key per lane (sI) never reaches the lane path: kI == sI
        widen8(&d, &xv);
        d -= it->shift;
        *v1 = d;
        *v2 = d * d;
        return;
    }
    if (sI) {
        load8(&av, a + j);
        load8(&cv, c + j);
    } else {
        splat8(&av, a[0]);
        splat8(&cv, c[0]);
    }
    xv = (xv - cv) * av; // xhat
    load8(&gv, dy + j);
    if (op == OP_DSTAT) {
        if (pI)
            load8(&tv, g + j);
        else
            splat8(&tv, g[0]);
        gv *= tv;
    }
    widen8(&d, &gv);
    widen8(&e, &xv);
    *v1 = d;
    *v2 = d * e;
}

ALWAYS_INLINE double lanes_sum(const v8d *l) {
    return (((*l)[0] + (*l)[1]) + ((*l)[2] + (*l)[3])) +
           (((*l)[4] + (*l)[5]) + ((*l)[6] + (*l)[7]));
}

// Eight rows' lane sums at once: out[r] = lanes_sum(&l[r]), the same additions in the same
// order, done as three rounds of adding even to odd lanes across pairs of vectors.
// The even and the odd lanes of a and b side by side: gcc spells it __builtin_shuffle with a
// mask vector, clang __builtin_shufflevector with constant indices (the same lanes).
#if defined(__clang__)
#define EVEN_LANES(a, b) __builtin_shufflevector(a, b, 0, 2, 4, 6, 8, 10, 12, 14)
#define ODD_LANES(a, b)  __builtin_shufflevector(a, b, 1, 3, 5, 7, 9, 11, 13, 15)
#else
typedef long long v8lane __attribute__((vector_size(64)));
#define EVEN_LANES(a, b) __builtin_shuffle(a, b, (v8lane){0, 2, 4, 6, 8, 10, 12, 14})
#define ODD_LANES(a, b)  __builtin_shuffle(a, b, (v8lane){1, 3, 5, 7, 9, 11, 13, 15})
#endif

ALWAYS_INLINE void lanes_sum8(const v8d l[8], v8d *out) {
    v8d h[4], q[2];
    for (int k = 0; k < 4; k++) // rows A, B -> [A01 A23 A45 A67 B01 B23 B45 B67]
        h[k] = EVEN_LANES(l[2 * k], l[2 * k + 1]) + ODD_LANES(l[2 * k], l[2 * k + 1]);
    for (int k = 0; k < 2; k++) // -> [A0123 A4567 B0123 B4567 C0123 ...]
        q[k] = EVEN_LANES(h[2 * k], h[2 * k + 1]) + ODD_LANES(h[2 * k], h[2 * k + 1]);
    *out = EVEN_LANES(q[0], q[1]) + ODD_LANES(q[0], q[1]);
}

// A row reduced into LANES accumulators (lane k holds elements k, k+8, ...).
ALWAYS_INLINE void reduce_lanes(const struct item *it, const float *x, const float *dy,
                                const float *a, const float *c, const float *g, int64_t n, int op,
                                int sI, int pI, v8d *l1, v8d *l2) {
    // Sums in locals, stored once: *l1 may be an element of an array of rows (eight rows at a
    // time), which gcc would otherwise add to in memory, a store-to-load wait per vector.
    // Two sets of sums over alternate vectors, added at the end: one set waited on the previous
    // addition's latency each vector (about 0.14 ns per element on L2-resident rows).
    v8d p1, p2, s1 = {0}, s2 = {0}, t1 = {0}, t2 = {0};
    double v1, v2;
    int64_t j = 0;
    for (; j + 2 * LANES <= n; j += 2 * LANES) {
        pair8(it, x, dy, a, c, g, j, op, sI, pI, &p1, &p2);
        s1 += p1;
        s2 += p2;
        pair8(it, x, dy, a, c, g, j + LANES, op, sI, pI, &p1, &p2);
        t1 += p1;
        t2 += p2;
    }
    s1 += t1;
    s2 += t2;
    for (; j + LANES <= n; j += LANES) {
        pair8(it, x, dy, a, c, g, j, op, sI, pI, &p1, &p2);
        s1 += p1;
        s2 += p2;
    }
    for (int k = 0; j < n; j++, k++) {
        pair(it, x, dy, a, c, g, j, op, sI, pI, &v1, &v2);
        s1[k] += v1;
        s2[k] += v2;
    }
    *l1 = s1;
    *l2 = s2;
}

// One row of a keyed pass. kI: the key moves along the inner dim (one bucket per element);
// otherwise the row reduces into one bucket through LANES accumulators.
ALWAYS_INLINE void reduce_row(const struct item *it, const float *x, const float *dy,
                              const float *a, const float *c, const float *g, int64_t n, int op,
                              int kI, int sI, int pI) {
    double *acc1 = it->acc1, *acc2 = it->acc2, v1, v2;
    if (kI) {
        for (int64_t j = 0; j < n; j++) {
            pair(it, x, dy, a, c, g, j, op, sI, pI, &v1, &v2);
            acc1[j] += v1;
            acc2[j] += v2;
        }
        return;
    }
    v8d l1, l2;
    reduce_lanes(it, x, dy, a, c, g, n, op, sI, pI, &l1, &l2);
    acc1[0] += lanes_sum(&l1);
    acc2[0] += lanes_sum(&l2);
}

static void item_start(struct item *it, const struct pass *ps, double *acc1, double *acc2,
                       struct nd__pos base);

// The sums of a row that is its statistics' whole (acc1/acc2 point into mean/var) become the
// mean (shift + S1/n) and the biased variance (S2/n - (S1/n)^2); RMS: the mean square.
static void finalize_moments(const struct item *it, const struct pass *ps) {
    for (int64_t j = 0; j < ps->w.nbuckets; j++) {
        double m1 = it->acc1[j] * ps->inv_count, m2 = it->acc2[j] * ps->inv_count;
        double shift = it->shift_vec ? (ps->w.nbuckets > 1 ? it->shift_vec[j] : it->shift) : 0.0;
        double v = ps->centered ? m2 - m1 * m1 : m2;
        it->acc1[j] = ps->centered ? shift + m1 : 0.0;
        it->acc2[j] = v > 0.0 ? v : 0.0;
    }
}

// A row that is one statistic's (or parameter's) whole: layer norm's rows, group norm's
// (example, group) rows. Sums stay in locals and land once, finished for moments.
ALWAYS_INLINE void reduce_row_alone(const struct item *it, struct nd__pos pos, int64_t n, int op,
                                    int sI, int pI) {
    const struct pass *ps = it->ps;
    double s1 = 0.0, s2 = 0.0;
    struct item row = *it;
    row.acc1 = &s1;
    row.acc2 = &s2;
    row.shift = op == OP_MOMENTS && ps->centered ? ps->x[pos.x] : 0.0;
    row.shift_vec = NULL;
    const float *g = ps->gamma ? ps->gamma + pos.p : &one;
    reduce_row(&row, ps->x + pos.x, ps->dy ? ps->dy + pos.x : NULL, ps->a ? ps->a + pos.s : NULL,
               ps->c ? ps->c + pos.s : NULL, g, n, op, 0, sI, ps->gamma ? pI : 0);
    int64_t key = ps->w.key == ND__KEY_PARAM ? pos.p : pos.s;
    if (op == OP_MOMENTS && ps->finalize) {
        double m1 = s1 * ps->inv_count, m2 = s2 * ps->inv_count;
        double v = ps->centered ? m2 - m1 * m1 : m2;
        s1 = ps->centered ? row.shift + m1 : 0.0;
        s2 = v > 0.0 ? v : 0.0;
    }
    ps->sum1[key] = s1;
    ps->sum2[key] = s2;
}

// Eight rows as reduce_row_alone, bit for bit: their cross-lane sums and the moments' finish
// run on vectors of eight rows, which is most of a short row's cost when done one by one.
ALWAYS_INLINE void reduce_rows8_alone(const struct item *it, struct nd__pos pos,
                                      struct nd__pos step, int64_t n, int op, int sI, int pI,
                                      v8d *sums1, v8d *sums2) {
    typedef long long v8i __attribute__((vector_size(64)));
    const struct pass *ps = it->ps;
    v8d l1[8], l2[8], shift = {0}, s1, s2;
    for (int r = 0; r < 8; r++) {
        struct nd__pos q = nd__pos_add(pos, step, r);
        struct item row = *it;
        row.shift = op == OP_MOMENTS && ps->centered ? ps->x[q.x] : 0.0;
        row.shift_vec = NULL;
        shift[r] = row.shift;
        const float *g = ps->gamma ? ps->gamma + q.p : &one;
        reduce_lanes(&row, ps->x + q.x, ps->dy ? ps->dy + q.x : NULL, ps->a ? ps->a + q.s : NULL,
                     ps->c ? ps->c + q.s : NULL, g, n, op, sI, ps->gamma ? pI : 0, &l1[r], &l2[r]);
    }
    lanes_sum8(l1, &s1);
    lanes_sum8(l2, &s2);
    if (op == OP_MOMENTS && ps->finalize) {
        v8d m1 = s1 * ps->inv_count, m2 = s2 * ps->inv_count;
        v8d v = ps->centered ? m2 - m1 * m1 : m2;
        s1 = ps->centered ? shift + m1 : (v8d){0};
        s2 = (v8d)((v8i)v & (v8i)(v > 0.0)); // v > 0 ? v : 0 (NaN -> 0)
    }
    bool by_param = ps->w.key == ND__KEY_PARAM;
    int64_t key = by_param ? pos.p : pos.s, kstep = by_param ? step.p : step.s;
    for (int r = 0; r < 8; r++) {
        ps->sum1[key + r * kstep] = s1[r];
        ps->sum2[key + r * kstep] = s2[r];
    }
    *sums1 = s1;
    *sums2 = s2;
}

// Four rows of a keyed pass whose key moves along the inner dim (channels-last batch norm):
// the rows' values are added in a fixed order, (r0 + r1) + (r2 + r3), before they touch the
// sums, so the per-channel accumulators are read and written once per four rows, not per row.
// Same statistic and parameter offsets for the four rows (their steps are 0).
ALWAYS_INLINE void reduce_rows4(const struct item *it, const float *const x[4],
                                const float *const dy[4], const float *a, const float *c,
                                const float *g, int64_t n, int op, int sI, int pI) {
    double *acc1 = it->acc1, *acc2 = it->acc2;
    for (int64_t j = 0; j < n; j++) {
        double v1[4], v2[4];
        for (int r = 0; r < 4; r++)
            pair(it, x[r], dy[r], a, c, g, j, op, sI, pI, &v1[r], &v2[r]);
        acc1[j] += (v1[0] + v1[1]) + (v1[2] + v1[3]);
        acc2[j] += (v2[0] + v2[1]) + (v2[2] + v2[3]);
    }
}

// A run of rows of a keyed pass, with the flags fixed at compile time.
ALWAYS_INLINE void reduce_run(const struct item *it, struct nd__pos pos, int64_t nrows,
                              struct nd__pos step, int op, int kI, int sI, int pI) {
    const struct pass *ps = it->ps;
    int64_t n = ps->w.inner, r = 0;
    if (kI && !ps->per_row && step.s == 0 && step.p == 0) {
        const float *g = ps->gamma ? ps->gamma + pos.p : &one;
        const float *a = ps->a ? ps->a + pos.s : NULL, *c = ps->c ? ps->c + pos.s : NULL;
        for (; r + 4 <= nrows; r += 4, pos.x += 4 * step.x) {
            const float *x[4], *dy[4];
            for (int k = 0; k < 4; k++) {
                x[k] = ps->x + pos.x + k * step.x;
                dy[k] = ps->dy ? ps->dy + pos.x + k * step.x : NULL;
            }
            reduce_rows4(it, x, dy, a, c, g, n, op, sI, ps->gamma ? pI : 0);
        }
    }
    if (!kI && ps->per_row) { // short rows, one statistic each: sums in registers
        v8d s1, s2;
        for (; r + 8 <= nrows; r += 8, pos = nd__pos_add(pos, step, 8))
            reduce_rows8_alone(it, pos, step, n, op, sI, pI, &s1, &s2);
        for (; r < nrows; r++, pos = nd__pos_add(pos, step, 1))
            reduce_row_alone(it, pos, n, op, sI, pI);
        return;
    }
    for (; r < nrows; r++) {
        const float *g = ps->gamma ? ps->gamma + pos.p : &one;
        struct item row = *it;
        if (ps->per_row) {
            int64_t key = ps->w.key == ND__KEY_PARAM ? pos.p : pos.s;
            item_start(&row, ps, ps->sum1 + key, ps->sum2 + key, pos);
        }
        reduce_row(&row, ps->x + pos.x, ps->dy ? ps->dy + pos.x : NULL,
                   ps->a ? ps->a + pos.s : NULL, ps->c ? ps->c + pos.s : NULL, g, n, op, kI, sI,
                   ps->gamma ? pI : 0);
        if (op == OP_MOMENTS && ps->finalize)
            finalize_moments(&row, ps);
        pos = nd__pos_add(pos, step, 1);
    }
}

#define REDUCE_RUN(name, op, kI, sI, pI) ROW_RUN(name, reduce_run, op, kI, sI, pI)
REDUCE_RUN(run_moments_s0, OP_MOMENTS, 0, 0, 0)
REDUCE_RUN(run_moments_s1, OP_MOMENTS, 1, 1, 0)
REDUCE_RUN(run_dparam_p0s0, OP_DPARAM, 0, 0, 0)
REDUCE_RUN(run_dparam_p0s1, OP_DPARAM, 0, 1, 0)
REDUCE_RUN(run_dparam_p1s0, OP_DPARAM, 1, 0, 1)
REDUCE_RUN(run_dparam_p1s1, OP_DPARAM, 1, 1, 1)
REDUCE_RUN(run_dstat_s0p0, OP_DSTAT, 0, 0, 0)
REDUCE_RUN(run_dstat_s0p1, OP_DSTAT, 0, 0, 1)
REDUCE_RUN(run_dstat_s1p0, OP_DSTAT, 1, 1, 0)
REDUCE_RUN(run_dstat_s1p1, OP_DSTAT, 1, 1, 1)

static nd__run_fn reduce_run_for(const struct pass *ps) {
    int sI = ps->w.s_inner != 0, pI = ps->w.p_inner != 0;
    switch (ps->op) {
    case OP_MOMENTS:
        return sI ? run_moments_s1 : run_moments_s0;
    case OP_DPARAM:
        return pI ? (sI ? run_dparam_p1s1 : run_dparam_p1s0)
                  : (sI ? run_dparam_p0s1 : run_dparam_p0s0);
    default:
        return sI ? (pI ? run_dstat_s1p1 : run_dstat_s1p0) : (pI ? run_dstat_s0p1 : run_dstat_s0p0);
    }
}

// ---- keyed passes: items, then chunk partials summed in chunk order ----

// Zeroes the item's nbuckets sums at acc1/acc2 and takes the shift of the block at base.
static void item_start(struct item *it, const struct pass *ps, double *acc1, double *acc2,
                       struct nd__pos base) {
    size_t nb = (size_t)ps->w.nbuckets;
    it->acc1 = acc1;
    it->acc2 = acc2;
    memset(acc1, 0, nb * sizeof(double));
    memset(acc2, 0, nb * sizeof(double));
    bool shifted = ps->op == OP_MOMENTS && ps->centered;
    it->shift = shifted ? ps->x[base.x] : 0.0;
    it->shift_vec = shifted ? ps->x + base.x : NULL;
}

static void item_prepare(struct item *it, const struct pass *ps, int64_t b, int64_t chunk,
                         struct nd__pos base) {
    const struct nd__walk *w = &ps->w;
    if (ps->partial) {
        double *acc1 = ps->partial + (size_t)(b * w->nchunks + chunk) * 2 * (size_t)w->nbuckets;
        item_start(it, ps, acc1, acc1 + w->nbuckets, base);
    } else {
        int64_t key = w->key == ND__KEY_PARAM ? base.p : base.s;
        item_start(it, ps, ps->sum1 + key, ps->sum2 + key, base);
    }
}

static void keyed_items(void *ctx, int64_t begin, int64_t end) {
    const struct pass *ps = ctx;
    const struct nd__walk *w = &ps->w;
    nd__run_fn run = reduce_run_for(ps);
    for (int64_t item = begin; item < end; item++) {
        int64_t b = item / w->nchunks, chunk = item % w->nchunks;
        struct nd__pos base = nd__walk_block_base(w, b);
        struct item it = {.ps = ps};
        item_prepare(&it, ps, b, chunk, base);
        int64_t r0 = chunk * w->rows_per_chunk, r1 = r0 + w->rows_per_chunk;
        nd__walk_rows(w, base, r0, r1 < w->nrows ? r1 : w->nrows, run, &it);
    }
}

// Adds each block's chunk partials, in chunk order, into sum1/sum2.
// Items are (block, range of COMBINE_SPAN buckets), so one wide block (channels-last batch
// norm: one block of C buckets) still spreads over the threads.
#define COMBINE_SPAN 256

static void combine_items(void *ctx, int64_t begin, int64_t end) {
    const struct pass *ps = ctx;
    const struct nd__walk *w = &ps->w;
    int64_t nb = w->nbuckets, spans = (nb + COMBINE_SPAN - 1) / COMBINE_SPAN;
    for (int64_t item = begin; item < end; item++) {
        int64_t b = item / spans, j0 = (item % spans) * COMBINE_SPAN;
        int64_t j1 = j0 + COMBINE_SPAN < nb ? j0 + COMBINE_SPAN : nb;
        int64_t key = nd__walk_block_key(w, b);
        double *s1 = ps->sum1 + key, *s2 = ps->sum2 + key;
        for (int64_t j = j0; j < j1; j++)
            s1[j] = s2[j] = 0.0;
        for (int64_t chunk = 0; chunk < w->nchunks; chunk++) {
            const double *p1 = ps->partial + (size_t)(b * w->nchunks + chunk) * 2 * (size_t)nb;
            for (int64_t j = j0; j < j1; j++) {
                s1[j] += p1[j];
                s2[j] += p1[nb + j];
            }
        }
    }
}

static nd__run_fn fused_run_for(const struct pass *ps);

// Blocks of one row each (layer norm, group norm's (n, group) rows): items take runs of
// blocks, walked like rows, so a short row costs no per-block set-up.
static void per_row_items(void *ctx, int64_t begin, int64_t end) {
    const struct pass *ps = ctx;
    const struct nd__walk *w = &ps->w;
    struct item it = {.ps = ps};
    struct nd__pos base = {0, 0, 0};
    nd__run_fn run = ps->fused ? fused_run_for(ps) : reduce_run_for(ps);
    for (int64_t chunk = begin; chunk < end; chunk++) {
        int64_t r0 = chunk * w->rows_per_chunk, r1 = r0 + w->rows_per_chunk;
        nd__walk_rows(w, base, r0, r1 < w->nrows ? r1 : w->nrows, run, &it);
    }
    if (ps->stream)
        stream_fence();
}

static void run_per_row(const struct pass *ps, struct nd_pool *pool) {
    struct pass flat = *ps;
    flat.per_row = true;
    flat.partial = NULL;
    flat.w.rows = ps->w.blocks;
    flat.w.blocks.n = 0;
    flat.w.nrows = ps->w.nblocks;
    flat.w.nblocks = 1;
    flat.w.nchunks = (flat.w.nrows + flat.w.rows_per_chunk - 1) / flat.w.rows_per_chunk;
    nd_pool_for(pool, flat.w.nchunks, flat.w.rows_per_chunk * flat.w.inner, per_row_items, &flat);
}

// Runs a keyed pass: sums per key into ps->sum1/sum2. scratch holds the partials.
static void run_keyed(struct pass *ps, struct nd_pool *pool, double *scratch) {
    const struct nd__walk *w = &ps->w;
    if (w->nrows == 1 && w->nblocks > 1) {
        run_per_row(ps, pool);
        return;
    }
    ps->partial = w->nchunks > 1 ? scratch : NULL;
    int64_t cost = w->rows_per_chunk * w->inner;
    nd_pool_for(pool, w->nblocks * w->nchunks, cost, keyed_items, ps);
    if (ps->partial)
        nd_pool_for(pool, w->nblocks * ((w->nbuckets + COMBINE_SPAN - 1) / COMBINE_SPAN),
                    w->nchunks * COMBINE_SPAN, combine_items, ps);
}

// Scratch holds [partials | sum1 (keys) | sum2 (keys) | two float factors per statistic].
static double *scratch_sums(const struct nd_norm_plan *plan, double *scratch) {
    struct nd__walk s, p;
    nd__walk_init(&s, plan, ND__KEY_STAT);
    nd__walk_init(&p, plan, ND__KEY_PARAM);
    size_t a = nd__walk_partial_doubles(&s), b = nd__walk_partial_doubles(&p);
    return scratch + (a > b ? a : b);
}

static int64_t max_keys(const struct nd_norm_plan *plan) {
    return plan->nstat > plan->nparam ? plan->nstat : plan->nparam;
}

// Points the pass's sums into scratch, past the partials: sum1, then sum2, max_keys each.
static void pass_sums(struct pass *ps, const struct nd_norm_plan *plan, double *scratch) {
    ps->sum1 = scratch_sums(plan, scratch);
    ps->sum2 = ps->sum1 + max_keys(plan);
}

// ---- group norm on the fine plan (channels-last groups) ----

// The fine plan and its working arrays, after the fine plan's own scratch.
struct fine {
    struct nd_norm_plan plan;
    double *scratch;
    double *mean, *var; // (fine nstat) each
    float *a, *c;       // (fine nstat) each
};

static void fine_begin(const struct nd_norm_plan *plan, double *scratch, struct fine *f) {
    nd_norm_plan_build(&f->plan, &plan->fine_dims, NULL); // built from valid dims already
    int64_t n = f->plan.nstat;
    f->scratch = scratch;
    f->mean = scratch + nd__plan_own_scratch(&f->plan);
    f->var = f->mean + n;
    f->a = (float *)(f->var + n);
    f->c = f->a + n;
}

// The real statistic of fine statistic i: i = (pre*C + ch)*T + t -> (pre*G + ch/Cg)*T + t,
// which is (i / T / Cg) * T + t since C = G*Cg.
static int64_t coarse_of(const struct nd_norm_plan *plan, int64_t i) {
    int64_t t = i % plan->fold_tail;
    return (i / plan->fold_tail / plan->fold_group) * plan->fold_tail + t;
}

// Copies per-statistic factors to the fine plan's statistics: each channel of a group gets the
// group's.
static void fine_expand(const struct nd_norm_plan *plan, const struct fine *f, float *dst,
                        const float *src) {
    for (int64_t i = 0; i < f->plan.nstat; i++)
        dst[i] = src[coarse_of(plan, i)];
}

// Per-group moments from per-channel ones with equal counts (Chan et al.): the mean of the
// means, and the mean of the variances plus the variance of the means. Fixed order.
static void fine_fold_moments(const struct nd_norm_plan *plan, const struct fine *f, double *mean,
                              double *var, bool centered) {
    double inv = 1.0 / (double)plan->fold_group;
    for (int64_t s = 0; s < plan->nstat; s++)
        mean[s] = var[s] = 0.0;
    for (int64_t i = 0; i < f->plan.nstat; i++)
        mean[coarse_of(plan, i)] += f->mean[i] * inv;
    for (int64_t i = 0; i < f->plan.nstat; i++) {
        int64_t s = coarse_of(plan, i);
        double d = centered ? f->mean[i] - mean[s] : 0.0;
        var[s] += (f->var[i] + d * d) * inv;
    }
}

// ---- moments ----

// mean = shift + S1/n, var = S2/n - (S1/n)^2 per bucket of each block.
static void finish_moments(const struct pass *ps, double *mean, double *var, int64_t count) {
    const struct nd__walk *w = &ps->w;
    double inv = 1.0 / (double)count;
    for (int64_t b = 0; b < w->nblocks; b++) {
        struct nd__pos base = nd__walk_block_base(w, b);
        for (int64_t j = 0; j < w->nbuckets; j++) {
            int64_t s = base.s + j;
            double m1 = ps->sum1[s] * inv, m2 = ps->sum2[s] * inv;
            double shift = ps->centered ? ps->x[base.x + j] : 0.0;
            double v = ps->centered ? m2 - m1 * m1 : m2;
            mean[s] = ps->centered ? shift + m1 : 0.0;
            var[s] = v > 0.0 ? v : 0.0;
        }
    }
}

void nd_norm_moments(const struct nd_norm_plan *plan, double *restrict mean, double *restrict var,
                     const float *restrict x, bool centered, struct nd_pool *pool,
                     double *restrict scratch) {
#ifdef ND_KERNELS_NAIVE
    nd_norm_moments_naive(plan, mean, var, x, centered, pool, scratch);
    return;
#endif
    if (plan->use_fine && plan->numel > 0) {
        struct fine f;
        fine_begin(plan, scratch, &f);
        nd_norm_moments(&f.plan, f.mean, f.var, x, centered, pool, f.scratch);
        fine_fold_moments(plan, &f, mean, var, centered);
        return;
    }
    if (plan->numel == 0 || plan->count == 0) {
        for (int64_t s = 0; s < plan->nstat; s++)
            mean[s] = var[s] = 0.0;
        return;
    }
    struct pass ps = {.op = OP_MOMENTS, .centered = centered, .x = x};
    nd__walk_init(&ps.w, plan, ND__KEY_STAT);
    if (ps.w.nrows == 1 && ps.w.nblocks > 1) { // one row per statistic: finished as it goes
        ps.sum1 = mean;
        ps.sum2 = var;
        ps.finalize = true;
        ps.inv_count = 1.0 / (double)plan->count;
        run_keyed(&ps, pool, scratch);
        return;
    }
    pass_sums(&ps, plan, scratch);
    run_keyed(&ps, pool, scratch);
    finish_moments(&ps, mean, var, plan->count);
}

// ---- elementwise passes: apply and the input gradient ----

// One vector loop of apply_row over W lanes of type V from j on (while W fit).
#define APPLY_LANES(V, W, LOAD, SPLAT, STORE)                                                      \
    do {                                                                                           \
        V av, cv, gv, bv, t;                                                                       \
        if (!sI) {                                                                                 \
            SPLAT(&av, a[0]);                                                                      \
            SPLAT(&cv, c[0]);                                                                      \
        }                                                                                          \
        if (!pI) {                                                                                 \
            SPLAT(&gv, hg ? g[0] : 1.0f);                                                          \
            SPLAT(&bv, hb ? b[0] : 0.0f);                                                          \
        }                                                                                          \
        for (; j + W <= n; j += W) {                                                               \
            LOAD(&t, src + j);                                                                     \
            if (sI) {                                                                              \
                LOAD(&av, a + j);                                                                  \
                LOAD(&cv, c + j);                                                                  \
            }                                                                                      \
            if (pI && hg)                                                                          \
                LOAD(&gv, g + j);                                                                  \
            if (pI && hb)                                                                          \
                LOAD(&bv, b + j);                                                                  \
            t = (t - cv) * av;                                                                     \
            if (hg)                                                                                \
                t *= gv;                                                                           \
            if (hb)                                                                                \
                t += bv;                                                                           \
            STORE(y + j, &t);                                                                      \
        }                                                                                          \
    } while (0)

// One element of apply_row.
ALWAYS_INLINE void apply_one(float *restrict y, const float *restrict src, const float *restrict a,
                             const float *restrict c, const float *restrict g,
                             const float *restrict b, int64_t j, int sI, int pI, int hg, int hb) {
    float u = (src[j] - c[sI ? j : 0]) * a[sI ? j : 0];
    if (hg)
        u *= g[pI ? j : 0];
    if (hb)
        u += b[pI ? j : 0];
    y[j] = u;
}

// One element of a row with one factor, offset and bias (a*g folded).
ALWAYS_INLINE float folded_one(float x, float A, float C, float B, int hb) {
    float t = (x - C) * A;
    return hb ? t + B : t;
}

// A row of apply_row with one factor, offset and bias, streamed: single elements up to a
// 64-byte boundary, then whole lines.
ALWAYS_INLINE void folded_row_stream(float *restrict y, const float *restrict src, float A, float C,
                                     float B, int hb, int64_t n) {
    int64_t j = 0;
    for (; j < n && ((uintptr_t)(y + j) & 63) != 0; j++)
        y[j] = folded_one(src[j], A, C, B, hb);
    v16f av, cv, bv, t;
    splat16(&av, A);
    splat16(&cv, C);
    splat16(&bv, B);
    for (; j + 16 <= n; j += 16) {
        load16(&t, src + j);
        t = (t - cv) * av;
        if (hb)
            t += bv;
        store16_stream(y + j, &t);
    }
    for (; j < n; j++)
        y[j] = folded_one(src[j], A, C, B, hb);
}

// y = (x - c)*a*g + b; with both indices fixed along the row a*g folds into one factor.
// Pointers are restrict so a short row's loop needs no overlap checks; in place (y == x) the
// row reads y itself and never touches x, which keeps that within restrict's rules.
ALWAYS_INLINE void apply_row(float *restrict y, const float *restrict x, const float *restrict a,
                             const float *restrict c, const float *restrict g,
                             const float *restrict b, int64_t n, int sI, int pI, int hg, int hb,
                             int inplace, bool stream) {
    const float *src = inplace ? y : x;
    if (!sI && !pI) {
        float A = hg ? a[0] * g[0] : a[0], C = c[0], B = hb ? b[0] : 0.0f;
        if (stream && n >= 64)
            folded_row_stream(y, src, A, C, B, hb, n);
        else if (hb) // hb hoisted by hand: the loops stay branch-free for the vectorizer
            for (int64_t j = 0; j < n; j++)
                y[j] = folded_one(src[j], A, C, B, 1);
        else
            for (int64_t j = 0; j < n; j++)
                y[j] = folded_one(src[j], A, C, B, 0);
        return;
    }
    // Eight at a time by hand: gcc's own vector loop spends a short row (layer norm over 56,
    // group norm's 24 channels) in its prologue and remainder code. Rows of 64 and more go
    // sixteen at a time first, one AVX-512 register: measured on L2-resident tensors, 25-35%
    // less time for channels-last batch norm's rows of parameter vectors; short rows stay at
    // eight, where the second loop's set-up cost more than it saved.
    // Streamed rows start with single elements up to a 64-byte boundary: each non-temporal
    // vector then fills one cache line.
    int64_t j = 0;
    if (stream && n >= 64) {
        for (; j < n && ((uintptr_t)(y + j) & 63) != 0; j++)
            apply_one(y, src, a, c, g, b, j, sI, pI, hg, hb);
        APPLY_LANES(v16f, 16, load16, splat16, store16_stream);
    } else if (n >= 64) {
        APPLY_LANES(v16f, 16, load16, splat16, store16);
    }
    APPLY_LANES(v8f, 8, load8, splat8, store8);
    for (; j < n; j++)
        apply_one(y, src, a, c, g, b, j, sI, pI, hg, hb);
}

// dx = a*g + k_mean + xhat*k_var with g = dy*gamma and xhat = (x - c)*a.
ALWAYS_INLINE void dx_row(float *restrict dx, const float *restrict dy, const float *restrict x,
                          const float *restrict a, const float *restrict c,
                          const float *restrict km, const float *restrict kv,
                          const float *restrict g, int64_t n, int sI, int pI) {
    for (int64_t j = 0; j < n; j++) {
        int64_t s = sI ? j : 0;
        float gj = dy[j] * g[pI ? j : 0];
        float xh = (x[j] - c[s]) * a[s];
        dx[j] = a[s] * gj + km[s] + xh * kv[s];
    }
}

ALWAYS_INLINE void elementwise_run(const struct pass *ps, struct nd__pos pos, int64_t nrows,
                                   struct nd__pos step, int is_dx, int sI, int pI, int inplace) {
    int64_t n = ps->w.inner;
    int hg = ps->gamma != NULL, hb = ps->beta != NULL;
    for (int64_t r = 0; r < nrows; r++) {
        const float *g = hg ? ps->gamma + pos.p : &one;
        if (is_dx)
            dx_row(ps->out + pos.x, ps->dy + pos.x, ps->x + pos.x, ps->a + pos.s, ps->c + pos.s,
                   ps->k_mean + pos.s, ps->k_var + pos.s, g, n, sI, hg ? pI : 0);
        else
            apply_row(ps->out + pos.x, ps->x + pos.x, ps->a + pos.s, ps->c + pos.s, g,
                      hb ? ps->beta + pos.p : NULL, n, sI, pI, hg, hb, inplace, ps->stream);
        pos = nd__pos_add(pos, step, 1);
    }
}

#define ELEMENTWISE_RUN(name, is_dx, sI, pI, inplace)                                              \
    ROW_RUN(name, elementwise_run, is_dx, sI, pI, inplace)
ELEMENTWISE_RUN(run_apply_s0p0, 0, 0, 0, 0)
ELEMENTWISE_RUN(run_apply_s0p1, 0, 0, 1, 0)
ELEMENTWISE_RUN(run_apply_s1p0, 0, 1, 0, 0)
ELEMENTWISE_RUN(run_apply_s1p1, 0, 1, 1, 0)
ELEMENTWISE_RUN(run_apply_in_s0p0, 0, 0, 0, 1)
ELEMENTWISE_RUN(run_apply_in_s0p1, 0, 0, 1, 1)
ELEMENTWISE_RUN(run_apply_in_s1p0, 0, 1, 0, 1)
ELEMENTWISE_RUN(run_apply_in_s1p1, 0, 1, 1, 1)
ELEMENTWISE_RUN(run_dx_s0p0, 1, 0, 0, 0)
ELEMENTWISE_RUN(run_dx_s0p1, 1, 0, 1, 0)
ELEMENTWISE_RUN(run_dx_s1p0, 1, 1, 0, 0)
ELEMENTWISE_RUN(run_dx_s1p1, 1, 1, 1, 0)

static void elementwise_items(void *ctx, int64_t begin, int64_t end) {
    const struct pass *ps = ctx;
    const struct nd__walk *w = &ps->w;
    int sI = w->s_inner != 0, pI = w->p_inner != 0;
    static const nd__run_fn apply_runs[2][2][2] = {
        {{run_apply_s0p0, run_apply_s0p1}, {run_apply_s1p0, run_apply_s1p1}},
        {{run_apply_in_s0p0, run_apply_in_s0p1}, {run_apply_in_s1p0, run_apply_in_s1p1}}};
    static const nd__run_fn dx_runs[2][2] = {{run_dx_s0p0, run_dx_s0p1},
                                             {run_dx_s1p0, run_dx_s1p1}};
    int inplace = ps->out == ps->x;
    nd__run_fn run = ps->dy ? dx_runs[sI][pI] : apply_runs[inplace][sI][pI];
    struct nd__pos base = {0, 0, 0};
    for (int64_t chunk = begin; chunk < end; chunk++) {
        int64_t r0 = chunk * w->rows_per_chunk, r1 = r0 + w->rows_per_chunk;
        nd__walk_rows(w, base, r0, r1 < w->nrows ? r1 : w->nrows, run, (void *)ps);
    }
    if (ps->stream)
        stream_fence();
}

static void run_elementwise(struct pass *ps, struct nd_pool *pool) {
    const struct nd__walk *w = &ps->w;
    nd_pool_for(pool, w->nchunks, w->rows_per_chunk * w->inner, elementwise_items, ps);
}

// Whether an apply writes y with non-temporal stores: large, and not in place (x's lines are
// in the cache then anyway).
static bool streams(const struct nd_norm_plan *plan, const float *y, const float *x) {
    return y != x && plan->numel >= STREAM_MIN_BYTES / (int64_t)sizeof(float);
}

void nd_norm_apply(const struct nd_norm_plan *plan, float *y, const float *x, const float *a,
                   const float *c, const float *gamma, const float *beta, struct nd_pool *pool,
                   double *scratch) {
#ifdef ND_KERNELS_NAIVE
    nd_norm_apply_naive(plan, y, x, a, c, gamma, beta, pool, scratch);
    return;
#endif
    if (plan->numel == 0)
        return;
    if (plan->use_fine) {
        struct fine f;
        fine_begin(plan, scratch, &f);
        fine_expand(plan, &f, f.a, a);
        fine_expand(plan, &f, f.c, c);
        nd_norm_apply(&f.plan, y, x, f.a, f.c, gamma, beta, pool, f.scratch);
        return;
    }
    struct pass ps = {.x = x, .a = a, .c = c, .gamma = gamma, .beta = beta, .out = y};
    ps.stream = streams(plan, y, x);
    nd__walk_init(&ps.w, plan, ND__KEY_NONE);
    run_elementwise(&ps, pool);
}

// a = 1/sqrt(var*scale + eps), c = mean per statistic: a pass of its own over the pool,
// since layer and group norm have one statistic per few dozen elements. The kernels build
// with -fno-math-errno, so the square roots vectorize (still correctly rounded).
#define FACTOR_SPAN 4096

struct factors {
    float *a, *c;
    const double *mean, *var;
    double scale, eps;
    int64_t nstat;
};

ROW_CLONES static void factor_items(void *ctx, int64_t begin, int64_t end) {
    const struct factors *f = ctx;
    float *restrict a = f->a, *restrict c = f->c;
    const double *restrict mean = f->mean, *restrict var = f->var;
    int64_t s1 = end * FACTOR_SPAN < f->nstat ? end * FACTOR_SPAN : f->nstat;
    for (int64_t s = begin * FACTOR_SPAN; s < s1; s++) {
        double rstd = 1.0 / sqrt(var[s] * f->scale + f->eps);
        a[s] = (float)rstd;
        c[s] = (float)mean[s];
    }
}

// ---- the fused forward: statistics that are one row each ----
//
// Layer, RMS and instance norm and (N, C) group norm keep one statistic per contiguous row:
// the forward then finishes each row (moments, factors, output) while the row is in L1, so
// x comes from memory once instead of twice. The arithmetic is the three passes' own, in the
// same order: the bytes are the same as running them one after another.

// The factors of one statistic, as factor_items computes them.
ALWAYS_INLINE void fused_factors(const struct pass *ps, int64_t s) {
    double rstd = 1.0 / sqrt(ps->sum2[s] * ps->f_scale + ps->f_eps);
    ps->a_out[s] = (float)rstd;
    ps->c_out[s] = (float)ps->sum1[s];
}

// Eight rows' factors, from the moments' vectors.
ALWAYS_INLINE void fused_factors8(const struct pass *ps, struct nd__pos pos, struct nd__pos step,
                                  const v8d *mean, const v8d *var) {
    v8d t = *var * ps->f_scale + ps->f_eps, rstd;
    for (int k = 0; k < 8; k++) // one vector square root and division where the target has them
        rstd[k] = 1.0 / sqrt(t[k]);
    v8f af = __builtin_convertvector(rstd, v8f), cf = __builtin_convertvector(*mean, v8f);
    if (step.s == 1) {
        memcpy(ps->a_out + pos.s, &af, sizeof af);
        memcpy(ps->c_out + pos.s, &cf, sizeof cf);
        return;
    }
    for (int k = 0; k < 8; k++) {
        ps->a_out[pos.s + k * step.s] = af[k];
        ps->c_out[pos.s + k * step.s] = cf[k];
    }
}

ALWAYS_INLINE void fused_row_out(const struct pass *ps, struct nd__pos q, int64_t n, int pI,
                                 int inplace) {
    int64_t s = q.s;
    int hg = ps->gamma != NULL, hb = ps->beta != NULL;
    apply_row(ps->out + q.x, ps->x + q.x, ps->a_out + s, ps->c_out + s, hg ? ps->gamma + q.p : &one,
              hb ? ps->beta + q.p : NULL, n, 0, pI, hg, hb, inplace, ps->stream);
}

// Asks for the eight rows of x two blocks ahead (measured: layer norm over 56 or 768 values
// 10-15% faster; the hardware prefetcher alone falls behind the rows' short loops), into L2,
// not L1: sixteen rows of 768 ahead are 48 KB, more than L1 holds beside the block in use
// (measured on 8192x768 from memory, one thread: 0.30 against 0.37 ns per element; no change
// on L2-resident tensors).
ALWAYS_INLINE void prefetch_rows(const float *x, int64_t row_stride, int64_t n) {
    for (int k = 0; k < 8; k++) {
        const char *row = (const char *)(x + k * row_stride);
        for (int64_t b = 0; b < n * (int64_t)sizeof(float); b += 64)
            __builtin_prefetch(row + b, 0, 1);
    }
}

ALWAYS_INLINE void fused_run(const struct item *it, struct nd__pos pos, int64_t nrows,
                             struct nd__pos step, int pI, int inplace) {
    const struct pass *ps = it->ps;
    int64_t n = ps->w.inner, r = 0;
    v8d mean, var;
    for (; r + 8 <= nrows; r += 8) {
        if (r + 24 <= nrows)
            prefetch_rows(ps->x + pos.x + 16 * step.x, step.x, n);
        reduce_rows8_alone(it, pos, step, n, OP_MOMENTS, 0, 0, &mean, &var);
        fused_factors8(ps, pos, step, &mean, &var);
        for (int k = 0; k < 8; k++, pos = nd__pos_add(pos, step, 1))
            fused_row_out(ps, pos, n, pI, inplace);
    }
    for (; r < nrows; r++, pos = nd__pos_add(pos, step, 1)) {
        reduce_row_alone(it, pos, n, OP_MOMENTS, 0, 0);
        fused_factors(ps, pos.s);
        fused_row_out(ps, pos, n, pI, inplace);
    }
}

#define FUSED_RUN(name, pI, inplace) ROW_RUN(name, fused_run, pI, inplace)
FUSED_RUN(run_fused_p0, 0, 0)
FUSED_RUN(run_fused_p1, 1, 0)
FUSED_RUN(run_fused_in_p0, 0, 1)
FUSED_RUN(run_fused_in_p1, 1, 1)

static nd__run_fn fused_run_for(const struct pass *ps) {
    static const nd__run_fn runs[2][2] = {{run_fused_p0, run_fused_p1},
                                          {run_fused_in_p0, run_fused_in_p1}};
    return runs[ps->out == ps->x][ps->w.p_inner != 0];
}

// Runs the fused forward and returns true when every statistic is one row of the plan.
static bool forward_fused(const struct nd_norm_plan *plan, float *y, float *a, float *c,
                          double *mean, double *var, const float *x, const float *gamma,
                          const float *beta, double eps, bool centered, double denom,
                          struct nd_pool *pool) {
    if (plan->use_fine || plan->numel == 0 || plan->count == 0)
        return false;
    struct pass ps = {.op = OP_MOMENTS, .centered = centered, .x = x};
    nd__walk_init(&ps.w, plan, ND__KEY_STAT);
    if (ps.w.nrows != 1 || ps.w.nblocks <= 1 || ps.w.s_inner != 0)
        return false;
    ps.sum1 = mean;
    ps.sum2 = var;
    ps.finalize = true;
    ps.inv_count = 1.0 / (double)plan->count;
    ps.fused = true;
    ps.out = y;
    ps.gamma = gamma;
    ps.beta = beta;
    ps.a_out = a;
    ps.c_out = c;
    ps.f_scale = (double)plan->count / denom;
    ps.f_eps = eps;
    ps.stream = streams(plan, y, x);
    run_per_row(&ps, pool);
    return true;
}

void nd_norm_forward(const struct nd_norm_plan *plan, float *y, float *restrict a,
                     float *restrict c, double *restrict mean, double *restrict var, const float *x,
                     const float *gamma, const float *beta, double eps, bool centered, double denom,
                     struct nd_pool *pool, double *restrict scratch) {
#ifdef ND_KERNELS_NAIVE
    nd_norm_forward_naive(plan, y, a, c, mean, var, x, gamma, beta, eps, centered, denom, pool,
                          scratch);
    return;
#endif
    if (forward_fused(plan, y, a, c, mean, var, x, gamma, beta, eps, centered, denom, pool))
        return;
    nd_norm_moments(plan, mean, var, x, centered, pool, scratch);
    struct factors f = {
        a, c, mean, var, plan->count > 0 ? (double)plan->count / denom : 1.0, eps, plan->nstat};
    nd_pool_for(pool, (plan->nstat + FACTOR_SPAN - 1) / FACTOR_SPAN, FACTOR_SPAN * 8, factor_items,
                &f);
    nd_norm_apply(plan, y, x, a, c, gamma, beta, pool, scratch);
}

// ---- backward ----

void nd_norm_param_grads(const struct nd_norm_plan *plan, float *restrict dgamma,
                         float *restrict dbeta, const float *restrict dy, const float *restrict x,
                         const float *restrict a, const float *restrict c, struct nd_pool *pool,
                         double *restrict scratch) {
#ifdef ND_KERNELS_NAIVE
    nd_norm_param_grads_naive(plan, dgamma, dbeta, dy, x, a, c, pool, scratch);
    return;
#endif
    if (!dgamma && !dbeta)
        return;
    if (plan->use_fine && plan->numel > 0) {
        struct fine f;
        fine_begin(plan, scratch, &f);
        fine_expand(plan, &f, f.a, a);
        fine_expand(plan, &f, f.c, c);
        nd_norm_param_grads(&f.plan, dgamma, dbeta, dy, x, f.a, f.c, pool, f.scratch);
        return;
    }
    struct pass ps = {.op = OP_DPARAM, .x = x, .dy = dy, .a = a, .c = c};
    nd__walk_init(&ps.w, plan, ND__KEY_PARAM);
    pass_sums(&ps, plan, scratch);
    if (plan->numel == 0)
        memset(ps.sum1, 0, 2 * (size_t)max_keys(plan) * sizeof(double));
    else
        run_keyed(&ps, pool, scratch);
    for (int64_t p = 0; p < plan->nparam; p++) {
        if (dbeta)
            dbeta[p] = (float)ps.sum1[p];
        if (dgamma)
            dgamma[p] = (float)ps.sum2[p];
    }
}

// From the statistic sums S1 = sum(g), S2 = sum(g*xhat): k_mean = -a*S1/n (0 for RMS),
// k_var = -a*S2/d, then the elementwise dx pass.
// count: the values per statistic (a fine plan's statistics stand for groups of fold_group).
static void finish_input_grad(struct pass *ps, const struct nd_norm_plan *plan, bool centered,
                              double denom, int64_t count, struct nd_pool *pool) {
    float *km = (float *)(ps->sum2 + max_keys(plan));
    float *kv = km + plan->nstat;
    double inv_n = 1.0 / (double)count, inv_d = 1.0 / denom;
    for (int64_t s = 0; s < plan->nstat; s++) {
        km[s] = centered ? (float)(-(double)ps->a[s] * ps->sum1[s] * inv_n) : 0.0f;
        kv[s] = (float)(-(double)ps->a[s] * ps->sum2[s] * inv_d);
    }
    ps->k_mean = km;
    ps->k_var = kv;
    nd__walk_init(&ps->w, plan, ND__KEY_NONE);
    run_elementwise(ps, pool);
}

// The statistic sums over each group's channels, handed back to every channel of the group, so
// the fine plan's dx pass sees the group's sums (with the group's count).
static void fine_fold_sums(const struct nd_norm_plan *plan, struct fine *f, struct pass *ps) {
    for (int64_t s = 0; s < plan->nstat; s++)
        f->mean[s] = f->var[s] = 0.0;
    for (int64_t i = 0; i < f->plan.nstat; i++) {
        f->mean[coarse_of(plan, i)] += ps->sum1[i];
        f->var[coarse_of(plan, i)] += ps->sum2[i];
    }
    for (int64_t i = 0; i < f->plan.nstat; i++) {
        ps->sum1[i] = f->mean[coarse_of(plan, i)];
        ps->sum2[i] = f->var[coarse_of(plan, i)];
    }
}

static void fine_input_grad(const struct nd_norm_plan *plan, float *dx, const float *dy,
                            const float *x, const float *a, const float *c, const float *gamma,
                            bool centered, double denom, struct nd_pool *pool, double *scratch) {
    struct fine f;
    fine_begin(plan, scratch, &f);
    fine_expand(plan, &f, f.a, a);
    fine_expand(plan, &f, f.c, c);
    struct pass ps = {
        .op = OP_DSTAT, .x = x, .dy = dy, .a = f.a, .c = f.c, .gamma = gamma, .out = dx};
    nd__walk_init(&ps.w, &f.plan, ND__KEY_STAT);
    pass_sums(&ps, &f.plan, f.scratch);
    run_keyed(&ps, pool, f.scratch);
    fine_fold_sums(plan, &f, &ps);
    finish_input_grad(&ps, &f.plan, centered, denom, plan->count, pool);
}

void nd_norm_input_grad(const struct nd_norm_plan *plan, float *restrict dx,
                        const float *restrict dy, const float *restrict x, const float *restrict a,
                        const float *restrict c, const float *restrict gamma, bool centered,
                        double denom, struct nd_pool *pool, double *restrict scratch) {
#ifdef ND_KERNELS_NAIVE
    nd_norm_input_grad_naive(plan, dx, dy, x, a, c, gamma, centered, denom, pool, scratch);
    return;
#endif
    if (plan->numel == 0)
        return;
    if (plan->use_fine) {
        fine_input_grad(plan, dx, dy, x, a, c, gamma, centered, denom, pool, scratch);
        return;
    }
    struct pass ps = {.op = OP_DSTAT, .x = x, .dy = dy, .a = a, .c = c, .gamma = gamma, .out = dx};
    nd__walk_init(&ps.w, plan, ND__KEY_STAT);
    pass_sums(&ps, plan, scratch);
    run_keyed(&ps, pool, scratch);
    finish_input_grad(&ps, plan, centered, denom, plan->count, pool);
}

void nd_norm_backward(const struct nd_norm_plan *plan, float *restrict dx, float *restrict dgamma,
                      float *restrict dbeta, const float *restrict dy, const float *restrict x,
                      const float *restrict a, const float *restrict c, const float *restrict gamma,
                      bool centered, double denom, struct nd_pool *pool, double *restrict scratch) {
#ifdef ND_KERNELS_NAIVE
    nd_norm_backward_naive(plan, dx, dgamma, dbeta, dy, x, a, c, gamma, centered, denom, pool,
                           scratch);
    return;
#endif
    if (!plan->param_is_stat || !dx || plan->numel == 0) {
        nd_norm_param_grads(plan, dgamma, dbeta, dy, x, a, c, pool, scratch);
        if (dx)
            nd_norm_input_grad(plan, dx, dy, x, a, c, gamma, centered, denom, pool, scratch);
        return;
    }
    // Batch norm: sum(dy*gamma) = gamma*sum(dy) per channel, so one keyed pass serves both.
    struct pass ps = {.op = OP_DPARAM, .x = x, .dy = dy, .a = a, .c = c, .gamma = gamma, .out = dx};
    nd__walk_init(&ps.w, plan, ND__KEY_PARAM);
    pass_sums(&ps, plan, scratch);
    run_keyed(&ps, pool, scratch);
    for (int64_t p = 0; p < plan->nparam; p++) {
        if (dbeta)
            dbeta[p] = (float)ps.sum1[p];
        if (dgamma)
            dgamma[p] = (float)ps.sum2[p];
        double g = gamma ? gamma[p] : 1.0;
        ps.sum1[p] *= g;
        ps.sum2[p] *= g;
    }
    finish_input_grad(&ps, plan, centered, denom, plan->count, pool);
}
