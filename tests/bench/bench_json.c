// bench_json.c - the JSON numbers of a forward, in ns per number and ns per byte (issue 12).
//
// A medium forward's body is {"input": [[...256 numbers...] x 32]} with values like
// -1.234567 (what a client's round(x, 6) prints), and its reply is the same 8192 values as
// shortest round-trip float32 text. Single thread, median of --reps repetitions (in thread CPU
// time), each long enough for the clock (MIN_REP_SECONDS). Rows:
//   parse  strtof            the C library on each number (the reference: exact but slow)
//   parse  api_parse_float   normd's number parser alone, on each number
//   parse  api_fast_extract  the body copied, then its array read into a tensor in place
//   parse  whole body        api_parse_body: the array read out, the rest (a placeholder)
//                            copied and parsed by jansson
//   print  snprintf %.9g     the C library's 9-digit text (round-trips, not shortest)
//   print  fmt_float   normd's shortest float32 text alone
//   print  api_tensor_write  the reply's nested lists through the writer, and its finish
//
//   build/bench_json [--reps N] [--op NAME]   (NAME as in the operation column: one row only)
//   build/bench_json --verify-all [FIRST LAST]  every float32 bit pattern (or those from FIRST
//       to LAST, hex) through jw_floats, as a reply writes them: the text must be jw_float's,
//       and each number must read back through strtof as the same bits (minutes, 2 threads)
#define _GNU_SOURCE // CLOCK_THREAD_CPUTIME_ID with -std=c11
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/json_fast.h"
#include "api/json_tensor.h"
#include "api/jw.h"
#include "tests/test_rng.h"

#define ROWS            32
#define COLS            256
#define COUNT           (ROWS * COLS)
#define MIN_REP_SECONDS 0.02

// This thread's CPU time: on a shared machine, time spent preempted is not the code's.
static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// A fixed sequence: every run measures the same numbers.
static struct test_rng rng = {0x9e3779b97f4a7c15u};

static double uniform(double lo, double hi) {
    return lo + (hi - lo) * (double)(test_rng_next(&rng) >> 11) * 0x1p-53;
}

// ---- the workload ----

struct work {
    char *body; // the request body, NUL-terminated
    size_t body_len;
    const char *numbers[COUNT]; // where each number starts in body
    size_t lengths[COUNT];
    float values[COUNT]; // the reply's values (the normalized input)
    volatile float sink; // results kept alive
    volatile size_t sink_len;
};

// Six decimals without trailing zeros, as Python prints round(x, 6): "-1.234567", "0.5".
static int six_decimals(char *out, size_t size, double v) {
    int n = snprintf(out, size, "%.6f", v);
    while (n > 2 && out[n - 1] == '0' && out[n - 2] != '.')
        out[--n] = '\0';
    return n;
}

static void make_work(struct work *w) {
    size_t cap = (size_t)COUNT * 16 + 64, len = 0;
    w->body = malloc(cap);
    len += (size_t)sprintf(w->body, "{\"input\": [");
    for (int r = 0; r < ROWS; r++) {
        w->body[len++] = '[';
        for (int c = 0; c < COLS; c++) {
            int k = r * COLS + c;
            w->numbers[k] = w->body + len;
            w->lengths[k] = (size_t)six_decimals(w->body + len, cap - len, uniform(-2, 2));
            len += w->lengths[k];
            if (c + 1 < COLS)
                len += (size_t)sprintf(w->body + len, ", ");
        }
        len += (size_t)sprintf(w->body + len, r + 1 < ROWS ? "], " : "]");
    }
    len += (size_t)sprintf(w->body + len, "]}");
    w->body_len = len;
    // The reply of a batch norm with unit statistics: x / sqrt(1 + 1e-3) as float32, values
    // whose shortest text has 7 to 9 digits.
    for (int k = 0; k < COUNT; k++)
        w->values[k] = (float)(strtod(w->numbers[k], NULL) / 1.0004998750624610);
}

// ---- the measured operations: each handles all COUNT numbers once ----

static size_t op_strtof(struct work *w) {
    float acc = 0;
    char tmp[32];
    for (int k = 0; k < COUNT; k++) { // strtof needs the number alone: ", " would end it too
        memcpy(tmp, w->numbers[k], w->lengths[k]);
        tmp[w->lengths[k]] = '\0';
        acc += strtof(tmp, NULL);
    }
    w->sink = acc;
    return w->body_len;
}

static size_t op_parse_float(struct work *w) {
    float acc = 0, v = 0;
    for (int k = 0; k < COUNT; k++) { // the rest of the body follows, as for the scanner
        api_parse_float(w->numbers[k], w->body_len - (size_t)(w->numbers[k] - w->body), &v);
        acc += v;
    }
    w->sink = acc;
    return w->body_len;
}

// api_parse_body's first steps: a copy the reader may overwrite, then the arrays read out.
static size_t op_extract(struct work *w) {
    char *text = malloc(w->body_len + 1);
    memcpy(text, w->body, w->body_len);
    struct api_fast_tensors fast;
    size_t len = api_fast_extract(text, w->body_len, INT64_MAX, &fast);
    w->sink = fast.count ? fast.t[0].data[COUNT - 1] : 0;
    api_fast_release(&fast);
    free(text);
    w->sink_len = len;
    return w->body_len;
}

// All of api_parse_body: the arrays read out (the rest copied), the cost measure and jansson
// on the rest.
static size_t op_whole_body(struct work *w) {
    struct api_fast_tensors fast;
    size_t len = 0;
    char *text = api_fast_extract_copy(w->body, w->body_len, INT64_MAX, &fast, &len);
    struct api_json_cost cost = api_json_measure(text, len);
    json_error_t jerr;
    json_t *body = json_loadb(text, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
    free(text);
    struct nd_tensor x = {0};
    if (body && api_fast_take(&fast, json_object_get(body, "input"), &x) == 1)
        w->sink = x.data[COUNT - 1];
    nd_tensor_deinit(&x);
    json_decref(body);
    api_fast_release(&fast);
    w->sink_len = cost.bytes;
    return w->body_len;
}

static size_t op_snprintf(struct work *w) {
    char buf[32];
    size_t bytes = 0;
    for (int k = 0; k < COUNT; k++)
        bytes += (size_t)snprintf(buf, sizeof buf, "%.9g", (double)w->values[k]) + 1;
    w->sink_len = bytes;
    return bytes;
}

static size_t op_format_float(struct work *w) {
    char buf[24];
    size_t bytes = 0;
    for (int k = 0; k < COUNT; k++)
        bytes += (size_t)fmt_float(w->values[k], buf) + 1; // and its comma
    w->sink_len = bytes;
    return bytes;
}

// The reply's body as h_forward.c writes it.
static size_t op_tensor_write(struct work *w) {
    int64_t dims[2] = {ROWS, COLS};
    struct nd_shape shape = nd_shape_make(2, dims);
    struct nd_tensor t = nd_tensor_view(w->values, &shape);
    struct jw jw;
    jw_init(&jw);
    jw_obj_begin(&jw);
    jw_key(&jw, "output");
    api_tensor_write(&jw, &t, API_FORM_NESTED);
    jw_key(&jw, "version");
    jw_uint(&jw, 1);
    jw_obj_end(&jw);
    size_t len = 0;
    free(jw_finish(&jw, &len));
    w->sink_len = len;
    return len;
}

// ---- timing ----

struct op {
    const char *kind, *name;
    size_t (*fn)(struct work *w);
};

static const struct op ops[] = {
    {"parse", "strtof", op_strtof},
    {"parse", "api_parse_float", op_parse_float},
    {"parse", "api_fast_extract", op_extract},
    {"parse", "whole body", op_whole_body},
    {"print", "snprintf %.9g", op_snprintf},
    {"print", "fmt_float", op_format_float},
    {"print", "api_tensor_write", op_tensor_write},
};

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

// Median seconds of one call over reps repetitions (*best: the fastest repetition's, less
// noisy on a busy machine); *bytes gets the text one call covers.
static double time_op(const struct op *op, struct work *w, int reps, size_t *bytes, double *best) {
    double t[101];
    int iters = 1;
    for (;;) { // calibrate: enough calls per repetition for the clock
        double t0 = now();
        for (int i = 0; i < iters; i++)
            *bytes = op->fn(w);
        if (now() - t0 >= MIN_REP_SECONDS)
            break;
        iters *= 2;
    }
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        for (int i = 0; i < iters; i++)
            op->fn(w);
        t[r] = (now() - t0) / iters;
    }
    qsort(t, (size_t)reps, sizeof t[0], cmp_double);
    *best = t[0];
    return t[reps / 2];
}

// ---- every float ----

struct verify_job {
    uint64_t first, last; // bit patterns [first, last)
    uint64_t checked, bad;
};

#define VERIFY_BLOCK 4096

// jw_floats's text for one block against jw_float's, and each number read back by strtof.
static void verify_block(struct verify_job *job, const float *v, int n) {
    struct jw a, b;
    jw_init(&a);
    jw_init(&b);
    jw_arr_begin(&a);
    jw_arr_begin(&b);
    jw_floats(&a, v, n);
    for (int i = 0; i < n; i++)
        jw_float(&b, v[i]);
    jw_arr_end(&a);
    jw_arr_end(&b);
    size_t alen, blen;
    char *ta = jw_finish(&a, &alen), *tb = jw_finish(&b, &blen);
    uint32_t first;
    memcpy(&first, v, 4);
    if (!ta || !tb || alen != blen || memcmp(ta, tb, alen) != 0) {
        if (job->bad++ < 10)
            fprintf(stderr, "block from %08x: jw_floats differs from jw_float\n", first);
    } else {
        const char *p = ta + 1; // after '['
        for (int i = 0; i < n; i++) {
            uint32_t want, got;
            memcpy(&want, &v[i], 4);
            bool ok;
            const char *next;
            if (*p == '"') { // "NaN", "Infinity", "-Infinity": the non-finite values only
                next = strchr(p + 1, '"') + 1;
                ok = !isfinite(v[i]);
            } else {
                char *end;
                float r = strtof(p, &end);
                memcpy(&got, &r, 4);
                next = end;
                ok = got == want;
            }
            if (!ok && job->bad++ < 10)
                fprintf(stderr, "%08x printed %.24s does not read back\n", want, p);
            p = next + 1; // the comma
        }
    }
    job->checked += (uint64_t)n;
    free(ta);
    free(tb);
}

static void *verify_thread(void *arg) {
    struct verify_job *job = arg;
    float v[VERIFY_BLOCK];
    for (uint64_t x = job->first; x < job->last; x += VERIFY_BLOCK) {
        int n = job->last - x < VERIFY_BLOCK ? (int)(job->last - x) : VERIFY_BLOCK;
        for (int i = 0; i < n; i++) {
            uint32_t bits = (uint32_t)(x + (uint64_t)i);
            memcpy(&v[i], &bits, 4);
        }
        verify_block(job, v, n);
    }
    return NULL;
}

static int verify_all(uint64_t first, uint64_t last) {
    struct verify_job jobs[2];
    pthread_t threads[2];
    uint64_t mid = first + (last - first) / 2;
    jobs[0] = (struct verify_job){first, mid, 0, 0};
    jobs[1] = (struct verify_job){mid, last, 0, 0};
    for (int t = 0; t < 2; t++)
        pthread_create(&threads[t], NULL, verify_thread, &jobs[t]);
    for (int t = 0; t < 2; t++)
        pthread_join(threads[t], NULL);
    uint64_t checked = jobs[0].checked + jobs[1].checked, bad = jobs[0].bad + jobs[1].bad;
    printf("jw_floats: %llu float32 bit patterns [%08llx, %08llx) checked, %llu bad\n",
           (unsigned long long)checked, (unsigned long long)first, (unsigned long long)last,
           (unsigned long long)bad);
    return bad ? 1 : 0;
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "--verify-all") == 0) {
        uint64_t first = argc > 3 ? strtoull(argv[2], NULL, 16) : 0;
        uint64_t last = argc > 3 ? strtoull(argv[3], NULL, 16) : UINT64_C(1) << 32;
        return verify_all(first, last);
    }
    int reps = 11;
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc) {
            reps = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--op") == 0 && i + 1 < argc) {
            only = argv[++i];
        } else {
            fprintf(stderr, "usage: %s [--reps N (1..101)] [--op NAME]\n", argv[0]);
            return 2;
        }
    }
    if (reps < 1 || reps > 101) {
        fprintf(stderr, "--reps must be 1..101\n");
        return 2;
    }
    static struct work w;
    make_work(&w);
    printf("JSON numbers of a %dx%d forward: body %zu bytes, %d numbers; median of %d, one "
           "thread\n\n",
           ROWS, COLS, w.body_len, COUNT, reps);
    printf("| %-5s | %-18s | %9s | %9s | %8s | %8s | %9s |\n", "", "operation", "ns/number",
           "ns/byte", "us/call", "MB/s", "best ns/n");
    printf(
        "|-------|--------------------|-----------|-----------|----------|----------|-----------|"
        "\n");
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        if (only && strcmp(only, ops[i].name) != 0)
            continue;
        size_t bytes = 0;
        double best = 0, s = time_op(&ops[i], &w, reps, &bytes, &best);
        printf("| %-5s | %-18s | %9.2f | %9.3f | %8.1f | %8.0f | %9.2f |\n", ops[i].kind,
               ops[i].name, s * 1e9 / COUNT, s * 1e9 / (double)bytes, s * 1e6,
               (double)bytes / s / 1e6, best * 1e9 / COUNT);
    }
    free(w.body);
    return 0;
}
