// framing.c - strict request-line and header checks (see framing.h).
#include "server/framing.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static int refuse(struct srv_refusal *out, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int refuse(struct srv_refusal *out, int status, const char *code, const char *fmt, ...) {
    out->status = status;
    out->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out->message, sizeof out->message, fmt, ap);
    va_end(ap);
    return -1;
}

static bool is_hex(char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

// RFC 9110 5.6.2: tchar.
static bool is_tchar(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

// "http://" or "https://" (any case) of an absolute-form target: its length, 0 when raw is not
// one (normd serves no other scheme).
static size_t scheme_length(const char *raw) {
    if (strncasecmp(raw, "http://", 7) == 0)
        return 7;
    return strncasecmp(raw, "https://", 8) == 0 ? 8 : 0;
}

// RFC 9112 3.2: origin-form, absolute-form (3.2.2: a server MUST accept it), asterisk-form.
static int check_form(const char *raw, struct srv_refusal *out) {
    if (raw[0] == '/' || strcmp(raw, "*") == 0)
        return 0;
    size_t scheme = scheme_length(raw);
    if (!scheme)
        return refuse(out, 400, "malformed_body",
                      "the request target must be a path (/v1/...), an absolute http(s) URI "
                      "or *");
    size_t authority = strcspn(raw + scheme, "/?#");
    if (authority == 0)
        return refuse(out, 400, "malformed_body", "the absolute request target has no host");
    if (memchr(raw + scheme, '%', authority)) // decoding must not move where the path starts
        return refuse(out, 400, "malformed_body",
                      "the absolute request target's host holds a percent-escape");
    return 0;
}

int srv_check_target(const char *raw, struct srv_refusal *out) {
    for (const char *p = raw; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c <= 0x20 || c >= 0x7f)
            return refuse(out, 400, "malformed_body",
                          "the request target holds a control, space or non-ASCII byte (0x%02x): "
                          "percent-encode it",
                          c);
        if (c != '%')
            continue;
        if (!is_hex(p[1]) || !is_hex(p[2]))
            return refuse(out, 400, "malformed_body",
                          "the request target holds an invalid percent-escape");
        if (p[1] == '0' && p[2] == '0')
            return refuse(out, 400, "malformed_body",
                          "the request target holds an encoded NUL (%%00)");
        p += 2;
    }
    return check_form(raw, out);
}

const char *srv_target_path(const char *url) {
    size_t scheme = url[0] == '/' ? 0 : scheme_length(url);
    if (!scheme)
        return url;
    const char *path = url + scheme + strcspn(url + scheme, "/");
    return *path ? path : "/";
}

static bool name_is(const char *name, const char *want) {
    return strcasecmp(name, want) == 0;
}

// A name a folded line was joined to still starts with the framing header it continued.
static bool starts_as(const char *name, const char *framing) {
    size_t n = strlen(framing);
    return strncasecmp(name, framing, n) == 0 && name[n] != '\0';
}

static int check_name(const char *name, struct srv_refusal *out) {
    if (!name[0])
        return refuse(out, 400, "malformed_body", "a header has an empty name");
    for (const char *p = name; *p; p++)
        if (!is_tchar((unsigned char)*p))
            return refuse(out, 400, "malformed_body",
                          "a header name holds a byte that is not allowed (0x%02x): whitespace "
                          "before the colon, or a folded line",
                          (unsigned char)*p);
    if (starts_as(name, "Content-Length") || starts_as(name, "Transfer-Encoding"))
        return refuse(out, 400, "malformed_body",
                      "a framing header was folded over two lines (obs-fold)");
    return 0;
}

int srv_check_headers(const struct api_kv *headers, size_t n, size_t total, size_t max,
                      struct srv_refusal *out) {
    if (total > max)
        return refuse(out, 431, "payload_too_large",
                      "the request has %zu headers; at most %zu are accepted", total, max);
    const char *length = NULL, *coding = NULL;
    for (size_t i = 0; i < n; i++) {
        const char *name = headers[i].key, *value = headers[i].value ? headers[i].value : "";
        if (check_name(name, out) != 0)
            return -1;
        if (name_is(name, "Content-Length")) {
            if (length && strcmp(length, value) != 0)
                return refuse(out, 400, "malformed_body", "two different Content-Length headers");
            length = value;
        } else if (name_is(name, "Transfer-Encoding")) {
            if (coding)
                return refuse(out, 400, "malformed_body", "more than one Transfer-Encoding");
            coding = value;
        }
    }
    if (coding && length)
        return refuse(out, 400, "malformed_body", "Content-Length together with Transfer-Encoding");
    if (coding && strcasecmp(coding, "chunked") != 0)
        return refuse(out, 400, "malformed_body",
                      "Transfer-Encoding %.40s: only chunked is accepted", coding);
    return 0;
}

// RFC 9110 7.2: uri-host [ ":" port ]; a reg-name, an IPv4 address or an [IP-literal].
static bool host_value_ok(const char *v) {
    if (!v[0])
        return false;
    for (const char *p = v; *p; p++) {
        unsigned char c = (unsigned char)*p;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  (c != 0 && strchr("-._~!$&'()*+,;=:[]%", c) != NULL);
        if (!ok)
            return false;
    }
    return true;
}

int srv_check_request(const char *method, const char *version, const char *path,
                      const struct api_kv *headers, size_t n, struct srv_refusal *out) {
    if (strcmp(path, "*") == 0 && strcmp(method, "OPTIONS") != 0)
        return refuse(out, 400, "malformed_body", "the request target * is for OPTIONS only");
    size_t hosts = 0;
    const char *host = NULL;
    for (size_t i = 0; i < n; i++)
        if (name_is(headers[i].key, "Host")) {
            hosts++;
            host = headers[i].value ? headers[i].value : "";
        }
    if (hosts > 1)
        return refuse(out, 400, "malformed_body", "the request has %zu Host headers", hosts);
    if (!host && version && strcmp(version, "HTTP/1.1") == 0)
        return refuse(out, 400, "malformed_body", "an HTTP/1.1 request needs a Host header");
    if (host && !host_value_ok(host))
        return refuse(out, 400, "malformed_body", "the Host header is not a host[:port]");
    return 0;
}
