// tensor_io.h - private to api/: reading request tensors (JSON fields or a binary body),
// batching them for a layer, and binary responses.
#ifndef API_TENSOR_IO_H
#define API_TENSOR_IO_H

#include "api/internal.h"

// The required tensor under key of the JSON body, or the binary body (X-Tensor-Shape). *out is
// owned (nd_tensor_deinit); *form tells the JSON form (nested for binary).
int api_read_input(struct api_call *call, const char *key, struct nd_tensor *out,
                   enum api_tensor_form *form);

// An optional tensor field of the JSON body: absent (or null) leaves *out zeroed.
int api_read_optional(struct api_call *call, const char *key, struct nd_tensor *out);

// A batched view of x for the layer (one example becomes a batch of 1), per the batch hint.
// On an event loop (call->inline_only) it never waits: API_DEFER when the layer is busy.
int api_batch_view(struct api_call *call, struct nd_layer *layer, const struct nd_tensor *x,
                   int batch_hint, struct nd_tensor *view, bool *is_batch);

// Replies 200 with t's bytes (little-endian float32), application/octet-stream and
// X-Tensor-Shape.
int api_reply_binary(struct api_call *call, const struct nd_tensor *t);

#endif
