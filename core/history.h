// history.h - a layer's training history: a bounded ring of train-step records (GET
// /v1/layers/{name}/history).
//
// One record per committed train-step, appended under the layer's write lock after the step
// changed the layer; the oldest falls out once ND_HISTORY_CAPACITY are held. The ring is one
// allocation of fixed size, made (and counted in the layer's memory budget) before the first
// step that records, so recording never allocates and never fails. Stored with the layer
// (codec.c, format version 3) and carried by the binary export.
//
// Not thread-safe by itself: the owner's lock guards it (the layer's rwlock).
#ifndef ND_HISTORY_H
#define ND_HISTORY_H

#include <stdbool.h>
#include <stdint.h>

#include "core/budget.h"
#include "core/optim.h"
#include "core/status.h"

#define ND_HISTORY_CAPACITY 256

// Which optional fields of a record hold a value (the others are null in the API).
enum nd_history_flags {
    ND_HISTORY_LOSS = 1u << 0,      // loss: the step had a target
    ND_HISTORY_STATS = 1u << 1,     // batch_*_norm: the step normalized with batch statistics
    ND_HISTORY_OPTIMIZER = 1u << 2, // optimizer, learning_rate: the step had a gradient
    ND_HISTORY_ALL = (1u << 3) - 1,
};

// One train-step, as plain data.
struct nd_history_record {
    uint64_t version;                            // the layer's version after the step
    int64_t train_step;                          // the layer's train_steps counter after the step
    double time;                                 // wall clock, unix seconds
    uint32_t flags;                              // enum nd_history_flags
    double loss;                                 // mean((y - target)^2), with ND_HISTORY_LOSS
    double batch_mean_norm, batch_variance_norm; // L2 norms of the statistics, ND_HISTORY_STATS
    enum nd_optimizer_kind optimizer;            // with ND_HISTORY_OPTIMIZER
    double learning_rate;                        // the optimizer's, with ND_HISTORY_OPTIMIZER
};

// The ring. Caller-embedded: zero-initialize (empty, nothing allocated); release with
// nd_history_deinit.
struct nd_history {
    struct nd_history_record *ring; // (ND_HISTORY_CAPACITY), owned; NULL until first needed
    int32_t head;                   // index of the oldest record
    int32_t count;                  // records held, <= ND_HISTORY_CAPACITY
    uint64_t total;                 // records ever appended (count plus those that fell out)
    struct nd_budget *budget;       // where the ring's bytes are counted (a reference), or NULL
    int64_t charged;
};

// Bytes the ring takes once allocated (what is counted in a budget).
int64_t nd_history_ring_bytes(void);

// Where a history stands, to put it back there (nd_history_rewind) when appends made since are
// undone: its counters and the record the next append overwrites once the ring is full.
struct nd_history_mark {
    int32_t head, count;
    uint64_t total;
    struct nd_history_record next;
};

void nd_history_mark(const struct nd_history *h, struct nd_history_mark *m);

// Back to the mark, undoing the appends since it (at most one: a later one may have overwritten
// a record the mark does not hold). The ring stays allocated.
void nd_history_rewind(struct nd_history *h, const struct nd_history_mark *m);

// Frees the ring, gives its bytes back to the budget and zeroes *h. NULL-safe.
void nd_history_deinit(struct nd_history *h);

// Makes sure the ring is allocated, its bytes taken from budget first (NULL: not counted), so
// that nd_history_append cannot fail. ND_STATUS_OUT_OF_MEMORY (nothing changed) when the budget
// cannot hold it or the allocation fails. A no-op once allocated.
enum nd_status nd_history_reserve(struct nd_history *h, struct nd_budget *budget,
                                  struct nd_error *err);

// Counts an allocated ring made without a budget (one loaded from a file) in budget, whatever
// its limit. No-op without a ring, when counted already, or for a NULL budget.
void nd_history_charge(struct nd_history *h, struct nd_budget *budget);

// Appends a record, dropping the oldest when full, and counts it in total. The ring must have
// been reserved (without one the record is dropped, and not counted).
void nd_history_append(struct nd_history *h, const struct nd_history_record *rec);

// Copies the newest min(limit, count) records into out (room for ND_HISTORY_CAPACITY), oldest
// first; limit <= 0 means all. Returns how many.
int32_t nd_history_copy(const struct nd_history *h, int32_t limit, struct nd_history_record *out);

// Replaces dst's contents with src's, moving src's ring (no copy, no allocation): dst's own
// ring is freed and its bytes given back; src is left empty. The ring moved is counted nowhere
// (nd_history_charge).
void nd_history_move(struct nd_history *dst, struct nd_history *src);

// A copy of src into dst (zeroed or deinitialized first), its ring counted nowhere
// (nd_history_charge). ND_STATUS_OUT_OF_MEMORY (dst left empty) when the ring cannot be
// allocated.
enum nd_status nd_history_clone(struct nd_history *dst, const struct nd_history *src,
                                struct nd_error *err);

// True when a record could have been written by nd_history_append's callers: known flags only,
// time finite, every flagged value finite and >= 0, the optimizer a known kind. Fields a flag
// does not cover are not looked at.
bool nd_history_record_valid(const struct nd_history_record *rec);

// The L2 norm of v (n values), accumulated in double.
double nd_history_norm(const double *v, int64_t n);

#endif
