// pool.c - the engine's worker threads (a queue of parallel-for jobs) and the lock wrappers.
//
// Shape: one mutex guards a FIFO of jobs and the workers' sleep; the items of a job are handed
// out with a lock-free claim counter, so no lock is held while fn runs.
//
//   nd_pool_for (caller)                       worker
//   --------------------                       ------
//   lock; append job; unlock; wake k workers   lock; job = oldest job with unclaimed items
//   claim ranges of the job and run them       (none: sleep on work_cv); holders++; unlock
//   lock; unlink job; wait holders == 0        claim ranges and run them until none remain
//   unlock; return                             lock; holders--; wake the caller if 0
//
// Why this is correct: once the caller's own claim loop ends every item is claimed, and every
// claimed range is run by its claimer before that thread lets go of the job. Workers only take
// a job under the mutex while it is queued and only let go of it under the mutex, so after the
// caller has unlinked the job and seen holders == 0 (both under the mutex) no thread is running
// or can start running an item of it. The same mutex orders each worker's writes in fn before
// the caller's return (unlock by the worker, lock by the caller), which is the visibility
// guarantee nd_pool_for promises. The job lives on the caller's stack for exactly that span.

// For pthread_rwlockattr_setkind_np (writer preference, see nd_rwlock_create); everything else
// here is POSIX.
#define _GNU_SOURCE
#include "core/pool.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "core/alloc.h"

#define POOL_MAX_THREADS 256
// A thread claims about this many elements of work at a time: large enough that one claim
// (one contended atomic) is noise next to the work and that each thread streams long runs of
// memory, small enough for a late thread to help. 16384 (64 KB claims, the two threads'
// alternating) lost a quarter of the second thread's bandwidth: make bench's interleaved
// reference measured 74-79% with it, 88-96% with 256K (1 MB of floats).
#define POOL_GRAIN_ELEMS ((int64_t)262144)
// ...but at most 1 / (POOL_BALANCE_PARTS * nthreads) of the items, so that threads that start
// late or run slower still find work.
#define POOL_BALANCE_PARTS 4
// Claims shrink as a share runs out ("guided", as OpenMP calls it): each is the share's remaining
// items over POOL_GUIDED_PARTS, within the cap above and at least POOL_MIN_CLAIM_ELEMS of
// work, so the last claims, the ones a thread that finished waits on, are short: with a fixed
// eighth of the items per claim at two threads, the thread that finished first waited on
// average half a claim, 6% of every pass.
#define POOL_GUIDED_PARTS    2
#define POOL_MIN_CLAIM_ELEMS ((int64_t)32768)
// A worker that finds no job watches for one this long before it sleeps on the condition
// variable: consecutive passes of one operation (moments, factors, apply) then start on both
// threads at once instead of one futex wake-up (tens of microseconds) later. Bounded, so an
// idle server's workers still sleep.
#define POOL_SPIN_NS    ((int64_t)50000)
#define POOL_CACHE_LINE 64

// ---- private types ----------------------------------------------------------------------------

// A job's items are split into one contiguous share per thread ("home"): the caller's is the
// first, worker w's the (w % nslots)-th. A thread claims from its own share first, then from the
// others' (stealing, so that a late or slow thread's share still ends together). Why homes: each
// thread then touches the same part of a tensor in every pass and every call, which stays in
// the caches of its core; with one shared counter the halves changed threads from pass to pass.
// Measured on the 2-vCPU machine: a 25 MB tensor's scale-add and batch norm at 2 threads moved
// at DRAM speed (~73 GB/s) where a static OpenMP STREAM over the same size reached 100-127 GB/s,
// the two vCPUs' last-level caches together holding what one could not.
#define POOL_MAX_SLOTS 16

// The claim counter and end of one share, on its own cache line: claims on one share do not
// invalidate the others'.
struct pool_slot {
    alignas(POOL_CACHE_LINE) _Atomic int64_t next; // first unclaimed item of the share
    int64_t end;                                   // read-only after submission
};

// One nd_pool_for call. Lives on the caller's stack from submission until nd_pool_for returns.
struct pool_job {
    struct pool_slot slot[POOL_MAX_SLOTS];
    alignas(POOL_CACHE_LINE) int64_t nitems; // read-only after submission
    int nslots;                              // shares, 1..POOL_MAX_SLOTS
    int64_t grain, min_grain;                // items per claim: at most, at least (>= 1)
    nd_pool_fn fn;
    void *ctx;
    // Guarded by pool->mu.
    struct pool_job *older, *newer; // queue links
    int holders;                    // workers that hold a pointer to this job
    bool waiting;                   // the caller sleeps on done_cv until holders == 0
};

struct nd_pool {
    pthread_mutex_t mu;
    pthread_cond_t work_cv; // workers: a job with unclaimed items was queued, or stopping
    pthread_cond_t done_cv; // callers: some waiting job's holders dropped to 0
    // Guarded by mu.
    struct pool_job *oldest, *newest;
    bool stopping;
    // Jobs submitted so far; spinning workers watch it without the mutex.
    alignas(POOL_CACHE_LINE) _Atomic uint64_t submitted;
    // Read-only after create (inline_elems: see nd_pool_set_inline_elems).
    int nthreads;
    int nworkers; // workers actually started, joined by nd_pool_free
    int64_t inline_elems;
    struct pool_worker *workers; // (nthreads - 1), in the same allocation
};

// A worker's thread and the share of every job it starts from (see struct pool_slot).
struct pool_worker {
    pthread_t thread;
    struct nd_pool *pool;
    int home;
};

// ---- jobs -------------------------------------------------------------------------------------

static int64_t min_i64(int64_t a, int64_t b) {
    return a < b ? a : b;
}

static int64_t max_i64(int64_t a, int64_t b) {
    return a > b ? a : b;
}

// Claim sizes and shares of a job of nitems items of item_cost elements each.
static void job_setup(struct pool_job *job, int nthreads, int64_t item_cost) {
    int64_t cost = item_cost > 0 ? item_cost : 1;
    int64_t by_cost = max_i64(1, POOL_GRAIN_ELEMS / cost);
    int64_t parts = (int64_t)POOL_BALANCE_PARTS * nthreads;
    int64_t by_balance = job->nitems / parts + (job->nitems % parts != 0);
    job->grain = min_i64(by_cost, by_balance); // >= 1: nitems >= 1
    job->min_grain = min_i64(job->grain, max_i64(1, POOL_MIN_CLAIM_ELEMS / cost));
    job->nslots = (int)min_i64(min_i64(nthreads, POOL_MAX_SLOTS), job->nitems);
    for (int k = 0; k < job->nslots; k++) {
        int64_t begin = job->nitems / job->nslots * k + min_i64(k, job->nitems % job->nslots);
        atomic_init(&job->slot[k].next, begin);
        job->slot[k].end = begin + job->nitems / job->nslots + (k < job->nitems % job->nslots);
    }
}

// The size of a claim from a share with remaining items left: guided (see POOL_GUIDED_PARTS).
static int64_t job_claim_size(const struct pool_job *job, int64_t remaining) {
    int64_t guided = max_i64(job->min_grain, min_i64(job->grain, remaining / POOL_GUIDED_PARTS));
    return min_i64(guided, remaining);
}

// Claims the next range [*begin, *end) of share k; false once the share is all claimed.
// A compare-exchange rather than fetch_add so that next never passes the share's end: it cannot
// overflow however large nitems is. Relaxed order is enough: the claim only splits indices
// between threads; the job's fields and fn's results are ordered by pool->mu (see the top).
static bool slot_claim(struct pool_job *job, int k, int64_t *begin, int64_t *end) {
    struct pool_slot *s = &job->slot[k];
    int64_t cur = atomic_load_explicit(&s->next, memory_order_relaxed);
    while (cur < s->end) {
        int64_t stop = cur + job_claim_size(job, s->end - cur);
        if (atomic_compare_exchange_weak_explicit(&s->next, &cur, stop, memory_order_relaxed,
                                                  memory_order_relaxed)) {
            *begin = cur;
            *end = stop;
            return true;
        }
    }
    return false;
}

// Runs ranges of job until every item is claimed: the home share first, then the others'.
static void job_work(struct pool_job *job, int home) {
    int64_t begin, end;
    for (int i = 0; i < job->nslots; i++) {
        int k = (home + i) % job->nslots;
        while (slot_claim(job, k, &begin, &end))
            job->fn(job->ctx, begin, end);
    }
}

static bool job_has_unclaimed(struct pool_job *job) {
    for (int k = 0; k < job->nslots; k++)
        if (atomic_load_explicit(&job->slot[k].next, memory_order_relaxed) < job->slot[k].end)
            return true;
    return false;
}

// ---- the queue (all under pool->mu) -----------------------------------------------------------

static void queue_push(struct nd_pool *pool, struct pool_job *job) {
    job->older = pool->newest;
    job->newer = NULL;
    if (pool->newest)
        pool->newest->newer = job;
    else
        pool->oldest = job;
    pool->newest = job;
}

static void queue_unlink(struct nd_pool *pool, struct pool_job *job) {
    if (job->older)
        job->older->newer = job->newer;
    else
        pool->oldest = job->newer;
    if (job->newer)
        job->newer->older = job->older;
    else
        pool->newest = job->older;
    job->older = job->newer = NULL;
}

// The oldest queued job that still has unclaimed items, or NULL. Exhausted jobs stay queued
// until their caller unlinks them; the queue holds at most one job per caller thread, so
// the walk is short.
static struct pool_job *queue_pick(struct nd_pool *pool) {
    for (struct pool_job *job = pool->oldest; job; job = job->newer)
        if (job_has_unclaimed(job))
            return job;
    return NULL;
}

// ---- workers ----------------------------------------------------------------------------------

static int64_t monotonic_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

// Watches pool->submitted for up to POOL_SPIN_NS without the mutex; true when it moved past seen.
static bool spin_for_job(struct nd_pool *pool, uint64_t seen) {
    int64_t deadline = monotonic_ns() + POOL_SPIN_NS;
    for (int i = 1;; i++) {
        if (atomic_load_explicit(&pool->submitted, memory_order_relaxed) != seen)
            return true;
        cpu_relax();
        if (i % 64 == 0 && monotonic_ns() > deadline)
            return false;
    }
}

static void *worker_main(void *arg) {
    struct pool_worker *self = arg;
    struct nd_pool *pool = self->pool;
    bool may_spin = false; // after a job: watch for the next one before sleeping
    pthread_mutex_lock(&pool->mu);
    for (;;) {
        struct pool_job *job = queue_pick(pool);
        if (!job) {
            if (pool->stopping)
                break;
            if (may_spin) {
                may_spin = false;
                uint64_t seen = atomic_load_explicit(&pool->submitted, memory_order_relaxed);
                pthread_mutex_unlock(&pool->mu);
                spin_for_job(pool, seen);
                pthread_mutex_lock(&pool->mu);
                continue; // look again under mu, whatever the spin saw
            }
            // The check above and this wait are under mu, and jobs are queued under mu,
            // so a job queued in between cannot be missed (no lost wakeup).
            pthread_cond_wait(&pool->work_cv, &pool->mu);
            continue;
        }
        may_spin = true;
        job->holders++; // pins the job: its caller cannot return while holders > 0
        pthread_mutex_unlock(&pool->mu);
        job_work(job, self->home);
        pthread_mutex_lock(&pool->mu);
        if (--job->holders == 0 && job->waiting)
            pthread_cond_broadcast(&pool->done_cv); // several callers may share done_cv
    }
    pthread_mutex_unlock(&pool->mu);
    return NULL;
}

// Queues job and wakes as many sleeping workers as it has ranges beyond the caller's first.
static void pool_submit(struct nd_pool *pool, struct pool_job *job) {
    int64_t ranges = job->nitems / job->min_grain + (job->nitems % job->min_grain != 0);
    int64_t wake = min_i64(ranges - 1, pool->nworkers);
    pthread_mutex_lock(&pool->mu);
    queue_push(pool, job);
    atomic_fetch_add_explicit(&pool->submitted, 1, memory_order_relaxed);
    pthread_mutex_unlock(&pool->mu);
    // Signalled after unlocking so a woken worker does not block on mu at once. Signals that
    // find no sleeper are lost harmlessly: a busy worker checks the queue before sleeping.
    for (int64_t i = 0; i < wake; i++)
        pthread_cond_signal(&pool->work_cv);
}

// Called once the caller's claim loop ended: takes job out of reach of idle workers and waits
// until those already in it have finished their last range (see the top of the file).
static void pool_retire(struct nd_pool *pool, struct pool_job *job) {
    pthread_mutex_lock(&pool->mu);
    queue_unlink(pool, job);
    job->waiting = true;
    while (job->holders > 0)
        pthread_cond_wait(&pool->done_cv, &pool->mu);
    pthread_mutex_unlock(&pool->mu);
}

static bool pool_runs_inline(const struct nd_pool *pool, int64_t nitems, int64_t item_cost) {
    if (!pool || pool->nthreads == 1 || nitems <= 1)
        return true;
    int64_t elems;
    if (!nd_count_mul(nitems, item_cost > 0 ? item_cost : 1, &elems))
        return false; // overflow: more work than any threshold
    return elems < pool->inline_elems;
}

// ---- lifecycle helpers ------------------------------------------------------------------------

// pthread creation and init calls report lack of resources (threads, memory) as EAGAIN or
// ENOMEM, which a caller may retry later; anything else is a bug or a broken system.
static enum nd_status status_of_errno(int rc) {
    return rc == EAGAIN || rc == ENOMEM ? ND_STATUS_OUT_OF_MEMORY : ND_STATUS_INTERNAL;
}

// Initializes the mutex and condition variables; on failure nothing is left initialized.
static enum nd_status pool_init_sync(struct nd_pool *pool, struct nd_error *err) {
    if (pthread_mutex_init(&pool->mu, NULL) != 0)
        return nd_error_set(err, ND_STATUS_INTERNAL, "thread pool: cannot create a mutex");
    if (pthread_cond_init(&pool->work_cv, NULL) != 0)
        goto fail_mu;
    if (pthread_cond_init(&pool->done_cv, NULL) != 0)
        goto fail_work;
    return ND_STATUS_OK;
fail_work:
    pthread_cond_destroy(&pool->work_cv);
fail_mu:
    pthread_mutex_destroy(&pool->mu);
    return nd_error_set(err, ND_STATUS_INTERNAL, "thread pool: cannot create a condition");
}

// Starts nthreads - 1 workers; on failure pool->nworkers says how many run (nd_pool_free
// stops them).
static enum nd_status pool_start_workers(struct nd_pool *pool, struct nd_error *err) {
    for (int i = 0; i < pool->nthreads - 1; i++) {
        pool->workers[i] = (struct pool_worker){.pool = pool, .home = i + 1};
        int rc = pthread_create(&pool->workers[i].thread, NULL, worker_main, &pool->workers[i]);
        if (rc != 0) {
            return nd_error_set(err, status_of_errno(rc),
                                "thread pool: cannot start worker %d of %d (error %d)", i + 1,
                                pool->nthreads - 1, rc);
        }
        pool->nworkers = i + 1;
    }
    return ND_STATUS_OK;
}

// ---- public: the pool -------------------------------------------------------------------------

enum nd_status nd_pool_create(struct nd_pool **out, int nthreads, struct nd_error *err) {
    if (!out)
        return nd_error_set(err, ND_STATUS_INVALID_ARGUMENT, "nd_pool_create: out is NULL");
    *out = NULL;
    if (nthreads < 1 || nthreads > POOL_MAX_THREADS)
        return nd_error_set(err, ND_STATUS_INVALID_VALUE, "thread count must be in 1..%d, got %d",
                            POOL_MAX_THREADS, nthreads);
    size_t bytes = sizeof(struct nd_pool) + (size_t)(nthreads - 1) * sizeof(struct pool_worker);
    struct nd_pool *pool = nd_calloc_aligned(bytes);
    if (!pool)
        return nd_error_set(err, ND_STATUS_OUT_OF_MEMORY, "thread pool: out of memory");
    pool->nthreads = nthreads;
    pool->workers = (struct pool_worker *)(pool + 1); // sizeof(*pool) keeps its alignment
    atomic_init(&pool->submitted, 0);
    pool->inline_elems = ND_POOL_INLINE_ELEMS_DEFAULT;
    enum nd_status st = pool_init_sync(pool, err);
    if (st != ND_STATUS_OK) {
        nd_free(pool);
        return st;
    }
    st = pool_start_workers(pool, err);
    if (st != ND_STATUS_OK) {
        nd_pool_free(pool); // joins the workers that did start
        return st;
    }
    *out = pool;
    return ND_STATUS_OK;
}

void nd_pool_free(struct nd_pool *pool) {
    if (!pool)
        return;
    pthread_mutex_lock(&pool->mu);
    pool->stopping = true;
    pthread_mutex_unlock(&pool->mu);
    pthread_cond_broadcast(&pool->work_cv);
    for (int i = 0; i < pool->nworkers; i++)
        pthread_join(pool->workers[i].thread, NULL);
    pthread_cond_destroy(&pool->done_cv);
    pthread_cond_destroy(&pool->work_cv);
    pthread_mutex_destroy(&pool->mu);
    nd_free(pool);
}

int nd_pool_threads(const struct nd_pool *pool) {
    return pool ? pool->nthreads : 1;
}

void nd_pool_set_inline_elems(struct nd_pool *pool, int64_t elems) {
    if (pool)
        pool->inline_elems = elems > 0 ? elems : 0;
}

void nd_pool_for(struct nd_pool *pool, int64_t nitems, int64_t item_cost, nd_pool_fn fn,
                 void *ctx) {
    if (nitems <= 0)
        return;
    if (pool_runs_inline(pool, nitems, item_cost)) {
        fn(ctx, 0, nitems);
        return;
    }
    struct pool_job job = {.nitems = nitems, .fn = fn, .ctx = ctx};
    job_setup(&job, pool->nthreads, item_cost);
    pool_submit(pool, &job);
    job_work(&job, 0); // the caller always works on its own job: it progresses even if
                       // every worker is busy with older jobs
    pool_retire(pool, &job);
}

// ---- public: locks ----------------------------------------------------------------------------

// Each lock gets its own cache line (nd_alloc_aligned): a lock word that shares a line with
// hot data of a neighbour would bounce between cores on every acquire.
struct nd_rwlock {
    pthread_rwlock_t rw;
};

struct nd_mutex {
    pthread_mutex_t mu;
};

// glibc's default rw-lock admits new readers while a writer waits, so a steady stream of
// forwards on one layer would starve its train-steps forever. Prefer writers where the C
// library lets us choose; the price is that a thread must not take a read lock it already
// holds (with a writer waiting in between, the second rdlock would deadlock).
static int rwlock_init(pthread_rwlock_t *rw) {
    pthread_rwlockattr_t attr;
    int rc = pthread_rwlockattr_init(&attr);
    if (rc != 0)
        return rc;
#if defined(__GLIBC__)
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
#endif
    rc = pthread_rwlock_init(rw, &attr);
    pthread_rwlockattr_destroy(&attr);
    return rc;
}

enum nd_status nd_rwlock_create(struct nd_rwlock **out, struct nd_error *err) {
    if (!out)
        return nd_error_set(err, ND_STATUS_INVALID_ARGUMENT, "nd_rwlock_create: out is NULL");
    *out = NULL;
    struct nd_rwlock *lock = nd_alloc_aligned(sizeof *lock);
    if (!lock)
        return nd_error_set(err, ND_STATUS_OUT_OF_MEMORY, "rw-lock: out of memory");
    int rc = rwlock_init(&lock->rw);
    if (rc != 0) {
        nd_free(lock);
        return nd_error_set(err, status_of_errno(rc), "rw-lock: cannot create (error %d)", rc);
    }
    *out = lock;
    return ND_STATUS_OK;
}

void nd_rwlock_free(struct nd_rwlock *lock) {
    if (!lock)
        return;
    pthread_rwlock_destroy(&lock->rw);
    nd_free(lock);
}

// The lock calls fail only on misuse (a deadlock the implementation detects, a lock not
// held): broken invariants, hence asserts rather than statuses.
void nd_rwlock_rdlock(struct nd_rwlock *lock) {
    int rc = pthread_rwlock_rdlock(&lock->rw);
    assert(rc == 0);
    (void)rc;
}

bool nd_rwlock_tryrdlock(struct nd_rwlock *lock) {
    int rc = pthread_rwlock_tryrdlock(&lock->rw);
    assert(rc == 0 || rc == EBUSY);
    return rc == 0;
}

bool nd_rwlock_trywrlock(struct nd_rwlock *lock) {
    int rc = pthread_rwlock_trywrlock(&lock->rw);
    assert(rc == 0 || rc == EBUSY);
    return rc == 0;
}

void nd_rwlock_wrlock(struct nd_rwlock *lock) {
    int rc = pthread_rwlock_wrlock(&lock->rw);
    assert(rc == 0);
    (void)rc;
}

void nd_rwlock_unlock(struct nd_rwlock *lock) {
    int rc = pthread_rwlock_unlock(&lock->rw);
    assert(rc == 0);
    (void)rc;
}

enum nd_status nd_mutex_create(struct nd_mutex **out, struct nd_error *err) {
    if (!out)
        return nd_error_set(err, ND_STATUS_INVALID_ARGUMENT, "nd_mutex_create: out is NULL");
    *out = NULL;
    struct nd_mutex *lock = nd_alloc_aligned(sizeof *lock);
    if (!lock)
        return nd_error_set(err, ND_STATUS_OUT_OF_MEMORY, "mutex: out of memory");
    int rc = pthread_mutex_init(&lock->mu, NULL);
    if (rc != 0) {
        nd_free(lock);
        return nd_error_set(err, status_of_errno(rc), "mutex: cannot create (error %d)", rc);
    }
    *out = lock;
    return ND_STATUS_OK;
}

void nd_mutex_free(struct nd_mutex *lock) {
    if (!lock)
        return;
    pthread_mutex_destroy(&lock->mu);
    nd_free(lock);
}

void nd_mutex_lock(struct nd_mutex *lock) {
    int rc = pthread_mutex_lock(&lock->mu);
    assert(rc == 0);
    (void)rc;
}

void nd_mutex_unlock(struct nd_mutex *lock) {
    int rc = pthread_mutex_unlock(&lock->mu);
    assert(rc == 0);
    (void)rc;
}
