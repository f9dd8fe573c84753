// errors.h - API errors: the HTTP status, the machine-readable code of API.md section 4, the
// field at fault and a one-line message; the words every api/ function returns; and the parser
// of enum names whose "must be a, b or c" comes from its table.
#ifndef API_ERRORS_H
#define API_ERRORS_H

#include <stdbool.h>
#include <stddef.h>

#include "core/status.h"

#define API_FIELD_MAX   128
#define API_MESSAGE_MAX 512

// What an api/ function returns: API_OK, or API_FAIL with the error recorded in its struct
// api_error (call->err for handlers). API_DEFER only from what an event loop runs inline.
enum {
    API_OK = 0,
    API_FAIL = -1,  // the api_error holds the error
    API_DEFER = -2, // inline only: needs a worker
};

// The codes of API.md section 4, one per (status, word): rows of api/errors.def.
enum api_code {
#define API_CODE(name, status, word, message) API_E_##name,
#include "api/errors.def"
#undef API_CODE
    API_CODE_COUNT
};

// A code's HTTP status, word ("invalid_value") and default message (static strings).
int api_code_status(enum api_code code);
const char *api_code_word(enum api_code code);
const char *api_code_message(enum api_code code);

struct api_error {
    int status;       // 0 while no error is recorded
    const char *code; // the word of the status: static, one of api/errors.def's (or server/'s)
    char field[API_FIELD_MAX]; // "" or a dotted path ("options.epsilon")
    char message[API_MESSAGE_MAX];
    // A shared store held a newer state than this replica's copy (ND_STATUS_STALE): the copy was
    // dropped, and the request may run again on the store's (routes.c does, a bounded number of
    // times).
    bool stale;
};

void api_error_clear(struct api_error *err);

// Records an error unless one is recorded (first wins); returns API_FAIL so a failure is one
// line: return api_fail(err, API_E_INVALID_VALUE, "options.epsilon", "must be > 0, got %g", e).
// field may be NULL; fmt NULL is the code's default message. Newlines in the message become
// spaces.
int api_fail(struct api_error *err, enum api_code code, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

// api_fail with a free status and word, for the errors server/ answers itself through
// api_error_reply (431 payload_too_large, say). api/ names its errors by enum api_code.
int api_error_set(struct api_error *err, int status, const char *code, const char *field,
                  const char *fmt, ...) __attribute__((format(printf, 5, 6)));

// Records src's status, word and message in err under another field (first wins), as when a
// definition's error moves under "definition.". Returns API_FAIL.
int api_error_copy(struct api_error *err, const struct api_error *src, const char *field);

// Gives the recorded error another code, keeping its field and message (a 404 array name that
// is an unknown key of an object: 422 unknown_field). Returns API_FAIL.
int api_error_recode(struct api_error *err, enum api_code code);

// Translates a core error: the status's code (invalid_argument and internal are 500 "internal",
// out_of_memory 503 "unavailable"), its field prefixed with field_prefix ("" for none) and its
// message. Returns API_FAIL.
int api_error_from_core(struct api_error *err, const struct nd_error *core,
                        const char *field_prefix);

// ---- enum names ----

// One accepted spelling of an enum value; a table ends with {NULL}. An alias is accepted but
// not listed in the error.
struct api_enum_name {
    const char *name;
    int value;
    bool alias;
};

#define API_ENUM_NOCASE 1u // compare names case-insensitively

// The value of text in names, or API_FAIL with 422 invalid_value naming field:
// "FIELD must be \"a\", \"b\" or \"c\"" (the names that are not aliases, in table order).
// text NULL is a miss.
int api_parse_enum(const char *text, const char *field, const struct api_enum_name *names,
                   unsigned flags, int *out, struct api_error *err);

// The value of text in names, or -1 (no error recorded).
int api_enum_find(const char *text, const struct api_enum_name *names, unsigned flags);

// Writes the listed names as "\"a\", \"b\" or \"c\"" (quote "\"") or "a, b or c" (quote "")
// into buf (cut to size); returns buf.
char *api_enum_expected(const struct api_enum_name *names, const char *quote, char *buf,
                        size_t size);

#endif
