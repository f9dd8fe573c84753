// layer.h - a named, stateful normalization layer: arrays, moving statistics, optimizer state,
// forward, train-step, initialization and array access.
//
// A layer is reference-counted (nd_layer_ref / nd_layer_unref) so a request that holds it keeps
// it alive after the registry drops it, and read-write locked inside: forwards share the lock,
// train-steps, initialization and array writes take it alone. Every change bumps `version`.
//
// Arrays (struct nd_array) are reference-counted too and carry their own lock, because a shared
// array (Wolfram NetInsertSharedArrays) belongs to several layers at once. A layer never holds
// two array locks at a time: forwards copy Scaling/Biases under the array's read lock, and
// train-steps update each array under its write lock, one after the other.
#ifndef ND_LAYER_H
#define ND_LAYER_H

#include <stdbool.h>
#include <stdint.h>

#include "core/history.h"
#include "core/optim.h"
#include "core/pool.h"
#include "core/spec.h"
#include "core/status.h"
#include "core/tensor.h"

#define ND_NAME_MAX 128 // the API's name rule: ^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$

// True when name follows the API's rule for layer and shared-array names.
bool nd_name_valid(const char *name);

// ---- arrays ----

struct nd_array;

// Takes a reference. Thread-safe.
void nd_array_ref(struct nd_array *array);

// Drops a reference; the last one frees the array. NULL-safe; thread-safe.
void nd_array_unref(struct nd_array *array);

// A copy of the array's values into *out (caller owns; release with nd_tensor_deinit) and its
// version (NULL to skip). Thread-safe (takes the array's read lock).
enum nd_status nd_array_read(struct nd_array *array, struct nd_tensor *out, uint64_t *version,
                             struct nd_error *err);

// The shared name ("" when not shared), borrowed for the array's lifetime.
const char *nd_array_shared_name(const struct nd_array *array);

// ---- definitions ----

// What a user gave for one array at creation.
enum nd_array_source {
    ND_ARRAY_SOURCE_INITIALIZER, // filled from the spec's initializer once the shape is known
    ND_ARRAY_SOURCE_VALUE,       // `value` (shape checked; MovingVariance must be >= 0)
    ND_ARRAY_SOURCE_SHARED,      // bound to the shared array `shared` (Scaling, Biases only)
};

// A layer definition: the spec plus the arrays' sources. Disabled arrays are
// spec.enabled[id] == false. Values are borrowed for the duration of the call that takes the
// definition.
struct nd_layer_def {
    struct nd_spec spec;
    enum nd_array_source source[ND_ARRAY_COUNT];
    struct nd_tensor value[ND_ARRAY_COUNT];
    const char *shared[ND_ARRAY_COUNT];
};

// A definition of spec with every array from its initializer.
void nd_layer_def_init(struct nd_layer_def *def, const struct nd_spec *spec);

// ---- lifecycle ----

struct nd_layer;
struct nd_registry; // registry.h: owns the shared arrays layers bind to

// Takes a reference. Thread-safe.
void nd_layer_ref(struct nd_layer *layer);

// Drops a reference; the last one frees the layer (and its array references). NULL-safe;
// thread-safe.
void nd_layer_unref(struct nd_layer *layer);

// The layer's name, borrowed for the layer's lifetime.
const char *nd_layer_name(const struct nd_layer *layer);

// A snapshot of a layer's definition and state (GET /v1/layers/{name}).
struct nd_layer_info {
    struct nd_spec spec;     // spec.input is the resolved per-example shape once known
    bool initialized;        // every enabled array has a shape and values
    struct nd_layout layout; // valid when layout_known
    bool layout_known;
    bool enabled[ND_ARRAY_COUNT];
    struct nd_shape array_shape[ND_ARRAY_COUNT];  // ndim ND_RANK_UNKNOWN while unknown
    char shared[ND_ARRAY_COUNT][ND_NAME_MAX + 1]; // "" when not shared
    int64_t parameter_count; // elements of every enabled array with a known shape
    uint64_t version;
    int64_t train_steps;     // counted for the pytorch (momentum null) and puzzlelib rules
    int64_t forwards;        // forward calls served (inference and train mode)
    int64_t optimizer_steps; // train-steps that updated at least one array
};

// The layer's version, read without its lock (a change in flight may bump it any moment).
uint64_t nd_layer_version(struct nd_layer *layer);

// Fills *info under the layer's read lock. Thread-safe.
void nd_layer_info(struct nd_layer *layer, struct nd_layer_info *info);

// ---- shapes ----

// Decides whether a tensor of shape `in` is a batch or one example of this layer and gives the
// batched shape (one example becomes a batch of 1). batch_hint: -1 decide from the rank, 0 one
// example, 1 a batch. ND_STATUS_NOT_INITIALIZED while the input shape is unknown;
// ND_STATUS_SHAPE_MISMATCH (field "input") when the shape does not fit, naming the layer.
enum nd_status nd_layer_batch_shape(struct nd_layer *layer, const struct nd_shape *in,
                                    int batch_hint, struct nd_shape *batched, bool *is_batch,
                                    struct nd_error *err);

// As nd_layer_batch_shape without waiting for the layer's lock: ND_STATUS_BUSY when a change
// holds it.
enum nd_status nd_layer_try_batch_shape(struct nd_layer *layer, const struct nd_shape *in,
                                        int batch_hint, struct nd_shape *batched, bool *is_batch,
                                        struct nd_error *err);

// ---- forward ----

// Applies the layer to the batched tensor x into y (the caller allocates y with x's shape; y
// may be x itself for an in-place forward). train_mode: BatchNormalization normalizes with the
// batch's own statistics (Wolfram NetEvaluationMode -> "Train") and changes nothing, unless
// trainable is false (Keras' frozen layer runs in inference mode whatever the mode, as its
// train-steps do); the Normalization family is the same in both modes. *version (NULL to skip)
// receives the version the result was computed with. Thread-safe: forwards of one layer run in
// parallel.
enum nd_status nd_layer_forward(struct nd_layer *layer, struct nd_pool *pool,
                                const struct nd_tensor *x, bool train_mode, struct nd_tensor *y,
                                uint64_t *version, struct nd_error *err);

// As nd_layer_forward, but never waits for the layer's lock: ND_STATUS_BUSY (and nothing done)
// while a train-step, initialization or write holds or waits for it. For callers on an event
// loop, which must not block behind a long train-step.
enum nd_status nd_layer_try_forward(struct nd_layer *layer, struct nd_pool *pool,
                                    const struct nd_tensor *x, bool train_mode, struct nd_tensor *y,
                                    uint64_t *version, struct nd_error *err);

// nd_layer_batch_shape and nd_layer_forward under one hold of the layer's lock: x is one
// example or a batch (batch_hint as there), y the caller's x->numel floats, written with x's
// values' layout; *is_batch says which x was. What one forward request needs, taking the lock
// once (and the rank it decides with is the one it runs with).
enum nd_status nd_layer_forward_any(struct nd_layer *layer, struct nd_pool *pool,
                                    const struct nd_tensor *x, int batch_hint, bool train_mode,
                                    float *y, bool *is_batch, uint64_t *version,
                                    struct nd_error *err);

// As nd_layer_forward_any, never waiting for the lock (ND_STATUS_BUSY), as nd_layer_try_forward.
enum nd_status nd_layer_try_forward_any(struct nd_layer *layer, struct nd_pool *pool,
                                        const struct nd_tensor *x, int batch_hint, bool train_mode,
                                        float *y, bool *is_batch, uint64_t *version,
                                        struct nd_error *err);

// ---- train-step ----

enum nd_train_want {
    ND_TRAIN_WANT_OUTPUT = 1u << 0,
    ND_TRAIN_WANT_INPUT_GRADIENT = 1u << 1,
    ND_TRAIN_WANT_ARRAY_GRADIENTS = 1u << 2,
    ND_TRAIN_WANT_ARRAYS = 1u << 3,
    ND_TRAIN_WANT_BATCH_STATISTICS = 1u << 4,
};

// One train-step's inputs; tensors are borrowed for the call.
struct nd_train_args {
    const struct nd_tensor *input;       // batched
    const struct nd_tensor *output_grad; // dL/dy with input's shape, or NULL
    const struct nd_tensor *target;      // with input's shape for loss mean_squared, or NULL
    struct nd_optimizer optimizer;
    uint32_t want; // enum nd_train_want bits
};

// A train-step's results. Every tensor is owned (release all with nd_train_result_deinit);
// tensors not asked for, or without meaning for the layer, have data == NULL and numel 0.
struct nd_train_result {
    struct nd_tensor output;                            // y
    struct nd_tensor input_grad;                        // dL/dx
    struct nd_tensor array_grad[ND_ARRAY_AFFINE_COUNT]; // dL/dScaling, dL/dBiases (+ regularizer)
    struct nd_tensor arrays[ND_ARRAY_COUNT];            // every enabled array after the step
    struct nd_tensor batch_mean, batch_var;             // biased; BN [C], Normalization [N, k]
    bool has_loss;
    double loss; // mean((y - target)^2) when a target was given
    uint64_t version;
};

void nd_train_result_deinit(struct nd_train_result *result);

// One training step (API.md 2.2): forward with batch statistics, moving-statistics update per
// the convention (unless frozen), and, given output_grad or target, backpropagation, regularizer
// terms, the optimizer (learning rate times each array's multiplier; 0 freezes) and
// constraints. A layer with trainable false normalizes with its moving statistics and changes
// nothing. Errors: ND_STATUS_NOT_INITIALIZED, ND_STATUS_CONFLICT (inplace layer),
// ND_STATUS_SHAPE_MISMATCH, ND_STATUS_INVALID_VALUE (non-finite values, one value per channel
// under pytorch, an unbiased variance of one value, a bad optimizer), ND_STATUS_OUT_OF_MEMORY.
// On error the layer is unchanged. *result is zeroed first. Thread-safe: serialized per layer.
enum nd_status nd_layer_train_step(struct nd_layer *layer, struct nd_pool *pool,
                                   const struct nd_train_args *args, struct nd_train_result *result,
                                   struct nd_error *err);

// ---- training history ----

// Copies the layer's newest min(limit, held) train-step records into out (room for
// ND_HISTORY_CAPACITY), oldest first, under its read lock (limit <= 0: all of them), with how
// many (*n), how many it ever recorded (*total) and its version (NULL to skip). Records are
// appended by committed train-steps (history.h). ND_STATUS_INVALID_ARGUMENT for NULL
// arguments. Thread-safe.
enum nd_status nd_layer_history_read(struct nd_layer *layer, int32_t limit,
                                     struct nd_history_record *out, int32_t *n, uint64_t *total,
                                     uint64_t *version, struct nd_error *err);

// ---- arrays of a layer ----

// A copy of one array (caller owns; release with nd_tensor_deinit) and the layer's version.
// ND_STATUS_NOT_FOUND for a disabled array or one the layer type does not have;
// ND_STATUS_NOT_INITIALIZED while its shape is unknown. Thread-safe.
enum nd_status nd_layer_read_array(struct nd_layer *layer, enum nd_array_id id,
                                   struct nd_tensor *out, uint64_t *version, struct nd_error *err);

// Sets one array from value (shape must equal the array's; values finite; MovingVariance
// >= 0). if_version: 0 for any, else the version the caller expects
// (ND_STATUS_PRECONDITION_FAILED otherwise). The array counts as given by the user from then
// on (initialize keeps it). *version (NULL to skip) receives the new version. Thread-safe.
enum nd_status nd_layer_write_array(struct nd_layer *layer, enum nd_array_id id,
                                    const struct nd_tensor *value, uint64_t if_version,
                                    uint64_t *version, struct nd_error *err);

#endif
