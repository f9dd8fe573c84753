// fuzz_config.c - server/config.h srv_config_load on fuzzed flags and NORMD_* variables.
//
// Input: NUL-separated tokens. A token "NORMD_X=value" (X one of the table's variables) sets
// that variable; every other token is the next argv element after "normd". Every input starts
// with all NORMD_* variables unset.
// Oracles: the result is one of the three; an error is a non-empty NUL-terminated message;
// OK gives every setting within its documented range and NUL-terminated strings. Whether an
// error message repeats the API key (from --api-key or NORMD_API_KEY) is only noted (once,
// on stderr): the lead is fixing that, and the harness does not fail on it.
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "server/config.h"
#include "tests/fuzz/fuzz_util.h"

#define MAX_ARGS 32

static const char *const vars[] = {
    "NORMD_HOST",           "NORMD_PORT",
    "NORMD_THREADS",        "NORMD_HTTP_THREADS",
    "NORMD_MAX_BODY_BYTES", "NORMD_MAX_ELEMENTS",
    "NORMD_MAX_LAYERS",     "NORMD_DRAIN_TIMEOUT",
    "NORMD_LOG_LEVEL",      "NORMD_API_KEY",
    "NORMD_DATA_DIR",       "NORMD_MAX_CONNECTIONS",
    "NORMD_IDLE_TIMEOUT",   "NORMD_REQUEST_TIMEOUT",
    "NORMD_ADMIN_PORT",     "NORMD_MAX_MEMORY",
    "NORMD_CORS_ORIGINS",   "NORMD_STORE",
};
#define NVARS (sizeof vars / sizeof vars[0])

static FILE *devnull;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    devnull = fopen("/dev/null", "w");
    if (!devnull)
        FUZZ_FAIL("cannot open /dev/null");
    return 0;
}

// Sets the variable when tok is "NORMD_X=value" for a known X; true when it was one.
static bool set_var(const char *tok) {
    const char *eq = strchr(tok, '=');
    for (size_t i = 0; eq && i < NVARS; i++)
        if (strlen(vars[i]) == (size_t)(eq - tok) &&
            strncmp(tok, vars[i], (size_t)(eq - tok)) == 0) {
            setenv(vars[i], eq + 1, 1);
            return true;
        }
    return false;
}

static bool in_range(int64_t v, int64_t lo, int64_t hi) {
    return v >= lo && v <= hi;
}

static void check_ok(const struct srv_config *c) {
    if (!memchr(c->host, '\0', sizeof c->host) || !memchr(c->api_key, '\0', sizeof c->api_key) ||
        !memchr(c->data_dir, '\0', sizeof c->data_dir))
        FUZZ_FAIL("a string setting is not NUL-terminated");
    if (!in_range(c->port, 1, 65535) || !in_range(c->threads, 1, 256) ||
        !in_range(c->http_threads, 1, 64) || !in_range(c->max_body_bytes, 1024, 4294967296LL) ||
        !in_range(c->max_elements, 1, 1000000000000LL) || !in_range(c->max_layers, 1, 1000000000) ||
        !in_range(c->log_level, 0, 3) || !in_range(c->max_connections, 1, 100000) ||
        !(c->drain_timeout >= 0 && c->drain_timeout <= 86400))
        FUZZ_FAIL("a setting out of range: port %lld threads %lld http %lld body %lld elems %lld "
                  "layers %lld level %lld conns %lld drain %g",
                  (long long)c->port, (long long)c->threads, (long long)c->http_threads,
                  (long long)c->max_body_bytes, (long long)c->max_elements,
                  (long long)c->max_layers, (long long)c->log_level, (long long)c->max_connections,
                  c->drain_timeout);
}

// The API key the input gives (the last --api-key flag wins over the variable), or NULL.
static const char *given_key(int argc, char **argv) {
    const char *key = getenv("NORMD_API_KEY");
    for (int i = 1; i < argc; i++) {
        if (strncmp(argv[i], "--api-key=", 10) == 0)
            key = argv[i] + 10;
        else if (strcmp(argv[i], "--api-key") == 0 && i + 1 < argc)
            key = argv[i + 1];
    }
    return key;
}

// A message about the key itself never shows it: values are echoed in parentheses
// ("(%.60s)"), so the key's start after a '(' is a leak. (Its bare text is not: a short key
// can be a word of the fixed message, "needs a value"; and a message about another argument,
// "unexpected argument KEY", echoes that argument, not the key.)
static void check_key_hidden(const char *err, int argc, char **argv) {
    const char *key = given_key(argc, argv);
    char needle[18] = "(";
    if (!key || !key[0] || strncmp(err, "normd: --api-key", 16) != 0)
        return;
    strncat(needle, key, 16);
    if (strstr(err, needle))
        FUZZ_FAIL("the --api-key error repeats the key: %s", err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = fuzz_strndup(data, size);
    char prog[] = "normd";
    char *argv[MAX_ARGS + 1] = {prog};
    int argc = 1;
    for (size_t i = 0; i < NVARS; i++)
        unsetenv(vars[i]);
    for (size_t at = 0; at < size && argc < MAX_ARGS; at += strlen(text + at) + 1)
        if (!set_var(text + at))
            argv[argc++] = text + at;
    argv[argc] = NULL;
    struct srv_config cfg;
    char err[256];
    memset(err, 0x5a, sizeof err); // no NUL: a message left unterminated shows
    enum srv_config_result r = srv_config_load(&cfg, argc, argv, devnull, err, sizeof err);
    if (r == SRV_CONFIG_OK)
        check_ok(&cfg);
    else if (r == SRV_CONFIG_ERROR) {
        if (!memchr(err, '\0', sizeof err) || err[0] == '\0')
            FUZZ_FAIL("an error without a message");
        check_key_hidden(err, argc, argv);
    } else if (r != SRV_CONFIG_EXIT)
        FUZZ_FAIL("srv_config_load returned %d", (int)r);
    free(text);
    return 0;
}
