// jw.h - a small streaming JSON writer for responses.
//
// Responses are mostly tensors, and their numbers must be the shortest text that reads back as
// the same float32: jansson prints reals with one global precision, so normd writes its
// responses itself (jansson still parses every request). Commas and nesting are tracked; an
// allocation failure makes the writer `failed`, and every later call is a no-op.
#ifndef API_JW_H
#define API_JW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define JW_MAX_DEPTH 32

struct jw {
    char *buf;
    size_t len, cap;
    bool failed;
    int depth;
    bool first[JW_MAX_DEPTH]; // no value written yet at this depth
    bool after_key;           // the next value follows a key: no comma
};

void jw_init(struct jw *w);

// Frees the buffer (after a failure, or when the text is not wanted).
void jw_free(struct jw *w);

// The text written so far, NUL-terminated; the caller owns it (free with free()) and *len gets
// its length. NULL when the writer failed. The writer is reset.
char *jw_finish(struct jw *w, size_t *len);

void jw_obj_begin(struct jw *w);
void jw_obj_end(struct jw *w);
void jw_arr_begin(struct jw *w);
void jw_arr_end(struct jw *w);
void jw_key(struct jw *w, const char *key);
void jw_string(struct jw *w, const char *s); // escaped per RFC 8259
void jw_int(struct jw *w, int64_t v);
void jw_uint(struct jw *w, uint64_t v);
void jw_bool(struct jw *w, bool v);
void jw_null(struct jw *w);
// A double in the shortest text that reads back as the same double ("NaN"/"Infinity" strings
// for non-finite values).
void jw_double(struct jw *w, double v);
// A float32 in the shortest text that reads back as the same float32 (strings for
// non-finite values).
void jw_float(struct jw *w, float v);
// Appends raw, already valid JSON as the next value (e.g. a pre-rendered fragment).
void jw_raw(struct jw *w, const char *text, size_t len);

// Shortest round-trip text of a finite float32 as a JSON number: 0.1f -> "0.1", 3.0f -> "3",
// 1e-7f -> "1e-07" or "1e-7" (either reads back); at most 16 chars plus NUL; returns the length.
int jw_format_float(float v, char buf[24]);

// Shortest round-trip text of a finite double; at most 24 chars plus NUL; returns the length.
int jw_format_double(double v, char buf[32]);

#endif
