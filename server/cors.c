// cors.c - CORS headers for --cors-origins (see cors.h).
#include "server/cors.h"

#include <string.h>
#include <strings.h>

static bool is_space(char c) {
    return c == ' ' || c == '\t';
}

bool srv_cors_allows(const char *list, const char *origin, bool *any) {
    *any = false;
    if (!list || !origin)
        return false;
    size_t olen = strlen(origin);
    for (const char *p = list; *p;) {
        while (is_space(*p) || *p == ',')
            p++;
        size_t n = strcspn(p, ",");
        size_t item = n;
        while (item && is_space(p[item - 1]))
            item--;
        if (item == 1 && p[0] == '*') {
            *any = true;
            return true;
        }
        if (item && item == olen && strncasecmp(p, origin, item) == 0)
            return true;
        p += n;
    }
    return false;
}

void srv_cors_headers(const char *list, const struct srv_cors_request *req, srv_cors_add_fn add,
                      void *cls) {
    bool any;
    if (!list || !list[0])
        return;
    add(cls, "Vary", "Origin");
    if (!req->origin || !srv_cors_allows(list, req->origin, &any))
        return;
    add(cls, "Access-Control-Allow-Origin", any ? "*" : req->origin);
    bool preflight = req->method && strcmp(req->method, "OPTIONS") == 0 && req->request_method;
    if (!preflight) {
        add(cls, "Access-Control-Expose-Headers", SRV_CORS_EXPOSE_HEADERS);
        return;
    }
    if (req->allow) // none: no route has the path, and the browser fails the 404 anyway
        add(cls, "Access-Control-Allow-Methods", req->allow);
    add(cls, "Access-Control-Allow-Headers", SRV_CORS_ALLOW_HEADERS);
    add(cls, "Access-Control-Max-Age", SRV_CORS_MAX_AGE);
}
