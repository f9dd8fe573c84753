// pool.h - the engine's worker threads, parallel_for, and the locks the rest of core uses.
//
// One pool serves every request of a process. Several threads may call nd_pool_for at once
// (one per request in flight): each call becomes a job whose items any idle worker takes, and
// the calling thread works on its own job too, so a call always progresses even when every
// worker is busy with a larger job. Results never depend on which thread ran an item, so
// kernels that reduce per item and combine items in item order are bit-identical whatever the
// number of threads.
//
// pool.c is the only core file that includes <pthread.h>: the rw-locks and mutexes of layers
// and the registry are wrapped here.
#ifndef ND_POOL_H
#define ND_POOL_H

#include <stdbool.h>
#include <stdint.h>

#include "core/status.h"

struct nd_pool;

// Runs items [begin, end) of a job. Called from the caller's thread or from a worker; must not
// call nd_pool_for itself (nesting is not supported) and must not fail.
typedef void (*nd_pool_fn)(void *ctx, int64_t begin, int64_t end);

// Below this many elements of work (nitems * item_cost) a job runs on the calling thread: a
// hand-off to a worker and back costs about as much as scaling this much data (measured with
// make bench, see README).
#define ND_POOL_INLINE_ELEMS_DEFAULT ((int64_t)32768)

// Creates a pool in which nthreads threads (the caller plus nthreads - 1 workers) share every
// job; nthreads must be in 1..256. Caller owns; free with nd_pool_free.
enum nd_status nd_pool_create(struct nd_pool **out, int nthreads, struct nd_error *err);

// Stops and joins the workers. No nd_pool_for may be running. NULL-safe.
void nd_pool_free(struct nd_pool *pool);

// The nthreads given at creation; 1 for a NULL pool.
int nd_pool_threads(const struct nd_pool *pool);

// Sets the inline threshold in elements (0 or less: hand off whenever nthreads > 1). Not
// thread-safe against concurrent nd_pool_for; set it before use (tests and benchmarks).
void nd_pool_set_inline_elems(struct nd_pool *pool, int64_t elems);

// Calls fn over [0, nitems) in contiguous, non-empty ranges, each item exactly once, and returns
// when every item has run; what fn wrote is then visible to the caller. item_cost is the
// approximate number of elements one item touches (values < 1 count as 1); it decides whether
// the job stays on the calling thread (a NULL pool, a 1-thread pool, nitems == 1, or
// nitems * item_cost below the inline threshold: then fn(ctx, 0, nitems) runs once, here) and
// how many items a thread claims at a time. nitems <= 0 returns without calling fn.
// Thread-safe: any number of threads may call it concurrently; each caller works on its own
// job, so it progresses even while every worker is busy with older jobs.
void nd_pool_for(struct nd_pool *pool, int64_t nitems, int64_t item_cost, nd_pool_fn fn, void *ctx);

// ---- locks ----

// A readers-writer lock (shared for forwards, exclusive for train-steps and writes). Writers
// are preferred where the C library allows (glibc): once a writer waits, new readers queue
// behind it, so a stream of forwards cannot starve a train-step. Not recursive: a thread must
// not take the lock again while holding it (a second rdlock behind a waiting writer deadlocks).
struct nd_rwlock;

// Caller owns; free with nd_rwlock_free (NULL-safe; must not be held).
enum nd_status nd_rwlock_create(struct nd_rwlock **out, struct nd_error *err);
void nd_rwlock_free(struct nd_rwlock *lock);
void nd_rwlock_rdlock(struct nd_rwlock *lock);
// Takes the lock shared only if that needs no wait (no writer holds or waits for it); true when
// taken. For callers on an event loop, which must never block.
bool nd_rwlock_tryrdlock(struct nd_rwlock *lock);
// Takes the lock exclusively only if nobody holds it; true when taken.
bool nd_rwlock_trywrlock(struct nd_rwlock *lock);
void nd_rwlock_wrlock(struct nd_rwlock *lock);
void nd_rwlock_unlock(struct nd_rwlock *lock);

// A plain mutex. Caller owns; free with nd_mutex_free (NULL-safe; must not be held).
struct nd_mutex;
enum nd_status nd_mutex_create(struct nd_mutex **out, struct nd_error *err);
void nd_mutex_free(struct nd_mutex *lock);
void nd_mutex_lock(struct nd_mutex *lock);
void nd_mutex_unlock(struct nd_mutex *lock);

#endif
