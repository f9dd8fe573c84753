// json_fast.c - large numeric arrays of a body read straight into tensors (see json_fast.h).
#include "api/json_fast.h"

#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"

// ---- numbers ----

// Exact powers of ten in double: 10^0..10^22 are representable, so m * 10^e and m / 10^e
// with m < 2^53 are correctly rounded (Clinger's fast path).
static const double pow10_exact[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                       1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                       1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

static const float pow10_float[11] = {1e0f, 1e1f, 1e2f, 1e3f, 1e4f,  1e5f,
                                      1e6f, 1e7f, 1e8f, 1e9f, 1e10f};

// Length of the JSON number at s, with its digits as mantissa and decimal exponent; 0 when not
// a number by RFC 8259 (leading zeros, a bare '.', a missing exponent...).
static size_t scan_number(const char *s, size_t n, bool *neg, uint64_t *mant, int *digits,
                          int *exp10) {
    size_t i = 0;
    *neg = n > 0 && s[0] == '-';
    i += *neg;
    if (i >= n || s[i] < '0' || s[i] > '9')
        return 0;
    uint64_t m = 0;
    int nd = 0, dropped = 0, e = 0;
    bool lead_zero = s[i] == '0';
    for (; i < n && s[i] >= '0' && s[i] <= '9'; i++) {
        if (nd < 19) {
            m = m * 10 + (uint64_t)(s[i] - '0');
            nd += m != 0;
        } else {
            dropped++;
        }
        if (lead_zero && i > (size_t)*neg)
            return 0; // "01"
    }
    if (i < n && s[i] == '.') {
        size_t start = ++i;
        for (; i < n && s[i] >= '0' && s[i] <= '9'; i++)
            if (nd < 19) {
                m = m * 10 + (uint64_t)(s[i] - '0');
                nd += m != 0;
                e--;
            }
        if (i == start)
            return 0;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        bool eneg = i < n && s[i] == '-';
        i += i < n && (s[i] == '-' || s[i] == '+');
        size_t start = i;
        int x = 0;
        for (; i < n && s[i] >= '0' && s[i] <= '9'; i++)
            x = x < 10000 ? x * 10 + (s[i] - '0') : x;
        if (i == start)
            return 0;
        e += eneg ? -x : x;
    }
    *mant = m;
    *digits = nd + dropped;
    *exp10 = e + dropped;
    return i;
}

// True when d lies exactly halfway between two adjacent floats: only then can rounding the
// decimal to double first, and then to float, differ from rounding it to float directly. For
// normal floats that is a double whose 29 bits below float precision are 100...0.
static bool float_halfway(double d) {
    double a = fabs(d);
    if (a >= FLT_MIN && a <= FLT_MAX) {
        uint64_t bits;
        memcpy(&bits, &d, sizeof bits);
        return (bits & ((UINT64_C(1) << 29) - 1)) == (UINT64_C(1) << 28);
    }
    if (d == 0.0 || !isfinite(d) || a > FLT_MAX)
        return false;
    float f = (float)d; // float subnormals: compare with the neighbour's midpoint
    float other = (double)f < d ? nextafterf(f, INFINITY) : nextafterf(f, -INFINITY);
    return (double)f + ((double)other - (double)f) / 2.0 == d;
}

size_t api_parse_float(const char *s, size_t n, float *out) {
    bool neg;
    uint64_t m;
    int digits, e;
    size_t len = scan_number(s, n, &neg, &m, &digits, &e);
    if (len == 0 || out == NULL) // NULL: only the syntax and the length
        return len;
    // Most client numbers have few digits: m < 2^24 and 10^|e| <= 10^10 are exact floats, so
    // one float multiply or divide rounds once, correctly (Clinger's fast path in float).
    if (m < (UINT64_C(1) << 24) && digits <= 8 && e >= -10 && e <= 10) {
        float f = e < 0 ? (float)m / pow10_float[-e] : (float)m * pow10_float[e];
        *out = neg ? -f : f;
        return isfinite(*out) ? len : 0;
    }
    double d = 0.0;
    bool fast = digits <= 15 && m < (UINT64_C(1) << 53) && e >= -22 && e <= 22;
    if (fast) {
        d = e < 0 ? (double)m / pow10_exact[-e] : (double)m * pow10_exact[e];
        d = neg ? -d : d;
    }
    if (!fast || float_halfway(d)) { // the exact, slow way (strtof is linear in the text)
        char small[400];
        char *buf = len < sizeof small ? small : malloc(len + 1);
        if (!buf)
            return 0; // left to jansson, which reads it into a double
        memcpy(buf, s, len);
        buf[len] = '\0';
        *out = strtof(buf, NULL);
        if (buf != small)
            free(buf);
    } else {
        *out = (float)d;
    }
    return isfinite(*out) ? len : 0;
}

// ---- nested arrays ----

// One pass over a nested list: its structure is checked and its values collected into a
// growing buffer (on the stack while small), then copied once into an aligned tensor.
struct scan {
    const char *s;
    size_t n, i;
    int depth, rank;                             // rank: the depth numbers sit at (0: none yet)
    int64_t dim[ND_MAX_DIMS], seen[ND_MAX_DIMS]; // sizes found, and lists seen per level
    int64_t count, max;
    float *vals, *heap; // vals is the stack buffer or heap
    int64_t cap;
};

static void skip_ws(struct scan *sc) {
    while (sc->i < sc->n && (sc->s[sc->i] == ' ' || sc->s[sc->i] == '\n' ||
                             sc->s[sc->i] == '\r' || sc->s[sc->i] == '\t'))
        sc->i++;
}

// "NaN", "Infinity", "-Infinity" as tensor elements (API.md 3).
static size_t scan_special(const char *s, size_t n, float *out) {
    static const struct {
        const char *text;
        float value;
    } specials[] = {{"\"NaN\"", NAN}, {"\"Infinity\"", INFINITY}, {"\"-Infinity\"", -INFINITY}};
    for (int k = 0; k < 3; k++) {
        size_t len = strlen(specials[k].text);
        if (n >= len && memcmp(s, specials[k].text, len) == 0) {
            *out = specials[k].value;
            return len;
        }
    }
    return 0;
}

static bool push(struct scan *sc, float v) {
    if (sc->count == sc->cap) {
        int64_t cap = sc->cap * 2;
        float *grown = realloc(sc->heap, (size_t)cap * sizeof *grown);
        if (!grown)
            return false;
        if (!sc->heap)
            memcpy(grown, sc->vals, (size_t)sc->count * sizeof *grown);
        sc->vals = sc->heap = grown;
        sc->cap = cap;
    }
    sc->vals[sc->count++] = v;
    return true;
}

static bool scan_value(struct scan *sc);

// Records that a list at level d had `size` elements: the first fixes the level's size, later
// ones must match (rectangular).
static bool level_size(struct scan *sc, int d, int64_t size) {
    if (d >= ND_MAX_DIMS)
        return false;
    if (sc->seen[d]++ == 0) {
        sc->dim[d] = size;
        return true;
    }
    return sc->dim[d] == size;
}

// Recursion is bounded: a tensor has at most ND_MAX_DIMS levels, so a list nested deeper is
// refused before descending (a body of 100,000 '[' must not reach the stack's end, and each
// '[' the caller retries from costs at most ND_MAX_DIMS levels: linear in the body).
static bool scan_list(struct scan *sc) {
    if (sc->depth >= ND_MAX_DIMS)
        return false;
    int d = sc->depth++;
    sc->i++; // '['
    int64_t size = 0;
    skip_ws(sc);
    if (sc->i < sc->n && sc->s[sc->i] == ']')
        return false; // empty lists are left to the general path
    for (;;) {
        if (!scan_value(sc))
            return false;
        size++;
        skip_ws(sc);
        if (sc->i < sc->n && sc->s[sc->i] == ',') {
            sc->i++;
            skip_ws(sc);
            continue;
        }
        if (sc->i < sc->n && sc->s[sc->i] == ']') {
            sc->i++;
            break;
        }
        return false;
    }
    sc->depth--;
    return level_size(sc, d, size);
}

// One element or nested list. Numbers sit only at one depth (the rank).
static bool scan_value(struct scan *sc) {
    if (sc->i >= sc->n)
        return false;
    if (sc->s[sc->i] == '[')
        return scan_list(sc);
    if (sc->rank == 0)
        sc->rank = sc->depth; // the first number fixes where numbers sit
    if (sc->depth != sc->rank || sc->count >= sc->max)
        return false;
    float v = 0;
    size_t len = api_parse_float(sc->s + sc->i, sc->n - sc->i, &v);
    if (len == 0)
        len = scan_special(sc->s + sc->i, sc->n - sc->i, &v);
    if (len == 0 || !push(sc, v))
        return false;
    sc->i += len;
    return true;
}

// Reads the array at s[0] into a tensor. Returns the bytes it spans, or 0.
static size_t read_array(const char *s, size_t n, int64_t max, struct nd_tensor *out) {
    float stack[1024];
    struct scan sc = {.s = s, .n = n, .max = max, .vals = stack, .cap = 1024};
    size_t end = 0;
    if (scan_value(&sc) && sc.count >= API_FAST_MIN_ELEMENTS && sc.rank >= 1) {
        struct nd_shape shape = nd_shape_make(sc.rank, sc.dim);
        if (nd_tensor_init_uninit(out, &shape, NULL) == ND_STATUS_OK && out->numel == sc.count) {
            memcpy(out->data, sc.vals, (size_t)sc.count * sizeof(float));
            end = sc.i;
        } else {
            nd_tensor_deinit(out);
        }
    }
    free(sc.heap);
    return end;
}

// ---- the body ----

// Appends the placeholder of tensor k (a JSON string "\u0000k") at text + *w.
static void write_placeholder(char *text, size_t *w, int k) {
    char ph[16];
    int n = snprintf(ph, sizeof ph, "\"\\u0000%d\"", k);
    memcpy(text + *w, ph, (size_t)n);
    *w += (size_t)n;
}

// Skips a string starting at text[i] ('"'); returns the index after it.
static size_t skip_string(const char *text, size_t len, size_t i) {
    for (i++; i < len; i++) {
        if (text[i] == '\\')
            i++;
        else if (text[i] == '"')
            return i + 1;
    }
    return len;
}

// True when the list at text[i] is the value of a "data" key: the flat form's list stays with
// jansson, which checks it against the form's shape.
static bool is_flat_data(const char *text, size_t i) {
    while (i > 0 && strchr(" \t\r\n", text[i - 1]))
        i--;
    if (i == 0 || text[--i] != ':')
        return false;
    while (i > 0 && strchr(" \t\r\n", text[i - 1]))
        i--;
    return i >= 6 && memcmp(text + i - 6, "\"data\"", 6) == 0;
}

size_t api_fast_extract(char *text, size_t len, int64_t max_elements,
                        struct api_fast_tensors *out) {
    memset(out, 0, sizeof *out);
    size_t r = 0, w = 0; // read and write positions: the text shrinks as arrays leave it
    while (r < len) {
        size_t from = r;
        if (text[r] == '"') {
            r = skip_string(text, len, r);
        } else if (text[r] == '[' && out->count < API_FAST_MAX_TENSORS && !is_flat_data(text, r)) {
            struct nd_tensor t = {0};
            size_t span = read_array(text + r, len - r, max_elements, &t);
            if (span >= 16) { // a placeholder is at most 11 bytes
                out->t[out->count] = t;
                write_placeholder(text, &w, out->count++);
                r += span;
                continue;
            }
            nd_tensor_deinit(&t);
            r++; // not a numeric tensor: look inside it
        } else {
            r++;
        }
        memmove(text + w, text + from, r - from);
        w += r - from;
    }
    return w;
}

int api_fast_take(struct api_fast_tensors *fast, const json_t *v, struct nd_tensor *out) {
    if (!json_is_string(v) || json_string_length(v) < 2 || json_string_value(v)[0] != '\0')
        return 0;
    int k = atoi(json_string_value(v) + 1);
    if (!fast || k < 0 || k >= fast->count || !fast->t[k].data)
        return -1;
    *out = fast->t[k];
    fast->t[k] = (struct nd_tensor){0};
    return 1;
}

void api_fast_release(struct api_fast_tensors *fast) {
    for (int k = 0; k < fast->count; k++)
        nd_tensor_deinit(&fast->t[k]);
    fast->count = 0;
}

// ---- measuring what jansson will build ----

// Heap bytes per value, from tests on jansson 2.14 (each rounded up by a few bytes).
enum {
    COST_OBJECT = 240,
    COST_LIST = 144,
    COST_MEMBER = 80,
    COST_SCALAR = 48,
    COST_STRING = 96,
};

struct api_json_cost api_json_measure(const char *text, size_t len) {
    struct api_json_cost c = {0};
    int depth = 0;
    bool in_token = false; // inside a number or a literal (true, false, null)
    for (size_t i = 0; i < len; i++) {
        char ch = text[i];
        bool token_char = (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || ch == '-' ||
                          ch == '+' || ch == '.' || ch == 'E';
        if (token_char && !in_token)
            c.bytes += COST_SCALAR;
        in_token = token_char;
        if (ch == '"') {
            size_t end = skip_string(text, len, i);
            c.bytes += COST_STRING + (end - i);
            i = end - 1;
        } else if (ch == '{' || ch == '[') {
            c.bytes += ch == '{' ? COST_OBJECT : COST_LIST;
            if (++depth > c.depth)
                c.depth = depth;
        } else if (ch == '}' || ch == ']') {
            depth -= depth > 0;
        } else if (ch == ':') {
            c.bytes += COST_MEMBER;
        }
    }
    return c;
}
