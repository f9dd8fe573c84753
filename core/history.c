// history.c - the train-step ring of a layer (see history.h).
#include <math.h>
#include <string.h>

#include "core/alloc.h"
#include "core/history.h"

int64_t nd_history_ring_bytes(void) {
    return (int64_t)(ND_HISTORY_CAPACITY * sizeof(struct nd_history_record));
}

void nd_history_deinit(struct nd_history *h) {
    if (!h)
        return;
    nd_free(h->ring);
    nd_budget_give(h->budget, h->charged);
    nd_budget_unref(h->budget);
    memset(h, 0, sizeof *h);
}

enum nd_status nd_history_reserve(struct nd_history *h, struct nd_budget *budget,
                                  struct nd_error *err) {
    if (h->ring)
        return ND_STATUS_OK;
    int64_t bytes = nd_history_ring_bytes();
    if (!nd_budget_take(budget, bytes))
        return nd_error_set(err, ND_STATUS_OUT_OF_MEMORY,
                            "the memory budget cannot hold the layer's training history now "
                            "(%lld bytes)",
                            (long long)bytes);
    h->ring = nd_alloc_aligned((size_t)bytes);
    if (!h->ring) {
        nd_budget_give(budget, bytes);
        return nd_error_set(err, ND_STATUS_OUT_OF_MEMORY, "cannot allocate the training history");
    }
    h->budget = budget;
    h->charged = budget ? bytes : 0;
    nd_budget_ref(budget);
    return ND_STATUS_OK;
}

void nd_history_charge(struct nd_history *h, struct nd_budget *budget) {
    if (!h->ring || h->budget || !budget)
        return;
    h->budget = budget;
    h->charged = nd_history_ring_bytes();
    nd_budget_ref(budget);
    nd_budget_add(budget, h->charged);
}

void nd_history_append(struct nd_history *h, const struct nd_history_record *rec) {
    if (!h->ring)
        return;
    if (h->count < ND_HISTORY_CAPACITY) {
        h->ring[(h->head + h->count) % ND_HISTORY_CAPACITY] = *rec;
        h->count++;
    } else { // full: the newest takes the oldest's slot
        h->ring[h->head] = *rec;
        h->head = (h->head + 1) % ND_HISTORY_CAPACITY;
    }
    h->total++;
}

void nd_history_mark(const struct nd_history *h, struct nd_history_mark *m) {
    memset(m, 0, sizeof *m);
    m->head = h->head;
    m->count = h->count;
    m->total = h->total;
    if (h->ring && h->count == ND_HISTORY_CAPACITY)
        m->next = h->ring[h->head];
}

void nd_history_rewind(struct nd_history *h, const struct nd_history_mark *m) {
    if (h->ring && m->count == ND_HISTORY_CAPACITY && h->total != m->total)
        h->ring[m->head] = m->next; // the append took the oldest record's slot
    h->head = m->head;
    h->count = m->count;
    h->total = m->total;
}

int32_t nd_history_copy(const struct nd_history *h, int32_t limit, struct nd_history_record *out) {
    int32_t n = limit > 0 && limit < h->count ? limit : h->count;
    int32_t skip = h->count - n; // the oldest ones left out
    for (int32_t i = 0; i < n; i++)
        out[i] = h->ring[(h->head + skip + i) % ND_HISTORY_CAPACITY];
    return n;
}

void nd_history_move(struct nd_history *dst, struct nd_history *src) {
    nd_history_deinit(dst);
    *dst = *src;
    dst->budget = NULL; // src's charge, if any, stays with src's budget: give it back there
    dst->charged = 0;
    nd_budget_give(src->budget, src->charged);
    nd_budget_unref(src->budget);
    memset(src, 0, sizeof *src);
}

enum nd_status nd_history_clone(struct nd_history *dst, const struct nd_history *src,
                                struct nd_error *err) {
    memset(dst, 0, sizeof *dst);
    if (src->count > 0) {
        enum nd_status st = nd_history_reserve(dst, NULL, err);
        if (st != ND_STATUS_OK)
            return st;
        dst->count = nd_history_copy(src, 0, dst->ring); // oldest at 0
    }
    dst->total = src->total;
    return ND_STATUS_OK;
}

static bool finite_nonnegative(double v) {
    return isfinite(v) && v >= 0.0;
}

bool nd_history_record_valid(const struct nd_history_record *rec) {
    uint32_t f = rec->flags;
    if ((f & ~(uint32_t)ND_HISTORY_ALL) || !isfinite(rec->time))
        return false;
    if ((f & ND_HISTORY_LOSS) && !finite_nonnegative(rec->loss))
        return false;
    if ((f & ND_HISTORY_STATS) && (!finite_nonnegative(rec->batch_mean_norm) ||
                                   !finite_nonnegative(rec->batch_variance_norm)))
        return false;
    if ((f & ND_HISTORY_OPTIMIZER) &&
        ((unsigned)rec->optimizer >= ND_OPTIMIZER_COUNT || !finite_nonnegative(rec->learning_rate)))
        return false;
    return true;
}

double nd_history_norm(const double *v, int64_t n) {
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++)
        sum += v[i] * v[i];
    return sqrt(sum);
}
