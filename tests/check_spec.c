// check_spec.c - layer definitions: names, defaults, validation, resolution against a shape.
#include "tests/check_suites.h"
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "core/init.h"
#include "core/optim.h"
#include "core/spec.h"

// ---- helpers ----

#define BIT(level) (1u << ((level)-1)) // mask bit of a 1-based per-example level
#define AUTO       ND_DIM_AUTO

static struct nd_spec spec_of(enum nd_layer_type type, enum nd_convention conv) {
    struct nd_spec s;
    nd_spec_defaults(&s, type, 0, conv);
    return s;
}

static struct nd_shape shape_of(int32_t ndim, const int64_t *dims) {
    return nd_shape_make(ndim, dims);
}

// Asserts a failure: status, recorded code, field, and a message that mentions word.
static void check_err(enum nd_status got, const struct nd_error *err, enum nd_status want,
                      const char *field, const char *word, int line) {
    ck_assert_msg(got == want, "line %d: status %s, expected %s (%s)", line, nd_status_name(got),
                  nd_status_name(want), err->msg);
    ck_assert_msg(err->code == want, "line %d: recorded %s", line, nd_status_name(err->code));
    ck_assert_msg(strcmp(err->field, field) == 0, "line %d: field \"%s\", expected \"%s\"", line,
                  err->field, field);
    ck_assert_msg(err->msg[0] != '\0', "line %d: empty message", line);
    ck_assert_msg(strstr(err->msg, word) != NULL, "line %d: message \"%s\" lacks \"%s\"", line,
                  err->msg, word);
}

#define CHECK_ERR(st, err, want, field, word)                                                      \
    check_err((st), &(err), (want), (field), (word), __LINE__)

static enum nd_status validate(const struct nd_spec *s, struct nd_error *err) {
    nd_error_clear(err);
    return nd_spec_validate(s, err);
}

static enum nd_status resolve(const struct nd_spec *s, int32_t ndim, const int64_t *dims,
                              struct nd_layout *out, struct nd_error *err) {
    nd_error_clear(err);
    struct nd_shape in = shape_of(ndim, dims);
    return nd_spec_resolve(s, &in, out, err);
}

// Validation rejects s with INVALID_VALUE naming field, the message mentioning word.
#define REJECT(s, field, word)                                                                     \
    do {                                                                                           \
        struct nd_error e_;                                                                        \
        enum nd_status st_ = validate(&(s), &e_);                                                  \
        check_err(st_, &e_, ND_STATUS_INVALID_VALUE, (field), (word), __LINE__);                   \
    } while (0)

// Resolution of s against dims rejects with want naming field.
#define REJECT_RESOLVE(s, want, field, word, ...)                                                  \
    do {                                                                                           \
        const int64_t d_[] = {__VA_ARGS__};                                                        \
        struct nd_layout l_;                                                                       \
        struct nd_error e_;                                                                        \
        enum nd_status st_ = resolve(&(s), (int32_t)(sizeof d_ / sizeof d_[0]), d_, &l_, &e_);     \
        check_err(st_, &e_, (want), (field), (word), __LINE__);                                    \
    } while (0)

static void expect_valid(const struct nd_spec *s, int line) {
    struct nd_error err;
    enum nd_status st = validate(s, &err);
    ck_assert_msg(st == ND_STATUS_OK, "line %d: validate failed: %s: %s", line, err.field, err.msg);
}
#define EXPECT_VALID(s) expect_valid(&(s), __LINE__)

static struct nd_layout resolve_ok(const struct nd_spec *s, int32_t ndim, const int64_t *dims,
                                   int line) {
    struct nd_layout out;
    struct nd_error err;
    enum nd_status st = resolve(s, ndim, dims, &out, &err);
    ck_assert_msg(st == ND_STATUS_OK, "line %d: resolve failed: %s: %s", line, err.field, err.msg);
    return out;
}
#define RESOLVE_OK(s, ...)                                                                         \
    resolve_ok(&(s), (int32_t)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)),                \
               (int64_t[]){__VA_ARGS__}, __LINE__)

static void check_shape(const struct nd_shape *got, int32_t ndim, const int64_t *dims, int line) {
    ck_assert_msg(got->ndim == ndim, "line %d: rank %d, expected %d", line, (int)got->ndim,
                  (int)ndim);
    for (int32_t i = 0; i < ndim; i++)
        ck_assert_msg(got->dim[i] == dims[i], "line %d: dim %d is %lld, expected %lld", line,
                      (int)i, (long long)got->dim[i], (long long)dims[i]);
}
#define CHECK_PARAM(lay, ...)                                                                      \
    check_shape(&(lay).param_shape, (int32_t)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), \
                (int64_t[]){__VA_ARGS__}, __LINE__)

// Every group count is 1 except groups[dim] = g (dim -1: none).
static void check_groups(const struct nd_layout *lay, int32_t dim, int64_t g, int line) {
    for (int32_t i = 0; i < ND_MAX_RANK; i++)
        ck_assert_msg(lay->groups[i] == (i == dim ? g : 1), "line %d: groups[%d] = %lld", line,
                      (int)i, (long long)lay->groups[i]);
}
#define CHECK_GROUPS(lay, dim, g) check_groups(&(lay), (dim), (g), __LINE__)

static struct nd_levels list_of(int32_t count, const int32_t *levels) {
    struct nd_levels lv = {.kind = ND_LEVELS_LIST, .count = count};
    for (int32_t i = 0; i < count; i++)
        lv.level[i] = levels[i];
    return lv;
}
#define LIST(...)                                                                                  \
    list_of((int32_t)(sizeof((int32_t[]){__VA_ARGS__}) / sizeof(int32_t)), (int32_t[]){__VA_ARGS__})

static struct nd_levels parsed(const char *text) {
    struct nd_levels lv;
    struct nd_error err;
    nd_error_clear(&err);
    ck_assert_msg(nd_levels_parse(text, &lv, &err) == ND_STATUS_OK, "\"%s\": %s", text, err.msg);
    return lv;
}

static void set_axes(struct nd_spec *s, int32_t n, const int32_t *axes) {
    s->naxes = n;
    for (int32_t i = 0; i < n; i++)
        s->axes[i] = axes[i];
}
#define SET_AXES(s, ...)                                                                           \
    set_axes(&(s), (int32_t)(sizeof((int32_t[]){__VA_ARGS__}) / sizeof(int32_t)),                  \
             (int32_t[]){__VA_ARGS__})

// ---- names ----

START_TEST(test_type_names_round_trip) {
    for (int t = 0; t < ND_LAYER_TYPE_COUNT; t++) {
        enum nd_layer_type got;
        int32_t nd = -1;
        ck_assert_int_eq(nd_layer_type_parse(nd_layer_type_name(t), &got, &nd, NULL), ND_STATUS_OK);
        ck_assert_int_eq(got, t);
        ck_assert_int_eq(nd, 0);
        ck_assert(nd_layer_type_is_batch(got) == (t == ND_LAYER_TYPE_BATCH_NORM));
    }
    ck_assert_str_eq(nd_layer_type_name(ND_LAYER_TYPE_BATCH_NORM), "BatchNormalization");
    ck_assert_str_eq(nd_layer_type_name(ND_LAYER_TYPE_NORMALIZATION), "Normalization");
    ck_assert_str_eq(nd_layer_type_name(ND_LAYER_TYPE_LAYER_NORM), "LayerNormalization");
    ck_assert_str_eq(nd_layer_type_name(ND_LAYER_TYPE_INSTANCE_NORM), "InstanceNormalization");
    ck_assert_str_eq(nd_layer_type_name(ND_LAYER_TYPE_GROUP_NORM), "GroupNormalization");
    ck_assert_str_eq(nd_layer_type_name(ND_LAYER_TYPE_RMS_NORM), "RMSNormalization");
    ck_assert_str_eq(nd_layer_type_name(ND_LAYER_TYPE_COUNT), "unknown");
    ck_assert_str_eq(nd_layer_type_name((enum nd_layer_type) - 1), "unknown");
}
END_TEST

START_TEST(test_type_aliases) {
    static const struct {
        const char *name;
        enum nd_layer_type type;
        int32_t nd;
    } cases[] = {
        {"BatchNormalizationLayer", ND_LAYER_TYPE_BATCH_NORM, 0},
        {"BatchNorm", ND_LAYER_TYPE_BATCH_NORM, 0},
        {"BatchNorm1D", ND_LAYER_TYPE_BATCH_NORM, 1},
        {"BatchNorm2D", ND_LAYER_TYPE_BATCH_NORM, 2},
        {"BatchNorm3D", ND_LAYER_TYPE_BATCH_NORM, 3},
        {"BatchNorm4D", ND_LAYER_TYPE_BATCH_NORM, 4},
        {"BatchNorm5D", ND_LAYER_TYPE_BATCH_NORM, 5},
        {"BatchNorm6D", ND_LAYER_TYPE_BATCH_NORM, 6},
        {"BatchNorm7D", ND_LAYER_TYPE_BATCH_NORM, 7},
        {"NormalizationLayer", ND_LAYER_TYPE_NORMALIZATION, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        enum nd_layer_type got = ND_LAYER_TYPE_COUNT;
        int32_t nd = -1;
        ck_assert_int_eq(nd_layer_type_parse(cases[i].name, &got, &nd, NULL), ND_STATUS_OK);
        ck_assert_int_eq(got, cases[i].type);
        ck_assert_int_eq(nd, cases[i].nd);
        // The canonical name is what GET shows, whatever alias created the layer.
        ck_assert_str_eq(nd_layer_type_name(got), i < 9 ? "BatchNormalization" : "Normalization");
    }
    enum nd_layer_type got;
    ck_assert_int_eq(nd_layer_type_parse("BatchNorm2D", &got, NULL, NULL), ND_STATUS_OK);
    ck_assert_int_eq(got, ND_LAYER_TYPE_BATCH_NORM);
}
END_TEST

START_TEST(test_convention_names) {
    static const char *const names[] = {"wolfram", "keras", "onnx", "pytorch", "puzzlelib"};
    for (int c = 0; c < ND_CONVENTION_COUNT; c++) {
        ck_assert_str_eq(nd_convention_name(c), names[c]);
        enum nd_convention got;
        ck_assert_int_eq(nd_convention_parse(names[c], &got, NULL), ND_STATUS_OK);
        ck_assert_int_eq(got, c);
    }
    ck_assert_str_eq(nd_convention_name(ND_CONVENTION_COUNT), "unknown");
}
END_TEST

START_TEST(test_array_names_and_aliases) {
    static const struct {
        const char *name;
        enum nd_array_id id;
    } cases[] = {
        {"Scaling", ND_ARRAY_SCALING},
        {"Biases", ND_ARRAY_BIASES},
        {"MovingMean", ND_ARRAY_MOVING_MEAN},
        {"MovingVariance", ND_ARRAY_MOVING_VARIANCE},
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
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        enum nd_array_id got = ND_ARRAY_COUNT;
        ck_assert_int_eq(nd_array_parse(cases[i].name, &got, NULL), ND_STATUS_OK);
        ck_assert_int_eq(got, cases[i].id);
    }
    for (int a = 0; a < ND_ARRAY_COUNT; a++) {
        enum nd_array_id got;
        ck_assert_int_eq(nd_array_parse(nd_array_name(a), &got, NULL), ND_STATUS_OK);
        ck_assert_int_eq(got, a);
    }
    ck_assert_str_eq(nd_array_name(ND_ARRAY_MOVING_VARIANCE), "MovingVariance");
    ck_assert_str_eq(nd_array_name(ND_ARRAY_COUNT), "unknown");
}
END_TEST

START_TEST(test_estimator_and_method_names) {
    enum nd_variance_estimator v;
    ck_assert_int_eq(nd_variance_estimator_parse("biased", &v, NULL), ND_STATUS_OK);
    ck_assert_int_eq(v, ND_VARIANCE_BIASED);
    ck_assert_int_eq(nd_variance_estimator_parse("unbiased", &v, NULL), ND_STATUS_OK);
    ck_assert_int_eq(v, ND_VARIANCE_UNBIASED);
    ck_assert_str_eq(nd_variance_estimator_name(ND_VARIANCE_BIASED), "biased");
    ck_assert_str_eq(nd_variance_estimator_name(ND_VARIANCE_UNBIASED), "unbiased");
    ck_assert_str_eq(nd_variance_estimator_name((enum nd_variance_estimator)7), "unknown");
    enum nd_method m;
    ck_assert_int_eq(nd_method_parse("Standardize", &m, NULL), ND_STATUS_OK);
    ck_assert_int_eq(m, ND_METHOD_STANDARDIZE);
    ck_assert_int_eq(nd_method_parse("RMS", &m, NULL), ND_STATUS_OK);
    ck_assert_int_eq(m, ND_METHOD_RMS);
    ck_assert_str_eq(nd_method_name(ND_METHOD_STANDARDIZE), "Standardize");
    ck_assert_str_eq(nd_method_name(ND_METHOD_RMS), "RMS");
    ck_assert_str_eq(nd_method_name((enum nd_method)5), "unknown");
}
END_TEST

// ---- level specifications ----

START_TEST(test_levels_parse_accepted) {
    static const struct {
        const char *text;
        enum nd_levels_kind kind;
        int32_t from, to;
        bool to_all;
        const char *formatted;
    } cases[] = {
        {"All", ND_LEVELS_ALL, 0, 0, false, "All"},
        {"Same", ND_LEVELS_SAME, 0, 0, false, "Same"},
        {"Complement", ND_LEVELS_COMPLEMENT, 0, 0, false, "Complement"},
        {" All\t", ND_LEVELS_ALL, 0, 0, false, "All"},
        {"2;;All", ND_LEVELS_SPAN, 2, 0, true, "2;;All"},
        {"-2;;-1", ND_LEVELS_SPAN, -2, -1, false, "-2;;-1"},
        {" 1 ;; 3 ", ND_LEVELS_SPAN, 1, 3, false, "1;;3"},
        {"1;; All", ND_LEVELS_SPAN, 1, 0, true, "1;;All"},
        {"+1;;-2", ND_LEVELS_SPAN, 1, -2, false, "1;;-2"},
        {"-3;;All", ND_LEVELS_SPAN, -3, 0, true, "-3;;All"},
        {"3;;2", ND_LEVELS_SPAN, 3, 2, false, "3;;2"}, // parses; validate rejects it as empty
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct nd_levels lv = parsed(cases[i].text);
        ck_assert_int_eq(lv.kind, cases[i].kind);
        if (lv.kind == ND_LEVELS_SPAN) {
            ck_assert_int_eq(lv.from, cases[i].from);
            ck_assert(lv.to_all == cases[i].to_all);
            if (!lv.to_all)
                ck_assert_int_eq(lv.to, cases[i].to);
        }
        char buf[32];
        ck_assert_str_eq(nd_levels_format(&lv, buf, sizeof buf), cases[i].formatted);
        struct nd_levels again = parsed(buf); // format -> parse round trip
        ck_assert_int_eq(again.kind, lv.kind);
        ck_assert_int_eq(again.from, lv.from);
        ck_assert_int_eq(again.to, lv.to);
    }
}
END_TEST

START_TEST(test_levels_format_lists) {
    char buf[32];
    struct nd_levels lv = LIST(1, 2);
    ck_assert_str_eq(nd_levels_format(&lv, buf, sizeof buf), "[1, 2]");
    lv = LIST(-1);
    ck_assert_str_eq(nd_levels_format(&lv, buf, sizeof buf), "[-1]");
    lv = (struct nd_levels){.kind = ND_LEVELS_LIST, .count = 0};
    ck_assert_str_eq(nd_levels_format(&lv, buf, sizeof buf), "[]");
    struct nd_spec s = spec_of(ND_LAYER_TYPE_NORMALIZATION, ND_CONVENTION_WOLFRAM);
    ck_assert_str_eq(nd_levels_format(&s.aggregation, buf, sizeof buf), "2;;All");
    ck_assert_str_eq(nd_levels_format(&s.scaling, buf, sizeof buf), "Complement");
}
END_TEST

START_TEST(test_levels_parse_rejected) {
    static const char *const bad[] = {
        "2;;x",    "",     "   ",     "0;;2", "1;2",        "all",           "ALL",    "2;;0",
        "2;;",     ";;2",  "1;;2;;3", "x",    "1 ;; All x", "1234567890;;2", "- 1;;2", "All;;2",
        "Same;;1", "1;;-", "3",       "-1",   "1;;2.5",     "Complement x",  "1;;;2",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct nd_levels lv = {.kind = ND_LEVELS_ALL};
        struct nd_error err;
        nd_error_clear(&err);
        enum nd_status st = nd_levels_parse(bad[i], &lv, &err);
        ck_assert_msg(st == ND_STATUS_INVALID_VALUE, "\"%s\" was accepted", bad[i]);
        ck_assert_str_eq(err.field, ""); // the caller names it (aggregation or scaling)
        ck_assert_ptr_nonnull(strstr(err.msg, "a;;b"));
        ck_assert_ptr_nonnull(strstr(err.msg, "Complement"));
        ck_assert_int_eq(lv.kind, ND_LEVELS_ALL); // *out untouched on failure
    }
}
END_TEST

// ---- defaults ----

START_TEST(test_batch_defaults_per_convention) {
    static const struct {
        enum nd_convention conv;
        double epsilon, momentum;
        bool momentum_null;
        enum nd_momentum_rule rule;
        enum nd_variance_estimator mv;
        bool interleaving;
        enum nd_init_kind scaling_init;
    } rows[] = {
        {ND_CONVENTION_WOLFRAM, 1e-3, 0.9, false, ND_MOMENTUM_DECAY, ND_VARIANCE_BIASED, false,
         ND_INIT_ONES},
        {ND_CONVENTION_KERAS, 1e-3, 0.99, false, ND_MOMENTUM_DECAY, ND_VARIANCE_BIASED, true,
         ND_INIT_ONES},
        {ND_CONVENTION_ONNX, 1e-5, 0.9, false, ND_MOMENTUM_DECAY, ND_VARIANCE_BIASED, false,
         ND_INIT_ONES},
        {ND_CONVENTION_PYTORCH, 1e-5, 0.1, false, ND_MOMENTUM_BATCH_WEIGHT, ND_VARIANCE_UNBIASED,
         false, ND_INIT_ONES},
        {ND_CONVENTION_PUZZLELIB, 1e-5, -1, true, ND_MOMENTUM_FACTOR_SCHEDULE, ND_VARIANCE_UNBIASED,
         false, ND_INIT_RANDOM_NORMAL},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        struct nd_spec s = spec_of(ND_LAYER_TYPE_BATCH_NORM, rows[i].conv);
        ck_assert_int_eq(s.type, ND_LAYER_TYPE_BATCH_NORM);
        ck_assert_int_eq(s.convention, rows[i].conv);
        ck_assert_int_eq(s.batchnorm_nd, 0);
        ck_assert_double_eq(s.epsilon, rows[i].epsilon);
        ck_assert(s.momentum_null == rows[i].momentum_null);
        if (!rows[i].momentum_null)
            ck_assert_double_eq(s.momentum, rows[i].momentum);
        ck_assert_int_eq(nd_spec_momentum_rule(&s), rows[i].rule);
        ck_assert_int_eq(s.moving_variance, rows[i].mv);
        ck_assert(s.interleaving == rows[i].interleaving);
        ck_assert(!s.interleaving_given);
        ck_assert_int_eq(s.naxes, 0);
        ck_assert_double_eq(s.init_factor, 1.0);
        ck_assert_double_eq(s.min_factor, 0.1);
        ck_assert_double_eq(s.sscale, 0.01);
        ck_assert(s.trainable);
        ck_assert(!s.inplace);
        ck_assert(!s.has_seed);
        ck_assert_int_eq(s.input.ndim, ND_RANK_UNKNOWN);
        struct nd_initializer sc = nd_spec_initializer(&s, ND_ARRAY_SCALING);
        ck_assert_int_eq(sc.kind, rows[i].scaling_init);
        ck_assert_int_eq(nd_spec_initializer(&s, ND_ARRAY_BIASES).kind, ND_INIT_ZEROS);
        ck_assert_int_eq(nd_spec_initializer(&s, ND_ARRAY_MOVING_MEAN).kind, ND_INIT_ZEROS);
        ck_assert_int_eq(nd_spec_initializer(&s, ND_ARRAY_MOVING_VARIANCE).kind, ND_INIT_ONES);
        for (int a = 0; a < ND_ARRAY_COUNT; a++) {
            ck_assert(s.enabled[a]);
            ck_assert(!s.init_given[a]);
            ck_assert_double_eq(s.lr_multiplier[a], 1.0);
        }
        for (int a = 0; a < ND_ARRAY_AFFINE_COUNT; a++) {
            ck_assert_double_eq(s.regularizer[a].l1, 0.0);
            ck_assert_double_eq(s.regularizer[a].l2, 0.0);
            ck_assert_int_eq(s.constraint[a].kind, ND_CONSTRAINT_NONE);
        }
        EXPECT_VALID(s);
    }
}
END_TEST

START_TEST(test_batch_defaults_batchnorm_nd) {
    struct nd_spec s;
    nd_spec_defaults(&s, ND_LAYER_TYPE_BATCH_NORM, 2, ND_CONVENTION_PYTORCH);
    ck_assert_int_eq(s.batchnorm_nd, 2);
    EXPECT_VALID(s);
    // Only BatchNormalization keeps N.
    nd_spec_defaults(&s, ND_LAYER_TYPE_NORMALIZATION, 2, ND_CONVENTION_PYTORCH);
    ck_assert_int_eq(s.batchnorm_nd, 0);
}
END_TEST

START_TEST(test_momentum_rules) {
    struct nd_spec s = spec_of(ND_LAYER_TYPE_BATCH_NORM, ND_CONVENTION_PYTORCH);
    ck_assert_int_eq(nd_spec_momentum_rule(&s), ND_MOMENTUM_BATCH_WEIGHT);
    s.momentum_null = true;
    ck_assert_int_eq(nd_spec_momentum_rule(&s), ND_MOMENTUM_CUMULATIVE);
    EXPECT_VALID(s);
    s = spec_of(ND_LAYER_TYPE_BATCH_NORM, ND_CONVENTION_PUZZLELIB);
    s.momentum_null = false; // puzzlelib ignores a given momentum
    s.momentum = 0.5;
    ck_assert_int_eq(nd_spec_momentum_rule(&s), ND_MOMENTUM_FACTOR_SCHEDULE);
    EXPECT_VALID(s);
    s = spec_of(ND_LAYER_TYPE_BATCH_NORM, ND_CONVENTION_KERAS);
    s.momentum = 1.0; // frozen moving statistics are allowed
    ck_assert_int_eq(nd_spec_momentum_rule(&s), ND_MOMENTUM_DECAY);
    EXPECT_VALID(s);
    s.momentum = 0.0;
    EXPECT_VALID(s);
    ck_assert_int_eq(nd_spec_momentum_rule(NULL), ND_MOMENTUM_DECAY);
}
END_TEST

START_TEST(test_puzzlelib_scaling_initializer) {
    struct nd_spec s = spec_of(ND_LAYER_TYPE_BATCH_NORM, ND_CONVENTION_PUZZLELIB);
    struct nd_initializer init = nd_spec_initializer(&s, ND_ARRAY_SCALING);
    ck_assert_int_eq(init.kind, ND_INIT_RANDOM_NORMAL);
    ck_assert_double_eq(init.a, 1.0);
    ck_assert_double_eq(init.b, 0.01);
    s.sscale = 0.25; // the default follows sscale
    init = nd_spec_initializer(&s, ND_ARRAY_SCALING);
    ck_assert_int_eq(init.kind, ND_INIT_RANDOM_NORMAL);
    ck_assert_double_eq(init.a, 1.0);
    ck_assert_double_eq(init.b, 0.25);
    s.init[ND_ARRAY_SCALING] = (struct nd_initializer){.kind = ND_INIT_CONSTANT, .a = 2.0};
    s.init_given[ND_ARRAY_SCALING] = true; // a given initializer wins
    init = nd_spec_initializer(&s, ND_ARRAY_SCALING);
    ck_assert_int_eq(init.kind, ND_INIT_CONSTANT);
    ck_assert_double_eq(init.a, 2.0);
    // Only BatchNormalization's Scaling is random under puzzlelib.
    s = spec_of(ND_LAYER_TYPE_NORMALIZATION, ND_CONVENTION_PUZZLELIB);
    ck_assert_int_eq(nd_spec_initializer(&s, ND_ARRAY_SCALING).kind, ND_INIT_ONES);
    s = spec_of(ND_LAYER_TYPE_BATCH_NORM, ND_CONVENTION_PYTORCH);
    s.sscale = 0.5;
    ck_assert_int_eq(nd_spec_initializer(&s, ND_ARRAY_SCALING).kind, ND_INIT_ONES);
    // Out of range and NULL give zeros rather than reading out of bounds.
    ck_assert_int_eq(nd_spec_initializer(&s, ND_ARRAY_COUNT).kind, ND_INIT_ZEROS);
    ck_assert_int_eq(nd_spec_initializer(NULL, ND_ARRAY_SCALING).kind, ND_INIT_ZEROS);
}
END_TEST

START_TEST(test_normalization_defaults_per_convention) {
    static const struct {
        enum nd_convention conv;
        double epsilon;
        const char *aggregation;
    } rows[] = {
        {ND_CONVENTION_WOLFRAM, 1e-3, "2;;All"},   {ND_CONVENTION_KERAS, 1e-3, "1;;-2"},
        {ND_CONVENTION_ONNX, 1e-5, "2;;All"},      {ND_CONVENTION_PYTORCH, 1e-5, "2;;All"},
        {ND_CONVENTION_PUZZLELIB, 1e-5, "2;;All"},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        struct nd_spec s = spec_of(ND_LAYER_TYPE_NORMALIZATION, rows[i].conv);
        char buf[32];
        ck_assert_double_eq(s.epsilon, rows[i].epsilon);
        ck_assert_str_eq(nd_levels_format(&s.aggregation, buf, sizeof buf), rows[i].aggregation);
        ck_assert_int_eq(s.scaling.kind, ND_LEVELS_COMPLEMENT);
        ck_assert_int_eq(s.ngroup, 0);
        ck_assert_int_eq(s.method, ND_METHOD_STANDARDIZE);
        ck_assert(!s.unbiased);
        ck_assert_int_eq(s.naxes, 0);
        ck_assert(s.enabled[ND_ARRAY_SCALING] && s.enabled[ND_ARRAY_BIASES]);
        ck_assert(!s.enabled[ND_ARRAY_MOVING_MEAN] && !s.enabled[ND_ARRAY_MOVING_VARIANCE]);
        ck_assert_int_eq(nd_spec_initializer(&s, ND_ARRAY_SCALING).kind, ND_INIT_ONES);
        ck_assert_int_eq(nd_spec_initializer(&s, ND_ARRAY_BIASES).kind, ND_INIT_ZEROS);
        ck_assert_int_eq(s.input.ndim, ND_RANK_UNKNOWN);
        EXPECT_VALID(s);
    }
}
END_TEST

START_TEST(test_preset_defaults) {
    for (int c = 0; c < ND_CONVENTION_COUNT; c++) {
        bool keras = c == ND_CONVENTION_KERAS;
        double eps = c <= ND_CONVENTION_KERAS ? 1e-3 : 1e-5;
        struct nd_spec s = spec_of(ND_LAYER_TYPE_LAYER_NORM, c);
        ck_assert_int_eq(s.naxes, 1);
        ck_assert_int_eq(s.axes[0], -1);
        ck_assert_int_eq(s.method, ND_METHOD_STANDARDIZE);
        ck_assert(s.enabled[ND_ARRAY_BIASES]);
        ck_assert_double_eq(s.epsilon, eps);
        EXPECT_VALID(s);

        s = spec_of(ND_LAYER_TYPE_RMS_NORM, c);
        ck_assert_int_eq(s.naxes, 1);
        ck_assert_int_eq(s.axes[0], -1);
        ck_assert_int_eq(s.method, ND_METHOD_RMS);
        ck_assert(s.enabled[ND_ARRAY_SCALING]);
        ck_assert(!s.enabled[ND_ARRAY_BIASES]);
        double rms_eps = keras ? 1e-6 : c == ND_CONVENTION_PYTORCH ? (double)FLT_EPSILON : eps;
        ck_assert_double_eq(s.epsilon, rms_eps);
        EXPECT_VALID(s);

        s = spec_of(ND_LAYER_TYPE_INSTANCE_NORM, c);
        ck_assert_int_eq(s.naxes, 1);
        ck_assert_int_eq(s.axes[0], keras ? -1 : 1);
        ck_assert_double_eq(s.epsilon, eps);
        EXPECT_VALID(s);

        s = spec_of(ND_LAYER_TYPE_GROUP_NORM, c);
        ck_assert_int_eq(s.naxes, 1);
        ck_assert_int_eq(s.axes[0], keras ? -1 : 1);
        ck_assert_int_eq(s.groups, 32);
        ck_assert(s.enabled[ND_ARRAY_BIASES]);
        EXPECT_VALID(s);
    }
    struct nd_spec s = spec_of(ND_LAYER_TYPE_RMS_NORM, ND_CONVENTION_PYTORCH);
    ck_assert_double_eq_tol(s.epsilon, 1.1920929e-07, 1e-14);
}
END_TEST

START_TEST(test_defaults_null_and_out_of_range) {
    nd_spec_defaults(NULL, ND_LAYER_TYPE_BATCH_NORM, 0, ND_CONVENTION_WOLFRAM); // no crash
    struct nd_spec s;
    nd_spec_defaults(&s, ND_LAYER_TYPE_COUNT, 0, ND_CONVENTION_COUNT); // table lookups clamp
    struct nd_error err;
    CHECK_ERR(validate(&s, &err), err, ND_STATUS_INVALID_ARGUMENT, "type", "out of range");
}
END_TEST

// ---- validation: accepted ----

START_TEST(test_validate_accepts_edges) {
    struct nd_spec s = spec_of(ND_LAYER_TYPE_BATCH_NORM, ND_CONVENTION_WOLFRAM);
    s.input = shape_of(3, (int64_t[]){3, AUTO, 1});
    SET_AXES(s, 1, -1);
    s.init_factor = 0.0;
    s.min_factor = 1.0;
    s.sscale = 0.0;
    s.lr_multiplier[ND_ARRAY_MOVING_MEAN] = 0.0;
    s.init[ND_ARRAY_BIASES] = (struct nd_initializer){.kind = ND_INIT_RANDOM_NORMAL, .b = 0.05};
    s.constraint[ND_ARRAY_SCALING] = (struct nd_constraint){.kind = ND_CONSTRAINT_NON_NEG};
    s.regularizer[ND_ARRAY_BIASES] = (struct nd_regularizer){.l1 = 0.1, .l2 = 0.2};
    EXPECT_VALID(s);
    // Normalization options are not BatchNormalization's concern (api/ rejects them by name).
    s.aggregation.kind = ND_LEVELS_SAME;
    s.ngroup = -3;
    s.groups = 0;
    EXPECT_VALID(s);

    s = spec_of(ND_LAYER_TYPE_NORMALIZATION, ND_CONVENTION_WOLFRAM);
    s.scaling = (struct nd_levels){.kind = ND_LEVELS_LIST, .count = 0}; // scalar arrays
    s.aggregation = LIST(1, -1);
    s.ngroup = 2;
    s.group_number[0] = 1;
    s.group_number[1] = 4;
    // BatchNormalization options are ignored for the Normalization family.
    s.momentum = 7.0;
    s.momentum_null = true;
    s.naxes = 0;
    s.axes[0] = 0;
    s.sscale = -1.0;
    s.lr_multiplier[ND_ARRAY_MOVING_VARIANCE] = NAN;
    EXPECT_VALID(s);
    s.scaling = parsed("Same");
    EXPECT_VALID(s);
    s.aggregation = parsed("All");
    s.scaling = parsed("-1;;All");
    EXPECT_VALID(s);
    s.aggregation = parsed("2;;-1"); // mixed signs: only a shape can tell if it is empty
    EXPECT_VALID(s);
}
END_TEST

// ---- resolution: BatchNormalization ----

START_TEST(test_resolve_batch_channels_first) {
    struct nd_spec s = spec_of(ND_LAYER_TYPE_BATCH_NORM, ND_CONVENTION_WOLFRAM);
    struct nd_layout lay = RESOLVE_OK(s, 3, 28, 28);
    ck_assert_uint_eq(lay.param_mask, BIT(1));
    ck_assert_uint_eq(lay.reduce_mask, BIT(2) | BIT(3));
    CHECK_PARAM(lay, 3);
    CHECK_GROUPS(lay, -1, 1);
    ck_assert_int_eq(lay.naxes, 1);
    ck_assert_int_eq(lay.axes[0], 1);
    check_shape(&lay.input, 3, (int64_t[]){3, 28, 28}, __LINE__);
    // A vector: one channel per element, nothing reduced but the batch.
    lay = RESOLVE_OK(s, 3);
    ck_assert_uint_eq(lay.param_mask, BIT(1));
    ck_assert_uint_eq(lay.reduce_mask, 0);
    CHECK_PARAM(lay, 3);
}
END_TEST

START_TEST(test_resolve_batch_channels_last) {
    struct nd_spec s = spec_of(ND_LAYER_TYPE_BATCH_NORM, ND_CONVENTION_KERAS);
    struct nd_layout lay = RESOLVE_OK(s, 3, 4, 2);
    ck_assert_uint_eq(lay.param_mask, BIT(3));
    ck_assert_uint_eq(lay.reduce_mask, BIT(1) | BIT(2));
    CHECK_PARAM(lay, 2);
    ck_assert_int_eq(lay.naxes, 1);
    ck_assert_int_eq(lay.axes[0], 3);
    // interleaving true under wolfram is the same layout.
    s = spec_of(ND_LAYER_TYPE_BATCH_NORM, ND_CONVENTION_WOLFRAM);
    s.interleaving = true;
    s.interleaving_given = true;
    lay = RESOLVE_OK(s, 3, 4, 2);
    ck_assert_uint_eq(lay.param_mask, BIT(3));
    CHECK_PARAM(lay, 2);
    // ... and agrees with axis -1 or axis r given with it.
    SET_AXES(s, -1);
    lay = RESOLVE_OK(s, 3, 4, 2);
    ck_assert_uint_eq(lay.param_mask, BIT(3));
    SET_AXES(s, 3);
    lay = RESOLVE_OK(s, 3, 4, 2);
    ck_assert_uint_eq(lay.param_mask, BIT(3));
    // interleaving false agrees with axis 1.
    s.interleaving = false;
    SET_AXES(s, 1);
    lay = RESOLVE_OK(s, 3, 4, 2);
    ck_assert_uint_eq(lay.param_mask, BIT(1));
    // On rank 1 the first and last dims are one: both settings agree with axis 1.
    s.interleaving = true;
    lay = RESOLVE_OK(s, 5);
    ck_assert_uint_eq(lay.param_mask, BIT(1));
}
END_TEST

START_TEST(test_resolve_batch_axes) {
    struct nd_spec s = spec_of(ND_LAYER_TYPE_BATCH_NORM, ND_CONVENTION_KERAS);
    SET_AXES(s, 1, 2);
    struct nd_layout lay = RESOLVE_OK(s, 2, 3, 4);
    ck_assert_uint_eq(lay.param_mask, BIT(1) | BIT(2));
    ck_assert_uint_eq(lay.reduce_mask, BIT(3));
    CHECK_PARAM(lay, 6);
    ck_assert_int_eq(lay.naxes, 2);
    ck_assert_int_eq(lay.axes[0], 1);
    ck_assert_int_eq(lay.axes[1], 2);
    SET_AXES(s, -1, 1); // negative, unsorted: resolved and sorted ascending
    lay = RESOLVE_OK(s, 2, 3, 4);
    ck_assert_uint_eq(lay.param_mask, BIT(1) | BIT(3));
    ck_assert_uint_eq(lay.reduce_mask, BIT(2));
    CHECK_PARAM(lay, 8);
    ck_assert_int_eq(lay.naxes, 2);
    ck_assert_int_eq(lay.axes[0], 1);
    ck_assert_int_eq(lay.axes[1], 3);
    SET_AXES(s, -2);
    lay = RESOLVE_OK(s, 3, 4);
    ck_assert_uint_eq(lay.param_mask, BIT(1));
    CHECK_PARAM(lay, 3);
    // Unknown channel dims make an unknown C; unknown reduced dims do not matter.
    SET_AXES(s, 1, 2);
    lay = RESOLVE_OK(s, 2, AUTO, 4);
    CHECK_PARAM(lay, AUTO);
    SET_AXES(s, 1);
    lay = RESOLVE_OK(s, 2, AUTO, 4);
    CHECK_PARAM(lay, 2);
}
END_TEST

START_TEST(test_resolve_batchnorm_nd) {
    struct nd_spec s;
    nd_spec_defaults(&s, ND_LAYER_TYPE_BATCH_NORM, 2, ND_CONVENTION_PYTORCH);
    struct nd_layout lay = RESOLVE_OK(s, 3, 4, 5);
    ck_assert_uint_eq(lay.param_mask, BIT(1));
    CHECK_PARAM(lay, 3);
    REJECT_RESOLVE(s, ND_STATUS_SHAPE_MISMATCH, "input",
                   "BatchNorm2D needs a per-example rank of 3", 3, 4);
    REJECT_RESOLVE(s, ND_STATUS_SHAPE_MISMATCH, "input", "got 4", 3, 4, 5, 6);
    nd_spec_defaults(&s, ND_LAYER_TYPE_BATCH_NORM, 1, ND_CONVENTION_PYTORCH);
    lay = RESOLVE_OK(s, 3, 7);
    CHECK_PARAM(lay, 3);
    REJECT_RESOLVE(s, ND_STATUS_SHAPE_MISMATCH, "input", "BatchNorm1D", 3);
}
END_TEST

// ---- resolution: Normalization ----

START_TEST(test_resolve_normalization_defaults) {
    struct nd_spec s = spec_of(ND_LAYER_TYPE_NORMALIZATION, ND_CONVENTION_WOLFRAM);
    struct nd_layout lay = RESOLVE_OK(s, 3, 5);
    ck_assert_uint_eq(lay.reduce_mask, BIT(2));
    ck_assert_uint_eq(lay.param_mask, BIT(1));
    CHECK_PARAM(lay, 3);
    CHECK_GROUPS(lay, -1, 1);
    ck_assert_int_eq(lay.naxes, 0);
    lay = RESOLVE_OK(s, 3, 4, 2); // "2;;All" on rank 3
    ck_assert_uint_eq(lay.reduce_mask, BIT(2) | BIT(3));
    ck_assert_uint_eq(lay.param_mask, BIT(1));
    // keras: "1;;-2", channels last.
    s = spec_of(ND_LAYER_TYPE_NORMALIZATION, ND_CONVENTION_KERAS);
    lay = RESOLVE_OK(s, 3, 5);
    ck_assert_uint_eq(lay.reduce_mask, BIT(1));
    ck_assert_uint_eq(lay.param_mask, BIT(2));
    CHECK_PARAM(lay, 5);
    lay = RESOLVE_OK(s, 3, 4, 2);
    ck_assert_uint_eq(lay.reduce_mask, BIT(1) | BIT(2));
    ck_assert_uint_eq(lay.param_mask, BIT(3));
    CHECK_PARAM(lay, 2);
}
END_TEST

START_TEST(test_resolve_normalization_levels) {
    struct nd_spec s = spec_of(ND_LAYER_TYPE_NORMALIZATION, ND_CONVENTION_WOLFRAM);
    // "All" on rank 6 with scaling [1].
    s.aggregation = parsed("All");
    s.scaling = LIST(1);
    EXPECT_VALID(s);
    struct nd_layout lay = RESOLVE_OK(s, 2, 1, 2, 3, 1, 2);
    ck_assert_uint_eq(lay.reduce_mask, 0x3fu);
    ck_assert_uint_eq(lay.param_mask, BIT(1));
    CHECK_PARAM(lay, 2);
    // "-2;;-1" on [2,3,2,2]: levels 3 and 4; Complement = 1 and 2.
    s = spec_of(ND_LAYER_TYPE_NORMALIZATION, ND_CONVENTION_WOLFRAM);
    s.aggregation = parsed("-2;;-1");
    lay = RESOLVE_OK(s, 2, 3, 2, 2);
    ck_assert_uint_eq(lay.reduce_mask, BIT(3) | BIT(4));
    ck_assert_uint_eq(lay.param_mask, BIT(1) | BIT(2));
    CHECK_PARAM(lay, 2, 3);
    // [1, 3] with RMS on [2,3,4].
    s.aggregation = LIST(1, 3);
    s.method = ND_METHOD_RMS;
    EXPECT_VALID(s);
    lay = RESOLVE_OK(s, 2, 3, 4);
    ck_assert_uint_eq(lay.reduce_mask, BIT(1) | BIT(3));
    ck_assert_uint_eq(lay.param_mask, BIT(2));
    CHECK_PARAM(lay, 3);
    // [2] with Same on [3,4].
    s.method = ND_METHOD_STANDARDIZE;
    s.aggregation = LIST(2);
    s.scaling = parsed("Same");
    lay = RESOLVE_OK(s, 3, 4);
    ck_assert_uint_eq(lay.reduce_mask, BIT(2));
    ck_assert_uint_eq(lay.param_mask, BIT(2));
    CHECK_PARAM(lay, 4);
    // "2;;All" with explicit scaling [2] on [3,4,2].
    s.aggregation = parsed("2;;All");
    s.scaling = LIST(2);
    lay = RESOLVE_OK(s, 3, 4, 2);
    ck_assert_uint_eq(lay.reduce_mask, BIT(2) | BIT(3));
    ck_assert_uint_eq(lay.param_mask, BIT(2));
    CHECK_PARAM(lay, 4);
    // A span for the scaling levels, and no scaling levels at all (scalar arrays).
    s.scaling = parsed("-2;;All");
    lay = RESOLVE_OK(s, 3, 4, 2);
    ck_assert_uint_eq(lay.param_mask, BIT(2) | BIT(3));
    CHECK_PARAM(lay, 4, 2);
    s.scaling = (struct nd_levels){.kind = ND_LEVELS_LIST, .count = 0};
    lay = RESOLVE_OK(s, 3, 4, 2);
    ck_assert_uint_eq(lay.param_mask, 0);
    ck_assert_int_eq(lay.param_shape.ndim, 0);
    // Everything aggregated, Complement: no scaling levels either.
    s.aggregation = parsed("1;;All");
    s.scaling = parsed("Complement");
    lay = RESOLVE_OK(s, 3, 4);
    ck_assert_uint_eq(lay.param_mask, 0);
    ck_assert_int_eq(lay.param_shape.ndim, 0);
}
END_TEST

START_TEST(test_resolve_group_number) {
    struct nd_spec s = spec_of(ND_LAYER_TYPE_NORMALIZATION, ND_CONVENTION_WOLFRAM);
    s.aggregation = LIST(1, 2);
    s.ngroup = 2;
    s.group_number[0] = 2;
    s.group_number[1] = 1;
    EXPECT_VALID(s);
    struct nd_layout lay = RESOLVE_OK(s, 4, 3, 2);
    ck_assert_uint_eq(lay.reduce_mask, BIT(1) | BIT(2));
    ck_assert_uint_eq(lay.param_mask, BIT(3));
    CHECK_GROUPS(lay, 0, 2);
    CHECK_PARAM(lay, 2);
    // Paired in ascending level order, whatever order the list has.
    s.aggregation = LIST(2, 1);
    lay = RESOLVE_OK(s, 4, 3, 2);
    CHECK_GROUPS(lay, 0, 2);
    // One entry (an integer) means the first aggregation level; the rest get 1.
    s.aggregation = parsed("All");
    s.ngroup = 1;
    s.group_number[0] = 4;
    lay = RESOLVE_OK(s, 4, 3);
    CHECK_GROUPS(lay, 0, 4);
}
END_TEST

START_TEST(test_resolve_group_number_levels) {
    struct nd_spec s = spec_of(ND_LAYER_TYPE_NORMALIZATION, ND_CONVENTION_WOLFRAM);
    s.aggregation = parsed("All");
    s.ngroup = 1;
    s.group_number[0] = 2;
    struct nd_layout lay = RESOLVE_OK(s, 4, 3);
    CHECK_GROUPS(lay, 0, 2);
    // Default "2;;All" on [3,4,6]: the first aggregation level is level 2.
    s = spec_of(ND_LAYER_TYPE_NORMALIZATION, ND_CONVENTION_WOLFRAM);
    s.ngroup = 2;
    s.group_number[0] = 2;
    s.group_number[1] = 3;
    lay = RESOLVE_OK(s, 3, 4, 6);
    ck_assert_int_eq(lay.groups[0], 1);
    ck_assert_int_eq(lay.groups[1], 2);
    ck_assert_int_eq(lay.groups[2], 3);
    // Unknown sizes are not checked here.
    lay = RESOLVE_OK(s, 3, AUTO, AUTO);
    ck_assert_int_eq(lay.groups[1], 2);
    ck_assert_int_eq(lay.groups[2], 3);
}
END_TEST

START_TEST(test_resolve_auto_dims) {
    struct nd_spec s = spec_of(ND_LAYER_TYPE_NORMALIZATION, ND_CONVENTION_WOLFRAM);
    struct nd_layout lay = RESOLVE_OK(s, 3, AUTO);
    ck_assert_uint_eq(lay.reduce_mask, BIT(2));
    ck_assert_uint_eq(lay.param_mask, BIT(1));
    CHECK_PARAM(lay, 3);
    check_shape(&lay.input, 2, (int64_t[]){3, AUTO}, __LINE__);
    // An unknown scaling dim shows as unknown in the array shape.
    lay = RESOLVE_OK(s, AUTO, 5);
    CHECK_PARAM(lay, AUTO);
    // A zero-length dim is an empty example, not an error here.
    lay = RESOLVE_OK(s, 3, 0);
    CHECK_PARAM(lay, 3);
}
END_TEST

// ---- resolution: presets ----

START_TEST(test_resolve_layer_norm) {
    struct nd_spec s = spec_of(ND_LAYER_TYPE_LAYER_NORM, ND_CONVENTION_WOLFRAM);
    struct nd_layout lay = RESOLVE_OK(s, 3, 4);
    ck_assert_uint_eq(lay.reduce_mask, BIT(2));
    ck_assert_uint_eq(lay.param_mask, BIT(2));
    CHECK_PARAM(lay, 4);
    SET_AXES(s, -2, -1);
    EXPECT_VALID(s);
    lay = RESOLVE_OK(s, 2, 3, 4);
    ck_assert_uint_eq(lay.reduce_mask, BIT(2) | BIT(3));
    ck_assert_uint_eq(lay.param_mask, BIT(2) | BIT(3));
    CHECK_PARAM(lay, 3, 4);
    SET_AXES(s, 1); // a positive axis of the batched tensor is the same level
    lay = RESOLVE_OK(s, 3, 4);
    ck_assert_uint_eq(lay.reduce_mask, BIT(1));
    CHECK_PARAM(lay, 3);
    s.naxes = 0; // not set: the preset's default {-1}
    lay = RESOLVE_OK(s, 3, 4);
    ck_assert_uint_eq(lay.reduce_mask, BIT(2));
    // RMSNormalization resolves like LayerNormalization.
    s = spec_of(ND_LAYER_TYPE_RMS_NORM, ND_CONVENTION_KERAS);
    lay = RESOLVE_OK(s, 3, 4);
    ck_assert_uint_eq(lay.reduce_mask, BIT(2));
    ck_assert_uint_eq(lay.param_mask, BIT(2));
    CHECK_PARAM(lay, 4);
}
END_TEST

START_TEST(test_resolve_group_norm) {
    struct nd_spec s = spec_of(ND_LAYER_TYPE_GROUP_NORM, ND_CONVENTION_WOLFRAM);
    s.groups = 2;
    struct nd_layout lay = RESOLVE_OK(s, 4, 3);
    ck_assert_uint_eq(lay.reduce_mask, BIT(1) | BIT(2));
    ck_assert_uint_eq(lay.param_mask, BIT(1));
    CHECK_GROUPS(lay, 0, 2);
    CHECK_PARAM(lay, 4);
    s.convention = ND_CONVENTION_ONNX;
    lay = RESOLVE_OK(s, 4, 2, 3);
    ck_assert_uint_eq(lay.reduce_mask, BIT(1) | BIT(2) | BIT(3));
    ck_assert_uint_eq(lay.param_mask, BIT(1));
    CHECK_GROUPS(lay, 0, 2);
    CHECK_PARAM(lay, 4);
    // An unknown channel count is not checked; unknown other dims never matter.
    lay = RESOLVE_OK(s, AUTO, 3);
    CHECK_GROUPS(lay, 0, 2);
    CHECK_PARAM(lay, AUTO);
    lay = RESOLVE_OK(s, 4, AUTO);
    CHECK_PARAM(lay, 4);
    // keras: channels last.
    s = spec_of(ND_LAYER_TYPE_GROUP_NORM, ND_CONVENTION_KERAS);
    s.groups = 2;
    lay = RESOLVE_OK(s, 3, 4);
    ck_assert_uint_eq(lay.reduce_mask, BIT(1) | BIT(2));
    ck_assert_uint_eq(lay.param_mask, BIT(2));
    CHECK_GROUPS(lay, 1, 2);
    CHECK_PARAM(lay, 4);
    // groups == channels is instance-like; groups 1 is layer-like.
    s.groups = 4;
    lay = RESOLVE_OK(s, 3, 4);
    CHECK_GROUPS(lay, 1, 4);
    s.groups = 1;
    lay = RESOLVE_OK(s, 3, 4);
    CHECK_GROUPS(lay, -1, 1);
}
END_TEST

START_TEST(test_resolve_instance_norm) {
    struct nd_spec s = spec_of(ND_LAYER_TYPE_INSTANCE_NORM, ND_CONVENTION_WOLFRAM);
    struct nd_layout lay = RESOLVE_OK(s, 3, 4, 2);
    ck_assert_uint_eq(lay.reduce_mask, BIT(2) | BIT(3));
    ck_assert_uint_eq(lay.param_mask, BIT(1));
    CHECK_PARAM(lay, 3);
    CHECK_GROUPS(lay, -1, 1);
    // The same as Normalization's defaults.
    struct nd_spec n = spec_of(ND_LAYER_TYPE_NORMALIZATION, ND_CONVENTION_WOLFRAM);
    struct nd_layout ln = RESOLVE_OK(n, 3, 4, 2);
    ck_assert_uint_eq(ln.reduce_mask, lay.reduce_mask);
    ck_assert_uint_eq(ln.param_mask, lay.param_mask);
    s = spec_of(ND_LAYER_TYPE_INSTANCE_NORM, ND_CONVENTION_KERAS);
    lay = RESOLVE_OK(s, 3, 4, 2);
    ck_assert_uint_eq(lay.reduce_mask, BIT(1) | BIT(2));
    ck_assert_uint_eq(lay.param_mask, BIT(3));
    CHECK_PARAM(lay, 2);
}
END_TEST

// ---- limits ----

START_TEST(test_limits_max_rank) {
    struct nd_spec s = spec_of(ND_LAYER_TYPE_NORMALIZATION, ND_CONVENTION_WOLFRAM);
    s.aggregation = parsed("All");
    s.scaling = LIST(8, -8);
    EXPECT_VALID(s);
    struct nd_layout lay = RESOLVE_OK(s, 2, 1, 1, 1, 1, 1, 1, 3);
    ck_assert_uint_eq(lay.reduce_mask, 0xffu);
    ck_assert_uint_eq(lay.param_mask, BIT(1) | BIT(8));
    CHECK_PARAM(lay, 2, 3);
    s.aggregation = LIST(1, 2, 3, 4, 5, 6, 7, 8);
    s.ngroup = 8;
    for (int i = 0; i < 8; i++)
        s.group_number[i] = 1;
    s.group_number[7] = 3;
    EXPECT_VALID(s);
    lay = RESOLVE_OK(s, 2, 1, 1, 1, 1, 1, 1, 3);
    CHECK_GROUPS(lay, 7, 3);
    // BatchNorm7D takes the largest rank; axes reach both ends.
    nd_spec_defaults(&s, ND_LAYER_TYPE_BATCH_NORM, 7, ND_CONVENTION_WOLFRAM);
    EXPECT_VALID(s);
    SET_AXES(s, 8, -8);
    EXPECT_VALID(s);
    lay = RESOLVE_OK(s, 2, 1, 1, 1, 1, 1, 1, 3);
    ck_assert_uint_eq(lay.param_mask, BIT(1) | BIT(8));
    CHECK_PARAM(lay, 6);
    ck_assert_int_eq(lay.axes[0], 1);
    ck_assert_int_eq(lay.axes[1], 8);
    s.input = shape_of(8, (int64_t[]){1, 2, 3, 4, 5, 6, 7, 8});
    EXPECT_VALID(s);
    // Every axis of a LayerNormalization.
    s = spec_of(ND_LAYER_TYPE_LAYER_NORM, ND_CONVENTION_WOLFRAM);
    SET_AXES(s, 1, 2, 3, 4, 5, 6, 7, 8);
    EXPECT_VALID(s);
    lay = RESOLVE_OK(s, 2, 1, 1, 1, 1, 1, 1, 3);
    ck_assert_uint_eq(lay.reduce_mask, 0xffu);
    CHECK_PARAM(lay, 2, 1, 1, 1, 1, 1, 1, 3);
}
END_TEST

START_TEST(test_limits_channel_overflow) {
    struct nd_spec s = spec_of(ND_LAYER_TYPE_BATCH_NORM, ND_CONVENTION_WOLFRAM);
    SET_AXES(s, 1, 2, 3);
    int64_t big = INT64_C(1) << 40;
    REJECT_RESOLVE(s, ND_STATUS_LIMIT_EXCEEDED, "input", "too many", big, big, big);
}
END_TEST

START_TEST(test_limits_messages_bounded) {
    // Unknown names are shown cut and cleaned; the list of spellings is never cut off.
    char name[300];
    memset(name, 'x', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    name[3] = '\001';
    struct nd_error err;
    enum nd_layer_type t;
    nd_error_clear(&err);
    ck_assert_int_eq(nd_layer_type_parse(name, &t, NULL, &err), ND_STATUS_INVALID_VALUE);
    ck_assert_ptr_nonnull(strstr(err.msg, "RMSNormalization")); // the last spelling survives
    ck_assert_uint_lt(strlen(err.msg), ND_ERROR_MSG_MAX - 1);
    enum nd_array_id id;
    nd_error_clear(&err);
    ck_assert_int_eq(nd_array_parse(name, &id, &err), ND_STATUS_NOT_FOUND);
    ck_assert_ptr_nonnull(strstr(err.msg, "\"xxx?xxxxxxxx...\"")); // cut and cleaned
    ck_assert_ptr_nonnull(strstr(err.msg, "scale, mean, var"));
    ck_assert_uint_lt(strlen(err.msg), ND_ERROR_MSG_MAX - 1);
    struct nd_levels lv;
    nd_error_clear(&err);
    ck_assert_int_eq(nd_levels_parse(name, &lv, &err), ND_STATUS_INVALID_VALUE);
    ck_assert_ptr_nonnull(strstr(err.msg, "xxx?xxx"));
    ck_assert_ptr_nonnull(strstr(err.msg, "...\""));
    ck_assert_ptr_nonnull(strstr(err.msg, "All)"));
    ck_assert_uint_lt(strlen(err.msg), ND_ERROR_MSG_MAX - 1);
}
END_TEST

START_TEST(test_limits_levels_format_small_buffer) {
    struct nd_levels lv = LIST(1, -2, 3, -4, 5, -6, 7, -8);
    char buf[64];
    ck_assert_str_eq(nd_levels_format(&lv, buf, sizeof buf), "[1, -2, 3, -4, 5, -6, 7, -8]");
    char small[6];
    memset(small, '#', sizeof small);
    nd_levels_format(&lv, small, sizeof small);
    ck_assert_uint_lt(strlen(small), sizeof small); // cut, but terminated
    ck_assert_int_eq(strncmp(small, "[1, -", 5), 0);
    lv = parsed("-8;;All");
    ck_assert_str_eq(nd_levels_format(&lv, small, 4), "-8;");
    lv.count = 99; // a broken list count is clamped, never read beyond level[]
    lv.kind = ND_LEVELS_LIST;
    nd_levels_format(&lv, buf, sizeof buf);
    ck_assert_uint_lt(strlen(buf), sizeof buf);
    lv.kind = (enum nd_levels_kind)42;
    ck_assert_str_eq(nd_levels_format(&lv, buf, sizeof buf), "unknown");
    buf[0] = '#';
    ck_assert_ptr_eq(nd_levels_format(&lv, buf, 0), buf); // size 0 writes nothing
    ck_assert_int_eq(buf[0], '#');
    ck_assert_str_eq(nd_levels_format(NULL, buf, sizeof buf), "");
    ck_assert_ptr_null(nd_levels_format(&lv, NULL, 8));
}
END_TEST

// ---- errors: names ----

START_TEST(test_unknown_names) {
    struct nd_error err;
    enum nd_layer_type t = ND_LAYER_TYPE_GROUP_NORM;
    int32_t nd = 5;
    nd_error_clear(&err);
    CHECK_ERR(nd_layer_type_parse("batchnormalization", &t, &nd, &err), err,
              ND_STATUS_INVALID_VALUE, "", "(Batch)Normalization(Layer)");
    ck_assert_ptr_nonnull(strstr(err.msg, "BatchNorm(1D..7D)"));
    ck_assert_ptr_nonnull(strstr(err.msg, "Layer/Instance/Group/RMSNormalization"));
    ck_assert_ptr_nonnull(strstr(err.msg, "PyTorch's BatchNorm1d..3d, InstanceNorm1d..3d"));
    ck_assert_int_eq(t, ND_LAYER_TYPE_GROUP_NORM); // outputs untouched on failure
    ck_assert_int_eq(nd, 5);
    nd_error_clear(&err);
    CHECK_ERR(nd_layer_type_parse("BatchNorm8D", &t, &nd, &err), err, ND_STATUS_INVALID_VALUE, "",
              "Normalization");
    nd_error_clear(&err);
    CHECK_ERR(nd_layer_type_parse("", &t, &nd, &err), err, ND_STATUS_INVALID_VALUE, "",
              "LayerNorm, GroupNorm, RMSNorm");

    enum nd_convention c;
    nd_error_clear(&err);
    CHECK_ERR(nd_convention_parse("Keras", &c, &err), err, ND_STATUS_INVALID_VALUE, "",
              "\"wolfram\", \"keras\", \"onnx\", \"pytorch\" or \"puzzlelib\"");

    enum nd_array_id id;
    static const char *const not_arrays[] = {"Gamma", "scaling", "Weight", "running_variance", ""};
    for (size_t i = 0; i < sizeof not_arrays / sizeof not_arrays[0]; i++) {
        nd_error_clear(&err);
        CHECK_ERR(nd_array_parse(not_arrays[i], &id, &err), err, ND_STATUS_NOT_FOUND, "",
                  "MovingVariance");
        ck_assert_ptr_nonnull(strstr(err.msg, "running_var"));
    }

    enum nd_variance_estimator v;
    nd_error_clear(&err);
    CHECK_ERR(nd_variance_estimator_parse("sometimes", &v, &err), err, ND_STATUS_INVALID_VALUE, "",
              "\"biased\" or \"unbiased\"");
    enum nd_method m;
    nd_error_clear(&err);
    CHECK_ERR(nd_method_parse("rms", &m, &err), err, ND_STATUS_INVALID_VALUE, "",
              "\"Standardize\" or \"RMS\"");
    // A NULL error buffer still returns the status.
    ck_assert_int_eq(nd_method_parse("L2", &m, NULL), ND_STATUS_INVALID_VALUE);
    ck_assert_int_eq(nd_array_parse("w", &id, NULL), ND_STATUS_NOT_FOUND);
}
END_TEST

START_TEST(test_null_arguments) {
    struct nd_error err;
    enum nd_layer_type t;
    int32_t nd;
    nd_error_clear(&err);
    CHECK_ERR(nd_layer_type_parse(NULL, &t, &nd, &err), err, ND_STATUS_INVALID_ARGUMENT, "",
              "NULL");
    nd_error_clear(&err);
    CHECK_ERR(nd_layer_type_parse("BatchNorm", NULL, &nd, &err), err, ND_STATUS_INVALID_ARGUMENT,
              "", "NULL");
    enum nd_convention c;
    ck_assert_int_eq(nd_convention_parse(NULL, &c, NULL), ND_STATUS_INVALID_ARGUMENT);
    ck_assert_int_eq(nd_convention_parse("keras", NULL, NULL), ND_STATUS_INVALID_ARGUMENT);
    enum nd_array_id id;
    ck_assert_int_eq(nd_array_parse(NULL, &id, NULL), ND_STATUS_INVALID_ARGUMENT);
    ck_assert_int_eq(nd_array_parse("gamma", NULL, NULL), ND_STATUS_INVALID_ARGUMENT);
    enum nd_variance_estimator v;
    ck_assert_int_eq(nd_variance_estimator_parse(NULL, &v, NULL), ND_STATUS_INVALID_ARGUMENT);
    ck_assert_int_eq(nd_variance_estimator_parse("biased", NULL, NULL), ND_STATUS_INVALID_ARGUMENT);
    enum nd_method m;
    ck_assert_int_eq(nd_method_parse(NULL, &m, NULL), ND_STATUS_INVALID_ARGUMENT);
    ck_assert_int_eq(nd_method_parse("RMS", NULL, NULL), ND_STATUS_INVALID_ARGUMENT);
    struct nd_levels lv;
    ck_assert_int_eq(nd_levels_parse(NULL, &lv, NULL), ND_STATUS_INVALID_ARGUMENT);
    ck_assert_int_eq(nd_levels_parse("All", NULL, NULL), ND_STATUS_INVALID_ARGUMENT);
    nd_error_clear(&err);
    CHECK_ERR(nd_spec_validate(NULL, &err), err, ND_STATUS_INVALID_ARGUMENT, "", "NULL");
    struct nd_spec s = spec_of(ND_LAYER_TYPE_BATCH_NORM, ND_CONVENTION_WOLFRAM);
    struct nd_shape in = shape_of(1, (int64_t[]){3});
    struct nd_layout lay;
    nd_error_clear(&err);
    CHECK_ERR(nd_spec_resolve(NULL, &in, &lay, &err), err, ND_STATUS_INVALID_ARGUMENT, "", "NULL");
    ck_assert_int_eq(nd_spec_resolve(&s, NULL, &lay, NULL), ND_STATUS_INVALID_ARGUMENT);
    ck_assert_int_eq(nd_spec_resolve(&s, &in, NULL, NULL), ND_STATUS_INVALID_ARGUMENT);
}
END_TEST

// ---- errors: validation ----

START_TEST(test_validate_rejects_common) {
    struct nd_spec s = spec_of(ND_LAYER_TYPE_BATCH_NORM, ND_CONVENTION_WOLFRAM);
    s.epsilon = -1;
    REJECT(s, "options.epsilon", "> 0");
    s.epsilon = 0;
    REJECT(s, "options.epsilon", "> 0");
    s.epsilon = NAN;
    REJECT(s, "options.epsilon", "finite");
    s.epsilon = INFINITY;
    REJECT(s, "options.epsilon", "finite");
    s = spec_of(ND_LAYER_TYPE_LAYER_NORM, ND_CONVENTION_ONNX);
    s.epsilon = -1e-5;
    REJECT(s, "options.epsilon", "epsilon");

    s = spec_of(ND_LAYER_TYPE_NORMALIZATION, ND_CONVENTION_WOLFRAM);
    s.input = shape_of(2, (int64_t[]){3, 0});
    REJECT(s, "input", ">= 1 or null");
    s.input = shape_of(2, (int64_t[]){-7, 3});
    REJECT(s, "input", "dimension 1");
    s.input.ndim = ND_MAX_RANK + 1;
    REJECT(s, "input", "rank 9");
    s.input.ndim = -2;
    REJECT(s, "input", "rank");

    s = spec_of(ND_LAYER_TYPE_BATCH_NORM, ND_CONVENTION_WOLFRAM);
    static const char *const fields[] = {
        "learning_rate_multipliers.Scaling", "learning_rate_multipliers.Biases",
        "learning_rate_multipliers.MovingMean", "learning_rate_multipliers.MovingVariance"};
    for (int a = 0; a < ND_ARRAY_COUNT; a++) {
        s = spec_of(ND_LAYER_TYPE_BATCH_NORM, ND_CONVENTION_WOLFRAM);
        s.lr_multiplier[a] = -0.5;
        REJECT(s, fields[a], ">= 0");
        s.lr_multiplier[a] = NAN;
        REJECT(s, fields[a], "finite");
        s.lr_multiplier[a] = INFINITY;
        REJECT(s, fields[a], "finite");
    }
    s = spec_of(ND_LAYER_TYPE_GROUP_NORM, ND_CONVENTION_WOLFRAM);
    s.lr_multiplier[ND_ARRAY_BIASES] = -1;
    REJECT(s, "learning_rate_multipliers.Biases", "Biases");
}
END_TEST

START_TEST(test_validate_rejects_batch_options) {
    struct nd_spec s = spec_of(ND_LAYER_TYPE_BATCH_NORM, ND_CONVENTION_WOLFRAM);
    s.momentum = 1.5;
    REJECT(s, "options.momentum", "[0, 1]");
    s.momentum = -0.1;
    REJECT(s, "options.momentum", "[0, 1]");
    s.momentum = NAN;
    REJECT(s, "options.momentum", "[0, 1]");
    static const enum nd_convention no_null[] = {ND_CONVENTION_WOLFRAM, ND_CONVENTION_KERAS,
                                                 ND_CONVENTION_ONNX};
    for (size_t i = 0; i < 3; i++) {
        s = spec_of(ND_LAYER_TYPE_BATCH_NORM, no_null[i]);
        s.momentum_null = true;
        REJECT(s, "options.momentum", "pytorch");
    }
    s = spec_of(ND_LAYER_TYPE_BATCH_NORM, ND_CONVENTION_PUZZLELIB);
    s.init_factor = 1.5;
    REJECT(s, "options.init_factor", "[0, 1]");
    s.init_factor = NAN;
    REJECT(s, "options.init_factor", "init_factor");
    s = spec_of(ND_LAYER_TYPE_BATCH_NORM, ND_CONVENTION_PUZZLELIB);
    s.min_factor = -0.1;
    REJECT(s, "options.min_factor", "[0, 1]");
    s = spec_of(ND_LAYER_TYPE_BATCH_NORM, ND_CONVENTION_PUZZLELIB);
    s.sscale = -0.01;
    REJECT(s, "options.sscale", ">= 0");
    s.sscale = INFINITY;
    REJECT(s, "options.sscale", "finite");

    s = spec_of(ND_LAYER_TYPE_BATCH_NORM, ND_CONVENTION_WOLFRAM);
    SET_AXES(s, 0);
    REJECT(s, "options.axis", "batch axis");
    SET_AXES(s, 1, 0);
    REJECT(s, "options.axis", "batch axis");
    SET_AXES(s, 9);
    REJECT(s, "options.axis", "out of range");
    SET_AXES(s, -9);
    REJECT(s, "options.axis", "out of range");
    SET_AXES(s, 2, 1, 2);
    REJECT(s, "options.axis", "duplicate");
    s.naxes = ND_MAX_RANK + 1;
    REJECT(s, "options.axis", "axes");
    s.naxes = -1;
    REJECT(s, "options.axis", "axes");

    struct nd_error err;
    s = spec_of(ND_LAYER_TYPE_BATCH_NORM, ND_CONVENTION_WOLFRAM);
    s.batchnorm_nd = 8;
    CHECK_ERR(validate(&s, &err), err, ND_STATUS_INVALID_ARGUMENT, "type", "BatchNorm8D");
    s.batchnorm_nd = -1;
    CHECK_ERR(validate(&s, &err), err, ND_STATUS_INVALID_ARGUMENT, "type", "out of range");
    s = spec_of(ND_LAYER_TYPE_BATCH_NORM, ND_CONVENTION_WOLFRAM);
    s.moving_variance = (enum nd_variance_estimator)3;
    CHECK_ERR(validate(&s, &err), err, ND_STATUS_INVALID_ARGUMENT, "options.moving_variance",
              "out of range");
    s = spec_of(ND_LAYER_TYPE_BATCH_NORM, ND_CONVENTION_WOLFRAM);
    s.convention = ND_CONVENTION_COUNT;
    CHECK_ERR(validate(&s, &err), err, ND_STATUS_INVALID_ARGUMENT, "convention", "out of range");
    s = spec_of(ND_LAYER_TYPE_BATCH_NORM, ND_CONVENTION_WOLFRAM);
    s.type = (enum nd_layer_type) - 1;
    CHECK_ERR(validate(&s, &err), err, ND_STATUS_INVALID_ARGUMENT, "type", "out of range");
}
END_TEST

START_TEST(test_validate_rejects_levels) {
    struct nd_spec s = spec_of(ND_LAYER_TYPE_NORMALIZATION, ND_CONVENTION_WOLFRAM);
    const char *agg = "options.aggregation_levels", *sc = "options.scaling_levels";
    s.aggregation = parsed("Same");
    REJECT(s, agg, "Same and Complement");
    s.aggregation = parsed("Complement");
    REJECT(s, agg, "a list, \"All\" or a span");
    s.aggregation = (struct nd_levels){.kind = ND_LEVELS_LIST, .count = 0};
    REJECT(s, agg, "1 to 8 levels");
    s.aggregation = LIST(1, 0);
    REJECT(s, agg, "non-zero");
    s.aggregation = LIST(9);
    REJECT(s, agg, "out of range");
    s.aggregation = LIST(-9);
    REJECT(s, agg, "out of range");
    s.aggregation = LIST(2, 1, 2);
    REJECT(s, agg, "duplicate");
    s.aggregation.count = ND_MAX_RANK + 1;
    REJECT(s, agg, "levels");
    s.aggregation = (struct nd_levels){.kind = ND_LEVELS_SPAN, .from = 0, .to_all = true};
    REJECT(s, agg, "non-zero");
    s.aggregation = (struct nd_levels){.kind = ND_LEVELS_SPAN, .from = 1, .to = 0};
    REJECT(s, agg, "non-zero");
    s.aggregation = parsed("3;;2");
    REJECT(s, agg, "empty");
    s.aggregation = parsed("-1;;-2");
    REJECT(s, agg, "empty");

    s = spec_of(ND_LAYER_TYPE_NORMALIZATION, ND_CONVENTION_WOLFRAM);
    s.scaling = LIST(0);
    REJECT(s, sc, "non-zero");
    s.scaling = LIST(1, -1, 1);
    REJECT(s, sc, "duplicate");
    s.scaling = parsed("2;;1");
    REJECT(s, sc, "empty");
    s.scaling.count = -1;
    s.scaling.kind = ND_LEVELS_LIST;
    REJECT(s, sc, "0 to 8 levels");

    struct nd_error err;
    s = spec_of(ND_LAYER_TYPE_NORMALIZATION, ND_CONVENTION_WOLFRAM);
    s.scaling.kind = (enum nd_levels_kind)9;
    CHECK_ERR(validate(&s, &err), err, ND_STATUS_INVALID_ARGUMENT, sc, "out of range");
    s = spec_of(ND_LAYER_TYPE_NORMALIZATION, ND_CONVENTION_WOLFRAM);
    s.aggregation.kind = (enum nd_levels_kind) - 1;
    CHECK_ERR(validate(&s, &err), err, ND_STATUS_INVALID_ARGUMENT, agg, "out of range");
}
END_TEST

START_TEST(test_validate_rejects_norm_options) {
    struct nd_spec s = spec_of(ND_LAYER_TYPE_NORMALIZATION, ND_CONVENTION_WOLFRAM);
    s.ngroup = 2;
    s.group_number[0] = 2;
    s.group_number[1] = 0;
    REJECT(s, "options.group_number", ">= 1");
    s.group_number[1] = -4;
    REJECT(s, "options.group_number", ">= 1");
    s.ngroup = ND_MAX_RANK + 1;
    REJECT(s, "options.group_number", "entries");
    s.ngroup = -1;
    REJECT(s, "options.group_number", "entries");

    s = spec_of(ND_LAYER_TYPE_GROUP_NORM, ND_CONVENTION_WOLFRAM);
    s.groups = 0;
    REJECT(s, "options.groups", ">= 1");
    s.groups = -2;
    REJECT(s, "options.groups", ">= 1");
    s = spec_of(ND_LAYER_TYPE_GROUP_NORM, ND_CONVENTION_WOLFRAM);
    SET_AXES(s, 1, 2);
    REJECT(s, "options.axis", "single channel axis");
    s = spec_of(ND_LAYER_TYPE_INSTANCE_NORM, ND_CONVENTION_WOLFRAM);
    s.naxes = 0;
    REJECT(s, "options.axis", "single channel axis");
    SET_AXES(s, 0);
    REJECT(s, "options.axis", "batch axis");
    s = spec_of(ND_LAYER_TYPE_LAYER_NORM, ND_CONVENTION_WOLFRAM);
    s.naxes = 0;
    REJECT(s, "options.axis", "1 to 8 axes");
    SET_AXES(s, -1, -1);
    REJECT(s, "options.axis", "duplicate");
    SET_AXES(s, 10);
    REJECT(s, "options.axis", "out of range");
    s = spec_of(ND_LAYER_TYPE_RMS_NORM, ND_CONVENTION_WOLFRAM);
    SET_AXES(s, 0, -1);
    REJECT(s, "options.axis", "batch axis");

    struct nd_error err;
    s = spec_of(ND_LAYER_TYPE_NORMALIZATION, ND_CONVENTION_WOLFRAM);
    s.method = (enum nd_method)2;
    CHECK_ERR(validate(&s, &err), err, ND_STATUS_INVALID_ARGUMENT, "options.method",
              "out of range");
}
END_TEST

START_TEST(test_validate_rejects_nested) {
    struct nd_spec s = spec_of(ND_LAYER_TYPE_BATCH_NORM, ND_CONVENTION_WOLFRAM);
    static const char *const init_fields[] = {
        "options.scaling_initializer.stddev", "options.biases_initializer.stddev",
        "options.moving_mean_initializer.stddev", "options.moving_variance_initializer.stddev"};
    for (int a = 0; a < ND_ARRAY_COUNT; a++) {
        s = spec_of(ND_LAYER_TYPE_BATCH_NORM, ND_CONVENTION_WOLFRAM);
        s.init[a] = (struct nd_initializer){.kind = ND_INIT_RANDOM_NORMAL, .a = 0, .b = -1};
        s.init_given[a] = true;
        REJECT(s, init_fields[a], "stddev");
    }
    s = spec_of(ND_LAYER_TYPE_BATCH_NORM, ND_CONVENTION_WOLFRAM);
    s.init[ND_ARRAY_BIASES] =
        (struct nd_initializer){.kind = ND_INIT_RANDOM_UNIFORM, .a = 1, .b = 0};
    REJECT(s, "options.biases_initializer.minval", "minval");
    s = spec_of(ND_LAYER_TYPE_BATCH_NORM, ND_CONVENTION_WOLFRAM);
    s.init[ND_ARRAY_MOVING_MEAN] = (struct nd_initializer){.kind = ND_INIT_CONSTANT, .a = NAN};
    REJECT(s, "options.moving_mean_initializer.value", "value");
    // The Normalization family has no moving arrays, so their initializers are not looked at.
    s = spec_of(ND_LAYER_TYPE_NORMALIZATION, ND_CONVENTION_WOLFRAM);
    s.init[ND_ARRAY_MOVING_MEAN] = (struct nd_initializer){.kind = ND_INIT_CONSTANT, .a = NAN};
    EXPECT_VALID(s);
    s.init[ND_ARRAY_SCALING] = (struct nd_initializer){.kind = ND_INIT_TRUNCATED_NORMAL, .b = NAN};
    REJECT(s, "options.scaling_initializer.stddev", "stddev");

    s = spec_of(ND_LAYER_TYPE_LAYER_NORM, ND_CONVENTION_WOLFRAM);
    s.regularizer[ND_ARRAY_SCALING].l1 = -1;
    REJECT(s, "options.scaling_regularizer.l1", "l1");
    s = spec_of(ND_LAYER_TYPE_BATCH_NORM, ND_CONVENTION_WOLFRAM);
    s.regularizer[ND_ARRAY_BIASES].l2 = NAN;
    REJECT(s, "options.biases_regularizer.l2", "l2");
    s = spec_of(ND_LAYER_TYPE_BATCH_NORM, ND_CONVENTION_WOLFRAM);
    s.constraint[ND_ARRAY_SCALING] = nd_constraint_default(ND_CONSTRAINT_MAX_NORM);
    s.constraint[ND_ARRAY_SCALING].max_value = 0;
    REJECT(s, "options.scaling_constraint.max_value", "max_value");
    s = spec_of(ND_LAYER_TYPE_GROUP_NORM, ND_CONVENTION_WOLFRAM);
    s.constraint[ND_ARRAY_BIASES] = nd_constraint_default(ND_CONSTRAINT_MIN_MAX_NORM);
    s.constraint[ND_ARRAY_BIASES].rate = 2;
    REJECT(s, "options.biases_constraint.rate", "rate");
    // A kind out of range is the nested validator's INVALID_ARGUMENT, still under our prefix.
    struct nd_error err;
    s = spec_of(ND_LAYER_TYPE_BATCH_NORM, ND_CONVENTION_WOLFRAM);
    s.constraint[ND_ARRAY_BIASES].kind = ND_CONSTRAINT_COUNT;
    ck_assert_int_eq(validate(&s, &err), ND_STATUS_INVALID_ARGUMENT);
    ck_assert_int_eq(strncmp(err.field, "options.biases_constraint", 25), 0);
}
END_TEST

START_TEST(test_validate_first_error_wins) {
    // An error already in the buffer keeps its field: the nested prefix is not applied to it.
    struct nd_spec s = spec_of(ND_LAYER_TYPE_BATCH_NORM, ND_CONVENTION_WOLFRAM);
    s.init[ND_ARRAY_SCALING] = (struct nd_initializer){.kind = ND_INIT_RANDOM_NORMAL, .b = -1};
    struct nd_error err;
    nd_error_clear(&err);
    nd_error_set_field(&err, ND_STATUS_SHAPE_MISMATCH, "input", "earlier");
    ck_assert_int_eq(nd_spec_validate(&s, &err), ND_STATUS_INVALID_VALUE);
    ck_assert_int_eq(err.code, ND_STATUS_SHAPE_MISMATCH);
    ck_assert_str_eq(err.field, "input");
    ck_assert_str_eq(err.msg, "earlier");
    // And a NULL buffer is fine.
    ck_assert_int_eq(nd_spec_validate(&s, NULL), ND_STATUS_INVALID_VALUE);
}
END_TEST

// ---- errors: resolution ----

START_TEST(test_resolve_rejects_shape) {
    struct nd_spec s = spec_of(ND_LAYER_TYPE_BATCH_NORM, ND_CONVENTION_WOLFRAM);
    struct nd_layout lay;
    struct nd_error err;
    CHECK_ERR(resolve(&s, 0, NULL, &lay, &err), err, ND_STATUS_SHAPE_MISMATCH, "input",
              "rank of 0");
    int64_t nine[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    CHECK_ERR(resolve(&s, 9, nine, &lay, &err), err, ND_STATUS_SHAPE_MISMATCH, "input", "1..8");
    CHECK_ERR(resolve(&s, ND_RANK_UNKNOWN, NULL, &lay, &err), err, ND_STATUS_INVALID_ARGUMENT,
              "input", "known rank");
    REJECT_RESOLVE(s, ND_STATUS_SHAPE_MISMATCH, "input", "negative", 3, -4);
    s.type = ND_LAYER_TYPE_COUNT;
    REJECT_RESOLVE(s, ND_STATUS_INVALID_ARGUMENT, "type", "out of range", 3);
    s = spec_of(ND_LAYER_TYPE_LAYER_NORM, ND_CONVENTION_WOLFRAM);
    CHECK_ERR(resolve(&s, 0, NULL, &lay, &err), err, ND_STATUS_SHAPE_MISMATCH, "input", "rank");
}
END_TEST

START_TEST(test_resolve_rejects_batch) {
    struct nd_spec s = spec_of(ND_LAYER_TYPE_BATCH_NORM, ND_CONVENTION_WOLFRAM);
    SET_AXES(s, 3);
    REJECT_RESOLVE(s, ND_STATUS_INVALID_VALUE, "options.axis", "out of range", 3, 4);
    SET_AXES(s, -3);
    REJECT_RESOLVE(s, ND_STATUS_INVALID_VALUE, "options.axis", "batch axis", 3, 4);
    SET_AXES(s, -4);
    REJECT_RESOLVE(s, ND_STATUS_INVALID_VALUE, "options.axis", "out of range", 3, 4);
    SET_AXES(s, 0); // unvalidated
    REJECT_RESOLVE(s, ND_STATUS_INVALID_VALUE, "options.axis", "batch axis", 3, 4);
    SET_AXES(s, 1, -2); // distinct as given, the same dim on rank 2
    REJECT_RESOLVE(s, ND_STATUS_INVALID_VALUE, "options.axis", "duplicate", 3, 4);
    s.naxes = ND_MAX_RANK + 3;
    REJECT_RESOLVE(s, ND_STATUS_INVALID_VALUE, "options.axis", "axes", 3, 4);
    // interleaving and axis disagree.
    s = spec_of(ND_LAYER_TYPE_BATCH_NORM, ND_CONVENTION_WOLFRAM);
    s.interleaving = true;
    s.interleaving_given = true;
    SET_AXES(s, 1);
    REJECT_RESOLVE(s, ND_STATUS_INVALID_VALUE, "options.interleaving", "disagrees", 3, 4, 2);
    SET_AXES(s, 2, 3);
    REJECT_RESOLVE(s, ND_STATUS_INVALID_VALUE, "options.interleaving", "disagrees", 3, 4, 2);
    s.interleaving = false;
    SET_AXES(s, -1);
    REJECT_RESOLVE(s, ND_STATUS_INVALID_VALUE, "options.interleaving", "interleaving false", 3, 4,
                   2);
    // Without interleaving_given (keras' default channels last) the axis simply wins.
    s = spec_of(ND_LAYER_TYPE_BATCH_NORM, ND_CONVENTION_KERAS);
    SET_AXES(s, 1);
    struct nd_layout lay = RESOLVE_OK(s, 3, 4, 2);
    ck_assert_uint_eq(lay.param_mask, BIT(1));
}
END_TEST

START_TEST(test_resolve_rejects_levels) {
    const char *agg = "options.aggregation_levels", *sc = "options.scaling_levels";
    struct nd_spec s = spec_of(ND_LAYER_TYPE_NORMALIZATION, ND_CONVENTION_WOLFRAM);
    s.aggregation = LIST(3);
    REJECT_RESOLVE(s, ND_STATUS_INVALID_VALUE, agg, "out of range", 3, 4);
    s.aggregation = LIST(-3);
    REJECT_RESOLVE(s, ND_STATUS_INVALID_VALUE, agg, "out of range", 3, 4);
    s.aggregation = LIST(1, -2);
    REJECT_RESOLVE(s, ND_STATUS_INVALID_VALUE, agg, "duplicate", 3, 4);
    s.aggregation = LIST(0); // unvalidated
    REJECT_RESOLVE(s, ND_STATUS_INVALID_VALUE, agg, "out of range", 3, 4);
    s.aggregation.count = 12;
    REJECT_RESOLVE(s, ND_STATUS_INVALID_VALUE, agg, "at most 8", 3, 4);
    s.aggregation = (struct nd_levels){.kind = ND_LEVELS_LIST, .count = 0};
    REJECT_RESOLVE(s, ND_STATUS_INVALID_VALUE, agg, "at least one", 3, 4);
    s.aggregation = parsed("3;;All");
    REJECT_RESOLVE(s, ND_STATUS_INVALID_VALUE, agg, "span 3;;All is out of range", 3, 4);
    s.aggregation = parsed("-3;;All");
    REJECT_RESOLVE(s, ND_STATUS_INVALID_VALUE, agg, "out of range", 3, 4);
    s.aggregation = parsed("1;;3");
    REJECT_RESOLVE(s, ND_STATUS_INVALID_VALUE, agg, "out of range", 3, 4);
    s.aggregation = parsed("2;;-2"); // level 2 to level 1 on rank 2
    REJECT_RESOLVE(s, ND_STATUS_INVALID_VALUE, agg, "empty", 3, 4);
    s.aggregation = parsed("Same"); // unvalidated
    REJECT_RESOLVE(s, ND_STATUS_INVALID_VALUE, agg, "expected a list", 3, 4);
    // Wolfram's default on a vector: level 2 does not exist.
    s = spec_of(ND_LAYER_TYPE_NORMALIZATION, ND_CONVENTION_WOLFRAM);
    REJECT_RESOLVE(s, ND_STATUS_INVALID_VALUE, agg, "out of range", 5);
    s.scaling = LIST(3);
    REJECT_RESOLVE(s, ND_STATUS_INVALID_VALUE, sc, "out of range", 3, 4);
    s.scaling = LIST(2, -1);
    REJECT_RESOLVE(s, ND_STATUS_INVALID_VALUE, sc, "duplicate", 3, 4);
    s.scaling = parsed("-1;;1");
    REJECT_RESOLVE(s, ND_STATUS_INVALID_VALUE, sc, "empty", 3, 4);
    s.scaling.kind = (enum nd_levels_kind)17;
    REJECT_RESOLVE(s, ND_STATUS_INVALID_VALUE, sc, "expected", 3, 4);
}
END_TEST

START_TEST(test_resolve_rejects_group_number) {
    const char *gn = "options.group_number";
    struct nd_spec s = spec_of(ND_LAYER_TYPE_NORMALIZATION, ND_CONVENTION_WOLFRAM);
    s.aggregation = parsed("All");
    s.ngroup = 2;
    s.group_number[0] = 3;
    s.group_number[1] = 1;
    EXPECT_VALID(s);
    REJECT_RESOLVE(s, ND_STATUS_INVALID_VALUE, gn, "level 1 of size 4", 4, 3);
    s.group_number[0] = 2;
    s.group_number[1] = 2;
    REJECT_RESOLVE(s, ND_STATUS_INVALID_VALUE, gn, "2 groups", 4, 3);
    s.aggregation = LIST(2);
    REJECT_RESOLVE(s, ND_STATUS_INVALID_VALUE, gn, "2 entries for 1 aggregation levels", 4, 3);
    s.ngroup = -1;
    REJECT_RESOLVE(s, ND_STATUS_INVALID_VALUE, gn, "entries", 4, 3);
    s.ngroup = 1;
    s.group_number[0] = 0; // unvalidated
    REJECT_RESOLVE(s, ND_STATUS_INVALID_VALUE, gn, ">= 1", 4, 3);
}
END_TEST

START_TEST(test_resolve_rejects_presets) {
    struct nd_spec s = spec_of(ND_LAYER_TYPE_LAYER_NORM, ND_CONVENTION_WOLFRAM);
    SET_AXES(s, 3);
    REJECT_RESOLVE(s, ND_STATUS_INVALID_VALUE, "options.axis", "out of range", 3, 4);
    SET_AXES(s, -3);
    REJECT_RESOLVE(s, ND_STATUS_INVALID_VALUE, "options.axis", "batch axis", 3, 4);
    SET_AXES(s, -1, 2);
    REJECT_RESOLVE(s, ND_STATUS_INVALID_VALUE, "options.axis", "duplicate", 3, 4);
    s.naxes = -1;
    REJECT_RESOLVE(s, ND_STATUS_INVALID_VALUE, "options.axis", "axes", 3, 4);
    s = spec_of(ND_LAYER_TYPE_INSTANCE_NORM, ND_CONVENTION_WOLFRAM);
    SET_AXES(s, 1, 2);
    REJECT_RESOLVE(s, ND_STATUS_INVALID_VALUE, "options.axis", "single channel axis", 3, 4);
    s = spec_of(ND_LAYER_TYPE_INSTANCE_NORM, ND_CONVENTION_WOLFRAM);
    REJECT_RESOLVE(s, ND_STATUS_SHAPE_MISMATCH, "input", "rank of at least 2", 3);
    s = spec_of(ND_LAYER_TYPE_GROUP_NORM, ND_CONVENTION_WOLFRAM);
    s.groups = 3;
    REJECT_RESOLVE(s, ND_STATUS_INVALID_VALUE, "options.groups", "divide the 4 channels", 4, 3);
    s.groups = 32; // the default needs at least 32 channels
    REJECT_RESOLVE(s, ND_STATUS_INVALID_VALUE, "options.groups", "groups 32", 4, 3);
    s.groups = 0; // unvalidated
    REJECT_RESOLVE(s, ND_STATUS_INVALID_VALUE, "options.groups", ">= 1", 4, 3);
    s = spec_of(ND_LAYER_TYPE_GROUP_NORM, ND_CONVENTION_WOLFRAM);
    SET_AXES(s, 4);
    REJECT_RESOLVE(s, ND_STATUS_INVALID_VALUE, "options.axis", "out of range", 4, 3);
}
END_TEST

START_TEST(test_resolve_failure_leaves_out) {
    struct nd_spec s = spec_of(ND_LAYER_TYPE_GROUP_NORM, ND_CONVENTION_WOLFRAM);
    s.groups = 3;
    struct nd_layout lay, before;
    memset(&lay, 0x5a, sizeof lay);
    before = lay;
    struct nd_error err;
    ck_assert_int_eq(resolve(&s, 2, (int64_t[]){4, 3}, &lay, &err), ND_STATUS_INVALID_VALUE);
    ck_assert_int_eq(memcmp(&lay, &before, sizeof lay), 0);
    ck_assert_int_eq(resolve(&s, 2, (int64_t[]){4, 3}, &lay, NULL), ND_STATUS_INVALID_VALUE);
}
END_TEST

// The rejections of the shared conformance cases (err-*), replayed the way api/ drives the
// engine: parse names, take the defaults, set the options, validate, resolve.
START_TEST(test_conformance_rejections) {
    struct nd_spec s;
    struct nd_error err;
    // err-bad-values: epsilon -1, momentum 1.5.
    s = spec_of(ND_LAYER_TYPE_BATCH_NORM, ND_CONVENTION_WOLFRAM);
    s.input = shape_of(1, (int64_t[]){3});
    s.epsilon = -1;
    REJECT(s, "options.epsilon", "epsilon");
    s = spec_of(ND_LAYER_TYPE_BATCH_NORM, ND_CONVENTION_WOLFRAM);
    s.momentum = 1.5;
    REJECT(s, "options.momentum", "momentum");
    // err-bad-values-3: moving_variance "sometimes"; GroupNormalization groups 0.
    enum nd_variance_estimator v;
    nd_error_clear(&err);
    CHECK_ERR(nd_variance_estimator_parse("sometimes", &v, &err), err, ND_STATUS_INVALID_VALUE, "",
              "unbiased");
    nd_error_prefix_field(&err, "options.moving_variance"); // how api/ names it
    ck_assert_str_eq(err.field, "options.moving_variance");
    s = spec_of(ND_LAYER_TYPE_GROUP_NORM, ND_CONVENTION_WOLFRAM);
    s.input = shape_of(2, (int64_t[]){4, 2});
    s.groups = 0;
    REJECT(s, "options.groups", "groups");
    // err-axis-invalid: axis 0.
    s = spec_of(ND_LAYER_TYPE_BATCH_NORM, ND_CONVENTION_WOLFRAM);
    s.input = shape_of(2, (int64_t[]){3, 4});
    SET_AXES(s, 0);
    REJECT(s, "options.axis", "batch axis");
    // err-bad-level-spec: "2;;x"; [3] on rank 2.
    struct nd_levels lv;
    nd_error_clear(&err);
    CHECK_ERR(nd_levels_parse("2;;x", &lv, &err), err, ND_STATUS_INVALID_VALUE, "", "2;;x");
    s = spec_of(ND_LAYER_TYPE_NORMALIZATION, ND_CONVENTION_WOLFRAM);
    s.input = shape_of(2, (int64_t[]){3, 4});
    s.aggregation = LIST(3);
    EXPECT_VALID(s);
    REJECT_RESOLVE(s, ND_STATUS_INVALID_VALUE, "options.aggregation_levels", "level 3", 3, 4);
    // err-group-not-dividing: "All" with group_number [3, 1] on [4, 3].
    s = spec_of(ND_LAYER_TYPE_NORMALIZATION, ND_CONVENTION_WOLFRAM);
    s.aggregation = parsed("All");
    s.ngroup = 2;
    s.group_number[0] = 3;
    s.group_number[1] = 1;
    EXPECT_VALID(s);
    REJECT_RESOLVE(s, ND_STATUS_INVALID_VALUE, "options.group_number", "divide", 4, 3);
    // err-batchnorm-nd-rank: BatchNorm2D (pytorch) with input [3, 4].
    enum nd_layer_type t;
    int32_t nd;
    ck_assert_int_eq(nd_layer_type_parse("BatchNorm2D", &t, &nd, NULL), ND_STATUS_OK);
    nd_spec_defaults(&s, t, nd, ND_CONVENTION_PYTORCH);
    s.input = shape_of(2, (int64_t[]){3, 4});
    EXPECT_VALID(s);
    REJECT_RESOLVE(s, ND_STATUS_SHAPE_MISMATCH, "input", "BatchNorm2D", 3, 4);
    // momentum null is pytorch's cumulative average only.
    s = spec_of(ND_LAYER_TYPE_BATCH_NORM, ND_CONVENTION_WOLFRAM);
    s.momentum_null = true;
    REJECT(s, "options.momentum", "null");
}
END_TEST

// ---- each framework's names (API.md 1.1a) ----

// The spec a definition naming `name` gets under conv, as api/ builds it.
static struct nd_spec named_spec(const char *name, enum nd_convention conv) {
    struct nd_type_name n;
    struct nd_error err;
    nd_error_clear(&err);
    ck_assert_msg(nd_type_name_lookup(name, &n, &err) == ND_STATUS_OK, "%s: %s", name, err.msg);
    struct nd_spec s;
    nd_spec_defaults_named(&s, &n, conv, ND_CONVENTION_FROM_TYPE);
    return s;
}

START_TEST(test_framework_type_names) {
    static const struct {
        const char *name;
        enum nd_layer_type type;
        enum nd_type_family family;
        int32_t min_rank, max_rank, batchnorm_nd;
    } want[] = {
        {"BatchNorm1d", ND_LAYER_TYPE_BATCH_NORM, ND_TYPE_FAMILY_PYTORCH, 1, 2, 0},
        {"BatchNorm2d", ND_LAYER_TYPE_BATCH_NORM, ND_TYPE_FAMILY_PYTORCH, 3, 3, 0},
        {"BatchNorm3d", ND_LAYER_TYPE_BATCH_NORM, ND_TYPE_FAMILY_PYTORCH, 4, 4, 0},
        {"InstanceNorm1d", ND_LAYER_TYPE_INSTANCE_NORM, ND_TYPE_FAMILY_PYTORCH, 2, 2, 0},
        {"InstanceNorm2d", ND_LAYER_TYPE_INSTANCE_NORM, ND_TYPE_FAMILY_PYTORCH, 3, 3, 0},
        {"InstanceNorm3d", ND_LAYER_TYPE_INSTANCE_NORM, ND_TYPE_FAMILY_PYTORCH, 4, 4, 0},
        {"LayerNorm", ND_LAYER_TYPE_LAYER_NORM, ND_TYPE_FAMILY_PYTORCH, 0, 0, 0},
        {"GroupNorm", ND_LAYER_TYPE_GROUP_NORM, ND_TYPE_FAMILY_PYTORCH, 1, 0, 0},
        {"RMSNorm", ND_LAYER_TYPE_RMS_NORM, ND_TYPE_FAMILY_PYTORCH, 0, 0, 0},
        {"BatchNorm1D", ND_LAYER_TYPE_BATCH_NORM, ND_TYPE_FAMILY_PUZZLELIB, 0, 0, 1},
        {"BatchNorm3D", ND_LAYER_TYPE_BATCH_NORM, ND_TYPE_FAMILY_PUZZLELIB, 0, 0, 3},
        {"BatchNorm4D", ND_LAYER_TYPE_BATCH_NORM, ND_TYPE_FAMILY_NONE, 0, 0, 4},
        {"BatchNormalizationLayer", ND_LAYER_TYPE_BATCH_NORM, ND_TYPE_FAMILY_WOLFRAM, 0, 0, 0},
        {"NormalizationLayer", ND_LAYER_TYPE_NORMALIZATION, ND_TYPE_FAMILY_WOLFRAM, 0, 0, 0},
        {"BatchNorm", ND_LAYER_TYPE_BATCH_NORM, ND_TYPE_FAMILY_NONE, 0, 0, 0},
        {"BatchNormalization", ND_LAYER_TYPE_BATCH_NORM, ND_TYPE_FAMILY_KERAS, 0, 0, 0},
        {"LayerNormalization", ND_LAYER_TYPE_LAYER_NORM, ND_TYPE_FAMILY_KERAS, 0, 0, 0},
        {"GroupNormalization", ND_LAYER_TYPE_GROUP_NORM, ND_TYPE_FAMILY_KERAS, 0, 0, 0},
        {"InstanceNormalization", ND_LAYER_TYPE_INSTANCE_NORM, ND_TYPE_FAMILY_NONE, 0, 0, 0},
        {"RMSNormalization", ND_LAYER_TYPE_RMS_NORM, ND_TYPE_FAMILY_NONE, 0, 0, 0},
        {"Normalization", ND_LAYER_TYPE_NORMALIZATION, ND_TYPE_FAMILY_NONE, 0, 0, 0},
    };
    for (int i = 0; i < (int)(sizeof want / sizeof want[0]); i++) {
        struct nd_type_name n, back;
        struct nd_error err;
        nd_error_clear(&err);
        ck_assert_int_eq(nd_type_name_lookup(want[i].name, &n, &err), ND_STATUS_OK);
        ck_assert_str_eq(n.name, want[i].name);
        ck_assert_int_eq(n.type, want[i].type);
        ck_assert_int_eq(n.family, want[i].family);
        ck_assert_int_eq(n.min_rank, want[i].min_rank);
        ck_assert_int_eq(n.max_rank, want[i].max_rank);
        ck_assert_int_eq(n.batchnorm_nd, want[i].batchnorm_nd);
        // The id names the spelling back (what GET shows as type_given).
        ck_assert(nd_type_name_of(n.type, n.id, &back));
        ck_assert_str_eq(back.name, want[i].name);
        enum nd_layer_type t;
        ck_assert_int_eq(nd_layer_type_parse(want[i].name, &t, NULL, &err), ND_STATUS_OK);
        ck_assert_int_eq(t, want[i].type);
    }
    struct nd_type_name n;
    ck_assert(!nd_type_name_of(ND_LAYER_TYPE_LAYER_NORM, 99, &n));
    ck_assert(!nd_type_name_of(ND_LAYER_TYPE_COUNT, 0, &n));
    // An id of another type's spelling is no spelling of this type.
    ck_assert(nd_type_name_lookup("LayerNorm", &n, NULL) == ND_STATUS_OK);
    ck_assert(!nd_type_name_of(ND_LAYER_TYPE_BATCH_NORM, n.id, &n));
    struct nd_error err;
    nd_error_clear(&err);
    CHECK_ERR(nd_type_name_lookup("batchnorm2d", &n, &err), err, ND_STATUS_INVALID_VALUE, "",
              "BatchNorm1d..3d");
    ck_assert_int_eq(nd_type_name_lookup(NULL, &n, NULL), ND_STATUS_INVALID_ARGUMENT);
    ck_assert_str_eq(nd_convention_from_name(ND_CONVENTION_FROM_TYPE), "type");
    ck_assert_str_eq(nd_convention_from_name(ND_CONVENTION_FROM_REQUEST), "request");
    ck_assert_str_eq(nd_convention_from_name(ND_CONVENTION_FROM_DEFAULT), "default");
    ck_assert_str_eq(nd_convention_from_name((enum nd_convention_from)42), "unknown");
}
END_TEST

START_TEST(test_framework_default_conventions) {
    static const struct {
        const char *name;
        bool keras_args;
        enum nd_convention conv;
        enum nd_convention_from from;
    } want[] = {
        {"BatchNorm2d", false, ND_CONVENTION_PYTORCH, ND_CONVENTION_FROM_TYPE},
        {"RMSNorm", true, ND_CONVENTION_PYTORCH, ND_CONVENTION_FROM_TYPE},
        {"BatchNorm2D", false, ND_CONVENTION_PUZZLELIB, ND_CONVENTION_FROM_TYPE},
        {"BatchNorm5D", false, ND_CONVENTION_WOLFRAM, ND_CONVENTION_FROM_DEFAULT},
        {"BatchNormalizationLayer", false, ND_CONVENTION_WOLFRAM, ND_CONVENTION_FROM_TYPE},
        {"BatchNormalization", false, ND_CONVENTION_WOLFRAM, ND_CONVENTION_FROM_DEFAULT},
        {"BatchNormalization", true, ND_CONVENTION_KERAS, ND_CONVENTION_FROM_TYPE},
        {"GroupNormalization", true, ND_CONVENTION_KERAS, ND_CONVENTION_FROM_TYPE},
        {"InstanceNormalization", true, ND_CONVENTION_WOLFRAM, ND_CONVENTION_FROM_DEFAULT},
        {"BatchNorm", false, ND_CONVENTION_WOLFRAM, ND_CONVENTION_FROM_DEFAULT},
    };
    for (int i = 0; i < (int)(sizeof want / sizeof want[0]); i++) {
        struct nd_type_name n;
        ck_assert_int_eq(nd_type_name_lookup(want[i].name, &n, NULL), ND_STATUS_OK);
        enum nd_convention_from from = ND_CONVENTION_FROM_UNKNOWN;
        ck_assert_msg(nd_type_name_convention(&n, want[i].keras_args, &from) == want[i].conv, "%s",
                      want[i].name);
        ck_assert_int_eq(from, want[i].from);
    }
    ck_assert_int_eq(nd_type_name_convention(NULL, true, NULL), ND_CONVENTION_WOLFRAM);
}
END_TEST

START_TEST(test_framework_named_defaults) {
    struct nd_spec s = named_spec("InstanceNorm2d", ND_CONVENTION_PYTORCH);
    ck_assert(nd_spec_is_pytorch_named(&s));
    ck_assert_int_eq(s.convention_from, ND_CONVENTION_FROM_TYPE);
    ck_assert(!s.enabled[ND_ARRAY_SCALING] && !s.enabled[ND_ARRAY_BIASES]); // affine=False
    ck_assert(!nd_spec_tracks_running_stats(&s));
    ck_assert_double_eq(s.epsilon, 1e-5);
    s = named_spec("GroupNorm", ND_CONVENTION_PYTORCH);
    ck_assert_int_eq(s.groups, 0); // required: no default
    s = named_spec("RMSNorm", ND_CONVENTION_PYTORCH);
    ck_assert_double_eq(s.epsilon, FLT_EPSILON);
    ck_assert(s.enabled[ND_ARRAY_SCALING] && !s.enabled[ND_ARRAY_BIASES]);
    s = named_spec("BatchNorm1d", ND_CONVENTION_PYTORCH);
    ck_assert(nd_spec_tracks_running_stats(&s));
    ck_assert_double_eq(s.momentum, 0.1);
    ck_assert_int_eq(s.batchnorm_nd, 0);
    s = named_spec("BatchNorm2D", ND_CONVENTION_PUZZLELIB); // PuzzleLib's: no PyTorch rules
    ck_assert(!nd_spec_is_pytorch_named(&s));
    ck_assert_int_eq(s.batchnorm_nd, 2);
    ck_assert(s.type_alias != 0);
    s = spec_of(ND_LAYER_TYPE_BATCH_NORM, ND_CONVENTION_PYTORCH); // plain defaults
    ck_assert_int_eq(s.type_alias, 0);
    ck_assert_int_eq(s.convention_from, ND_CONVENTION_FROM_UNKNOWN);
    ck_assert(!nd_spec_is_pytorch_named(&s));
    ck_assert(!nd_spec_is_pytorch_named(NULL));
    ck_assert(!nd_spec_tracks_running_stats(NULL));
    nd_spec_defaults_named(NULL, NULL, ND_CONVENTION_WOLFRAM, ND_CONVENTION_FROM_TYPE); // no-op
}
END_TEST

START_TEST(test_framework_complete) {
    struct nd_spec s = named_spec("BatchNorm2d", ND_CONVENTION_PYTORCH);
    s.num_features = 3;
    nd_spec_complete(&s);
    const int64_t bn2[] = {3, AUTO, AUTO};
    struct nd_shape want = shape_of(3, bn2);
    ck_assert(nd_shape_equal(&s.input, &want));
    expect_valid(&s, __LINE__);
    s = named_spec("BatchNorm1d", ND_CONVENTION_PYTORCH);
    s.num_features = 4;
    nd_spec_complete(&s);
    ck_assert_int_eq(s.input.ndim, 1);
    ck_assert_int_eq(s.input.dim[0], 4);
    s = named_spec("InstanceNorm1d", ND_CONVENTION_PYTORCH);
    s.num_features = 2;
    nd_spec_complete(&s);
    ck_assert_int_eq(s.input.ndim, 2);
    ck_assert_int_eq(s.input.dim[1], AUTO);
    s = named_spec("GroupNorm", ND_CONVENTION_PYTORCH); // any rank: stays unknown
    s.num_features = 4;
    s.groups = 2;
    nd_spec_complete(&s);
    ck_assert_int_eq(s.input.ndim, ND_RANK_UNKNOWN);
    expect_valid(&s, __LINE__);
    s = named_spec("LayerNorm", ND_CONVENTION_PYTORCH);
    s.normalized_shape = shape_of(2, (const int64_t[]){3, 4});
    nd_spec_complete(&s);
    ck_assert_int_eq(s.naxes, 2);
    ck_assert_int_eq(s.axes[0], -2);
    ck_assert_int_eq(s.axes[1], -1);
    ck_assert(nd_shape_equal(&s.input, &s.normalized_shape));
    struct nd_layout l;
    struct nd_error err;
    ck_assert_int_eq(resolve(&s, 3, (const int64_t[]){5, 3, 4}, &l, &err), ND_STATUS_OK);
    ck_assert_uint_eq(l.reduce_mask, BIT(2) | BIT(3));
    ck_assert_uint_eq(l.param_mask, BIT(2) | BIT(3));
    // A given input stays as given.
    s = named_spec("BatchNorm1d", ND_CONVENTION_PYTORCH);
    s.num_features = 2;
    s.input = shape_of(2, (const int64_t[]){2, AUTO});
    nd_spec_complete(&s);
    ck_assert_int_eq(s.input.ndim, 2);
    nd_spec_complete(NULL);
}
END_TEST

START_TEST(test_framework_validate_rejects) {
    struct nd_spec s = named_spec("BatchNorm2d", ND_CONVENTION_PYTORCH);
    REJECT(s, "options.num_features", "required argument of PyTorch's BatchNorm2d");
    s.num_features = -1;
    REJECT(s, "options.num_features", ">= 1");
    s.num_features = 3;
    s.epsilon = 0.0;
    REJECT(s, "options.eps", "eps must be > 0"); // PyTorch's spelling for PyTorch's classes
    s = named_spec("InstanceNorm1d", ND_CONVENTION_PYTORCH);
    REJECT(s, "options.num_features", "InstanceNorm1d");
    s.num_features = 3;
    s.momentum = 1.5;
    REJECT(s, "options.momentum", "[0, 1]");
    s = named_spec("GroupNorm", ND_CONVENTION_PYTORCH);
    s.num_features = 4;
    REJECT(s, "options.num_groups", "num_groups");
    s.groups = 3;
    REJECT(s, "options.num_channels", "num_channels must be divisible by num_groups");
    s.groups = -2;
    REJECT(s, "options.num_groups", ">= 1");
    s.groups = 2;
    s.num_features = 0;
    REJECT(s, "options.num_channels", "num_channels");
    s = named_spec("LayerNorm", ND_CONVENTION_PYTORCH);
    REJECT(s, "options.normalized_shape", "required argument of PyTorch's LayerNorm");
    s.normalized_shape = shape_of(2, (const int64_t[]){3, 0});
    REJECT(s, "options.normalized_shape", ">= 1");
    s = named_spec("RMSNorm", ND_CONVENTION_PYTORCH);
    REJECT(s, "options.normalized_shape", "RMSNorm");
    // The canonical names keep their fields and have no required sizes.
    s = spec_of(ND_LAYER_TYPE_GROUP_NORM, ND_CONVENTION_PYTORCH);
    s.groups = 0;
    REJECT(s, "options.groups", "groups must be >= 1");
    s = spec_of(ND_LAYER_TYPE_BATCH_NORM, ND_CONVENTION_PYTORCH);
    expect_valid(&s, __LINE__);
    // track_running_stats=False drops both moving statistics; one alone is no layer.
    s.enabled[ND_ARRAY_MOVING_MEAN] = false;
    REJECT(s, "arrays.MovingMean", "alone");
    s.enabled[ND_ARRAY_MOVING_MEAN] = true;
    s.enabled[ND_ARRAY_MOVING_VARIANCE] = false;
    REJECT(s, "arrays.MovingVariance", "track_running_stats");
    s.enabled[ND_ARRAY_MOVING_MEAN] = false;
    expect_valid(&s, __LINE__);
    ck_assert(!nd_spec_tracks_running_stats(&s));
    // InstanceNorm*d(track_running_stats=True) has both, with a numeric momentum; types that
    // never track have neither.
    s = named_spec("InstanceNorm1d", ND_CONVENTION_PYTORCH);
    s.num_features = 3;
    ck_assert(!nd_spec_tracks_running_stats(&s));
    ck_assert_int_eq(nd_spec_array_count(&s), ND_ARRAY_AFFINE_COUNT);
    s.enabled[ND_ARRAY_MOVING_MEAN] = s.enabled[ND_ARRAY_MOVING_VARIANCE] = true;
    expect_valid(&s, __LINE__);
    ck_assert(nd_spec_tracks_running_stats(&s));
    ck_assert_int_eq(nd_spec_array_count(&s), ND_ARRAY_COUNT);
    s.momentum_null = true;
    REJECT(s, "options.momentum", "needs a number as momentum");
    s.momentum_null = false;
    s.enabled[ND_ARRAY_MOVING_VARIANCE] = false;
    REJECT(s, "arrays.MovingVariance", "alone");
    s = spec_of(ND_LAYER_TYPE_LAYER_NORM, ND_CONVENTION_PYTORCH);
    s.enabled[ND_ARRAY_MOVING_MEAN] = s.enabled[ND_ARRAY_MOVING_VARIANCE] = true;
    REJECT(s, "arrays.MovingMean", "keeps no moving statistics");
}
END_TEST

START_TEST(test_framework_resolve_rejects) {
    struct nd_spec s = named_spec("BatchNorm2d", ND_CONVENTION_PYTORCH);
    s.num_features = 3;
    REJECT_RESOLVE(s, ND_STATUS_SHAPE_MISMATCH, "input", "expects a 4D input (got 3D input)", 3, 4);
    REJECT_RESOLVE(s, ND_STATUS_INVALID_VALUE, "options.num_features",
                   "num_features is 3 but the input has 4 channels", 4, 2, 2);
    struct nd_layout l;
    struct nd_error err;
    ck_assert_int_eq(resolve(&s, 3, (const int64_t[]){3, 5, 6}, &l, &err), ND_STATUS_OK);
    ck_assert_int_eq(resolve(&s, 3, (const int64_t[]){AUTO, 5, 6}, &l, &err), ND_STATUS_OK);
    s = named_spec("BatchNorm1d", ND_CONVENTION_PYTORCH);
    s.num_features = 3;
    REJECT_RESOLVE(s, ND_STATUS_SHAPE_MISMATCH, "input", "expects a 2D or 3D input", 3, 4, 4);
    ck_assert_int_eq(resolve(&s, 1, (const int64_t[]){3}, &l, &err), ND_STATUS_OK);
    ck_assert_int_eq(resolve(&s, 2, (const int64_t[]){3, 7}, &l, &err), ND_STATUS_OK);
    s = named_spec("InstanceNorm3d", ND_CONVENTION_PYTORCH);
    s.num_features = 2;
    REJECT_RESOLVE(s, ND_STATUS_SHAPE_MISMATCH, "input", "5D", 2, 3, 3);
    REJECT_RESOLVE(s, ND_STATUS_INVALID_VALUE, "options.num_features", "2", 3, 2, 2, 2);
    s = named_spec("GroupNorm", ND_CONVENTION_PYTORCH);
    s.num_features = 4;
    s.groups = 2;
    REJECT_RESOLVE(s, ND_STATUS_INVALID_VALUE, "options.num_channels",
                   "num_channels is 4 but the input has 6 channels", 6, 3);
    ck_assert_int_eq(resolve(&s, 1, (const int64_t[]){4}, &l, &err), ND_STATUS_OK);
    s = named_spec("LayerNorm", ND_CONVENTION_PYTORCH);
    s.normalized_shape = shape_of(2, (const int64_t[]){3, 4});
    nd_spec_complete(&s);
    REJECT_RESOLVE(s, ND_STATUS_INVALID_VALUE, "options.normalized_shape",
                   "Given normalized_shape=[3, 4], expected input with shape [*, 3, 4]", 4, 3);
    REJECT_RESOLVE(s, ND_STATUS_INVALID_VALUE, "options.normalized_shape", "[*, 3, 4]", 4);
}
END_TEST

// ---- the table of plain options (core/spec_fields.def) ----

// Every row is found by its name and alias, and its member lies inside struct nd_spec.
START_TEST(test_fields_table) {
    ck_assert_int_gt(ND_SPEC_FIELD_COUNT, 0);
    for (int i = 0; i < ND_SPEC_FIELD_COUNT; i++) {
        const struct nd_spec_field *f = &nd_spec_fields[i];
        ck_assert_ptr_eq(nd_spec_field_find(f->name), f);
        if (f->alias)
            ck_assert_ptr_eq(nd_spec_field_find(f->alias), f);
        ck_assert_uint_le(f->offset + f->size, sizeof(struct nd_spec));
        ck_assert_uint_ne(f->types, 0);
        ck_assert_uint_eq(f->torch & ~ND_T_ALL, 0);
        ck_assert_uint_ge(f->since, 1);
    }
    ck_assert_ptr_eq(nd_spec_field_find("initFactor"), &nd_spec_fields[ND_SPEC_FIELD_init_factor]);
    ck_assert_ptr_null(nd_spec_field_find("epsilon")); // hand-written: not a row
    ck_assert_ptr_null(nd_spec_field_find(NULL));
    ck_assert_ptr_null(nd_spec_field_ptr(NULL, &nd_spec_fields[0]));
}
END_TEST

// nd_spec_defaults gives every row its dflt, under every type and convention, and the row
// reads as set exactly when it differs from false, 0 or "".
START_TEST(test_fields_defaults) {
    for (int t = 0; t < ND_LAYER_TYPE_COUNT; t++) {
        for (int c = 0; c < ND_CONVENTION_COUNT; c++) {
            struct nd_spec s = spec_of((enum nd_layer_type)t, (enum nd_convention)c);
            for (int i = 0; i < ND_SPEC_FIELD_COUNT; i++) {
                const struct nd_spec_field *f = &nd_spec_fields[i];
                const void *p = nd_spec_field_cptr(&s, f);
                if (f->kind == ND_FIELD_F64)
                    ck_assert_double_eq(*(const double *)p, f->dflt);
                else if (f->kind == ND_FIELD_BOOL)
                    ck_assert_int_eq(*(const bool *)p, f->dflt != 0.0);
                else if (f->kind == ND_FIELD_I64)
                    ck_assert_int_eq(*(const int64_t *)p, (int64_t)f->dflt);
                else
                    ck_assert_str_eq(p, "");
                ck_assert_int_eq(nd_spec_field_is_set(&s, f), f->dflt != 0.0);
            }
        }
    }
    struct nd_spec s = spec_of(ND_LAYER_TYPE_GROUP_NORM, ND_CONVENTION_WOLFRAM);
    ck_assert_str_eq(s.description, "");
    s.description[0] = 'x';
    ck_assert(nd_spec_field_is_set(&s, nd_spec_field_find("description")));
}
END_TEST

// A description may hold 256 bytes on every type, PyTorch-named ones too; a member without its
// NUL (a C caller's overrun) is named.
START_TEST(test_fields_description_rejected) {
    for (int t = 0; t < ND_LAYER_TYPE_COUNT; t++) {
        struct nd_spec s = spec_of((enum nd_layer_type)t, ND_CONVENTION_KERAS);
        memset(s.description, 'd', sizeof s.description - 1);
        expect_valid(&s, __LINE__);
        memset(s.description, 'd', sizeof s.description);
        REJECT(s, "options.description", "longer than 256 bytes");
    }
}
END_TEST

// Every enum parser takes each of its names back to its value, and its message for an unknown
// name lists all of them (the list is written from the same table the parser reads).
#define ENUM_ROUND_TRIP(count, type, name_fn, parse_fn)                                            \
    do {                                                                                           \
        struct nd_error err;                                                                       \
        for (int v = 0; v < (count); v++) {                                                        \
            type got;                                                                              \
            ck_assert_int_eq(parse_fn(name_fn((type)v), &got, &err), ND_STATUS_OK);                \
            ck_assert_int_eq((int)got, v);                                                         \
        }                                                                                          \
        type got;                                                                                  \
        nd_error_clear(&err);                                                                      \
        ck_assert_int_eq(parse_fn("no such name", &got, &err), ND_STATUS_INVALID_VALUE);           \
        ck_assert_msg(strstr(err.msg, "\"no such name\""), "%s", err.msg);                         \
        for (int v = 0; v < (count); v++)                                                          \
            ck_assert_msg(strstr(err.msg, name_fn((type)v)), "%s lacks %s", err.msg,               \
                          name_fn((type)v));                                                       \
    } while (0)

START_TEST(test_enum_parsers_list_their_tables) {
    ENUM_ROUND_TRIP(ND_CONVENTION_COUNT, enum nd_convention, nd_convention_name,
                    nd_convention_parse);
    ENUM_ROUND_TRIP(2, enum nd_variance_estimator, nd_variance_estimator_name,
                    nd_variance_estimator_parse);
    ENUM_ROUND_TRIP(2, enum nd_method, nd_method_name, nd_method_parse);
    ENUM_ROUND_TRIP(ND_INIT_COUNT, enum nd_init_kind, nd_init_kind_name, nd_init_kind_parse);
    ENUM_ROUND_TRIP(ND_OPTIMIZER_COUNT, enum nd_optimizer_kind, nd_optimizer_kind_name,
                    nd_optimizer_kind_parse);
    ENUM_ROUND_TRIP(ND_CONSTRAINT_COUNT, enum nd_constraint_kind, nd_constraint_kind_name,
                    nd_constraint_kind_parse);
}
END_TEST

Suite *spec_suite(void) {
    Suite *s = suite_create("spec");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_type_names_round_trip);
    tcase_add_test(tc, test_enum_parsers_list_their_tables);
    tcase_add_test(tc, test_type_aliases);
    tcase_add_test(tc, test_framework_type_names);
    tcase_add_test(tc, test_framework_default_conventions);
    tcase_add_test(tc, test_framework_named_defaults);
    tcase_add_test(tc, test_framework_complete);
    tcase_add_test(tc, test_convention_names);
    tcase_add_test(tc, test_array_names_and_aliases);
    tcase_add_test(tc, test_estimator_and_method_names);
    tcase_add_test(tc, test_levels_parse_accepted);
    tcase_add_test(tc, test_levels_format_lists);
    tcase_add_test(tc, test_batch_defaults_per_convention);
    tcase_add_test(tc, test_batch_defaults_batchnorm_nd);
    tcase_add_test(tc, test_momentum_rules);
    tcase_add_test(tc, test_puzzlelib_scaling_initializer);
    tcase_add_test(tc, test_normalization_defaults_per_convention);
    tcase_add_test(tc, test_preset_defaults);
    tcase_add_test(tc, test_validate_accepts_edges);
    tcase_add_test(tc, test_resolve_batch_channels_first);
    tcase_add_test(tc, test_resolve_batch_channels_last);
    tcase_add_test(tc, test_resolve_batch_axes);
    tcase_add_test(tc, test_resolve_batchnorm_nd);
    tcase_add_test(tc, test_resolve_normalization_defaults);
    tcase_add_test(tc, test_resolve_normalization_levels);
    tcase_add_test(tc, test_resolve_group_number);
    tcase_add_test(tc, test_resolve_group_number_levels);
    tcase_add_test(tc, test_resolve_auto_dims);
    tcase_add_test(tc, test_resolve_layer_norm);
    tcase_add_test(tc, test_resolve_group_norm);
    tcase_add_test(tc, test_resolve_instance_norm);
    suite_add_tcase(s, tc);
    TCase *tl = tcase_create("limits");
    tcase_add_test(tl, test_limits_max_rank);
    tcase_add_test(tl, test_limits_channel_overflow);
    tcase_add_test(tl, test_limits_messages_bounded);
    tcase_add_test(tl, test_limits_levels_format_small_buffer);
    suite_add_tcase(s, tl);
    TCase *tf = tcase_create("fields");
    tcase_add_test(tf, test_fields_table);
    tcase_add_test(tf, test_fields_defaults);
    tcase_add_test(tf, test_fields_description_rejected);
    suite_add_tcase(s, tf);
    TCase *te = tcase_create("errors");
    tcase_add_test(te, test_unknown_names);
    tcase_add_test(te, test_levels_parse_rejected);
    tcase_add_test(te, test_null_arguments);
    tcase_add_test(te, test_defaults_null_and_out_of_range);
    tcase_add_test(te, test_validate_rejects_common);
    tcase_add_test(te, test_validate_rejects_batch_options);
    tcase_add_test(te, test_validate_rejects_levels);
    tcase_add_test(te, test_validate_rejects_norm_options);
    tcase_add_test(te, test_validate_rejects_nested);
    tcase_add_test(te, test_validate_first_error_wins);
    tcase_add_test(te, test_resolve_rejects_shape);
    tcase_add_test(te, test_resolve_rejects_batch);
    tcase_add_test(te, test_resolve_rejects_levels);
    tcase_add_test(te, test_resolve_rejects_group_number);
    tcase_add_test(te, test_resolve_rejects_presets);
    tcase_add_test(te, test_resolve_failure_leaves_out);
    tcase_add_test(te, test_conformance_rejections);
    tcase_add_test(te, test_framework_validate_rejects);
    tcase_add_test(te, test_framework_resolve_rejects);
    suite_add_tcase(s, te);
    return s;
}
