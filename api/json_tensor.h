// json_tensor.h - tensors in and out of JSON (API.md section 3), and binary bodies.
//
// In: nested arrays ([[1, 2], [3, 4]], rectangular), flat ({"shape": [2, 2], "data": [...]}),
// base64 ({"shape": [2, 2], "datatype": "FP32" | "FP64", "b64": "..."}, little-endian); numbers
// or the strings "NaN", "Infinity", "-Infinity". Out: the same three forms, numbers in the
// shortest text that reads back as the same float32, non-finite values as those strings.
#ifndef API_JSON_TENSOR_H
#define API_JSON_TENSOR_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "api/errors.h"
#include "api/jw.h"
#include "core/tensor.h"

enum api_tensor_form {
    API_FORM_NESTED,
    API_FORM_FLAT,
    API_FORM_B64,
};

// "nested", "flat", "b64"; static.
const char *api_form_name(enum api_tensor_form form);

// Parses "nested" | "flat" | "b64" (output_format); API_FAIL and a 422 invalid_value naming field
// otherwise.
int api_form_parse(const char *text, enum api_tensor_form *form, const char *field,
                   struct api_error *err);

struct api_tensor_limits {
    int64_t max_elements; // per tensor; more is 413 payload_too_large
};

// Reads a tensor in any of the three forms into *out (owning; release with
// nd_tensor_deinit) and tells which form it was. Checks before allocating: rank <=
// ND_MAX_DIMS, the element count against limits (413), a rectangular nested array, flat data
// length = product of shape, base64 length = elements * datatype size. Values outside float32's
// range (|x| > FLT_MAX, finite) are 422 invalid_value. Errors name `field` (and an index path
// inside it where useful, e.g. "input[1][2]"): wrong JSON types 400 invalid_type, bad shapes
// or lengths 422 shape_mismatch / invalid_value, unknown keys of the object forms 422
// unknown_field. Returns API_OK or API_FAIL.
int api_tensor_from_json(const json_t *value, const struct api_tensor_limits *limits,
                         const char *field, struct nd_tensor *out, enum api_tensor_form *form,
                         struct api_error *err);

// Parses the X-Tensor-Shape header ("2,3"; spaces allowed; "" or "scalar"? no: at least one
// dim, each >= 0) and reads len bytes of little-endian float32 into *out (owning). The byte
// count must equal elements * 4 (422 shape_mismatch naming "X-Tensor-Shape"); a missing or
// bad header is 400 malformed_body naming "X-Tensor-Shape". Returns API_OK or API_FAIL.
int api_tensor_from_binary(const void *body, size_t len, const char *shape_header,
                           const struct api_tensor_limits *limits, struct nd_tensor *out,
                           struct api_error *err);

// Writes t in the given form as the next JSON value of w.
void api_tensor_write(struct jw *w, const struct nd_tensor *t, enum api_tensor_form form);

// At most how many bytes api_tensor_write writes for a tensor of this shape in this form (17
// per float, 2 per nested list, base64's 4 per 3 bytes, plus the object forms' keys).
size_t api_tensor_text_bound(const struct nd_shape *shape, enum api_tensor_form form);

// Formats a shape as the X-Tensor-Shape header value ("2,3") into buf; returns buf.
char *api_shape_header(const struct nd_shape *shape, char *buf, size_t size);

// Base64 (RFC 4648, with padding). api_b64_encode writes 4*ceil(n/3) chars plus NUL into out
// (caller sizes it: api_b64_encoded_size(n) including the NUL). api_b64_decode returns the
// decoded length, or -1 on invalid input; out must hold 3*strlen/4 bytes.
size_t api_b64_encoded_size(size_t n);
void api_b64_encode(const unsigned char *in, size_t n, char *out);
int64_t api_b64_decode(const char *in, size_t len, unsigned char *out);

#endif
