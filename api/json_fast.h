// json_fast.h - private to api/: reading the large numeric arrays of a request body before
// jansson sees it.
//
// jansson makes every number a heap object through strtod (and localeconv): for a forward of
// 8192 values that is most of the request's time. So before parsing, the body's nested arrays
// of numbers (with at least API_FAST_MIN_ELEMENTS values, rectangular, within float range) are
// read straight into tensors, and their text is replaced by a short placeholder string that
// jansson parses instead (a NUL byte, then the tensor's index), the text closing up behind it.
// Anything unusual (other value types, ragged nesting, JSON syntax errors, too many values) is left
// in place for the general path, which reports it with the usual errors.
#ifndef API_JSON_FAST_H
#define API_JSON_FAST_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "core/tensor.h"

#define API_FAST_MIN_ELEMENTS 16 // below this jansson is as fast
#define API_FAST_MAX_TENSORS  8

struct api_fast_tensors {
    int count;
    struct nd_tensor t[API_FAST_MAX_TENSORS]; // owned until taken
};

// Extracts up to API_FAST_MAX_TENSORS arrays of at most max_elements values each from text
// (rewritten in place; len bytes, need not be NUL-terminated) and returns the text's new
// length. Never fails: an allocation failure just leaves the array to jansson.
size_t api_fast_extract(char *text, size_t len, int64_t max_elements, struct api_fast_tensors *out);

// When v is a placeholder, moves its tensor into *out (owning) and returns 1; 0 when v is not a
// placeholder; -1 for a placeholder whose tensor was taken already or does not exist.
int api_fast_take(struct api_fast_tensors *fast, const json_t *v, struct nd_tensor *out);

// The same, reading text (len bytes; NULL allowed when len is 0) without changing it, and
// writing the rest into a new NUL-terminated text: the caller owns it (free with free()),
// *out_len gets its length. NULL when out of memory (*out then holds no tensors).
char *api_fast_extract_copy(const char *text, size_t len, int64_t max_elements,
                            struct api_fast_tensors *out, size_t *out_len);

// Frees the tensors not taken.
void api_fast_release(struct api_fast_tensors *fast);

// ---- the rest of a body, before jansson parses it ----

#define API_JSON_MAX_DEPTH 32 // objects and lists nested deeper are refused (400)

// What jansson will build from a text: its deepest nesting and an upper bound of the heap
// bytes of its values (measured on jansson 2.14: 232 bytes per object, 136 per list, about 72
// per object member, 40 per number, 88 plus the length per string; rounded up). Linear, no
// recursion, and no validation: jansson reports syntax errors.
struct api_json_cost {
    int depth;
    uint64_t bytes;
};
struct api_json_cost api_json_measure(const char *text, size_t len);

// Parses a JSON number (RFC 8259 grammar) at s (n bytes available) into the nearest float32:
// returns the bytes consumed, or 0 when s does not start with a valid number whose value fits
// a finite float. Correctly rounded (a double fast path, exact fallback to strtof near ties).
// out NULL: checks the syntax only and returns the length.
size_t api_parse_float(const char *s, size_t n, float *out);

#endif
