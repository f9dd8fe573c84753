// check_optim.c - SGD and Adam steps, optimizer state, regularizers and constraints.
#include "tests/check_suites.h"
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "core/optim.h"

#define N   5
#define TOL 1e-6 // float storage of w, m, v between steps; formula slips are >= 1e-4

static const float w0[N] = {0.5f, -1.25f, 2.0f, 0.0f, -0.1f};
static const float g1[N] = {0.1f, -0.2f, 0.3f, -0.05f, 0.0f};
static const float g2[N] = {0.2f, 0.1f, -0.3f, 0.05f, 1.0f};

// From tests/tools/optim_fixtures.py: w0 after the steps g1, g2 in PyTorch's float32
// arithmetic (SGD lr 0.1; Adam lr 0.01, betas 0.9, 0.999, eps 1e-7).
static const float torch_sgd[N] = {0.469999999f, -1.24000001f, 2.0f, 0.0f, -0.200000003f};
static const float torch_momentum[N] = {0.461000025f, -1.222f, 1.97300005f, 0.00450000027f,
                                        -0.200000003f};
static const float torch_nesterov[N] = {0.434900016f, -1.2148f, 1.9756999f, 0.00404999917f,
                                        -0.289999992f};
static const float torch_adam[N] = {0.4803482f, -1.23733664f, 1.99052632f, 0.00947366562f,
                                    -0.107441366f};

static void assert_close(const float *got, const double *want, int64_t n, double tol) {
    double maxdiff = 0.0;
    for (int64_t i = 0; i < n; i++)
        maxdiff = fmax(maxdiff, fabs((double)got[i] - want[i]));
    ck_assert_msg(maxdiff <= tol, "max difference %g > %g", maxdiff, tol);
}

static void assert_close_f(const float *got, const float *want, int64_t n, double tol) {
    double w[N];
    for (int64_t i = 0; i < n; i++)
        w[i] = want[i];
    assert_close(got, w, n, tol);
}

// Runs the steps g1 then g2 from w0 with opt; w gets the result, st keeps the state.
static void run_two_steps(const struct nd_optimizer *opt, struct nd_optim_state *st, float *w) {
    memcpy(w, w0, sizeof w0);
    ck_assert_int_eq(nd_optim_state_prepare(st, opt->kind, N, NULL), ND_STATUS_OK);
    nd_optim_step(opt, 1.0, st, w, g1, N);
    nd_optim_step(opt, 1.0, st, w, g2, N);
}

// ---- double references (the formulas of optim.h) ----

// SGD over two steps: b = mu*b + g (b0 = 0); w -= lr*b, or lr*(g + mu*b) for nesterov.
static void ref_sgd(double *w, double *b, double lr, double mu, bool nesterov) {
    const float *gs[2] = {g1, g2};
    for (int i = 0; i < N; i++) {
        w[i] = w0[i];
        b[i] = 0.0;
        for (int s = 0; s < 2; s++) {
            b[i] = mu * b[i] + gs[s][i];
            w[i] -= lr * (nesterov ? gs[s][i] + mu * b[i] : b[i]);
        }
    }
}

// Adam over two steps with bias correction 1 - beta^t, t = 1, 2.
static void ref_adam(double *w, double *m, double *v, double lr, double b1, double b2, double eps) {
    const float *gs[2] = {g1, g2};
    for (int i = 0; i < N; i++) {
        w[i] = w0[i];
        m[i] = v[i] = 0.0;
        for (int s = 0; s < 2; s++) {
            double g = gs[s][i];
            m[i] = b1 * m[i] + (1 - b1) * g;
            v[i] = b2 * v[i] + (1 - b2) * g * g;
            double mhat = m[i] / (1 - pow(b1, s + 1)), vhat = v[i] / (1 - pow(b2, s + 1));
            w[i] -= lr * mhat / (sqrt(vhat) + eps);
        }
    }
}

// ---- optimizers ----

START_TEST(test_names_and_defaults) {
    for (int i = 0; i < ND_OPTIMIZER_COUNT; i++) {
        enum nd_optimizer_kind k = ND_OPTIMIZER_COUNT;
        ck_assert_int_eq(nd_optimizer_kind_parse(nd_optimizer_kind_name(i), &k, NULL),
                         ND_STATUS_OK);
        ck_assert_int_eq(k, i);
        struct nd_optimizer d = nd_optimizer_default(i);
        ck_assert_int_eq(nd_optimizer_validate(&d, NULL), ND_STATUS_OK);
    }
    ck_assert_str_eq(nd_optimizer_kind_name(ND_OPTIMIZER_SGD), "sgd");
    ck_assert_str_eq(nd_optimizer_kind_name(ND_OPTIMIZER_ADAM), "adam");
    struct nd_optimizer sgd = nd_optimizer_default(ND_OPTIMIZER_SGD);
    ck_assert(sgd.learning_rate == 0.01 && sgd.momentum == 0.0 && !sgd.nesterov);
    struct nd_optimizer adam = nd_optimizer_default(ND_OPTIMIZER_ADAM);
    ck_assert_int_eq(adam.kind, ND_OPTIMIZER_ADAM);
    ck_assert(adam.learning_rate == 0.001 && adam.beta_1 == 0.9 && adam.beta_2 == 0.999 &&
              adam.epsilon == 1e-7);
}
END_TEST

START_TEST(test_sgd_plain) {
    struct nd_optimizer opt = nd_optimizer_default(ND_OPTIMIZER_SGD);
    opt.learning_rate = 0.1;
    struct nd_optim_state st = {0};
    float w[N];
    run_two_steps(&opt, &st, w);
    double want[N], b[N];
    ref_sgd(want, b, 0.1, 0.0, false);
    assert_close(w, want, N, TOL);
    assert_close_f(w, torch_sgd, N, TOL);
    ck_assert_int_eq(st.t, 2);
    nd_optim_state_deinit(&st);
}
END_TEST

START_TEST(test_sgd_momentum) {
    struct nd_optimizer opt = {ND_OPTIMIZER_SGD, .learning_rate = 0.1, .momentum = 0.9};
    struct nd_optim_state st = {0};
    float w[N];
    memcpy(w, w0, sizeof w);
    ck_assert_int_eq(nd_optim_state_prepare(&st, ND_OPTIMIZER_SGD, N, NULL), ND_STATUS_OK);
    nd_optim_step(&opt, 1.0, &st, w, g1, N);
    // First step: b = g (PyTorch clones g), so w moves by lr*g exactly as plain SGD.
    for (int i = 0; i < N; i++) {
        ck_assert(st.m[i] == g1[i]);
        ck_assert_float_eq_tol(w[i], w0[i] - 0.1 * g1[i], 1e-7);
    }
    nd_optim_step(&opt, 1.0, &st, w, g2, N);
    double want[N], b[N];
    ref_sgd(want, b, 0.1, 0.9, false);
    assert_close(w, want, N, TOL);
    assert_close(st.m, b, N, TOL); // b2 = 0.9*g1 + g2
    assert_close_f(w, torch_momentum, N, TOL);
    // Hand value, element 0: b2 = 0.9*0.1 + 0.2 = 0.29; w = 0.5 - 0.01 - 0.029 = 0.461.
    ck_assert_float_eq_tol(w[0], 0.461, 1e-7);
    nd_optim_state_deinit(&st);
}
END_TEST

START_TEST(test_sgd_nesterov) {
    struct nd_optimizer opt = {ND_OPTIMIZER_SGD, .learning_rate = 0.1, .momentum = 0.9,
                               .nesterov = true};
    struct nd_optim_state st = {0};
    float w[N];
    run_two_steps(&opt, &st, w);
    double want[N], b[N];
    ref_sgd(want, b, 0.1, 0.9, true);
    assert_close(w, want, N, TOL);
    assert_close_f(w, torch_nesterov, N, TOL);
    // Element 0: step 1 moves 0.1*(0.1 + 0.09) = 0.019, step 2 0.1*(0.2 + 0.9*0.29) = 0.0461.
    ck_assert_float_eq_tol(w[0], 0.5 - 0.019 - 0.0461, 1e-7);
    nd_optim_state_deinit(&st);
}
END_TEST

START_TEST(test_adam_two_steps) {
    struct nd_optimizer opt = nd_optimizer_default(ND_OPTIMIZER_ADAM);
    opt.learning_rate = 0.01;
    struct nd_optim_state st = {0};
    float w[N];
    memcpy(w, w0, sizeof w);
    ck_assert_int_eq(nd_optim_state_prepare(&st, ND_OPTIMIZER_ADAM, N, NULL), ND_STATUS_OK);
    nd_optim_step(&opt, 1.0, &st, w, g1, N);
    // First step: m^ = g, v^ = g^2, so each weight moves by lr*g/(|g| + eps), about lr*sign(g).
    for (int i = 0; i < N; i++) {
        double g = g1[i];
        ck_assert_float_eq_tol(w[i], w0[i] - 0.01 * g / (fabs(g) + 1e-7), 1e-7);
    }
    ck_assert_float_eq_tol(w[0], 0.49, 1e-7);
    ck_assert(w[4] == w0[4]); // g = 0: no move
    ck_assert_int_eq(st.t, 1);
    nd_optim_step(&opt, 1.0, &st, w, g2, N);
    ck_assert_int_eq(st.t, 2);
    double want[N], m[N], v[N];
    ref_adam(want, m, v, 0.01, 0.9, 0.999, 1e-7);
    assert_close(w, want, N, TOL);
    assert_close(st.m, m, N, 1e-8);
    assert_close(st.v, v, N, 1e-10);
    assert_close_f(w, torch_adam, N, TOL);
    nd_optim_state_deinit(&st);
}
END_TEST

START_TEST(test_adam_bias_correction_uses_t) {
    // A constant gradient: m^ = g and v^ = g^2 at every t only if the correction uses the
    // current t, so every step moves w by the same lr*g/(|g| + eps).
    struct nd_optimizer opt = nd_optimizer_default(ND_OPTIMIZER_ADAM);
    struct nd_optim_state st = {0};
    ck_assert_int_eq(nd_optim_state_prepare(&st, ND_OPTIMIZER_ADAM, 1, NULL), ND_STATUS_OK);
    float w = 1.0f, g = 0.5f;
    for (int t = 1; t <= 5; t++) {
        float before = w;
        nd_optim_step(&opt, 1.0, &st, &w, &g, 1);
        ck_assert_int_eq(st.t, t);
        ck_assert_double_eq_tol((double)before - w, 0.001 * 0.5 / (0.5 + 1e-7), 1e-7);
    }
    nd_optim_state_deinit(&st);
}
END_TEST

START_TEST(test_lr_mult) {
    struct nd_optimizer base = {ND_OPTIMIZER_SGD, .learning_rate = 0.1, .momentum = 0.9};
    struct nd_optimizer half = base;
    half.learning_rate = 0.05;
    struct nd_optim_state sa = {0}, sb = {0};
    float a[N], b[N];
    memcpy(a, w0, sizeof a);
    memcpy(b, w0, sizeof b);
    nd_optim_state_prepare(&sa, ND_OPTIMIZER_SGD, N, NULL);
    nd_optim_state_prepare(&sb, ND_OPTIMIZER_SGD, N, NULL);
    nd_optim_step(&base, 0.5, &sa, a, g1, N); // lr = 0.1 * 0.5
    nd_optim_step(&half, 1.0, &sb, b, g1, N);
    ck_assert_mem_eq(a, b, sizeof a);
    ck_assert_float_eq_tol(a[1], -1.25 + 0.05 * 0.2, 1e-7);
    // Adam: the step scales with lr_mult too.
    struct nd_optimizer adam = nd_optimizer_default(ND_OPTIMIZER_ADAM);
    struct nd_optim_state sc = {0};
    nd_optim_state_prepare(&sc, ND_OPTIMIZER_ADAM, N, NULL);
    float c[N];
    memcpy(c, w0, sizeof c);
    nd_optim_step(&adam, 3.0, &sc, c, g1, N);
    ck_assert_float_eq_tol(c[0], 0.5 - 0.003, 1e-7);
    nd_optim_state_deinit(&sa);
    nd_optim_state_deinit(&sb);
    nd_optim_state_deinit(&sc);
}
END_TEST

START_TEST(test_lr_zero_leaves_w) {
    struct nd_optimizer opts[3] = {
        {ND_OPTIMIZER_SGD, .learning_rate = 0.1, .momentum = 0.9},
        {ND_OPTIMIZER_SGD, .learning_rate = 0.1, .momentum = 0.9, .nesterov = true},
        nd_optimizer_default(ND_OPTIMIZER_ADAM),
    };
    for (int k = 0; k < 3; k++) {
        struct nd_optim_state st = {0};
        ck_assert_int_eq(nd_optim_state_prepare(&st, opts[k].kind, N, NULL), ND_STATUS_OK);
        st.m[0] = INFINITY; // even a non-finite state leaves w alone at lr 0
        float w[N];
        memcpy(w, w0, sizeof w);
        nd_optim_step(&opts[k], 0.0, &st, w, g1, N);
        ck_assert_mem_eq(w, w0, sizeof w);
        ck_assert_int_eq(st.t, 1); // the state still advances, as in PyTorch
        nd_optim_state_deinit(&st);
    }
}
END_TEST

START_TEST(test_state_reset) {
    struct nd_optim_state st = {0};
    ck_assert_int_eq(nd_optim_state_prepare(&st, ND_OPTIMIZER_SGD, N, NULL), ND_STATUS_OK);
    ck_assert_ptr_nonnull(st.m);
    ck_assert_ptr_null(st.v); // sgd keeps no v
    struct nd_optimizer sgd = {ND_OPTIMIZER_SGD, .learning_rate = 0.1, .momentum = 0.9};
    float w[N];
    memcpy(w, w0, sizeof w);
    nd_optim_step(&sgd, 1.0, &st, w, g1, N);
    // Same kind and n: kept.
    float *m = st.m;
    ck_assert_int_eq(nd_optim_state_prepare(&st, ND_OPTIMIZER_SGD, N, NULL), ND_STATUS_OK);
    ck_assert_ptr_eq(st.m, m);
    ck_assert_int_eq(st.t, 1);
    ck_assert(st.m[0] == g1[0]);
    // Kind change: zeroed, t = 0, v allocated.
    ck_assert_int_eq(nd_optim_state_prepare(&st, ND_OPTIMIZER_ADAM, N, NULL), ND_STATUS_OK);
    ck_assert_int_eq(st.kind, ND_OPTIMIZER_ADAM);
    ck_assert_int_eq(st.t, 0);
    ck_assert_ptr_nonnull(st.v);
    for (int i = 0; i < N; i++)
        ck_assert(st.m[i] == 0.0f && st.v[i] == 0.0f);
    struct nd_optimizer adam = nd_optimizer_default(ND_OPTIMIZER_ADAM);
    nd_optim_step(&adam, 1.0, &st, w, g1, N);
    // Size change: zeroed again.
    ck_assert_int_eq(nd_optim_state_prepare(&st, ND_OPTIMIZER_ADAM, 3, NULL), ND_STATUS_OK);
    ck_assert_int_eq(st.n, 3);
    ck_assert_int_eq(st.t, 0);
    for (int i = 0; i < 3; i++)
        ck_assert(st.m[i] == 0.0f && st.v[i] == 0.0f);
    // Back to sgd: v released.
    ck_assert_int_eq(nd_optim_state_prepare(&st, ND_OPTIMIZER_SGD, 3, NULL), ND_STATUS_OK);
    ck_assert_ptr_null(st.v);
    nd_optim_state_deinit(&st);
    ck_assert_ptr_null(st.m);
    ck_assert_int_eq(st.n, 0);
}
END_TEST

START_TEST(test_clone_is_deep) {
    struct nd_optimizer adam = nd_optimizer_default(ND_OPTIMIZER_ADAM);
    struct nd_optim_state src = {0}, dst = {0};
    float w[N];
    run_two_steps(&adam, &src, w);
    ck_assert_int_eq(nd_optim_state_clone(&dst, &src, NULL), ND_STATUS_OK);
    ck_assert_int_eq(dst.kind, ND_OPTIMIZER_ADAM);
    ck_assert_int_eq(dst.n, N);
    ck_assert_int_eq(dst.t, 2);
    ck_assert_ptr_ne(dst.m, src.m);
    ck_assert_ptr_ne(dst.v, src.v);
    ck_assert_mem_eq(dst.m, src.m, N * sizeof(float));
    ck_assert_mem_eq(dst.v, src.v, N * sizeof(float));
    // Stepping the source leaves the copy alone, and the copy steps like the source did.
    float wc[N];
    memcpy(wc, w, sizeof w);
    nd_optim_step(&adam, 1.0, &src, w, g1, N);
    ck_assert_int_eq(dst.t, 2);
    nd_optim_step(&adam, 1.0, &dst, wc, g1, N);
    ck_assert_mem_eq(w, wc, sizeof w);
    nd_optim_state_deinit(&src);
    nd_optim_state_deinit(&dst);
    // An empty state clones to an empty state.
    struct nd_optim_state empty = {0}, copy;
    ck_assert_int_eq(nd_optim_state_clone(&copy, &empty, NULL), ND_STATUS_OK);
    ck_assert_ptr_null(copy.m);
    ck_assert_int_eq(copy.n, 0);
}
END_TEST

START_TEST(test_unprepared_step_is_noop) {
    struct nd_optim_state st = {0};
    ck_assert_int_eq(nd_optim_state_prepare(&st, ND_OPTIMIZER_SGD, N, NULL), ND_STATUS_OK);
    struct nd_optimizer adam = nd_optimizer_default(ND_OPTIMIZER_ADAM);
    struct nd_optimizer sgd = nd_optimizer_default(ND_OPTIMIZER_SGD);
    float w[N];
    memcpy(w, w0, sizeof w);
    nd_optim_step(&adam, 1.0, &st, w, g1, N);    // state was prepared for sgd
    nd_optim_step(&sgd, 1.0, &st, w, g1, N + 1); // and for 5 elements
    nd_optim_step(NULL, 1.0, &st, w, g1, N);
    nd_optim_step(&sgd, 1.0, NULL, w, g1, N);
    ck_assert_mem_eq(w, w0, sizeof w);
    ck_assert_int_eq(st.t, 0);
    nd_optim_state_deinit(&st);
}
END_TEST

// ---- regularizers and constraints ----

START_TEST(test_regularizer_gradient) {
    struct nd_regularizer reg = {.l1 = 0.01, .l2 = 0.1};
    ck_assert_int_eq(nd_regularizer_validate(&reg, NULL), ND_STATUS_OK);
    const float w[4] = {2.0f, -0.5f, 0.0f, -0.0f};
    float g[4] = {1.0f, 1.0f, 1.0f, 1.0f};
    nd_regularizer_add_gradient(&reg, g, w, 4);
    const double want[4] = {1 + 0.01 + 0.4, 1 - 0.01 - 0.1, 1.0, 1.0}; // sign(0) = 0
    assert_close(g, want, 4, 1e-7);
    // l1 only: a step of exactly l1 toward zero.
    struct nd_regularizer l1 = {.l1 = 0.25};
    float h[4] = {0};
    nd_regularizer_add_gradient(&l1, h, w, 4);
    ck_assert(h[0] == 0.25f && h[1] == -0.25f && h[2] == 0.0f && h[3] == 0.0f);
    // Zero regularizer: g bit-identical.
    struct nd_regularizer none = {0};
    float k[2] = {-0.0f, 3.0f};
    nd_regularizer_add_gradient(&none, k, w, 2);
    ck_assert(signbit(k[0]) && k[1] == 3.0f);
}
END_TEST

// Keras' constraint c on w (n) in double: scale = desired / (1e-7 + norm).
static void ref_constraint(const struct nd_constraint *c, const float *w, double *out, int n) {
    double sq = 0.0;
    for (int i = 0; i < n; i++)
        sq += (double)w[i] * w[i];
    double norm = sqrt(sq), desired = norm;
    if (c->kind == ND_CONSTRAINT_MAX_NORM)
        desired = fmin(norm, c->max_value);
    else if (c->kind == ND_CONSTRAINT_UNIT_NORM)
        desired = 1.0;
    else if (c->kind == ND_CONSTRAINT_MIN_MAX_NORM)
        desired = c->rate * fmax(c->min_value, fmin(norm, c->max_value)) + (1 - c->rate) * norm;
    for (int i = 0; i < n; i++)
        out[i] = w[i] * desired / (1e-7 + norm);
}

// Applies c to a copy of w (n <= 8) and compares with ref_constraint; returns the norm after.
static double check_constraint(struct nd_constraint c, const float *w, int n) {
    float x[8];
    double want[8];
    memcpy(x, w, (size_t)n * sizeof *x);
    ck_assert_int_eq(nd_constraint_validate(&c, NULL), ND_STATUS_OK);
    nd_constraint_apply(&c, x, n);
    ref_constraint(&c, w, want, n);
    assert_close(x, want, n, 1e-7);
    double sq = 0.0;
    for (int i = 0; i < n; i++)
        sq += (double)x[i] * x[i];
    return sqrt(sq);
}

START_TEST(test_constraint_names_and_defaults) {
    for (int i = 0; i < ND_CONSTRAINT_COUNT; i++) {
        enum nd_constraint_kind k = ND_CONSTRAINT_COUNT;
        ck_assert_int_eq(nd_constraint_kind_parse(nd_constraint_kind_name(i), &k, NULL),
                         ND_STATUS_OK);
        ck_assert_int_eq(k, i);
        struct nd_constraint d = nd_constraint_default(i);
        ck_assert_int_eq(d.kind, i);
        ck_assert_int_eq(nd_constraint_validate(&d, NULL), ND_STATUS_OK);
    }
    ck_assert_str_eq(nd_constraint_kind_name(ND_CONSTRAINT_MIN_MAX_NORM), "min_max_norm");
    ck_assert(nd_constraint_default(ND_CONSTRAINT_MAX_NORM).max_value == 2.0);
    struct nd_constraint mm = nd_constraint_default(ND_CONSTRAINT_MIN_MAX_NORM);
    ck_assert(mm.min_value == 0.0 && mm.max_value == 1.0 && mm.rate == 1.0);
}
END_TEST

START_TEST(test_non_neg_and_none) {
    float w[5] = {1.5f, -2.0f, 0.0f, -1e-30f, 3.0f};
    nd_constraint_apply(&(struct nd_constraint){ND_CONSTRAINT_NONE}, w, 5);
    ck_assert(w[1] == -2.0f && w[3] == -1e-30f);
    nd_constraint_apply(&(struct nd_constraint){ND_CONSTRAINT_NON_NEG}, w, 5);
    const float want[5] = {1.5f, 0.0f, 0.0f, 0.0f, 3.0f};
    ck_assert_mem_eq(w, want, sizeof w);
}
END_TEST

START_TEST(test_max_norm) {
    const float big[2] = {3.0f, 4.0f}; // norm 5
    struct nd_constraint c = {ND_CONSTRAINT_MAX_NORM, .max_value = 2.0};
    double norm = check_constraint(c, big, 2);
    ck_assert_double_eq_tol(norm, 2.0 * 5 / (5 + 1e-7), 1e-6);
    // Inside the bound Keras still scales by norm/(eps + norm): the epsilon is visible.
    const float small[2] = {0.3f, 0.4f};
    float x[2] = {0.3f, 0.4f};
    check_constraint(c, small, 2);
    nd_constraint_apply(&c, x, 2);
    ck_assert_float_lt(x[1], 0.4f);
    ck_assert_float_eq_tol(x[1], 0.4 * 0.5 / (0.5 + 1e-7), 3e-8);
}
END_TEST

START_TEST(test_unit_norm) {
    const float w[3] = {3.0f, 0.0f, -4.0f};
    double norm = check_constraint((struct nd_constraint){ND_CONSTRAINT_UNIT_NORM}, w, 3);
    ck_assert_double_eq_tol(norm, 5 / (5 + 1e-7), 1e-7);
    float x[3] = {3.0f, 0.0f, -4.0f};
    nd_constraint_apply(&(struct nd_constraint){ND_CONSTRAINT_UNIT_NORM}, x, 3);
    ck_assert_float_eq_tol(x[2], -0.8, 1e-7);
}
END_TEST

START_TEST(test_min_max_norm) {
    const float big[2] = {3.0f, 4.0f};   // norm 5
    const float small[2] = {0.3f, 0.4f}; // norm 0.5
    struct nd_constraint c = {ND_CONSTRAINT_MIN_MAX_NORM, 1.0, 2.0, 1.0};
    ck_assert_double_eq_tol(check_constraint(c, big, 2), 2.0, 1e-6);   // down to max
    ck_assert_double_eq_tol(check_constraint(c, small, 2), 1.0, 1e-6); // up to min
    const float mid[2] = {0.9f, 1.2f}; // norm 1.5, inside: only the epsilon
    ck_assert_double_eq_tol(check_constraint(c, mid, 2), 1.5, 1e-6);
    // rate 0: desired = norm, so only the epsilon; rate 0.5: halfway, 0.5*2 + 0.5*5 = 3.5.
    c.rate = 0.0;
    ck_assert_double_eq_tol(check_constraint(c, big, 2), 5.0, 1e-6);
    c.rate = 0.5;
    ck_assert_double_eq_tol(check_constraint(c, big, 2), 3.5, 1e-6);
}
END_TEST

START_TEST(test_constraints_on_zero_array) {
    // norm 0: the scale is desired/1e-7, finite, so zeros stay zeros (no NaN from 0/0).
    struct nd_constraint cs[3] = {{ND_CONSTRAINT_MAX_NORM, .max_value = 2.0},
                                  {ND_CONSTRAINT_UNIT_NORM},
                                  {ND_CONSTRAINT_MIN_MAX_NORM, 1.0, 2.0, 1.0}};
    for (int k = 0; k < 3; k++) {
        float z[4] = {0};
        nd_constraint_apply(&cs[k], z, 4);
        for (int i = 0; i < 4; i++)
            ck_assert(z[i] == 0.0f);
    }
    // n = 0 touches nothing.
    float one = 5.0f;
    nd_constraint_apply(&cs[1], &one, 0);
    ck_assert(one == 5.0f);
}
END_TEST

START_TEST(test_norm_in_double) {
    // 1e20^2 overflows float but not double: the norm is still 1e20 * sqrt(2).
    const float w[2] = {1e20f, 1e20f};
    double norm = check_constraint((struct nd_constraint){ND_CONSTRAINT_UNIT_NORM}, w, 2);
    ck_assert_double_eq_tol(norm, 1.0, 1e-6);
}
END_TEST

// ---- errors ----

// Validates opt and asserts ND_STATUS_INVALID_VALUE naming field.
static void assert_opt_rejected(struct nd_optimizer opt, const char *field) {
    struct nd_error err;
    nd_error_clear(&err);
    ck_assert_int_eq(nd_optimizer_validate(&opt, &err), ND_STATUS_INVALID_VALUE);
    ck_assert_int_eq(err.code, ND_STATUS_INVALID_VALUE);
    ck_assert_str_eq(err.field, field);
    ck_assert_ptr_nonnull(strstr(err.msg, field));
}

START_TEST(test_optimizer_validate_errors) {
    struct nd_optimizer sgd = nd_optimizer_default(ND_OPTIMIZER_SGD), o;
    struct nd_optimizer adam = nd_optimizer_default(ND_OPTIMIZER_ADAM);
    const double bad_lr[3] = {-1.0, NAN, INFINITY};
    for (int i = 0; i < 3; i++) {
        o = sgd, o.learning_rate = bad_lr[i];
        assert_opt_rejected(o, "learning_rate");
        o = adam, o.learning_rate = bad_lr[i];
        assert_opt_rejected(o, "learning_rate");
    }
    const double bad_mu[3] = {1.5, -0.1, NAN};
    for (int i = 0; i < 3; i++) {
        o = sgd, o.momentum = bad_mu[i];
        assert_opt_rejected(o, "momentum");
    }
    o = sgd, o.nesterov = true;
    assert_opt_rejected(o, "nesterov");
    const double bad_beta[3] = {1.0, -0.1, NAN};
    for (int i = 0; i < 3; i++) {
        o = adam, o.beta_1 = bad_beta[i];
        assert_opt_rejected(o, "beta_1");
        o = adam, o.beta_2 = bad_beta[i];
        assert_opt_rejected(o, "beta_2");
    }
    const double bad_eps[3] = {0.0, -1e-7, INFINITY};
    for (int i = 0; i < 3; i++) {
        o = adam, o.epsilon = bad_eps[i];
        assert_opt_rejected(o, "epsilon");
    }
    // The edges that are valid: lr 0, momentum 1 (with nesterov), beta 0; adam ignores momentum.
    o = sgd, o.learning_rate = 0.0, o.momentum = 1.0, o.nesterov = true;
    ck_assert_int_eq(nd_optimizer_validate(&o, NULL), ND_STATUS_OK);
    o = adam, o.beta_1 = 0.0, o.beta_2 = 0.0, o.momentum = 5.0;
    ck_assert_int_eq(nd_optimizer_validate(&o, NULL), ND_STATUS_OK);
    o = sgd, o.kind = ND_OPTIMIZER_COUNT;
    ck_assert_int_eq(nd_optimizer_validate(&o, NULL), ND_STATUS_INVALID_ARGUMENT);
    ck_assert_int_eq(nd_optimizer_validate(NULL, NULL), ND_STATUS_INVALID_ARGUMENT);
}
END_TEST

START_TEST(test_parse_errors) {
    struct nd_error err;
    nd_error_clear(&err);
    enum nd_optimizer_kind ok = ND_OPTIMIZER_ADAM;
    ck_assert_int_eq(nd_optimizer_kind_parse("rmsprop", &ok, &err), ND_STATUS_INVALID_VALUE);
    ck_assert_int_eq(ok, ND_OPTIMIZER_ADAM);
    ck_assert_ptr_nonnull(strstr(err.msg, "\"rmsprop\""));
    ck_assert_ptr_nonnull(strstr(err.msg, "sgd"));
    ck_assert_ptr_nonnull(strstr(err.msg, "adam"));
    ck_assert_int_eq(nd_optimizer_kind_parse(NULL, &ok, NULL), ND_STATUS_INVALID_ARGUMENT);
    ck_assert_int_eq(nd_optimizer_kind_parse("sgd", NULL, NULL), ND_STATUS_INVALID_ARGUMENT);
    ck_assert_str_eq(nd_optimizer_kind_name(ND_OPTIMIZER_COUNT), "unknown");
    nd_error_clear(&err);
    enum nd_constraint_kind ck = ND_CONSTRAINT_NONE;
    ck_assert_int_eq(nd_constraint_kind_parse("maxnorm", &ck, &err), ND_STATUS_INVALID_VALUE);
    ck_assert_int_eq(ck, ND_CONSTRAINT_NONE);
    ck_assert_ptr_nonnull(strstr(err.msg, "\"maxnorm\""));
    ck_assert_ptr_nonnull(strstr(err.msg, "min_max_norm"));
    ck_assert_int_eq(nd_constraint_kind_parse(NULL, &ck, NULL), ND_STATUS_INVALID_ARGUMENT);
    ck_assert_int_eq(nd_constraint_kind_parse("none", NULL, NULL), ND_STATUS_INVALID_ARGUMENT);
    ck_assert_str_eq(nd_constraint_kind_name((enum nd_constraint_kind) - 1), "unknown");
}
END_TEST

// Validates c and asserts ND_STATUS_INVALID_VALUE naming field.
static void assert_constraint_rejected(struct nd_constraint c, const char *field) {
    struct nd_error err;
    nd_error_clear(&err);
    ck_assert_int_eq(nd_constraint_validate(&c, &err), ND_STATUS_INVALID_VALUE);
    ck_assert_str_eq(err.field, field);
}

START_TEST(test_constraint_regularizer_errors) {
    assert_constraint_rejected((struct nd_constraint){ND_CONSTRAINT_MAX_NORM, 0, 0, 0},
                               "max_value");
    assert_constraint_rejected((struct nd_constraint){ND_CONSTRAINT_MAX_NORM, 0, -1, 0},
                               "max_value");
    assert_constraint_rejected((struct nd_constraint){ND_CONSTRAINT_MAX_NORM, 0, NAN, 0},
                               "max_value");
    assert_constraint_rejected((struct nd_constraint){ND_CONSTRAINT_MIN_MAX_NORM, -1, 1, 1},
                               "min_value");
    assert_constraint_rejected((struct nd_constraint){ND_CONSTRAINT_MIN_MAX_NORM, 2, 1, 1},
                               "min_value");
    assert_constraint_rejected((struct nd_constraint){ND_CONSTRAINT_MIN_MAX_NORM, 0, INFINITY, 1},
                               "max_value");
    assert_constraint_rejected((struct nd_constraint){ND_CONSTRAINT_MIN_MAX_NORM, 0, 1, 2}, "rate");
    assert_constraint_rejected((struct nd_constraint){ND_CONSTRAINT_MIN_MAX_NORM, 0, 1, NAN},
                               "rate");
    // min == max is fine; non_neg and unit_norm ignore the numbers.
    struct nd_constraint eq = {ND_CONSTRAINT_MIN_MAX_NORM, 1, 1, 0};
    ck_assert_int_eq(nd_constraint_validate(&eq, NULL), ND_STATUS_OK);
    struct nd_constraint nn = {ND_CONSTRAINT_NON_NEG, NAN, -1, 7};
    ck_assert_int_eq(nd_constraint_validate(&nn, NULL), ND_STATUS_OK);
    struct nd_constraint bad = {ND_CONSTRAINT_COUNT};
    ck_assert_int_eq(nd_constraint_validate(&bad, NULL), ND_STATUS_INVALID_ARGUMENT);
    ck_assert_int_eq(nd_constraint_validate(NULL, NULL), ND_STATUS_INVALID_ARGUMENT);
    // Regularizer.
    struct nd_error err;
    nd_error_clear(&err);
    struct nd_regularizer r1 = {.l1 = -1};
    ck_assert_int_eq(nd_regularizer_validate(&r1, &err), ND_STATUS_INVALID_VALUE);
    ck_assert_str_eq(err.field, "l1");
    nd_error_clear(&err);
    struct nd_regularizer r2 = {.l2 = NAN};
    ck_assert_int_eq(nd_regularizer_validate(&r2, &err), ND_STATUS_INVALID_VALUE);
    ck_assert_str_eq(err.field, "l2");
    ck_assert_int_eq(nd_regularizer_validate(NULL, NULL), ND_STATUS_INVALID_ARGUMENT);
}
END_TEST

START_TEST(test_state_errors) {
    struct nd_error err;
    nd_error_clear(&err);
    ck_assert_int_eq(nd_optim_state_prepare(NULL, ND_OPTIMIZER_SGD, 3, &err),
                     ND_STATUS_INVALID_ARGUMENT);
    ck_assert_int_eq(err.code, ND_STATUS_INVALID_ARGUMENT);
    struct nd_optim_state st = {0};
    ck_assert_int_eq(nd_optim_state_prepare(&st, ND_OPTIMIZER_SGD, -1, NULL),
                     ND_STATUS_INVALID_ARGUMENT);
    ck_assert_int_eq(nd_optim_state_prepare(&st, ND_OPTIMIZER_COUNT, 3, NULL),
                     ND_STATUS_INVALID_ARGUMENT);
    // Too large to size: an error, and the prepared state is left as it was.
    ck_assert_int_eq(nd_optim_state_prepare(&st, ND_OPTIMIZER_ADAM, 3, NULL), ND_STATUS_OK);
    st.t = 4;
    st.m[1] = 2.5f;
    float *m = st.m, *v = st.v;
    nd_error_clear(&err);
    ck_assert_int_eq(nd_optim_state_prepare(&st, ND_OPTIMIZER_SGD, INT64_MAX, &err),
                     ND_STATUS_LIMIT_EXCEEDED);
    ck_assert_int_eq(err.code, ND_STATUS_LIMIT_EXCEEDED);
    ck_assert(st.kind == ND_OPTIMIZER_ADAM && st.n == 3 && st.t == 4);
    ck_assert(st.m == m && st.v == v && st.m[1] == 2.5f);
    nd_optim_state_deinit(&st);
    nd_optim_state_deinit(NULL);
    nd_optim_state_deinit(&st); // twice: the first zeroed it
    ck_assert_int_eq(nd_optim_state_clone(NULL, &st, NULL), ND_STATUS_INVALID_ARGUMENT);
    ck_assert_int_eq(nd_optim_state_clone(&st, NULL, NULL), ND_STATUS_INVALID_ARGUMENT);
}
END_TEST

Suite *optim_suite(void) {
    Suite *s = suite_create("optim");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_names_and_defaults);
    tcase_add_test(tc, test_sgd_plain);
    tcase_add_test(tc, test_sgd_momentum);
    tcase_add_test(tc, test_sgd_nesterov);
    tcase_add_test(tc, test_adam_two_steps);
    tcase_add_test(tc, test_adam_bias_correction_uses_t);
    tcase_add_test(tc, test_lr_mult);
    tcase_add_test(tc, test_state_reset);
    tcase_add_test(tc, test_clone_is_deep);
    tcase_add_test(tc, test_regularizer_gradient);
    tcase_add_test(tc, test_constraint_names_and_defaults);
    tcase_add_test(tc, test_non_neg_and_none);
    tcase_add_test(tc, test_max_norm);
    tcase_add_test(tc, test_unit_norm);
    tcase_add_test(tc, test_min_max_norm);
    suite_add_tcase(s, tc);
    TCase *tl = tcase_create("limits");
    tcase_add_test(tl, test_lr_zero_leaves_w);
    tcase_add_test(tl, test_unprepared_step_is_noop);
    tcase_add_test(tl, test_constraints_on_zero_array);
    tcase_add_test(tl, test_norm_in_double);
    suite_add_tcase(s, tl);
    TCase *te = tcase_create("errors");
    tcase_add_test(te, test_optimizer_validate_errors);
    tcase_add_test(te, test_parse_errors);
    tcase_add_test(te, test_constraint_regularizer_errors);
    tcase_add_test(te, test_state_errors);
    suite_add_tcase(s, te);
    return s;
}
