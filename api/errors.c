// errors.c - API errors: the table of codes, the translation of core statuses, and enum names.
#include "api/errors.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static const struct api_code_row {
    int status;
    const char *word;
    const char *message;
} api_codes[API_CODE_COUNT] = {
#define API_CODE(name, status, word, message) [API_E_##name] = {status, word, message},
#include "api/errors.def"
#undef API_CODE
};

static const struct api_code_row *code_row(enum api_code code) {
    return &api_codes[(int)code >= 0 && code < API_CODE_COUNT ? code : API_E_INTERNAL];
}

int api_code_status(enum api_code code) {
    return code_row(code)->status;
}

const char *api_code_word(enum api_code code) {
    return code_row(code)->word;
}

const char *api_code_message(enum api_code code) {
    return code_row(code)->message;
}

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

int api_fail(struct api_error *err, enum api_code code, const char *field, const char *fmt, ...) {
    if (err && err->status == 0) {
        const struct api_code_row *row = code_row(code);
        va_list ap;
        va_start(ap, fmt);
        if (fmt)
            error_vset(err, row->status, row->word, field, fmt, ap);
        else
            api_error_set(err, row->status, row->word, field, "%s", row->message);
        va_end(ap);
    }
    return API_FAIL;
}

int api_error_set(struct api_error *err, int status, const char *code, const char *field,
                  const char *fmt, ...) {
    if (err && err->status == 0) {
        va_list ap;
        va_start(ap, fmt);
        error_vset(err, status, code, field, fmt, ap);
        va_end(ap);
    }
    return API_FAIL;
}

int api_error_copy(struct api_error *err, const struct api_error *src, const char *field) {
    return api_error_set(err, src->status, src->code, field, "%s", src->message);
}

int api_error_recode(struct api_error *err, enum api_code code) {
    err->status = code_row(code)->status;
    err->code = code_row(code)->word;
    return API_FAIL;
}

// The code of each core status.
static const enum api_code core_map[ND_STATUS_COUNT] = {
    [ND_STATUS_OK] = API_E_INTERNAL,
    [ND_STATUS_INVALID_ARGUMENT] = API_E_INTERNAL,
    [ND_STATUS_INVALID_VALUE] = API_E_INVALID_VALUE,
    [ND_STATUS_SHAPE_MISMATCH] = API_E_SHAPE_MISMATCH,
    [ND_STATUS_NOT_FOUND] = API_E_NOT_FOUND,
    [ND_STATUS_ALREADY_EXISTS] = API_E_ALREADY_EXISTS,
    [ND_STATUS_NOT_INITIALIZED] = API_E_NOT_INITIALIZED,
    [ND_STATUS_CONFLICT] = API_E_CONFLICT,
    [ND_STATUS_PRECONDITION_FAILED] = API_E_PRECONDITION_FAILED,
    [ND_STATUS_LIMIT_EXCEEDED] = API_E_LIMIT_EXCEEDED,
    [ND_STATUS_OUT_OF_MEMORY] = API_E_UNAVAILABLE,
    [ND_STATUS_INTERNAL] = API_E_INTERNAL,
    [ND_STATUS_BUSY] = API_E_UNAVAILABLE,
    [ND_STATUS_STORAGE] = API_E_INSUFFICIENT_STORAGE,
    // A lost compare-and-set is retried on a reloaded copy (routes.c); what is left is a
    // conflict the client may retry.
    [ND_STATUS_STALE] = API_E_CONFLICT,
    [ND_STATUS_UNAVAILABLE] = API_E_UNAVAILABLE,
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
    return api_fail(err, core_map[code], field, "%s",
                    core->msg[0] ? core->msg : nd_status_name(core->code));
}

// ---- enum names ----

int api_enum_find(const char *text, const struct api_enum_name *names, unsigned flags) {
    for (int i = 0; text && names[i].name; i++)
        if ((flags & API_ENUM_NOCASE ? strcasecmp(text, names[i].name)
                                     : strcmp(text, names[i].name)) == 0)
            return names[i].value;
    return -1;
}

char *api_enum_expected(const struct api_enum_name *names, const char *quote, char *buf,
                        size_t size) {
    int listed = 0, shown = 0;
    for (int i = 0; names[i].name; i++)
        listed += !names[i].alias;
    size_t len = 0;
    buf[0] = '\0';
    for (int i = 0; names[i].name && len < size; i++) {
        if (names[i].alias)
            continue;
        const char *sep = shown == 0 ? "" : shown == listed - 1 ? " or " : ", ";
        int n = snprintf(buf + len, size - len, "%s%s%s%s", sep, quote, names[i].name, quote);
        len += n > 0 ? (size_t)n : 0;
        shown++;
    }
    return buf;
}

int api_parse_enum(const char *text, const char *field, const struct api_enum_name *names,
                   unsigned flags, int *out, struct api_error *err) {
    int v = api_enum_find(text, names, flags);
    if (v >= 0) {
        *out = v;
        return API_OK;
    }
    char expected[API_MESSAGE_MAX / 2];
    return api_fail(err, API_E_INVALID_VALUE, field, "%s must be %s", field ? field : "value",
                    api_enum_expected(names, "\"", expected, sizeof expected));
}
