// codec.c - the binary form of layers and shared arrays (see codec.h), and restoring them.
//
// Fields are written one by one in a fixed order (never a struct's memory), little-endian, so
// the format does not depend on padding, the compiler or the struct layout. A reader checks
// every length against what is left, and the loaded spec goes through nd_spec_validate and
// nd_spec_resolve again: a damaged file is refused, never half-loaded.
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/codec.h"
#include "core/layer_impl.h"
#include "core/persist.h"

#define MAGIC_LAYER   "NDL1"
#define MAGIC_SHARED  "NDS1"
#define HEADER_BYTES  16 // magic, format version, payload length
#define TRAILER_BYTES 8  // checksum

// ---- writing ----

void nd_buf_deinit(struct nd_buf *buf) {
    if (!buf)
        return;
    free(buf->data);
    memset(buf, 0, sizeof *buf);
}

void nd__buf_put(struct nd_buf *b, const void *p, size_t n) {
    if (b->failed || n == 0) // n == 0: p may be NULL (an empty file, no floats)
        return;
    if (b->len + n > b->cap) {
        size_t cap = (b->len + n) * 2 + 256;
        unsigned char *grown = realloc(b->data, cap);
        if (!grown) {
            b->failed = 1;
            return;
        }
        b->data = grown;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

bool nd_buf_append(struct nd_buf *buf, const void *bytes, size_t n) {
    nd__buf_put(buf, bytes, n);
    return !buf->failed;
}

// Integers little-endian byte by byte; doubles and floats through their bit patterns.
static void put_u64(struct nd_buf *b, uint64_t v) {
    unsigned char x[8];
    for (int i = 0; i < 8; i++)
        x[i] = (unsigned char)(v >> (8 * i));
    nd__buf_put(b, x, 8);
}

static void put_u32(struct nd_buf *b, uint32_t v) {
    unsigned char x[4];
    for (int i = 0; i < 4; i++)
        x[i] = (unsigned char)(v >> (8 * i));
    nd__buf_put(b, x, 4);
}

static void put_u8(struct nd_buf *b, unsigned v) {
    unsigned char x = (unsigned char)v;
    nd__buf_put(b, &x, 1);
}

static void put_f64(struct nd_buf *b, double v) {
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    put_u64(b, bits);
}

// On a little-endian host the floats' memory is their stored form: one copy (a call per float
// was a third of serializing a 64-channel layer with its Adam moments).
static void put_floats(struct nd_buf *b, const float *v, int64_t n) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    nd__buf_put(b, v, (size_t)n * sizeof *v);
#else
    for (int64_t i = 0; i < n; i++) {
        uint32_t bits;
        memcpy(&bits, &v[i], sizeof bits);
        put_u32(b, bits);
    }
#endif
}

static void put_str(struct nd_buf *b, const char *s) {
    size_t n = strlen(s);
    put_u32(b, (uint32_t)n);
    nd__buf_put(b, s, n);
}

static void put_shape(struct nd_buf *b, const struct nd_shape *s) {
    put_u32(b, (uint32_t)s->ndim);
    for (int32_t i = 0; i < s->ndim; i++)
        put_u64(b, (uint64_t)s->dim[i]);
}

// ---- reading ----
//
// The primitives below read little-endian numbers and strings and never change. The field
// readers (the *_vN functions) are format version N's and stay frozen: a later format that
// changes a field adds its own reader for it (version 2: get_spec_v2, layer_payload_v2; version
// 3: get_history_v3, layer_payload_v3; the rest is still read by version 1's), so files of every
// released version still load.

struct rd {
    const unsigned char *p;
    size_t n, i;
    bool bad;         // ran past the end, or a value out of its range
    uint32_t version; // the file's format version (the table's rows stored by it)
};

static const unsigned char *take(struct rd *r, size_t n) {
    if (r->bad || n > r->n - r->i) {
        r->bad = true;
        return NULL;
    }
    const unsigned char *at = r->p + r->i;
    r->i += n;
    return at;
}

static uint64_t get_u64(struct rd *r) {
    const unsigned char *x = take(r, 8);
    uint64_t v = 0;
    for (int i = 0; x && i < 8; i++)
        v |= (uint64_t)x[i] << (8 * i);
    return v;
}

static uint32_t get_u32(struct rd *r) {
    const unsigned char *x = take(r, 4);
    uint32_t v = 0;
    for (int i = 0; x && i < 4; i++)
        v |= (uint32_t)x[i] << (8 * i);
    return v;
}

static unsigned get_u8(struct rd *r) {
    const unsigned char *x = take(r, 1);
    return x ? *x : 0;
}

static bool get_bool(struct rd *r) {
    unsigned v = get_u8(r);
    r->bad |= v > 1;
    return v == 1;
}

static double get_f64(struct rd *r) {
    uint64_t bits = get_u64(r);
    double v;
    memcpy(&v, &bits, sizeof v);
    return v;
}

// An enum value below count.
static unsigned get_enum(struct rd *r, unsigned count) {
    uint32_t v = get_u32(r);
    r->bad |= v >= count;
    return v < count ? v : 0;
}

static void get_floats(struct rd *r, float *v, int64_t n) {
    const unsigned char *x = take(r, (size_t)n * 4);
    for (int64_t i = 0; x && i < n; i++) {
        uint32_t bits = (uint32_t)x[4 * i] | (uint32_t)x[4 * i + 1] << 8 |
                        (uint32_t)x[4 * i + 2] << 16 | (uint32_t)x[4 * i + 3] << 24;
        memcpy(&v[i], &bits, sizeof bits);
    }
}

// A string into out (size bytes with the NUL); longer ones are damage.
static void get_str(struct rd *r, char *out, size_t size) {
    uint32_t n = get_u32(r);
    const unsigned char *x = n < size ? take(r, n) : NULL;
    if (!x || memchr(x, '\0', n)) { // a NUL inside would store back shorter: damage
        r->bad = true;
        out[0] = '\0';
        return;
    }
    memcpy(out, x, n);
    out[n] = '\0';
}

static void get_shape(struct rd *r, struct nd_shape *s, bool may_be_unknown) {
    uint32_t ndim = get_u32(r);
    bool unknown = ndim == (uint32_t)ND_RANK_UNKNOWN && may_be_unknown;
    r->bad |= !unknown && ndim > ND_MAX_DIMS;
    s->ndim = unknown ? ND_RANK_UNKNOWN : r->bad ? 0 : (int32_t)ndim;
    for (int32_t i = 0; i < s->ndim; i++) {
        s->dim[i] = (int64_t)get_u64(r);
        r->bad |= s->dim[i] < ND_DIM_AUTO;
    }
}

// ---- the spec ----

static void put_levels(struct nd_buf *b, const struct nd_levels *l) {
    put_u32(b, (uint32_t)l->kind);
    put_u32(b, (uint32_t)l->count);
    for (int32_t i = 0; i < l->count; i++)
        put_u32(b, (uint32_t)l->level[i]);
    put_u32(b, (uint32_t)l->from);
    put_u32(b, (uint32_t)l->to);
    put_u8(b, l->to_all);
}

static void get_levels_v1(struct rd *r, struct nd_levels *l) {
    l->kind = (enum nd_levels_kind)get_enum(r, ND_LEVELS_COMPLEMENT + 1);
    uint32_t count = get_u32(r);
    r->bad |= count > ND_MAX_RANK;
    l->count = r->bad ? 0 : (int32_t)count;
    for (int32_t i = 0; i < l->count; i++)
        l->level[i] = (int32_t)get_u32(r);
    l->from = (int32_t)get_u32(r);
    l->to = (int32_t)get_u32(r);
    l->to_all = get_bool(r);
}

static void put_arrays_spec(struct nd_buf *b, const struct nd_spec *s) {
    for (int id = 0; id < ND_ARRAY_COUNT; id++) {
        put_u8(b, s->enabled[id]);
        put_u32(b, (uint32_t)s->init[id].kind);
        put_f64(b, s->init[id].a);
        put_f64(b, s->init[id].b);
        put_u8(b, s->init_given[id]);
        put_f64(b, s->lr_multiplier[id]);
    }
    for (int id = 0; id < ND_ARRAY_AFFINE_COUNT; id++) {
        put_f64(b, s->regularizer[id].l1);
        put_f64(b, s->regularizer[id].l2);
        put_u32(b, (uint32_t)s->constraint[id].kind);
        put_f64(b, s->constraint[id].min_value);
        put_f64(b, s->constraint[id].max_value);
        put_f64(b, s->constraint[id].rate);
    }
}

static void get_arrays_spec_v1(struct rd *r, struct nd_spec *s) {
    for (int id = 0; id < ND_ARRAY_COUNT; id++) {
        s->enabled[id] = get_bool(r);
        s->init[id].kind = (enum nd_init_kind)get_enum(r, ND_INIT_COUNT);
        s->init[id].a = get_f64(r);
        s->init[id].b = get_f64(r);
        s->init_given[id] = get_bool(r);
        s->lr_multiplier[id] = get_f64(r);
    }
    for (int id = 0; id < ND_ARRAY_AFFINE_COUNT; id++) {
        s->regularizer[id].l1 = get_f64(r);
        s->regularizer[id].l2 = get_f64(r);
        s->constraint[id].kind = (enum nd_constraint_kind)get_enum(r, ND_CONSTRAINT_COUNT);
        s->constraint[id].min_value = get_f64(r);
        s->constraint[id].max_value = get_f64(r);
        s->constraint[id].rate = get_f64(r);
    }
}

// Format version 2's addition to the spec, after the seed: how the definition named things
// (API.md 1.1a). u32 type_alias (nd_type_name.id, 0: the canonical name), u32 convention_from,
// u8 synchronized, u64 num_features (0: not given), then normalized_shape as a shape (ndim 0:
// not given).
static void put_naming(struct nd_buf *b, const struct nd_spec *s) {
    put_u32(b, (uint32_t)s->type_alias);
    put_u32(b, (uint32_t)s->convention_from);
    put_u8(b, s->synchronized);
    put_u64(b, (uint64_t)s->num_features);
    put_shape(b, &s->normalized_shape);
}

// Format version 4's addition to the spec, after put_naming's fields: the rows of
// core/spec_fields.def stored since version 4, in table order, each by its kind: F64 as f64,
// BOOL as u8, I64 as u64, STRING as a string (u32 length, bytes; at most the row's max).
static void put_fields(struct nd_buf *b, const struct nd_spec *s) {
    for (int i = 0; i < ND_SPEC_FIELD_COUNT; i++) {
        const struct nd_spec_field *f = &nd_spec_fields[i];
        const void *p = nd_spec_field_cptr(s, f);
        if (f->since < 4)
            continue; // stored by the hand-written fields above
        if (f->kind == ND_FIELD_F64)
            put_f64(b, *(const double *)p);
        else if (f->kind == ND_FIELD_BOOL)
            put_u8(b, *(const bool *)p);
        else if (f->kind == ND_FIELD_I64)
            put_u64(b, (uint64_t) * (const int64_t *)p);
        else
            put_str(b, p);
    }
}

static void put_spec(struct nd_buf *b, const struct nd_spec *s) {
    put_u32(b, (uint32_t)s->type);
    put_u32(b, (uint32_t)s->batchnorm_nd);
    put_u32(b, (uint32_t)s->convention);
    put_shape(b, &s->input);
    put_f64(b, s->epsilon);
    put_u8(b, s->trainable);
    put_u8(b, s->inplace);
    put_f64(b, s->momentum);
    put_u8(b, s->momentum_null);
    put_u8(b, s->interleaving);
    put_u8(b, s->interleaving_given);
    put_u32(b, (uint32_t)s->moving_variance);
    put_f64(b, s->init_factor);
    put_f64(b, s->min_factor);
    put_f64(b, s->sscale);
    put_u32(b, (uint32_t)s->naxes);
    for (int32_t i = 0; i < s->naxes; i++)
        put_u32(b, (uint32_t)s->axes[i]);
    put_levels(b, &s->aggregation);
    put_levels(b, &s->scaling);
    put_u32(b, (uint32_t)s->ngroup);
    for (int32_t i = 0; i < s->ngroup; i++)
        put_u64(b, (uint64_t)s->group_number[i]);
    put_u32(b, (uint32_t)s->method);
    put_u8(b, s->unbiased);
    put_u64(b, (uint64_t)s->groups);
    put_arrays_spec(b, s);
    put_u8(b, s->has_seed);
    put_u64(b, s->seed);
    put_naming(b, s);
    put_fields(b, s);
}

static void get_spec_v1(struct rd *r, struct nd_spec *s) {
    memset(s, 0, sizeof *s);
    s->type = (enum nd_layer_type)get_enum(r, ND_LAYER_TYPE_COUNT);
    s->batchnorm_nd = (int32_t)get_u32(r);
    s->convention = (enum nd_convention)get_enum(r, ND_CONVENTION_COUNT);
    get_shape(r, &s->input, true);
    s->epsilon = get_f64(r);
    s->trainable = get_bool(r);
    s->inplace = get_bool(r);
    s->momentum = get_f64(r);
    s->momentum_null = get_bool(r);
    s->interleaving = get_bool(r);
    s->interleaving_given = get_bool(r);
    s->moving_variance = (enum nd_variance_estimator)get_enum(r, ND_VARIANCE_UNBIASED + 1);
    s->init_factor = get_f64(r);
    s->min_factor = get_f64(r);
    s->sscale = get_f64(r);
    uint32_t naxes = get_u32(r);
    r->bad |= naxes > ND_MAX_RANK;
    s->naxes = r->bad ? 0 : (int32_t)naxes;
    for (int32_t i = 0; i < s->naxes; i++)
        s->axes[i] = (int32_t)get_u32(r);
    get_levels_v1(r, &s->aggregation);
    get_levels_v1(r, &s->scaling);
    uint32_t ngroup = get_u32(r);
    r->bad |= ngroup > ND_MAX_RANK;
    s->ngroup = r->bad ? 0 : (int32_t)ngroup;
    for (int32_t i = 0; i < s->ngroup; i++)
        s->group_number[i] = (int64_t)get_u64(r);
    s->method = (enum nd_method)get_enum(r, ND_METHOD_RMS + 1);
    s->unbiased = get_bool(r);
    s->groups = (int64_t)get_u64(r);
    get_arrays_spec_v1(r, s);
    s->has_seed = get_bool(r);
    s->seed = get_u64(r);
}

// Format version 2's spec: version 1's, then put_naming's fields (frozen). Out of range: an
// alias id that is not a spelling of the type (or a BatchNormND alias whose N is not the
// spec's), a convention_from or bool past its values, a negative num_features, a
// normalized_shape of more than ND_MAX_RANK dims or a dim below 0. The rest is
// nd_spec_validate's (image_check).
static void get_spec_v2(struct rd *r, struct nd_spec *s) {
    get_spec_v1(r, s); // a v1 spec: no alias, convention_from unknown, nothing PyTorch's
    uint32_t alias = get_u32(r);
    struct nd_type_name n;
    bool named = alias <= INT32_MAX && nd_type_name_of(s->type, (int32_t)alias, &n);
    r->bad |= !named || (n.batchnorm_nd != 0 && n.batchnorm_nd != s->batchnorm_nd);
    s->type_alias = r->bad ? 0 : (int32_t)alias;
    s->convention_from =
        (enum nd_convention_from)get_enum(r, (unsigned)ND_CONVENTION_FROM_REQUEST + 1);
    s->synchronized = get_bool(r);
    s->num_features = (int64_t)get_u64(r);
    r->bad |= s->num_features < 0;
    get_shape(r, &s->normalized_shape, false);
    r->bad |= s->normalized_shape.ndim > ND_MAX_RANK;
    for (int32_t i = 0; !r->bad && i < s->normalized_shape.ndim; i++)
        r->bad |= s->normalized_shape.dim[i] < 0;
}

// The rows put_fields writes that the file's format version holds (since 4 .. r->version), as
// put_fields wrote them; a row the version lacks (every row, before version 4) takes its
// default, as an older binary's layer had it. A STRING longer than its max is damage.
static void get_fields(struct rd *r, struct nd_spec *s) {
    for (int i = 0; i < ND_SPEC_FIELD_COUNT; i++) {
        const struct nd_spec_field *f = &nd_spec_fields[i];
        void *p = nd_spec_field_ptr(s, f);
        if (f->since < 4)
            continue; // the version's own spec reader's
        if (f->since > r->version)
            nd_spec_field_default(s, f);
        else if (f->kind == ND_FIELD_F64)
            *(double *)p = get_f64(r);
        else if (f->kind == ND_FIELD_BOOL)
            *(bool *)p = get_bool(r);
        else if (f->kind == ND_FIELD_I64)
            *(int64_t *)p = (int64_t)get_u64(r);
        else
            get_str(r, p, f->size);
    }
}

// ---- arrays ----

static void put_opt(struct nd_buf *b, const struct nd_optim_state *o) {
    put_u32(b, (uint32_t)o->kind);
    put_u64(b, (uint64_t)o->n);
    put_u64(b, (uint64_t)o->t);
    put_floats(b, o->m, o->m ? o->n : 0);
    put_u8(b, o->v != NULL);
    put_floats(b, o->v, o->v ? o->n : 0);
}

// The optimizer state of an array of numel values; a state for another size is damage.
static void get_opt_v1(struct rd *r, struct nd_optim_state *o, int64_t numel) {
    enum nd_optimizer_kind kind = (enum nd_optimizer_kind)get_enum(r, ND_OPTIMIZER_COUNT);
    int64_t n = (int64_t)get_u64(r), t = (int64_t)get_u64(r);
    r->bad |= n != 0 && n != numel;
    if (r->bad || n == 0 ||
        nd_optim_state_prepare(o, kind, n, NULL) != ND_STATUS_OK) { // zeroed m and v
        r->bad |= n != 0;
        // An empty state is written all zero (nd_optim_state_deinit): anything else is damage,
        // so that a file that loads stores back to the same bytes.
        r->bad |= get_u8(r) != 0 || kind != 0 || t != 0;
        return;
    }
    o->t = t;
    get_floats(r, o->m, n);
    bool has_v = get_bool(r);
    r->bad |= has_v != (o->v != NULL);
    if (o->v && has_v)
        get_floats(r, o->v, n);
}

// An array's shape, values, optimizer state and version (caller holds its lock).
static void put_array(struct nd_buf *b, const struct nd_array *a) {
    put_shape(b, &a->shape);
    put_floats(b, a->data, a->numel);
    put_opt(b, &a->opt);
    put_u64(b, a->version);
}

static enum nd_status get_array_v1(struct rd *r, const char *shared_name, struct nd_array **out,
                                   struct nd_error *err) {
    struct nd_shape shape;
    get_shape(r, &shape, false);
    int64_t numel = 0;
    if (r->bad || nd_shape_numel(&shape, &numel, NULL) != ND_STATUS_OK ||
        (size_t)numel > (r->n - r->i) / 4)
        return nd_error_set(err, ND_STATUS_INVALID_VALUE, "damaged array shape");
    struct nd_array *a;
    enum nd_status st = nd__array_create(&shape, shared_name, NULL, &a, err); // counted by
                                                                              // the registry
    if (st != ND_STATUS_OK)
        return st;
    get_floats(r, a->data, a->numel);
    get_opt_v1(r, &a->opt, a->numel);
    a->version = get_u64(r);
    *out = a;
    return ND_STATUS_OK;
}

// ---- the training history ----

// Format version 3's addition, after the arrays: u64 total, u32 count (<= ND_HISTORY_CAPACITY
// and <= total), then count records oldest first: u64 version, u64 train_step, f64 time, u8
// flags, then only the fields the flags hold: f64 loss (ND_HISTORY_LOSS); f64 mean norm, f64
// variance norm (ND_HISTORY_STATS); u32 optimizer, f64 learning rate (ND_HISTORY_OPTIMIZER).
// Fields a flag leaves out are not written, so a file that loads stores back to its bytes.
static void put_record(struct nd_buf *b, const struct nd_history_record *rec) {
    put_u64(b, rec->version);
    put_u64(b, (uint64_t)rec->train_step);
    put_f64(b, rec->time);
    put_u8(b, rec->flags);
    if (rec->flags & ND_HISTORY_LOSS)
        put_f64(b, rec->loss);
    if (rec->flags & ND_HISTORY_STATS) {
        put_f64(b, rec->batch_mean_norm);
        put_f64(b, rec->batch_variance_norm);
    }
    if (rec->flags & ND_HISTORY_OPTIMIZER) {
        put_u32(b, (uint32_t)rec->optimizer);
        put_f64(b, rec->learning_rate);
    }
}

// The history with its newest `keep` records only (keep <= h->count; a partial copy's), or all.
static void put_history(struct nd_buf *b, const struct nd_history *h, int32_t keep) {
    put_u64(b, h->total);
    put_u32(b, (uint32_t)keep);
    for (int32_t i = h->count - keep; i < h->count; i++)
        put_record(b, &h->ring[(h->head + i) % ND_HISTORY_CAPACITY]);
}

// Out of range: unknown flag bits, a version or train_step below 1 (a record follows a step),
// and what nd_history_record_valid refuses (non-finite time, negative or non-finite values, an
// unknown optimizer).
static void get_record_v3(struct rd *r, struct nd_history_record *rec) {
    memset(rec, 0, sizeof *rec);
    rec->version = get_u64(r);
    rec->train_step = (int64_t)get_u64(r);
    rec->time = get_f64(r);
    rec->flags = get_u8(r);
    if (rec->flags & ND_HISTORY_LOSS)
        rec->loss = get_f64(r);
    if (rec->flags & ND_HISTORY_STATS) {
        rec->batch_mean_norm = get_f64(r);
        rec->batch_variance_norm = get_f64(r);
    }
    if (rec->flags & ND_HISTORY_OPTIMIZER) {
        uint32_t kind = get_u32(r);
        r->bad |= kind >= ND_OPTIMIZER_COUNT;
        rec->optimizer = kind < ND_OPTIMIZER_COUNT ? (enum nd_optimizer_kind)kind : 0;
        rec->learning_rate = get_f64(r);
    }
    r->bad |= rec->version < 1 || rec->train_step < 1 || !nd_history_record_valid(rec);
}

// Format version 3's history (frozen). The ring is allocated only for records, counted in no
// budget (the registry counts it with the layer).
static enum nd_status get_history_v3(struct rd *r, struct nd_history *h, struct nd_error *err) {
    uint64_t total = get_u64(r);
    uint32_t count = get_u32(r);
    r->bad |= count > ND_HISTORY_CAPACITY || count > total;
    if (r->bad)
        return ND_STATUS_OK; // the caller reports the damage
    h->total = total;
    if (count == 0)
        return ND_STATUS_OK;
    enum nd_status st = nd_history_reserve(h, NULL, err);
    for (uint32_t i = 0; st == ND_STATUS_OK && i < count && !r->bad; i++) {
        get_record_v3(r, &h->ring[i]);
        h->count++;
    }
    return st;
}

// ---- the envelope ----

// FNV-1a, 64 bits: catches torn and damaged files (it is no defence against tampering).
uint64_t nd__checksum(const unsigned char *p, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

static void frame_begin(struct nd_buf *b, const char *magic) {
    nd__buf_put(b, magic, 4);
    put_u32(b, ND_PERSIST_FORMAT_VERSION);
    put_u64(b, 0); // the payload length, patched by frame_end
}

// Patches the length and appends the checksum; an unsealed frame (a snapshot that never leaves
// memory: the undo of a change) gets 0 instead, and is read back with verify false.
static enum nd_status frame_end(struct nd_buf *b, bool seal, struct nd_error *err) {
    if (b->failed)
        return nd_error_set(err, ND_STATUS_OUT_OF_MEMORY, "cannot serialize the state");
    uint64_t len = b->len - HEADER_BYTES;
    for (int i = 0; i < 8; i++)
        b->data[8 + i] = (unsigned char)(len >> (8 * i));
    put_u64(b, seal ? nd__checksum(b->data, b->len) : 0);
    return b->failed ? nd_error_set(err, ND_STATUS_OUT_OF_MEMORY, "cannot serialize the state")
                     : ND_STATUS_OK;
}

static const struct payload_reader *reader_of(uint32_t version);

// Checks magic, version (one with a reader), length and (verify) checksum; *r then reads the
// payload with *reader.
static enum nd_status frame_open(const void *bytes, size_t n, const char *magic, bool verify,
                                 struct rd *r, const struct payload_reader **reader,
                                 struct nd_error *err) {
    const unsigned char *p = bytes;
    if (n < HEADER_BYTES + TRAILER_BYTES || memcmp(p, magic, 4) != 0)
        return nd_error_set(err, ND_STATUS_INVALID_VALUE, "not a normd %s file",
                            magic[2] == 'L' ? "layer" : "shared-array");
    struct rd h = {.p = p, .n = n, .i = 4};
    uint32_t version = get_u32(&h);
    uint64_t len = get_u64(&h);
    *reader = reader_of(version);
    if (!*reader)
        return nd_error_set(err, ND_STATUS_INVALID_VALUE, "format version %u, expected %u", version,
                            ND_PERSIST_FORMAT_VERSION);
    if (len != n - HEADER_BYTES - TRAILER_BYTES)
        return nd_error_set(err, ND_STATUS_INVALID_VALUE,
                            "truncated: %llu bytes of payload "
                            "announced, %zu present",
                            (unsigned long long)len, n - HEADER_BYTES - TRAILER_BYTES);
    struct rd t = {.p = p, .n = n, .i = n - TRAILER_BYTES};
    if (verify && get_u64(&t) != nd__checksum(p, n - TRAILER_BYTES))
        return nd_error_set(err, ND_STATUS_INVALID_VALUE, "checksum mismatch: damaged");
    *r = (struct rd){.p = p + HEADER_BYTES, .n = (size_t)len, .version = version};
    return ND_STATUS_OK;
}

// ---- layers ----

// The layer's state; the caller holds its lock (read or write). Shared arrays are written by
// name only: their values live in their own files.
// keep: how many of the history's newest records to write (all of them but in a partial copy).
static enum nd_status layer_write(const struct nd_layer *l, struct nd_buf *out, bool seal,
                                  int32_t keep, struct nd_error *err) {
    frame_begin(out, MAGIC_LAYER);
    put_str(out, l->name);
    put_spec(out, &l->spec);
    put_u64(out, l->version);
    put_u64(out, (uint64_t)l->train_steps);
    put_u64(out, (uint64_t)l->optimizer_steps);
    put_u64(out, l->seed);
    // Per array: user_set, the shared name ("" for an own array), whether the array exists
    // (a shared one bound, or pending until initialize), then an own array's state.
    for (int id = 0; id < ND_ARRAY_COUNT; id++) {
        const struct nd_array *a = l->arrays[id];
        put_u8(out, l->user_set[id]);
        put_str(out, l->shared[id]);
        put_u8(out, a != NULL);
        if (a && !l->shared[id][0]) {
            nd_rwlock_rdlock(a->lock);
            put_array(out, a);
            nd_rwlock_unlock(a->lock);
        }
    }
    put_history(out, &l->history, keep);
    return frame_end(out, seal, err);
}

enum nd_status nd__layer_serialize(const struct nd_layer *l, struct nd_buf *out,
                                   struct nd_error *err) {
    return layer_write(l, out, true, l->history.count, err);
}

enum nd_status nd__layer_serialize_partial(const struct nd_layer *l, uint64_t since,
                                           struct nd_buf *out, struct nd_error *err) {
    const struct nd_history *h = &l->history;
    if (since > h->total || h->total - since > (uint64_t)h->count)
        return nd_error_set(err, ND_STATUS_INTERNAL,
                            "a partial copy of %s since record %llu: the ring holds %d of %llu",
                            l->name, (unsigned long long)since, (int)h->count,
                            (unsigned long long)h->total);
    return layer_write(l, out, true, (int32_t)(h->total - since), err);
}

enum nd_status nd__layer_snapshot(const struct nd_layer *l, struct nd_buf *out,
                                  struct nd_error *err) {
    return layer_write(l, out, false, 0, err);
}

// The parsed pieces of a layer file, before they become a layer.
struct layer_image {
    char name[ND_NAME_MAX + 1];
    struct nd_spec spec;
    uint64_t version, seed;
    int64_t train_steps, optimizer_steps;
    bool user_set[ND_ARRAY_COUNT];
    char shared[ND_ARRAY_COUNT][ND_NAME_MAX + 1];
    bool present[ND_ARRAY_COUNT];            // the array existed (own, or shared and bound)
    struct nd_array *arrays[ND_ARRAY_COUNT]; // own arrays (one reference each)
    struct nd_history history;               // empty before format version 3
    bool has_history;                        // format version 3 on: the payload ends with it
    size_t history_at;                       // where the history starts in the payload
};

static void image_release(struct layer_image *im) {
    for (int id = 0; id < ND_ARRAY_COUNT; id++)
        nd_array_unref(im->arrays[id]);
    nd_history_deinit(&im->history);
}

// What a definition could never have produced (nd__layer_create's rules): the definition's
// own checks, shared names only on enabled Scaling and Biases, two different ones, arrays only
// where enabled.
static enum nd_status image_check(const struct layer_image *im, struct nd_error *err) {
    struct nd_error why;
    nd_error_clear(&why);
    if (!nd_name_valid(im->name))
        return nd_error_set(err, ND_STATUS_INVALID_VALUE, "damaged layer: invalid name");
    if (nd_spec_validate(&im->spec, &why) != ND_STATUS_OK)
        return nd_error_set(err, ND_STATUS_INVALID_VALUE, "damaged layer %s: %s", im->name,
                            why.msg);
    for (int id = 0; id < ND_ARRAY_COUNT; id++) {
        bool shared = im->shared[id][0] != '\0';
        // The moving statistics exist only in batch and instance norms, both or neither
        // (PyTorch's track_running_stats; nd_spec_validate checks the pair): the kernels read
        // them whenever the layer tracks them.
        if (id >= ND_ARRAY_AFFINE_COUNT && im->spec.enabled[id] &&
            !nd_layer_type_can_track(im->spec.type))
            return nd_error_set(err, ND_STATUS_INVALID_VALUE,
                                "damaged layer %s: %s in a layer without moving statistics",
                                im->name, nd_array_name((enum nd_array_id)id));
        if ((shared && (id >= ND_ARRAY_AFFINE_COUNT || !nd_name_valid(im->shared[id]))) ||
            (im->present[id] && !im->spec.enabled[id]) || (shared && !im->spec.enabled[id]))
            return nd_error_set(err, ND_STATUS_INVALID_VALUE, "damaged layer %s: %s", im->name,
                                nd_array_name((enum nd_array_id)id));
    }
    if (im->spec.has_seed && im->seed != im->spec.seed) // the layer's seed is the spec's then
        return nd_error_set(err, ND_STATUS_INVALID_VALUE, "damaged layer %s: two seeds", im->name);
    if (im->shared[0][0] && strcmp(im->shared[0], im->shared[1]) == 0)
        return nd_error_set(err, ND_STATUS_INVALID_VALUE,
                            "damaged layer %s: Scaling and Biases share one array", im->name);
    return ND_STATUS_OK;
}

// A layer payload: its name, the spec (read by the format's own spec reader, then the table's
// rows the version holds), counters and seed, then per array its flags, shared name and own
// state, then (format version 3 on) the training history. Versions 1 and 2 differ only in the
// spec; version 3 adds the history; version 4 the table's rows at the end of the spec.
static enum nd_status layer_payload(
    struct rd *r, struct layer_image *im, void (*get_spec)(struct rd *r, struct nd_spec *spec),
    enum nd_status (*get_history)(struct rd *r, struct nd_history *h, struct nd_error *err),
    struct nd_error *err) {
    enum nd_status st = ND_STATUS_OK;
    get_str(r, im->name, sizeof im->name);
    get_spec(r, &im->spec);
    get_fields(r, &im->spec); // the table's rows since 4: nothing to read before version 4
    im->version = get_u64(r);
    im->train_steps = (int64_t)get_u64(r);
    im->optimizer_steps = (int64_t)get_u64(r);
    im->seed = get_u64(r);
    for (int id = 0; st == ND_STATUS_OK && id < ND_ARRAY_COUNT; id++) {
        im->user_set[id] = get_bool(r);
        get_str(r, im->shared[id], sizeof im->shared[id]);
        im->present[id] = get_bool(r);
        if (im->present[id] && !im->shared[id][0] && !r->bad)
            st = get_array_v1(r, NULL, &im->arrays[id], err);
    }
    im->has_history = get_history != NULL;
    im->history_at = r->i;
    if (st == ND_STATUS_OK && get_history && !r->bad)
        st = get_history(r, &im->history, err);
    if (st == ND_STATUS_OK && (r->bad || r->i != r->n))
        st = nd_error_set(err, ND_STATUS_INVALID_VALUE, "damaged layer state");
    return st;
}

// Format version 1's layer payload (frozen).
static enum nd_status layer_payload_v1(struct rd *r, struct layer_image *im, struct nd_error *err) {
    return layer_payload(r, im, get_spec_v1, NULL, err);
}

// Format version 2's layer payload (frozen): version 1's with get_spec_v2's spec.
static enum nd_status layer_payload_v2(struct rd *r, struct layer_image *im, struct nd_error *err) {
    return layer_payload(r, im, get_spec_v2, NULL, err);
}

// Format version 3's layer payload (frozen): version 2's, then get_history_v3's history.
static enum nd_status layer_payload_v3(struct rd *r, struct layer_image *im, struct nd_error *err) {
    return layer_payload(r, im, get_spec_v2, get_history_v3, err);
}

// Format version 1's shared-array payload (frozen; version 2's too).
static enum nd_status shared_payload_v1(struct rd *r, struct nd_array **out, struct nd_error *err) {
    char name[ND_NAME_MAX + 1];
    get_str(r, name, sizeof name);
    if (r->bad || !nd_name_valid(name))
        return nd_error_set(err, ND_STATUS_INVALID_VALUE, "damaged shared-array name");
    enum nd_status st = get_array_v1(r, name, out, err);
    if (st == ND_STATUS_OK && (r->bad || r->i != r->n)) {
        nd_array_unref(*out);
        st = nd_error_set(err, ND_STATUS_INVALID_VALUE, "damaged shared array %s", name);
    }
    return st;
}

// Format version 1's stored name: the first field of both payloads (frozen; version 2's too).
static void name_v1(struct rd *r, char *name, size_t size) {
    get_str(r, name, size);
}

// ---- readers by format version ----

// Every format version normd ever wrote, with its readers: loading dispatches on the version in
// the file. A released entry never changes; a format change bumps ND_PERSIST_FORMAT_VERSION,
// writes only the new format, and adds an entry here (tests/data/persist/ holds a data dir of
// each released version, and the tests load them).
struct payload_reader {
    uint32_t version;
    enum nd_status (*layer)(struct rd *r, struct layer_image *im, struct nd_error *err);
    enum nd_status (*shared)(struct rd *r, struct nd_array **out, struct nd_error *err);
    void (*name)(struct rd *r, char *name, size_t size);
};

static const struct payload_reader readers[] = {
    {1, layer_payload_v1, shared_payload_v1, name_v1},
    // 2: the spec adds how the definition named things (put_naming); shared arrays unchanged.
    {2, layer_payload_v2, shared_payload_v1, name_v1},
    // 3: a layer's training history follows its arrays (put_history); shared arrays unchanged.
    {3, layer_payload_v3, shared_payload_v1, name_v1},
    // 4: the spec ends with core/spec_fields.def's rows since 4 (put_fields; layer_payload
    // reads them for every version, a version that lacks a row getting its default); shared
    // arrays unchanged. A later version that only adds rows adds an entry like this one.
    {4, layer_payload_v3, shared_payload_v1, name_v1},
};

// Every row of core/spec_fields.def is stored by a version this binary writes.
#define ND_SPEC_FIELD(name, alias, member, kind, max, types, torch, dflt, range, show, since,      \
                      decl)                                                                        \
    _Static_assert((since) >= 1 && (since) <= ND_PERSIST_FORMAT_VERSION,                           \
                   "spec_fields.def: " name " is stored since a format this binary writes");
#include "core/spec_fields.def"
#undef ND_SPEC_FIELD

static const struct payload_reader *reader_of(uint32_t version) {
    for (size_t i = 0; i < sizeof readers / sizeof readers[0]; i++)
        if (readers[i].version == version)
            return &readers[i];
    return NULL;
}

static enum nd_status image_read(const void *bytes, size_t n, bool verify, struct layer_image *im,
                                 struct nd_error *err) {
    struct rd r;
    const struct payload_reader *reader;
    memset(im, 0, sizeof *im);
    enum nd_status st = frame_open(bytes, n, MAGIC_LAYER, verify, &r, &reader, err);
    if (st == ND_STATUS_OK)
        st = reader->layer(&r, im, err);
    if (st == ND_STATUS_OK)
        st = image_check(im, err);
    if (st != ND_STATUS_OK)
        image_release(im);
    return st;
}

// A shared array the layer had bound is looked up by name (a layer whose arrays have shapes has
// them all); one still pending stays pending. Arrays of a layer with known shapes must have
// them: every enabled one present, each of the layout's shape; a layer whose input rank is
// known but not its arrays' dims holds no array (forward would trust its shape).
static enum nd_status image_bind(struct layer_image *im, const struct nd_layout *lay, bool known,
                                 bool ready, const struct nd__binder *binder,
                                 struct nd_error *err) {
    for (int id = 0; id < ND_ARRAY_COUNT; id++) {
        // A ready layer has bound all its shared arrays: no writer leaves one pending.
        if (im->shared[id][0] && ready && !im->present[id])
            return nd_error_set(err, ND_STATUS_INVALID_VALUE,
                                "damaged layer %s: %s is shared but unbound", im->name,
                                nd_array_name((enum nd_array_id)id));
        if (im->shared[id][0] && im->present[id]) {
            struct nd_rng unused;
            struct nd_error why; // "not found" is the file's fault here: INVALID_VALUE
            nd_error_clear(&why);
            if (!binder || binder->bind(binder->ctx, im->shared[id], NULL, NULL, &unused,
                                        &im->arrays[id], &why) != ND_STATUS_OK)
                return nd_error_set(err, ND_STATUS_INVALID_VALUE,
                                    "layer %s uses the shared array %s, which is missing", im->name,
                                    im->shared[id]);
        }
        if (known && !ready && im->arrays[id]) // live layers infer such shapes from arrays
            return nd_error_set(err, ND_STATUS_INVALID_VALUE,
                                "damaged layer %s: %s has values but the input does not fix its "
                                "shape",
                                im->name, nd_array_name((enum nd_array_id)id));
        if (ready && im->spec.enabled[id] && !im->arrays[id])
            return nd_error_set(err, ND_STATUS_INVALID_VALUE, "damaged layer %s: %s is missing",
                                im->name, nd_array_name((enum nd_array_id)id));
        if (im->arrays[id] && ready && !nd_shape_equal(&im->arrays[id]->shape, &lay->param_shape))
            return nd_error_set(err, ND_STATUS_INVALID_VALUE, "damaged layer %s: %s does not fit",
                                im->name, nd_array_name((enum nd_array_id)id));
    }
    return ND_STATUS_OK;
}

enum nd_status nd__layer_deserialize(const void *bytes, size_t n, const struct nd__binder *binder,
                                     struct nd_layer **out, struct nd_error *err) {
    struct layer_image im;
    enum nd_status st = image_read(bytes, n, true, &im, err);
    if (st != ND_STATUS_OK)
        return st;
    struct nd_layout lay = {0};
    bool known = im.spec.input.ndim != ND_RANK_UNKNOWN;
    struct nd_error why;
    nd_error_clear(&why);
    if (known && nd_spec_resolve(&im.spec, &im.spec.input, &lay, &why) != ND_STATUS_OK)
        st = nd_error_set(err, ND_STATUS_INVALID_VALUE, "damaged layer %s: %s", im.name, why.msg);
    bool ready = known && nd_shape_is_known(&lay.param_shape);
    if (st == ND_STATUS_OK)
        st = image_bind(&im, &lay, known, ready, binder, err);
    struct nd_layer *l = NULL;
    if (st == ND_STATUS_OK)
        st = nd__layer_alloc(im.name, &im.spec, im.seed, &l, err);
    if (st != ND_STATUS_OK) {
        image_release(&im);
        return st;
    }
    l->layout_known = known;
    l->layout = lay;
    l->version = im.version;
    l->train_steps = im.train_steps;
    l->optimizer_steps = im.optimizer_steps;
    for (int id = 0; id < ND_ARRAY_COUNT; id++) {
        l->arrays[id] = im.arrays[id]; // the references move to the layer
        l->user_set[id] = im.user_set[id];
        memcpy(l->shared[id], im.shared[id], sizeof l->shared[id]);
    }
    nd_history_move(&l->history, &im.history); // counted by whoever takes the layer
    *out = l;
    return ND_STATUS_OK;
}

// Puts a saved state back into the live layer (caller holds its write lock): the undo of a
// change whose save failed. Own arrays get their values and optimizer state back; counters
// and version return. Shared arrays are restored by nd__array_restore.
enum nd_status nd__layer_restore(struct nd_layer *l, const struct nd_buf *saved,
                                 struct nd_error *err) {
    struct layer_image im;
    enum nd_status st = image_read(saved->data, saved->len, false, &im, err);
    if (st != ND_STATUS_OK)
        return st;
    for (int id = 0; id < ND_ARRAY_COUNT; id++) {
        struct nd_array *a = l->arrays[id];
        l->user_set[id] = im.user_set[id]; // shared slots too: a write sets it
        if (!im.arrays[id] || !a || !nd_shape_equal(&a->shape, &im.arrays[id]->shape))
            continue;
        nd_rwlock_wrlock(a->lock);
        memcpy(a->data, im.arrays[id]->data, (size_t)a->numel * sizeof(float));
        nd_optim_state_deinit(&a->opt);
        a->opt = im.arrays[id]->opt; // moves: the image's state is then empty
        im.arrays[id]->opt = (struct nd_optim_state){0};
        a->version = im.arrays[id]->version;
        nd_rwlock_unlock(a->lock);
    }
    l->version = im.version;
    l->train_steps = im.train_steps;
    l->optimizer_steps = im.optimizer_steps;
    image_release(&im); // the history is the caller's to rewind: the snapshot holds no records
    return ND_STATUS_OK;
}

// ---- partial copies ----

// base's history continued by p's records newer than base's last: the records of p follow
// record since = p.total - p.count, so base must end between since and p's last record.
static enum nd_status merged_history(const struct layer_image *b, const struct layer_image *p,
                                     struct nd_history *out, struct nd_error *err) {
    const struct nd_history *hb = &b->history, *hp = &p->history;
    uint64_t since = hp->total - (uint64_t)hp->count;
    memset(out, 0, sizeof *out);
    if (hb->total < since || hb->total > hp->total)
        return nd_error_set(err, ND_STATUS_INVALID_VALUE,
                            "layer %s: the partial copy's history follows record %llu, the whole "
                            "copy's ends at record %llu",
                            p->name, (unsigned long long)since, (unsigned long long)hb->total);
    out->total = hb->total - (uint64_t)hb->count;
    enum nd_status st = hb->count || hp->count ? nd_history_reserve(out, NULL, err) : ND_STATUS_OK;
    for (int32_t i = 0; st == ND_STATUS_OK && i < hb->count; i++)
        nd_history_append(out, &hb->ring[(hb->head + i) % ND_HISTORY_CAPACITY]);
    for (int32_t i = (int32_t)(hb->total - since); st == ND_STATUS_OK && i < hp->count; i++)
        nd_history_append(out, &hp->ring[(hp->head + i) % ND_HISTORY_CAPACITY]);
    return st;
}

// The partial copy's bytes up to its history, the merged history, a new envelope end.
static enum nd_status merge_images(const struct layer_image *b, const struct layer_image *p,
                                   const unsigned char *partial, struct nd_buf *out,
                                   struct nd_error *err) {
    if (!p->has_history)
        return nd_error_set(err, ND_STATUS_INVALID_VALUE,
                            "layer %s: a partial copy of a format without a history", p->name);
    if (strcmp(b->name, p->name) != 0)
        return nd_error_set(err, ND_STATUS_INVALID_VALUE,
                            "a partial copy of layer %s over a whole copy of %s", p->name, b->name);
    struct nd_history h;
    enum nd_status st = merged_history(b, p, &h, err);
    if (st == ND_STATUS_OK) {
        nd__buf_put(out, partial, HEADER_BYTES + p->history_at);
        put_history(out, &h, h.count);
        st = frame_end(out, true, err);
    }
    nd_history_deinit(&h);
    return st;
}

enum nd_status nd_persist_merge(const void *base, size_t nbase, const void *partial,
                                size_t npartial, struct nd_buf *out, struct nd_error *err) {
    if (!base || !partial || !out || out->len)
        return nd_error_set(err, ND_STATUS_INVALID_ARGUMENT,
                            "nd_persist_merge: NULL argument or a buffer not empty");
    struct layer_image b, p;
    enum nd_status st = image_read(base, nbase, true, &b, err);
    if (st != ND_STATUS_OK)
        return st;
    st = image_read(partial, npartial, true, &p, err);
    if (st == ND_STATUS_OK) {
        st = merge_images(&b, &p, partial, out, err);
        image_release(&p);
    }
    image_release(&b);
    return st;
}

// ---- shared arrays ----

static enum nd_status array_write(struct nd_array *a, struct nd_buf *out, bool seal,
                                  struct nd_error *err) {
    frame_begin(out, MAGIC_SHARED);
    put_str(out, a->shared_name);
    nd_rwlock_rdlock(a->lock);
    put_array(out, a);
    nd_rwlock_unlock(a->lock);
    return frame_end(out, seal, err);
}

enum nd_status nd__array_serialize(struct nd_array *a, struct nd_buf *out, struct nd_error *err) {
    return array_write(a, out, true, err);
}

enum nd_status nd__array_snapshot(struct nd_array *a, struct nd_buf *out, struct nd_error *err) {
    return array_write(a, out, false, err);
}

static enum nd_status array_read(const void *bytes, size_t n, bool verify, struct nd_array **out,
                                 struct nd_error *err) {
    struct rd r;
    const struct payload_reader *reader;
    struct nd_array *a = NULL;
    enum nd_status st = frame_open(bytes, n, MAGIC_SHARED, verify, &r, &reader, err);
    if (st == ND_STATUS_OK)
        st = reader->shared(&r, &a, err);
    if (st == ND_STATUS_OK) {
        atomic_store(&a->stored, true); // it came from the store: not new to it
        *out = a;
    }
    return st;
}

enum nd_status nd__array_deserialize(const void *bytes, size_t n, struct nd_array **out,
                                     struct nd_error *err) {
    return array_read(bytes, n, true, out, err);
}

enum nd_status nd__array_restore(struct nd_array *a, const struct nd_buf *saved,
                                 struct nd_error *err) {
    struct nd_array *old;
    enum nd_status st = array_read(saved->data, saved->len, false, &old, err);
    if (st != ND_STATUS_OK)
        return st;
    nd_rwlock_wrlock(a->lock);
    if (nd_shape_equal(&a->shape, &old->shape)) {
        memcpy(a->data, old->data, (size_t)a->numel * sizeof(float));
        nd_optim_state_deinit(&a->opt);
        a->opt = old->opt;
        old->opt = (struct nd_optim_state){0};
        a->version = old->version;
    }
    nd_rwlock_unlock(a->lock);
    nd_array_unref(old);
    return ND_STATUS_OK;
}

// ---- names ----

enum nd_status nd_persist_stored_name(const void *bytes, size_t len, bool shared, char *name,
                                      size_t size, struct nd_error *err) {
    if (!bytes || !name || size == 0)
        return nd_error_set(err, ND_STATUS_INVALID_ARGUMENT, "nd_persist_stored_name: NULL");
    struct rd r;
    const struct payload_reader *reader;
    enum nd_status st =
        frame_open(bytes, len, shared ? MAGIC_SHARED : MAGIC_LAYER, true, &r, &reader, err);
    if (st != ND_STATUS_OK)
        return st;
    reader->name(&r, name, size);
    return r.bad ? nd_error_set(err, ND_STATUS_INVALID_VALUE, "damaged name") : ND_STATUS_OK;
}
