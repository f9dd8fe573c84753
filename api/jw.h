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

#include "api/fmt.h"

#define JW_MAX_DEPTH 32

struct jw {
    char *buf;
    size_t len, cap;
    bool failed;
    int depth;
    bool first[JW_MAX_DEPTH]; // no value written yet at this depth
    bool after_key;           // the next value follows a key: no comma
    size_t limit;             // most bytes of text (0: no limit but memory's)
    bool too_large;           // failed because the text would pass limit
};

void jw_init(struct jw *w);

// Bounds the text at `bytes` (0: no bound): past it the writer fails with too_large set, having
// allocated no more than the bound. Call right after jw_init.
void jw_set_limit(struct jw *w, size_t bytes);

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
// Escaped per RFC 8259; bytes that are not well-formed UTF-8 become U+FFFD, so the reply is
// valid UTF-8 whatever a client sent.
void jw_string(struct jw *w, const char *s);
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
// n floats as the next n values, as n jw_float calls would write them (the same text, the
// same failure at the limit), faster: a tensor's rows.
void jw_floats(struct jw *w, const float *v, int64_t n);
// Grows the buffer at once to hold n more bytes (capped by the limit): a writer that knows
// roughly how much follows saves the doubling's copies. Never fails; a failed allocation is
// reported by the writes that need it.
void jw_reserve_hint(struct jw *w, size_t n);
// Appends raw, already valid JSON as the next value (e.g. a pre-rendered fragment).
void jw_raw(struct jw *w, const char *text, size_t len);

#endif
