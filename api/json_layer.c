// json_layer.c - layer definitions from JSON (API.md 1.2-1.4) and layer information to JSON.
//
// Options live in one table: canonical snake_case name, accepted aliases, the types it applies
// to, a parser into struct nd_spec and a writer for GET. Values are checked by the engine
// (nd_spec_validate) so the rules live in one place; here only JSON types are checked. The
// plain options are rows of core/spec_fields.def, parsed and written here by their kind: a
// FIELD row of options[] places an older one in GET's order, and the table's other rows follow
// options[] (a new plain option is one row there and nothing here).
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "api/internal.h"
#include "api/tensor_io.h"

// ---- types an option applies to ----

#define T(t)      (1u << (t))
#define T_BN      T(ND_LAYER_TYPE_BATCH_NORM)
#define T_NORM    T(ND_LAYER_TYPE_NORMALIZATION)
#define T_LN      T(ND_LAYER_TYPE_LAYER_NORM)
#define T_IN      T(ND_LAYER_TYPE_INSTANCE_NORM)
#define T_GN      T(ND_LAYER_TYPE_GROUP_NORM)
#define T_RMS     T(ND_LAYER_TYPE_RMS_NORM)
#define T_PRESETS (T_LN | T_IN | T_GN | T_RMS)
#define T_FAMILY  (T_NORM | T_PRESETS)
#define T_ALL     (T_BN | T_FAMILY)

// An option row. types: the canonical types taking it; torch: the types taking it when named by
// a PyTorch class beside the class's own arguments (torch_args: normd's extras that PyTorch
// lacks, e.g. initializers). late: parsed after the others, as it refines what they set
// (PyTorch's bias under elementwise_affine, Keras' rms_scaling over center). shown: when
// GET lists it (NULL: always).
struct option {
    const char *name;
    const char *alias[3];
    unsigned types;
    int (*parse)(const json_t *v, struct nd_spec *s, const char *field, struct api_error *err);
    void (*write)(struct jw *w, const struct nd_spec *s, const struct nd_layout *lay);
    unsigned torch;
    bool late;
    bool (*shown)(const struct nd_spec *s);
    // When the option means something for a spec of one of its types (NULL: always). An
    // instance norm's momentum and track_running_stats are parsed always but apply only when
    // it tracks running statistics: elsewhere GET does not list them and extract names none.
    bool (*applies)(const struct nd_spec *s);
    // A row of core/spec_fields.def: name, alias, types, torch, parse, write and shown are its
    // (field_option fills them; parse and write go by its kind).
    const struct nd_spec_field *field;
};

// PyTorch's constructor arguments per class (canonical type), spelled as PyTorch spells them.
static const char *const torch_args[ND_LAYER_TYPE_COUNT][6] = {
    [ND_LAYER_TYPE_BATCH_NORM] = {"num_features", "eps", "momentum", "affine",
                                  "track_running_stats", NULL},
    [ND_LAYER_TYPE_INSTANCE_NORM] = {"num_features", "eps", "momentum", "affine",
                                     "track_running_stats", NULL},
    [ND_LAYER_TYPE_LAYER_NORM] = {"normalized_shape", "eps", "elementwise_affine", "bias", NULL},
    [ND_LAYER_TYPE_GROUP_NORM] = {"num_groups", "num_channels", "eps", "affine", NULL},
    [ND_LAYER_TYPE_RMS_NORM] = {"normalized_shape", "eps", "elementwise_affine", NULL},
};

// Spellings only Keras uses: given to a Keras type without a convention, they select keras.
// Laid out by hand, as a table (clang-format would give each field its own line):
// clang-format off
static const char *const keras_only[] = {
    "center",           "scale",             "rms_scaling",       "synchronized",
    "gamma_initializer", "beta_initializer", "gamma_regularizer", "beta_regularizer",
    "gamma_constraint", "beta_constraint",   NULL};
// clang-format on

static bool in_list(const char *const *list, const char *key) {
    for (int i = 0; list[i]; i++)
        if (strcmp(list[i], key) == 0)
            return true;
    return false;
}

// A string where JSON's null is meant ("Automatic", Wolfram's word; "None", Python's): the
// 400 invalid_type a wrong type gets, with a message that says what to write instead.
static int null_hint(const json_t *v, const char *field, const char *meaning,
                     struct api_error *err) {
    const char *t = json_is_string(v) ? json_string_value(v) : NULL;
    if (!t || (strcmp(t, "Automatic") != 0 && strcmp(t, "None") != 0 && strcmp(t, "null") != 0))
        return API_OK;
    return api_fail(err, API_E_INVALID_TYPE, field, "%s: write null (%s), not the string \"%s\"",
                    field, meaning, t);
}

// ---- parsers ----

static int core_value_error(const struct nd_error *e, const char *field, struct api_error *err) {
    api_error_from_core(err, e, "");
    snprintf(err->field, sizeof err->field, "%s", field);
    return API_FAIL;
}

static int parse_epsilon(const json_t *v, struct nd_spec *s, const char *f, struct api_error *e) {
    // PyTorch's RMSNorm(eps=None): the machine epsilon, which its default already is.
    if (json_is_null(v) && s->type == ND_LAYER_TYPE_RMS_NORM && nd_spec_is_pytorch_named(s))
        return API_OK;
    return api_as_number(v, f, &s->epsilon, e);
}

static int parse_momentum(const json_t *v, struct nd_spec *s, const char *f, struct api_error *e) {
    if (null_hint(v, f, "a cumulative moving average under pytorch", e))
        return API_FAIL;
    s->momentum_null = json_is_null(v);
    return s->momentum_null ? API_OK : api_as_number(v, f, &s->momentum, e);
}

static int parse_interleaving(const json_t *v, struct nd_spec *s, const char *f,
                              struct api_error *e) {
    s->interleaving_given = true;
    return api_as_bool(v, f, &s->interleaving, e);
}

// An integer or a list of integers (at most ND_MAX_RANK).
static int parse_axes(const json_t *v, struct nd_spec *s, const char *f, struct api_error *e) {
    int64_t a;
    if (!json_is_array(v)) {
        if (api_as_int(v, f, &a, e) != 0)
            return API_FAIL;
        s->naxes = 1;
        s->axes[0] = (int32_t)(a > 99 ? 99 : a < -99 ? -99 : a);
        return API_OK;
    }
    size_t n = json_array_size(v);
    if (n == 0 || n > ND_MAX_RANK)
        return api_fail(e, API_E_INVALID_VALUE, f, "%s must list 1 to %d axes", f, ND_MAX_RANK);
    for (size_t i = 0; i < n; i++) {
        if (api_as_int(json_array_get(v, i), f, &a, e) != 0)
            return API_FAIL;
        s->axes[i] = (int32_t)(a > 99 ? 99 : a < -99 ? -99 : a);
    }
    s->naxes = (int32_t)n;
    return API_OK;
}

static int parse_center(const json_t *v, struct nd_spec *s, const char *f, struct api_error *e) {
    return api_as_bool(v, f, &s->enabled[ND_ARRAY_BIASES], e);
}

static int parse_scale(const json_t *v, struct nd_spec *s, const char *f, struct api_error *e) {
    return api_as_bool(v, f, &s->enabled[ND_ARRAY_SCALING], e);
}

static int parse_affine(const json_t *v, struct nd_spec *s, const char *f, struct api_error *e) {
    bool on;
    if (api_as_bool(v, f, &on, e) != 0)
        return API_FAIL;
    s->enabled[ND_ARRAY_SCALING] = s->enabled[ND_ARRAY_BIASES] = on;
    return API_OK;
}

// PyTorch's LayerNorm/RMSNorm(elementwise_affine): Scaling, and Biases where the type has them
// (RMSNorm has none).
static int parse_elementwise_affine(const json_t *v, struct nd_spec *s, const char *f,
                                    struct api_error *e) {
    bool on;
    if (api_as_bool(v, f, &on, e) != 0)
        return API_FAIL;
    s->enabled[ND_ARRAY_SCALING] = on;
    if (s->type != ND_LAYER_TYPE_RMS_NORM)
        s->enabled[ND_ARRAY_BIASES] = on;
    return API_OK;
}

// PyTorch's LayerNorm(bias=False): no Biases (a late option: bias=True adds none without
// elementwise_affine, as in PyTorch).
static int parse_bias(const json_t *v, struct nd_spec *s, const char *f, struct api_error *e) {
    bool on;
    if (api_as_bool(v, f, &on, e) != 0)
        return API_FAIL;
    s->enabled[ND_ARRAY_BIASES] = s->enabled[ND_ARRAY_BIASES] && on;
    return API_OK;
}

// PyTorch's track_running_stats: false drops a batch norm's MovingMean/MovingVariance (batch
// statistics in inference too); true gives an instance norm its own (none by default).
static int parse_track_running_stats(const json_t *v, struct nd_spec *s, const char *f,
                                     struct api_error *e) {
    bool on;
    if (api_as_bool(v, f, &on, e) != 0)
        return API_FAIL;
    s->enabled[ND_ARRAY_MOVING_MEAN] = s->enabled[ND_ARRAY_MOVING_VARIANCE] = on;
    return API_OK;
}

// A positive size (num_features, num_channels); values below 1 are nd_spec_validate's to name.
static int parse_num_features(const json_t *v, struct nd_spec *s, const char *f,
                              struct api_error *e) {
    int64_t n;
    if (api_as_int(v, f, &n, e) != 0)
        return API_FAIL;
    s->num_features = n < 1 ? -1 : n; // 0 means "not given" in the spec
    return API_OK;
}

// PyTorch's normalized_shape: an integer or a list of integers.
static int parse_normalized_shape(const json_t *v, struct nd_spec *s, const char *f,
                                  struct api_error *e) {
    size_t n = json_is_array(v) ? json_array_size(v) : 1;
    if (n == 0 || n > ND_MAX_RANK)
        return api_fail(e, API_E_INVALID_VALUE, f, "%s must list 1 to %d sizes", f, ND_MAX_RANK);
    struct nd_shape shape = {.ndim = (int32_t)n};
    for (size_t i = 0; i < n; i++) {
        int64_t d;
        if (api_as_int(json_is_array(v) ? json_array_get(v, i) : v, f, &d, e) != 0)
            return API_FAIL;
        shape.dim[i] = d < 1 ? 0 : d; // nd_spec_validate names sizes below 1
    }
    s->normalized_shape = shape;
    return API_OK;
}

// Keras' LayerNormalization(rms_scaling=True): x/sqrt(mean(x^2)+eps) times gamma, no beta
// (a late option: it overrides center).
static int parse_rms_scaling(const json_t *v, struct nd_spec *s, const char *f,
                             struct api_error *e) {
    bool on;
    if (api_as_bool(v, f, &on, e) != 0)
        return API_FAIL;
    if (on) {
        s->method = ND_METHOD_RMS;
        s->enabled[ND_ARRAY_SCALING] = true;
        s->enabled[ND_ARRAY_BIASES] = false;
    }
    return API_OK;
}

static int parse_moving_variance(const json_t *v, struct nd_spec *s, const char *f,
                                 struct api_error *e) {
    const char *text;
    struct nd_error ce;
    nd_error_clear(&ce);
    if (api_as_string(v, f, &text, e) != 0)
        return API_FAIL;
    if (nd_variance_estimator_parse(text, &s->moving_variance, &ce) != ND_STATUS_OK)
        return core_value_error(&ce, f, e);
    return API_OK;
}

static int parse_method(const json_t *v, struct nd_spec *s, const char *f, struct api_error *e) {
    const char *text;
    struct nd_error ce;
    nd_error_clear(&ce);
    if (api_as_string(v, f, &text, e) != 0)
        return API_FAIL;
    if (nd_method_parse(text, &s->method, &ce) != ND_STATUS_OK)
        return core_value_error(&ce, f, e);
    return API_OK;
}

// "All", "a;;b", "Same", "Complement", an integer, or a list of integers.
static int parse_levels(const json_t *v, struct nd_levels *out, const char *f,
                        struct api_error *e) {
    struct nd_error ce;
    nd_error_clear(&ce);
    if (json_is_string(v)) {
        if (nd_levels_parse(json_string_value(v), out, &ce) != ND_STATUS_OK)
            return core_value_error(&ce, f, e);
        return API_OK;
    }
    struct nd_levels lv = {.kind = ND_LEVELS_LIST};
    size_t n = json_is_array(v) ? json_array_size(v) : 1;
    if (n > ND_MAX_RANK)
        return api_fail(e, API_E_INVALID_VALUE, f, "%s lists more than %d levels", f, ND_MAX_RANK);
    for (size_t i = 0; i < n; i++) {
        int64_t level;
        if (api_as_int(json_is_array(v) ? json_array_get(v, i) : v, f, &level, e) != 0)
            return API_FAIL;
        lv.level[i] = (int32_t)(level > 99 ? 99 : level < -99 ? -99 : level);
    }
    lv.count = (int32_t)n;
    *out = lv;
    return API_OK;
}

static int parse_aggregation(const json_t *v, struct nd_spec *s, const char *f,
                             struct api_error *e) {
    return parse_levels(v, &s->aggregation, f, e);
}

static int parse_scaling_levels(const json_t *v, struct nd_spec *s, const char *f,
                                struct api_error *e) {
    return parse_levels(v, &s->scaling, f, e);
}

// null, an integer (the first aggregation level), or a list of integers.
static int parse_group_number(const json_t *v, struct nd_spec *s, const char *f,
                              struct api_error *e) {
    if (null_hint(v, f, "no groups", e))
        return API_FAIL;
    if (json_is_null(v)) {
        s->ngroup = 0;
        return API_OK;
    }
    size_t n = json_is_array(v) ? json_array_size(v) : 1;
    if (n > ND_MAX_RANK)
        return api_fail(e, API_E_INVALID_VALUE, f, "%s lists more than %d counts", f, ND_MAX_RANK);
    for (size_t i = 0; i < n; i++)
        if (api_as_int(json_is_array(v) ? json_array_get(v, i) : v, f, &s->group_number[i], e))
            return API_FAIL;
    s->ngroup = (int32_t)n;
    return API_OK;
}

// The kind of an initializer or constraint given as "name" or {"type": "name", ...}.
static int kind_text(const json_t *v, const char *f, const char **text, struct api_error *e) {
    *text = NULL;
    if (json_is_string(v))
        *text = json_string_value(v);
    else if (!json_is_object(v))
        return api_fail(e, API_E_INVALID_TYPE, f, "%s must be a name or an object", f);
    else if (api_get_string(v, "type", f, text, e) != 0)
        return API_FAIL;
    if (!*text)
        return api_fail(e, API_E_INVALID_VALUE, f, "%s needs a \"type\"", f);
    return API_OK;
}

// Reads the numbers names[i] of object v into dst[i] (absent ones keep their defaults).
static int read_numbers(const json_t *v, const char *f, const char *const *names, double **dst,
                        int n, struct api_error *e) {
    char field[API_FIELD_MAX];
    for (int i = 0; i < n; i++) {
        snprintf(field, sizeof field, "%s.%s", f, names[i]);
        if (api_get_number(v, names[i], field, dst[i], e) != 0)
            return API_FAIL;
    }
    return API_OK;
}

// "zeros" | "ones" | {"type": ..., parameters} (Keras names and defaults).
static int parse_initializer(const json_t *v, struct nd_initializer *out, const char *f,
                             struct api_error *e) {
    const char *text;
    enum nd_init_kind kind;
    struct nd_error ce;
    nd_error_clear(&ce);
    if (kind_text(v, f, &text, e) != 0)
        return API_FAIL;
    if (nd_init_kind_parse(text, &kind, &ce) != ND_STATUS_OK)
        return core_value_error(&ce, f, e);
    *out = nd_initializer_default(kind);
    if (!json_is_object(v))
        return API_OK;
    static const char *const normal[] = {"type", "mean", "stddev", NULL};
    static const char *const uniform[] = {"type", "minval", "maxval", NULL};
    static const char *const constant[] = {"type", "value", NULL};
    static const char *const bare[] = {"type", NULL};
    const char *const *keys = kind == ND_INIT_RANDOM_UNIFORM  ? uniform
                              : kind == ND_INIT_CONSTANT      ? constant
                              : kind >= ND_INIT_RANDOM_NORMAL ? normal
                                                              : bare;
    double *dst[2] = {&out->a, &out->b};
    int n = 0;
    while (keys[n + 1])
        n++;
    return api_check_keys(v, keys, f, e) != 0 ? API_FAIL : read_numbers(v, f, keys + 1, dst, n, e);
}

static int parse_reg(const json_t *v, struct nd_regularizer *out, const char *f,
                     struct api_error *e) {
    static const char *const keys[] = {"l1", "l2", NULL};
    *out = (struct nd_regularizer){0, 0};
    if (json_is_null(v)) // what GET shows for none
        return API_OK;
    if (!json_is_object(v))
        return api_fail(e, API_E_INVALID_TYPE, f, "%s must be {\"l1\": a, \"l2\": b}", f);
    double *dst[2] = {&out->l1, &out->l2};
    return api_check_keys(v, keys, f, e) != 0 ? API_FAIL : read_numbers(v, f, keys, dst, 2, e);
}

// null | "non_neg" | {"type": ..., parameters} (Keras constraints).
static int parse_constraint(const json_t *v, struct nd_constraint *out, const char *f,
                            struct api_error *e) {
    const char *text;
    enum nd_constraint_kind kind;
    struct nd_error ce;
    nd_error_clear(&ce);
    if (json_is_null(v)) {
        *out = nd_constraint_default(ND_CONSTRAINT_NONE);
        return API_OK;
    }
    if (kind_text(v, f, &text, e) != 0)
        return API_FAIL;
    if (nd_constraint_kind_parse(text, &kind, &ce) != ND_STATUS_OK)
        return core_value_error(&ce, f, e);
    *out = nd_constraint_default(kind);
    if (!json_is_object(v))
        return API_OK;
    static const char *const min_max[] = {"type", "min_value", "max_value", "rate", NULL};
    static const char *const max_only[] = {"type", "max_value", NULL};
    static const char *const bare[] = {"type", NULL};
    bool mm = kind == ND_CONSTRAINT_MIN_MAX_NORM, mx = kind == ND_CONSTRAINT_MAX_NORM;
    double *dst_mm[3] = {&out->min_value, &out->max_value, &out->rate};
    double *dst_mx[1] = {&out->max_value};
    if (api_check_keys(v, mm ? min_max : mx ? max_only : bare, f, e) != 0)
        return API_FAIL;
    return mm   ? read_numbers(v, f, min_max + 1, dst_mm, 3, e)
           : mx ? read_numbers(v, f, max_only + 1, dst_mx, 1, e)
                : API_OK;
}

#define INIT_OPTION(fn, id)                                                                        \
    static int fn(const json_t *v, struct nd_spec *s, const char *f, struct api_error *e) {        \
        s->init_given[id] = true;                                                                  \
        return parse_initializer(v, &s->init[id], f, e);                                           \
    }
INIT_OPTION(parse_scaling_init, ND_ARRAY_SCALING)
INIT_OPTION(parse_biases_init, ND_ARRAY_BIASES)
INIT_OPTION(parse_mean_init, ND_ARRAY_MOVING_MEAN)
INIT_OPTION(parse_var_init, ND_ARRAY_MOVING_VARIANCE)

#define REG_OPTION(fn, id)                                                                         \
    static int fn(const json_t *v, struct nd_spec *s, const char *f, struct api_error *e) {        \
        return parse_reg(v, &s->regularizer[id], f, e);                                            \
    }
REG_OPTION(parse_scaling_reg, ND_ARRAY_SCALING)
REG_OPTION(parse_biases_reg, ND_ARRAY_BIASES)

#define CONSTRAINT_OPTION(fn, id)                                                                  \
    static int fn(const json_t *v, struct nd_spec *s, const char *f, struct api_error *e) {        \
        return parse_constraint(v, &s->constraint[id], f, e);                                      \
    }
CONSTRAINT_OPTION(parse_scaling_con, ND_ARRAY_SCALING)
CONSTRAINT_OPTION(parse_biases_con, ND_ARRAY_BIASES)

// ---- writers ----

static void write_epsilon(struct jw *w, const struct nd_spec *s, const struct nd_layout *l) {
    (void)l;
    jw_double(w, s->epsilon);
}

static void write_momentum(struct jw *w, const struct nd_spec *s, const struct nd_layout *l) {
    (void)l;
    enum nd_momentum_rule rule = nd_spec_momentum_rule(s);
    if (rule == ND_MOMENTUM_CUMULATIVE || rule == ND_MOMENTUM_FACTOR_SCHEDULE)
        jw_null(w);
    else
        jw_double(w, s->momentum);
}

// Batch norm's channels are last when the resolved axes are the last dim alone.
static bool channels_last(const struct nd_spec *s, const struct nd_layout *l) {
    if (l && l->naxes > 0 && l->input.ndim > 1) // rank 1: first and last are one dim
        return l->naxes == 1 && l->axes[0] == l->input.ndim;
    if (s->naxes == 1)
        return s->axes[0] == -1;
    return s->interleaving;
}

static void write_interleaving(struct jw *w, const struct nd_spec *s, const struct nd_layout *l) {
    jw_bool(w, channels_last(s, l));
}

// Resolved axes (batched indexing) when known, else as given or the default.
static void write_axis(struct jw *w, const struct nd_spec *s, const struct nd_layout *l) {
    bool bn = nd_layer_type_is_batch(s->type);
    bool single = s->type == ND_LAYER_TYPE_INSTANCE_NORM || s->type == ND_LAYER_TYPE_GROUP_NORM;
    if (bn && l && l->naxes > 0) {
        if (l->naxes == 1) {
            jw_int(w, l->axes[0]);
            return;
        }
        jw_arr_begin(w);
        for (int32_t i = 0; i < l->naxes; i++)
            jw_int(w, l->axes[i]);
        jw_arr_end(w);
        return;
    }
    if (s->naxes == 0) {
        jw_int(w, s->interleaving ? -1 : 1);
        return;
    }
    if (s->naxes == 1 && (single || bn)) {
        jw_int(w, s->axes[0]);
        return;
    }
    jw_arr_begin(w);
    for (int32_t i = 0; i < s->naxes; i++)
        jw_int(w, s->axes[i]);
    jw_arr_end(w);
}

static void write_center(struct jw *w, const struct nd_spec *s, const struct nd_layout *l) {
    (void)l;
    jw_bool(w, s->enabled[ND_ARRAY_BIASES]);
}

static void write_scale(struct jw *w, const struct nd_spec *s, const struct nd_layout *l) {
    (void)l;
    jw_bool(w, s->enabled[ND_ARRAY_SCALING]);
}

static void write_moving_variance(struct jw *w, const struct nd_spec *s,
                                  const struct nd_layout *l) {
    (void)l;
    jw_string(w, nd_variance_estimator_name(s->moving_variance));
}

static void write_method(struct jw *w, const struct nd_spec *s, const struct nd_layout *l) {
    (void)l;
    jw_string(w, nd_method_name(s->method));
}

static void write_levels(struct jw *w, const struct nd_levels *lv) {
    if (lv->kind != ND_LEVELS_LIST) {
        char buf[48];
        jw_string(w, nd_levels_format(lv, buf, sizeof buf));
        return;
    }
    jw_arr_begin(w);
    for (int32_t i = 0; i < lv->count; i++)
        jw_int(w, lv->level[i]);
    jw_arr_end(w);
}

static void write_aggregation(struct jw *w, const struct nd_spec *s, const struct nd_layout *l) {
    (void)l;
    write_levels(w, &s->aggregation);
}

static void write_scaling_levels(struct jw *w, const struct nd_spec *s, const struct nd_layout *l) {
    (void)l;
    write_levels(w, &s->scaling);
}

static void write_group_number(struct jw *w, const struct nd_spec *s, const struct nd_layout *l) {
    (void)l;
    if (s->ngroup == 0) {
        jw_null(w);
        return;
    }
    jw_arr_begin(w);
    for (int32_t i = 0; i < s->ngroup; i++)
        jw_int(w, s->group_number[i]);
    jw_arr_end(w);
}

static void write_initializer(struct jw *w, const struct nd_initializer *init) {
    jw_obj_begin(w);
    jw_key(w, "type");
    jw_string(w, nd_init_kind_name(init->kind));
    if (init->kind == ND_INIT_CONSTANT) {
        jw_key(w, "value");
        jw_double(w, init->a);
    } else if (init->kind == ND_INIT_RANDOM_UNIFORM) {
        jw_key(w, "minval");
        jw_double(w, init->a);
        jw_key(w, "maxval");
        jw_double(w, init->b);
    } else if (init->kind >= ND_INIT_RANDOM_NORMAL) {
        jw_key(w, "mean");
        jw_double(w, init->a);
        jw_key(w, "stddev");
        jw_double(w, init->b);
    }
    jw_obj_end(w);
}

static void write_reg(struct jw *w, const struct nd_regularizer *r) {
    if (r->l1 == 0.0 && r->l2 == 0.0) {
        jw_null(w);
        return;
    }
    jw_obj_begin(w);
    jw_key(w, "l1");
    jw_double(w, r->l1);
    jw_key(w, "l2");
    jw_double(w, r->l2);
    jw_obj_end(w);
}

static void write_constraint(struct jw *w, const struct nd_constraint *c) {
    if (c->kind == ND_CONSTRAINT_NONE) {
        jw_null(w);
        return;
    }
    jw_obj_begin(w);
    jw_key(w, "type");
    jw_string(w, nd_constraint_kind_name(c->kind));
    if (c->kind == ND_CONSTRAINT_MAX_NORM || c->kind == ND_CONSTRAINT_MIN_MAX_NORM) {
        if (c->kind == ND_CONSTRAINT_MIN_MAX_NORM) {
            jw_key(w, "min_value");
            jw_double(w, c->min_value);
        }
        jw_key(w, "max_value");
        jw_double(w, c->max_value);
    }
    if (c->kind == ND_CONSTRAINT_MIN_MAX_NORM) {
        jw_key(w, "rate");
        jw_double(w, c->rate);
    }
    jw_obj_end(w);
}

#define INIT_WRITER(fn, id)                                                                        \
    static void fn(struct jw *w, const struct nd_spec *s, const struct nd_layout *l) {             \
        (void)l;                                                                                   \
        struct nd_initializer init = nd_spec_initializer(s, id);                                   \
        write_initializer(w, &init);                                                               \
    }
INIT_WRITER(write_scaling_init, ND_ARRAY_SCALING)
INIT_WRITER(write_biases_init, ND_ARRAY_BIASES)
INIT_WRITER(write_mean_init, ND_ARRAY_MOVING_MEAN)
INIT_WRITER(write_var_init, ND_ARRAY_MOVING_VARIANCE)

#define REG_WRITER(fn, id)                                                                         \
    static void fn(struct jw *w, const struct nd_spec *s, const struct nd_layout *l) {             \
        (void)l;                                                                                   \
        write_reg(w, &s->regularizer[id]);                                                         \
    }
REG_WRITER(write_scaling_reg, ND_ARRAY_SCALING)
REG_WRITER(write_biases_reg, ND_ARRAY_BIASES)

#define CONSTRAINT_WRITER(fn, id)                                                                  \
    static void fn(struct jw *w, const struct nd_spec *s, const struct nd_layout *l) {             \
        (void)l;                                                                                   \
        write_constraint(w, &s->constraint[id]);                                                   \
    }
CONSTRAINT_WRITER(write_scaling_con, ND_ARRAY_SCALING)
CONSTRAINT_WRITER(write_biases_con, ND_ARRAY_BIASES)

static void write_track_running_stats(struct jw *w, const struct nd_spec *s,
                                      const struct nd_layout *l) {
    (void)l;
    jw_bool(w, nd_spec_tracks_running_stats(s));
}

// GET lists a batch norm's track_running_stats for PyTorch-named layers and wherever it is off
// (an instance norm's wherever it applies). Layers stored by earlier versions thus answer as
// they did.
static bool shown_track_running_stats(const struct nd_spec *s) {
    return !nd_layer_type_is_batch(s->type) || nd_spec_is_pytorch_named(s) ||
           !nd_spec_tracks_running_stats(s);
}

// A batch norm's momentum always; an instance norm's only while it tracks running statistics,
// so that a canonical definition (a JSON export) keeps both and other layers answer as before.
static bool applies_moving(const struct nd_spec *s) {
    return nd_layer_type_is_batch(s->type) || nd_spec_tracks_running_stats(s);
}

// ---- the plain options (core/spec_fields.def), by kind ----

static int field_parse(const struct nd_spec_field *fd, const json_t *v, struct nd_spec *s,
                       const char *f, struct api_error *e) {
    void *p = nd_spec_field_ptr(s, fd);
    const char *text;
    switch (fd->kind) {
    case ND_FIELD_F64:
        return api_as_number(v, f, p, e);
    case ND_FIELD_BOOL:
        return api_as_bool(v, f, p, e);
    case ND_FIELD_I64:
        return api_as_int(v, f, p, e);
    default:
        if (api_as_string(v, f, &text, e) != 0)
            return API_FAIL;
        if (strlen(text) >= fd->size) // nd_spec_validate's rule; the member could not hold it
            return api_fail(e, API_E_INVALID_VALUE, f, "%s is %zu bytes long; at most %zu", f,
                            strlen(text), fd->size - 1);
        memcpy(p, text, strlen(text) + 1);
        return API_OK;
    }
}

static void field_write(const struct nd_spec_field *fd, struct jw *w, const struct nd_spec *s) {
    const void *p = nd_spec_field_cptr(s, fd);
    switch (fd->kind) {
    case ND_FIELD_F64:
        jw_double(w, *(const double *)p);
        break;
    case ND_FIELD_BOOL:
        jw_bool(w, *(const bool *)p);
        break;
    case ND_FIELD_I64:
        jw_int(w, *(const int64_t *)p);
        break;
    default:
        jw_string(w, p);
    }
}

// ND_SHOW_PUZZLELIB: PuzzleLib's factor schedule and random Scaling act under puzzlelib only.
// ND_SHOW_SET: synchronized given true (with a note), a description given.
static bool field_shown(const struct nd_spec_field *fd, const struct nd_spec *s) {
    if (fd->show == ND_SHOW_PUZZLELIB)
        return s->convention == ND_CONVENTION_PUZZLELIB;
    return fd->show != ND_SHOW_SET || nd_spec_field_is_set(s, fd);
}

// ---- the table ----

#define T_TORCH (T_BN | T_IN | T_LN | T_GN | T_RMS) // normd's extras on PyTorch's classes

// An option placed by its row of core/spec_fields.def.
#define FIELD(member)                                                                              \
    { .field = &nd_spec_fields[ND_SPEC_FIELD_##member] }

// Laid out by hand, as a table (clang-format would give each field its own line):
// clang-format off
static const struct option options[] = {
    {"epsilon", {"Epsilon", "eps"}, T_ALL, parse_epsilon, write_epsilon},
    {"momentum", {"Momentum"}, T_BN | T_IN, parse_momentum, write_momentum,
     .applies = applies_moving},
    {"interleaving", {"Interleaving"}, T_BN, parse_interleaving, write_interleaving},
    {"axis", {NULL}, T_BN | T_PRESETS, parse_axes, write_axis},
    {"aggregation_levels", {"AggregationLevels"}, T_NORM, parse_aggregation, write_aggregation},
    {"scaling_levels", {"ScalingLevels"}, T_NORM, parse_scaling_levels, write_scaling_levels},
    {"group_number", {"GroupNumber"}, T_NORM, parse_group_number, write_group_number},
    FIELD(groups),
    {"method", {"Method"}, T_FAMILY, parse_method, write_method},
    FIELD(unbiased),
    {"center", {NULL}, T_ALL, parse_center, write_center},
    {"scale", {NULL}, T_ALL, parse_scale, write_scale},
    {"affine", {NULL}, T_ALL, parse_affine, NULL},
    {"elementwise_affine", {NULL}, T_ALL, parse_elementwise_affine, NULL},
    {"bias", {NULL}, 0, parse_bias, NULL, .late = true},
    {"track_running_stats", {NULL}, T_BN | T_IN, parse_track_running_stats,
     write_track_running_stats, .shown = shown_track_running_stats, .applies = applies_moving},
    {"num_features", {"num_channels"}, 0, parse_num_features, NULL},
    {"normalized_shape", {NULL}, 0, parse_normalized_shape, NULL},
    {"rms_scaling", {NULL}, T_LN, parse_rms_scaling, NULL, .late = true},
    FIELD(synchronized),
    {"moving_variance", {NULL}, T_BN, parse_moving_variance, write_moving_variance, T_BN},
    FIELD(init_factor),
    FIELD(min_factor),
    FIELD(sscale),
    FIELD(inplace),
    FIELD(trainable),
    {"scaling_initializer", {"gamma_initializer"}, T_ALL, parse_scaling_init, write_scaling_init,
     T_TORCH},
    {"biases_initializer", {"beta_initializer"}, T_ALL, parse_biases_init, write_biases_init,
     T_TORCH},
    {"moving_mean_initializer", {NULL}, T_BN, parse_mean_init, write_mean_init, T_BN},
    {"moving_variance_initializer", {NULL}, T_BN, parse_var_init, write_var_init, T_BN},
    {"scaling_regularizer", {"gamma_regularizer"}, T_ALL, parse_scaling_reg, write_scaling_reg,
     T_TORCH},
    {"biases_regularizer", {"beta_regularizer"}, T_ALL, parse_biases_reg, write_biases_reg,
     T_TORCH},
    {"scaling_constraint", {"gamma_constraint"}, T_ALL, parse_scaling_con, write_scaling_con,
     T_TORCH},
    {"biases_constraint", {"beta_constraint"}, T_ALL, parse_biases_con, write_biases_con,
     T_TORCH},
};
// clang-format on
#undef FIELD
#define NOPTIONS   ((int)(sizeof options / sizeof options[0]))
#define NPOSITIONS (NOPTIONS + ND_SPEC_FIELD_COUNT) // at most: options[], then unplaced rows

// A table row as an option.
static struct option field_option(const struct nd_spec_field *fd) {
    return (struct option){.name = fd->name,
                           .alias = {fd->alias},
                           .types = fd->types,
                           .torch = fd->torch,
                           .field = fd};
}

// True when a FIELD row of options[] places the table's row k.
static bool field_placed(int k) {
    for (int i = 0; i < NOPTIONS; i++)
        if (options[i].field == &nd_spec_fields[k])
            return true;
    return false;
}

// The option at position i of GET's order into *out: options[i] (a FIELD row as its table
// row), then the table's rows options[] does not place, in table order. False past the end.
static bool option_at(int i, struct option *out) {
    if (i >= 0 && i < NOPTIONS) {
        *out = options[i].field ? field_option(options[i].field) : options[i];
        return true;
    }
    for (int k = 0, n = NOPTIONS; i >= NOPTIONS && k < ND_SPEC_FIELD_COUNT; k++) {
        if (field_placed(k))
            continue;
        if (n++ == i) {
            *out = field_option(&nd_spec_fields[k]);
            return true;
        }
    }
    return false;
}

// The position of the option key names (canonical name or alias) into *out, or -1.
static int option_find(const char *key, struct option *out) {
    for (int i = 0; option_at(i, out); i++) {
        if (strcmp(out->name, key) == 0)
            return i;
        for (int k = 0; k < 3 && out->alias[k]; k++)
            if (strcmp(out->alias[k], key) == 0)
                return i;
    }
    return -1;
}

static int option_parse(const struct option *opt, const json_t *v, struct nd_spec *s, const char *f,
                        struct api_error *e) {
    return opt->field ? field_parse(opt->field, v, s, f, e) : opt->parse(v, s, f, e);
}

static bool option_writes(const struct option *opt) {
    return opt->field || opt->write;
}

static void option_write(const struct option *opt, struct jw *w, const struct nd_spec *s,
                         const struct nd_layout *lay) {
    if (opt->field)
        field_write(opt->field, w, s);
    else
        opt->write(w, s, lay);
}

static bool option_shown(const struct option *opt, const struct nd_spec *s) {
    return opt->field ? field_shown(opt->field, s) : !opt->shown || opt->shown(s);
}

// The option key names for spec's layer into *out, or -1: its type's options, or for a
// PyTorch-named layer the class's own arguments and normd's extras.
static int option_for(const struct nd_spec *spec, const char *key, struct option *out) {
    int i = option_find(key, out);
    if (i < 0)
        return -1;
    if (nd_spec_is_pytorch_named(spec))
        return in_list(torch_args[spec->type], key) || (out->torch & T(spec->type)) ? i : -1;
    return out->types & T(spec->type) ? i : -1;
}

static int unknown_option(const struct nd_spec *spec, const char *key, const char *field,
                          struct api_error *err) {
    struct nd_type_name n;
    if (!nd_spec_is_pytorch_named(spec) || !nd_type_name_of(spec->type, spec->type_alias, &n))
        return api_fail(err, API_E_UNKNOWN_FIELD, field, "unknown option %.100s for %s", key,
                        nd_layer_type_name(spec->type));
    char list[128] = "";
    for (int i = 0; torch_args[spec->type][i]; i++)
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "",
                 torch_args[spec->type][i]);
    return api_fail(err, API_E_UNKNOWN_FIELD, field,
                    "unknown option %.60s for %s; PyTorch's arguments are %s", key, n.name, list);
}

// One pass over the options object: the late options or the others.
static int parse_options_pass(const json_t *obj, struct nd_spec *spec, bool late, uint64_t *seen,
                              struct api_error *err) {
    _Static_assert(NPOSITIONS <= 64, "one bit per option");
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)obj, key, value) {
        char field[API_FIELD_MAX];
        snprintf(field, sizeof field, "options.%.100s", key);
        struct option opt;
        int at = option_for(spec, key, &opt);
        if (at < 0)
            return unknown_option(spec, key, field, err);
        if (opt.late != late)
            continue;
        uint64_t bit = 1ull << at;
        if (*seen & bit) // "epsilon" and "Epsilon": one would be ignored
            return api_fail(err, API_E_INVALID_VALUE, field,
                            "option %s is given twice (under two of its names)", opt.name);
        *seen |= bit;
        if (option_parse(&opt, value, spec, field, err) != 0)
            return API_FAIL;
    }
    return API_OK;
}

static int parse_options(const json_t *obj, struct nd_spec *spec, struct api_error *err) {
    if (!json_is_object(obj))
        return api_fail(err, API_E_INVALID_TYPE, "options", "options must be an object");
    uint64_t seen = 0;
    if (parse_options_pass(obj, spec, false, &seen, err) != 0)
        return API_FAIL;
    return parse_options_pass(obj, spec, true, &seen, err);
}

// True when a Keras type's options hold a spelling only Keras uses (API.md 1.1a).
static bool has_keras_only_option(const json_t *opts) {
    const char *key;
    json_t *value;
    if (!json_is_object(opts))
        return false;
    json_object_foreach((json_t *)opts, key, value) {
        if (in_list(keras_only, key))
            return true;
    }
    return false;
}

// GET lists the options that apply: a PyTorch-named layer's under their canonical names (the
// class's arguments, PyTorch's spelling, are under "arguments").
static bool option_listed(const struct option *opt, int at, const struct nd_spec *spec) {
    if (!option_writes(opt) || !option_shown(opt, spec) || (opt->applies && !opt->applies(spec)))
        return false;
    if (!(opt->types & T(spec->type))) // canonical options only: a definition of the canonical
        return false;                  // type with them (an export) means the same layer
    if (!nd_spec_is_pytorch_named(spec))
        return true;
    if ((opt->torch & T(spec->type)) || (strcmp(opt->name, "axis") == 0 && // normalized_shape's
                                         (T(spec->type) & (T_LN | T_RMS))))
        return true;
    struct option arg;
    for (int i = 0; torch_args[spec->type][i]; i++)
        if (option_find(torch_args[spec->type][i], &arg) == at)
            return true;
    return false;
}

void api_write_options(struct jw *w, const struct nd_spec *spec, const struct nd_layout *layout) {
    jw_obj_begin(w);
    struct option opt;
    for (int i = 0; option_at(i, &opt); i++) {
        if (!option_listed(&opt, i, spec))
            continue;
        jw_key(w, opt.name);
        option_write(&opt, w, spec, layout);
    }
    jw_obj_end(w);
}

bool api_write_option_named(struct jw *w, const struct nd_spec *spec,
                            const struct nd_layout *layout, const char *name) {
    struct option opt;
    if (option_find(name, &opt) < 0 || !option_writes(&opt) || !(opt.types & T(spec->type)) ||
        (opt.applies && !opt.applies(spec)))
        return false;
    option_write(&opt, w, spec, layout);
    return true;
}

// ---- shapes, arrays, multipliers ----

// The elements of one example, its unknown dims aside, against the tensor limit: no forward
// could carry such an example, and the layer's arrays (at most one example's size) would be
// allocated from it (a 57-byte definition of input [1000000000] once asked for 16 GB).
static int check_example_size(const struct nd_shape *shape, int64_t max_elements, const char *field,
                              struct api_error *err) {
    int64_t n = 1;
    for (int32_t i = 0; i < shape->ndim; i++)
        if (shape->dim[i] != ND_DIM_AUTO && !nd_count_mul(n, shape->dim[i], &n))
            n = INT64_MAX;
    if (max_elements > 0 && n > max_elements)
        return api_fail(err, API_E_PAYLOAD_TOO_LARGE, field,
                        "%s has %lld elements per example, the limit is %lld", field, (long long)n,
                        (long long)max_elements);
    return API_OK;
}

int api_parse_shape(const json_t *v, const char *field, int64_t max_elements, struct nd_shape *out,
                    struct api_error *err) {
    if (null_hint(v, field, "a shape not known yet", err))
        return API_FAIL;
    if (json_is_null(v)) {
        *out = (struct nd_shape){.ndim = ND_RANK_UNKNOWN};
        return API_OK;
    }
    int64_t d;
    if (!json_is_array(v)) {
        if (api_as_int(v, field, &d, err) != 0)
            return API_FAIL;
        *out = nd_shape_make(1, &d);
        if (d < 0)
            return api_fail(err, API_E_INVALID_VALUE, field, "%s must be a positive size", field);
        return check_example_size(out, max_elements, field, err);
    }
    size_t n = json_array_size(v);
    if (n > ND_MAX_RANK)
        return api_fail(err, API_E_INVALID_VALUE, field,
                        "%s has %zu dimensions; at most %d are supported", field, n, ND_MAX_RANK);
    out->ndim = (int32_t)n;
    for (size_t i = 0; i < n; i++) {
        const json_t *e = json_array_get(v, i);
        if (json_is_null(e)) {
            out->dim[i] = ND_DIM_AUTO;
            continue;
        }
        if (null_hint(e, field, "a dimension of any length", err) ||
            api_as_int(e, field, &d, err) != 0)
            return API_FAIL;
        if (d < 1)
            return api_fail(err, API_E_INVALID_VALUE, field,
                            "%s has a dimension of %lld; sizes are >= 1 (null: any)", field,
                            (long long)d);
        out->dim[i] = d;
    }
    return check_example_size(out, max_elements, field, err);
}

void api_write_shape(struct jw *w, const struct nd_shape *shape) {
    if (shape->ndim < 0) {
        jw_null(w);
        return;
    }
    jw_arr_begin(w);
    for (int32_t i = 0; i < shape->ndim; i++) {
        if (shape->dim[i] == ND_DIM_AUTO)
            jw_null(w);
        else
            jw_int(w, shape->dim[i]);
    }
    jw_arr_end(w);
}

int api_parse_array_name(const char *name, enum nd_layer_type type, const char *field,
                         enum nd_array_id *id, struct api_error *err) {
    struct nd_error ce;
    nd_error_clear(&ce);
    bool ok = nd_array_parse(name, id, &ce) == ND_STATUS_OK;
    if (ok && !nd_layer_type_can_track(type) && *id >= ND_ARRAY_AFFINE_COUNT)
        ok = false;
    if (!ok)
        return api_fail(err, API_E_NOT_FOUND, field, "%s has no array %.100s",
                        nd_layer_type_name(type), name);
    return API_OK;
}

static int parse_multipliers(const json_t *v, struct nd_spec *spec, struct api_error *err) {
    int count = nd_layer_type_can_track(spec->type) ? ND_ARRAY_COUNT : ND_ARRAY_AFFINE_COUNT;
    double m;
    if (!json_is_object(v)) {
        if (api_as_number(v, "learning_rate_multipliers", &m, err) != 0)
            return API_FAIL;
        for (int id = 0; id < count; id++)
            spec->lr_multiplier[id] = m;
        return API_OK;
    }
    const char *key;
    json_t *value;
    unsigned seen = 0;
    json_object_foreach((json_t *)v, key, value) {
        char field[API_FIELD_MAX];
        snprintf(field, sizeof field, "learning_rate_multipliers.%.90s", key);
        enum nd_array_id id;
        if (api_parse_array_name(key, spec->type, field, &id, err) != 0)
            return api_error_recode(err, API_E_UNKNOWN_FIELD);
        if (seen & (1u << id))
            return api_fail(err, API_E_INVALID_VALUE, field,
                            "%s is given twice (under two of its names)", nd_array_name(id));
        seen |= 1u << id;
        if (api_as_number(value, field, &spec->lr_multiplier[id], err) != 0)
            return API_FAIL;
    }
    return API_OK;
}

// One entry of "arrays": a tensor, null (disabled) or {"shared": "NAME"}.
static int parse_array_entry(const char *key, const json_t *v, struct api_definition *d,
                             const struct api_tensor_limits *limits, struct api_fast_tensors *fast,
                             unsigned *seen, struct api_error *err) {
    char field[API_FIELD_MAX];
    snprintf(field, sizeof field, "arrays.%.100s", key);
    enum nd_array_id id;
    if (api_parse_array_name(key, d->def.spec.type, field, &id, err) != 0)
        return api_error_recode(err, API_E_UNKNOWN_FIELD);
    if (*seen & (1u << id)) // "Scaling" and "gamma": one would be ignored
        return api_fail(err, API_E_INVALID_VALUE, field,
                        "%s is given twice (under two of its names)", nd_array_name(id));
    *seen |= 1u << id;
    snprintf(field, sizeof field, "arrays.%s", nd_array_name(id));
    if (null_hint(v, field, "no such array", err))
        return API_FAIL;
    if (id >= ND_ARRAY_AFFINE_COUNT && !json_is_null(v) &&
        !nd_spec_tracks_running_stats(&d->def.spec))
        return api_fail(err, API_E_INVALID_VALUE, field,
                        "%s exists only with track_running_stats true (options)",
                        nd_array_name(id));
    if (json_is_null(v)) {
        if (id >= ND_ARRAY_AFFINE_COUNT)
            return api_fail(err, API_E_INVALID_VALUE, field,
                            "%s cannot be disabled; only Scaling and Biases can",
                            nd_array_name(id));
        d->def.spec.enabled[id] = false;
        return API_OK;
    }
    const json_t *shared = json_is_object(v) ? json_object_get(v, "shared") : NULL;
    if (shared) {
        static const char *const keys[] = {"shared", NULL};
        const char *name;
        char name_field[API_FIELD_MAX + 8];
        snprintf(name_field, sizeof name_field, "%s.shared", field);
        if (api_check_keys(v, keys, field, err) != 0 ||
            api_as_string(shared, name_field, &name, err) != 0)
            return API_FAIL;
        snprintf(d->shared[id], sizeof d->shared[id], "%s", name);
        d->def.source[id] = ND_ARRAY_SOURCE_SHARED;
        d->def.shared[id] = d->shared[id];
        d->def.spec.enabled[id] = true;
        return strlen(name) > ND_NAME_MAX
                   ? api_fail(err, API_E_INVALID_VALUE, field, "shared name too long")
                   : API_OK;
    }
    enum api_tensor_form form;
    nd_tensor_deinit(&d->def.value[id]);
    if (api_tensor_value(fast, v, limits, field, &d->def.value[id], &form, err) != 0)
        return API_FAIL;
    d->def.source[id] = ND_ARRAY_SOURCE_VALUE;
    d->def.spec.enabled[id] = true;
    return API_OK;
}

static int parse_arrays(const json_t *v, struct api_definition *d,
                        const struct api_tensor_limits *limits, struct api_fast_tensors *fast,
                        struct api_error *err) {
    if (!json_is_object(v))
        return api_fail(err, API_E_INVALID_TYPE, "arrays", "arrays must be an object");
    const char *key;
    json_t *value;
    unsigned seen = 0;
    json_object_foreach((json_t *)v, key, value) {
        if (parse_array_entry(key, value, d, limits, fast, &seen, err) != 0)
            return API_FAIL;
    }
    return API_OK;
}

// ---- the definition ----

static int parse_header(const json_t *body, const char *path_name, struct api_definition *d,
                        struct api_error *err) {
    const char *name = NULL, *type_text = NULL, *conv_text = NULL;
    if (api_get_string(body, "name", "name", &name, err) ||
        api_get_string(body, "type", "type", &type_text, err) ||
        api_get_string(body, "convention", "convention", &conv_text, err))
        return API_FAIL;
    if (path_name && name && strcmp(name, path_name) != 0)
        return api_fail(err, API_E_INVALID_VALUE, "name",
                        "the body's name differs from the path's (%.100s)", path_name);
    if (!path_name && !name)
        return api_fail(err, API_E_INVALID_VALUE, "name", "a layer needs a name");
    const char *use = path_name ? path_name : name;
    if (!nd_name_valid(use))
        return api_fail(err, API_E_INVALID_VALUE, "name",
                        "a name must match ^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$");
    snprintf(d->name, sizeof d->name, "%s", use);
    if (!type_text)
        return api_fail(err, API_E_INVALID_VALUE, "type", "a layer needs a type");
    struct nd_type_name type;
    enum nd_convention conv;
    enum nd_convention_from from = ND_CONVENTION_FROM_REQUEST;
    struct nd_error ce;
    nd_error_clear(&ce);
    if (nd_type_name_lookup(type_text, &type, &ce) != ND_STATUS_OK)
        return core_value_error(&ce, "type", err);
    if (!conv_text) // API.md 1.1a: the type's name (and a Keras type's arguments) decide
        conv = nd_type_name_convention(
            &type, has_keras_only_option(json_object_get(body, "options")), &from);
    else if (nd_convention_parse(conv_text, &conv, &ce) != ND_STATUS_OK)
        return core_value_error(&ce, "convention", err);
    struct nd_spec spec;
    nd_spec_defaults_named(&spec, &type, conv, from);
    nd_layer_def_init(&d->def, &spec);
    return API_OK;
}

// A definition's unknown top-level field; an option given there is told where options go.
static int check_definition_keys(const json_t *body, const char *const *keys,
                                 struct api_error *err) {
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)body, key, value) {
        if (in_list(keys, key))
            continue;
        char name[API_FIELD_MAX];
        snprintf(name, sizeof name, "%.100s", key);
        struct option opt;
        if (option_find(key, &opt) >= 0 || in_list(keras_only, key))
            return api_fail(err, API_E_UNKNOWN_FIELD, name,
                            "unknown field %s: options go under \"options\" "
                            "({\"options\": {\"%s\": ...}})",
                            name, name);
        return api_fail(err, API_E_UNKNOWN_FIELD, name, "unknown field %s", name);
    }
    return API_OK;
}

static int parse_seed(const json_t *v, struct nd_spec *spec, struct api_error *err) {
    int64_t seed;
    if (api_as_int(v, "seed", &seed, err) != 0)
        return API_FAIL;
    if (seed < 0)
        return api_fail(err, API_E_INVALID_VALUE, "seed", "seed must be >= 0");
    spec->has_seed = true;
    spec->seed = (uint64_t)seed;
    return API_OK;
}

int api_parse_definition(const json_t *body, const char *path_name,
                         const struct api_tensor_limits *limits, struct api_fast_tensors *fast,
                         struct api_definition *out, struct api_error *err) {
    static const char *const keys[] = {
        "name", "type", "convention", "input", "options", "arrays", "learning_rate_multipliers",
        "seed", NULL};
    memset(out, 0, sizeof *out);
    if (check_definition_keys(body, keys, err) != 0 || parse_header(body, path_name, out, err) != 0)
        return API_FAIL;
    struct nd_spec *spec = &out->def.spec;
    const json_t *v;
    if ((v = json_object_get(body, "input")) &&
        api_parse_shape(v, "input", limits->max_elements, &spec->input, err))
        return API_FAIL;
    if ((v = json_object_get(body, "options")) && parse_options(v, spec, err))
        return API_FAIL;
    if ((v = json_object_get(body, "seed")) && parse_seed(v, spec, err))
        return API_FAIL;
    if ((v = json_object_get(body, "learning_rate_multipliers")) && parse_multipliers(v, spec, err))
        return API_FAIL;
    if ((v = json_object_get(body, "arrays")) && parse_arrays(v, out, limits, fast, err))
        return API_FAIL;
    nd_spec_complete(spec); // PyTorch's sizes give the input when none is given
    return API_OK;
}

void api_definition_release(struct api_definition *d) {
    for (int id = 0; id < ND_ARRAY_COUNT; id++)
        nd_tensor_deinit(&d->def.value[id]);
}

// ---- information ----

static void write_level_mask(struct jw *w, uint32_t mask, int32_t rank) {
    jw_arr_begin(w);
    for (int32_t i = 0; i < rank; i++)
        if (mask & (1u << i))
            jw_int(w, i + 1);
    jw_arr_end(w);
}

// A preset's expansion into Normalization (API.md 1.4: GET shows it), once the rank is known.
static void write_expansion(struct jw *w, const struct nd_layer_info *info) {
    const struct nd_layout *l = &info->layout;
    int32_t r = l->input.ndim;
    jw_obj_begin(w);
    jw_key(w, "type");
    jw_string(w, "Normalization");
    jw_key(w, "aggregation_levels");
    write_level_mask(w, l->reduce_mask, r);
    jw_key(w, "scaling_levels");
    write_level_mask(w, l->param_mask, r);
    jw_key(w, "group_number");
    bool grouped = false;
    for (int32_t i = 0; i < r; i++)
        grouped |= l->groups[i] > 1;
    if (!grouped) {
        jw_null(w);
    } else {
        jw_arr_begin(w);
        for (int32_t i = 0; i < r; i++)
            if (l->reduce_mask & (1u << i))
                jw_int(w, l->groups[i]);
        jw_arr_end(w);
    }
    jw_key(w, "method");
    jw_string(w, nd_method_name(info->spec.method));
    jw_key(w, "unbiased");
    jw_bool(w, info->spec.unbiased);
    jw_obj_end(w);
}

void api_write_array_facts(struct jw *w, const struct nd_layer_info *info, enum nd_array_id id) {
    struct nd_shape unknown = {.ndim = ND_RANK_UNKNOWN};
    jw_key(w, "shape");
    api_write_shape(w, info->array_shape[id].ndim >= 0 ? &info->array_shape[id]
                       : info->layout_known            ? &info->layout.param_shape
                                                       : &unknown);
    jw_key(w, "learning_rate_multiplier");
    jw_double(w, info->spec.lr_multiplier[id]);
    jw_key(w, "shared");
    if (info->shared[id][0])
        jw_string(w, info->shared[id]);
    else
        jw_null(w);
}

static void write_arrays_info(struct jw *w, const struct nd_layer_info *info) {
    int count = nd_spec_array_count(&info->spec);
    jw_obj_begin(w);
    for (int id = 0; id < count; id++) {
        jw_key(w, nd_array_name((enum nd_array_id)id));
        if (!info->enabled[id]) {
            jw_null(w);
            continue;
        }
        jw_obj_begin(w);
        api_write_array_facts(w, info, (enum nd_array_id)id);
        jw_obj_end(w);
    }
    jw_obj_end(w);
}

static void write_counters(struct jw *w, const struct nd_layer_info *info) {
    jw_obj_begin(w);
    jw_key(w, "forwards");
    jw_int(w, info->forwards);
    jw_key(w, "train_steps");
    jw_int(w, info->train_steps);
    jw_key(w, "optimizer_steps");
    jw_int(w, info->optimizer_steps);
    jw_obj_end(w);
}

// The spelling the type was given by, when it is not the canonical name.
static void write_type_given(struct jw *w, const struct nd_spec *spec) {
    struct nd_type_name n;
    if (spec->type_alias == 0 || !nd_type_name_of(spec->type, spec->type_alias, &n))
        return;
    jw_key(w, "type_given");
    jw_string(w, n.name);
}

// The channel count a PyTorch class was built with: the layout's when known.
static void write_channels(struct jw *w, const struct nd_spec *s, const struct nd_layout *l) {
    int64_t c = s->num_features > 0 ? s->num_features : ND_DIM_AUTO;
    if (l && nd_layer_type_is_batch(s->type) && l->param_shape.ndim == 1)
        c = l->param_shape.dim[0];
    else if (l && l->param_mask && !nd_layer_type_is_batch(s->type))
        for (int32_t d = l->input.ndim - 1; d >= 0; d--) // the lowest scaling level
            c = l->param_mask & (1u << d) ? l->input.dim[d] : c;
    if (c == ND_DIM_AUTO)
        jw_null(w);
    else
        jw_int(w, c);
}

// PyTorch's constructor arguments of a PyTorch-named layer, with their effective values.
static void write_torch_arguments(struct jw *w, const struct nd_spec *s,
                                  const struct nd_layout *l) {
    const char *const *args = torch_args[s->type];
    bool affine = s->enabled[ND_ARRAY_SCALING];
    jw_obj_begin(w);
    for (int i = 0; args[i]; i++) {
        const char *a = args[i];
        jw_key(w, a);
        if (strcmp(a, "num_features") == 0 || strcmp(a, "num_channels") == 0)
            write_channels(w, s, l);
        else if (strcmp(a, "eps") == 0)
            jw_double(w, s->epsilon);
        else if (strcmp(a, "momentum") == 0 && nd_layer_type_is_batch(s->type))
            write_momentum(w, s, l);
        else if (strcmp(a, "momentum") == 0 && s->momentum_null)
            jw_null(w);
        else if (strcmp(a, "momentum") == 0)
            jw_double(w, s->momentum);
        else if (strcmp(a, "affine") == 0 || strcmp(a, "elementwise_affine") == 0)
            jw_bool(w, affine);
        else if (strcmp(a, "bias") == 0)
            jw_bool(w, s->enabled[ND_ARRAY_BIASES]);
        else if (strcmp(a, "track_running_stats") == 0)
            jw_bool(w, nd_spec_tracks_running_stats(s));
        else if (strcmp(a, "num_groups") == 0)
            jw_int(w, s->groups);
        else // normalized_shape
            api_write_shape(w, &s->normalized_shape);
    }
    jw_obj_end(w);
}

uint64_t api_write_layer_info(struct jw *w, struct nd_layer *layer) {
    struct nd_layer_info info;
    nd_layer_info(layer, &info);
    const struct nd_layout *lay = info.layout_known ? &info.layout : NULL;
    jw_obj_begin(w);
    jw_key(w, "name");
    jw_string(w, nd_layer_name(layer));
    jw_key(w, "type");
    jw_string(w, nd_layer_type_name(info.spec.type));
    write_type_given(w, &info.spec);
    jw_key(w, "convention");
    jw_string(w, nd_convention_name(info.spec.convention));
    if (info.spec.convention_from != ND_CONVENTION_FROM_UNKNOWN) {
        jw_key(w, "convention_from");
        jw_string(w, nd_convention_from_name(info.spec.convention_from));
    }
    jw_key(w, "input");
    api_write_shape(w, &info.spec.input);
    jw_key(w, "output");
    api_write_shape(w, &info.spec.input);
    jw_key(w, "options");
    api_write_options(w, &info.spec, lay);
    if (nd_spec_is_pytorch_named(&info.spec)) {
        jw_key(w, "arguments");
        write_torch_arguments(w, &info.spec, lay);
    }
    if (info.spec.synchronized) {
        jw_key(w, "notes");
        jw_arr_begin(w);
        jw_string(w, "synchronized: accepted; normd trains in one process, so batch statistics "
                     "are always the whole batch's and it has no effect");
        jw_arr_end(w);
    }
    if (lay && info.spec.type != ND_LAYER_TYPE_BATCH_NORM &&
        info.spec.type != ND_LAYER_TYPE_NORMALIZATION) {
        jw_key(w, "expansion");
        write_expansion(w, &info);
    }
    jw_key(w, "arrays");
    write_arrays_info(w, &info);
    jw_key(w, "parameter_count");
    jw_int(w, info.parameter_count);
    jw_key(w, "initialized");
    jw_bool(w, info.initialized);
    jw_key(w, "version");
    jw_uint(w, info.version);
    jw_key(w, "counters");
    write_counters(w, &info);
    jw_obj_end(w);
    return info.version;
}
