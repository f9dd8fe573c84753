// h_ui.c - GET /ui: the dashboard's static files, compiled into the binary (ui_assets.h).
//
// The page itself needs no API key (it holds no data); its script calls /v1 with the key the
// user types, and /metrics. Every file carries a strong ETag (a hash of its bytes) and
// Cache-Control: no-cache, so a browser revalidates with If-None-Match and gets 304 until
// normd is upgraded: the file names are not versioned, so nothing may be cached blind.
#include <stdlib.h>
#include <string.h>

#include "api/internal.h"
#include "api/ui_assets.h"

// Scripts, styles, connections and images only from normd itself: no CDN, no inline script.
// uPlot styles its elements through the CSSOM, which style-src does not restrict.
#define UI_CSP                                                                                     \
    "default-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; "                 \
    "frame-ancestors 'self'"

_Static_assert(sizeof UI_CSP <= API_HEADER_VALUE_MAX, "the CSP fits a header value");

// The asset a path names: "/ui" and "/ui/" are index.html, "/ui/x" is x (one trailing slash
// names the same file, as for every route). NULL when there is none.
static const struct api_ui_asset *asset_of_path(const char *path) {
    const char *name = path + strlen("/ui");
    name += *name == '/';
    size_t len = strlen(name);
    len -= len > 0 && name[len - 1] == '/';
    if (len == 0)
        name = "index.html", len = strlen(name);
    for (size_t i = 0; i < api_ui_asset_count; i++)
        if (strlen(api_ui_assets[i].name) == len && memcmp(api_ui_assets[i].name, name, len) == 0)
            return &api_ui_assets[i];
    return NULL;
}

// If-None-Match lists the ETag (weak comparison, RFC 9110 13.1.2: W/ ignored), or is "*".
static bool not_modified(const char *if_none_match, const char *etag) {
    if (!if_none_match)
        return false;
    size_t elen = strlen(etag);
    const char *p = if_none_match;
    while (*p) {
        p += strspn(p, " \t,");
        if (*p == '*')
            return true;
        p += strncmp(p, "W/", 2) == 0 ? 2 : 0;
        size_t n = strcspn(p, ",");
        while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
            n--;
        if (n == elen && memcmp(p, etag, n) == 0)
            return true;
        p += strcspn(p, ",");
    }
    return false;
}

int api_h_ui(struct api_call *call) {
    const struct api_ui_asset *a = asset_of_path(call->req->path);
    if (!a)
        return api_fail(&call->err, API_E_NOT_FOUND, NULL, "no dashboard file %.100s",
                        call->req->path);
    api_reply_header(call, "ETag", "%s", a->etag);
    api_reply_header(call, "Cache-Control", "no-cache");
    api_reply_header(call, "Content-Security-Policy", "%s", UI_CSP);
    api_reply_header(call, "X-Content-Type-Options", "nosniff");
    if (not_modified(api_header(call->req, "If-None-Match"), a->etag)) {
        call->resp->status = 304;
        return API_OK;
    }
    char *body = malloc(a->size ? a->size : 1);
    if (!body)
        return api_fail(&call->err, API_E_UNAVAILABLE, NULL, NULL);
    memcpy(body, a->data, a->size);
    call->resp->status = 200;
    call->resp->body = body;
    call->resp->body_len = a->size;
    call->resp->content_type = a->content_type;
    return API_OK;
}
