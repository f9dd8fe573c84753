// trace.h - W3C Trace Context (https://www.w3.org/TR/trace-context/): a request's
// `traceparent` is accepted, its trace id logged with the request, and the reply carries a
// `traceparent` naming normd's own span in that trace, so a caller's tracing system can join
// normd's access line to its trace.
//
// Pure functions over caller-owned structs: no allocation, no globals, thread-safe.
#ifndef SRV_TRACE_H
#define SRV_TRACE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "api/api.h"

#define SRV_TRACEPARENT_LEN 55 // "00-" 32 hex "-" 16 hex "-" 2 hex

struct srv_trace {
    bool valid;        // a well-formed traceparent was received
    char trace_id[33]; // 32 lower-case hex digits, not all zero
    char parent_id[17];
    char flags[3];
    char reply[SRV_TRACEPARENT_LEN + 1]; // the reply's traceparent (srv_trace_reply)
};

// Reads the traceparent among headers (case-insensitive name). Valid per the spec's version
// 00 rules: lower-case hex, trace and parent ids not all zero, version not "ff"; a later version
// may carry more fields after a '-' at character 55. No header, two headers (a list cannot be
// one traceparent) or an invalid value: out->valid is false, and the request is served as if
// none had come (the spec's restart; normd does not start traces of its own).
void srv_trace_parse(const struct api_kv *headers, size_t n, struct srv_trace *out);

// Builds out->reply (valid traces only): version 00, the trace id, a span id made from seed
// (never all zero), and the received flags.
void srv_trace_reply(struct srv_trace *t, uint64_t seed);

#endif
