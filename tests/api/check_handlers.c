// check_handlers.c - api/ end to end without sockets: the data-driven cases of tests/data/api/
// (README.md there describes the format) run in-process through api_handle(), plus the parts
// a case file cannot say: inline-only dispatch, the metrics exposition and concurrent calls.
#include "tests/check_suites.h"

#include <dirent.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/api.h"
#include "core/engine.h"

#define DATA_ENV  "ND_API_CASES" // a directory of case folders (overrides the search)
#define ONLY_ENV  "ND_API_CASE"  // runs only the case folders whose name contains this
#define TRACE_ENV "ND_API_TRACE" // prints every response to stderr, runs every step
#define DATA_REL  "tests/data/api"
#define MAX_CASES 512
#define MAX_KV    16
#define MSG_MAX   4096

// ---- the case list ----

static char data_dir[PATH_MAX];
static char *case_names[MAX_CASES];
static int ncases;

static bool is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

// dir/tests/data/api for dir and each of its parents; true when found.
static bool search_up(const char *start) {
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", start);
    for (int depth = 0; depth < 8 && dir[0]; depth++) {
        if (snprintf(data_dir, sizeof data_dir, "%s/%s", dir, DATA_REL) < (int)sizeof data_dir &&
            is_dir(data_dir))
            return true;
        char *slash = strrchr(dir, '/');
        if (!slash)
            break;
        *slash = '\0';
    }
    data_dir[0] = '\0';
    return false;
}

// $ND_API_CASES; else tests/data/api above the current directory; else above the executable
// (build/tests/check_api lives two levels under the repository root).
static bool find_data_dir(void) {
    const char *env = getenv(DATA_ENV);
    if (env && env[0]) {
        snprintf(data_dir, sizeof data_dir, "%s", env);
        return is_dir(data_dir);
    }
    char here[PATH_MAX];
    if (getcwd(here, sizeof here) && search_up(here))
        return true;
    ssize_t n = readlink("/proc/self/exe", here, sizeof here - 1);
    if (n > 0) {
        here[n] = '\0';
        char *slash = strrchr(here, '/');
        if (slash)
            *slash = '\0';
        if (search_up(here))
            return true;
    }
    return false;
}

static int compare_names(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

// The case folders, sorted; ncases stays 0 when the data directory is missing.
static void list_cases(void) {
    for (int i = 0; i < ncases; i++)
        free(case_names[i]);
    ncases = 0;
    if (!find_data_dir())
        return;
    DIR *d = opendir(data_dir);
    if (!d)
        return;
    const char *only = getenv(ONLY_ENV);
    struct dirent *e;
    while ((e = readdir(d)) != NULL && ncases < MAX_CASES) {
        char path[PATH_MAX + 260];
        if (e->d_name[0] == '.' || (only && only[0] && !strstr(e->d_name, only)))
            continue;
        snprintf(path, sizeof path, "%s/%s", data_dir, e->d_name);
        if (is_dir(path))
            case_names[ncases++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(case_names, (size_t)ncases, sizeof case_names[0], compare_names);
}

// ---- failure messages ----

struct run {
    const char *name; // the case
    int step;
    char msg[MSG_MAX];
    bool failed;
};

static void case_fail(struct run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void case_fail(struct run *r, const char *fmt, ...) {
    if (r->failed) // the first failure is the one reported
        return;
    r->failed = true;
    int n = snprintf(r->msg, sizeof r->msg, "case %s, step %d: ", r->name, r->step);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->msg + n, sizeof r->msg - (size_t)n, fmt, ap);
    va_end(ap);
}

// Keys of obj must all be in allowed (NULL-terminated): typos in case files fail loudly.
static bool known_keys(struct run *r, const json_t *obj, const char *what,
                       const char *const *allowed) {
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)obj, key, v) {
        bool ok = false;
        for (int i = 0; allowed[i] && !ok; i++)
            ok = strcmp(key, allowed[i]) == 0;
        if (!ok) {
            case_fail(r, "case file: unknown key \"%s\" in %s", key, what);
            return false;
        }
    }
    return true;
}

// ---- matching ----

static bool numbers_close(double got, double want) {
    return fabs(got - want) <= 1e-5 + 1e-4 * fabs(want);
}

// want matches got: "$any" matches any value, numbers within tolerance, strings, booleans and
// null exactly, objects key by key (extra keys in got allowed), lists element-wise with the
// same length. path names the place for the message.
static bool match(struct run *r, const json_t *want, const json_t *got, const char *path) {
    char sub[512];
    if (json_is_string(want) && strcmp(json_string_value(want), "$any") == 0) {
        if (!got)
            case_fail(r, "%s: missing", path);
        return got != NULL;
    }
    if (!got) {
        case_fail(r, "%s: missing", path);
        return false;
    }
    if (json_is_number(want)) {
        if (!json_is_number(got) ||
            !numbers_close(json_number_value(got), json_number_value(want))) {
            char *g = json_dumps(got, JSON_ENCODE_ANY | JSON_COMPACT | JSON_REAL_PRECISION(9));
            case_fail(r, "%s: got %s, want %.9g", path, g ? g : "?", json_number_value(want));
            free(g);
            return false;
        }
        return true;
    }
    if (json_is_object(want)) {
        if (!json_is_object(got)) {
            case_fail(r, "%s: not an object", path);
            return false;
        }
        const char *key;
        json_t *v;
        json_object_foreach((json_t *)want, key, v) {
            snprintf(sub, sizeof sub, "%s.%s", path, key);
            if (!match(r, v, json_object_get(got, key), sub))
                return false;
        }
        return true;
    }
    if (json_is_array(want)) {
        if (!json_is_array(got) || json_array_size(got) != json_array_size(want)) {
            char *g = json_dumps(got, JSON_ENCODE_ANY | JSON_COMPACT | JSON_REAL_PRECISION(9));
            case_fail(r, "%s: got %.300s, want a list of %zu", path, g ? g : "?",
                      json_array_size(want));
            free(g);
            return false;
        }
        for (size_t i = 0; i < json_array_size(want); i++) {
            snprintf(sub, sizeof sub, "%s[%zu]", path, i);
            if (!match(r, json_array_get(want, i), json_array_get(got, i), sub))
                return false;
        }
        return true;
    }
    if (!json_equal((json_t *)want, (json_t *)got)) { // strings, booleans, null
        char *g = json_dumps(got, JSON_ENCODE_ANY | JSON_COMPACT | JSON_REAL_PRECISION(9));
        char *w = json_dumps(want, JSON_ENCODE_ANY | JSON_COMPACT);
        case_fail(r, "%s: got %.300s, want %.300s", path, g ? g : "?", w ? w : "?");
        free(g);
        free(w);
        return false;
    }
    return true;
}

// The value at a dotted path ("error.field", "outputs.0"), or NULL.
static const json_t *at_path(const json_t *root, const char *path) {
    char buf[256];
    snprintf(buf, sizeof buf, "%s", path);
    const json_t *v = root;
    char *save = NULL;
    for (char *part = strtok_r(buf, ".", &save); part && v; part = strtok_r(NULL, ".", &save)) {
        if (json_is_array(v)) {
            char *end;
            long i = strtol(part, &end, 10);
            v = *end || i < 0 ? NULL : json_array_get(v, (size_t)i);
        } else {
            v = json_object_get(v, part);
        }
    }
    return v;
}

// ---- requests ----

struct built {
    struct api_request req;
    struct api_kv query[MAX_KV], headers[MAX_KV];
    char *body; // owned
    char shape[128];
};

static void add_header(struct built *b, const char *key, const char *value) {
    if (b->req.nheaders < MAX_KV)
        b->headers[b->req.nheaders++] = (struct api_kv){key, value};
}

static bool has_header(const json_t *headers, const char *name) {
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)headers, key, v) {
        if (strcasecmp(key, name) == 0)
            return true;
    }
    return false;
}

// A list of numbers as little-endian float32 (malloc'd; *n the count), or NULL.
static float *floats_of(const json_t *list, size_t *n) {
    *n = json_array_size(list);
    float *f = malloc(*n ? *n * sizeof *f : 1);
    for (size_t i = 0; f && i < *n; i++) {
        const json_t *v = json_array_get(list, i);
        const char *s = json_string_value(v);
        f[i] = s ? (strcmp(s, "NaN") == 0         ? NAN
                    : strcmp(s, "-Infinity") == 0 ? -INFINITY
                                                  : INFINITY)
                 : (float)json_number_value(v);
    }
    return f;
}

static void shape_text(const json_t *shape, char *buf, size_t size) {
    size_t n = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < json_array_size(shape) && n < size; i++)
        n += (size_t)snprintf(buf + n, size - n, "%s%lld", i ? "," : "",
                              (long long)json_integer_value(json_array_get(shape, i)));
}

// The api_request of a case's "request" object (strings borrowed from it).
static bool build_request(struct run *r, const json_t *j, struct built *b) {
    static const char *const keys[] = {"method", "path", "query",  "headers",
                                       "body",   "raw",  "binary", NULL};
    memset(b, 0, sizeof *b);
    if (!json_is_object(j) || !known_keys(r, j, "request", keys))
        return json_is_object(j) || (case_fail(r, "case file: request must be an object"), false);
    const char *method = json_string_value(json_object_get(j, "method"));
    b->req.method = method ? method : "GET";
    b->req.path = json_string_value(json_object_get(j, "path"));
    if (!b->req.path) {
        case_fail(r, "case file: request without a path");
        return false;
    }
    const char *key;
    json_t *v;
    b->req.query = b->query;
    json_object_foreach(json_object_get(j, "query"), key, v) {
        if (b->req.nquery < MAX_KV)
            b->query[b->req.nquery++] = (struct api_kv){key, json_string_value(v)};
    }
    b->req.headers = b->headers;
    const json_t *headers = json_object_get(j, "headers");
    json_object_foreach((json_t *)headers, key, v) {
        add_header(b, key, json_string_value(v));
    }
    const json_t *body = json_object_get(j, "body"), *raw = json_object_get(j, "raw"),
                 *bin = json_object_get(j, "binary");
    if (body) {
        b->body = json_dumps(body, JSON_ENCODE_ANY | JSON_COMPACT);
        b->req.body_len = strlen(b->body);
        if (!has_header(headers, "Content-Type"))
            add_header(b, "Content-Type", "application/json");
    } else if (raw) {
        b->body = strdup(json_string_value(raw) ? json_string_value(raw) : "");
        b->req.body_len = strlen(b->body);
        if (b->req.body_len == 0) { // as server/ sends an empty body: NULL (UBSan caught a
            free(b->body);          // memcpy from it once)
            b->body = NULL;
        }
    } else if (bin) {
        size_t n;
        float *f = floats_of(json_object_get(bin, "data"), &n);
        b->body = (char *)f;
        b->req.body_len = n * sizeof(float);
        shape_text(json_object_get(bin, "shape"), b->shape, sizeof b->shape);
        if (!has_header(headers, "Content-Type"))
            add_header(b, "Content-Type", "application/octet-stream");
        if (!has_header(headers, "X-Tensor-Shape"))
            add_header(b, "X-Tensor-Shape", b->shape);
    }
    b->req.body = b->body;
    return true;
}

// ---- responses ----

static const char *resp_header(const struct api_response *resp, const char *name) {
    if (strcasecmp(name, "Content-Type") == 0)
        return resp->content_type;
    for (int i = 0; i < resp->nheaders; i++)
        if (strcasecmp(resp->header_name[i], name) == 0)
            return resp->header_value[i];
    return NULL;
}

// s occurs in the len bytes at p.
static bool contains(const char *p, size_t len, const char *s) {
    size_t n = strlen(s);
    for (size_t i = 0; p && n <= len && i <= len - n; i++)
        if (memcmp(p + i, s, n) == 0)
            return true;
    return false;
}

static bool is_json(const struct api_response *resp) {
    return resp->content_type && strncmp(resp->content_type, "application/json", 16) == 0;
}

// Every error answer is {"error": {"status", "code", "message", "field"?}} and nothing else.
static void check_error_shape(struct run *r, const struct api_response *resp, const json_t *body) {
    static const char *const keys[] = {"status", "code", "message", "field", NULL};
    const json_t *e = json_object_get(body, "error");
    if (json_object_size(body) != 1 || !json_is_object(e)) {
        case_fail(r, "an error body must be {\"error\": {...}} alone");
        return;
    }
    const char *code = json_string_value(json_object_get(e, "code"));
    const char *message = json_string_value(json_object_get(e, "message"));
    const json_t *field = json_object_get(e, "field");
    if (json_integer_value(json_object_get(e, "status")) != resp->status || !code || !code[0] ||
        !message || !message[0] ||
        (field && (!json_is_string(field) || !json_string_value(field)[0])))
        case_fail(r, "error body: status, code and message must be set, field a non-empty string");
    else
        known_keys(r, e, "the error body (api/ wrote an extra key)", keys);
}

// The response is float32 data of the expected shape and values.
static void check_binary(struct run *r, const struct api_response *resp, const json_t *want) {
    char shape[128];
    shape_text(json_object_get(want, "shape"), shape, sizeof shape);
    const char *got_shape = resp_header(resp, "X-Tensor-Shape");
    if (!resp->content_type || strcmp(resp->content_type, "application/octet-stream") != 0 ||
        !got_shape || strcmp(got_shape, shape) != 0) {
        case_fail(r, "binary: content type %s, X-Tensor-Shape %s, want %s",
                  resp->content_type ? resp->content_type : "none", got_shape ? got_shape : "none",
                  shape);
        return;
    }
    size_t n;
    float *f = floats_of(json_object_get(want, "data"), &n);
    if (resp->body_len != n * sizeof(float)) {
        case_fail(r, "binary: %zu bytes, want %zu floats", resp->body_len, n);
    } else {
        for (size_t i = 0; i < n; i++) {
            float g;
            memcpy(&g, resp->body + i * sizeof g, sizeof g);
            if (!numbers_close(g, f[i]) && !(isnan(g) && isnan(f[i]))) {
                case_fail(r, "binary[%zu]: got %.9g, want %.9g", i, (double)g, (double)f[i]);
                break;
            }
        }
    }
    free(f);
}

static void check_response(struct run *r, const json_t *expect, const struct api_response *resp) {
    static const char *const keys[] = {"status",   "route",  "headers", "body",     "absent",
                                       "contains", "binary", "empty",   "deferred", NULL};
    if (!known_keys(r, expect, "expect", keys))
        return;
    json_int_t status = json_integer_value(json_object_get(expect, "status"));
    json_t *body = NULL;
    if (is_json(resp)) {
        json_error_t jerr;
        body = json_loadb(resp->body, resp->body_len, JSON_REJECT_DUPLICATES, &jerr);
        if (!body)
            case_fail(r, "the response is not JSON: %s: %.200s", jerr.text, resp->body);
    }
    if (resp->status != status) {
        case_fail(r, "status %d, want %lld; body %.600s", resp->status, (long long)status,
                  resp->body && is_json(resp) ? resp->body : "(not JSON)");
        json_decref(body);
        return;
    }
    if (!resp->route)
        case_fail(r, "no route in the response");
    const char *route = json_string_value(json_object_get(expect, "route"));
    if (route && resp->route && strcmp(route, resp->route) != 0)
        case_fail(r, "route %s, want %s", resp->route, route);
    if (resp->body_len > 0 && !resp->content_type)
        case_fail(r, "a body without a content type");
    if (body && resp->status >= 400)
        check_error_shape(r, resp, body);
    const char *key;
    json_t *v;
    json_object_foreach(json_object_get(expect, "headers"), key, v) {
        const char *got = resp_header(resp, key);
        if (json_is_null(v) ? got != NULL : !got || strcmp(got, json_string_value(v)) != 0)
            case_fail(r, "header %s: got %s, want %s", key, got ? got : "(absent)",
                      json_is_null(v) ? "(absent)" : json_string_value(v));
    }
    const json_t *want = json_object_get(expect, "body");
    if (want && !body)
        case_fail(r, "want a JSON body, got %s", resp->content_type ? resp->content_type : "none");
    else if (want)
        match(r, want, body, "body");
    size_t i;
    json_array_foreach(json_object_get(expect, "absent"), i, v) {
        if (!body || at_path(body, json_string_value(v)))
            case_fail(r, "%s must be absent", json_string_value(v));
    }
    json_array_foreach(json_object_get(expect, "contains"), i, v) {
        const char *s = json_string_value(v);
        if (!contains(resp->body, resp->body_len, s))
            case_fail(r, "the body does not contain %s", s);
    }
    if ((want = json_object_get(expect, "binary")))
        check_binary(r, resp, want);
    if (json_is_true(json_object_get(expect, "empty")) && (resp->body_len || resp->content_type))
        case_fail(r, "want an empty body, got %zu bytes", resp->body_len);
    if (r->failed && body) { // show what came back
        size_t n = strlen(r->msg);
        snprintf(r->msg + n, sizeof r->msg - n, "; got %.1500s", resp->body);
    }
    json_decref(body);
}

// ---- running a case ----

struct env {
    struct nd_engine *engine;
    struct api_ctx *ctx;
};

// A fresh engine and context from config.json (all keys optional).
static bool env_create(struct run *r, const json_t *config, struct env *env) {
    static const char *const keys[] = {"threads",      "seed",           "max_layers",
                                       "max_elements", "max_body_bytes", "api_key",
                                       "version",      "ready",          NULL};
    memset(env, 0, sizeof *env);
    if (config && !known_keys(r, config, "config.json", keys))
        return false;
    const json_t *v;
    struct nd_engine_config ec = nd_engine_config_default();
    ec.threads = 1;
    ec.seed = 7;
    ec.max_layers = 100;
    if ((v = json_object_get(config, "threads")))
        ec.threads = (int)json_integer_value(v);
    if ((v = json_object_get(config, "seed")))
        ec.seed = (uint64_t)json_integer_value(v);
    if ((v = json_object_get(config, "max_layers")))
        ec.max_layers = json_integer_value(v);
    struct api_config ac = {.version = "test",
                            .max_body_bytes = 1 << 20,
                            .max_elements = 1 << 20,
                            .max_layers = ec.max_layers};
    if ((v = json_object_get(config, "max_elements")))
        ac.max_elements = json_integer_value(v);
    if ((v = json_object_get(config, "max_body_bytes")))
        ac.max_body_bytes = (size_t)json_integer_value(v);
    ac.api_key = json_string_value(json_object_get(config, "api_key"));
    if ((v = json_object_get(config, "version")))
        ac.version = json_string_value(v);
    struct nd_error err;
    nd_error_clear(&err);
    if (nd_engine_create(&ec, &env->engine, &err) != ND_STATUS_OK) {
        case_fail(r, "engine: %s", err.msg);
        return false;
    }
    env->ctx = api_ctx_create(env->engine, &ac);
    if (!env->ctx) {
        case_fail(r, "api_ctx_create failed");
        return false;
    }
    api_set_ready(env->ctx, json_is_true(json_object_get(config, "ready")));
    return true;
}

static void env_free(struct env *env) {
    api_ctx_free(env->ctx);
    nd_engine_free(env->engine);
}

// Runs one step: "ready" first, then the request (if any), observed as the server would.
static void run_step(struct run *r, struct env *env, const json_t *step) {
    static const char *const keys[] = {"note", "ready", "inline", "request", "expect", NULL};
    if (!json_is_object(step) || !known_keys(r, step, "a step", keys)) {
        case_fail(r, "case file: a step must be an object");
        return;
    }
    const json_t *ready = json_object_get(step, "ready");
    if (ready)
        api_set_ready(env->ctx, json_is_true(ready));
    const json_t *rq = json_object_get(step, "request"), *expect = json_object_get(step, "expect");
    if (!rq)
        return;
    if (!json_is_object(expect)) {
        case_fail(r, "case file: a request needs an \"expect\" object");
        return;
    }
    struct built b;
    if (!build_request(r, rq, &b)) {
        free(b.body);
        return;
    }
    struct api_response resp;
    memset(&resp, 0xA5, sizeof resp); // api_handle must set every field it answers with
    bool inline_only = json_is_true(json_object_get(step, "inline"));
    enum api_outcome out = api_handle(env->ctx, &b.req, &resp, inline_only);
    bool want_deferred = json_is_true(json_object_get(expect, "deferred"));
    if (out == API_DEFERRED) {
        unsigned char *p = (unsigned char *)&resp;
        bool untouched = true;
        for (size_t i = 0; i < sizeof resp; i++)
            untouched &= p[i] == 0xA5;
        if (!want_deferred)
            case_fail(r, "API_DEFERRED, want an answer");
        else if (!untouched)
            case_fail(r, "a deferred call must leave the response untouched");
    } else {
        if (getenv(TRACE_ENV))
            fprintf(stderr, "[%s %d] %s %s -> %d %.*s\n", r->name, r->step, b.req.method,
                    b.req.path, resp.status, is_json(&resp) ? (int)resp.body_len : 0,
                    resp.body ? resp.body : "");
        if (want_deferred)
            case_fail(r, "answered %d, want API_DEFERRED", resp.status);
        else
            check_response(r, expect, &resp);
        api_observe(env->ctx, resp.route, b.req.method, resp.status, 0.002, b.req.body_len,
                    resp.body_len);
        api_response_free(&resp);
    }
    free(b.body);
}

static json_t *load(struct run *r, const char *file, bool required) {
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/%s/%s", data_dir, r->name, file);
    if (access(path, F_OK) != 0) {
        if (required)
            case_fail(r, "missing %s", path);
        return NULL;
    }
    json_error_t jerr;
    json_t *j = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (!j)
        case_fail(r, "%s:%d:%d: %s", path, jerr.line, jerr.column, jerr.text);
    return j;
}

// steps.json (a list of steps), or request.json and expected.json (one step); config.json.
static void run_case(struct run *r) {
    json_t *steps = load(r, "steps.json", false);
    if (!steps && !r->failed) {
        json_t *rq = load(r, "request.json", true), *ex = load(r, "expected.json", true);
        steps = json_pack("[{s:o?, s:o?}]", "request", rq, "expect", ex);
    }
    json_t *config = load(r, "config.json", false);
    struct env env = {0};
    if (!r->failed && (!json_is_array(steps) || json_array_size(steps) == 0))
        case_fail(r, "case file: no steps");
    if (!r->failed && env_create(r, config, &env)) {
        bool trace = getenv(TRACE_ENV) != NULL; // tracing runs every step
        for (size_t i = 0; i < json_array_size(steps) && (trace || !r->failed); i++) {
            r->step = (int)i + 1;
            run_step(r, &env, json_array_get(steps, i));
        }
    }
    env_free(&env);
    json_decref(steps);
    json_decref(config);
}

START_TEST(test_case) {
    struct run r = {.name = case_names[_i]};
    run_case(&r);
    ck_assert_msg(!r.failed, "%s", r.msg);
}
END_TEST

START_TEST(test_cases_found) {
    ck_assert_msg(ncases > 0 || (getenv(ONLY_ENV) && getenv(ONLY_ENV)[0]),
                  "no case folders: looked for %s above the current directory and the "
                  "executable (set " DATA_ENV " to the folder)",
                  DATA_REL);
}
END_TEST

// ---- in C: inline dispatch ----

struct fixture {
    struct nd_engine *engine;
    struct api_ctx *ctx;
};

static void fixture_open(struct fixture *f, int threads, const char *api_key) {
    struct nd_engine_config ec = nd_engine_config_default();
    ec.threads = threads;
    ec.seed = 7;
    struct nd_error err;
    nd_error_clear(&err);
    ck_assert_int_eq(nd_engine_create(&ec, &f->engine, &err), ND_STATUS_OK);
    struct api_config ac = {.version = "test",
                            .max_body_bytes = 1 << 20,
                            .max_elements = 1 << 20,
                            .max_layers = 100,
                            .api_key = api_key};
    f->ctx = api_ctx_create(f->engine, &ac);
    ck_assert_ptr_nonnull(f->ctx);
}

static void fixture_close(struct fixture *f) {
    api_ctx_free(f->ctx);
    nd_engine_free(f->engine);
}

// One request with a JSON body (or none); returns the outcome, *resp to free.
static enum api_outcome call(struct api_ctx *ctx, const char *method, const char *path,
                             const char *body, bool inline_only, struct api_response *resp) {
    struct api_kv h[] = {{"Content-Type", "application/json"}};
    struct api_request req = {.method = method,
                              .path = path,
                              .headers = h,
                              .nheaders = body ? 1 : 0,
                              .body = body,
                              .body_len = body ? strlen(body) : 0};
    return api_handle(ctx, &req, resp, inline_only);
}

// A request answered off the event loop must have status want (the body tells why not).
static void expect_status(struct api_ctx *ctx, const char *method, const char *path,
                          const char *body, int want) {
    struct api_response resp;
    ck_assert_int_eq(call(ctx, method, path, body, false, &resp), API_DONE);
    ck_assert_msg(resp.status == want, "%s %s: %d, want %d: %.*s", method, path, resp.status, want,
                  (int)resp.body_len, resp.body ? resp.body : "");
    api_response_free(&resp);
}

START_TEST(test_inline_routes) {
    struct fixture f;
    fixture_open(&f, 1, NULL);
    api_set_ready(f.ctx, true);
    expect_status(f.ctx, "PUT", "/v1/layers/bn",
                  "{\"type\": \"BatchNormalization\", \"input\": [2]}", 201);
    struct api_response resp;
    // Health, readiness, metrics, info and the type catalogue never wait.
    const char *inline_gets[] = {"/healthz", "/readyz",   "/metrics",
                                 "/v1",      "/v1/types", "/v1/types/BatchNorm/options"};
    for (size_t i = 0; i < sizeof inline_gets / sizeof inline_gets[0]; i++) {
        ck_assert_int_eq(call(f.ctx, "GET", inline_gets[i], NULL, true, &resp), API_DONE);
        ck_assert_msg(resp.status == 200, "%s: %d", inline_gets[i], resp.status);
        api_response_free(&resp);
    }
    // A forward of an idle layer is answered on the loop.
    ck_assert_int_eq(
        call(f.ctx, "POST", "/v1/layers/bn/forward", "{\"input\": [[1, 2], [3, 4]]}", true, &resp),
        API_DONE);
    ck_assert_int_eq(resp.status, 200);
    ck_assert_ptr_nonnull(strstr(resp.body, "\"output\""));
    api_response_free(&resp);
    // Unknown routes and 405s are answered inline too (nothing to wait for).
    ck_assert_int_eq(call(f.ctx, "GET", "/nope", NULL, true, &resp), API_DONE);
    ck_assert_int_eq(resp.status, 404);
    api_response_free(&resp);
    ck_assert_int_eq(call(f.ctx, "PATCH", "/v1/layers/bn", NULL, true, &resp), API_DONE);
    ck_assert_int_eq(resp.status, 405);
    api_response_free(&resp);
    // Routes that change or list layers go to a worker, leaving the response untouched.
    const char *deferred[][3] = {
        {"PUT", "/v1/layers/x", "{\"type\": \"BatchNormalization\", \"input\": [2]}"},
        {"POST", "/v1/layers", "{\"name\": \"y\", \"type\": \"BatchNormalization\"}"},
        {"GET", "/v1/layers", NULL},
        {"GET", "/v1/layers/bn", NULL},
        {"DELETE", "/v1/layers/bn", NULL},
        {"POST", "/v1/layers/bn/train-step", "{\"input\": [[1, 2], [3, 4]]}"},
        {"POST", "/v1/layers/bn/initialize", NULL},
        {"POST", "/v1/layers/bn/extract", "{\"keys\": [\"Scaling\"]}"},
        {"GET", "/v1/layers/bn/arrays/Scaling", NULL},
        {"PUT", "/v1/layers/bn/arrays/Scaling", "{\"array\": [1, 1]}"},
        {"GET", "/v1/shared-arrays", NULL},
        {"GET", "/v1/shared-arrays/g", NULL},
        // a list of examples reads the layer's information, which may wait
        {"POST", "/v1/layers/bn/forward", "{\"inputs\": [[1, 2]]}"},
    };
    for (size_t i = 0; i < sizeof deferred / sizeof deferred[0]; i++) {
        struct api_response before;
        memset(&resp, 0x5A, sizeof resp);
        memcpy(&before, &resp, sizeof before);
        ck_assert_msg(call(f.ctx, deferred[i][0], deferred[i][1], deferred[i][2], true, &resp) ==
                          API_DEFERRED,
                      "%s %s answered inline", deferred[i][0], deferred[i][1]);
        ck_assert_msg(memcmp(&resp, &before, sizeof resp) == 0, "%s %s touched the response",
                      deferred[i][0], deferred[i][1]);
    }
    // Nothing deferred happened: bn is still there and x was not created.
    expect_status(f.ctx, "GET", "/v1/layers/bn", NULL, 200);
    expect_status(f.ctx, "GET", "/v1/layers/x", NULL, 404);
    // The same PUT off the loop is answered.
    expect_status(f.ctx, "PUT", "/v1/layers/x",
                  "{\"type\": \"BatchNormalization\", \"input\": [2]}", 201);
    fixture_close(&f);
}
END_TEST

START_TEST(test_inline_auth_first) {
    // An inline route with a wrong key answers 401 inline; a worker route defers before auth
    // (the worker answers 401).
    struct fixture f;
    fixture_open(&f, 1, "k3y");
    struct api_response resp;
    ck_assert_int_eq(call(f.ctx, "GET", "/v1", NULL, true, &resp), API_DONE);
    ck_assert_int_eq(resp.status, 401);
    api_response_free(&resp);
    ck_assert_int_eq(call(f.ctx, "GET", "/healthz", NULL, true, &resp), API_DONE);
    ck_assert_int_eq(resp.status, 200);
    api_response_free(&resp);
    ck_assert_int_eq(call(f.ctx, "GET", "/v1/layers", NULL, true, &resp), API_DEFERRED);
    ck_assert_int_eq(call(f.ctx, "GET", "/v1/layers", NULL, false, &resp), API_DONE);
    ck_assert_int_eq(resp.status, 401);
    api_response_free(&resp);
    fixture_close(&f);
}
END_TEST

// ---- in C: metrics ----

// The value of the metrics line that starts with prefix (-1 when absent).
static double metric(const char *text, const char *prefix) {
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (strncmp(p, prefix, strlen(prefix)) == 0 && p[strlen(prefix)] == ' ')
            return strtod(p + strlen(prefix) + 1, NULL);
    return -1;
}

static char *metrics_text(struct api_ctx *ctx) {
    struct api_response resp;
    ck_assert_int_eq(call(ctx, "GET", "/metrics", NULL, true, &resp), API_DONE);
    ck_assert_int_eq(resp.status, 200);
    ck_assert_str_eq(resp.content_type, "text/plain; version=0.0.4; charset=utf-8");
    char *text = strndup(resp.body, resp.body_len);
    api_response_free(&resp);
    return text;
}

START_TEST(test_metrics_observe) {
    struct fixture f;
    fixture_open(&f, 1, NULL);
    const char *fwd = "/v1/layers/{name}/forward";
    api_observe(f.ctx, fwd, "POST", 200, 0.0007, 100, 40); // le 0.001
    api_observe(f.ctx, fwd, "POST", 200, 0.003, 100, 40);  // le 0.005
    api_observe(f.ctx, fwd, "POST", 422, 0.2, 10, 90);     // le 0.25
    api_observe(f.ctx, fwd, "POST", 200, 5.0, 0, 0);       // +Inf only
    api_observe(f.ctx, "/no/such/route", "GET", 404, 0.0001, 0, 50);
    api_observe(f.ctx, NULL, "GET", 404, 0.0001, 0, 50);
    api_observe(f.ctx, "/healthz", "GET", 999, 0.0001, 0, 0); // out of range: not counted
    api_inflight_add(f.ctx, 3);
    api_inflight_add(f.ctx, -1);
    char *t = metrics_text(f.ctx);
    ck_assert_double_eq(
        metric(t, "normd_http_requests_total{route=\"/v1/layers/{name}/forward\",status=\"200\"}"),
        3);
    ck_assert_double_eq(
        metric(t, "normd_http_requests_total{route=\"/v1/layers/{name}/forward\",status=\"422\"}"),
        1);
    ck_assert_double_eq(metric(t, "normd_http_requests_total{route=\"unmatched\",status=\"404\"}"),
                        2);
    ck_assert_double_eq(metric(t, "normd_http_requests_total{route=\"/healthz\",status=\"999\"}"),
                        -1);
    const struct {
        const char *le;
        double count;
    } buckets[] = {{"0.0005", 0}, {"0.001", 1}, {"0.0025", 1}, {"0.005", 2},
                   {"0.1", 2},    {"0.25", 3},  {"1", 3},      {"+Inf", 4}};
    for (size_t i = 0; i < sizeof buckets / sizeof buckets[0]; i++) {
        char line[160];
        snprintf(line, sizeof line,
                 "normd_http_request_duration_seconds_bucket{route=\"%s\",le=\"%s\"}", fwd,
                 buckets[i].le);
        ck_assert_msg(metric(t, line) == buckets[i].count, "%s: %g, want %g", line, metric(t, line),
                      buckets[i].count);
    }
    char line[160];
    snprintf(line, sizeof line, "normd_http_request_duration_seconds_count{route=\"%s\"}", fwd);
    ck_assert_double_eq(metric(t, line), 4);
    snprintf(line, sizeof line, "normd_http_request_duration_seconds_sum{route=\"%s\"}", fwd);
    ck_assert_double_eq_tol(metric(t, line), 5.2037, 1e-5);
    // Routes never observed have no histogram.
    ck_assert_ptr_null(strstr(t, "duration_seconds_count{route=\"/v1/types\"}"));
    ck_assert_double_eq(metric(t, "normd_http_requests_in_flight"), 2);
    ck_assert_double_eq(metric(t, "normd_http_request_bytes_total"), 210);
    ck_assert_double_eq(metric(t, "normd_http_response_bytes_total"), 270);
    ck_assert_double_eq(metric(t, "normd_ready"), 0);
    ck_assert_double_eq(metric(t, "normd_layers"), 0);
    ck_assert_double_eq(metric(t, "normd_engine_threads"), 1);
    ck_assert_ptr_nonnull(strstr(t, "# TYPE normd_http_request_duration_seconds histogram\n"));
    ck_assert_ptr_nonnull(strstr(t, "# TYPE normd_http_requests_total counter\n"));
    free(t);
    // Each route of the table is its own series: the pattern, never the concrete path.
    struct api_response resp;
    ck_assert_int_eq(call(f.ctx, "GET", "/v1/layers/nope", NULL, false, &resp), API_DONE);
    ck_assert_str_eq(resp.route, "/v1/layers/{name}");
    api_observe(f.ctx, resp.route, "GET", resp.status, 0.001, 0, resp.body_len);
    api_response_free(&resp);
    api_set_ready(f.ctx, true);
    expect_status(f.ctx, "PUT", "/v1/layers/a",
                  "{\"type\": \"LayerNormalization\", \"input\": [2]}", 201);
    expect_status(f.ctx, "POST", "/v1/layers/a/train-step",
                  "{\"input\": [[1, 2]], \"output_gradient\": [[1, 0]]}", 200);
    t = metrics_text(f.ctx);
    ck_assert_double_eq(
        metric(t, "normd_http_requests_total{route=\"/v1/layers/{name}\",status=\"404\"}"), 1);
    ck_assert_ptr_null(strstr(t, "/v1/layers/nope"));
    ck_assert_double_eq(metric(t, "normd_ready"), 1);
    ck_assert_double_eq(metric(t, "normd_layers"), 1);
    ck_assert_double_eq(metric(t, "normd_train_steps_total"), 1);
    free(t);
    fixture_close(&f);
}
END_TEST

// ---- in C: concurrency ----

#define WORKERS 4
#define ROUNDS  25

struct worker {
    struct api_ctx *ctx;
    int id;
    int bad; // responses other than 200
    int train_steps;
};

static void *worker_main(void *arg) {
    struct worker *w = arg;
    for (int i = 0; i < ROUNDS; i++) {
        const char *path, *body;
        switch ((w->id + i) % 4) {
        case 0:
            path = "/v1/layers/bn/train-step";
            body = "{\"input\": [[1, 2, 3], [3, 1, 2], [0, 5, 1]], "
                   "\"output_gradient\": [[0.1, 0.2, 0.3], [0.3, 0.1, 0.2], [0, 0.5, 0.1]], "
                   "\"optimizer\": {\"type\": \"adam\"}, \"return\": [\"arrays\"]}";
            w->train_steps++;
            break;
        case 1:
            path = "/v1/layers/bn/forward";
            body = "{\"input\": [[1, 2, 3], [3, 1, 2]], \"mode\": \"train\"}";
            break;
        case 2:
            path = "/v1/layers/bn/forward";
            body = "{\"inputs\": [[1, 2, 3], [3, 1, 2]], \"output_format\": \"b64\"}";
            break;
        default:
            path = "/v1/layers/bn/extract";
            body = "{\"keys\": [\"MovingMean\", \"MovingVariance\", \"Scaling\"]}";
            break;
        }
        struct api_response resp;
        // half the forwards try the event loop first, as the server does
        bool first_inline = (i % 2) == 0;
        enum api_outcome out = call(w->ctx, "POST", path, body, first_inline, &resp);
        if (out == API_DEFERRED)
            out = call(w->ctx, "POST", path, body, false, &resp);
        if (out != API_DONE || resp.status != 200)
            w->bad++;
        api_response_free(&resp);
    }
    return NULL;
}

START_TEST(test_concurrent_forward_and_train) {
    struct fixture f;
    fixture_open(&f, 2, NULL);
    expect_status(f.ctx, "PUT", "/v1/layers/bn",
                  "{\"type\": \"BatchNormalization\", \"input\": [3]}", 201);
    pthread_t th[WORKERS];
    struct worker w[WORKERS];
    for (int i = 0; i < WORKERS; i++) {
        w[i] = (struct worker){.ctx = f.ctx, .id = i};
        ck_assert_int_eq(pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
    }
    int steps = 0, bad = 0;
    for (int i = 0; i < WORKERS; i++) {
        pthread_join(th[i], NULL);
        steps += w[i].train_steps;
        bad += w[i].bad;
    }
    ck_assert_int_eq(bad, 0);
    // Every train-step is one version and one counted step.
    struct api_response resp;
    ck_assert_int_eq(call(f.ctx, "GET", "/v1/layers/bn", NULL, false, &resp), API_DONE);
    json_t *info = json_loadb(resp.body, resp.body_len, 0, NULL);
    ck_assert_ptr_nonnull(info);
    json_t *counters = json_object_get(info, "counters");
    ck_assert_int_eq(json_integer_value(json_object_get(counters, "train_steps")), steps);
    ck_assert_int_eq(json_integer_value(json_object_get(info, "version")), 1 + steps);
    json_decref(info);
    api_response_free(&resp);
    fixture_close(&f);
}
END_TEST

static void *worker_main_lifecycle(void *arg) {
    struct worker *w = arg;
    for (int i = 0; i < ROUNDS; i++) {
        char path[64], fwd[80];
        snprintf(path, sizeof path, "/v1/layers/t%d-%d", w->id, i);
        snprintf(fwd, sizeof fwd, "%s/forward", path);
        const struct {
            const char *method, *path, *body;
            int status;
        } seq[] = {
            {"PUT", path,
             "{\"type\": \"GroupNormalization\", \"input\": [4, 2], "
             "\"options\": {\"groups\": 2}}",
             201},
            {"POST", fwd, "{\"input\": [[1, 2], [3, 4], [5, 6], [7, 9]]}", 200},
            {"GET", "/v1/layers", NULL, 200},
            {"GET", "/v1", NULL, 200},
            {"DELETE", path, NULL, 204},
            {"GET", path, NULL, 404},
        };
        for (size_t k = 0; k < sizeof seq / sizeof seq[0]; k++) {
            struct api_response resp;
            if (call(w->ctx, seq[k].method, seq[k].path, seq[k].body, false, &resp) != API_DONE ||
                resp.status != seq[k].status)
                w->bad++;
            api_response_free(&resp);
        }
    }
    return NULL;
}

START_TEST(test_concurrent_create_delete) {
    // Threads create, read and delete their own layers while others list them.
    struct fixture f;
    fixture_open(&f, 1, NULL);
    pthread_t th[WORKERS];
    struct worker w[WORKERS];
    for (int i = 0; i < WORKERS; i++)
        w[i] = (struct worker){.ctx = f.ctx, .id = i};
    for (int i = 0; i < WORKERS; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, worker_main_lifecycle, &w[i]), 0);
    for (int i = 0; i < WORKERS; i++) {
        pthread_join(th[i], NULL);
        ck_assert_int_eq(w[i].bad, 0);
    }
    fixture_close(&f);
}
END_TEST

// ---- HTTP semantics: HEAD, OPTIONS, trailing slashes, query parameters (issue 9 section 2) ----

// One request with query parameters and extra headers (a JSON body or none); *resp to free.
static void call_full(struct api_ctx *ctx, const char *method, const char *path,
                      const struct api_kv *query, size_t nquery, const struct api_kv *headers,
                      size_t nheaders, const char *body, struct api_response *resp) {
    struct api_kv h[8] = {{"Content-Type", "application/json"}};
    size_t nh = body ? 1 : 0;
    for (size_t i = 0; i < nheaders && nh < 8; i++)
        h[nh++] = headers[i];
    struct api_request req = {.method = method,
                              .path = path,
                              .query = query,
                              .nquery = nquery,
                              .headers = h,
                              .nheaders = nh,
                              .body = body,
                              .body_len = body ? strlen(body) : 0};
    ck_assert_int_eq(api_handle(ctx, &req, resp, false), API_DONE);
}

// The error's code and field are as wanted (field NULL: none).
static void expect_error(const struct api_response *resp, int status, const char *code,
                         const char *field) {
    ck_assert_msg(resp->status == status, "status %d, want %d: %.*s", resp->status, status,
                  (int)resp->body_len, resp->body ? resp->body : "");
    json_t *j = json_loadb(resp->body, resp->body_len, 0, NULL);
    ck_assert_ptr_nonnull(j);
    json_t *e = json_object_get(j, "error");
    ck_assert_str_eq(json_string_value(json_object_get(e, "code")), code);
    if (field)
        ck_assert_str_eq(json_string_value(json_object_get(e, "field")), field);
    else
        ck_assert_ptr_null(json_object_get(e, "field"));
    json_decref(j);
}

START_TEST(test_head_runs_the_get) {
    struct fixture f;
    fixture_open(&f, 1, NULL);
    expect_status(f.ctx, "PUT", "/v1/layers/bn",
                  "{\"type\": \"BatchNormalization\", \"input\": [2]}", 201);
    struct api_response get, head;
    ck_assert_int_eq(call(f.ctx, "GET", "/v1/layers/bn", NULL, false, &get), API_DONE);
    ck_assert_int_eq(call(f.ctx, "HEAD", "/v1/layers/bn", NULL, false, &head), API_DONE);
    // api/ answers HEAD as GET (the same body, so the same Content-Length); server/ sends none
    ck_assert_int_eq(head.status, 200);
    ck_assert_uint_eq(head.body_len, get.body_len);
    ck_assert_int_eq(memcmp(head.body, get.body, get.body_len), 0);
    ck_assert_str_eq(resp_header(&head, "ETag"), resp_header(&get, "ETag"));
    ck_assert_str_eq(head.route, "/v1/layers/{name}");
    api_response_free(&get);
    api_response_free(&head);
    // inline like its GET
    ck_assert_int_eq(call(f.ctx, "HEAD", "/healthz", NULL, true, &head), API_DONE);
    ck_assert_int_eq(head.status, 200);
    api_response_free(&head);
    ck_assert_int_eq(call(f.ctx, "HEAD", "/v1/layers/bn/forward", NULL, false, &head), API_DONE);
    ck_assert_int_eq(head.status, 405);
    ck_assert_str_eq(resp_header(&head, "Allow"), "POST, OPTIONS");
    api_response_free(&head);
    fixture_close(&f);
}
END_TEST

START_TEST(test_options_allow) {
    struct fixture f;
    fixture_open(&f, 1, "key"); // OPTIONS needs no key
    const char *cases[][2] = {
        {"/v1/layers", "GET, HEAD, POST, OPTIONS"},
        {"/v1/layers/x", "GET, HEAD, PUT, DELETE, OPTIONS"},
        {"/v1/layers/x/", "GET, HEAD, PUT, DELETE, OPTIONS"},
        {"/v1/layers/x/forward", "POST, OPTIONS"},
        {"/v1/layers/x/arrays/Scaling", "GET, HEAD, PUT, OPTIONS"},
        {"/metrics", "GET, HEAD, OPTIONS"},
        {"*", "GET, HEAD, POST, PUT, DELETE, OPTIONS"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct api_response resp;
        ck_assert_int_eq(call(f.ctx, "OPTIONS", cases[i][0], NULL, true, &resp), API_DONE);
        ck_assert_msg(resp.status == 204, "OPTIONS %s: %d", cases[i][0], resp.status);
        ck_assert_str_eq(resp_header(&resp, "Allow"), cases[i][1]);
        ck_assert_uint_eq(resp.body_len, 0);
        api_response_free(&resp);
    }
    struct api_response resp;
    ck_assert_int_eq(call(f.ctx, "OPTIONS", "/nope", NULL, false, &resp), API_DONE);
    expect_error(&resp, 404, "not_found", NULL);
    api_response_free(&resp);
    // from the head: left to api_handle (keep-alive) unless a body follows, then answered
    struct api_request req = {.method = "OPTIONS", .path = "/v1/layers"};
    ck_assert(!api_answer_head(f.ctx, &req, &resp));
    struct api_kv cl[] = {{"Content-Length", "10"}};
    req.headers = cl;
    req.nheaders = 1;
    ck_assert(api_answer_head(f.ctx, &req, &resp));
    ck_assert_int_eq(resp.status, 204);
    ck_assert_str_eq(resp_header(&resp, "Allow"), "GET, HEAD, POST, OPTIONS");
    api_response_free(&resp);
    // the 405 of another method lists them too
    ck_assert_int_eq(call(f.ctx, "DELETE", "/v1/layers", NULL, false, &resp), API_DONE);
    ck_assert_int_eq(resp.status, 405);
    ck_assert_str_eq(resp_header(&resp, "Allow"), "GET, HEAD, POST, OPTIONS");
    api_response_free(&resp);
    fixture_close(&f);
}
END_TEST

START_TEST(test_trailing_slash) {
    struct fixture f;
    fixture_open(&f, 1, NULL);
    expect_status(f.ctx, "POST", "/v1/layers/",
                  "{\"name\": \"bn\", \"type\": \"BatchNormalization\", \"input\": [2]}", 201);
    expect_status(f.ctx, "GET", "/v1/layers/", NULL, 200);
    expect_status(f.ctx, "GET", "/v1/layers/bn/", NULL, 200);
    expect_status(f.ctx, "POST", "/v1/layers/bn/forward/", "{\"input\": [[1, 2]]}", 200);
    expect_status(f.ctx, "GET", "/healthz/", NULL, 200);
    expect_status(f.ctx, "GET", "/v1/layers//", NULL, 404);
    expect_status(f.ctx, "GET", "/v1/layers/bn//", NULL, 404);
    expect_status(f.ctx, "GET", "//v1/layers", NULL, 404);
    fixture_close(&f);
}
END_TEST

START_TEST(test_query_fields) {
    struct fixture f;
    fixture_open(&f, 1, NULL);
    expect_status(f.ctx, "PUT", "/v1/layers/bn",
                  "{\"type\": \"BatchNormalization\", \"input\": [2]}", 201);
    const char *x = "{\"input\": [[1, 2], [3, 5]]}";
    struct api_response a, b;
    // ?mode=train on a JSON body is applied: the same answer as "mode": "train" in it
    struct api_kv train[] = {{"mode", "train"}};
    call_full(f.ctx, "POST", "/v1/layers/bn/forward", train, 1, NULL, 0, x, &a);
    call_full(f.ctx, "POST", "/v1/layers/bn/forward", NULL, 0, NULL, 0,
              "{\"input\": [[1, 2], [3, 5]], \"mode\": \"train\"}", &b);
    ck_assert_int_eq(a.status, 200);
    ck_assert_uint_eq(a.body_len, b.body_len);
    ck_assert_int_eq(memcmp(a.body, b.body, a.body_len), 0);
    api_response_free(&b);
    call_full(f.ctx, "POST", "/v1/layers/bn/forward", NULL, 0, NULL, 0, x, &b);
    ck_assert(a.body_len != b.body_len || memcmp(a.body, b.body, a.body_len) != 0); // inference
    api_response_free(&a);
    api_response_free(&b);
    // unknown, repeated, in both places, mistyped
    struct api_kv bogus[] = {{"bogus", "1"}};
    call_full(f.ctx, "POST", "/v1/layers/bn/forward", bogus, 1, NULL, 0, x, &a);
    expect_error(&a, 422, "unknown_field", "bogus");
    api_response_free(&a);
    struct api_kv twice[] = {{"mode", "train"}, {"mode", "inference"}};
    call_full(f.ctx, "POST", "/v1/layers/bn/forward", twice, 2, NULL, 0, x, &a);
    expect_error(&a, 422, "invalid_value", "mode");
    api_response_free(&a);
    call_full(f.ctx, "POST", "/v1/layers/bn/forward", train, 1, NULL, 0,
              "{\"input\": [[1, 2]], \"mode\": \"train\"}", &a);
    expect_error(&a, 422, "invalid_value", "mode");
    api_response_free(&a);
    struct api_kv batch[] = {{"batch", "maybe"}};
    call_full(f.ctx, "POST", "/v1/layers/bn/forward", batch, 1, NULL, 0, x, &a);
    expect_error(&a, 400, "invalid_type", "batch");
    api_response_free(&a);
    // a route that takes none
    call_full(f.ctx, "GET", "/v1/layers", bogus, 1, NULL, 0, NULL, &a);
    expect_error(&a, 422, "unknown_field", "bogus");
    api_response_free(&a);
    call_full(f.ctx, "POST", "/v1/layers/bn/train-step", train, 1, NULL, 0, x, &a);
    expect_error(&a, 422, "unknown_field", "mode");
    api_response_free(&a);
    // output_format on extract and GET array; refused with a binary reply
    struct api_kv flat[] = {{"output_format", "flat"}};
    call_full(f.ctx, "POST", "/v1/layers/bn/extract", flat, 1, NULL, 0,
              "{\"keys\": [\"MovingMean\"]}", &a);
    ck_assert_int_eq(a.status, 200);
    ck_assert_ptr_nonnull(strstr(a.body, "\"shape\""));
    api_response_free(&a);
    struct api_kv accept[] = {{"Accept", "application/octet-stream"}};
    call_full(f.ctx, "GET", "/v1/layers/bn/arrays/MovingMean", flat, 1, accept, 1, NULL, &a);
    expect_error(&a, 422, "invalid_value", "output_format");
    api_response_free(&a);
    // the head alone refuses an unknown parameter, and lets a known one through
    struct api_request req = {
        .method = "POST", .path = "/v1/layers/bn/forward", .query = bogus, .nquery = 1};
    ck_assert(api_answer_head(f.ctx, &req, &a));
    expect_error(&a, 422, "unknown_field", "bogus");
    api_response_free(&a);
    req.query = train;
    ck_assert(!api_answer_head(f.ctx, &req, &a));
    fixture_close(&f);
}
END_TEST

START_TEST(test_query_after_auth) {
    struct fixture f;
    fixture_open(&f, 1, "key");
    struct api_kv bogus[] = {{"bogus", "1"}};
    struct api_response resp;
    call_full(f.ctx, "GET", "/v1/layers", bogus, 1, NULL, 0, NULL, &resp);
    expect_error(&resp, 401, "unauthorized", "Authorization"); // who asks comes first
    api_response_free(&resp);
    struct api_kv auth[] = {{"Authorization", "Bearer key"}};
    call_full(f.ctx, "GET", "/v1/layers", bogus, 1, auth, 1, NULL, &resp);
    expect_error(&resp, 422, "unknown_field", "bogus");
    api_response_free(&resp);
    fixture_close(&f);
}
END_TEST

// ---- export and import (issue 9 section 3) ----

// One request with a body of len bytes and the given headers; *resp to free.
static void call_bytes(struct api_ctx *ctx, const char *method, const char *path,
                       const struct api_kv *headers, size_t nheaders, const void *body, size_t len,
                       struct api_response *resp) {
    struct api_request req = {.method = method,
                              .path = path,
                              .headers = headers,
                              .nheaders = nheaders,
                              .body = body,
                              .body_len = len};
    ck_assert_int_eq(api_handle(ctx, &req, resp, false), API_DONE);
}

// GET .../export as JSON, parsed, without its "name".
static json_t *export_doc(struct api_ctx *ctx, const char *name) {
    char path[128];
    snprintf(path, sizeof path, "/v1/layers/%s/export", name);
    struct api_response resp;
    ck_assert_int_eq(call(ctx, "GET", path, NULL, false, &resp), API_DONE);
    ck_assert_msg(resp.status == 200, "export %s: %d %.*s", name, resp.status, (int)resp.body_len,
                  resp.body);
    json_t *j = json_loadb(resp.body, resp.body_len, 0, NULL);
    ck_assert_ptr_nonnull(j);
    ck_assert_str_eq(json_string_value(json_object_get(j, "format")), "normd-layer");
    json_object_del(j, "name");
    api_response_free(&resp);
    return j;
}

static char *train_text(struct api_ctx *ctx, const char *name, size_t *len) {
    char path[128];
    snprintf(path, sizeof path, "/v1/layers/%s/train-step", name);
    struct api_response resp;
    ck_assert_int_eq(call(ctx, "POST", path,
                          "{\"input\":[[1,2,3],[3,1,0.5],[0,2,7]],"
                          "\"output_gradient\":[[1,-1,2],[0.5,2,1],[3,0,1]],"
                          "\"optimizer\":{\"type\":\"adam\",\"learning_rate\":0.01},"
                          "\"return\":[\"output\",\"input_gradient\",\"array_gradients\","
                          "\"arrays\"],\"output_format\":\"b64\"}",
                          false, &resp),
                     API_DONE);
    ck_assert_msg(resp.status == 200, "train %s: %d %.*s", name, resp.status, (int)resp.body_len,
                  resp.body);
    char *text = resp.body;
    *len = resp.body_len;
    resp.body = NULL;
    api_response_free(&resp);
    return text;
}

START_TEST(test_export_import_round_trip) {
    struct fixture f;
    fixture_open(&f, 1, NULL);
    expect_status(f.ctx, "PUT", "/v1/layers/bn",
                  "{\"type\":\"BatchNormalization\",\"convention\":\"pytorch\",\"input\":[3],"
                  "\"options\":{\"momentum\":null}}",
                  201);
    size_t n0, n1;
    free(train_text(f.ctx, "bn", &n0));
    free(train_text(f.ctx, "bn", &n0));
    json_t *doc = export_doc(f.ctx, "bn");
    char *text = json_dumps(doc, 0);
    expect_status(f.ctx, "POST", "/v1/layers/copy/import", text, 201);
    free(text);
    struct api_kv accept = {"Accept", "application/octet-stream"};
    struct api_response bin, resp;
    call_full(f.ctx, "GET", "/v1/layers/bn/export", NULL, 0, &accept, 1, NULL, &bin);
    ck_assert_int_eq(bin.status, 200);
    ck_assert_str_eq(bin.content_type, "application/octet-stream");
    ck_assert_mem_eq(bin.body, "NDX1", 4);
    struct api_kv ct = {"Content-Type", "application/octet-stream"};
    call_bytes(f.ctx, "POST", "/v1/layers/copy2/import", &ct, 1, bin.body, bin.body_len, &resp);
    ck_assert_msg(resp.status == 201, "%.*s", (int)resp.body_len, resp.body);
    api_response_free(&resp);
    // Replacing answers 200; truncated bytes are a malformed body and change nothing.
    call_bytes(f.ctx, "POST", "/v1/layers/copy2/import", &ct, 1, bin.body, bin.body_len, &resp);
    ck_assert_int_eq(resp.status, 200);
    api_response_free(&resp);
    call_bytes(f.ctx, "POST", "/v1/layers/nope/import", &ct, 1, bin.body, bin.body_len - 1, &resp);
    expect_error(&resp, 400, "malformed_body", "body");
    api_response_free(&resp);
    api_response_free(&bin);
    expect_status(f.ctx, "GET", "/v1/layers/nope", NULL, 404);
    json_t *again = export_doc(f.ctx, "copy");
    ck_assert_msg(json_equal(doc, again), "the copy's export differs from the original's");
    json_decref(again);
    json_decref(doc);
    // The next step: bit-identical answers (base64 FP32), versions included.
    char *a = train_text(f.ctx, "bn", &n0), *b = train_text(f.ctx, "copy", &n1);
    ck_assert_msg(n0 == n1 && memcmp(a, b, n0) == 0, "%s\n%s", a, b);
    free(b);
    free(a);
    fixture_close(&f);
}
END_TEST

START_TEST(test_import_refusals) {
    struct fixture f;
    fixture_open(&f, 1, NULL);
    expect_status(f.ctx, "PUT", "/v1/layers/ln",
                  "{\"type\":\"LayerNormalization\",\"input\":[2,3]}", 201);
    json_t *doc = export_doc(f.ctx, "ln");
    struct {
        const char *key;
        json_t *value;
        int status;
        const char *code, *field;
    } bad[] = {
        {"format_version", json_integer(2), 422, "invalid_value", "format_version"},
        {"format", json_string("other"), 422, "invalid_value", "format"},
        {"colour", json_true(), 422, "unknown_field", "colour"},
        {"version", json_integer(0), 422, "invalid_value", "version"},
        {"counters", json_string("x"), 400, "invalid_type", "counters"},
        {"arrays", json_pack("{s:{s:[f,f]}}", "Scaling", "values", 1.0, 2.0), 422, "shape_mismatch",
         "arrays.Scaling"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json_t *d = json_deep_copy(doc);
        json_object_set_new(d, bad[i].key, bad[i].value);
        char *text = json_dumps(d, 0);
        struct api_response resp;
        call_full(f.ctx, "POST", "/v1/layers/x/import", NULL, 0, NULL, 0, text, &resp);
        expect_error(&resp, bad[i].status, bad[i].code, bad[i].field);
        api_response_free(&resp);
        free(text);
        json_decref(d);
        expect_status(f.ctx, "GET", "/v1/layers/x", NULL, 404);
    }
    struct api_kv q = {"colour", "red"};
    struct api_response resp;
    call_full(f.ctx, "GET", "/v1/layers/ln/export", &q, 1, NULL, 0, NULL, &resp);
    expect_error(&resp, 422, "unknown_field", "colour");
    api_response_free(&resp);
    json_decref(doc);
    fixture_close(&f);
}
END_TEST

START_TEST(test_arrays_list_and_extract_all) {
    struct fixture f;
    fixture_open(&f, 1, NULL);
    expect_status(f.ctx, "PUT", "/v1/layers/bn",
                  "{\"type\":\"BatchNormalization\",\"input\":[2],\"arrays\":{\"Biases\":null}}",
                  201);
    struct api_response resp;
    ck_assert_int_eq(call(f.ctx, "GET", "/v1/layers/bn/arrays", NULL, false, &resp), API_DONE);
    ck_assert_int_eq(resp.status, 200);
    json_t *j = json_loadb(resp.body, resp.body_len, 0, NULL);
    json_t *want =
        json_loads("[{\"name\":\"Scaling\",\"shape\":[2],\"learning_rate_multiplier\":1,"
                   "\"shared\":null,\"enabled\":true},"
                   "{\"name\":\"Biases\",\"shape\":null,\"learning_rate_multiplier\":1,"
                   "\"shared\":null,\"enabled\":false},"
                   "{\"name\":\"MovingMean\",\"shape\":[2],\"learning_rate_multiplier\":1,"
                   "\"shared\":null,\"enabled\":true},"
                   "{\"name\":\"MovingVariance\",\"shape\":[2],"
                   "\"learning_rate_multiplier\":1,\"shared\":null,\"enabled\":true}]",
                   0, NULL);
    ck_assert_msg(json_equal(json_object_get(j, "arrays"), want), "%.*s", (int)resp.body_len,
                  resp.body);
    json_decref(want);
    json_decref(j);
    api_response_free(&resp);
    ck_assert_int_eq(
        call(f.ctx, "POST", "/v1/layers/bn/extract", "{\"keys\":\"All\"}", false, &resp), API_DONE);
    ck_assert_int_eq(resp.status, 200);
    j = json_loadb(resp.body, resp.body_len, 0, NULL);
    ck_assert(json_is_null(json_object_get(j, "Biases")));
    ck_assert_int_eq(json_array_size(json_object_get(j, "MovingVariance")), 2);
    ck_assert(json_real_value(json_object_get(j, "Momentum")) == 0.9);
    ck_assert(json_is_number(json_object_get(j, "epsilon")));
    ck_assert(json_is_string(json_object_get(j, "moving_variance")));
    json_decref(j);
    api_response_free(&resp);
    ck_assert_int_eq(
        call(f.ctx, "POST", "/v1/layers/bn/extract", "{\"keys\":\"Epsilon\"}", false, &resp),
        API_DONE);
    expect_error(&resp, 400, "invalid_type", "keys");
    api_response_free(&resp);
    fixture_close(&f);
}
END_TEST

// ---- suite ----

Suite *handlers_suite(void) {
    list_cases();
    Suite *s = suite_create("handlers");
    TCase *tc = tcase_create("cases");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_cases_found);
    if (ncases > 0)
        tcase_add_loop_test(tc, test_case, 0, ncases);
    suite_add_tcase(s, tc);
    TCase *ti = tcase_create("inline");
    tcase_add_test(ti, test_inline_routes);
    tcase_add_test(ti, test_inline_auth_first);
    suite_add_tcase(s, ti);
    TCase *tm = tcase_create("metrics");
    tcase_add_test(tm, test_metrics_observe);
    suite_add_tcase(s, tm);
    TCase *tt = tcase_create("threads");
    tcase_set_timeout(tt, 60);
    tcase_add_test(tt, test_concurrent_forward_and_train);
    tcase_add_test(tt, test_concurrent_create_delete);
    suite_add_tcase(s, tt);
    TCase *th = tcase_create("http");
    tcase_add_test(th, test_head_runs_the_get);
    tcase_add_test(th, test_options_allow);
    tcase_add_test(th, test_trailing_slash);
    tcase_add_test(th, test_query_fields);
    tcase_add_test(th, test_query_after_auth);
    suite_add_tcase(s, th);
    TCase *tx = tcase_create("export");
    tcase_add_test(tx, test_export_import_round_trip);
    tcase_add_test(tx, test_import_refusals);
    tcase_add_test(tx, test_arrays_list_and_extract_all);
    suite_add_tcase(s, tx);
    return s;
}
