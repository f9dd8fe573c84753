// jw.c - a small streaming JSON writer. Numbers are fmt.c's shortest round-trip texts.
#include "api/jw.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// ---- the writer ----

#define JW_INITIAL_CAP 256
// Larger requests fail without asking the allocator (which may abort under sanitizers).
#define JW_MAX_CAP ((size_t)PTRDIFF_MAX / 2)

// The most bytes the buffer may hold: the text and its NUL.
static size_t jw_max_cap(const struct jw *w) {
    return w->limit ? w->limit + 1 : JW_MAX_CAP;
}

// Grows the buffer to hold `need` bytes (the text so far, what follows, the NUL; need <=
// jw_max_cap): doubling, or exactly `need` when exact is set (a caller that knows the size).
// False when out of memory; the writer's state is untouched either way.
static bool jw_grow(struct jw *w, size_t need, bool exact) {
    size_t max = jw_max_cap(w);
    size_t cap = exact ? need : w->cap ? w->cap : JW_INITIAL_CAP;
    if (cap > max) // never more than the limit allows: a room check on cap alone must be
        cap = max; // a limit check too (a limit below 256 once let the text run past it)
    while (cap < need)
        cap = cap > max / 2 ? max : cap * 2;
    char *buf = realloc(w->buf, cap);
    if (!buf)
        return false;
    w->buf = buf;
    w->cap = cap;
    return true;
}

// Makes room for n more bytes plus the final NUL; false (and failed) when it cannot.
static bool jw_reserve(struct jw *w, size_t n) {
    if (w->failed)
        return false;
    if (n < w->cap - w->len)
        return true;
    if (n > jw_max_cap(w) - w->len - 1) {
        w->too_large = w->limit != 0;
        w->failed = true;
        return false;
    }
    if (!jw_grow(w, w->len + n + 1, false)) {
        w->failed = true;
        return false;
    }
    return true;
}

// As jw_reserve, but a writer that cannot make the room is left as it was (not failed): the
// caller then goes value by value, and fails, if it must, exactly where jw_reserve would.
static bool jw_room(struct jw *w, size_t n) {
    if (w->failed)
        return false;
    if (n < w->cap - w->len)
        return true;
    return n <= jw_max_cap(w) - w->len - 1 && jw_grow(w, w->len + n + 1, false);
}

static void jw_put(struct jw *w, const char *s, size_t n) {
    if (jw_reserve(w, n)) {
        memcpy(w->buf + w->len, s, n);
        w->len += n;
    }
}

// Starts a value: a comma unless it is the first at its depth or follows a key. Returns false
// when the writer has failed, so callers can skip formatting.
static bool jw_value_begin(struct jw *w) {
    if (w->failed)
        return false;
    if (w->after_key) {
        w->after_key = false;
        return true;
    }
    if (!w->first[w->depth])
        jw_put(w, ",", 1);
    w->first[w->depth] = false;
    return !w->failed;
}

// Starts a value of at most `room` bytes in one reservation (numbers: the hot path); returns
// where it goes, or NULL when the writer has failed.
static char *jw_value_room(struct jw *w, size_t room) {
    if (!jw_reserve(w, room + 1))
        return NULL;
    if (w->after_key)
        w->after_key = false;
    else if (!w->first[w->depth])
        w->buf[w->len++] = ',';
    w->first[w->depth] = false;
    return w->buf + w->len;
}

static void jw_open(struct jw *w, char c) {
    if (!jw_value_begin(w))
        return;
    if (w->depth + 1 >= JW_MAX_DEPTH) {
        w->failed = true;
        return;
    }
    jw_put(w, &c, 1);
    w->first[++w->depth] = true;
}

static void jw_close(struct jw *w, char c) {
    if (w->failed)
        return;
    if (w->depth == 0 || w->after_key) { // unbalanced, or a key without its value: a bug
        w->failed = true;
        return;
    }
    w->depth--;
    jw_put(w, &c, 1);
}

// ASCII bytes that need no escape: everything but '"', '\\' and the control characters.
static bool jw_plain_byte(unsigned char c) {
    return c >= 0x20 && c < 0x80 && c != '"' && c != '\\';
}

// Length of the well-formed UTF-8 sequence at s (RFC 3629: no overlong forms, no surrogates,
// nothing above U+10FFFF), or 0. s is NUL-terminated, and a NUL is never a continuation byte,
// so the look-ahead stops there.
static int utf8_sequence(const unsigned char *s) {
    unsigned char c = s[0];
    int n = c >= 0xc2 && c <= 0xdf   ? 2
            : c >= 0xe0 && c <= 0xef ? 3
            : c >= 0xf0 && c <= 0xf4 ? 4
                                     : 0;
    for (int i = 1; i < n; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    if ((c == 0xe0 && s[1] < 0xa0) || (c == 0xed && s[1] > 0x9f) || (c == 0xf0 && s[1] < 0x90) ||
        (c == 0xf4 && s[1] > 0x8f))
        return 0; // overlong, a surrogate, or past U+10FFFF
    return n;
}

// Writes s quoted; runs of plain bytes are copied in one go, well-formed UTF-8 as it is, and
// any other byte as U+FFFD.
static void jw_put_string(struct jw *w, const char *s) {
    static const char hex[] = "0123456789abcdef";
    jw_put(w, "\"", 1);
    while (*s && !w->failed) {
        const char *run = s;
        while (jw_plain_byte((unsigned char)*s))
            s++;
        jw_put(w, run, (size_t)(s - run));
        if (!*s)
            break;
        if ((unsigned char)*s >= 0x80) { // a client's bytes may not be UTF-8: every reply is
            int n = utf8_sequence((const unsigned char *)s);
            jw_put(w, n ? s : "\\ufffd", n ? (size_t)n : 6);
            s += n ? n : 1;
            continue;
        }
        unsigned char c = (unsigned char)*s++;
        char esc[6] = {'\\', (char)c, 0, 0, 0, 0};
        size_t n = 2;
        switch (c) {
        case '"':
        case '\\':
            break;
        case '\b':
            esc[1] = 'b';
            break;
        case '\f':
            esc[1] = 'f';
            break;
        case '\n':
            esc[1] = 'n';
            break;
        case '\r':
            esc[1] = 'r';
            break;
        case '\t':
            esc[1] = 't';
            break;
        default: // other control characters: \u00XX
            memcpy(esc + 1, "u00", 3);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            n = 6;
        }
        jw_put(w, esc, n);
    }
    jw_put(w, "\"", 1);
}

void jw_init(struct jw *w) {
    memset(w, 0, sizeof *w);
    w->first[0] = true;
}

void jw_set_limit(struct jw *w, size_t bytes) {
    w->limit = bytes < JW_MAX_CAP ? bytes : 0;
}

void jw_free(struct jw *w) {
    if (!w)
        return;
    free(w->buf);
    jw_init(w);
}

char *jw_finish(struct jw *w, size_t *len) {
    if (len)
        *len = 0;
    if (!w->failed && (w->depth != 0 || w->after_key))
        w->failed = true; // unterminated containers: invalid JSON is worse than no JSON
    if (!jw_reserve(w, 0)) {
        jw_free(w);
        return NULL;
    }
    char *text = w->buf;
    text[w->len] = '\0';
    if (len)
        *len = w->len;
    w->buf = NULL;
    jw_init(w);
    return text;
}

void jw_obj_begin(struct jw *w) {
    jw_open(w, '{');
}

void jw_obj_end(struct jw *w) {
    jw_close(w, '}');
}

void jw_arr_begin(struct jw *w) {
    jw_open(w, '[');
}

void jw_arr_end(struct jw *w) {
    jw_close(w, ']');
}

void jw_key(struct jw *w, const char *key) {
    if (w->after_key) { // two keys in a row: a bug
        w->failed = true;
        return;
    }
    if (!jw_value_begin(w))
        return;
    jw_put_string(w, key);
    jw_put(w, ":", 1);
    w->after_key = true;
}

void jw_string(struct jw *w, const char *s) {
    if (jw_value_begin(w))
        jw_put_string(w, s ? s : "");
}

void jw_int(struct jw *w, int64_t v) {
    char *p = jw_value_room(w, 20);
    if (!p)
        return;
    uint64_t a = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    *p = '-';
    p += v < 0;
    p += fmt_uint(a, p);
    w->len = (size_t)(p - w->buf);
}

void jw_uint(struct jw *w, uint64_t v) {
    char *p = jw_value_room(w, 20);
    if (!p)
        return;
    w->len += (size_t)fmt_uint(v, p);
}

void jw_bool(struct jw *w, bool v) {
    if (jw_value_begin(w))
        jw_put(w, v ? "true" : "false", v ? 4 : 5);
}

void jw_null(struct jw *w) {
    if (jw_value_begin(w))
        jw_put(w, "null", 4);
}

// Non-finite values go out as the strings of API.md section 3.
static void jw_non_finite(struct jw *w, bool is_nan, bool neg) {
    jw_put_string(w, is_nan ? "NaN" : neg ? "-Infinity" : "Infinity");
}

void jw_double(struct jw *w, double v) {
    char *p = jw_value_room(w, 32);
    if (!p)
        return;
    if (!isfinite(v)) {
        jw_non_finite(w, isnan(v), signbit(v));
        return;
    }
    w->len += (size_t)fmt_double(v, p); // writes up to 32 bytes; only its length counts
}

void jw_float(struct jw *w, float v) {
    char *p = jw_value_room(w, 24);
    if (!p)
        return;
    if (!isfinite(v)) {
        jw_non_finite(w, isnan(v), signbit(v));
        return;
    }
    w->len += (size_t)fmt_float(v, p); // writes up to 24 bytes; only its length counts
}

void jw_floats(struct jw *w, const float *v, int64_t n) {
    for (int64_t i = 0; i < n;) {
        int m = n - i < FMT_BATCH ? (int)(n - i) : FMT_BATCH;
        if (!jw_room(w, FMT_FLOATS_ROOM(m))) { // near the limit: one at a time
            jw_float(w, v[i++]);
            if (w->failed)
                return;
            continue;
        }
        bool comma = !w->after_key && !w->first[w->depth];
        w->len += fmt_floats(w->buf + w->len, v + i, m, comma);
        w->after_key = w->first[w->depth] = false; // m > 0 values written
        i += m;
    }
}

void jw_reserve_hint(struct jw *w, size_t n) {
    if (w->failed || n < w->cap - w->len)
        return;
    size_t max = jw_max_cap(w) - 1; // the text's most bytes
    size_t need = n > max - w->len ? max : w->len + n;
    jw_grow(w, need + 1, true); // out of memory: the writes will tell
}

void jw_raw(struct jw *w, const char *text, size_t len) {
    if (jw_value_begin(w))
        jw_put(w, text, len);
}
