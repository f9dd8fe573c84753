// oip.h - private to api/: the Open Inference Protocol v2 (KServe V2 REST, API.md 5) between
// its handlers (h_oip.c) and its tensor reading and writing (oip_tensor.c).
//
// A layer is a model with one input "input" and one output "output", both FP32. An inference
// request is a JSON header, optionally followed by the raw bytes of its inputs (Triton's binary
// tensor data extension: Inference-Header-Content-Length gives the header's length), or only
// the bytes of the one input (the raw binary request: Inference-Header-Content-Length: 0).
#ifndef API_OIP_H
#define API_OIP_H

#include "api/internal.h"

#define OIP_MAX_INPUTS  2 // infer: "input"; train: "input" and "output_gradient" or "target"
#define OIP_MAX_OUTPUTS 4 // output, input_gradient, scaling_gradient, biases_gradient
#define OIP_NAME_MAX    32

// One named input of a request, read as FP32 in its declared shape.
struct oip_input {
    char name[OIP_NAME_MAX];
    struct nd_tensor t; // owned
};

// One output the reply carries, in the order the request lists them.
struct oip_output {
    int index;   // into the names the route offers (0 is "output")
    bool binary; // returned as bytes after the JSON (binary_data)
};

// What a route accepts: its input and output names (NULL-terminated) and its parameters.
struct oip_route {
    const char *const *inputs;
    const char *const *outputs;
    const char *const *params; // request-level parameter names besides binary_data_output
    int default_outputs;       // outputs[0..default_outputs) when the request lists none
};

struct oip_request {
    const char *id;       // borrowed from call->body, or NULL
    const json_t *params; // the request's parameters object, or NULL
    struct oip_input in[OIP_MAX_INPUTS];
    int nin;
    struct oip_output out[OIP_MAX_OUTPUTS];
    int nout;
    bool raw; // a raw binary request: in[0] still needs its shape (oip_read_raw)
};

// Reads an inference request (the JSON header and its binary tail, or notes a raw binary
// request) for the route. 400 for a bad header length, body, name, datatype, shape or size; 413
// past the element limit. Release with oip_request_release.
int oip_read_request(struct api_call *call, const struct oip_route *route, struct oip_request *r);
void oip_request_release(struct oip_request *r);

// The raw binary request's input: the whole body as FP32 examples of the fully known
// per-example shape (400 otherwise), every output binary.
int oip_read_raw(struct api_call *call, const struct nd_shape *example, struct oip_request *r);

// A request-level boolean parameter: 0 with *out untouched when absent, 400 when not a bool.
int oip_param_bool(struct api_call *call, const struct oip_request *r, const char *key, bool *out);

// The reply: outputs[k] is the tensor of r->out[k] (NULL: left out, e.g. a gradient the layer
// has not). The JSON (model_name, model_version, id, parameters.version when train, outputs),
// then the binary outputs' bytes; Inference-Header-Content-Length when there are any.
// Opens a tensor's metadata or output object: {"name": name, "datatype": "FP32", "shape": [
// (the caller writes the dims, closes the list and the object).
void oip_begin_fp32_tensor(struct jw *w, const char *name);

int oip_reply(struct api_call *call, const struct oip_route *route, const struct oip_request *r,
              struct nd_tensor *const *outputs, uint64_t version, bool with_parameters);

#endif
