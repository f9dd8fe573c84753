// status.h - error codes and the first-error-wins message buffer of the engine.
//
// Every fallible core function returns enum nd_status and takes an optional struct nd_error *
// (may be NULL). The first failure recorded in a buffer wins, so a low-level message is not
// overwritten by a vaguer one from a caller further up.
#ifndef ND_STATUS_H
#define ND_STATUS_H

#include <stddef.h>

enum nd_status {
    ND_STATUS_OK = 0,
    ND_STATUS_INVALID_ARGUMENT,    // a C caller broke a contract (NULL, bad enum): a bug upstream
    ND_STATUS_INVALID_VALUE,       // a well-formed value out of its range (HTTP 422)
    ND_STATUS_SHAPE_MISMATCH,      // shapes that do not fit the layer or each other (422)
    ND_STATUS_NOT_FOUND,           // no such layer, array or shared array (404)
    ND_STATUS_ALREADY_EXISTS,      // the name is taken (409)
    ND_STATUS_NOT_INITIALIZED,     // an array shape is still unknown (409)
    ND_STATUS_CONFLICT,            // the layer's state forbids the operation, e.g. inplace (409)
    ND_STATUS_PRECONDITION_FAILED, // the caller's expected version is not the current one (412)
    ND_STATUS_LIMIT_EXCEEDED,      // over a configured limit (429)
    ND_STATUS_OUT_OF_MEMORY,       // an allocation failed; nothing was changed (503)
    ND_STATUS_INTERNAL,            // a broken invariant: a bug (500)
    ND_STATUS_BUSY,        // a no-wait call found the layer locked: retry where waiting is fine
    ND_STATUS_STORAGE,     // a change could not be stored: the disk is full (507)
    ND_STATUS_STALE,       // a shared store holds a newer state than this copy: reload, retry
    ND_STATUS_UNAVAILABLE, // the store cannot be reached now (503)
    ND_STATUS_COUNT
};

#define ND_ERROR_FIELD_MAX 64
#define ND_ERROR_MSG_MAX   192

// code is ND_STATUS_OK until the first nd_error_set*; field is "" or a dotted path such as
// "options.epsilon" naming the one input at fault; msg is one line, never payload bytes.
struct nd_error {
    enum nd_status code;
    char field[ND_ERROR_FIELD_MAX];
    char msg[ND_ERROR_MSG_MAX];
};

// Resets err (NULL-safe) to ND_STATUS_OK with empty field and message.
void nd_error_clear(struct nd_error *err);

// Records code and a printf-style message unless err already holds an error; returns code
// either way, so a failure is one line: return nd_error_set(err, ND_STATUS_..., "...", ...).
// err may be NULL. Thread-safety: err must not be shared between threads.
enum nd_status nd_error_set(struct nd_error *err, enum nd_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

// As nd_error_set, also naming the field at fault (truncated to ND_ERROR_FIELD_MAX - 1).
enum nd_status nd_error_set_field(struct nd_error *err, enum nd_status code, const char *field,
                                  const char *fmt, ...) __attribute__((format(printf, 4, 5)));

// Prefixes the recorded field with "prefix." (or sets it to prefix when empty), so a nested
// validator can name "scaling_constraint.max_value" while knowing only "max_value".
void nd_error_prefix_field(struct nd_error *err, const char *prefix);

// A stable lower-case machine word for code ("invalid_value"); "unknown" when out of range.
// The returned string is static.
const char *nd_status_name(enum nd_status code);

#endif
