// fmt.h - the shortest text that reads back as the same float32 or double (Schubfach), one
// value at a time or a batch of floats as JSON array items (the reply writer's, jw.h).
// Pure functions of their arguments: thread-safe, no allocation.
#ifndef API_FMT_H
#define API_FMT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

// Scratch the texts below may write past their length (fixed-size block moves).
#define FMT_SCRATCH 48

// Shortest round-trip text of a finite float32 as a JSON number: the fewest significant digits
// that read back as v, the closest such decimal to v. "Read back" means by strtof and also by
// strtod then a cast to float, as readers built on double do (jansson, Python's json): for a
// few floats (such as 7.0385307e-26f) the shortest strtof text would round twice, to a
// neighbour, and they get a digit more. Plain notation for leading-digit exponents in
// [-4, 16), as Python's repr: 0.1f -> "0.1", 3.0f -> "3", 0.001f -> "0.001", 123456.78f ->
// "123456.78"; exponent notation otherwise: 1e-7f -> "1e-07", 1e20f -> "1e+20". -0.0f ->
// "-0.0" (jansson reads "-0" as the integer 0). At most 17 chars plus NUL; returns the length;
// may use all 24 bytes of buf. (Non-finite values give the bare words NaN, Infinity,
// -Infinity, which are not JSON: fmt_floats and jw_float write them as strings.)
int fmt_float(float v, char buf[24]);

// The same for a finite double (strtod reads it back); at most 24 chars plus NUL; may use all
// 32 bytes of buf.
int fmt_double(double v, char buf[32]);

// The decimal digits of v into out (no sign, no NUL); returns their count (at most 20).
int fmt_uint(uint64_t v, char out[20]);

// At most this many floats per fmt_floats call.
#define FMT_BATCH 16
// The bytes fmt_floats may write for n floats: 25 a value with its comma (the longest text is
// 17 bytes; a non-finite one is a string of at most 11), and the scratch.
#define FMT_FLOATS_ROOM(n) ((size_t)(n)*25 + FMT_SCRATCH)

// The texts of v[0..n), 0 < n <= FMT_BATCH, as JSON array items into out
// (FMT_FLOATS_ROOM(n) bytes): each as fmt_float gives it, the non-finite values as the strings
// "NaN", "Infinity", "-Infinity" (API.md section 3), separated by commas and preceded by one
// when comma is true. Returns the bytes written (no NUL).
size_t fmt_floats(char *out, const float *v, int n, bool comma);

#endif
