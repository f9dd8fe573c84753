// errors.h - API errors: the HTTP status, the machine-readable code of API.md section 4, the
// field at fault and a one-line message.
#ifndef API_ERRORS_H
#define API_ERRORS_H

#include <stdbool.h>

#include "core/status.h"

#define API_FIELD_MAX   128
#define API_MESSAGE_MAX 512

// code is a static string: "malformed_body", "invalid_type", "unknown_field", "invalid_value",
// "shape_mismatch", "unauthorized", "not_found", "method_not_allowed", "already_exists",
// "not_initialized", "conflict", "precondition_failed", "payload_too_large",
// "unsupported_media_type", "limit_exceeded", "unavailable", "internal".
struct api_error {
    int status; // 0 while no error is recorded
    const char *code;
    char field[API_FIELD_MAX]; // "" or a dotted path ("options.epsilon")
    char message[API_MESSAGE_MAX];
    // A shared store held a newer state than this replica's copy (ND_STATUS_STALE): the copy was
    // dropped, and the request may run again on the store's (routes.c does, a bounded number of
    // times).
    bool stale;
};

void api_error_clear(struct api_error *err);

// Records an error unless one is recorded (first wins); returns -1 so a failure is one line:
// return api_error_set(err, 422, "invalid_value", "options.epsilon", "must be > 0, got %g", e).
// field may be NULL. Newlines in the message become spaces.
int api_error_set(struct api_error *err, int status, const char *code, const char *field,
                  const char *fmt, ...) __attribute__((format(printf, 5, 6)));

// Translates a core error: the status's HTTP code and word (invalid_argument and internal are
// 500 "internal", out_of_memory 503 "unavailable"), its field prefixed with field_prefix
// ("" for none) and its message. Returns -1.
int api_error_from_core(struct api_error *err, const struct nd_error *core,
                        const char *field_prefix);

#endif
