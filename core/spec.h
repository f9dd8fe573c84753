// spec.h - layer definitions: types, conventions, options, defaults, validation, and the
// resolution of a definition against a per-example shape.
//
// A struct nd_spec holds what a user defined (API.md 1.2-1.4) in C types; api/ fills it from
// JSON after nd_spec_defaults, then the engine validates it (nd_spec_validate) and, once the
// per-example shape is known, resolves it into a struct nd_layout: which dimensions share a
// statistic, which carry Scaling/Biases, and how levels split into groups. Error fields are the
// public names: "options.epsilon", "options.aggregation_levels", "input", "arrays.Scaling",
// "learning_rate_multipliers.MovingMean".
//
// Name parsers (types, conventions, arrays, estimators, methods, level strings) leave the
// error field empty, since only the caller knows where the text came from: it names it with
// nd_error_prefix_field(err, "options.method"). Every function here is pure and thread-safe;
// the returned names are static strings ("unknown" for an out-of-range value). A NULL pointer
// where a status is returned gives ND_STATUS_INVALID_ARGUMENT.
#ifndef ND_SPEC_H
#define ND_SPEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/init.h"
#include "core/optim.h"
#include "core/status.h"
#include "core/tensor.h"

// ---- names ----

enum nd_layer_type {
    ND_LAYER_TYPE_BATCH_NORM,    // "BatchNormalization": per-channel batch statistics
    ND_LAYER_TYPE_NORMALIZATION, // "Normalization": Wolfram NormalizationLayer
    ND_LAYER_TYPE_LAYER_NORM,    // presets expanding to Normalization (API.md 1.4)
    ND_LAYER_TYPE_INSTANCE_NORM,
    ND_LAYER_TYPE_GROUP_NORM,
    ND_LAYER_TYPE_RMS_NORM,
    ND_LAYER_TYPE_COUNT
};

// Canonical name ("BatchNormalization", "Normalization", "LayerNormalization",
// "InstanceNormalization", "GroupNormalization", "RMSNormalization"); static.
const char *nd_layer_type_name(enum nd_layer_type type);

// Parses a canonical name or an alias: BatchNormalizationLayer, BatchNorm, BatchNorm1D ..
// BatchNorm7D (setting *batchnorm_nd to N: the per-example rank must then be N + 1; 0 for every
// other name; batchnorm_nd may be NULL), NormalizationLayer. Case-sensitive.
// ND_STATUS_INVALID_VALUE otherwise, with a message listing the accepted spellings.
enum nd_status nd_layer_type_parse(const char *name, enum nd_layer_type *type,
                                   int32_t *batchnorm_nd, struct nd_error *err);

// True for ND_LAYER_TYPE_BATCH_NORM; the other types are the Normalization family.
bool nd_layer_type_is_batch(enum nd_layer_type type);

// True for the types that may keep MovingMean/MovingVariance: BatchNormalization (by default)
// and InstanceNormalization (PyTorch's track_running_stats=True; none by default).
bool nd_layer_type_can_track(enum nd_layer_type type);

// ---- each framework's names (API.md 1.1a) ----

// Whose name a type spelling is: it picks the convention when the request names none.
enum nd_type_family {
    ND_TYPE_FAMILY_NONE,      // canonical or normd's own (BatchNorm, Normalization, ...)
    ND_TYPE_FAMILY_WOLFRAM,   // BatchNormalizationLayer, NormalizationLayer
    ND_TYPE_FAMILY_KERAS,     // BatchNormalization, LayerNormalization, GroupNormalization:
                              // keras only when given a Keras-only argument
    ND_TYPE_FAMILY_PYTORCH,   // BatchNorm1d .. RMSNorm: PyTorch's classes and arguments
    ND_TYPE_FAMILY_PUZZLELIB, // BatchNorm1D, BatchNorm2D, BatchNorm3D
};

// A type spelling and what it implies besides the type.
struct nd_type_name {
    const char *name; // the spelling (static)
    enum nd_layer_type type;
    int32_t batchnorm_nd; // BatchNormND aliases: per-example rank N + 1; else 0
    int32_t id;           // 0 for the canonical names; else the alias' id (nd_spec.type_alias)
    int32_t min_rank, max_rank; // per-example ranks the name allows (0: any; PyTorch classes)
    int32_t spatial_dims;       // PyTorch's BatchNormNd/InstanceNormNd: N; else 0
    enum nd_type_family family;
};

// Looks a spelling up (canonical names and every alias, case-sensitive). INVALID_VALUE with
// the accepted spellings listed otherwise; the field is left to the caller.
enum nd_status nd_type_name_lookup(const char *name, struct nd_type_name *out,
                                   struct nd_error *err);

// The spelling with alias id (0: the canonical name of type). False for an unknown id.
bool nd_type_name_of(enum nd_layer_type type, int32_t id, struct nd_type_name *out);

// Where a layer's convention came from (GET's "convention_from").
enum nd_convention_from {
    ND_CONVENTION_FROM_UNKNOWN, // a layer stored before normd recorded it
    ND_CONVENTION_FROM_DEFAULT,
    ND_CONVENTION_FROM_TYPE, // the type's name (or a Keras type's Keras-only arguments)
    ND_CONVENTION_FROM_REQUEST,
};

// "unknown", "default", "type", "request"; static.
const char *nd_convention_from_name(enum nd_convention_from from);

enum nd_convention {
    ND_CONVENTION_WOLFRAM, // default
    ND_CONVENTION_KERAS,
    ND_CONVENTION_ONNX,
    ND_CONVENTION_PYTORCH,
    ND_CONVENTION_PUZZLELIB,
    ND_CONVENTION_COUNT
};

// "wolfram", "keras", "onnx", "pytorch", "puzzlelib"; static.
const char *nd_convention_name(enum nd_convention conv);
enum nd_status nd_convention_parse(const char *name, enum nd_convention *conv,
                                   struct nd_error *err);

enum nd_array_id {
    ND_ARRAY_SCALING,
    ND_ARRAY_BIASES,
    ND_ARRAY_MOVING_MEAN,     // BatchNormalization; InstanceNormalization tracking them
    ND_ARRAY_MOVING_VARIANCE, // likewise
    ND_ARRAY_COUNT
};

#define ND_ARRAY_AFFINE_COUNT 2 // Scaling and Biases: the arrays gradients reach

// "Scaling", "Biases", "MovingMean", "MovingVariance"; static.
const char *nd_array_name(enum nd_array_id id);

// Parses a canonical array name or an alias: gamma/beta/moving_mean/moving_variance (Keras),
// weight/bias/running_mean/running_var (PyTorch), scale/bias/mean/var (PuzzleLib).
// ND_STATUS_NOT_FOUND for any other text.
enum nd_status nd_array_parse(const char *name, enum nd_array_id *id, struct nd_error *err);

// ---- option values ----

// How a train-step moves MovingMean/MovingVariance towards the batch statistics (API.md 1.3).
enum nd_momentum_rule {
    ND_MOMENTUM_DECAY,           // new = m*old + (1-m)*batch       (wolfram, keras, onnx)
    ND_MOMENTUM_BATCH_WEIGHT,    // new = (1-m)*old + m*batch       (pytorch)
    ND_MOMENTUM_CUMULATIVE,      // new = (1-1/n)*old + (1/n)*batch (pytorch, momentum null)
    ND_MOMENTUM_FACTOR_SCHEDULE, // f = max(init_factor/n, min_factor); (1-f)*old + f*batch
};

enum nd_variance_estimator {
    ND_VARIANCE_BIASED,   // divide by n
    ND_VARIANCE_UNBIASED, // divide by n - 1
};

enum nd_method {
    ND_METHOD_STANDARDIZE, // (x - mean) / sqrt(var + eps)
    ND_METHOD_RMS,         // x / sqrt(mean(x^2) + eps)
};

// "biased"/"unbiased", "Standardize"/"RMS"; static strings, and parsers (INVALID_VALUE).
const char *nd_variance_estimator_name(enum nd_variance_estimator v);
enum nd_status nd_variance_estimator_parse(const char *name, enum nd_variance_estimator *v,
                                           struct nd_error *err);
const char *nd_method_name(enum nd_method m);
enum nd_status nd_method_parse(const char *name, enum nd_method *m, struct nd_error *err);

// A level specification of NormalizationLayer: levels count per-example dimensions from 1,
// negative ones from the end (-1 = last).
enum nd_levels_kind {
    ND_LEVELS_LIST,       // level[0..count)
    ND_LEVELS_ALL,        // "All"
    ND_LEVELS_SPAN,       // "from;;to" (to may be "All": to_all)
    ND_LEVELS_SAME,       // "Same": scaling_levels only, the aggregation levels
    ND_LEVELS_COMPLEMENT, // "Complement": scaling_levels only, the levels not aggregated
};

struct nd_levels {
    enum nd_levels_kind kind;
    int32_t count;
    int32_t level[ND_MAX_RANK];
    int32_t from, to;
    bool to_all;
};

// Parses the string forms "All", "Same", "Complement" and "a;;b" (a, b non-zero integers, b
// may be "All"; spaces around the parts are allowed). ND_STATUS_INVALID_VALUE otherwise.
// Which forms a field accepts is checked by nd_spec_validate.
enum nd_status nd_levels_parse(const char *text, struct nd_levels *out, struct nd_error *err);

// Writes the string form of a non-list spec ("All", "2;;All", "-2;;-1", "Same",
// "Complement"), or "[1, 2]" for a list, into buf (NUL-terminated, cut to size); returns buf.
// NULL levels write "".
char *nd_levels_format(const struct nd_levels *levels, char *buf, size_t size);

// ---- the table of plain options (core/spec_fields.def) ----

// Type masks of the table's rows: bit t for enum nd_layer_type t.
#define ND_T(t) (1u << (t))
#define ND_T_BN ND_T(ND_LAYER_TYPE_BATCH_NORM)
#define ND_T_GN ND_T(ND_LAYER_TYPE_GROUP_NORM)
#define ND_T_FAMILY                                                                                \
    (ND_T(ND_LAYER_TYPE_NORMALIZATION) | ND_T(ND_LAYER_TYPE_LAYER_NORM) |                          \
     ND_T(ND_LAYER_TYPE_INSTANCE_NORM) | ND_T_GN | ND_T(ND_LAYER_TYPE_RMS_NORM))
#define ND_T_ALL   (ND_T_BN | ND_T_FAMILY)
#define ND_T_TORCH (ND_T_ALL & ~ND_T(ND_LAYER_TYPE_NORMALIZATION)) // PyTorch has a class for each

enum nd_field_kind { ND_FIELD_F64, ND_FIELD_BOOL, ND_FIELD_I64, ND_FIELD_STRING };
enum nd_field_range { ND_RANGE_ANY, ND_RANGE_UNIT, ND_RANGE_NONNEG, ND_RANGE_LENGTH };
enum nd_field_show { ND_SHOW_ALWAYS, ND_SHOW_PUZZLELIB, ND_SHOW_SET };

// One row of core/spec_fields.def (its header says what each column means).
struct nd_spec_field {
    const char *name;  // public name: JSON key, error field "options.NAME"
    const char *alias; // or NULL
    size_t offset;     // of the member in struct nd_spec
    size_t size;       // of the member (STRING: max + 1)
    enum nd_field_kind kind;
    unsigned types, torch; // ND_T_* masks
    double dflt;           // F64, BOOL (0/1), I64; STRING: ""
    enum nd_field_range range;
    enum nd_field_show show;
    uint32_t since; // persist format version that first stored it
};

struct nd_spec;

// Ids of the rows, in table order: ND_SPEC_FIELD_<member>.
enum nd_spec_field_id {
#define ND_SPEC_FIELD(name, alias, member, kind, max, types, torch, dflt, range, show, since,      \
                      decl)                                                                        \
    ND_SPEC_FIELD_##member,
#include "core/spec_fields.def"
#undef ND_SPEC_FIELD
    ND_SPEC_FIELD_COUNT
};

// The rows, indexed by enum nd_spec_field_id (static, immutable).
extern const struct nd_spec_field nd_spec_fields[ND_SPEC_FIELD_COUNT];

// The row named name (its public name or alias), or NULL.
const struct nd_spec_field *nd_spec_field_find(const char *name);

// The member of a row in spec (f's kind says its C type); NULL arguments give NULL.
void *nd_spec_field_ptr(struct nd_spec *spec, const struct nd_spec_field *f);
const void *nd_spec_field_cptr(const struct nd_spec *spec, const struct nd_spec_field *f);

// Sets a row's member to its default (dflt; a STRING's is "").
void nd_spec_field_default(struct nd_spec *spec, const struct nd_spec_field *f);

// True when a row's member holds something other than false, 0 or "" (ND_SHOW_SET).
bool nd_spec_field_is_set(const struct nd_spec *spec, const struct nd_spec_field *f);

// The members declared from rows with DECL ROW (spec_fields.def), at the end of struct nd_spec.
#define ND_SPEC_MEMBER_F64(m, max)    double m;
#define ND_SPEC_MEMBER_BOOL(m, max)   bool m;
#define ND_SPEC_MEMBER_I64(m, max)    int64_t m;
#define ND_SPEC_MEMBER_STRING(m, max) char m[(max) + 1];
#define ND_SPEC_DECL_HAND(kind, m, max)
#define ND_SPEC_DECL_ROW(kind, m, max) ND_SPEC_MEMBER_##kind(m, max)

// ---- the definition ----

struct nd_spec {
    enum nd_layer_type type;
    int32_t batchnorm_nd; // N of a BatchNormND alias: per-example rank must be N + 1; else 0
    enum nd_convention convention;
    struct nd_shape input; // per-example shape; ndim ND_RANK_UNKNOWN when not given yet
    double epsilon;
    bool trainable; // false: Keras' frozen layer
    bool inplace;   // PuzzleLib: inference only, a train-step is a conflict

    // BatchNormalization.
    double momentum;    // meaning per nd_spec_momentum_rule; unused when momentum_null
    bool momentum_null; // pytorch: cumulative average; puzzlelib: always (factor schedule)
    bool interleaving;  // channels on the last per-example dimension
    bool interleaving_given;
    enum nd_variance_estimator moving_variance;
    double init_factor, min_factor, sscale; // puzzlelib

    // Channel axes (BatchNormalization), normalized axes (LayerNormalization,
    // RMSNormalization) or the channel axis (InstanceNormalization, GroupNormalization), in
    // BATCHED-tensor indexing as Keras counts them (0 is the batch axis, negatives from the
    // end). naxes == 0: not given (BatchNormalization then follows interleaving).
    int32_t naxes;
    int32_t axes[ND_MAX_RANK];

    // Normalization.
    struct nd_levels aggregation; // default "2;;All" (keras: "1;;-2")
    struct nd_levels scaling;     // default Complement
    int32_t ngroup;               // 0: group_number null
    int64_t group_number[ND_MAX_RANK];
    enum nd_method method;
    bool unbiased;
    int64_t groups; // GroupNormalization (default 32)

    // Arrays.
    bool enabled[ND_ARRAY_COUNT]; // Scaling/Biases can be disabled; moving: can_track
    struct nd_initializer init[ND_ARRAY_COUNT];
    bool init_given[ND_ARRAY_COUNT]; // puzzlelib's Scaling default follows sscale otherwise
    struct nd_regularizer regularizer[ND_ARRAY_AFFINE_COUNT];
    struct nd_constraint constraint[ND_ARRAY_AFFINE_COUNT];
    double lr_multiplier[ND_ARRAY_COUNT]; // 0 freezes
    bool has_seed;
    uint64_t seed;

    // How the definition named things (API.md 1.1a). Stored since format version 2; a layer
    // stored by version 1 reloads with its canonical name and ND_CONVENTION_FROM_UNKNOWN.
    int32_t type_alias; // nd_type_name.id of the spelling the type was given by
    enum nd_convention_from convention_from;
    bool synchronized; // Keras' argument: accepted, no effect in one process
    // PyTorch's sizes, checked against the input by nd_spec_resolve (0 / ndim 0: not given).
    int64_t num_features;             // BatchNorm*d, InstanceNorm*d; GroupNorm's num_channels
    struct nd_shape normalized_shape; // LayerNorm, RMSNorm: the trailing per-example dims

    // Plain options whose rows declare them (spec_fields.def, DECL ROW): description, ...
#define ND_SPEC_FIELD(name, alias, member, kind, max, types, torch, dflt, range, show, since,      \
                      decl)                                                                        \
    ND_SPEC_DECL_##decl(kind, member, max)
#include "core/spec_fields.def"
#undef ND_SPEC_FIELD
};

// Resets *spec to the defaults of type under conv (API.md 1.3, 1.4): epsilon, momentum,
// moving variance, channel side, initializers (puzzlelib Scaling: normal(1, sscale)),
// presets' axes, method and disabled Biases (RMSNormalization), multipliers 1, no input, and
// each row of core/spec_fields.def its dflt (trainable, groups, description, ...).
// batchnorm_nd as from nd_layer_type_parse.
void nd_spec_defaults(struct nd_spec *spec, enum nd_layer_type type, int32_t batchnorm_nd,
                      enum nd_convention conv);

// nd_spec_defaults for a type spelling: also records it (type_alias) and where the
// convention came from, and applies the class's own defaults (PyTorch's InstanceNorm*d: no
// Scaling/Biases, affine=False).
void nd_spec_defaults_named(struct nd_spec *spec, const struct nd_type_name *name,
                            enum nd_convention conv, enum nd_convention_from from);

// The convention a definition gets when the request names none (API.md 1.1a): PyTorch names
// pytorch, PuzzleLib's BatchNorm1D..3D puzzlelib, the ...Layer names wolfram, a Keras type
// given a Keras-only argument (keras_args) keras, else wolfram from the default. *from says
// which (ND_CONVENTION_FROM_TYPE or ND_CONVENTION_FROM_DEFAULT).
enum nd_convention nd_type_name_convention(const struct nd_type_name *name, bool keras_args,
                                           enum nd_convention_from *from);

// Completes a PyTorch-named definition from its sizes once the options are read: the input,
// when not given, from num_features ([C] for BatchNorm1d, [C, null...] for the others) or
// normalized_shape; LayerNorm/RMSNorm's axes from normalized_shape. No-op for other names.
void nd_spec_complete(struct nd_spec *spec);

// True when the spec's type was named by a PyTorch class (it then takes PyTorch's arguments,
// and errors name them: "options.eps", "options.num_groups").
bool nd_spec_is_pytorch_named(const struct nd_spec *spec);

// True when a batch or instance norm keeps MovingMean/MovingVariance (PyTorch's
// track_running_stats; both disabled: batch or instance statistics in inference too). An
// instance norm tracking them updates them with the mean over the batch of its per-instance
// statistics and normalizes with them in inference, as PyTorch's InstanceNorm*d does.
bool nd_spec_tracks_running_stats(const struct nd_spec *spec);

// How many arrays a layer of this spec has, counted from ND_ARRAY_SCALING: ND_ARRAY_COUNT for a
// batch norm (disabled moving statistics are listed, as null) and for an instance norm tracking
// them; ND_ARRAY_AFFINE_COUNT otherwise.
int nd_spec_array_count(const struct nd_spec *spec);

// The rule moving statistics follow under this spec's convention and momentum.
enum nd_momentum_rule nd_spec_momentum_rule(const struct nd_spec *spec);

// The initializer an array of this spec uses (puzzlelib's Scaling: normal(1, sscale) unless
// an initializer was given).
struct nd_initializer nd_spec_initializer(const struct nd_spec *spec, enum nd_array_id id);

// Checks every value that does not depend on the input shape: epsilon > 0; momentum in [0, 1]
// (null only under pytorch); axes non-zero and distinct; the ranges of core/spec_fields.def's
// rows that apply to the type (factors in [0, 1], sscale >= 0, a description's length);
// level specs of the right kinds (aggregation: list, All or span; list levels non-zero and
// distinct); group counts >= 1; groups >= 1; initializers, regularizers, constraints;
// multipliers finite and >= 0; an input shape of rank <= ND_MAX_RANK with dims >= 1 or
// ND_DIM_AUTO. Options of the other family are ignored (api/ rejects them by name).
// Failures are ND_STATUS_INVALID_VALUE naming the public field ("options.epsilon",
// "options.scaling_initializer.stddev", "learning_rate_multipliers.Biases"); an enum out of
// range (type, convention, method, level kind) is ND_STATUS_INVALID_ARGUMENT: a C caller's bug.
// PyTorch-named types follow PyTorch's constructors: num_features (BatchNorm*d, InstanceNorm*d),
// normalized_shape (LayerNorm, RMSNorm), num_groups and num_channels (GroupNorm) are required,
// sizes >= 1, and num_channels must be divisible by num_groups. A batch or instance norm has
// both moving statistics or neither ("arrays.MovingMean" / "arrays.MovingVariance" name the one
// missing); other types have neither; an instance norm tracking them needs a numeric momentum.
enum nd_status nd_spec_validate(const struct nd_spec *spec, struct nd_error *err);

// ---- resolution against a shape ----

// A spec resolved for one per-example rank and shape. Bit i of a mask stands for per-example
// dimension i (0-based; level i + 1); the batch dimension has no bit.
struct nd_layout {
    struct nd_shape input; // the per-example shape resolved against (may hold ND_DIM_AUTO)
    uint32_t reduce_mask;  // dims whose elements share one statistic (BatchNormalization:
                           // every dim but the channel axes, and the batch too; Normalization:
                           // the aggregation levels, never the batch)
    uint32_t param_mask;   // dims Scaling/Biases vary along (channel axes; scaling levels)
    int64_t groups[ND_MAX_RANK]; // per dim: 1, or its number of contiguous groups (reduced
                                 // dims only); each group has its own statistic
    struct nd_shape param_shape; // Scaling/Biases: BatchNormalization [C] with C the product
                                 // of the channel dims; Normalization the input's dims on the
                                 // scaling levels ([] when none). ND_DIM_AUTO where unknown.
    int32_t naxes;               // BatchNormalization: channel axes (batched indexing, ascending)
    int32_t axes[ND_MAX_RANK];
};

// Resolves spec against a per-example shape of known rank (dims may be ND_DIM_AUTO):
// BatchNormND rank, axes and interleaving agreement, level ranges, presets' expansion, group
// counts dividing known dims. Errors: ND_STATUS_INVALID_VALUE naming the option at fault,
// ND_STATUS_SHAPE_MISMATCH naming "input" when the shape does not suit the type (rank 0 or
// above ND_MAX_RANK, a BatchNormND rank, an InstanceNormalization with nothing to normalize
// over). Dims of 0 are accepted (an empty example); an unknown rank is
// ND_STATUS_INVALID_ARGUMENT. *out is written only on success. Does not re-run
// nd_spec_validate, but never reads out of bounds on an unvalidated spec.
enum nd_status nd_spec_resolve(const struct nd_spec *spec, const struct nd_shape *input,
                               struct nd_layout *out, struct nd_error *err);

#endif
