// budget.h - a memory budget: bytes taken before they are allocated, given back after.
//
// One budget per engine (--max-memory). Whoever is about to allocate memory a client's request
// asks for (a body being received, parsed tensors, outputs, reply text, a new layer's arrays)
// takes the bytes first; past the limit the request is refused (503, or 413 when it could
// never fit) instead of the process meeting the OOM killer. Lock-free; thread-safe.
#ifndef ND_BUDGET_H
#define ND_BUDGET_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct nd_budget {
    _Atomic int64_t used;
    int64_t limit; // bytes; <= 0: no limit (used is still counted)
    atomic_int refs;
};

// A budget of limit bytes (<= 0: unlimited), nothing taken, or NULL when out of memory.
// Reference-counted, because what is counted in it may outlive its creator (a layer a request
// still holds after the engine is freed): caller owns one reference; nd_budget_unref.
struct nd_budget *nd_budget_create(int64_t limit);

// Takes / drops a reference (the last one frees it). NULL-safe; thread-safe.
void nd_budget_ref(struct nd_budget *b);
void nd_budget_unref(struct nd_budget *b);

// Takes bytes when used + bytes stays within the limit; false (nothing taken) otherwise, or
// for bytes <= 0 or a NULL budget (a caller without one), which always succeed.
bool nd_budget_take(struct nd_budget *b, int64_t bytes);

// Counts bytes already allocated whatever the limit (a reply text that now outlives the
// request's own reservations). NULL-safe.
void nd_budget_add(struct nd_budget *b, int64_t bytes);

// Gives back bytes taken earlier. NULL-safe.
void nd_budget_give(struct nd_budget *b, int64_t bytes);

// Bytes taken now; 0 for NULL.
int64_t nd_budget_used(const struct nd_budget *b);

// True when bytes alone exceed the limit: a request that can never fit (413 rather than 503).
bool nd_budget_never_fits(const struct nd_budget *b, int64_t bytes);

#endif
