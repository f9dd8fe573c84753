// status.c - error codes and messages.
#include "core/status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const char *const status_names[ND_STATUS_COUNT] = {
    [ND_STATUS_OK] = "ok",
    [ND_STATUS_INVALID_ARGUMENT] = "invalid_argument",
    [ND_STATUS_INVALID_VALUE] = "invalid_value",
    [ND_STATUS_SHAPE_MISMATCH] = "shape_mismatch",
    [ND_STATUS_NOT_FOUND] = "not_found",
    [ND_STATUS_ALREADY_EXISTS] = "already_exists",
    [ND_STATUS_NOT_INITIALIZED] = "not_initialized",
    [ND_STATUS_CONFLICT] = "conflict",
    [ND_STATUS_PRECONDITION_FAILED] = "precondition_failed",
    [ND_STATUS_LIMIT_EXCEEDED] = "limit_exceeded",
    [ND_STATUS_OUT_OF_MEMORY] = "out_of_memory",
    [ND_STATUS_INTERNAL] = "internal",
    [ND_STATUS_BUSY] = "busy",
    [ND_STATUS_STORAGE] = "insufficient_storage",
    [ND_STATUS_STALE] = "stale",
    [ND_STATUS_UNAVAILABLE] = "unavailable",
};

void nd_error_clear(struct nd_error *err) {
    if (!err)
        return;
    err->code = ND_STATUS_OK;
    err->field[0] = '\0';
    err->msg[0] = '\0';
}

static void error_vset(struct nd_error *err, enum nd_status code, const char *field,
                       const char *fmt, va_list ap) {
    err->code = code;
    snprintf(err->field, sizeof err->field, "%s", field ? field : "");
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    // Messages are single lines: a newline would break log lines and HTTP reason texts.
    for (char *p = err->msg; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
}

enum nd_status nd_error_set(struct nd_error *err, enum nd_status code, const char *fmt, ...) {
    if (err && err->code == ND_STATUS_OK) {
        va_list ap;
        va_start(ap, fmt);
        error_vset(err, code, NULL, fmt, ap);
        va_end(ap);
    }
    return code;
}

enum nd_status nd_error_set_field(struct nd_error *err, enum nd_status code, const char *field,
                                  const char *fmt, ...) {
    if (err && err->code == ND_STATUS_OK) {
        va_list ap;
        va_start(ap, fmt);
        error_vset(err, code, field, fmt, ap);
        va_end(ap);
    }
    return code;
}

void nd_error_prefix_field(struct nd_error *err, const char *prefix) {
    if (!err || !prefix || !*prefix)
        return;
    // Built by hand rather than with snprintf("%s.%s"): a too-long path is cut, never an error.
    char joined[ND_ERROR_FIELD_MAX];
    size_t n = strnlen(prefix, sizeof joined - 1);
    memcpy(joined, prefix, n);
    if (err->field[0] && n < sizeof joined - 1) {
        joined[n++] = '.';
        size_t rest = strnlen(err->field, sizeof joined - 1 - n);
        memcpy(joined + n, err->field, rest);
        n += rest;
    }
    joined[n] = '\0';
    memcpy(err->field, joined, n + 1);
}

const char *nd_status_name(enum nd_status code) {
    if ((int)code < 0 || code >= ND_STATUS_COUNT)
        return "unknown";
    return status_names[code];
}
