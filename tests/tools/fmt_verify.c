// fmt_verify.c - checks fmt_float / fmt_double against a slow reference, and
// measures their speed. Not part of `make test` (it runs for minutes).
//
// Build and run (it includes api/fmt.c to reach its static helpers):
//   cc -std=c11 -D_POSIX_C_SOURCE=200809L -I. -O2 -o build/fmt_verify tests/tools/fmt_verify.c
//      -lm -lpthread    (one line)
//   build/fmt_verify            binades, subnormals, 10M random floats, 10M random doubles, speed
//   build/fmt_verify all        also every one of the 2^32 float bit patterns (round trip only)
//   build/fmt_verify speed      speed only
//
// The reference finds the shortest length p from 1 up: a p-digit decimal reads back as v iff
// the p-digit decimal just below or just above v does (the rounding interval is convex), and
// those two are printf's correctly rounded "%.{p-1}e" and its neighbour one unit in the last
// digit away. The formatter must produce p digits, and the same digits as the first candidate
// that reads back, tried nearest first (Schubfach picks the closest of the shortest). For
// floats "reads back" means through strtof and through strtod plus a cast to float (see
// float_decimal_careful in api/fmt.c).
#include "api/fmt.c"
#include "api/jw.c"

#include <float.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <time.h>

#define NTHREADS 2

// ---- decimals as digit strings ----

// A decimal as its significant digits (no leading or trailing zeros) and the exponent of its
// leading digit: 0.00123 is {"123", -3}.
struct digits {
    char d[32];
    int e10;
};

// Parses printf's "%.*e" text or the formatter's output into struct digits; false when the
// text is not a JSON number.
static bool parse_number(const char *s, struct digits *out) {
    const char *p = s;
    if (*p == '-')
        p++;
    if (!(*p >= '0' && *p <= '9'))
        return false;
    if (*p == '0' && p[1] >= '0' && p[1] <= '9')
        return false; // JSON forbids leading zeros
    char all[64];
    int n = 0, point = -1;
    for (; (*p >= '0' && *p <= '9') || *p == '.'; p++) {
        if (*p == '.') {
            if (point >= 0 || !(p[1] >= '0' && p[1] <= '9'))
                return false;
            point = n;
        } else if (n < 60) {
            all[n++] = *p;
        }
    }
    if (point < 0)
        point = n;
    int exp = 0;
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '+' || *p == '-')
            p++;
        if (!(*p >= '0' && *p <= '9'))
            return false;
        exp = atoi(p - (p[-1] == '-' || p[-1] == '+'));
        while (*p >= '0' && *p <= '9')
            p++;
    }
    if (*p)
        return false;
    int lead = 0;
    while (lead < n && all[lead] == '0')
        lead++;
    int end = n;
    while (end > lead && all[end - 1] == '0')
        end--;
    if (lead == end) {
        snprintf(out->d, sizeof out->d, "0");
        out->e10 = 0;
        return true;
    }
    memcpy(out->d, all + lead, (size_t)(end - lead));
    out->d[end - lead] = '\0';
    out->e10 = point - lead - 1 + exp;
    return true;
}

static bool digits_equal(const struct digits *a, const struct digits *b) {
    return a->e10 == b->e10 && strcmp(a->d, b->d) == 0;
}

// printf's p-digit rounding of x moved by delta units of its last digit, as "d.ddde+XX".
static void nudged(double x, int p, int delta, char *buf, size_t size) {
    char tmp[64];
    snprintf(tmp, sizeof tmp, "%.*e", p - 1, x);
    if (delta == 0) {
        snprintf(buf, size, "%s", tmp);
        return;
    }
    char *e = strchr(tmp, 'e');
    int exp = atoi(e + 1);
    uint64_t m = 0;
    for (char *q = tmp; q < e; q++)
        if (*q >= '0' && *q <= '9')
            m = m * 10 + (uint64_t)(*q - '0');
    m = delta > 0 ? m + 1 : m - 1;
    snprintf(buf, size, "%s%" PRIu64 "e%d", x < 0 ? "-" : "", m, exp - (p - 1));
}

// ---- the float reference ----

// Reads back as v through strtof, and through strtod then a cast to float, as readers built
// on double do (jansson, Python's json with numpy): the formatter promises both.
static bool float_reads_back(const char *s, float v) {
    float r = strtof(s, NULL), via_double = (float)strtod(s, NULL);
    return memcmp(&r, &v, sizeof r) == 0 && memcmp(&via_double, &v, sizeof v) == 0;
}

// Shortest p; *nearest = printf's p-digit rounding when it reads back, else the neighbour.
static int ref_float(float v, char *nearest, size_t size) {
    for (int p = 1; p <= 9; p++) {
        for (int delta = 0; delta <= 2; delta++) {
            nudged(v, p, delta == 2 ? -1 : delta, nearest, size);
            if (float_reads_back(nearest, v))
                return p;
        }
    }
    return -1;
}

static bool double_reads_back(const char *s, double v) {
    double r = strtod(s, NULL);
    return memcmp(&r, &v, sizeof r) == 0;
}

// The double reference starts at p = n - 1 (n = the formatter's digit count) rather than 1:
// any shorter decimal in the rounding interval is also an (n-1)-digit one (pad it with zeros),
// so "none at n - 1" covers every shorter length, at a fraction of the cost.
static int ref_double(double v, int from, char *nearest, size_t size) {
    for (int p = from > 1 ? from : 1; p <= 17; p++) {
        for (int delta = 0; delta <= 2; delta++) {
            nudged(v, p, delta == 2 ? -1 : delta, nearest, size);
            if (double_reads_back(nearest, v))
                return p;
        }
    }
    return -1;
}

// ---- checks ----

struct tally {
    uint64_t checked, bad, careful; // careful: values that took float_decimal_careful
};

static void report_bad(struct tally *t, const char *what, const char *got, const char *want,
                       uint64_t bits) {
    if (t->bad++ < 10)
        fprintf(stderr, "MISMATCH %s bits=0x%" PRIx64 " got=%s ref=%s\n", what, bits, got, want);
}

static void check_float(float v, struct tally *t) {
    uint32_t bits;
    memcpy(&bits, &v, sizeof bits);
    if (!isfinite(v))
        return;
    char got[24], want[64];
    int len = fmt_float(v, got);
    t->checked++;
    struct digits g, r;
    if (len != (int)strlen(got) || len > 17 || !parse_number(got, &g)) {
        report_bad(t, "float-syntax", got, "", bits);
        return;
    }
    // strtof, and strtod then a cast to float as jansson-based readers do (double rounding).
    float via_double = (float)strtod(got, NULL);
    if (!float_reads_back(got, v) || memcmp(&via_double, &v, sizeof v) != 0) {
        report_bad(t, "float-roundtrip", got, "", bits);
        return;
    }
    if (v == 0)
        return;
    int p = ref_float(v, want, sizeof want);
    parse_number(want, &r);
    if ((int)strlen(g.d) != p || !digits_equal(&g, &r))
        report_bad(t, "float-shortest", got, want, bits);
}

static void check_double(double v, struct tally *t) {
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    if (!isfinite(v))
        return;
    char got[32], want[64];
    int len = fmt_double(v, got);
    t->checked++;
    struct digits g, r;
    if (len != (int)strlen(got) || len > 24 || !parse_number(got, &g)) {
        report_bad(t, "double-syntax", got, "", bits);
        return;
    }
    if (!double_reads_back(got, v)) {
        report_bad(t, "double-roundtrip", got, "", bits);
        return;
    }
    if (v == 0)
        return;
    int p = ref_double(v, (int)strlen(g.d) - 1, want, sizeof want);
    parse_number(want, &r);
    if ((int)strlen(g.d) != p || !digits_equal(&g, &r))
        report_bad(t, "double-shortest", got, want, bits);
}

// Round trip only (no reference): fast enough for all 2^32 patterns.
static void check_float_roundtrip(float v, struct tally *t) {
    if (!isfinite(v))
        return;
    char got[24];
    fmt_float(v, got);
    t->checked++;
    float via_double = (float)strtod(got, NULL);
    uint32_t bits;
    memcpy(&bits, &v, sizeof bits);
    if (!float_reads_back(got, v) || memcmp(&via_double, &v, sizeof v) != 0)
        report_bad(t, "float-roundtrip", got, "", bits);
    if (bits & 0x7fffffffu)
        t->careful += float_decimal(bits & 0x7fffffffu).careful;
}

// ---- work split over threads ----

enum job_kind {
    JOB_FLOAT_RANGE,
    JOB_FLOAT_RANDOM,
    JOB_DOUBLE_RANDOM,
    JOB_DOUBLE_DECIMAL,
    JOB_FLOAT_ALL
};

struct job {
    enum job_kind kind;
    uint64_t lo, hi; // bit-pattern range [lo, hi), or a count of random values
    uint64_t seed;
    struct tally tally;
};

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

static float float_of(uint32_t bits) {
    float v;
    memcpy(&v, &bits, sizeof v);
    return v;
}

static double double_of(uint64_t bits) {
    double v;
    memcpy(&v, &bits, sizeof v);
    return v;
}

static void *run_job(void *arg) {
    struct job *j = arg;
    for (uint64_t i = j->lo; i < j->hi; i++) {
        switch (j->kind) {
        case JOB_FLOAT_RANGE:
            check_float(float_of((uint32_t)i), &j->tally);
            break;
        case JOB_FLOAT_ALL:
            check_float_roundtrip(float_of((uint32_t)i), &j->tally);
            break;
        case JOB_FLOAT_RANDOM:
            check_float(float_of((uint32_t)splitmix(&j->seed)), &j->tally);
            break;
        case JOB_DOUBLE_RANDOM:
            check_double(double_of(splitmix(&j->seed)), &j->tally);
            break;
        case JOB_DOUBLE_DECIMAL: { // 1e-6 .. 1e17: the plain layouts with up to 17 digits
            uint64_t r = splitmix(&j->seed);
            check_double((double)(r >> 11) / 9007199254740992.0 * pow(10, (double)(r % 24) - 6),
                         &j->tally);
            break;
        }
        }
    }
    return NULL;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// Runs [lo, hi) split over the threads; returns the mismatches.
static uint64_t run(const char *name, enum job_kind kind, uint64_t lo, uint64_t hi) {
    pthread_t th[NTHREADS];
    struct job jobs[NTHREADS];
    double t0 = now_s();
    uint64_t step = (hi - lo + NTHREADS - 1) / NTHREADS;
    for (int i = 0; i < NTHREADS; i++) {
        uint64_t a = lo + step * (uint64_t)i, b = a + step < hi ? a + step : hi;
        jobs[i] =
            (struct job){.kind = kind, .lo = a, .hi = b, .seed = 12345u + 7919u * (uint64_t)i + lo};
        pthread_create(&th[i], NULL, run_job, &jobs[i]);
    }
    struct tally sum = {0};
    for (int i = 0; i < NTHREADS; i++) {
        pthread_join(th[i], NULL);
        sum.checked += jobs[i].tally.checked;
        sum.bad += jobs[i].tally.bad;
        sum.careful += jobs[i].tally.careful;
    }
    printf("%-44s checked %11" PRIu64 "  mismatches %" PRIu64 "  (%.1f s)\n", name, sum.checked,
           sum.bad, now_s() - t0);
    if (sum.careful)
        printf("%-44s %" PRIu64 " values took the careful (double-rounding) path\n", "",
               sum.careful);
    fflush(stdout);
    return sum.bad;
}

// ---- fixed cases ----

// The integer logarithms against long double over every exponent the formatter uses.
static uint64_t check_logs(void) {
    uint64_t bad = 0;
    for (int q = -1074; q <= 971; q++) {
        long double x = q * log10l(2.0L);
        if (flog10_pow2(q) != (int)floorl(x))
            bad++;
        if (q > -1074 && flog10_three_quarters_pow2(q) != (int)floorl(x + log10l(0.75L)))
            bad++;
    }
    for (int e = -292; e <= 324; e++)
        if (flog2_pow10(e) != (int)floorl(e * log2l(10.0L)))
            bad++;
    // float32's table: pow10_g's top 63 bits plus one, and floor(log2(10^e)) + 33.
    for (int e = FLOAT_E_MIN; e <= FLOAT_E_MAX; e++) {
        const uint64_t *g2 = pow10_g[e - POW10_E_MIN];
        bad += float_pow10[e - FLOAT_E_MIN].g != (g2[0] << 1 | g2[1] >> 63) + 1;
        bad += float_pow10[e - FLOAT_E_MIN].shift != flog2_pow10(e) + 33;
    }
    // digit_count at every power of ten and its neighbours.
    for (int i = 0; i < 20; i++) {
        uint64_t p = pow10_u64[i];
        bad += digit_count(p) != i + 1;
        if (i > 0) // digit_count wants d > 0
            bad += digit_count(p - 1) != i;
        bad += digit_count(p + 1) != i + 1;
    }
    bad += digit_count(UINT64_MAX) != 20;
    printf("%-44s mismatches %" PRIu64 "\n", "integer logarithms, tables, digit counts", bad);
    return bad;
}

// Doubles that stress the interval ends: powers of ten and two, their neighbours, integers,
// small subnormals, and the extremes.
static uint64_t check_double_cases(void) {
    struct tally t = {0};
    for (int e = -325; e <= 308; e++) {
        double p = strtod((char[16]){0}, NULL);
        char s[16];
        snprintf(s, sizeof s, "1e%d", e);
        p = strtod(s, NULL);
        check_double(p, &t);
        check_double(nextafter(p, 0), &t);
        check_double(nextafter(p, INFINITY), &t);
    }
    for (int e = -1074; e <= 1023; e++) {
        double p = ldexp(1.0, e);
        check_double(p, &t);
        check_double(nextafter(p, 0), &t);
        check_double(nextafter(p, INFINITY), &t);
    }
    for (uint64_t c = 1; c < 100000; c++) {
        check_double(double_of(c), &t);             // subnormals
        check_double((double)c, &t);                // integers
        check_double((double)c * 1e-3, &t);         // short decimals
        check_double((double)(c << 20) * 1e15, &t); // large integers with decimal zeros
    }
    double fixed[] = {DBL_MAX,
                      DBL_MIN,
                      DBL_TRUE_MIN,
                      0.1,
                      0.2,
                      0.3,
                      1.0 / 3,
                      2.0 / 3,
                      5e-324,
                      9007199254740991.0,
                      9007199254740992.0,
                      9007199254740993.0,
                      1e23,
                      8.41e21,
                      5.0e-310,
                      123456.78,
                      1e-7};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        check_double(fixed[i], &t);
    printf("%-44s checked %11" PRIu64 "  mismatches %" PRIu64 "\n", "doubles: special families",
           t.checked, t.bad);
    return t.bad;
}

// ---- speed ----

static volatile size_t sink;

static void speed(void) {
    enum { N = 1 << 20 };
    float *a = malloc(N * sizeof *a), *b = malloc(N * sizeof *b);
    double *d = malloc(N * sizeof *d);
    uint64_t seed = 99;
    for (int i = 0; i < N; i++) {
        // b: activations-like values (normal-ish, |x| ~ 1); a: any finite bit pattern
        uint32_t bits;
        do
            bits = (uint32_t)splitmix(&seed);
        while (!isfinite(float_of(bits)));
        a[i] = float_of(bits);
        double u1 = ((double)(splitmix(&seed) >> 11) + 1) / 9007199254740993.0;
        double u2 = (double)(splitmix(&seed) >> 11) / 9007199254740992.0;
        b[i] = (float)(sqrt(-2 * log(u1)) * cos(6.283185307179586 * u2));
        d[i] = double_of(splitmix(&seed) & 0x7fefffffffffffffu);
    }
    char buf[32];
    const struct {
        const char *name;
        int kind;
    } runs[] = {{"fmt_float, normal(0,1) floats", 0},
                {"fmt_float, random bit patterns", 1},
                {"snprintf %.9g (for scale), normal(0,1)", 2},
                {"fmt_double, random bit patterns", 3},
                {"jw_float into a writer, normal(0,1)", 4}};
    for (size_t r = 0; r < sizeof runs / sizeof runs[0]; r++) {
        double best = 1e9;
        for (int rep = 0; rep < 5; rep++) {
            size_t total = 0;
            struct jw w;
            jw_init(&w);
            jw_arr_begin(&w);
            double t0 = now_s();
            for (int i = 0; i < N; i++) {
                switch (runs[r].kind) {
                case 0:
                    total += (size_t)fmt_float(b[i], buf);
                    break;
                case 1:
                    total += (size_t)fmt_float(a[i], buf);
                    break;
                case 2:
                    total += (size_t)snprintf(buf, sizeof buf, "%.9g", b[i]);
                    break;
                case 3:
                    total += (size_t)fmt_double(d[i], buf);
                    break;
                case 4:
                    jw_float(&w, b[i]);
                    break;
                }
            }
            double dt = (now_s() - t0) / N * 1e9;
            jw_arr_end(&w);
            total += w.len;
            jw_free(&w);
            sink += total;
            if (dt < best)
                best = dt;
        }
        printf("%-44s %6.1f ns/value\n", runs[r].name, best);
    }
    free(a);
    free(b);
    free(d);
}

int main(int argc, char **argv) {
    bool all = argc > 1 && strcmp(argv[1], "all") == 0;
    if (argc > 1 && strcmp(argv[1], "speed") == 0) {
        speed();
        return 0;
    }
    uint64_t bad = check_logs();
    bad += check_double_cases();
    // Whole binades: [1, 2), [2^-34, 2^-33) (5.8e-11 .. 1.2e-10), [2^127, 2^128) up to
    // FLT_MAX, [2^-126, 2^-125) (the smallest normals), and every subnormal.
    bad += run("floats: all of [1, 2)", JOB_FLOAT_RANGE, 0x3f800000u, 0x40000000u);
    bad += run("floats: all of [2^-34, 2^-33) ~ 1e-10", JOB_FLOAT_RANGE, 0x2e800000u, 0x2f000000u);
    bad += run("floats: all of [2^127, FLT_MAX]", JOB_FLOAT_RANGE, 0x7f000000u, 0x7f800000u);
    bad += run("floats: all of [2^-126, 2^-125)", JOB_FLOAT_RANGE, 0x00800000u, 0x01000000u);
    bad += run("floats: all subnormals", JOB_FLOAT_RANGE, 1u, 0x00800000u);
    bad += run("floats: 1e7 random bit patterns", JOB_FLOAT_RANDOM, 0, 10000000u);
    bad += run("doubles: 1e7 random bit patterns", JOB_DOUBLE_RANDOM, 0, 10000000u);
    bad += run("doubles: 2e6 random in [1e-6, 1e17)", JOB_DOUBLE_DECIMAL, 0, 2000000u);
    if (all)
        bad += run("floats: every bit pattern, round trip", JOB_FLOAT_ALL, 0, UINT64_C(1) << 32);
    speed();
    printf("%s\n", bad ? "FAILED" : "all checks passed");
    return bad ? 1 : 0;
}
