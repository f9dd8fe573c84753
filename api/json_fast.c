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

static const float pow10_float[11] = {1e0f, 1e1f, 1e2f, 1e3f, 1e4f, 1e5f,
                                      1e6f, 1e7f, 1e8f, 1e9f, 1e10f};

// Length of the JSON number at s, with its digits as mantissa and decimal exponent; 0 when not
// a number by RFC 8259 (leading zeros, a bare '.', a missing exponent...).
static size_t scan_number(const char *s, size_t n, bool *neg, uint64_t *mant, bool *exact,
                          int *exp10) {
    size_t i = 0;
    *neg = n > 0 && s[0] == '-';
    i += *neg;
    if (i >= n || s[i] < '0' || s[i] > '9')
        return 0;
    uint64_t m = 0;
    int nd = 0, dropped = 0, e = 0;
    bool lost = false;
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
        for (; i < n && s[i] >= '0' && s[i] <= '9'; i++) {
            if (nd < 19) {
                m = m * 10 + (uint64_t)(s[i] - '0');
                nd += m != 0;
                e--;
            } else {
                lost = true; // a fraction digit past 19: m is truncated, e stays
            }
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
    *exact = dropped == 0 && !lost;
    *exp10 = e + dropped;
    return i;
}

// ---- the common number, eight digits at a time ----
//
// Client numbers are mostly short: "-1.234567", "0.5", "1.17549435e-38" less often. The
// digits of the integer part and of the fraction are read 8 bytes at a time (SWAR, as
// simdjson and fast_float do), when the text has 8 readable bytes at each place.

static inline uint64_t load8(const char *s) {
    uint64_t v;
    memcpy(&v, s, sizeof v);
    return v;
}

// How many of the 8 bytes of v (the first in memory lowest: little-endian) lead with decimal
// digits. A byte is a digit when its high nibble is 3 and stays 3 after adding 6 (0x30-0x39).
// A carry out of a byte that is not a digit only disturbs the bytes after it.
static inline int digit_run8(uint64_t v) {
    const uint64_t hi = UINT64_C(0xf0f0f0f0f0f0f0f0), threes = UINT64_C(0x3030303030303030);
    uint64_t bad = ((v & hi) ^ threes) | (((v + UINT64_C(0x0606060606060606)) & hi) ^ threes);
    return bad ? __builtin_ctzll(bad) / 8 : 8;
}

// The value of the first k (1..8) digit bytes of v: shifted so that they end the 8 bytes, the
// bytes before them become leading zeros, then pairs, quads and the octet are combined with
// three multiplies (fast_float's parse_eight_digits_unrolled).
static inline uint32_t digits_value8(uint64_t v, int k) {
    v = (v - UINT64_C(0x3030303030303030)) << (8 * (8 - k));
    v = v * 10 + (v >> 8);
    const uint64_t mask = UINT64_C(0x000000ff000000ff);
    v = ((v & mask) * UINT64_C(0x000f424000000064) +
         ((v >> 16) & mask) * UINT64_C(0x0000271000000001)) >>
        32;
    return (uint32_t)v;
}

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define FAST_DIGITS 1
#else
#define FAST_DIGITS 0 // digit_run8 and digits_value8 read bytes little-endian
#endif

static const uint64_t pow10_int[9] = {1,      10,      100,      1000,     10000,
                                      100000, 1000000, 10000000, 100000000};

// scan_number for a number of at most 7 integer digits, at most 19 digits in all and no
// exponent, when 8 bytes can be read wherever its digits start; 0 when it is not such a
// number (scan_number then decides, and reports what is wrong with it).
static inline size_t scan_number_fast(const char *s, size_t n, bool *neg, uint64_t *mant,
                                      bool *exact, int *exp10) {
    if (!FAST_DIGITS || n < 28) // 1 + 7 + 1 + 16 + the 8 bytes read after
        return 0;
    size_t i = s[0] == '-';
    uint64_t v = load8(s + i);
    int k = digit_run8(v);
    // Not a number, a long integer part, or a leading zero ("01": refused later). Bitwise:
    // whether a number is below 1 ("0.5") is a coin toss no branch predictor wins.
    if ((k == 0) | (k == 8) | ((s[i] == '0') & (k > 1)))
        return 0;
    uint64_t m = digits_value8(v, k);
    int e = 0, total = k;
    i += (size_t)k;
    if (s[i] == '.') {
        i++;
        for (int round = 0; round < 2; round++) { // i <= 1 + 7 + 1 + 8: 8 bytes readable
            v = load8(s + i);
            int f = digit_run8(v);
            if (f == 0 && round == 0)
                return 0; // "1." is not a number
            if ((total += f) > 19)
                return 0; // m could overflow: scan_number drops the excess digits
            m = m * pow10_int[f] + (f ? digits_value8(v, f) : 0);
            e -= f;
            i += (size_t)f;
            if (f < 8)
                break;
        }
    }
    if ((s[i] >= '0' && s[i] <= '9') || s[i] == 'e' || s[i] == 'E')
        return 0; // more digits than read, or an exponent
    *neg = s[0] == '-';
    *mant = m;
    *exact = true;
    *exp10 = e;
    return i;
}

// The usual client number, "-d.dddddd": a point after 1 to 6 integer digits and at most 7
// digits in all, read with one 8-byte load: the bytes that are not digits found at once, the
// digits either side of the point closed up and valued together (one digits_value8, where
// scan_number_fast takes one for each side and a second load). 0 when the number is not of
// that form (scan_number_fast then tries). The non-digit mask is exact up to the byte after
// the digits: digits and '.' carry nothing into the next byte.
static inline size_t scan_short_number(const char *s, size_t n, bool *neg, uint64_t *mant,
                                       int *exp10) {
    if (!FAST_DIGITS || n < 16)
        return 0;
    size_t i = s[0] == '-';
    uint64_t v = load8(s + i);
    const uint64_t hi = UINT64_C(0xf0f0f0f0f0f0f0f0), threes = UINT64_C(0x3030303030303030);
    uint64_t bad = ((v & hi) ^ threes) | (((v + UINT64_C(0x0606060606060606)) & hi) ^ threes);
    int k = __builtin_ctzll(bad | UINT64_C(1) << 63) / 8; // integer digits
    if ((k == 0) | (k > 6) | ((s[i] == '0') & (k > 1)) || s[i + (size_t)k] != '.')
        return 0;
    uint64_t after = bad >> (8 * k + 8);                           // past the point
    int f = after ? __builtin_ctzll(after) / 8 : 7 - k;            // fraction digits
    unsigned char end = (unsigned char)s[i + (size_t)(k + 1 + f)]; // the byte after them
    if ((f == 0) | ((unsigned)(end - '0') < 10) | ((end | 0x20) == 'e'))
        return 0; // "1.", more digits than the load holds, or an exponent
    uint64_t low = (UINT64_C(1) << (8 * k)) - 1;
    *neg = i;
    *mant = digits_value8((v & low) | ((v >> 8) & ~low), k + f);
    *exp10 = -f;
    return i + (size_t)(k + 1 + f);
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

// The value of (-1)^neg * m * 10^e when one rounding gets it right (Clinger's fast path), into
// *out; false when the slow way must decide. exact: m holds every digit (none dropped past
// the 19th).
static inline bool to_float_fast(bool neg, uint64_t m, bool exact, int e, float *out) {
    if (!exact)
        return false;
    // Most client numbers have few digits: m < 2^24 and 10^|e| <= 10^10 are exact floats, so
    // one float multiply or divide rounds once, correctly (Clinger's fast path in float).
    if (m < (UINT64_C(1) << 24) && e >= -10 && e <= 10) {
        float f = e < 0 ? (float)m / pow10_float[-e] : (float)m * pow10_float[e];
        uint32_t bits; // the sign by its bit: a branch on it mispredicts half the time
        memcpy(&bits, &f, sizeof bits);
        bits |= (uint32_t)neg << 31;
        memcpy(out, &bits, sizeof bits);
        return true;
    }
    // In double, correctly rounded, then to float: right unless the double is a tie between
    // two floats.
    if (m < (UINT64_C(1) << 53) && e >= -22 && e <= 22) {
        double d = e < 0 ? (double)m / pow10_exact[-e] : (double)m * pow10_exact[e];
        d = neg ? -d : d;
        if (float_halfway(d))
            return false;
        *out = (float)d;
        return true;
    }
    return false;
}

#if defined(__GNUC__)
#define ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define ALWAYS_INLINE inline
#endif

// api_parse_float's common case alone, inlined in the array scan (a call's saved registers
// were a tenth of a number's instructions): 0 when the number is not one scan_number_fast
// reads or its value needs the slow way. Values it gives are finite (below 2^53 * 10^22), so
// the length never waits for the division: the next number's scan starts while it runs.
static ALWAYS_INLINE size_t parse_float_fast(const char *s, size_t n, float *out) {
    bool neg, exact = true;
    uint64_t m;
    int e;
    size_t len = scan_short_number(s, n, &neg, &m, &e);
    if (len == 0)
        len = scan_number_fast(s, n, &neg, &m, &exact, &e);
    return len && to_float_fast(neg, m, exact, e, out) ? len : 0;
}

size_t api_parse_float(const char *s, size_t n, float *out) {
    size_t len = out ? parse_float_fast(s, n, out) : 0;
    if (len)
        return len;
    bool neg, exact;
    uint64_t m;
    int e;
    len = scan_number(s, n, &neg, &m, &exact, &e);
    if (len == 0 || out == NULL) // NULL: only the syntax and the length
        return len;
    if (to_float_fast(neg, m, exact, e, out))
        return len;
    // The exact, slow way (strtof is linear in the text).
    char small[400];
    char *buf = len < sizeof small ? small : malloc(len + 1);
    if (!buf)
        return 0; // left to jansson, which reads it into a double
    memcpy(buf, s, len);
    buf[len] = '\0';
    *out = strtof(buf, NULL);
    if (buf != small)
        free(buf);
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
    while (sc->i < sc->n && (sc->s[sc->i] == ' ' || sc->s[sc->i] == '\n' || sc->s[sc->i] == '\r' ||
                             sc->s[sc->i] == '\t'))
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

// Doubles the value buffer (moving it to the heap the first time).
static bool grow_values(struct scan *sc) {
    int64_t cap = sc->cap * 2;
    float *grown = realloc(sc->heap, (size_t)cap * sizeof *grown);
    if (!grown)
        return false;
    if (!sc->heap)
        memcpy(grown, sc->vals, (size_t)sc->count * sizeof *grown);
    sc->vals = sc->heap = grown;
    sc->cap = cap;
    return true;
}

static inline bool push(struct scan *sc, float v) {
    if (sc->count == sc->cap && !grow_values(sc))
        return false;
    sc->vals[sc->count++] = v;
    return true;
}

static inline bool is_ws(char c) {
    return c == ' ' || c == '\n' || c == '\r' || c == '\t';
}

// The elements of a list of numbers, from its first to its ']' (the hot loop of a body: a
// forward's 8192 numbers go through here). Returns the list's size, or -1.
static int64_t scan_numbers(struct scan *sc) {
    if (sc->rank == 0)
        sc->rank = sc->depth; // the first number fixes where numbers sit
    if (sc->depth != sc->rank)
        return -1;
    const char *s = sc->s;
    size_t n = sc->n, i = sc->i;
    int64_t size = 0;
    for (;;) {
        float v = 0;
        size_t len = parse_float_fast(s + i, n - i, &v);
        if (len == 0)
            len = api_parse_float(s + i, n - i, &v);
        if (len == 0)
            len = scan_special(s + i, n - i, &v);
        if (len == 0 || sc->count >= sc->max || !push(sc, v))
            return -1;
        i += len;
        size++;
        while (i < n && is_ws(s[i]))
            i++;
        if (i < n && s[i] == ',') {
            for (i++; i < n && is_ws(s[i]);)
                i++;
            continue;
        }
        if (i < n && s[i] == ']')
            break;
        return -1;
    }
    sc->i = i + 1;
    return size;
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
        return false;                           // empty lists are left to the general path
    if (sc->i < sc->n && sc->s[sc->i] != '[') { // a list of numbers (or not a tensor)
        size = scan_numbers(sc);
        if (size < 0)
            return false;
        sc->depth--;
        return level_size(sc, d, size);
    }
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

// The body's text without its numeric arrays, into dst (dst == text: in place; the text only
// shrinks, so every write lands at or before what is still to be read). Text between arrays
// is copied in runs, not byte by byte. Returns the new length.
static size_t extract_into(const char *text, size_t len, int64_t max_elements,
                           struct api_fast_tensors *out, char *dst) {
    memset(out, 0, sizeof *out);
    size_t r = 0, w = 0, run = 0; // read and write positions; run: where uncopied text starts
    while (r < len) {
        if (text[r] == '"') {
            r = skip_string(text, len, r);
            continue;
        }
        if (text[r] != '[' || out->count >= API_FAST_MAX_TENSORS || is_flat_data(text, r)) {
            r++;
            continue;
        }
        struct nd_tensor t = {0};
        size_t span = read_array(text + r, len - r, max_elements, &t);
        if (span < 16) { // a placeholder is at most 11 bytes
            nd_tensor_deinit(&t);
            r++; // not a numeric tensor: look inside it
            continue;
        }
        if (r > run)
            memmove(dst + w, text + run, r - run);
        w += r - run;
        out->t[out->count] = t;
        write_placeholder(dst, &w, out->count++);
        r += span;
        run = r;
    }
    if (len > run) // text may be NULL when len is 0
        memmove(dst + w, text + run, len - run);
    return w + len - run;
}

size_t api_fast_extract(char *text, size_t len, int64_t max_elements,
                        struct api_fast_tensors *out) {
    return extract_into(text, len, max_elements, out, text);
}

char *api_fast_extract_copy(const char *text, size_t len, int64_t max_elements,
                            struct api_fast_tensors *out, size_t *out_len) {
    // As long as the body, but only what is written is touched: for a forward, a few dozen
    // bytes, where a copy of the body wrote all of its 80 KB onto fresh pages first.
    char *dst = malloc(len + 1);
    if (!dst) {
        memset(out, 0, sizeof *out);
        return NULL;
    }
    *out_len = extract_into(text, len, max_elements, out, dst);
    dst[*out_len] = '\0';
    return dst;
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
