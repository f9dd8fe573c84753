// tensor_io.h - private to api/: reading request tensors (JSON fields or a binary body),
// batching them for a layer, and binary responses.
#ifndef API_TENSOR_IO_H
#define API_TENSOR_IO_H

#include "api/internal.h"

// The tensor limits of this server.
struct api_tensor_limits api_limits(const struct api_call *call);

// A tensor value of the body: a placeholder of a pre-read array (json_fast.h), or any JSON form
// (api_tensor_from_json). *out is owned.
int api_tensor_value(struct api_fast_tensors *fast, const json_t *v,
                     const struct api_tensor_limits *limits, const char *field,
                     struct nd_tensor *out, enum api_tensor_form *form, struct api_error *err);

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

// As api_reply_binary, but an owning *t gives its data to the reply (no copy) and becomes a
// view: the caller's nd_tensor_deinit then frees nothing.
int api_reply_binary_take(struct api_call *call, struct nd_tensor *t);

// ---- shared by /v1 and /v2 (h_forward.c, h_train.c) ----

// "inference"/"test" or "train"/"training" (any case) into *train; 422 naming "mode" otherwise.
int api_parse_mode(struct api_call *call, const char *text, bool *train);

// Runs the layer on one parsed tensor (batched per batch_hint, see api_batch_view); *out gets
// the output (owned) in the input's batching and *version the version it was computed with.
// On an event loop it never waits: API_DEFER when the layer is busy.
int api_forward_one(struct api_call *call, struct nd_layer *layer, struct nd_tensor *x,
                    int batch_hint, bool train, struct nd_tensor *out, uint64_t *version);

// A train-step request: its tensors (owned; release with api_train_req_release), optimizer,
// the results wanted (enum nd_train_want bits) and the batch hint; format for /v1's replies.
struct api_train_req {
    struct nd_tensor input, output_grad, target;
    struct nd_optimizer optimizer;
    uint32_t want;
    int batch_hint;
    bool has_format;
    enum api_tensor_form format;
};
void api_train_req_release(struct api_train_req *t);

// Reads an optimizer object ({"type": "sgd" | "adam", "learning_rate", ...}) into *opt.
int api_parse_optimizer(struct api_call *call, const json_t *v, struct nd_optimizer *opt);

// Runs one train-step of t (gradient and target batched like the input), the memory it needs
// reserved first; *r (owned: nd_train_result_deinit) gets the results, *is_batch whether the
// input was a batch. Counts the step for /metrics.
int api_train_run(struct api_call *call, struct nd_layer *layer, struct api_train_req *t,
                  struct nd_train_result *r, bool *is_batch);

#endif
