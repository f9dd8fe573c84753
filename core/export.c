// export.c - a layer's whole state outside the registry (export.h): the container of its stored
// file and its shared arrays' files, and the plain-data form api/ turns into JSON.
//
// The container reuses the store's codec (codec.h) whole (nd__layer_serialize /
// nd__layer_deserialize and the shared-array pair), so an import accepts exactly the states the
// store would load, read by the same versioned readers, and a format change of the store
// reaches exports with no code here. A state from JSON takes the same road: it is built into a
// layer no registry holds, serialized, and decoded again by the loader.
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/codec.h"
#include "core/export.h"
#include "core/layer_impl.h"

#define MAGIC         "NDX1"
#define HEADER_BYTES  16 // magic, format version, payload length
#define TRAILER_BYTES 8  // checksum
#define MAX_FILES     (1 + ND_ARRAY_AFFINE_COUNT)

// ---- the container ----

static void buf_put_le(struct nd_buf *b, uint64_t v, int bytes) {
    unsigned char x[8];
    for (int i = 0; i < bytes; i++)
        x[i] = (unsigned char)(v >> (8 * i));
    nd__buf_put(b, x, (size_t)bytes);
}

static uint64_t get_le(const unsigned char *p, int bytes) {
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static enum nd_status container_write(struct nd_buf *out, const struct nd_buf *files, int n,
                                      struct nd_error *err) {
    size_t start = out->len;
    nd__buf_put(out, MAGIC, 4);
    buf_put_le(out, ND_EXPORT_FORMAT_VERSION, 4);
    buf_put_le(out, 0, 8); // the payload length, patched below
    buf_put_le(out, (uint64_t)n, 4);
    for (int i = 0; i < n; i++) {
        buf_put_le(out, files[i].len, 8);
        nd__buf_put(out, files[i].data, files[i].len);
    }
    if (out->failed)
        return nd_error_set(err, ND_STATUS_OUT_OF_MEMORY, "cannot write the export");
    uint64_t len = out->len - start - HEADER_BYTES;
    for (int i = 0; i < 8; i++)
        out->data[start + 8 + i] = (unsigned char)(len >> (8 * i));
    buf_put_le(out, nd__checksum(out->data + start, out->len - start), 8);
    return out->failed ? nd_error_set(err, ND_STATUS_OUT_OF_MEMORY, "cannot write the export")
                       : ND_STATUS_OK;
}

struct slice {
    const unsigned char *p;
    size_t n;
};

// Checks the envelope (magic, version, length, checksum) and splits the payload into files.
static enum nd_status container_read(const void *bytes, size_t len, struct slice *files, int *n,
                                     struct nd_error *err) {
    const unsigned char *p = bytes;
    if (!p || len < HEADER_BYTES + TRAILER_BYTES || memcmp(p, MAGIC, 4) != 0)
        return nd_error_set(err, ND_STATUS_INVALID_VALUE,
                            "not a normd layer export (it starts with \"NDX1\")");
    uint64_t version = get_le(p + 4, 4), payload = get_le(p + 8, 8);
    if (version != ND_EXPORT_FORMAT_VERSION)
        return nd_error_set(err, ND_STATUS_INVALID_VALUE, "format version %llu, expected %d",
                            (unsigned long long)version, ND_EXPORT_FORMAT_VERSION);
    if (payload != len - HEADER_BYTES - TRAILER_BYTES)
        return nd_error_set(err, ND_STATUS_INVALID_VALUE,
                            "truncated: %llu bytes of payload announced, %zu present",
                            (unsigned long long)payload, len - HEADER_BYTES - TRAILER_BYTES);
    if (get_le(p + len - TRAILER_BYTES, 8) != nd__checksum(p, len - TRAILER_BYTES))
        return nd_error_set(err, ND_STATUS_INVALID_VALUE, "checksum mismatch: damaged");
    size_t at = HEADER_BYTES, end = len - TRAILER_BYTES;
    uint64_t count = end - at >= 4 ? get_le(p + at, 4) : 0;
    at += 4;
    if (count < 1 || count > MAX_FILES)
        return nd_error_set(err, ND_STATUS_INVALID_VALUE,
                            "damaged export: %llu files, expected 1 to %d",
                            (unsigned long long)count, MAX_FILES);
    for (uint64_t i = 0; i < count; i++) {
        uint64_t n_i = end - at >= 8 ? get_le(p + at, 8) : UINT64_MAX;
        at += 8;
        if (at > end || n_i > end - at)
            return nd_error_set(err, ND_STATUS_INVALID_VALUE,
                                "damaged export: file %llu runs "
                                "past the end",
                                (unsigned long long)i);
        files[i] = (struct slice){p + at, (size_t)n_i};
        at += (size_t)n_i;
    }
    if (at != end)
        return nd_error_set(err, ND_STATUS_INVALID_VALUE,
                            "damaged export: %zu bytes after the last file", end - at);
    *n = (int)count;
    return ND_STATUS_OK;
}

// ---- export ----

static void bufs_deinit(struct nd_buf *files, int n) {
    for (int i = 0; i < n; i++)
        nd_buf_deinit(&files[i]);
}

// The files of a layer (caller holds its lock, or nobody else can see it).
static enum nd_status layer_files(const struct nd_layer *l, struct nd_buf *files, int *n,
                                  struct nd_error *err) {
    *n = 1;
    enum nd_status st = nd__layer_serialize(l, &files[0], err);
    for (int id = 0; st == ND_STATUS_OK && id < ND_ARRAY_AFFINE_COUNT; id++)
        if (l->shared[id][0] && l->arrays[id])
            st = nd__array_serialize(l->arrays[id], &files[(*n)++], err);
    return st;
}

enum nd_status nd_layer_export(struct nd_layer *layer, struct nd_buf *out, uint64_t *version,
                               struct nd_error *err) {
    if (!layer || !out)
        return nd_error_set(err, ND_STATUS_INVALID_ARGUMENT, "nd_layer_export: NULL argument");
    struct nd_buf files[MAX_FILES] = {{0}};
    int n = 0;
    nd_rwlock_rdlock(layer->lock);
    enum nd_status st = layer_files(layer, files, &n, err);
    if (version)
        *version = layer->version;
    nd_rwlock_unlock(layer->lock);
    if (st == ND_STATUS_OK)
        st = container_write(out, files, n, err);
    bufs_deinit(files, n);
    return st;
}

// ---- decoding into a layer no registry holds ----

// The shared arrays a container carries, handed to the loader by name.
struct carried {
    struct nd_array *arrays[ND_ARRAY_AFFINE_COUNT];
    bool used[ND_ARRAY_AFFINE_COUNT];
    int n;
};

static enum nd_status bind_carried(void *ctx, const char *name, const struct nd_shape *shape,
                                   const struct nd_initializer *init, struct nd_rng *rng,
                                   struct nd_array **out, struct nd_error *err) {
    (void)shape, (void)init, (void)rng;
    struct carried *c = ctx;
    for (int i = 0; i < c->n; i++) {
        if (c->used[i] || strcmp(c->arrays[i]->shared_name, name) != 0)
            continue;
        c->used[i] = true;
        nd_array_ref(c->arrays[i]);
        *out = c->arrays[i];
        return ND_STATUS_OK;
    }
    return nd_error_set(err, ND_STATUS_NOT_FOUND, "the export carries no shared array %s", name);
}

static void carried_release(struct carried *c) {
    for (int i = 0; i < c->n; i++)
        nd_array_unref(c->arrays[i]);
    memset(c, 0, sizeof *c);
}

// Canonical form: the files are exactly the layer's (its bound shared arrays in array order),
// and they serialize back to the very bytes given.
static enum nd_status check_canonical(const struct nd_layer *l, const struct carried *c,
                                      const struct slice *files, int n, struct nd_error *err) {
    int k = 0;
    for (int id = 0; id < ND_ARRAY_AFFINE_COUNT; id++)
        if (l->shared[id][0] && l->arrays[id] && (k >= c->n || l->arrays[id] != c->arrays[k++]))
            return nd_error_set(err, ND_STATUS_INVALID_VALUE,
                                "damaged export: its shared arrays are not the layer's, in order");
    if (k != c->n)
        return nd_error_set(err, ND_STATUS_INVALID_VALUE,
                            "damaged export: it carries a shared array the layer does not use");
    struct nd_buf again[MAX_FILES] = {{0}};
    int m = 0;
    enum nd_status st = layer_files(l, again, &m, err);
    bool same = st == ND_STATUS_OK && m == n;
    for (int i = 0; same && i < n; i++)
        same = again[i].len == files[i].n && memcmp(again[i].data, files[i].p, files[i].n) == 0;
    bufs_deinit(again, m);
    if (st == ND_STATUS_OK && !same)
        st = nd_error_set(err, ND_STATUS_INVALID_VALUE, "damaged export: not in canonical form");
    return st;
}

static enum nd_status decode_layer(const void *bytes, size_t len, struct nd_layer **out,
                                   struct nd_error *err) {
    struct slice files[MAX_FILES];
    int n = 0;
    enum nd_status st = container_read(bytes, len, files, &n, err);
    struct carried c = {0};
    for (int i = 1; st == ND_STATUS_OK && i < n; i++)
        if ((st = nd__array_deserialize(files[i].p, files[i].n, &c.arrays[c.n], err)) ==
            ND_STATUS_OK)
            atomic_store(&c.arrays[c.n++]->stored, false); // new to whichever store takes it
    struct nd__binder binder = {bind_carried, &c, NULL};
    struct nd_layer *l = NULL;
    if (st == ND_STATUS_OK)
        st = nd__layer_deserialize(files[0].p, files[0].n, &binder, &l, err);
    if (st == ND_STATUS_OK)
        st = check_canonical(l, &c, files, n, err);
    carried_release(&c); // the layer holds its own references
    if (st != ND_STATUS_OK) {
        nd_layer_unref(l);
        return st;
    }
    *out = l;
    return ND_STATUS_OK;
}

enum nd_status nd__export_decode_layer(const void *bytes, size_t len, const char *name,
                                       struct nd_layer **out, struct nd_error *err) {
    if (!bytes || !name || !out)
        return nd_error_set(err, ND_STATUS_INVALID_ARGUMENT, "nd__export_decode_layer: NULL");
    struct nd_layer *l;
    enum nd_status st = decode_layer(bytes, len, &l, err);
    if (st != ND_STATUS_OK)
        return st;
    snprintf(l->name, sizeof l->name, "%s", name); // nobody else has seen it yet
    *out = l;
    return ND_STATUS_OK;
}

// ---- plain data ----

void nd_layer_state_deinit(struct nd_layer_state *s) {
    if (!s)
        return;
    for (int id = 0; id < ND_ARRAY_COUNT; id++) {
        nd_tensor_deinit(&s->arrays[id].value);
        nd_optim_state_deinit(&s->arrays[id].opt);
    }
    nd_history_deinit(&s->history);
    memset(s, 0, sizeof *s);
}

static enum nd_status state_array_of(const struct nd_array *a, struct nd_layer_state_array *out,
                                     struct nd_error *err) {
    struct nd_tensor view = nd_tensor_view(a->data, &a->shape);
    out->present = true;
    out->version = a->version;
    enum nd_status st = nd_tensor_clone(&out->value, &view, err);
    return st == ND_STATUS_OK ? nd_optim_state_clone(&out->opt, &a->opt, err) : st;
}

enum nd_status nd_layer_state_decode(const void *bytes, size_t len, struct nd_layer_state *out,
                                     struct nd_error *err) {
    if (!bytes || !out)
        return nd_error_set(err, ND_STATUS_INVALID_ARGUMENT, "nd_layer_state_decode: NULL");
    memset(out, 0, sizeof *out);
    struct nd_layer *l;
    enum nd_status st = decode_layer(bytes, len, &l, err);
    if (st != ND_STATUS_OK)
        return st;
    snprintf(out->name, sizeof out->name, "%s", l->name);
    out->spec = l->spec;
    out->seed = l->seed;
    out->version = l->version;
    out->train_steps = l->train_steps;
    out->optimizer_steps = l->optimizer_steps;
    for (int id = 0; st == ND_STATUS_OK && id < ND_ARRAY_COUNT; id++) {
        struct nd_layer_state_array *sa = &out->arrays[id];
        sa->user_set = l->user_set[id];
        memcpy(sa->shared, l->shared[id], sizeof sa->shared);
        if (l->arrays[id])
            st = state_array_of(l->arrays[id], sa, err);
    }
    nd_history_move(&out->history, &l->history); // l is no one else's
    nd_layer_unref(l);
    return st;
}

// ---- checking a state ----

static enum nd_status array_error(struct nd_error *err, enum nd_status code, const char *where,
                                  enum nd_array_id id, const char *fmt, const char *detail) {
    char field[ND_ERROR_FIELD_MAX];
    snprintf(field, sizeof field, "%s.%s", where, nd_array_name(id));
    return nd_error_set_field(err, code, field, "%s %s%s", nd_array_name(id), fmt, detail);
}

static enum nd_status check_header(const struct nd_layer_state *s, struct nd_error *err) {
    if (!nd_name_valid(s->name))
        return nd_error_set_field(err, ND_STATUS_INVALID_VALUE, "name",
                                  "a name must match ^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$");
    enum nd_status st = nd_spec_validate(&s->spec, err);
    if (st != ND_STATUS_OK) {
        nd_error_prefix_field(err, "definition");
        return st;
    }
    if (s->spec.has_seed && s->seed != s->spec.seed)
        return nd_error_set_field(err, ND_STATUS_INVALID_VALUE, "definition.seed",
                                  "the layer's seed differs from its definition's");
    if (s->version < 1)
        return nd_error_set_field(err, ND_STATUS_INVALID_VALUE, "version",
                                  "a layer's version is >= 1");
    if (s->train_steps < 0 || s->optimizer_steps < 0)
        return nd_error_set_field(err, ND_STATUS_INVALID_VALUE,
                                  s->train_steps < 0 ? "counters.train_steps"
                                                     : "counters.optimizer_steps",
                                  "counters are >= 0");
    const char *a = s->arrays[ND_ARRAY_SCALING].shared, *b = s->arrays[ND_ARRAY_BIASES].shared;
    if (a[0] && strcmp(a, b) == 0)
        return nd_error_set_field(err, ND_STATUS_INVALID_VALUE, "definition.arrays.Biases",
                                  "Scaling and Biases cannot share one array");
    return ND_STATUS_OK;
}

// Where an array may be, and with what shape: lay is NULL while the input rank is unknown.
static enum nd_status check_slot(const struct nd_layer_state *s, enum nd_array_id id,
                                 const struct nd_layout *lay, struct nd_error *err) {
    const struct nd_layer_state_array *sa = &s->arrays[id];
    bool enabled = s->spec.enabled[id], can_track = nd_layer_type_can_track(s->spec.type);
    bool ready = lay && nd_shape_is_known(&lay->param_shape);
    char have[96], want[96];
    if (id >= ND_ARRAY_AFFINE_COUNT && enabled && !can_track) // pairs: nd_spec_validate
        return array_error(err, ND_STATUS_INVALID_VALUE, "definition.arrays", id,
                           "exists only in batch and instance normalization", "");
    if (sa->shared[0] && (id >= ND_ARRAY_AFFINE_COUNT || !enabled || !nd_name_valid(sa->shared)))
        return array_error(err, ND_STATUS_INVALID_VALUE, "definition.arrays", id,
                           "cannot be shared under this name", "");
    if (sa->present && !enabled)
        return array_error(err, ND_STATUS_INVALID_VALUE, "arrays", id,
                           "is disabled in the definition but has values", "");
    if (ready && enabled && !sa->present)
        return array_error(err, ND_STATUS_INVALID_VALUE, "arrays", id,
                           "needs values: the input fixes its shape ",
                           nd_shape_format(&lay->param_shape, want, sizeof want));
    if (lay && !ready && sa->present)
        return array_error(err, ND_STATUS_INVALID_VALUE, "arrays", id,
                           "can have no values while the input leaves its shape open: ",
                           nd_shape_format(&lay->param_shape, want, sizeof want));
    if (ready && sa->present && !nd_shape_equal(&sa->value.shape, &lay->param_shape)) {
        char msg[200];
        snprintf(msg, sizeof msg, "%s, the layer expects %s",
                 nd_shape_format(&sa->value.shape, have, sizeof have),
                 nd_shape_format(&lay->param_shape, want, sizeof want));
        return array_error(err, ND_STATUS_SHAPE_MISMATCH, "arrays", id, "has shape ", msg);
    }
    if (id == ND_ARRAY_MOVING_VARIANCE && sa->present)
        for (int64_t i = 0; i < sa->value.numel; i++)
            if (sa->value.data[i] < 0.0f)
                return array_error(err, ND_STATUS_INVALID_VALUE, "arrays", id,
                                   "holds negative values", "");
    return ND_STATUS_OK;
}

static enum nd_status check_opt(const struct nd_layer_state *s, enum nd_array_id id,
                                struct nd_error *err) {
    const struct nd_layer_state_array *sa = &s->arrays[id];
    const struct nd_optim_state *o = &sa->opt;
    if (o->n == 0) // no state: written all zero
        return o->kind == 0 && o->t == 0 && !o->m && !o->v
                   ? ND_STATUS_OK
                   : array_error(err, ND_STATUS_INVALID_VALUE, "optimizer_state", id,
                                 "has a step count or kind but no moments", "");
    if (!sa->present)
        return array_error(err, ND_STATUS_INVALID_VALUE, "optimizer_state", id,
                           "has optimizer state but no values", "");
    if ((int)o->kind < 0 || o->kind >= ND_OPTIMIZER_COUNT || o->t < 0)
        return array_error(err, ND_STATUS_INVALID_VALUE, "optimizer_state", id,
                           "has a bad kind or step count", "");
    char field[ND_ERROR_FIELD_MAX];
    snprintf(field, sizeof field, "optimizer_state.%s.m", nd_array_name(id));
    if (o->n != sa->value.numel || !o->m)
        return nd_error_set_field(err, ND_STATUS_SHAPE_MISMATCH, field,
                                  "m has %lld values, the array %lld", (long long)o->n,
                                  (long long)sa->value.numel);
    field[strlen(field) - 1] = 'v';
    if ((o->kind == ND_OPTIMIZER_ADAM) != (o->v != NULL))
        return nd_error_set_field(err, ND_STATUS_INVALID_VALUE, field,
                                  "adam keeps v, sgd does not");
    return ND_STATUS_OK;
}

// What the stored form accepts of a history (codec.c's get_history_v3).
static enum nd_status check_history(const struct nd_history *h, struct nd_error *err) {
    bool ok = h->count >= 0 && h->count <= ND_HISTORY_CAPACITY && (uint64_t)h->count <= h->total &&
              (h->count == 0 || h->ring);
    for (int32_t i = 0; ok && i < h->count; i++) {
        const struct nd_history_record *rec = &h->ring[(h->head + i) % ND_HISTORY_CAPACITY];
        ok = rec->version >= 1 && rec->train_step >= 1 && nd_history_record_valid(rec);
    }
    return ok ? ND_STATUS_OK
              : nd_error_set_field(err, ND_STATUS_INVALID_VALUE, "history",
                                   "the training history holds an impossible record");
}

enum nd_status nd_layer_state_check(const struct nd_layer_state *s, struct nd_error *err) {
    if (!s)
        return nd_error_set(err, ND_STATUS_INVALID_ARGUMENT, "nd_layer_state_check: NULL");
    enum nd_status st = check_header(s, err);
    struct nd_layout lay;
    bool known = s->spec.input.ndim != ND_RANK_UNKNOWN;
    if (st == ND_STATUS_OK && known &&
        (st = nd_spec_resolve(&s->spec, &s->spec.input, &lay, err)) != ND_STATUS_OK)
        nd_error_prefix_field(err, "definition");
    for (int id = 0; st == ND_STATUS_OK && id < ND_ARRAY_COUNT; id++)
        st = check_slot(s, (enum nd_array_id)id, known ? &lay : NULL, err);
    for (int id = 0; st == ND_STATUS_OK && id < ND_ARRAY_COUNT; id++)
        st = check_opt(s, (enum nd_array_id)id, err);
    if (st == ND_STATUS_OK)
        st = check_history(&s->history, err);
    return st;
}

// ---- encoding a state ----

// One array of a state as an array of the layer being built (not counted in any budget).
static enum nd_status array_of_state(const struct nd_layer_state_array *sa, struct nd_array **out,
                                     struct nd_error *err) {
    struct nd_array *a;
    enum nd_status st = nd__array_create(&sa->value.shape, sa->shared, NULL, &a, err);
    if (st != ND_STATUS_OK)
        return st;
    if (a->numel > 0)
        memcpy(a->data, sa->value.data, (size_t)a->numel * sizeof(float));
    a->version = sa->version;
    st = nd_optim_state_clone(&a->opt, &sa->opt, err);
    if (st != ND_STATUS_OK) {
        nd_array_unref(a);
        return st;
    }
    *out = a;
    return ND_STATUS_OK;
}

// A layer holding the state as it is (checked, not resolved): enough to serialize it.
static enum nd_status layer_of_state(const struct nd_layer_state *s, struct nd_layer **out,
                                     struct nd_error *err) {
    struct nd_layer *l;
    enum nd_status st = nd__layer_alloc(s->name, &s->spec, s->seed, &l, err);
    if (st != ND_STATUS_OK)
        return st;
    l->version = s->version;
    l->train_steps = s->train_steps;
    l->optimizer_steps = s->optimizer_steps;
    for (int id = 0; st == ND_STATUS_OK && id < ND_ARRAY_COUNT; id++) {
        const struct nd_layer_state_array *sa = &s->arrays[id];
        l->user_set[id] = sa->user_set;
        memcpy(l->shared[id], sa->shared, sizeof l->shared[id]);
        if (sa->present)
            st = array_of_state(sa, &l->arrays[id], err);
    }
    if (st == ND_STATUS_OK)
        st = nd_history_clone(&l->history, &s->history, err);
    if (st != ND_STATUS_OK) {
        nd_layer_unref(l);
        return st;
    }
    *out = l;
    return ND_STATUS_OK;
}

enum nd_status nd_layer_state_encode(const struct nd_layer_state *s, struct nd_buf *out,
                                     struct nd_error *err) {
    if (!s || !out)
        return nd_error_set(err, ND_STATUS_INVALID_ARGUMENT, "nd_layer_state_encode: NULL");
    enum nd_status st = nd_layer_state_check(s, err);
    struct nd_layer *l = NULL;
    if (st == ND_STATUS_OK)
        st = layer_of_state(s, &l, err);
    if (st != ND_STATUS_OK)
        return st;
    struct nd_buf files[MAX_FILES] = {{0}};
    int n = 0;
    st = layer_files(l, files, &n, err);
    if (st == ND_STATUS_OK)
        st = container_write(out, files, n, err);
    bufs_deinit(files, n);
    nd_layer_unref(l);
    return st;
}
