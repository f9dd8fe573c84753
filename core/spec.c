// spec.c - layer definitions: names, per-convention defaults, validation, and resolution of a
// definition against a per-example shape.
//
// Everything that differs by layer type or convention lives in the two tables below
// (type_table, conv_table), so nd_spec_defaults is a lookup rather than a chain of ifs.
// Levels and axes share one index rule: a per-example level l and a batched axis l name the
// same dimension, and a negative value v counts from the end as v + r + 1 (r = per-example
// rank), so level -1 and axis -1 are both the last dimension.
#include "core/spec.h"

#include <float.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "core/internal.h"

#include "core/alloc.h"

// ---- tables ----

// How a type's axes default.
enum axes_default {
    AXES_NONE,    // not used, or "not given" (BatchNormalization follows interleaving)
    AXES_LAST,    // {-1}: LayerNormalization, RMSNormalization
    AXES_CHANNEL, // the convention's channel axis: {1}, or {-1} when channels are last
};

struct type_row {
    const char *name;
    enum axes_default axes; // AXES_NONE when omitted
    enum nd_method method;  // ND_METHOD_STANDARDIZE when omitted
    bool biases;            // Biases enabled by default
    bool moving;            // has MovingMean/MovingVariance by default
    bool can_track;         // may have them (InstanceNorm*d's track_running_stats=True)
    bool rms_eps;           // epsilon from conv_row.rms_epsilon
    bool one_axis;          // takes exactly one (channel) axis
};

static const struct type_row type_table[ND_LAYER_TYPE_COUNT] = {
    [ND_LAYER_TYPE_BATCH_NORM] = {.name = "BatchNormalization",
                                  .biases = true,
                                  .moving = true,
                                  .can_track = true},
    [ND_LAYER_TYPE_NORMALIZATION] = {.name = "Normalization", .biases = true},
    [ND_LAYER_TYPE_LAYER_NORM] = {.name = "LayerNormalization", .axes = AXES_LAST, .biases = true},
    [ND_LAYER_TYPE_INSTANCE_NORM] = {.name = "InstanceNormalization",
                                     .axes = AXES_CHANNEL,
                                     .biases = true,
                                     .can_track = true,
                                     .one_axis = true},
    [ND_LAYER_TYPE_GROUP_NORM] = {.name = "GroupNormalization",
                                  .axes = AXES_CHANNEL,
                                  .biases = true,
                                  .one_axis = true},
    [ND_LAYER_TYPE_RMS_NORM] = {.name = "RMSNormalization",
                                .axes = AXES_LAST,
                                .method = ND_METHOD_RMS,
                                .rms_eps = true},
};

// Every spelling of a type besides the canonical names (API.md 1.1, 1.1a); an alias' id is its
// index here plus one. Ids are stored on disk (format 2): append only, never reorder or remove.
struct type_alias {
    const char *name;
    enum nd_layer_type type;
    int32_t batchnorm_nd;
    int32_t min_rank, max_rank, spatial; // PyTorch's classes
    enum nd_type_family family;
};

#define BN_ND(n, fam)                                                                              \
    { "BatchNorm" #n "D", ND_LAYER_TYPE_BATCH_NORM, n, 0, 0, 0, fam }
#define TORCH(name, type, lo, hi, sp)                                                              \
    { name, type, 0, lo, hi, sp, ND_TYPE_FAMILY_PYTORCH }

static const struct type_alias type_aliases[] = {
    {"BatchNormalizationLayer", ND_LAYER_TYPE_BATCH_NORM, 0, 0, 0, 0, ND_TYPE_FAMILY_WOLFRAM},
    {"BatchNorm", ND_LAYER_TYPE_BATCH_NORM, 0, 0, 0, 0, ND_TYPE_FAMILY_NONE},
    // PuzzleLib has BatchNorm1D..3D; 4D..7D are normd's own and keep the default convention.
    BN_ND(1, ND_TYPE_FAMILY_PUZZLELIB),
    BN_ND(2, ND_TYPE_FAMILY_PUZZLELIB),
    BN_ND(3, ND_TYPE_FAMILY_PUZZLELIB),
    BN_ND(4, ND_TYPE_FAMILY_NONE),
    BN_ND(5, ND_TYPE_FAMILY_NONE),
    BN_ND(6, ND_TYPE_FAMILY_NONE),
    BN_ND(7, ND_TYPE_FAMILY_NONE),
    {"NormalizationLayer", ND_LAYER_TYPE_NORMALIZATION, 0, 0, 0, 0, ND_TYPE_FAMILY_WOLFRAM},
    // PyTorch's classes, with the per-example ranks their forward takes (BatchNorm1d: (N, C)
    // or (N, C, L); the others one layout each; GroupNorm (N, C, *)).
    TORCH("BatchNorm1d", ND_LAYER_TYPE_BATCH_NORM, 1, 2, 1),
    TORCH("BatchNorm2d", ND_LAYER_TYPE_BATCH_NORM, 3, 3, 2),
    TORCH("BatchNorm3d", ND_LAYER_TYPE_BATCH_NORM, 4, 4, 3),
    TORCH("InstanceNorm1d", ND_LAYER_TYPE_INSTANCE_NORM, 2, 2, 1),
    TORCH("InstanceNorm2d", ND_LAYER_TYPE_INSTANCE_NORM, 3, 3, 2),
    TORCH("InstanceNorm3d", ND_LAYER_TYPE_INSTANCE_NORM, 4, 4, 3),
    TORCH("LayerNorm", ND_LAYER_TYPE_LAYER_NORM, 0, 0, 0),
    TORCH("GroupNorm", ND_LAYER_TYPE_GROUP_NORM, 1, 0, 0),
    TORCH("RMSNorm", ND_LAYER_TYPE_RMS_NORM, 0, 0, 0),
};

#undef BN_ND
#undef TORCH

// Whose names the canonical ones are: Keras' three, normd's own otherwise.
static const enum nd_type_family canonical_family[ND_LAYER_TYPE_COUNT] = {
    [ND_LAYER_TYPE_BATCH_NORM] = ND_TYPE_FAMILY_KERAS,
    [ND_LAYER_TYPE_LAYER_NORM] = ND_TYPE_FAMILY_KERAS,
    [ND_LAYER_TYPE_GROUP_NORM] = ND_TYPE_FAMILY_KERAS,
};

static const char *const convention_from_names[] = {"unknown", "default", "type", "request"};

// Per-convention defaults (API.md 1.3, 1.4).
struct conv_row {
    const char *name;
    double epsilon;     // BatchNormalization and the Normalization family
    double rms_epsilon; // RMSNormalization
    double momentum;
    enum nd_momentum_rule rule;      // momentum given
    enum nd_momentum_rule null_rule; // momentum null
    enum nd_variance_estimator moving_variance;
    bool momentum_null;    // default null (puzzlelib: momentum is not used)
    bool momentum_null_ok; // null accepted
    bool channels_last;
    bool random_scaling; // BatchNormalization Scaling ~ normal(1, sscale)
};

static const struct conv_row conv_table[ND_CONVENTION_COUNT] = {
    [ND_CONVENTION_WOLFRAM] = {.name = "wolfram",
                               .epsilon = 1e-3,
                               .rms_epsilon = 1e-3,
                               .momentum = 0.9,
                               .rule = ND_MOMENTUM_DECAY,
                               .null_rule = ND_MOMENTUM_DECAY,
                               .moving_variance = ND_VARIANCE_BIASED},
    [ND_CONVENTION_KERAS] = {.name = "keras",
                             .epsilon = 1e-3,
                             .rms_epsilon = 1e-6,
                             .momentum = 0.99,
                             .rule = ND_MOMENTUM_DECAY,
                             .null_rule = ND_MOMENTUM_DECAY,
                             .moving_variance = ND_VARIANCE_BIASED,
                             .channels_last = true},
    [ND_CONVENTION_ONNX] = {.name = "onnx",
                            .epsilon = 1e-5,
                            .rms_epsilon = 1e-5,
                            .momentum = 0.9,
                            .rule = ND_MOMENTUM_DECAY,
                            .null_rule = ND_MOMENTUM_DECAY,
                            .moving_variance = ND_VARIANCE_BIASED},
    [ND_CONVENTION_PYTORCH] = {.name = "pytorch",
                               .epsilon = 1e-5,
                               .rms_epsilon = FLT_EPSILON,
                               .momentum = 0.1,
                               .momentum_null_ok = true,
                               .rule = ND_MOMENTUM_BATCH_WEIGHT,
                               .null_rule = ND_MOMENTUM_CUMULATIVE,
                               .moving_variance = ND_VARIANCE_UNBIASED},
    // PuzzleLib has no momentum: the factor schedule applies whatever momentum holds.
    [ND_CONVENTION_PUZZLELIB] = {.name = "puzzlelib",
                                 .epsilon = 1e-5,
                                 .rms_epsilon = 1e-5,
                                 .momentum = 0.0,
                                 .momentum_null = true,
                                 .momentum_null_ok = true,
                                 .rule = ND_MOMENTUM_FACTOR_SCHEDULE,
                                 .null_rule = ND_MOMENTUM_FACTOR_SCHEDULE,
                                 .moving_variance = ND_VARIANCE_UNBIASED,
                                 .random_scaling = true},
};

static const char *const array_names[ND_ARRAY_COUNT] = {"Scaling", "Biases", "MovingMean",
                                                        "MovingVariance"};

struct array_alias {
    const char *name;
    enum nd_array_id id;
};

static const struct array_alias array_aliases[] = {
    {"gamma", ND_ARRAY_SCALING},
    {"beta", ND_ARRAY_BIASES},
    {"moving_mean", ND_ARRAY_MOVING_MEAN},
    {"moving_variance", ND_ARRAY_MOVING_VARIANCE},
    {"weight", ND_ARRAY_SCALING},
    {"bias", ND_ARRAY_BIASES},
    {"running_mean", ND_ARRAY_MOVING_MEAN},
    {"running_var", ND_ARRAY_MOVING_VARIANCE},
    {"scale", ND_ARRAY_SCALING},
    {"mean", ND_ARRAY_MOVING_MEAN},
    {"var", ND_ARRAY_MOVING_VARIANCE},
};

static const char *const variance_names[] = {
    [ND_VARIANCE_BIASED] = "biased", [ND_VARIANCE_UNBIASED] = "unbiased"};
static const char *const method_names[] = {
    [ND_METHOD_STANDARDIZE] = "Standardize", [ND_METHOD_RMS] = "RMS"};

// Public field paths, per array.
static const char *const init_fields[ND_ARRAY_COUNT] = {
    "options.scaling_initializer", "options.biases_initializer", "options.moving_mean_initializer",
    "options.moving_variance_initializer"};
static const char *const reg_fields[ND_ARRAY_AFFINE_COUNT] = {"options.scaling_regularizer",
                                                              "options.biases_regularizer"};
static const char *const constraint_fields[ND_ARRAY_AFFINE_COUNT] = {"options.scaling_constraint",
                                                                     "options.biases_constraint"};

// The plain options (spec_fields.def), one row each.
const struct nd_spec_field nd_spec_fields[ND_SPEC_FIELD_COUNT] = {
#define ND_SPEC_FIELD(name, alias, member, kind, max, types, torch, dflt, range, show, since,      \
                      decl)                                                                        \
    [ND_SPEC_FIELD_##member] = {name,                                                              \
                                alias,                                                             \
                                offsetof(struct nd_spec, member),                                  \
                                sizeof(((struct nd_spec *)0)->member),                             \
                                ND_FIELD_##kind,                                                   \
                                types,                                                             \
                                torch,                                                             \
                                dflt,                                                              \
                                ND_RANGE_##range,                                                  \
                                ND_SHOW_##show,                                                    \
                                since},
#include "core/spec_fields.def"
#undef ND_SPEC_FIELD
};

// A STRING row's member holds max + 1 bytes; other kinds hold their C type.
#define ND_SPEC_FIELD(name, alias, member, kind, max, types, torch, dflt, range, show, since,      \
                      decl)                                                                        \
    _Static_assert(ND_FIELD_##kind != ND_FIELD_STRING ||                                           \
                       sizeof(((struct nd_spec *)0)->member) == (size_t)(max) + 1,                 \
                   "spec_fields.def: " name "'s member holds max + 1 bytes");
#include "core/spec_fields.def"
#undef ND_SPEC_FIELD

#define ALL_DIMS(r) ((uint32_t)((1u << (r)) - 1u)) // mask of per-example dims 0..r-1

// ---- small helpers ----

static const struct conv_row *conv_row(enum nd_convention conv) {
    return &conv_table[(unsigned)conv < ND_CONVENTION_COUNT ? conv : ND_CONVENTION_WOLFRAM];
}

static const struct type_row *type_row(enum nd_layer_type type) {
    return &type_table[(unsigned)type < ND_LAYER_TYPE_COUNT ? type : ND_LAYER_TYPE_BATCH_NORM];
}

static bool in_unit(double x) {
    return x >= 0.0 && x <= 1.0; // false for NaN
}

// Number of set bits, and the index of the lowest one (mask != 0).
static int32_t bit_count(uint32_t mask) {
    int32_t n = 0;
    for (; mask; mask &= mask - 1)
        n++;
    return n;
}

static int32_t lowest_bit(uint32_t mask) {
    int32_t i = 0;
    while (!(mask & (1u << i)))
        i++;
    return i;
}

static bool err_is_clear(const struct nd_error *err) {
    return !err || err->code == ND_STATUS_OK;
}

// Names the field of a nested validator's failure: prefixes the field it recorded, or records
// a generic message when it recorded none. Only when err was clear before the nested call, so
// an older first error keeps its field.
static enum nd_status nested_failure(enum nd_status st, bool was_clear, struct nd_error *err,
                                     const char *prefix) {
    if (!was_clear)
        return st;
    if (err && err->code == ND_STATUS_OK)
        return nd_error_set_field(err, st, prefix, "invalid value");
    nd_error_prefix_field(err, prefix);
    return st;
}

// ---- the table's rows ----

const struct nd_spec_field *nd_spec_field_find(const char *name) {
    for (int i = 0; name && i < ND_SPEC_FIELD_COUNT; i++) {
        const struct nd_spec_field *f = &nd_spec_fields[i];
        if (strcmp(f->name, name) == 0 || (f->alias && strcmp(f->alias, name) == 0))
            return f;
    }
    return NULL;
}

void *nd_spec_field_ptr(struct nd_spec *spec, const struct nd_spec_field *f) {
    return spec && f ? (char *)spec + f->offset : NULL;
}

const void *nd_spec_field_cptr(const struct nd_spec *spec, const struct nd_spec_field *f) {
    return spec && f ? (const char *)spec + f->offset : NULL;
}

bool nd_spec_field_is_set(const struct nd_spec *spec, const struct nd_spec_field *f) {
    const void *p = nd_spec_field_cptr(spec, f);
    if (!p)
        return false;
    switch (f->kind) {
    case ND_FIELD_F64:
        return *(const double *)p != 0.0;
    case ND_FIELD_BOOL:
        return *(const bool *)p;
    case ND_FIELD_I64:
        return *(const int64_t *)p != 0;
    default:
        return *(const char *)p != '\0';
    }
}

void nd_spec_field_default(struct nd_spec *spec, const struct nd_spec_field *f) {
    void *p = nd_spec_field_ptr(spec, f);
    if (!p)
        return;
    if (f->kind == ND_FIELD_F64)
        *(double *)p = f->dflt;
    else if (f->kind == ND_FIELD_BOOL)
        *(bool *)p = f->dflt != 0.0;
    else if (f->kind == ND_FIELD_I64)
        *(int64_t *)p = (int64_t)f->dflt;
    else
        memset(p, 0, f->size);
}

static void default_fields(struct nd_spec *spec) {
    for (int i = 0; i < ND_SPEC_FIELD_COUNT; i++)
        nd_spec_field_default(spec, &nd_spec_fields[i]);
}

// A row's range, as the error names it: "options.NAME", "NAME must be ...".
static enum nd_status check_field(const struct nd_spec *spec, const struct nd_spec_field *f,
                                  struct nd_error *err) {
    const void *p = nd_spec_field_cptr(spec, f);
    double x = f->kind == ND_FIELD_F64 ? *(const double *)p : 0.0;
    char field[ND_ERROR_FIELD_MAX];
    snprintf(field, sizeof field, "options.%s", f->name);
    if (f->range == ND_RANGE_UNIT && !in_unit(x))
        return nd_error_set_field(err, ND_STATUS_INVALID_VALUE, field,
                                  "%s must be in [0, 1], got %g", f->name, x);
    if (f->range == ND_RANGE_NONNEG && !(isfinite(x) && x >= 0.0))
        return nd_error_set_field(err, ND_STATUS_INVALID_VALUE, field,
                                  "%s must be finite and >= 0, got %g", f->name, x);
    if (f->range == ND_RANGE_LENGTH && f->kind == ND_FIELD_STRING && !memchr(p, '\0', f->size))
        return nd_error_set_field(err, ND_STATUS_INVALID_VALUE, field,
                                  "%s is longer than %zu bytes", f->name, f->size - 1);
    return ND_STATUS_OK;
}

// The rows that apply to spec's type (canonical or PyTorch-named), in table order.
static enum nd_status check_fields(const struct nd_spec *spec, struct nd_error *err) {
    unsigned t = ND_T(spec->type);
    for (int i = 0; i < ND_SPEC_FIELD_COUNT; i++) {
        const struct nd_spec_field *f = &nd_spec_fields[i];
        enum nd_status st = (f->types | f->torch) & t ? check_field(spec, f, err) : ND_STATUS_OK;
        if (st)
            return st;
    }
    return ND_STATUS_OK;
}

// ---- names ----

const char *nd_layer_type_name(enum nd_layer_type type) {
    if ((unsigned)type >= ND_LAYER_TYPE_COUNT)
        return "unknown";
    return type_table[type].name;
}

enum nd_status nd_layer_type_parse(const char *name, enum nd_layer_type *type,
                                   int32_t *batchnorm_nd, struct nd_error *err) {
    if (!name || !type)
        return nd_error_set(err, ND_STATUS_INVALID_ARGUMENT, "nd_layer_type_parse: NULL argument");
    struct nd_type_name n;
    enum nd_status st = nd_type_name_lookup(name, &n, err);
    if (st != ND_STATUS_OK)
        return st;
    *type = n.type;
    if (batchnorm_nd)
        *batchnorm_nd = n.batchnorm_nd;
    return ND_STATUS_OK;
}

bool nd_layer_type_is_batch(enum nd_layer_type type) {
    return type == ND_LAYER_TYPE_BATCH_NORM;
}

bool nd_layer_type_can_track(enum nd_layer_type type) {
    return type_row(type)->can_track;
}

static void name_from_alias(int i, struct nd_type_name *out) {
    const struct type_alias *a = &type_aliases[i];
    *out = (struct nd_type_name){.name = a->name,
                                 .type = a->type,
                                 .batchnorm_nd = a->batchnorm_nd,
                                 .id = i + 1,
                                 .min_rank = a->min_rank,
                                 .max_rank = a->max_rank,
                                 .spatial_dims = a->spatial,
                                 .family = a->family};
}

static void name_from_type(enum nd_layer_type t, struct nd_type_name *out) {
    *out =
        (struct nd_type_name){.name = type_table[t].name, .type = t, .family = canonical_family[t]};
}

enum nd_status nd_type_name_lookup(const char *name, struct nd_type_name *out,
                                   struct nd_error *err) {
    if (!name || !out)
        return nd_error_set(err, ND_STATUS_INVALID_ARGUMENT, "nd_type_name_lookup: NULL argument");
    for (int t = 0; t < ND_LAYER_TYPE_COUNT; t++) {
        if (strcmp(type_table[t].name, name) == 0) {
            name_from_type((enum nd_layer_type)t, out);
            return ND_STATUS_OK;
        }
    }
    for (int i = 0; i < ND_COUNT_OF(type_aliases); i++) {
        if (strcmp(type_aliases[i].name, name) == 0) {
            name_from_alias(i, out);
            return ND_STATUS_OK;
        }
    }
    // No echo of the name here: the list of spellings needs the whole message.
    return nd_error_set(err, ND_STATUS_INVALID_VALUE,
                        "unknown type; expected (Batch)Normalization(Layer), BatchNorm(1D..7D), "
                        "Layer/Instance/Group/RMSNormalization, or PyTorch's BatchNorm1d..3d, "
                        "InstanceNorm1d..3d, LayerNorm, GroupNorm, RMSNorm");
}

bool nd_type_name_of(enum nd_layer_type type, int32_t id, struct nd_type_name *out) {
    if ((unsigned)type >= ND_LAYER_TYPE_COUNT || !out)
        return false;
    if (id == 0) {
        name_from_type(type, out);
        return true;
    }
    if (id < 0 || id > ND_COUNT_OF(type_aliases) || type_aliases[id - 1].type != type)
        return false;
    name_from_alias(id - 1, out);
    return true;
}

const char *nd_convention_from_name(enum nd_convention_from from) {
    if ((unsigned)from >= (unsigned)ND_COUNT_OF(convention_from_names))
        return "unknown";
    return convention_from_names[from];
}

const char *nd_convention_name(enum nd_convention conv) {
    if ((unsigned)conv >= ND_CONVENTION_COUNT)
        return "unknown";
    return conv_table[conv].name;
}

enum nd_status nd_convention_parse(const char *name, enum nd_convention *conv,
                                   struct nd_error *err) {
    if (!name || !conv)
        return nd_error_set(err, ND_STATUS_INVALID_ARGUMENT, "nd_convention_parse: NULL argument");
    int c;
    enum nd_status st = nd__names_parse(ND_NAMES_OF(conv_table, name), name, "convention", &c, err);
    if (st == ND_STATUS_OK)
        *conv = (enum nd_convention)c;
    return st;
}

const char *nd_array_name(enum nd_array_id id) {
    if ((unsigned)id >= ND_ARRAY_COUNT)
        return "unknown";
    return array_names[id];
}

enum nd_status nd_array_parse(const char *name, enum nd_array_id *id, struct nd_error *err) {
    if (!name || !id)
        return nd_error_set(err, ND_STATUS_INVALID_ARGUMENT, "nd_array_parse: NULL argument");
    int i = nd__name_index(array_names, ND_ARRAY_COUNT, name);
    if (i >= 0) {
        *id = (enum nd_array_id)i;
        return ND_STATUS_OK;
    }
    for (i = 0; i < ND_COUNT_OF(array_aliases); i++) {
        if (strcmp(array_aliases[i].name, name) == 0) {
            *id = array_aliases[i].id;
            return ND_STATUS_OK;
        }
    }
    char buf[16];
    return nd_error_set(err, ND_STATUS_NOT_FOUND,
                        "no array \"%s\"; expected Scaling, Biases, MovingMean, MovingVariance "
                        "or gamma, beta, moving_mean, moving_variance, weight, bias, "
                        "running_mean, running_var, scale, mean, var",
                        nd__printable(name, buf, sizeof buf));
}

const char *nd_variance_estimator_name(enum nd_variance_estimator v) {
    if ((unsigned)v >= (unsigned)ND_COUNT_OF(variance_names))
        return "unknown";
    return variance_names[v];
}

enum nd_status nd_variance_estimator_parse(const char *name, enum nd_variance_estimator *v,
                                           struct nd_error *err) {
    if (!name || !v)
        return nd_error_set(err, ND_STATUS_INVALID_ARGUMENT,
                            "nd_variance_estimator_parse: NULL argument");
    int i;
    enum nd_status st =
        nd__names_parse(ND_NAMES(variance_names), name, "variance estimator", &i, err);
    if (st == ND_STATUS_OK)
        *v = (enum nd_variance_estimator)i;
    return st;
}

const char *nd_method_name(enum nd_method m) {
    if ((unsigned)m >= (unsigned)ND_COUNT_OF(method_names))
        return "unknown";
    return method_names[m];
}

enum nd_status nd_method_parse(const char *name, enum nd_method *m, struct nd_error *err) {
    if (!name || !m)
        return nd_error_set(err, ND_STATUS_INVALID_ARGUMENT, "nd_method_parse: NULL argument");
    int i;
    enum nd_status st = nd__names_parse(ND_NAMES(method_names), name, "method", &i, err);
    if (st == ND_STATUS_OK)
        *m = (enum nd_method)i;
    return st;
}

// ---- level specifications ----

static bool is_blank(char c) {
    return c == ' ' || c == '\t';
}

// Trims blanks around [*s, *end).
static void trim(const char **s, const char **end) {
    while (*s < *end && is_blank(**s))
        (*s)++;
    while (*end > *s && is_blank((*end)[-1]))
        (*end)--;
}

static bool span_equals(const char *s, const char *end, const char *word) {
    size_t n = strlen(word);
    return (size_t)(end - s) == n && memcmp(s, word, n) == 0;
}

// A non-zero integer filling [s, end): optional sign and 1..9 digits (so it fits int32).
static bool parse_level(const char *s, const char *end, int32_t *out) {
    int32_t sign = 1;
    if (s < end && (*s == '-' || *s == '+'))
        sign = *s++ == '-' ? -1 : 1;
    if (s == end || end - s > 9)
        return false;
    int32_t v = 0;
    for (; s < end; s++) {
        if (*s < '0' || *s > '9')
            return false;
        v = v * 10 + (*s - '0');
    }
    *out = sign * v;
    return v != 0;
}

// Parses "a;;b" of [s, end) into out; false when it is not one.
static bool parse_span(const char *s, const char *end, struct nd_levels *out) {
    const char *sep = NULL;
    for (const char *p = s; p + 1 < end; p++) {
        if (p[0] == ';' && p[1] == ';') {
            sep = p;
            break;
        }
    }
    if (!sep)
        return false;
    const char *a = s, *a_end = sep, *b = sep + 2, *b_end = end;
    trim(&a, &a_end);
    trim(&b, &b_end);
    if (!parse_level(a, a_end, &out->from))
        return false;
    out->to_all = span_equals(b, b_end, "All");
    out->to = 0;
    return out->to_all || parse_level(b, b_end, &out->to);
}

enum nd_status nd_levels_parse(const char *text, struct nd_levels *out, struct nd_error *err) {
    if (!text || !out)
        return nd_error_set(err, ND_STATUS_INVALID_ARGUMENT, "nd_levels_parse: NULL argument");
    struct nd_levels lv = {.kind = ND_LEVELS_SPAN};
    const char *s = text, *end = text + strlen(text);
    trim(&s, &end);
    if (span_equals(s, end, "All"))
        lv.kind = ND_LEVELS_ALL;
    else if (span_equals(s, end, "Same"))
        lv.kind = ND_LEVELS_SAME;
    else if (span_equals(s, end, "Complement"))
        lv.kind = ND_LEVELS_COMPLEMENT;
    else if (!parse_span(s, end, &lv)) {
        char buf[32];
        return nd_error_set(err, ND_STATUS_INVALID_VALUE,
                            "invalid level specification \"%s\"; expected \"All\", \"Same\", "
                            "\"Complement\" or \"a;;b\" with non-zero integers a, b (b may be "
                            "All)",
                            nd__printable(text, buf, sizeof buf));
    }
    *out = lv;
    return ND_STATUS_OK;
}

char *nd_levels_format(const struct nd_levels *levels, char *buf, size_t size) {
    if (!buf || size == 0)
        return buf;
    buf[0] = '\0';
    if (!levels)
        return buf;
    switch (levels->kind) {
    case ND_LEVELS_ALL:
        snprintf(buf, size, "All");
        break;
    case ND_LEVELS_SAME:
        snprintf(buf, size, "Same");
        break;
    case ND_LEVELS_COMPLEMENT:
        snprintf(buf, size, "Complement");
        break;
    case ND_LEVELS_SPAN:
        if (levels->to_all)
            snprintf(buf, size, "%d;;All", (int)levels->from);
        else
            snprintf(buf, size, "%d;;%d", (int)levels->from, (int)levels->to);
        break;
    case ND_LEVELS_LIST: {
        int32_t n = levels->count < 0             ? 0
                    : levels->count > ND_MAX_RANK ? ND_MAX_RANK
                                                  : levels->count;
        size_t used = (size_t)snprintf(buf, size, "[");
        for (int32_t i = 0; i < n && used < size; i++)
            used += (size_t)snprintf(buf + used, size - used, "%s%d", i ? ", " : "",
                                     (int)levels->level[i]);
        if (used < size)
            snprintf(buf + used, size - used, "]");
        break;
    }
    default:
        snprintf(buf, size, "unknown");
    }
    return buf;
}

// ---- defaults ----

static void default_axes(struct nd_spec *spec) {
    const struct type_row *t = type_row(spec->type);
    spec->naxes = t->axes == AXES_NONE ? 0 : 1;
    if (t->axes == AXES_LAST ||
        (t->axes == AXES_CHANNEL && conv_row(spec->convention)->channels_last))
        spec->axes[0] = -1;
    else if (t->axes == AXES_CHANNEL)
        spec->axes[0] = 1;
}

static void default_batch_options(struct nd_spec *spec, const struct conv_row *c) {
    spec->momentum = c->momentum;
    spec->momentum_null = c->momentum_null;
    spec->interleaving = c->channels_last;
    spec->interleaving_given = false;
    spec->moving_variance = c->moving_variance;
}

static void default_norm_options(struct nd_spec *spec, const struct conv_row *c) {
    if (c->channels_last) // keras: "1;;-2", every level but the channels
        spec->aggregation = (struct nd_levels){.kind = ND_LEVELS_SPAN, .from = 1, .to = -2};
    else
        spec->aggregation = (struct nd_levels){.kind = ND_LEVELS_SPAN, .from = 2, .to_all = true};
    spec->scaling = (struct nd_levels){.kind = ND_LEVELS_COMPLEMENT};
    spec->ngroup = 0;
    spec->method = type_row(spec->type)->method;
}

static void default_arrays(struct nd_spec *spec) {
    const struct type_row *t = type_row(spec->type);
    const enum nd_init_kind kinds[ND_ARRAY_COUNT] = {ND_INIT_ONES, ND_INIT_ZEROS, ND_INIT_ZEROS,
                                                     ND_INIT_ONES};
    for (int i = 0; i < ND_ARRAY_COUNT; i++) {
        spec->enabled[i] = i < ND_ARRAY_AFFINE_COUNT || t->moving;
        spec->init[i] = (struct nd_initializer){.kind = kinds[i]};
        spec->init_given[i] = false;
        spec->lr_multiplier[i] = 1.0;
    }
    spec->enabled[ND_ARRAY_BIASES] = t->biases;
    for (int i = 0; i < ND_ARRAY_AFFINE_COUNT; i++) {
        spec->regularizer[i] = (struct nd_regularizer){0.0, 0.0};
        spec->constraint[i] = (struct nd_constraint){.kind = ND_CONSTRAINT_NONE};
    }
    spec->init[ND_ARRAY_SCALING] = nd_spec_initializer(spec, ND_ARRAY_SCALING);
}

void nd_spec_defaults(struct nd_spec *spec, enum nd_layer_type type, int32_t batchnorm_nd,
                      enum nd_convention conv) {
    if (!spec)
        return;
    memset(spec, 0, sizeof *spec);
    const struct conv_row *c = conv_row(conv);
    spec->type = type;
    spec->batchnorm_nd = nd_layer_type_is_batch(type) ? batchnorm_nd : 0;
    spec->convention = conv;
    spec->input.ndim = ND_RANK_UNKNOWN;
    spec->epsilon = type_row(type)->rms_eps ? c->rms_epsilon : c->epsilon;
    default_fields(spec); // the plain options: init_factor, trainable, groups, description...
    default_batch_options(spec, c);
    default_norm_options(spec, c);
    default_axes(spec);
    default_arrays(spec);
    spec->has_seed = false;
}

void nd_spec_defaults_named(struct nd_spec *spec, const struct nd_type_name *name,
                            enum nd_convention conv, enum nd_convention_from from) {
    if (!spec || !name)
        return;
    nd_spec_defaults(spec, name->type, name->batchnorm_nd, conv);
    spec->type_alias = name->id;
    spec->convention_from = from;
    if (name->family != ND_TYPE_FAMILY_PYTORCH)
        return;
    if (name->type == ND_LAYER_TYPE_INSTANCE_NORM) // InstanceNorm*d(affine=False)
        spec->enabled[ND_ARRAY_SCALING] = spec->enabled[ND_ARRAY_BIASES] = false;
    if (name->type == ND_LAYER_TYPE_GROUP_NORM) // num_groups has no default in PyTorch
        spec->groups = 0;
}

enum nd_convention nd_type_name_convention(const struct nd_type_name *name, bool keras_args,
                                           enum nd_convention_from *from) {
    enum nd_type_family f = name ? name->family : ND_TYPE_FAMILY_NONE;
    enum nd_convention conv = f == ND_TYPE_FAMILY_PYTORCH               ? ND_CONVENTION_PYTORCH
                              : f == ND_TYPE_FAMILY_PUZZLELIB           ? ND_CONVENTION_PUZZLELIB
                              : f == ND_TYPE_FAMILY_KERAS && keras_args ? ND_CONVENTION_KERAS
                                                                        : ND_CONVENTION_WOLFRAM;
    bool by_type = f == ND_TYPE_FAMILY_PYTORCH || f == ND_TYPE_FAMILY_PUZZLELIB ||
                   f == ND_TYPE_FAMILY_WOLFRAM || (f == ND_TYPE_FAMILY_KERAS && keras_args);
    if (from)
        *from = by_type ? ND_CONVENTION_FROM_TYPE : ND_CONVENTION_FROM_DEFAULT;
    return conv;
}

bool nd_spec_is_pytorch_named(const struct nd_spec *spec) {
    struct nd_type_name n;
    return spec && spec->type_alias != 0 && nd_type_name_of(spec->type, spec->type_alias, &n) &&
           n.family == ND_TYPE_FAMILY_PYTORCH;
}

bool nd_spec_tracks_running_stats(const struct nd_spec *spec) {
    return spec && nd_layer_type_can_track(spec->type) && spec->enabled[ND_ARRAY_MOVING_MEAN] &&
           spec->enabled[ND_ARRAY_MOVING_VARIANCE];
}

int nd_spec_array_count(const struct nd_spec *spec) {
    bool all = spec && (nd_layer_type_is_batch(spec->type) || nd_spec_tracks_running_stats(spec));
    return all ? ND_ARRAY_COUNT : ND_ARRAY_AFFINE_COUNT;
}

// The input a PyTorch module takes whatever the spatial sizes: [C] for BatchNorm1d (its (N, C)
// form; [C, L] must be given as input), [C, null...] for the others.
static void input_from_num_features(struct nd_spec *spec, const struct nd_type_name *n) {
    int32_t rank =
        n->type == ND_LAYER_TYPE_BATCH_NORM && n->spatial_dims == 1 ? 1 : n->spatial_dims + 1;
    if (n->spatial_dims == 0 || spec->num_features < 1)
        return; // GroupNorm takes any rank: its input stays to be given
    spec->input.ndim = rank;
    spec->input.dim[0] = spec->num_features;
    for (int32_t i = 1; i < rank; i++)
        spec->input.dim[i] = ND_DIM_AUTO;
}

void nd_spec_complete(struct nd_spec *spec) {
    struct nd_type_name n;
    if (!nd_spec_is_pytorch_named(spec) || !nd_type_name_of(spec->type, spec->type_alias, &n))
        return;
    bool normalized =
        spec->type == ND_LAYER_TYPE_LAYER_NORM || spec->type == ND_LAYER_TYPE_RMS_NORM;
    int32_t k = spec->normalized_shape.ndim;
    if (normalized && k >= 1 && k <= ND_MAX_RANK) {
        spec->naxes = k; // the last k dims, in batched indexing from the end: -k .. -1
        for (int32_t i = 0; i < k; i++)
            spec->axes[i] = i - k;
        bool sizes = true; // invalid ones are nd_spec_validate's to name, not the input's
        for (int32_t i = 0; i < k; i++)
            sizes = sizes && spec->normalized_shape.dim[i] >= 1;
        if (spec->input.ndim == ND_RANK_UNKNOWN && sizes)
            spec->input = spec->normalized_shape;
        return;
    }
    if (spec->input.ndim == ND_RANK_UNKNOWN)
        input_from_num_features(spec, &n);
}

enum nd_momentum_rule nd_spec_momentum_rule(const struct nd_spec *spec) {
    if (!spec)
        return ND_MOMENTUM_DECAY;
    const struct conv_row *c = conv_row(spec->convention);
    return spec->momentum_null ? c->null_rule : c->rule;
}

struct nd_initializer nd_spec_initializer(const struct nd_spec *spec, enum nd_array_id id) {
    if (!spec || (unsigned)id >= ND_ARRAY_COUNT)
        return (struct nd_initializer){.kind = ND_INIT_ZEROS};
    if (id == ND_ARRAY_SCALING && !spec->init_given[id] && nd_layer_type_is_batch(spec->type) &&
        conv_row(spec->convention)->random_scaling)
        return (struct nd_initializer){.kind = ND_INIT_RANDOM_NORMAL, .a = 1.0, .b = spec->sscale};
    return spec->init[id];
}

// ---- validation ----

// The public name of a field: PyTorch's spelling for a PyTorch-named layer.
static const char *torch_field(const struct nd_spec *spec, const char *name, const char *torch) {
    return nd_spec_is_pytorch_named(spec) ? torch : name;
}

static enum nd_status check_input(const struct nd_shape *in, struct nd_error *err) {
    if (in->ndim == ND_RANK_UNKNOWN)
        return ND_STATUS_OK;
    if (in->ndim < 0 || in->ndim > ND_MAX_RANK)
        return nd_error_set_field(err, ND_STATUS_INVALID_VALUE, "input",
                                  "input rank %d is not in 0..%d", (int)in->ndim, ND_MAX_RANK);
    for (int32_t i = 0; i < in->ndim; i++)
        if (in->dim[i] < 1 && in->dim[i] != ND_DIM_AUTO)
            return nd_error_set_field(err, ND_STATUS_INVALID_VALUE, "input",
                                      "input dimension %d is %lld; must be >= 1 or null",
                                      (int)i + 1, (long long)in->dim[i]);
    return ND_STATUS_OK;
}

static enum nd_status check_multipliers(const struct nd_spec *spec, struct nd_error *err) {
    int n = type_row(spec->type)->can_track ? ND_ARRAY_COUNT : ND_ARRAY_AFFINE_COUNT;
    for (int i = 0; i < n; i++) {
        double m = spec->lr_multiplier[i];
        if (isfinite(m) && m >= 0.0)
            continue;
        char field[ND_ERROR_FIELD_MAX];
        snprintf(field, sizeof field, "learning_rate_multipliers.%s", array_names[i]);
        return nd_error_set_field(err, ND_STATUS_INVALID_VALUE, field,
                                  "learning rate multiplier of %s must be finite and >= 0, got %g",
                                  array_names[i], m);
    }
    return ND_STATUS_OK;
}

static enum nd_status check_common(const struct nd_spec *spec, struct nd_error *err) {
    if ((unsigned)spec->type >= ND_LAYER_TYPE_COUNT)
        return nd_error_set_field(err, ND_STATUS_INVALID_ARGUMENT, "type",
                                  "layer type %d is out of range", (int)spec->type);
    if ((unsigned)spec->convention >= ND_CONVENTION_COUNT)
        return nd_error_set_field(err, ND_STATUS_INVALID_ARGUMENT, "convention",
                                  "convention %d is out of range", (int)spec->convention);
    if (!(isfinite(spec->epsilon) && spec->epsilon > 0.0))
        return nd_error_set_field(err, ND_STATUS_INVALID_VALUE,
                                  torch_field(spec, "options.epsilon", "options.eps"),
                                  "%s must be > 0 and finite, got %g",
                                  torch_field(spec, "epsilon", "eps"), spec->epsilon);
    enum nd_status st = check_input(&spec->input, err);
    return st ? st : check_multipliers(spec, err);
}

// Axes as given: count, non-zero, within the largest batched rank, distinct.
static enum nd_status check_axes(const struct nd_spec *spec, struct nd_error *err) {
    const struct type_row *t = type_row(spec->type);
    int32_t lo = nd_layer_type_is_batch(spec->type) ? 0 : 1;
    if (t->one_axis && spec->naxes != 1)
        return nd_error_set_field(err, ND_STATUS_INVALID_VALUE, "options.axis",
                                  "%s takes a single channel axis, got %d axes", t->name,
                                  (int)spec->naxes);
    if (spec->naxes < lo || spec->naxes > ND_MAX_RANK)
        return nd_error_set_field(err, ND_STATUS_INVALID_VALUE, "options.axis",
                                  "%s takes %d to %d axes, got %d", t->name, (int)lo, ND_MAX_RANK,
                                  (int)spec->naxes);
    for (int32_t i = 0; i < spec->naxes; i++) {
        int32_t a = spec->axes[i];
        if (a == 0)
            return nd_error_set_field(err, ND_STATUS_INVALID_VALUE, "options.axis",
                                      "axis 0 is the batch axis; use 1..%d or a negative axis",
                                      ND_MAX_RANK);
        if (a > ND_MAX_RANK || a < -ND_MAX_RANK)
            return nd_error_set_field(err, ND_STATUS_INVALID_VALUE, "options.axis",
                                      "axis %d is out of range (at most %d per-example dims)",
                                      (int)a, ND_MAX_RANK);
        for (int32_t j = 0; j < i; j++)
            if (spec->axes[j] == a)
                return nd_error_set_field(err, ND_STATUS_INVALID_VALUE, "options.axis",
                                          "axis %d is given twice (duplicate)", (int)a);
    }
    return ND_STATUS_OK;
}

static enum nd_status check_momentum(const struct nd_spec *spec, struct nd_error *err) {
    const struct conv_row *c = conv_row(spec->convention);
    if (spec->momentum_null && !c->momentum_null_ok)
        return nd_error_set_field(err, ND_STATUS_INVALID_VALUE, "options.momentum",
                                  "momentum null (a cumulative average) is only allowed under "
                                  "the pytorch convention, not %s",
                                  c->name);
    if (!spec->momentum_null && !in_unit(spec->momentum))
        return nd_error_set_field(err, ND_STATUS_INVALID_VALUE, "options.momentum",
                                  "momentum must be in [0, 1], got %g", spec->momentum);
    return ND_STATUS_OK;
}

// Both moving statistics or neither (PyTorch's track_running_stats=False): the kernels read
// and update them together. Types that cannot track have neither.
static enum nd_status check_moving_pair(const struct nd_spec *spec, struct nd_error *err) {
    bool mm = spec->enabled[ND_ARRAY_MOVING_MEAN], mv = spec->enabled[ND_ARRAY_MOVING_VARIANCE];
    if ((mm || mv) && !type_row(spec->type)->can_track)
        return nd_error_set_field(err, ND_STATUS_INVALID_VALUE,
                                  mm ? "arrays.MovingMean" : "arrays.MovingVariance",
                                  "%s keeps no moving statistics", type_row(spec->type)->name);
    if (mm != mv)
        return nd_error_set_field(err, ND_STATUS_INVALID_VALUE,
                                  mm ? "arrays.MovingVariance" : "arrays.MovingMean",
                                  "%s cannot be disabled (null) alone; track_running_stats false "
                                  "drops both moving statistics",
                                  mm ? "MovingVariance" : "MovingMean");
    return ND_STATUS_OK;
}

// An instance norm tracking running statistics moves them by its momentum, which must then be
// a number: PyTorch's instance_norm takes a float (None fails at the first training forward,
// with a TypeError); say so when the layer is defined instead.
static enum nd_status check_instance_momentum(const struct nd_spec *spec, struct nd_error *err) {
    if (!nd_spec_tracks_running_stats(spec))
        return ND_STATUS_OK;
    if (spec->momentum_null)
        return nd_error_set_field(err, ND_STATUS_INVALID_VALUE, "options.momentum",
                                  "an instance normalization with track_running_stats true "
                                  "needs a number as momentum (PyTorch's instance_norm fails "
                                  "on None)");
    return check_momentum(spec, err);
}

static enum nd_status check_batch_options(const struct nd_spec *spec, struct nd_error *err) {
    if (spec->batchnorm_nd < 0 || spec->batchnorm_nd >= ND_MAX_RANK)
        return nd_error_set_field(err, ND_STATUS_INVALID_ARGUMENT, "type",
                                  "BatchNorm%dD is out of range (1..%d)", (int)spec->batchnorm_nd,
                                  ND_MAX_RANK - 1);
    enum nd_status st = check_momentum(spec, err);
    if (!st)
        st = check_moving_pair(spec, err);
    if (st)
        return st;
    if ((unsigned)spec->moving_variance >= (unsigned)ND_COUNT_OF(variance_names))
        return nd_error_set_field(err, ND_STATUS_INVALID_ARGUMENT, "options.moving_variance",
                                  "variance estimator %d is out of range",
                                  (int)spec->moving_variance);
    if ((st = check_fields(spec, err))) // init_factor, min_factor, sscale, description...
        return st;
    return check_axes(spec, err);
}

// A level spec as given. Aggregation takes a list (at least one level), All or a span;
// scaling any kind (an empty list: no scaling levels).
static enum nd_status check_levels(const struct nd_levels *lv, bool scaling, const char *field,
                                   struct nd_error *err) {
    if ((unsigned)lv->kind > ND_LEVELS_COMPLEMENT)
        return nd_error_set_field(err, ND_STATUS_INVALID_ARGUMENT, field,
                                  "level kind %d is out of range", (int)lv->kind);
    if (!scaling && (lv->kind == ND_LEVELS_SAME || lv->kind == ND_LEVELS_COMPLEMENT))
        return nd_error_set_field(err, ND_STATUS_INVALID_VALUE, field,
                                  "aggregation levels must be a list, \"All\" or a span \"a;;b\"; "
                                  "Same and Complement are for scaling_levels only");
    if (lv->kind == ND_LEVELS_SPAN) {
        if (lv->from == 0 || (!lv->to_all && lv->to == 0))
            return nd_error_set_field(err, ND_STATUS_INVALID_VALUE, field,
                                      "span levels must be non-zero (levels count from 1)");
        if (!lv->to_all && (lv->from > 0) == (lv->to > 0) && lv->from > lv->to)
            return nd_error_set_field(err, ND_STATUS_INVALID_VALUE, field, "span %d;;%d is empty",
                                      (int)lv->from, (int)lv->to);
    }
    if (lv->kind != ND_LEVELS_LIST)
        return ND_STATUS_OK;
    if (lv->count < (scaling ? 0 : 1) || lv->count > ND_MAX_RANK)
        return nd_error_set_field(err, ND_STATUS_INVALID_VALUE, field,
                                  "a level list needs %d to %d levels, got %d", scaling ? 0 : 1,
                                  ND_MAX_RANK, (int)lv->count);
    for (int32_t i = 0; i < lv->count; i++) {
        int32_t l = lv->level[i];
        if (l == 0 || l > ND_MAX_RANK || l < -ND_MAX_RANK)
            return nd_error_set_field(err, ND_STATUS_INVALID_VALUE, field,
                                      "level %d is out of range: levels are non-zero, at most %d "
                                      "from either end",
                                      (int)l, ND_MAX_RANK);
        for (int32_t j = 0; j < i; j++)
            if (lv->level[j] == l)
                return nd_error_set_field(err, ND_STATUS_INVALID_VALUE, field,
                                          "level %d is given twice (duplicate)", (int)l);
    }
    return ND_STATUS_OK;
}

static enum nd_status check_group_number(const struct nd_spec *spec, struct nd_error *err) {
    if (spec->ngroup < 0 || spec->ngroup > ND_MAX_RANK)
        return nd_error_set_field(err, ND_STATUS_INVALID_VALUE, "options.group_number",
                                  "group_number has %d entries; at most %d", (int)spec->ngroup,
                                  ND_MAX_RANK);
    for (int32_t i = 0; i < spec->ngroup; i++)
        if (spec->group_number[i] < 1)
            return nd_error_set_field(err, ND_STATUS_INVALID_VALUE, "options.group_number",
                                      "group count %lld must be >= 1",
                                      (long long)spec->group_number[i]);
    return ND_STATUS_OK;
}

static enum nd_status check_norm_options(const struct nd_spec *spec, struct nd_error *err) {
    if ((unsigned)spec->method >= (unsigned)ND_COUNT_OF(method_names))
        return nd_error_set_field(err, ND_STATUS_INVALID_ARGUMENT, "options.method",
                                  "method %d is out of range", (int)spec->method);
    enum nd_status pair = check_fields(spec, err);
    if (!pair)
        pair = check_moving_pair(spec, err);
    if (!pair && spec->type == ND_LAYER_TYPE_INSTANCE_NORM)
        pair = check_instance_momentum(spec, err);
    if (pair)
        return pair;
    if (spec->type != ND_LAYER_TYPE_NORMALIZATION) {
        if (spec->type == ND_LAYER_TYPE_GROUP_NORM && spec->groups < 1)
            return nd_error_set_field(err, ND_STATUS_INVALID_VALUE,
                                      torch_field(spec, "options.groups", "options.num_groups"),
                                      "%s must be >= 1, got %lld",
                                      torch_field(spec, "groups", "num_groups"),
                                      (long long)spec->groups);
        return check_axes(spec, err);
    }
    enum nd_status st = check_levels(&spec->aggregation, false, "options.aggregation_levels", err);
    if (!st)
        st = check_levels(&spec->scaling, true, "options.scaling_levels", err);
    return st ? st : check_group_number(spec, err);
}

static enum nd_status check_arrays(const struct nd_spec *spec, struct nd_error *err) {
    int n = type_row(spec->type)->can_track ? ND_ARRAY_COUNT : ND_ARRAY_AFFINE_COUNT;
    for (int i = 0; i < n; i++) {
        struct nd_initializer init = nd_spec_initializer(spec, (enum nd_array_id)i);
        bool clear = err_is_clear(err);
        enum nd_status st = nd_initializer_validate(&init, err);
        if (st)
            return nested_failure(st, clear, err, init_fields[i]);
    }
    for (int i = 0; i < ND_ARRAY_AFFINE_COUNT; i++) {
        bool clear = err_is_clear(err);
        enum nd_status st = nd_regularizer_validate(&spec->regularizer[i], err);
        if (st)
            return nested_failure(st, clear, err, reg_fields[i]);
        st = nd_constraint_validate(&spec->constraint[i], err);
        if (st)
            return nested_failure(st, clear, err, constraint_fields[i]);
    }
    return ND_STATUS_OK;
}

// ---- PyTorch's constructor rules ----

// BatchNorm*d and InstanceNorm*d(num_features, ...); GroupNorm(num_groups, num_channels, ...).
static enum nd_status check_torch_sizes(const struct nd_spec *spec, const char *cls,
                                        struct nd_error *err) {
    bool gn = spec->type == ND_LAYER_TYPE_GROUP_NORM;
    const char *what = gn ? "num_channels" : "num_features";
    char field[ND_ERROR_FIELD_MAX];
    snprintf(field, sizeof field, "options.%s", what);
    if (spec->num_features < 1)
        return nd_error_set_field(err, ND_STATUS_INVALID_VALUE, field,
                                  spec->num_features == 0
                                      ? "%s needs %s (a required argument of PyTorch's %s)"
                                      : "%s: %s must be >= 1 (PyTorch's %s)",
                                  cls, what, cls);
    if (!gn)
        return ND_STATUS_OK;
    if (spec->groups < 1)
        return nd_error_set_field(err, ND_STATUS_INVALID_VALUE, "options.num_groups",
                                  spec->groups == 0
                                      ? "GroupNorm needs num_groups (a required argument of "
                                        "PyTorch's GroupNorm)"
                                      : "GroupNorm: num_groups must be >= 1");
    if (spec->num_features % spec->groups != 0)
        return nd_error_set_field(err, ND_STATUS_INVALID_VALUE, "options.num_channels",
                                  "num_channels must be divisible by num_groups (%lld %% %lld "
                                  "= %lld)",
                                  (long long)spec->num_features, (long long)spec->groups,
                                  (long long)(spec->num_features % spec->groups));
    return ND_STATUS_OK;
}

// LayerNorm and RMSNorm(normalized_shape, ...).
static enum nd_status check_torch_normalized_shape(const struct nd_spec *spec, const char *cls,
                                                   struct nd_error *err) {
    const struct nd_shape *ns = &spec->normalized_shape;
    if (ns->ndim < 1 || ns->ndim > ND_MAX_RANK)
        return nd_error_set_field(err, ND_STATUS_INVALID_VALUE, "options.normalized_shape",
                                  ns->ndim == 0
                                      ? "%s needs normalized_shape (a required argument of "
                                        "PyTorch's %s)"
                                      : "%s: normalized_shape has too many dims (%s takes up "
                                        "to 8)",
                                  cls, cls);
    for (int32_t i = 0; i < ns->ndim; i++)
        if (ns->dim[i] < 1)
            return nd_error_set_field(err, ND_STATUS_INVALID_VALUE, "options.normalized_shape",
                                      "%s: normalized_shape sizes must be >= 1, got %lld", cls,
                                      (long long)ns->dim[i]);
    return ND_STATUS_OK;
}

static enum nd_status check_pytorch(const struct nd_spec *spec, struct nd_error *err) {
    struct nd_type_name n;
    if (!nd_spec_is_pytorch_named(spec) || !nd_type_name_of(spec->type, spec->type_alias, &n))
        return ND_STATUS_OK;
    switch (spec->type) {
    case ND_LAYER_TYPE_LAYER_NORM:
    case ND_LAYER_TYPE_RMS_NORM:
        return check_torch_normalized_shape(spec, n.name, err);
    case ND_LAYER_TYPE_INSTANCE_NORM: // momentum is stored, and used only with running stats
        if (!spec->momentum_null && !in_unit(spec->momentum))
            return nd_error_set_field(err, ND_STATUS_INVALID_VALUE, "options.momentum",
                                      "momentum must be in [0, 1], got %g", spec->momentum);
        return check_torch_sizes(spec, n.name, err);
    default:
        return check_torch_sizes(spec, n.name, err);
    }
}

enum nd_status nd_spec_validate(const struct nd_spec *spec, struct nd_error *err) {
    if (!spec)
        return nd_error_set(err, ND_STATUS_INVALID_ARGUMENT, "nd_spec_validate: NULL spec");
    enum nd_status st = check_common(spec, err);
    if (!st)
        st = check_pytorch(spec, err);
    if (st)
        return st;
    if (nd_layer_type_is_batch(spec->type))
        st = check_batch_options(spec, err);
    else
        st = check_norm_options(spec, err);
    return st ? st : check_arrays(spec, err);
}

// ---- resolution ----

// The 1-based index of per-example level or batched axis v on rank r (negatives from the
// end); 0 or out of 1..r when v names no per-example dimension.
static int32_t level_of(int32_t v, int32_t r) {
    return v < 0 ? v + r + 1 : v;
}

// Adds batched axis v (or level v) to *mask, rejecting out-of-range values and duplicates.
static enum nd_status add_level(int32_t v, int32_t r, const char *field, const char *what,
                                uint32_t *mask, struct nd_error *err) {
    int32_t l = level_of(v, r);
    if (l < 1 || l > r) {
        bool batch = l == 0 && strcmp(what, "axis") == 0;
        return nd_error_set_field(err, ND_STATUS_INVALID_VALUE, field,
                                  "%s %d is out of range for a per-example rank of %d%s", what,
                                  (int)v, (int)r, batch ? " (it names the batch axis)" : "");
    }
    if (*mask & (1u << (l - 1)))
        return nd_error_set_field(err, ND_STATUS_INVALID_VALUE, field,
                                  "%s %d names dimension %d twice (duplicate)", what, (int)v,
                                  (int)l);
    *mask |= 1u << (l - 1);
    return ND_STATUS_OK;
}

static enum nd_status span_mask(const struct nd_levels *lv, int32_t r, const char *field,
                                uint32_t *mask, struct nd_error *err) {
    int32_t from = level_of(lv->from, r), to = lv->to_all ? r : level_of(lv->to, r);
    char text[32];
    if (from < 1 || from > r || to < 1 || to > r)
        return nd_error_set_field(err, ND_STATUS_INVALID_VALUE, field,
                                  "span %s is out of range for a per-example rank of %d",
                                  nd_levels_format(lv, text, sizeof text), (int)r);
    if (from > to)
        return nd_error_set_field(err, ND_STATUS_INVALID_VALUE, field,
                                  "span %s is empty on a per-example rank of %d (from level %d "
                                  "to level %d)",
                                  nd_levels_format(lv, text, sizeof text), (int)r, (int)from,
                                  (int)to);
    for (int32_t l = from; l <= to; l++)
        *mask |= 1u << (l - 1);
    return ND_STATUS_OK;
}

// The dims a list, All or span names on rank r.
static enum nd_status levels_mask(const struct nd_levels *lv, int32_t r, const char *field,
                                  uint32_t *mask, struct nd_error *err) {
    *mask = 0;
    switch (lv->kind) {
    case ND_LEVELS_ALL:
        *mask = ALL_DIMS(r);
        return ND_STATUS_OK;
    case ND_LEVELS_SPAN:
        return span_mask(lv, r, field, mask, err);
    case ND_LEVELS_LIST:
        if (lv->count < 0 || lv->count > ND_MAX_RANK)
            return nd_error_set_field(err, ND_STATUS_INVALID_VALUE, field,
                                      "a level list holds at most %d levels", ND_MAX_RANK);
        for (int32_t i = 0; i < lv->count; i++) {
            enum nd_status st = add_level(lv->level[i], r, field, "level", mask, err);
            if (st)
                return st;
        }
        return ND_STATUS_OK;
    default:
        return nd_error_set_field(err, ND_STATUS_INVALID_VALUE, field,
                                  "expected a list of levels, \"All\" or a span \"a;;b\"");
    }
}

static enum nd_status check_resolve_input(const struct nd_shape *in, struct nd_error *err) {
    if (in->ndim == ND_RANK_UNKNOWN)
        return nd_error_set_field(err, ND_STATUS_INVALID_ARGUMENT, "input",
                                  "nd_spec_resolve needs a shape of known rank");
    if (in->ndim < 1 || in->ndim > ND_MAX_RANK)
        return nd_error_set_field(err, ND_STATUS_SHAPE_MISMATCH, "input",
                                  "a per-example rank of %d is not supported; expected 1..%d",
                                  (int)in->ndim, ND_MAX_RANK);
    for (int32_t i = 0; i < in->ndim; i++)
        if (in->dim[i] < 0 && in->dim[i] != ND_DIM_AUTO)
            return nd_error_set_field(err, ND_STATUS_SHAPE_MISMATCH, "input",
                                      "input dimension %d is negative (%lld)", (int)i + 1,
                                      (long long)in->dim[i]);
    return ND_STATUS_OK;
}

// BatchNormalization: the channel axes as a mask, checked against interleaving.
static enum nd_status batch_axes(const struct nd_spec *spec, int32_t r, uint32_t *mask,
                                 struct nd_error *err) {
    *mask = 0;
    if (spec->naxes < 0 || spec->naxes > ND_MAX_RANK)
        return nd_error_set_field(err, ND_STATUS_INVALID_VALUE, "options.axis", "at most %d axes",
                                  ND_MAX_RANK);
    if (spec->naxes == 0) {
        *mask = spec->interleaving ? 1u << (r - 1) : 1u;
        return ND_STATUS_OK;
    }
    for (int32_t i = 0; i < spec->naxes; i++) {
        enum nd_status st = add_level(spec->axes[i], r, "options.axis", "axis", mask, err);
        if (st)
            return st;
    }
    uint32_t want = spec->interleaving ? 1u << (r - 1) : 1u;
    if (spec->interleaving_given && *mask != want)
        return nd_error_set_field(err, ND_STATUS_INVALID_VALUE, "options.interleaving",
                                  "interleaving %s puts the channels on axis %d, which disagrees "
                                  "with the given axis",
                                  spec->interleaving ? "true" : "false",
                                  spec->interleaving ? (int)r : 1);
    return ND_STATUS_OK;
}

static enum nd_status resolve_batch(const struct nd_spec *spec, struct nd_layout *out,
                                    struct nd_error *err) {
    int32_t r = out->input.ndim;
    if (spec->batchnorm_nd > 0 && r != spec->batchnorm_nd + 1)
        return nd_error_set_field(err, ND_STATUS_SHAPE_MISMATCH, "input",
                                  "BatchNorm%dD needs a per-example rank of %d, got %d",
                                  (int)spec->batchnorm_nd, (int)spec->batchnorm_nd + 1, (int)r);
    uint32_t mask;
    enum nd_status st = batch_axes(spec, r, &mask, err);
    if (st)
        return st;
    int64_t c = 1;
    bool autos = false;
    for (int32_t i = 0; i < r; i++) {
        if (!(mask & (1u << i)))
            continue;
        out->axes[out->naxes++] = i + 1;
        if (out->input.dim[i] == ND_DIM_AUTO)
            autos = true;
        else if (!nd_count_mul(c, out->input.dim[i], &c))
            return nd_error_set_field(err, ND_STATUS_LIMIT_EXCEEDED, "input",
                                      "the channel axes hold too many channels");
    }
    out->param_mask = mask;
    out->reduce_mask = ALL_DIMS(r) & ~mask;
    out->param_shape = (struct nd_shape){.ndim = 1, .dim = {autos ? ND_DIM_AUTO : c}};
    return ND_STATUS_OK;
}

// Pairs group_number with the aggregation levels in ascending order.
static enum nd_status apply_group_number(const struct nd_spec *spec, struct nd_layout *out,
                                         struct nd_error *err) {
    int32_t k = 0, naggr = bit_count(out->reduce_mask);
    if (spec->ngroup < 0 || spec->ngroup > naggr)
        return nd_error_set_field(err, ND_STATUS_INVALID_VALUE, "options.group_number",
                                  "group_number has %d entries for %d aggregation levels",
                                  (int)spec->ngroup, (int)naggr);
    for (int32_t i = 0; i < out->input.ndim && k < spec->ngroup; i++) {
        if (!(out->reduce_mask & (1u << i)))
            continue;
        int64_t g = spec->group_number[k++], d = out->input.dim[i];
        if (g < 1)
            return nd_error_set_field(err, ND_STATUS_INVALID_VALUE, "options.group_number",
                                      "group count %lld must be >= 1", (long long)g);
        if (d != ND_DIM_AUTO && d % g != 0)
            return nd_error_set_field(err, ND_STATUS_INVALID_VALUE, "options.group_number",
                                      "level %d of size %lld does not divide into %lld groups",
                                      (int)i + 1, (long long)d, (long long)g);
        out->groups[i] = g;
    }
    return ND_STATUS_OK;
}

static enum nd_status resolve_norm(const struct nd_spec *spec, struct nd_layout *out,
                                   struct nd_error *err) {
    int32_t r = out->input.ndim;
    uint32_t a, s;
    enum nd_status st = levels_mask(&spec->aggregation, r, "options.aggregation_levels", &a, err);
    if (st)
        return st;
    if (a == 0)
        return nd_error_set_field(err, ND_STATUS_INVALID_VALUE, "options.aggregation_levels",
                                  "no aggregation level: at least one level is needed");
    if (spec->scaling.kind == ND_LEVELS_COMPLEMENT)
        s = ALL_DIMS(r) & ~a;
    else if (spec->scaling.kind == ND_LEVELS_SAME)
        s = a;
    else if ((st = levels_mask(&spec->scaling, r, "options.scaling_levels", &s, err)))
        return st;
    out->reduce_mask = a;
    out->param_mask = s;
    return apply_group_number(spec, out, err);
}

// A preset's axes (naxes in 0..ND_MAX_RANK), or its defaults when none are set.
static int32_t preset_axes(const struct nd_spec *spec, int32_t *axes) {
    if (spec->naxes > 0) {
        memcpy(axes, spec->axes, (size_t)spec->naxes * sizeof *axes);
        return spec->naxes;
    }
    struct nd_spec d = {.type = spec->type, .convention = spec->convention};
    default_axes(&d);
    axes[0] = d.axes[0];
    return 1;
}

static enum nd_status resolve_preset(const struct nd_spec *spec, struct nd_layout *out,
                                     struct nd_error *err) {
    int32_t r = out->input.ndim, axes[ND_MAX_RANK];
    const struct type_row *t = type_row(spec->type);
    if (spec->naxes < 0 || spec->naxes > ND_MAX_RANK)
        return nd_error_set_field(err, ND_STATUS_INVALID_VALUE, "options.axis", "at most %d axes",
                                  ND_MAX_RANK);
    int32_t n = preset_axes(spec, axes);
    if (t->one_axis && n != 1)
        return nd_error_set_field(err, ND_STATUS_INVALID_VALUE, "options.axis",
                                  "%s takes a single channel axis, got %d", t->name, (int)n);
    uint32_t mask = 0;
    for (int32_t i = 0; i < n; i++) {
        enum nd_status st = add_level(axes[i], r, "options.axis", "axis", &mask, err);
        if (st)
            return st;
    }
    out->param_mask = mask;
    if (spec->type == ND_LAYER_TYPE_LAYER_NORM || spec->type == ND_LAYER_TYPE_RMS_NORM) {
        out->reduce_mask = mask;
        return ND_STATUS_OK;
    }
    int32_t c = lowest_bit(mask); // 0-based channel dim
    if (spec->type == ND_LAYER_TYPE_INSTANCE_NORM) {
        out->reduce_mask = ALL_DIMS(r) & ~mask;
        if (out->reduce_mask == 0)
            return nd_error_set_field(err, ND_STATUS_SHAPE_MISMATCH, "input",
                                      "InstanceNormalization needs a per-example rank of at "
                                      "least 2 (channels and the dims to normalize), got %d",
                                      (int)r);
        return ND_STATUS_OK;
    }
    int64_t g = spec->groups, d = out->input.dim[c];
    if (g < 1 || (d != ND_DIM_AUTO && d % g != 0))
        return nd_error_set_field(err, ND_STATUS_INVALID_VALUE, "options.groups",
                                  "groups %lld must be >= 1 and divide the %lld channels of level "
                                  "%d",
                                  (long long)g, (long long)d, (int)c + 1);
    out->reduce_mask = ALL_DIMS(r);
    out->groups[c] = g;
    return ND_STATUS_OK;
}

// Normalization family: Scaling/Biases take the input's dims on the scaling levels.
static void norm_param_shape(struct nd_layout *out) {
    out->param_shape.ndim = 0;
    for (int32_t i = 0; i < out->input.ndim; i++)
        if (out->param_mask & (1u << i))
            out->param_shape.dim[out->param_shape.ndim++] = out->input.dim[i];
}

// ---- PyTorch's rules against the input ----

// A PyTorch class takes inputs of given ranks, counted with the batch as PyTorch counts them.
static enum nd_status check_torch_rank(const struct nd_spec *spec, int32_t r,
                                       struct nd_error *err) {
    struct nd_type_name n;
    if (!nd_spec_is_pytorch_named(spec) || !nd_type_name_of(spec->type, spec->type_alias, &n) ||
        n.min_rank == 0 || (r >= n.min_rank && (n.max_rank == 0 || r <= n.max_rank)))
        return ND_STATUS_OK;
    if (n.max_rank == 0)
        return nd_error_set_field(err, ND_STATUS_SHAPE_MISMATCH, "input",
                                  "%s expects an input of at least %dD (N, C, *), got %dD (a "
                                  "per-example rank of %d)",
                                  n.name, (int)n.min_rank + 1, (int)r + 1, (int)r);
    if (n.min_rank != n.max_rank)
        return nd_error_set_field(err, ND_STATUS_SHAPE_MISMATCH, "input",
                                  "%s expects a %dD or %dD input, got %dD (per-example shape [C] "
                                  "or [C, L]; rank %d given)",
                                  n.name, (int)n.min_rank + 1, (int)n.max_rank + 1, (int)r + 1,
                                  (int)r);
    return nd_error_set_field(err, ND_STATUS_SHAPE_MISMATCH, "input",
                              "%s expects a %dD input (got %dD input): a per-example rank of %d "
                              "(channels and %d spatial dims), got %d",
                              n.name, (int)n.min_rank + 1, (int)r + 1, (int)n.min_rank,
                              (int)n.spatial_dims, (int)r);
}

// LayerNorm/RMSNorm: the input ends with normalized_shape (PyTorch's message).
static enum nd_status check_torch_trailing(const struct nd_spec *spec, const struct nd_shape *in,
                                           struct nd_error *err) {
    const struct nd_shape *ns = &spec->normalized_shape;
    bool ok = ns->ndim <= in->ndim;
    for (int32_t i = 0; ok && i < ns->ndim; i++) {
        int64_t d = in->dim[in->ndim - ns->ndim + i];
        ok = d == ND_DIM_AUTO || d == ns->dim[i];
    }
    if (ok)
        return ND_STATUS_OK;
    char want[96], got[96];
    nd_shape_format(ns, want, sizeof want);
    size_t n = strlen(want);
    return nd_error_set_field(err, ND_STATUS_INVALID_VALUE, "options.normalized_shape",
                              "Given normalized_shape=%s, expected input with shape [*, %.*s], "
                              "but got examples of shape %s",
                              want, (int)(n > 2 ? n - 2 : 0), want + 1,
                              nd_shape_format(in, got, sizeof got));
}

// BatchNorm*d, InstanceNorm*d, GroupNorm: num_features (num_channels) is the channel count.
static enum nd_status check_torch_channels(const struct nd_spec *spec, const struct nd_layout *lay,
                                           struct nd_error *err) {
    int64_t c = ND_DIM_AUTO;
    if (nd_layer_type_is_batch(spec->type))
        c = lay->param_shape.ndim == 1 ? lay->param_shape.dim[0] : ND_DIM_AUTO;
    else if (lay->param_mask)
        c = lay->input.dim[lowest_bit(lay->param_mask)];
    if (c == ND_DIM_AUTO || c == spec->num_features)
        return ND_STATUS_OK;
    bool gn = spec->type == ND_LAYER_TYPE_GROUP_NORM;
    return nd_error_set_field(
        err, ND_STATUS_INVALID_VALUE, gn ? "options.num_channels" : "options.num_features",
        "%s is %lld but the input has %lld channels", gn ? "num_channels" : "num_features",
        (long long)spec->num_features, (long long)c);
}

// Before the type's own resolution (whose errors would name normd's options): the ranks and
// LayerNorm/RMSNorm's trailing dims.
static enum nd_status check_torch_shape(const struct nd_spec *spec, const struct nd_shape *in,
                                        struct nd_error *err) {
    if (!nd_spec_is_pytorch_named(spec))
        return ND_STATUS_OK;
    enum nd_status st = check_torch_rank(spec, in->ndim, err);
    if (!st && (spec->type == ND_LAYER_TYPE_LAYER_NORM || spec->type == ND_LAYER_TYPE_RMS_NORM))
        st = check_torch_trailing(spec, in, err);
    return st;
}

// After it: the channel count.
static enum nd_status check_torch_input(const struct nd_spec *spec, const struct nd_layout *lay,
                                        struct nd_error *err) {
    bool sized = spec->type != ND_LAYER_TYPE_LAYER_NORM && spec->type != ND_LAYER_TYPE_RMS_NORM;
    if (!nd_spec_is_pytorch_named(spec) || !sized || spec->num_features < 1)
        return ND_STATUS_OK;
    return check_torch_channels(spec, lay, err);
}

enum nd_status nd_spec_resolve(const struct nd_spec *spec, const struct nd_shape *input,
                               struct nd_layout *out, struct nd_error *err) {
    if (!spec || !input || !out)
        return nd_error_set(err, ND_STATUS_INVALID_ARGUMENT, "nd_spec_resolve: NULL argument");
    if ((unsigned)spec->type >= ND_LAYER_TYPE_COUNT)
        return nd_error_set_field(err, ND_STATUS_INVALID_ARGUMENT, "type",
                                  "layer type %d is out of range", (int)spec->type);
    enum nd_status st = check_resolve_input(input, err);
    if (st)
        return st;
    struct nd_layout lay = {.input = *input};
    for (int i = 0; i < ND_MAX_RANK; i++)
        lay.groups[i] = 1;
    if ((st = check_torch_shape(spec, input, err)))
        return st;
    if (nd_layer_type_is_batch(spec->type))
        st = resolve_batch(spec, &lay, err);
    else if (spec->type == ND_LAYER_TYPE_NORMALIZATION)
        st = resolve_norm(spec, &lay, err);
    else
        st = resolve_preset(spec, &lay, err);
    if (st)
        return st;
    if (!nd_layer_type_is_batch(spec->type))
        norm_param_shape(&lay);
    if ((st = check_torch_input(spec, &lay, err)))
        return st;
    *out = lay;
    return ND_STATUS_OK;
}
