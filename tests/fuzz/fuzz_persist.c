// fuzz_persist.c - the persisted-file readers: nd_persist_stored_name, nd_registry_load_shared
// and nd_registry_load_layer on fuzzed bytes, then the loaded layers used.
//
// Input: one flags byte, then the files. Flags bit 0: the files carry their own length and
// checksum as they are (clear: the harness rewrites the header's payload length and the
// FNV-1a trailer, so mutations reach the payload parser instead of dying at the checksum).
// Bit 1: the input holds a shared array first (u32 little-endian length, its bytes), then a
// layer; clear: one file, loaded as a shared array when bit 2 is set, else as a layer.
// Oracles (beyond ASan/UBSan): a file of the current format (ND_PERSIST_FORMAT_VERSION) that
// the loader accepts, layer or shared array, serializes back to the same bytes (the format is
// canonical); one of an older format serializes as the current format, and that file loads
// (next to the same shared array) and serializes back to itself; a version-1 layer reads as
// named canonically (no alias, convention_from unknown, no PyTorch sizes). The loaded layer
// serves a forward in both modes, an SGD and an Adam train-step and reads of its arrays
// without crashing or a 5xx-class status.
// Partial copies (nd_persist_merge): a current-format layer that loads, merged with itself or
// with a partial copy of itself (its newest half of the history), gives its own bytes back. Bit
// 3 (with bit 1): the pair's first file is merged as a whole copy with the second as a partial
// one; whatever that gives, merged again with the second, gives the same bytes.
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "core/alloc.h"
#include "core/codec.h" // white-box: nd__layer_serialize for the round trip
#include "core/engine.h"
#include "core/layer_impl.h"
#include "core/persist.h"
#include "core/registry.h"
#include "tests/fuzz/fuzz_util.h"

#define MAX_INPUT 4096 // elements of the example tensor a loaded layer is run on

static uint64_t fnv1a(const unsigned char *p, size_t n) { // as core/codec.c
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

// A copy of a file, its length and checksum made right when fix is set. Caller frees.
static unsigned char *prepare(const uint8_t *p, size_t n, bool fix) {
    unsigned char *b = (unsigned char *)fuzz_strndup(p, n);
    if (fix && n >= 24) {
        uint64_t len = n - 24, sum;
        for (int i = 0; i < 8; i++)
            b[8 + i] = (unsigned char)(len >> (8 * i));
        sum = fnv1a(b, n - 8);
        for (int i = 0; i < 8; i++)
            b[n - 8 + i] = (unsigned char)(sum >> (8 * i));
    }
    return b;
}

static void check_status(enum nd_status st, const struct nd_error *err, const char *what) {
    if (st == ND_STATUS_INVALID_ARGUMENT || st == ND_STATUS_INTERNAL)
        FUZZ_FAIL("%s: status %d: %s (%s)", what, (int)st, err->msg, err->field);
}

// The format version a file announces (0 when too short to say).
static uint32_t version_of(const unsigned char *b, size_t n) {
    return n < 8
               ? 0
               : (uint32_t)b[4] | (uint32_t)b[5] << 8 | (uint32_t)b[6] << 16 | (uint32_t)b[7] << 24;
}

// What was stored again (buf) is the file (n bytes).
static void same_bytes(const struct nd_buf *buf, const unsigned char *file, size_t n,
                       const char *what) {
    size_t at = 0;
    while (at < n && at < buf->len && buf->data[at] == file[at])
        at++;
    if (buf->len != n || at < n) {
        FUZZ_FAIL("%s (%zu bytes): differs from the %zu-byte file at byte %zu (file 0x%02x, "
                  "stored 0x%02x)",
                  what, buf->len, n, at, at < n ? file[at] : 0, at < buf->len ? buf->data[at] : 0);
    }
}

static void serialize_layer(struct nd_layer *l, struct nd_buf *buf) {
    struct nd_error err;
    nd_error_clear(&err);
    if (nd__layer_serialize(l, buf, &err) != ND_STATUS_OK)
        FUZZ_FAIL("a loaded layer does not serialize: %s", err.msg);
}

// The only layer reg holds (a reference).
static struct nd_layer *only_layer(struct nd_registry *reg) {
    struct nd_layer **list;
    int64_t count;
    if (nd_registry_list(reg, &list, &count, NULL) != ND_STATUS_OK || count != 1)
        FUZZ_FAIL("one layer loaded, the registry lists another count");
    struct nd_layer *l = list[0];
    nd_free(list);
    return l;
}

// Version 1 stored no naming: such a layer reads as named canonically, its convention's origin
// unknown.
static void check_v1_naming(struct nd_layer *l) {
    struct nd_layer_info info;
    nd_layer_info(l, &info);
    const struct nd_spec *s = &info.spec;
    if (s->type_alias != 0 || s->convention_from != ND_CONVENTION_FROM_UNKNOWN || s->synchronized ||
        s->num_features != 0 || s->normalized_shape.ndim != 0)
        FUZZ_FAIL("a version-1 layer reads with naming: alias %d, convention_from %d, "
                  "synchronized %d, num_features %lld, normalized_shape rank %d",
                  (int)s->type_alias, (int)s->convention_from, (int)s->synchronized,
                  (long long)s->num_features, (int)s->normalized_shape.ndim);
}

static bool merge(const unsigned char *base, size_t nb, const unsigned char *partial, size_t np,
                  struct nd_buf *out) {
    struct nd_error err;
    nd_error_clear(&err);
    enum nd_status st = nd_persist_merge(base, nb, partial, np, out, &err);
    check_status(st, &err, "merge");
    return st == ND_STATUS_OK;
}

// file (n bytes, current format) is l's bytes: merged with itself, or with l's partial copy of
// the newest half of its records, it is itself.
static void merge_round_trip(struct nd_layer *l, const unsigned char *file, size_t n) {
    struct nd_buf self = {0}, part = {0}, over = {0};
    if (!merge(file, n, file, n, &self))
        FUZZ_FAIL("a layer file merged with itself is refused");
    same_bytes(&self, file, n, "merged with itself");
    struct nd_error err;
    nd_error_clear(&err);
    uint64_t since = l->history.total - (uint64_t)(l->history.count / 2);
    if (nd__layer_serialize_partial(l, since, &part, &err) != ND_STATUS_OK)
        FUZZ_FAIL("no partial copy since record %llu: %s", (unsigned long long)since, err.msg);
    if (!merge(file, n, part.data, part.len, &over))
        FUZZ_FAIL("a layer file merged with its own partial copy is refused");
    same_bytes(&over, file, n, "merged with its own partial copy");
    nd_buf_deinit(&self);
    nd_buf_deinit(&part);
    nd_buf_deinit(&over);
}

// Any two files: what a merge gives, merged again with the same partial copy, is unchanged.
static void merge_pair(const unsigned char *base, size_t nb, const unsigned char *partial,
                       size_t np) {
    struct nd_buf once = {0}, twice = {0};
    if (merge(base, nb, partial, np, &once)) {
        if (!merge(once.data, once.len, partial, np, &twice))
            FUZZ_FAIL("a merge's bytes, merged again with the same partial copy, are refused");
        same_bytes(&twice, once.data, once.len, "merged twice");
    }
    nd_buf_deinit(&once);
    nd_buf_deinit(&twice);
}

// The loaded layer serialized again: the file itself when it is of the current format. An older
// file becomes a current one, which loads (after the same shared-array file, when there is
// one) and serializes back to itself.
static void round_trip(struct nd_layer *l, const unsigned char *file, size_t n,
                       const unsigned char *shared, size_t shared_len) {
    struct nd_buf buf = {0};
    serialize_layer(l, &buf);
    uint32_t v = version_of(file, n);
    if (v == ND_PERSIST_FORMAT_VERSION) {
        same_bytes(&buf, file, n, "loaded and stored again");
        nd_buf_deinit(&buf);
        merge_round_trip(l, file, n);
        return;
    }
    if (version_of(buf.data, buf.len) != ND_PERSIST_FORMAT_VERSION)
        FUZZ_FAIL("a version-%u layer stored again as version %u", v,
                  version_of(buf.data, buf.len));
    if (v == 1)
        check_v1_naming(l);
    struct nd_registry *reg;
    struct nd_error err;
    nd_error_clear(&err);
    if (nd_registry_create(64, &reg, NULL) != ND_STATUS_OK)
        FUZZ_FAIL("cannot create a registry");
    if (shared)
        nd_registry_load_shared(reg, shared, shared_len, NULL);
    if (nd_registry_load_layer(reg, buf.data, buf.len, &err) != ND_STATUS_OK)
        FUZZ_FAIL("a version-%u layer stored as version %u does not load: %s", v,
                  ND_PERSIST_FORMAT_VERSION, err.msg);
    struct nd_layer *again = only_layer(reg);
    struct nd_buf twice = {0};
    serialize_layer(again, &twice);
    same_bytes(&twice, buf.data, buf.len, "an older layer's current file loaded and stored again");
    nd_buf_deinit(&twice);
    nd_layer_unref(again);
    nd_registry_free(reg);
    nd_buf_deinit(&buf);
}

static void serialize_shared(struct nd_registry *reg, const char *name, struct nd_buf *buf) {
    struct nd_array *a = NULL;
    struct nd_error err;
    nd_error_clear(&err);
    if (nd_registry_shared_get(reg, name, &a, &err) != ND_STATUS_OK)
        FUZZ_FAIL("shared array %s loaded, but not found: %s", name, err.msg);
    if (nd__array_serialize(a, buf, &err) != ND_STATUS_OK)
        FUZZ_FAIL("a loaded shared array does not serialize: %s", err.msg);
    nd_array_unref(a);
}

// The same for a shared array just loaded into reg under name.
static void shared_round_trip(struct nd_registry *reg, const char *name, const unsigned char *file,
                              size_t n) {
    struct nd_buf buf = {0};
    serialize_shared(reg, name, &buf);
    uint32_t v = version_of(file, n);
    if (v == ND_PERSIST_FORMAT_VERSION) {
        same_bytes(&buf, file, n, "shared array loaded and stored again");
        nd_buf_deinit(&buf);
        return;
    }
    struct nd_registry *other;
    struct nd_error err;
    nd_error_clear(&err);
    if (nd_registry_create(64, &other, NULL) != ND_STATUS_OK)
        FUZZ_FAIL("cannot create a registry");
    if (nd_registry_load_shared(other, buf.data, buf.len, &err) != ND_STATUS_OK)
        FUZZ_FAIL("a version-%u shared array stored as version %u does not load: %s", v,
                  ND_PERSIST_FORMAT_VERSION, err.msg);
    struct nd_buf twice = {0};
    serialize_shared(other, name, &twice);
    same_bytes(&twice, buf.data, buf.len, "an older shared array's current file stored again");
    nd_buf_deinit(&twice);
    nd_buf_deinit(&buf);
    nd_registry_free(other);
}

static void train(struct nd_layer *l, struct nd_pool *pool, const struct nd_tensor *x,
                  enum nd_optimizer_kind kind) {
    struct nd_train_args args = {
        .input = x, .output_grad = x, .optimizer = nd_optimizer_default(kind), .want = 0x1f};
    struct nd_train_result res;
    struct nd_error err;
    nd_error_clear(&err);
    check_status(nd_layer_train_step(l, pool, &args, &res, &err), &err, "train-step");
    nd_train_result_deinit(&res);
}

// A forward in both modes, reads of every array, two train-steps, on one example of ramps.
static void exercise(struct nd_layer *l, struct nd_pool *pool) {
    struct nd_layer_info info;
    nd_layer_info(l, &info);
    struct nd_error err;
    for (int id = 0; id < ND_ARRAY_COUNT; id++) {
        struct nd_tensor a = {0};
        nd_error_clear(&err);
        check_status(nd_layer_read_array(l, (enum nd_array_id)id, &a, NULL, &err), &err, "read");
        nd_tensor_deinit(&a);
    }
    struct nd_shape in = info.spec.input, batched;
    int64_t numel;
    bool is_batch;
    nd_error_clear(&err);
    if (!info.initialized || !nd_shape_is_known(&in) ||
        nd_layer_batch_shape(l, &in, 0, &batched, &is_batch, &err) != ND_STATUS_OK ||
        nd_shape_numel(&batched, &numel, NULL) != ND_STATUS_OK || numel > MAX_INPUT)
        return;
    struct nd_tensor x, y;
    if (nd_tensor_init(&x, &batched, NULL) != ND_STATUS_OK)
        return;
    for (int64_t i = 0; i < numel; i++)
        x.data[i] = (float)(i % 7) * 0.25f - 0.5f;
    for (int mode = 0; mode < 2; mode++) {
        if (nd_tensor_init(&y, &batched, NULL) != ND_STATUS_OK)
            break;
        nd_error_clear(&err);
        check_status(nd_layer_forward(l, pool, &x, mode, &y, NULL, &err), &err, "forward");
        nd_tensor_deinit(&y);
    }
    train(l, pool, &x, ND_OPTIMIZER_SGD);
    train(l, pool, &x, ND_OPTIMIZER_ADAM);
    nd_tensor_deinit(&x);
}

// Loads one file (shared array or layer) and checks what the stored-name reader says of it.
static bool load(struct nd_registry *reg, const unsigned char *b, size_t n, bool shared) {
    char name[ND_NAME_MAX + 1];
    struct nd_error err;
    nd_error_clear(&err);
    enum nd_status named = nd_persist_stored_name(b, n, shared, name, sizeof name, &err);
    check_status(named, &err, "stored name");
    nd_error_clear(&err);
    enum nd_status st =
        shared ? nd_registry_load_shared(reg, b, n, &err) : nd_registry_load_layer(reg, b, n, &err);
    check_status(st, &err, shared ? "load shared" : "load layer");
    if (st == ND_STATUS_OK && named != ND_STATUS_OK)
        FUZZ_FAIL("loaded, but nd_persist_stored_name refuses it: %s", err.msg);
    if (st == ND_STATUS_OK && shared)
        shared_round_trip(reg, name, b, n);
    return st == ND_STATUS_OK;
}

static struct nd_engine *engine;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    struct nd_engine_config ec = nd_engine_config_default();
    ec.threads = 1;
    if (nd_engine_create(&ec, &engine, NULL) != ND_STATUS_OK)
        FUZZ_FAIL("cannot create the engine");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1)
        return 0;
    bool fix = !(data[0] & 1), pair = data[0] & 2, shared_only = data[0] & 4, merged = data[0] & 8;
    const uint8_t *p = data + 1;
    size_t n = size - 1;
    struct nd_registry *reg;
    if (nd_registry_create(64, &reg, NULL) != ND_STATUS_OK)
        FUZZ_FAIL("cannot create a registry");
    unsigned char *s = NULL; // the shared array's file, kept for round_trip
    size_t sl = 0;
    if (pair && n >= 4) {
        sl = (size_t)p[0] | (size_t)p[1] << 8 | (size_t)p[2] << 16 | (size_t)p[3] << 24;
        sl = sl < n - 4 ? sl : n - 4;
        s = prepare(p + 4, sl, fix);
        if (merged) {
            unsigned char *second = prepare(p + 4 + sl, n - 4 - sl, fix);
            merge_pair(s, sl, second, n - 4 - sl);
            free(second);
        }
        if (!load(reg, s, sl, true)) {
            free(s);
            s = NULL;
        }
        p += 4 + sl;
        n -= 4 + sl;
    }
    unsigned char *b = prepare(p, n, fix);
    bool shared = shared_only && !pair;
    if (load(reg, b, n, shared) && !shared) {
        struct nd_layer *l = only_layer(reg);
        round_trip(l, b, n, s, sl);
        exercise(l, nd_engine_pool(engine));
        nd_layer_unref(l);
    }
    free(s);
    free(b);
    nd_registry_free(reg);
    return 0;
}
