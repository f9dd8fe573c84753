// errors.c - API errors and the translation of core statuses.
#include "api/errors.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void api_error_clear(struct api_error *err) {
    memset(err, 0, sizeof *err);
}

static void error_vset(struct api_error *err, int status, const char *code, const char *field,
                       const char *fmt, va_list ap) {
    err->status = status;
    err->code = code;
    snprintf(err->field, sizeof err->field, "%s", field ? field : "");
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    for (char *p = err->message; *p; p++) // one line: it ends up in logs too
        if (*p == '\n' || *p == '\r')
            *p = ' ';
}

int api_error_set(struct api_error *err, int status, const char *code, const char *field,
                  const char *fmt, ...) {
    if (err && err->status == 0) {
        va_list ap;
        va_start(ap, fmt);
        error_vset(err, status, code, field, fmt, ap);
        va_end(ap);
    }
    return -1;
}

// HTTP status and API code of each core status.
static const struct {
    int status;
    const char *code;
} core_map[ND_STATUS_COUNT] = {
    [ND_STATUS_OK] = {500, "internal"},
    [ND_STATUS_INVALID_ARGUMENT] = {500, "internal"},
    [ND_STATUS_INVALID_VALUE] = {422, "invalid_value"},
    [ND_STATUS_SHAPE_MISMATCH] = {422, "shape_mismatch"},
    [ND_STATUS_NOT_FOUND] = {404, "not_found"},
    [ND_STATUS_ALREADY_EXISTS] = {409, "already_exists"},
    [ND_STATUS_NOT_INITIALIZED] = {409, "not_initialized"},
    [ND_STATUS_CONFLICT] = {409, "conflict"},
    [ND_STATUS_PRECONDITION_FAILED] = {412, "precondition_failed"},
    [ND_STATUS_LIMIT_EXCEEDED] = {429, "limit_exceeded"},
    [ND_STATUS_OUT_OF_MEMORY] = {503, "unavailable"},
    [ND_STATUS_INTERNAL] = {500, "internal"},
    [ND_STATUS_BUSY] = {503, "unavailable"},
    [ND_STATUS_STORAGE] = {507, "insufficient_storage"},
    // A lost compare-and-set is retried on a reloaded copy (routes.c); what is left is a
    // conflict the client may retry.
    [ND_STATUS_STALE] = {409, "conflict"},
    [ND_STATUS_UNAVAILABLE] = {503, "unavailable"},
};

int api_error_from_core(struct api_error *err, const struct nd_error *core,
                        const char *field_prefix) {
    enum nd_status code = core->code;
    if ((int)code < 0 || code >= ND_STATUS_COUNT)
        code = ND_STATUS_INTERNAL;
    char field[API_FIELD_MAX];
    if (field_prefix && field_prefix[0] && core->field[0])
        snprintf(field, sizeof field, "%s.%.*s", field_prefix, (int)(sizeof field / 2),
                 core->field);
    else
        snprintf(field, sizeof field, "%s",
                 core->field[0] ? core->field
                 : field_prefix ? field_prefix
                                : "");
    if (err->status == 0)
        err->stale = code == ND_STATUS_STALE;
    return api_error_set(err, core_map[code].status, core_map[code].code, field, "%s",
                         core->msg[0] ? core->msg : nd_status_name(core->code));
}
