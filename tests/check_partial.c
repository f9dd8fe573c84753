// check_partial.c - partial copies (persist.h): a store that takes them (partial_ok) is handed a
// train-step's layer with only the history records since the layer's last whole copy, and
// nd_persist_merge rebuilds the whole bytes from the two. Checked against the layer's own whole
// bytes after every step: which puts are partial (whole after a define and after a load, then
// whole again every ND_PERSIST_PARTIAL_MAX records), the last whole copy merged with the latest
// partial one, a later whole copy in its place (what a compaction writes), the ring past its
// capacity; what the merge refuses: a gap, another layer's copy, damaged bytes; and the undo of
// a step whose save fails (its snapshot holds no history records: nd_history_rewind).
#include <pthread.h>
#include <string.h>

#include "core/codec.h"
#include "core/engine.h"
#include "core/history.h"
#include "core/layer.h"
#include "core/layer_impl.h" // white-box: the layer's lock, to serialize it whole
#include "core/persist.h"
#include "core/registry.h"
#include "tests/check_suites.h"
#include "tests/test_engine.h"
#include "tests/test_rng.h"

// One layer's puts: the last whole one, the latest one, counts.
struct pstore {
    pthread_mutex_t lock;
    struct nd_buf whole, latest;
    bool latest_partial;
    int puts, partials, partial_saves; // partial_saves: partial copies outside append_layer
    int fail;                          // the next N puts fail (ND_STATUS_STORAGE)
    struct nd_persist_hooks hooks;
};

static void keep(struct nd_buf *b, const struct nd_store_put *put) {
    nd_buf_deinit(b);
    ck_assert(nd_buf_append(b, put->bytes, put->len));
}

static enum nd_status ps_append_layer(void *ctx, const struct nd_store_put *put, uint64_t *ticket,
                                      struct nd_error *err) {
    struct pstore *s = ctx;
    pthread_mutex_lock(&s->lock);
    if (s->fail > 0) {
        s->fail--;
        pthread_mutex_unlock(&s->lock);
        return nd_error_set(err, ND_STATUS_STORAGE, "test store: full");
    }
    s->puts++;
    s->partials += put->partial;
    s->latest_partial = put->partial;
    keep(&s->latest, put);
    if (!put->partial)
        keep(&s->whole, put);
    pthread_mutex_unlock(&s->lock);
    *ticket = 0;
    return ND_STATUS_OK;
}

static enum nd_status ps_save_layer(void *ctx, const struct nd_store_put *put,
                                    struct nd_error *err) {
    struct pstore *s = ctx;
    uint64_t ticket;
    pthread_mutex_lock(&s->lock);
    s->partial_saves += put->partial;
    pthread_mutex_unlock(&s->lock);
    return ps_append_layer(ctx, put, &ticket, err);
}

static enum nd_status ps_nothing(void *ctx, const struct nd_store_put *put, struct nd_error *err) {
    (void)ctx, (void)put, (void)err;
    return ND_STATUS_OK;
}

static enum nd_status ps_append_nothing(void *ctx, const struct nd_store_put *put, uint64_t *ticket,
                                        struct nd_error *err) {
    *ticket = 0;
    return ps_nothing(ctx, put, err);
}

static enum nd_status ps_wait(void *ctx, uint64_t ticket, struct nd_error *err) {
    (void)ctx, (void)ticket, (void)err;
    return ND_STATUS_OK;
}

static void pstore_init(struct pstore *s) {
    memset(s, 0, sizeof *s);
    pthread_mutex_init(&s->lock, NULL);
    s->hooks = (struct nd_persist_hooks){.ctx = s,
                                         .save_layer = ps_save_layer,
                                         .remove_layer = ps_nothing,
                                         .save_shared = ps_nothing,
                                         .remove_shared = ps_nothing,
                                         .append_layer = ps_append_layer,
                                         .append_shared = ps_append_nothing,
                                         .wait = ps_wait,
                                         .partial_ok = true};
}

static void pstore_deinit(struct pstore *s) {
    nd_buf_deinit(&s->whole);
    nd_buf_deinit(&s->latest);
    pthread_mutex_destroy(&s->lock);
}

static struct nd_engine *engine_with(struct pstore *s) {
    struct nd_engine_config cfg = test_engine_config(1, 3);
    cfg.persist = &s->hooks;
    return test_engine_create(&cfg);
}

static struct nd_layer *define_bn(struct nd_engine *e, const char *name, int64_t c) {
    struct nd_layer_def def;
    test_bn_def(&def, c);
    struct nd_layer *l = NULL;
    struct nd_error err;
    nd_error_clear(&err);
    enum nd_status st = nd_registry_define(nd_engine_registry(e), name, &def,
                                           ND_DEFINE_CREATE_OR_REPLACE, 0, 5, NULL, &l, &err);
    ck_assert_msg(st == ND_STATUS_OK, "define %s: %s", name, err.msg);
    return l;
}

// One adam step on seeded data with an output gradient (a history record with every field);
// its status.
static enum nd_status try_step(struct nd_engine *e, struct nd_layer *l, int64_t c, uint64_t seed) {
    struct nd_tensor x, g;
    struct nd_shape shape = nd_shape_make(2, (int64_t[]){4, c});
    ck_assert_int_eq(nd_tensor_init(&x, &shape, NULL), ND_STATUS_OK);
    ck_assert_int_eq(nd_tensor_init(&g, &shape, NULL), ND_STATUS_OK);
    struct test_rng r = test_rng_seed(seed);
    test_rng_fill(&r, x.data, x.numel, 0.3, 2.0);
    test_rng_fill(&r, g.data, g.numel, -0.1, 1.0);
    struct nd_train_args a = {.input = &x,
                              .output_grad = &g,
                              .optimizer = nd_optimizer_default(ND_OPTIMIZER_ADAM),
                              .want = ND_TRAIN_WANT_OUTPUT};
    struct nd_train_result res;
    enum nd_status st = nd_layer_train_step(l, nd_engine_pool(e), &a, &res, NULL);
    nd_train_result_deinit(&res);
    nd_tensor_deinit(&x);
    nd_tensor_deinit(&g);
    return st;
}

static void step(struct nd_engine *e, struct nd_layer *l, int64_t c, uint64_t seed) {
    ck_assert_int_eq(try_step(e, l, c, seed), ND_STATUS_OK);
}

static void whole_now(struct nd_layer *l, struct nd_buf *out) {
    nd_rwlock_rdlock(l->lock);
    ck_assert_int_eq(nd__layer_serialize(l, out, NULL), ND_STATUS_OK);
    nd_rwlock_unlock(l->lock);
}

static void assert_same(const struct nd_buf *a, const struct nd_buf *b, const char *what) {
    ck_assert_msg(a->len == b->len && memcmp(a->data, b->data, a->len) == 0,
                  "%s: %zu bytes, expected %zu (or the same length, other bytes)", what, a->len,
                  b->len);
}

// The store's whole bytes of the layer: the latest put, merged over the last whole one when it
// is partial.
static void rebuilt(struct pstore *s, struct nd_buf *out) {
    struct nd_error err;
    nd_error_clear(&err);
    if (!s->latest_partial)
        ck_assert(nd_buf_append(out, s->latest.data, s->latest.len));
    else
        ck_assert_msg(nd_persist_merge(s->whole.data, s->whole.len, s->latest.data, s->latest.len,
                                       out, &err) == ND_STATUS_OK,
                      "merge: %s", err.msg);
}

// 300 steps (past the ring's 256): after each, the rebuilt bytes are the layer's; the define
// and every 17th step are whole, the others partial, and partial copies are smaller.
START_TEST(test_partial_copies_rebuild_the_layer) {
    struct pstore s;
    pstore_init(&s);
    struct nd_engine *e = engine_with(&s);
    struct nd_layer *l = define_bn(e, "p", 8);
    ck_assert_int_eq(s.puts, 1);
    ck_assert(!s.latest_partial);
    for (int k = 1; k <= 300; k++) {
        step(e, l, 8, (uint64_t)k);
        bool whole = k % (ND_PERSIST_PARTIAL_MAX + 1) == 0;
        ck_assert_msg(s.latest_partial == !whole, "step %d: %s", k,
                      s.latest_partial ? "partial" : "whole");
        struct nd_buf want = {0}, got = {0};
        whole_now(l, &want);
        rebuilt(&s, &got);
        assert_same(&got, &want, "the rebuilt layer");
        if (!whole && k > ND_PERSIST_PARTIAL_MAX + 1) // records before the whole copy's
            ck_assert_uint_lt(s.latest.len, want.len);
        nd_buf_deinit(&want);
        nd_buf_deinit(&got);
    }
    ck_assert_int_eq(s.puts, 301);
    ck_assert_int_eq(s.partials, 300 - 300 / (ND_PERSIST_PARTIAL_MAX + 1));
    ck_assert_int_eq(s.partial_saves, 0); // only train-steps, only through append_layer
    ck_assert_int_eq(l->history.count, ND_HISTORY_CAPACITY);
    nd_layer_unref(l);
    nd_engine_free(e);
    pstore_deinit(&s);
}
END_TEST

// A whole copy of a later state than the partial copy's base (a compaction wrote the merged
// state out, then more partial copies came): the merge takes only the newer records.
START_TEST(test_merge_over_a_later_whole_copy) {
    struct pstore s;
    pstore_init(&s);
    struct nd_engine *e = engine_with(&s);
    struct nd_layer *l = define_bn(e, "p", 3);
    step(e, l, 3, 1);
    step(e, l, 3, 2);
    struct nd_buf compacted = {0};
    rebuilt(&s, &compacted); // after step 2: what a compaction writes
    for (int k = 3; k <= 6; k++)
        step(e, l, 3, (uint64_t)k);
    ck_assert(s.latest_partial);
    struct nd_buf want = {0}, got = {0};
    whole_now(l, &want);
    struct nd_error err;
    nd_error_clear(&err);
    ck_assert_int_eq(
        nd_persist_merge(compacted.data, compacted.len, s.latest.data, s.latest.len, &got, &err),
        ND_STATUS_OK);
    assert_same(&got, &want, "over the compacted copy");
    // The layer's own whole bytes as the base: the partial copy adds nothing, changes nothing.
    nd_buf_deinit(&got);
    ck_assert_int_eq(nd_persist_merge(want.data, want.len, s.latest.data, s.latest.len, &got, &err),
                     ND_STATUS_OK);
    assert_same(&got, &want, "over the same state");
    nd_buf_deinit(&got);
    nd_buf_deinit(&want);
    nd_buf_deinit(&compacted);
    nd_layer_unref(l);
    nd_engine_free(e);
    pstore_deinit(&s);
}
END_TEST

// A layer loaded from its bytes hands over a whole copy first: the store's copy may be older.
START_TEST(test_whole_after_a_load) {
    struct pstore s;
    pstore_init(&s);
    struct nd_engine *e = engine_with(&s);
    struct nd_layer *l = define_bn(e, "p", 3);
    for (int k = 1; k <= 3; k++)
        step(e, l, 3, (uint64_t)k);
    struct nd_buf bytes = {0};
    whole_now(l, &bytes);
    nd_layer_unref(l);
    struct pstore t;
    pstore_init(&t);
    struct nd_engine *f = engine_with(&t);
    struct nd_error err;
    nd_error_clear(&err);
    ck_assert_int_eq(nd_registry_load_layer(nd_engine_registry(f), bytes.data, bytes.len, &err),
                     ND_STATUS_OK);
    struct nd_layer *m = NULL;
    ck_assert_int_eq(nd_registry_get(nd_engine_registry(f), "p", &m, &err), ND_STATUS_OK);
    step(f, m, 3, 4);
    ck_assert_int_eq(t.puts, 1);
    ck_assert(!t.latest_partial);
    step(f, m, 3, 5);
    ck_assert(t.latest_partial);
    nd_buf_deinit(&bytes);
    nd_layer_unref(m);
    nd_engine_free(f);
    nd_engine_free(e);
    pstore_deinit(&t);
    pstore_deinit(&s);
}
END_TEST

// A step whose save fails leaves the layer as it was, history included: before the ring is
// full, and once it is (the step's record took the oldest one's slot, which comes back).
START_TEST(test_failed_step_leaves_the_layer) {
    struct pstore s;
    pstore_init(&s);
    struct nd_engine *e = engine_with(&s);
    struct nd_layer *l = define_bn(e, "p", 3);
    for (int k = 1; k <= ND_HISTORY_CAPACITY + 2; k++) {
        struct nd_buf before = {0}, after = {0};
        whole_now(l, &before);
        s.fail = 1;
        ck_assert_int_eq(try_step(e, l, 3, (uint64_t)k), ND_STATUS_STORAGE);
        whole_now(l, &after);
        assert_same(&after, &before, "after a failed step");
        step(e, l, 3, (uint64_t)k);
        nd_buf_deinit(&before);
        nd_buf_deinit(&after);
        if (k == 5) // the ring half empty: jump to the last few steps before it is full
            for (; k < ND_HISTORY_CAPACITY - 2; k++)
                step(e, l, 3, (uint64_t)k + 1000);
    }
    ck_assert_int_eq(l->history.count, ND_HISTORY_CAPACITY);
    nd_layer_unref(l);
    nd_engine_free(e);
    pstore_deinit(&s);
}
END_TEST

static enum nd_status merge(const struct nd_buf *a, const struct nd_buf *b, struct nd_error *err) {
    struct nd_buf out = {0};
    nd_error_clear(err);
    enum nd_status st = nd_persist_merge(a->data, a->len, b->data, b->len, &out, err);
    nd_buf_deinit(&out);
    return st;
}

// What does not fit is refused, named: a record missing between the two, another layer, damaged
// bytes (either one), a buffer not empty.
START_TEST(test_merge_refuses_what_does_not_fit) {
    struct pstore s;
    pstore_init(&s);
    struct nd_engine *e = engine_with(&s);
    struct nd_layer *l = define_bn(e, "p", 3), *o = define_bn(e, "other", 3);
    struct nd_buf base = {0}, other = {0}, partial = {0};
    whole_now(l, &base); // no record yet
    whole_now(o, &other);
    for (int k = 1; k <= ND_PERSIST_PARTIAL_MAX + 3; k++) // whole at 17, then partial 18, 19
        step(e, l, 3, (uint64_t)k);
    ck_assert(s.latest_partial);
    ck_assert(nd_buf_append(&partial, s.latest.data, s.latest.len));
    struct nd_error err;
    ck_assert_int_eq(merge(&base, &partial, &err), ND_STATUS_INVALID_VALUE);
    ck_assert_msg(strstr(err.msg, "follows record 17") && strstr(err.msg, "ends at record 0"), "%s",
                  err.msg);
    ck_assert_int_eq(merge(&other, &partial, &err), ND_STATUS_INVALID_VALUE);
    ck_assert_msg(strstr(err.msg, "other"), "%s", err.msg);
    ck_assert_int_eq(merge(&s.whole, &partial, &err), ND_STATUS_OK);
    partial.data[partial.len / 2] ^= 1;
    ck_assert_int_eq(merge(&s.whole, &partial, &err), ND_STATUS_INVALID_VALUE);
    ck_assert_msg(strstr(err.msg, "checksum"), "%s", err.msg);
    partial.data[partial.len / 2] ^= 1;
    s.whole.data[8] ^= 1; // the length
    ck_assert_int_eq(merge(&s.whole, &partial, &err), ND_STATUS_INVALID_VALUE);
    s.whole.data[8] ^= 1;
    ck_assert_int_eq(merge(&s.whole, &partial, &err), ND_STATUS_OK);
    struct nd_buf full = {.len = 0};
    ck_assert(nd_buf_append(&full, "x", 1));
    ck_assert_int_eq(
        nd_persist_merge(s.whole.data, s.whole.len, partial.data, partial.len, &full, &err),
        ND_STATUS_INVALID_ARGUMENT);
    ck_assert_int_eq(nd_persist_merge(NULL, 0, partial.data, partial.len, &full, &err),
                     ND_STATUS_INVALID_ARGUMENT);
    nd_buf_deinit(&full);
    nd_buf_deinit(&base);
    nd_buf_deinit(&other);
    nd_buf_deinit(&partial);
    nd_layer_unref(l);
    nd_layer_unref(o);
    nd_engine_free(e);
    pstore_deinit(&s);
}
END_TEST

Suite *partial_suite(void) {
    Suite *s = suite_create("partial");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_partial_copies_rebuild_the_layer);
    tcase_add_test(tc, test_merge_over_a_later_whole_copy);
    tcase_add_test(tc, test_whole_after_a_load);
    tcase_add_test(tc, test_failed_step_leaves_the_layer);
    tcase_add_test(tc, test_merge_refuses_what_does_not_fit);
    suite_add_tcase(s, tc);
    return s;
}
