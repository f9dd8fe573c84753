// budget.c - a lock-free memory budget (see budget.h).
#include "core/budget.h"

#include <stddef.h>
#include <stdlib.h>

struct nd_budget *nd_budget_create(int64_t limit) {
    struct nd_budget *b = malloc(sizeof *b);
    if (!b)
        return NULL;
    atomic_init(&b->used, 0);
    atomic_init(&b->refs, 1);
    b->limit = limit;
    return b;
}

void nd_budget_ref(struct nd_budget *b) {
    if (b)
        atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
}

void nd_budget_unref(struct nd_budget *b) {
    if (b && atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) == 1)
        free(b);
}

bool nd_budget_take(struct nd_budget *b, int64_t bytes) {
    if (!b || bytes <= 0)
        return true;
    int64_t used = atomic_load_explicit(&b->used, memory_order_relaxed);
    do {
        if (b->limit > 0 && (bytes > b->limit || used > b->limit - bytes))
            return false;
    } while (!atomic_compare_exchange_weak_explicit(&b->used, &used, used + bytes,
                                                    memory_order_relaxed, memory_order_relaxed));
    return true;
}

void nd_budget_add(struct nd_budget *b, int64_t bytes) {
    if (b && bytes > 0)
        atomic_fetch_add_explicit(&b->used, bytes, memory_order_relaxed);
}

void nd_budget_give(struct nd_budget *b, int64_t bytes) {
    if (b && bytes > 0)
        atomic_fetch_sub_explicit(&b->used, bytes, memory_order_relaxed);
}

int64_t nd_budget_used(const struct nd_budget *b) {
    return b ? atomic_load_explicit(&b->used, memory_order_relaxed) : 0;
}

bool nd_budget_never_fits(const struct nd_budget *b, int64_t bytes) {
    return b && b->limit > 0 && bytes > b->limit;
}
