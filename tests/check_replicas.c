// check_replicas.c - registries as caches of one store shared by replicas (registry.h's
// "copies of a store shared by replicas", persist.h's expect/version and fetch hooks). Two
// registries stand for two replicas over one in-memory store that does what the Redis store
// does: a compare-and-set on each name's version, a stale writer's copy dropped from its
// registry, fetches and a list. Checked: a layer defined on one replica is served by the other
// with the same arrays; changes through both replicas get versions without gaps, each applied
// to the newest state (equal to a sequential replay); a lost compare-and-set changes nothing
// here or in the store; creating a name only the store has is "already exists"; a shared array
// bound on the second replica is the store's; deletes and evictions; the store unreachable.
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/layer.h"
#include "core/persist.h"
#include "core/registry.h"
#include "tests/check_suites.h"
#include "tests/test_engine.h"

#define SC ND_ARRAY_SCALING
#define BI ND_ARRAY_BIASES
#define C  3

// ---- the shared store ----

#define STORE_CAP 16

struct copy {
    char name[ND_NAME_MAX + 1];
    unsigned char *bytes;
    size_t len;
    uint64_t version;
};

struct store {
    pthread_mutex_t lock;
    struct copy layers[STORE_CAP], shared[STORE_CAP];
    int saves, stale;
    bool down; // unreachable: every call fails with ND_STATUS_UNAVAILABLE
};

// One replica's view: its registry (evicted on a lost compare-and-set) and the store.
struct replica {
    struct store *store;
    struct nd_registry *reg;
    struct nd_persist_hooks hooks;
};

static struct copy *find(struct copy *t, const char *name, bool add) {
    for (int i = 0; i < STORE_CAP; i++)
        if (t[i].name[0] && strcmp(t[i].name, name) == 0)
            return &t[i];
    for (int i = 0; add && i < STORE_CAP; i++)
        if (!t[i].name[0]) {
            snprintf(t[i].name, sizeof t[i].name, "%s", name);
            return &t[i];
        }
    ck_assert_msg(!add, "the test store is full");
    return NULL;
}

static enum nd_status put(struct replica *r, bool shared, const struct nd_store_put *p,
                          struct nd_error *err) {
    struct store *s = r->store;
    pthread_mutex_lock(&s->lock);
    struct copy *t = shared ? s->shared : s->layers;
    struct copy *c = find(t, p->name, false);
    uint64_t have = c ? c->version : 0;
    enum nd_status st = ND_STATUS_OK;
    if (s->down)
        st = nd_error_set(err, ND_STATUS_UNAVAILABLE, "the store is down");
    else if (have != p->expect)
        st = nd_error_set(err, ND_STATUS_STALE, "%s: the store holds %llu, not %llu", p->name,
                          (unsigned long long)have, (unsigned long long)p->expect);
    else if (!p->bytes && c) {
        free(c->bytes);
        memset(c, 0, sizeof *c);
    } else if (p->bytes) {
        c = find(t, p->name, true);
        free(c->bytes);
        c->bytes = malloc(p->len);
        memcpy(c->bytes, p->bytes, p->len);
        c->len = p->len;
        c->version = p->version;
        s->saves++;
    }
    s->stale += st == ND_STATUS_STALE;
    pthread_mutex_unlock(&s->lock);
    if (st == ND_STATUS_STALE && shared) // as the Redis store does: the next try loads the store's
        nd_registry_evict_shared(r->reg, p->name, UINT64_MAX);
    else if (st == ND_STATUS_STALE)
        nd_registry_evict(r->reg, p->name, UINT64_MAX);
    return st;
}

static enum nd_status save_layer(void *ctx, const struct nd_store_put *p, struct nd_error *err) {
    return put(ctx, false, p, err);
}

static enum nd_status save_shared(void *ctx, const struct nd_store_put *p, struct nd_error *err) {
    return put(ctx, true, p, err);
}

static enum nd_status fetch(struct replica *r, bool shared, const char *name, struct nd_buf *out,
                            struct nd_error *err) {
    struct store *s = r->store;
    pthread_mutex_lock(&s->lock);
    struct copy *c = s->down ? NULL : find(shared ? s->shared : s->layers, name, false);
    enum nd_status st = s->down ? nd_error_set(err, ND_STATUS_UNAVAILABLE, "the store is down")
                        : !c    ? ND_STATUS_NOT_FOUND
                                : ND_STATUS_OK;
    if (c)
        nd_buf_append(out, c->bytes, c->len);
    pthread_mutex_unlock(&s->lock);
    return st;
}

static enum nd_status fetch_layer(void *ctx, const char *name, struct nd_buf *out,
                                  struct nd_error *err) {
    return fetch(ctx, false, name, out, err);
}

static enum nd_status fetch_shared(void *ctx, const char *name, struct nd_buf *out,
                                   struct nd_error *err) {
    return fetch(ctx, true, name, out, err);
}

static enum nd_status list_layers(void *ctx, char ***names, int64_t *count, struct nd_error *err) {
    struct store *s = ((struct replica *)ctx)->store;
    (void)err;
    *names = calloc(STORE_CAP, sizeof **names);
    *count = 0;
    pthread_mutex_lock(&s->lock);
    for (int i = 0; i < STORE_CAP; i++)
        if (s->layers[i].name[0])
            (*names)[(*count)++] = strdup(s->layers[i].name);
    pthread_mutex_unlock(&s->lock);
    return ND_STATUS_OK;
}

static void replica_init(struct replica *r, struct store *s) {
    r->store = s;
    ck_assert_int_eq(nd_registry_create(64, &r->reg, NULL), ND_STATUS_OK);
    r->hooks = (struct nd_persist_hooks){.ctx = r,
                                         .save_layer = save_layer,
                                         .remove_layer = save_layer, // bytes NULL: removal
                                         .save_shared = save_shared,
                                         .fetch_layer = fetch_layer,
                                         .fetch_shared = fetch_shared,
                                         .list_layers = list_layers};
    nd_registry_set_persist(r->reg, &r->hooks);
}

static struct store *store_new(void) {
    struct store *s = calloc(1, sizeof *s);
    pthread_mutex_init(&s->lock, NULL);
    return s;
}

static void store_free(struct store *s) {
    for (int i = 0; i < STORE_CAP; i++) {
        free(s->layers[i].bytes);
        free(s->shared[i].bytes);
    }
    pthread_mutex_destroy(&s->lock);
    free(s);
}

// ---- layers ----

// A Wolfram BatchNormalization over C channels; its Scaling shared as `shared` unless NULL.
static void bn_def(struct nd_layer_def *def, const char *shared) {
    test_bn_def(def, C);
    if (shared)
        test_def_share(def, SC, shared);
}

static enum nd_status define(struct replica *r, const char *name, const char *shared,
                             enum nd_define_mode mode, struct nd_error *err) {
    struct nd_layer_def def;
    bn_def(&def, shared);
    return nd_registry_define(r->reg, name, &def, mode, 0, 7, NULL, NULL, err);
}

// Writes Biases = {x, 2x, 3x} on replica r as the API does: a lost compare-and-set runs again
// on the store's copy (bounded). Returns the status; *version the version it made.
static enum nd_status write_biases(struct replica *r, const char *name, float x,
                                   uint64_t *version) {
    enum nd_status st = ND_STATUS_STALE;
    for (int tries = 0; st == ND_STATUS_STALE && tries < 4; tries++) {
        struct nd_layer *l = NULL;
        st = nd_registry_get(r->reg, name, &l, NULL);
        if (st != ND_STATUS_OK)
            return st;
        struct nd_tensor v;
        struct nd_shape shape = nd_shape_make(1, (int64_t[]){C});
        ck_assert_int_eq(nd_tensor_init(&v, &shape, NULL), ND_STATUS_OK);
        for (int i = 0; i < C; i++)
            v.data[i] = x * (float)(i + 1);
        st = nd_layer_write_array(l, BI, &v, 0, version, NULL);
        nd_tensor_deinit(&v);
        nd_layer_unref(l);
    }
    return st;
}

static float biases_of(struct replica *r, const char *name, int i, uint64_t *version) {
    struct nd_layer *l = NULL;
    ck_assert_int_eq(nd_registry_get(r->reg, name, &l, NULL), ND_STATUS_OK);
    struct nd_tensor t;
    ck_assert_int_eq(nd_layer_read_array(l, BI, &t, NULL, NULL), ND_STATUS_OK);
    float v = t.data[i];
    if (version)
        *version = nd_layer_version(l);
    nd_tensor_deinit(&t);
    nd_layer_unref(l);
    return v;
}

static uint64_t version_of(struct replica *r, const char *name) {
    uint64_t v;
    biases_of(r, name, 0, &v);
    return v;
}

struct pair {
    struct store *s;
    struct replica a, b;
};

static void pair_init(struct pair *p) {
    p->s = store_new();
    replica_init(&p->a, p->s);
    replica_init(&p->b, p->s);
}

static void pair_free(struct pair *p) {
    nd_registry_free(p->a.reg);
    nd_registry_free(p->b.reg);
    store_free(p->s);
}

// ---- tests ----

START_TEST(test_defined_on_one_served_by_other) {
    struct pair p;
    pair_init(&p);
    ck_assert_int_eq(define(&p.a, "n", NULL, ND_DEFINE_CREATE, NULL), ND_STATUS_OK);
    uint64_t v;
    ck_assert_int_eq(write_biases(&p.a, "n", 0.5f, &v), ND_STATUS_OK);
    ck_assert_int_eq(v, 2);
    ck_assert_int_eq(nd_registry_count(p.b.reg), 0); // nothing until it is used there
    ck_assert_float_eq(biases_of(&p.b, "n", 2, &v), 1.5f);
    ck_assert_int_eq(v, 2);
    ck_assert_int_eq(nd_registry_count(p.b.reg), 1);
    struct nd_error err;
    nd_error_clear(&err);
    ck_assert_int_eq(define(&p.b, "n", NULL, ND_DEFINE_CREATE, &err), ND_STATUS_ALREADY_EXISTS);
    struct nd_layer *l = NULL;
    ck_assert_int_eq(nd_registry_get(p.b.reg, "none", &l, NULL), ND_STATUS_NOT_FOUND);
    pair_free(&p);
}
END_TEST

// Alternating writers: every change applies to the newest state and versions have no gaps.
START_TEST(test_versions_without_gaps) {
    struct pair p;
    pair_init(&p);
    ck_assert_int_eq(define(&p.a, "n", NULL, ND_DEFINE_CREATE, NULL), ND_STATUS_OK);
    ck_assert_int_eq(version_of(&p.b, "n"), 1); // b holds a copy from now on
    for (int i = 0; i < 6; i++) {
        struct replica *r = i % 2 ? &p.b : &p.a;
        uint64_t v = 0;
        ck_assert_int_eq(write_biases(r, "n", (float)i, &v), ND_STATUS_OK);
        ck_assert_int_eq(v, (uint64_t)i + 2);
    }
    ck_assert_int_ge(p.s->stale, 5); // each writer found the other's newer state
    // both replicas converge on the last write once they reload
    ck_assert_float_eq(biases_of(&p.b, "n", 1, NULL), 10.0f);
    nd_registry_evict(p.a.reg, "n", 8); // as an invalidation for version 8 does
    ck_assert_float_eq(biases_of(&p.a, "n", 1, NULL), 10.0f);
    ck_assert_int_eq(version_of(&p.a, "n"), 7);
    pair_free(&p);
}
END_TEST

// A lost compare-and-set changes nothing, here or in the store.
START_TEST(test_stale_write_changes_nothing) {
    struct pair p;
    pair_init(&p);
    ck_assert_int_eq(define(&p.a, "n", NULL, ND_DEFINE_CREATE, NULL), ND_STATUS_OK);
    struct nd_layer *old = NULL;
    ck_assert_int_eq(nd_registry_get(p.b.reg, "n", &old, NULL), ND_STATUS_OK);
    uint64_t v;
    ck_assert_int_eq(write_biases(&p.a, "n", 4.0f, &v), ND_STATUS_OK);
    struct nd_tensor t;
    struct nd_shape shape = nd_shape_make(1, (int64_t[]){C});
    ck_assert_int_eq(nd_tensor_init(&t, &shape, NULL), ND_STATUS_OK);
    struct nd_error err;
    nd_error_clear(&err);
    ck_assert_int_eq(nd_layer_write_array(old, BI, &t, 0, NULL, &err), ND_STATUS_STALE);
    ck_assert_int_eq(nd_layer_version(old), 1); // undone
    nd_tensor_deinit(&t);
    nd_layer_unref(old);
    ck_assert_float_eq(biases_of(&p.b, "n", 0, &v), 4.0f); // the store's, reloaded
    ck_assert_int_eq(v, 2);
    pair_free(&p);
}
END_TEST

START_TEST(test_replace_and_delete_across) {
    struct pair p;
    pair_init(&p);
    ck_assert_int_eq(define(&p.a, "n", NULL, ND_DEFINE_CREATE, NULL), ND_STATUS_OK);
    ck_assert_int_eq(version_of(&p.b, "n"), 1);
    uint64_t v;
    ck_assert_int_eq(write_biases(&p.a, "n", 1.0f, &v), ND_STATUS_OK);
    // b replaces from its stale copy: refused, then (as the API retries) from the store's
    struct nd_error err;
    nd_error_clear(&err);
    ck_assert_int_eq(define(&p.b, "n", NULL, ND_DEFINE_CREATE_OR_REPLACE, &err), ND_STATUS_STALE);
    ck_assert_int_eq(define(&p.b, "n", NULL, ND_DEFINE_CREATE_OR_REPLACE, NULL), ND_STATUS_OK);
    ck_assert_int_eq(version_of(&p.b, "n"), 3); // the replaced version + 1
    nd_registry_evict(p.a.reg, "n", 3);
    ck_assert_int_eq(version_of(&p.a, "n"), 3);
    ck_assert_int_eq(nd_registry_delete(p.a.reg, "n", NULL), ND_STATUS_OK);
    nd_registry_evict(p.b.reg, "n", UINT64_MAX); // the invalidation of the delete
    struct nd_layer *l = NULL;
    ck_assert_int_eq(nd_registry_get(p.b.reg, "n", &l, NULL), ND_STATUS_NOT_FOUND);
    pair_free(&p);
}
END_TEST

START_TEST(test_shared_array_is_the_stores) {
    struct pair p;
    pair_init(&p);
    ck_assert_int_eq(define(&p.a, "x", "g", ND_DEFINE_CREATE, NULL), ND_STATUS_OK);
    ck_assert_int_eq(define(&p.b, "y", "g", ND_DEFINE_CREATE, NULL), ND_STATUS_OK);
    struct nd_array *ga = NULL, *gb = NULL;
    ck_assert_int_eq(nd_registry_shared_get(p.a.reg, "g", &ga, NULL), ND_STATUS_OK);
    ck_assert_int_eq(nd_registry_shared_get(p.b.reg, "g", &gb, NULL), ND_STATUS_OK);
    struct nd_tensor ta, tb;
    ck_assert_int_eq(nd_array_read(ga, &ta, NULL, NULL), ND_STATUS_OK);
    ck_assert_int_eq(nd_array_read(gb, &tb, NULL, NULL), ND_STATUS_OK);
    ck_assert_mem_eq(ta.data, tb.data, C * sizeof(float));
    nd_tensor_deinit(&ta);
    nd_tensor_deinit(&tb);
    nd_array_unref(ga);
    nd_array_unref(gb);
    // a lists both layers, y loaded from the store with its shared array
    struct nd_layer **list;
    int64_t n;
    ck_assert_int_eq(nd_registry_list(p.a.reg, &list, &n, NULL), ND_STATUS_OK);
    ck_assert_int_eq(n, 2);
    for (int64_t i = 0; i < n; i++)
        nd_layer_unref(list[i]);
    nd_free(list);
    // evicting the shared array drops the layers binding it
    nd_registry_evict_shared(p.a.reg, "g", UINT64_MAX);
    ck_assert_int_eq(nd_registry_count(p.a.reg), 0);
    ck_assert_int_eq(version_of(&p.a, "y"), 1);
    pair_free(&p);
}
END_TEST

START_TEST(test_evict_spares_newer_and_busy) {
    struct pair p;
    pair_init(&p);
    ck_assert_int_eq(define(&p.a, "n", NULL, ND_DEFINE_CREATE, NULL), ND_STATUS_OK);
    nd_registry_evict(p.a.reg, "n", 1); // its own invalidation: version 1 is not below 1
    ck_assert_int_eq(nd_registry_count(p.a.reg), 1);
    nd_registry_evict_all(p.a.reg);
    ck_assert_int_eq(nd_registry_count(p.a.reg), 0);
    ck_assert_int_eq(version_of(&p.a, "n"), 1);
    nd_registry_evict(NULL, "n", 1); // NULL-safe
    nd_registry_evict_shared(p.a.reg, "nothing", UINT64_MAX);
    pair_free(&p);
}
END_TEST

START_TEST(test_store_unreachable) {
    struct pair p;
    pair_init(&p);
    ck_assert_int_eq(define(&p.a, "n", NULL, ND_DEFINE_CREATE, NULL), ND_STATUS_OK);
    p.s->down = true;
    uint64_t v;
    ck_assert_int_eq(write_biases(&p.a, "n", 9.0f, &v), ND_STATUS_UNAVAILABLE);
    ck_assert_float_eq(biases_of(&p.a, "n", 0, &v), 0.0f); // the cached copy serves, unchanged
    ck_assert_int_eq(v, 1);
    struct nd_layer *l = NULL;
    struct nd_error err;
    nd_error_clear(&err);
    ck_assert_int_eq(nd_registry_get(p.b.reg, "n", &l, &err), ND_STATUS_UNAVAILABLE);
    ck_assert_str_eq(err.msg, "the store is down");
    p.s->down = false;
    ck_assert_int_eq(write_biases(&p.a, "n", 9.0f, &v), ND_STATUS_OK);
    ck_assert_int_eq(v, 2);
    pair_free(&p);
}
END_TEST

// Many threads on two replicas write one layer: every acknowledged write has its own version,
// and the versions are 2..N+1 (run it under TSan too).
#define WRITERS 4
#define WRITES  25

struct writer {
    struct replica *r;
    int id;
    uint64_t versions[WRITES];
    int acked;
};

static void *write_many(void *arg) {
    struct writer *w = arg;
    for (int i = 0; i < WRITES; i++) {
        uint64_t v = 0;
        enum nd_status st = ND_STATUS_STALE;
        for (int tries = 0; st == ND_STATUS_STALE && tries < 100; tries++)
            st = write_biases(w->r, "n", (float)(w->id * 100 + i), &v);
        ck_assert_int_eq(st, ND_STATUS_OK);
        w->versions[w->acked++] = v;
    }
    return NULL;
}

START_TEST(test_concurrent_writers) {
    struct pair p;
    pair_init(&p);
    ck_assert_int_eq(define(&p.a, "n", NULL, ND_DEFINE_CREATE, NULL), ND_STATUS_OK);
    pthread_t t[WRITERS];
    struct writer w[WRITERS];
    for (int i = 0; i < WRITERS; i++) {
        w[i] = (struct writer){.r = i % 2 ? &p.b : &p.a, .id = i};
        pthread_create(&t[i], NULL, write_many, &w[i]);
    }
    bool seen[WRITERS * WRITES + 2] = {0};
    for (int i = 0; i < WRITERS; i++) {
        pthread_join(t[i], NULL);
        for (int k = 0; k < w[i].acked; k++) {
            uint64_t v = w[i].versions[k];
            ck_assert_msg(v >= 2 && v < WRITERS * WRITES + 2 && !seen[v], "version %llu",
                          (unsigned long long)v);
            seen[v] = true;
        }
    }
    nd_registry_evict_all(p.a.reg);
    ck_assert_int_eq(version_of(&p.a, "n"), WRITERS * WRITES + 1);
    pair_free(&p);
}
END_TEST

Suite *replicas_suite(void) {
    Suite *s = suite_create("replicas");
    TCase *tc = tcase_create("shared store");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_defined_on_one_served_by_other);
    tcase_add_test(tc, test_versions_without_gaps);
    tcase_add_test(tc, test_stale_write_changes_nothing);
    tcase_add_test(tc, test_replace_and_delete_across);
    tcase_add_test(tc, test_shared_array_is_the_stores);
    tcase_add_test(tc, test_evict_spares_newer_and_busy);
    tcase_add_test(tc, test_store_unreachable);
    tcase_add_test(tc, test_concurrent_writers);
    suite_add_tcase(s, tc);
    return s;
}
