// optim.h - optimizers, regularizers and constraints over flat float arrays.
//
// The update of one array is one flat loop (llm.c's gpt2_update shape). State lives with the
// array it updates (struct nd_optim_state), so a shared array keeps one state for every layer
// that trains it.
#ifndef ND_OPTIM_H
#define ND_OPTIM_H

#include <stdbool.h>
#include <stdint.h>

#include "core/status.h"

enum nd_optimizer_kind { ND_OPTIMIZER_SGD, ND_OPTIMIZER_ADAM, ND_OPTIMIZER_COUNT };

// Hyper-parameters of one train-step's update. sgd uses learning_rate, momentum, nesterov;
// adam uses learning_rate, beta_1, beta_2, epsilon.
struct nd_optimizer {
    enum nd_optimizer_kind kind;
    double learning_rate;
    double momentum;
    bool nesterov;
    double beta_1, beta_2, epsilon;
};

// "sgd" / "adam"; static; "unknown" when out of range.
const char *nd_optimizer_kind_name(enum nd_optimizer_kind kind);
enum nd_status nd_optimizer_kind_parse(const char *name, enum nd_optimizer_kind *kind,
                                       struct nd_error *err);

// The defaults of API.md 2.2: sgd lr 0.01, momentum 0, nesterov false; adam lr 0.001,
// beta_1 0.9, beta_2 0.999, epsilon 1e-7.
struct nd_optimizer nd_optimizer_default(enum nd_optimizer_kind kind);

// learning_rate finite and >= 0; momentum in [0, 1]; nesterov needs momentum > 0 (as PyTorch);
// beta_1, beta_2 in [0, 1); epsilon > 0. Errors name the field ("learning_rate", ...).
enum nd_status nd_optimizer_validate(const struct nd_optimizer *opt, struct nd_error *err);

// Per-array optimizer state: sgd keeps its momentum buffer in m; adam keeps m, v and the
// step count t. Plain data owned by whoever embeds it; zero-initialize, then release with
// nd_optim_state_deinit.
struct nd_optim_state {
    enum nd_optimizer_kind kind;
    int64_t n;    // elements of m and v (0: nothing allocated yet)
    int64_t t;    // optimizer steps taken with this state
    float *m, *v; // (n) each; v only for adam
};

// Makes st ready for a step of kind over n elements: allocates and zeroes on first use, and
// resets (zeroes, t = 0) when the kind or n changed since the last step. On failure st is
// unchanged. Not thread-safe.
enum nd_status nd_optim_state_prepare(struct nd_optim_state *st, enum nd_optimizer_kind kind,
                                      int64_t n, struct nd_error *err);

// Frees m and v and zeroes *st. NULL-safe.
void nd_optim_state_deinit(struct nd_optim_state *st);

// Deep copy of src into *dst (which must be zeroed or deinitialized). Caller owns dst.
enum nd_status nd_optim_state_clone(struct nd_optim_state *dst, const struct nd_optim_state *src,
                                    struct nd_error *err);

// One update of w (n) from gradient g (n) with learning rate opt->learning_rate * lr_mult:
//   sgd:  b = momentum*b + g; w -= lr*b        (nesterov: w -= lr*(g + momentum*b))
//   adam: m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g^2;
//         w -= lr * (m/(1-b1^t)) / (sqrt(v/(1-b2^t)) + epsilon), t counted after increment.
// st must have been prepared for opt->kind and n. Arithmetic in double, stored as float.
void nd_optim_step(const struct nd_optimizer *opt, double lr_mult, struct nd_optim_state *st,
                   float *w, const float *g, int64_t n);

// ---- regularizers and constraints ----

// Keras' L1L2: the loss gains l1*sum|w| + l2*sum(w^2), the gradient l1*sign(w) + 2*l2*w.
struct nd_regularizer {
    double l1, l2;
};

// l1, l2 finite and >= 0; errors name "l1" or "l2".
enum nd_status nd_regularizer_validate(const struct nd_regularizer *reg, struct nd_error *err);

// g[i] += l1*sign(w[i]) + 2*l2*w[i] for i < n (sign(0) = 0).
void nd_regularizer_add_gradient(const struct nd_regularizer *reg, float *g, const float *w,
                                 int64_t n);

enum nd_constraint_kind {
    ND_CONSTRAINT_NONE,
    ND_CONSTRAINT_NON_NEG,      // w = max(w, 0)
    ND_CONSTRAINT_MAX_NORM,     // w *= clip(|w|, 0, max_value) / (eps + |w|)
    ND_CONSTRAINT_UNIT_NORM,    // w /= eps + |w|
    ND_CONSTRAINT_MIN_MAX_NORM, // w *= (rate*clip(|w|, min, max) + (1-rate)*|w|) / (eps + |w|)
    ND_CONSTRAINT_COUNT
};

// |w| is the Euclidean norm over the whole array, eps = ND_CONSTRAINT_EPS (Keras).
#define ND_CONSTRAINT_EPS 1e-7

struct nd_constraint {
    enum nd_constraint_kind kind;
    double min_value, max_value, rate;
};

// "none", "non_neg", "max_norm", "unit_norm", "min_max_norm"; static.
const char *nd_constraint_kind_name(enum nd_constraint_kind kind);
enum nd_status nd_constraint_kind_parse(const char *name, enum nd_constraint_kind *kind,
                                        struct nd_error *err);

// Keras defaults: max_norm max_value 2; min_max_norm min 0, max 1, rate 1.
struct nd_constraint nd_constraint_default(enum nd_constraint_kind kind);

// max_value > 0 (max_norm); 0 <= min_value <= max_value and 0 <= rate <= 1 (min_max_norm);
// all finite. Errors name the field ("max_value", ...).
enum nd_status nd_constraint_validate(const struct nd_constraint *c, struct nd_error *err);

// Applies c to w (n) in place, norms accumulated in double.
void nd_constraint_apply(const struct nd_constraint *c, float *w, int64_t n);

#endif
