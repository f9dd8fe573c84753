// config.c - one table of settings; flags win over NORMD_* variables, which win over defaults.
#include "server/config.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

enum kind {
    KIND_INT,    // an integer in [min, max]
    KIND_SIZE,   // bytes: an integer with an optional K, M, G suffix (powers of 1024)
    KIND_DOUBLE, // a number in [min, max]
    KIND_STRING,
    KIND_LEVEL,   // a log level name
    KIND_ORIGINS, // a string: "", or a comma-separated list of "*" and scheme://host[:port]
    KIND_STORE,   // a string: "", dir:PATH or redis://HOST[:PORT][/DB]
};

struct setting {
    const char *name; // the flag without "--"
    const char *env;
    enum kind kind;
    const char *def; // default as text; NULL: computed (threads)
    double min, max;
    size_t offset;
    size_t size; // strings: buffer size
    const char *help;
    bool secret; // its value never appears in a message
};

#define OFF(f) offsetof(struct srv_config, f)

static const struct setting settings[] = {
    {"host", "NORMD_HOST", KIND_STRING, "127.0.0.1", 0, 0, OFF(host), 128,
     "address to listen on (IPv4 or IPv6); 0.0.0.0 or :: for every interface"},
    {"port", "NORMD_PORT", KIND_INT, "8080", 1, 65535, OFF(port), 0, "TCP port"},
    {"threads", "NORMD_THREADS", KIND_INT, NULL, 1, 256, OFF(threads), 0,
     "engine threads (default: the cores)"},
    {"http-threads", "NORMD_HTTP_THREADS", KIND_INT, NULL, 1, 64, OFF(http_threads), 0,
     "HTTP event loops on the port (default: the cores)"},
    {"max-body-bytes", "NORMD_MAX_BODY_BYTES", KIND_SIZE, "64M", 1024, 4294967296.0,
     OFF(max_body_bytes), 0, "largest request body; more is 413"},
    {"max-elements", "NORMD_MAX_ELEMENTS", KIND_SIZE, "16M", 1, 1e12, OFF(max_elements), 0,
     "largest tensor, in elements; more is 413"},
    {"max-layers", "NORMD_MAX_LAYERS", KIND_INT, "10000", 1, 1e9, OFF(max_layers), 0,
     "most layers held; more is 429"},
    {"drain-timeout", "NORMD_DRAIN_TIMEOUT", KIND_DOUBLE, "30", 0, 86400, OFF(drain_timeout), 0,
     "seconds to finish in-flight requests on SIGTERM"},
    {"log-level", "NORMD_LOG_LEVEL", KIND_LEVEL, "info", 0, 3, OFF(log_level), 0,
     "error, warn, info (one line per request) or debug"},
    {"api-key", "NORMD_API_KEY", KIND_STRING, "", 0, 0, OFF(api_key), 4096,
     "when set, /v1 needs Authorization: Bearer KEY", true},
    {"data-dir", "NORMD_DATA_DIR", KIND_STRING, "", 0, 0, OFF(data_dir), 1024,
     "store every change here before replying, reload at start (one normd per folder)"},
    {"max-connections", "NORMD_MAX_CONNECTIONS", KIND_INT, "1024", 1, 100000, OFF(max_connections),
     0, "concurrent HTTP connections over all loops; more are closed"},
    {"idle-timeout", "NORMD_IDLE_TIMEOUT", KIND_DOUBLE, "60", 1, 86400, OFF(idle_timeout), 0,
     "seconds a connection may wait for its next request"},
    {"request-timeout", "NORMD_REQUEST_TIMEOUT", KIND_DOUBLE, "60", 1, 86400, OFF(request_timeout),
     0, "seconds for a request's head and body to arrive"},
    {"admin-port", "NORMD_ADMIN_PORT", KIND_INT, "0", 0, 65535, OFF(admin_port), 0,
     "port for /healthz, /readyz, /metrics only (0: none)"},
    {"max-memory", "NORMD_MAX_MEMORY", KIND_SIZE, NULL, 16777216, 1e15, OFF(max_memory), 0,
     "memory budget for requests and layers (default: half the RAM or cgroup limit)"},
    {"cors-origins", "NORMD_CORS_ORIGINS", KIND_ORIGINS, "", 0, 0, OFF(cors_origins), 2048,
     "browser origins that may call the API (CORS): * or https://a.example,http://b:8000"},
    {"store", "NORMD_STORE", KIND_STORE, "", 0, 0, OFF(store), 1100,
     "where changes are stored: dir:PATH (as --data-dir) or redis://HOST:PORT[/DB] (shared by "
     "replicas; password in NORMD_REDIS_PASSWORD)"},
};
#define NSETTINGS ((int)(sizeof settings / sizeof settings[0]))

static int fail(char *err, size_t errlen, const struct setting *s, const char *what,
                const char *value) {
    if (s->secret) // a key must not reach a log or a terminal
        snprintf(err, errlen, "normd: --%s: %s (value not shown)", s->name, what);
    else
        snprintf(err, errlen, "normd: --%s: %s (%.60s)", s->name, what, value);
    return -1;
}

static int parse_size(const char *text, double *out) {
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (errno || end == text)
        return -1;
    double mult = 1;
    if (*end) {
        char u = (char)(*end | 0x20);
        mult = u == 'k' ? 1024.0 : u == 'm' ? 1048576.0 : u == 'g' ? 1073741824.0 : 0;
        end++;
        if (*end == 'i' || *end == 'I')
            end++;
        if (*end == 'b' || *end == 'B')
            end++;
        if (mult == 0 || *end)
            return -1;
    }
    *out = v * mult;
    return 0;
}

static bool is_alpha(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_digit(char c) {
    return c >= '0' && c <= '9';
}

// One origin as a browser sends it (RFC 6454 serialization): scheme "://" host [":" port],
// no path, no trailing slash. NULL when it is one, else what is wrong.
static const char *origin_error(const char *p, size_t n) {
    size_t i = 0;
    if (n == 4 && strncmp(p, "null", 4) == 0)
        return "\"null\" (sandboxed pages, file:) cannot be allowed safely";
    if (!n || !is_alpha(p[0]))
        return "an origin starts with a scheme: https://host[:port]";
    while (i < n && (is_alpha(p[i]) || is_digit(p[i]) || p[i] == '+' || p[i] == '-' || p[i] == '.'))
        i++;
    if (n - i < 4 || strncmp(p + i, "://", 3) != 0)
        return "an origin is scheme://host[:port]";
    i += 3;
    size_t host = i;
    if (i < n && p[i] == '[') { // an IPv6 literal
        while (i < n && p[i] != ']')
            i++;
        if (i == n)
            return "an IPv6 origin host needs its ]";
        i++;
    } else {
        while (i < n && (is_alpha(p[i]) || is_digit(p[i]) || p[i] == '-' || p[i] == '.' ||
                         p[i] == '_' || p[i] == '~'))
            i++;
    }
    if (i == host)
        return "an origin needs a host";
    if (i < n && p[i] == ':') {
        size_t port = ++i;
        long v = 0;
        while (i < n && is_digit(p[i]) && v <= 65535)
            v = v * 10 + (p[i++] - '0');
        if (i == port || v < 1 || v > 65535)
            return "an origin's port is 1..65535";
    }
    if (i < n)
        return p[i] == '/' ? "an origin has no path, not even a trailing /"
                           : "an origin holds a character a browser's Origin never has";
    return NULL;
}

// --cors-origins: "" (off), or "*" and origins separated by commas (spaces around them ignored).
static const char *origins_error(const char *text) {
    if (!text[0])
        return NULL;
    for (const char *p = text;;) {
        while (*p == ' ' || *p == '\t')
            p++;
        size_t n = strcspn(p, ","), item = n;
        while (item && (p[item - 1] == ' ' || p[item - 1] == '\t'))
            item--;
        if (!item)
            return "an empty origin in the list";
        const char *why = item == 1 && p[0] == '*' ? NULL : origin_error(p, item);
        if (why)
            return why;
        if (!p[n])
            return NULL;
        p += n + 1;
    }
}

// ---- --store ----

#define REDIS_DEFAULT_PORT 6379
#define REDIS_MAX_DB       65535

// A --store value taken apart: borrowed from the text (path) or copied (host).
struct store_addr {
    enum srv_store_kind kind;
    const char *path; // dir: the folder
    char host[256];   // redis: a name or an address, an IPv6 one without its brackets
    long port, db;
};

// Digits at *p into *v (at most max), advancing *p; false when there are none or too many.
static bool parse_bounded(const char **p, long max, long *v) {
    const char *start = *p;
    *v = 0;
    while (is_digit(**p) && *v <= max)
        *v = *v * 10 + (*(*p)++ - '0');
    return *p != start && *v <= max && !is_digit(**p);
}

// The host of a redis URL at p (a name, an IPv4 address or [IPv6]) into a->host; advances *p.
static const char *redis_host_error(const char **p, struct store_addr *a) {
    const char *h = *p, *end;
    if (*h == '[') {
        end = ++h;
        while (is_digit(*end) || ((*end | 0x20) >= 'a' && (*end | 0x20) <= 'f') || *end == ':' ||
               *end == '.')
            end++;
        if (*end != ']')
            return "an IPv6 host is [hex digits and colons]";
        *p = end + 1;
    } else {
        end = h;
        while (is_alpha(*end) || is_digit(*end) || *end == '-' || *end == '.' || *end == '_')
            end++;
        *p = end;
    }
    if (end == h)
        return "a redis URL needs a host: redis://HOST:PORT[/DB]";
    if ((size_t)(end - h) >= sizeof a->host)
        return "the host is longer than 255 characters";
    memcpy(a->host, h, (size_t)(end - h));
    a->host[end - h] = '\0';
    return NULL;
}

static const char *redis_url_error(const char *p, struct store_addr *a) {
    a->kind = SRV_STORE_REDIS;
    a->port = REDIS_DEFAULT_PORT;
    a->db = 0;
    if (strchr(p, '@'))
        return "a password does not go in the URL (ps would show it): set NORMD_REDIS_PASSWORD";
    const char *why = redis_host_error(&p, a);
    if (why)
        return why;
    if (*p == ':') {
        p++;
        if (!parse_bounded(&p, 65535, &a->port) || a->port < 1)
            return "the port is 1..65535";
    }
    if (*p == '/') {
        p++;
        if (*p && !parse_bounded(&p, REDIS_MAX_DB, &a->db)) // "/" alone is database 0
            return "the database is a number 0..65535";
    }
    if (*p)
        return *p == '?' ? "a redis URL takes no query parameters"
                         : "a redis URL is redis://HOST:PORT[/DB], with nothing after DB";
    return NULL;
}

// "dir:PATH" or "redis://HOST[:PORT][/DB]" into *a; NULL when it is one, else what is wrong.
// One pass over the text: linear whatever it holds.
static const char *store_error(const char *text, struct store_addr *a) {
    memset(a, 0, sizeof *a);
    if (!text[0])
        return NULL;
    if (strncmp(text, "dir:", 4) == 0) {
        a->kind = SRV_STORE_DIR;
        a->path = text + 4;
        if (!a->path[0])
            return "dir: needs a folder: dir:PATH";
        return strlen(a->path) >= sizeof((struct srv_config *)0)->data_dir
                   ? "the folder is longer than 1023 characters"
                   : NULL;
    }
    if (strncmp(text, "redis://", 8) == 0)
        return redis_url_error(text + 8, a);
    if (strncmp(text, "rediss://", 9) == 0)
        return "TLS (rediss://) is not supported: use redis:// on a trusted network";
    return "must be dir:PATH or redis://HOST:PORT[/DB]";
}

// --store against --data-dir (its alias): one store, named once or twice the same way.
static int resolve_store(struct srv_config *cfg, char *err, size_t errlen) {
    struct store_addr a;
    const char *why = store_error(cfg->store, &a); // checked when the value was set
    if (why) {
        snprintf(err, errlen, "normd: --store: %s (%.60s)", why, cfg->store);
        return -1;
    }
    if (a.kind == SRV_STORE_MEMORY) {
        cfg->store_kind = cfg->data_dir[0] ? SRV_STORE_DIR : SRV_STORE_MEMORY;
        return 0;
    }
    if (cfg->data_dir[0] && (a.kind != SRV_STORE_DIR || strcmp(a.path, cfg->data_dir) != 0)) {
        snprintf(err, errlen,
                 "normd: --store %.80s and --data-dir %.80s (or NORMD_STORE and NORMD_DATA_DIR) "
                 "name two stores; give one",
                 cfg->store, cfg->data_dir);
        return -1;
    }
    cfg->store_kind = a.kind;
    if (a.kind == SRV_STORE_DIR) {
        memcpy(cfg->data_dir, a.path, strlen(a.path) + 1);
        return 0;
    }
    memcpy(cfg->redis_host, a.host, sizeof a.host);
    cfg->redis_port = a.port;
    cfg->redis_db = a.db;
    return 0;
}

// Stores text into the setting's field, checking its type and range.
static int apply(struct srv_config *cfg, const struct setting *s, const char *text, char *err,
                 size_t errlen) {
    char *field = (char *)cfg + s->offset;
    struct store_addr addr;
    const char *why = s->kind == KIND_ORIGINS ? origins_error(text)
                      : s->kind == KIND_STORE ? store_error(text, &addr)
                                              : NULL;
    if (why && s->kind == KIND_STORE && strchr(text, '@')) { // a password in the URL
        snprintf(err, errlen, "normd: --%s: %s (value not shown)", s->name, why);
        return -1;
    }
    if (why)
        return fail(err, errlen, s, why, text);
    if (s->kind == KIND_STRING || s->kind == KIND_ORIGINS || s->kind == KIND_STORE) {
        if (strlen(text) >= s->size) {
            char what[48];
            snprintf(what, sizeof what, "longer than %zu characters", s->size - 1);
            return fail(err, errlen, s, what, text);
        }
        memcpy(field, text, strlen(text) + 1);
        return 0;
    }
    double v;
    if (s->kind == KIND_LEVEL) {
        int level = srv_log_level_parse(text);
        if (level < 0)
            return fail(err, errlen, s, "must be error, warn, info or debug", text);
        *(int64_t *)field = level;
        return 0;
    }
    char *end;
    errno = 0;
    if (s->kind == KIND_SIZE ? parse_size(text, &v) != 0
                             : ((v = strtod(text, &end)), errno || end == text || *end))
        return fail(err, errlen, s, "not a number", text);
    if (!(v >= s->min && v <= s->max) || (s->kind != KIND_DOUBLE && v != floor(v))) {
        char what[96];
        snprintf(what, sizeof what, "must be %s in %.15g..%.15g",
                 s->kind == KIND_DOUBLE ? "a number" : "an integer", s->min, s->max);
        return fail(err, errlen, s, what, text);
    }
    if (s->kind == KIND_DOUBLE)
        *(double *)field = v;
    else
        *(int64_t *)field = (int64_t)v;
    return 0;
}

static const struct setting *find(const char *flag, size_t len) {
    for (int i = 0; i < NSETTINGS; i++)
        if (strlen(settings[i].name) == len && strncmp(settings[i].name, flag, len) == 0)
            return &settings[i];
    return NULL;
}

// A number from the first line of a file (cgroup v2 memory.max, v1 limit_in_bytes); 0 when
// absent, unreadable or "max".
static double read_limit(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    char line[64] = "";
    double v = 0;
    if (fgets(line, sizeof line, f) && line[0] >= '0' && line[0] <= '9')
        v = strtod(line, NULL);
    fclose(f);
    return v;
}

// Half of the machine's memory, or of the container's limit when lower: the rest is left to
// the kernel, libraries, malloc's slack and what the budget does not count.
static int64_t default_memory(void) {
    double ram = (double)sysconf(_SC_PHYS_PAGES) * (double)sysconf(_SC_PAGESIZE);
    double cg = read_limit("/sys/fs/cgroup/memory.max");
    if (cg <= 0)
        cg = read_limit("/sys/fs/cgroup/memory/memory.limit_in_bytes");
    if (cg > 0 && (cg < ram || ram <= 0))
        ram = cg;
    return ram > 0 ? (int64_t)(ram / 2) : (int64_t)1 << 31;
}

static int defaults(struct srv_config *cfg, char *err, size_t errlen) {
    memset(cfg, 0, sizeof *cfg);
    cfg->max_memory = default_memory();
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    cfg->threads = cores < 1 ? 1 : cores > 256 ? 256 : cores;
    cfg->http_threads = cores < 1 ? 1 : cores > 64 ? 64 : cores;
    for (int i = 0; i < NSETTINGS; i++)
        if (settings[i].def && apply(cfg, &settings[i], settings[i].def, err, errlen) != 0)
            return -1;
    for (int i = 0; i < NSETTINGS; i++) {
        const char *v = getenv(settings[i].env);
        if (v && apply(cfg, &settings[i], v, err, errlen) != 0) {
            size_t n = strlen(err);
            snprintf(err + n, errlen - n, " from %s", settings[i].env);
            return -1;
        }
    }
    return 0;
}

// One flag of argv: "--name value" or "--name=value"; *i advances past what it used.
static int parse_flag(struct srv_config *cfg, int argc, char **argv, int *i, char *err,
                      size_t errlen) {
    const char *arg = argv[*i];
    if (strncmp(arg, "--", 2) != 0) {
        snprintf(err, errlen, "normd: unexpected argument %.60s (see --help)", arg);
        return -1;
    }
    const char *eq = strchr(arg, '=');
    size_t len = eq ? (size_t)(eq - arg - 2) : strlen(arg + 2);
    const struct setting *s = find(arg + 2, len);
    if (!s) {
        snprintf(err, errlen, "normd: unknown option %.60s (see --help)", arg);
        return -1;
    }
    const char *value = eq ? eq + 1 : NULL;
    if (!value && *i + 1 < argc)
        value = argv[++*i];
    if (!value) {
        snprintf(err, errlen, "normd: --%s needs a value", s->name);
        return -1;
    }
    return apply(cfg, s, value, err, errlen);
}

void srv_config_usage(FILE *out) {
    fprintf(out, "usage: normd [options]\n\n"
                 "normd serves normalization layers over HTTP (see README.md and "
                 "api/openapi.yaml).\n"
                 "Flags win over environment variables, which win over defaults.\n\n");
    fprintf(out, "  %-24s %-24s %-10s %s\n", "flag", "variable", "default", "meaning");
    for (int i = 0; i < NSETTINGS; i++) {
        char flag[40];
        snprintf(flag, sizeof flag, "--%s", settings[i].name);
        fprintf(out, "  %-24s %-24s %-10s %s\n", flag, settings[i].env,
                settings[i].def ? (settings[i].def[0] ? settings[i].def : "(none)") : "(machine)",
                settings[i].help);
    }
    fprintf(out, "  %-24s %-24s %-10s %s\n  %-24s %-24s %-10s %s\n", "--help", "", "",
            "print this and exit", "--version", "", "", "print the version and exit");
    fprintf(out, "  %-24s %-24s %-10s %s\n", "--probe URL", "", "",
            "GET http://IPV4-OR-localhost:PORT/PATH; exit 0 on a 2xx in 3 s, else 1");
    fprintf(out, "  %-24s %-24s %-10s %s\n", "", "NORMD_REDIS_PASSWORD", "(none)",
            "the password of --store redis:// (AUTH); never a flag, which ps would show");
}

enum srv_config_result srv_config_load(struct srv_config *cfg, int argc, char **argv, FILE *out,
                                       char *err, size_t errlen) {
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            srv_config_usage(out);
            return SRV_CONFIG_EXIT;
        }
        if (strcmp(argv[i], "--version") == 0) {
            fprintf(out, "normd %s\n", SRV_VERSION);
            return SRV_CONFIG_EXIT;
        }
    }
    if (defaults(cfg, err, errlen) != 0)
        return SRV_CONFIG_ERROR;
    for (int i = 1; i < argc; i++)
        if (parse_flag(cfg, argc, argv, &i, err, errlen) != 0)
            return SRV_CONFIG_ERROR;
    if (resolve_store(cfg, err, errlen) != 0)
        return SRV_CONFIG_ERROR;
    return SRV_CONFIG_OK;
}
