// ui_assets.h - the dashboard's static files (api/ui/), compiled into normd by
// tools/embed_assets.c (the Makefile writes $(BUILD)/gen/ui_assets.c from them). Read-only data
// with static storage; GET /ui serves it (h_ui.c).
#ifndef API_UI_ASSETS_H
#define API_UI_ASSETS_H

#include <stddef.h>

struct api_ui_asset {
    const char *name;         // path under api/ui/: "index.html", "vendor/uPlot.min.css"
    const char *content_type; // from the extension, with charset for text
    const char *etag;         // strong, quoted: "\"<FNV-1a 64 of the bytes>-<length hex>\""
    const unsigned char *data;
    size_t size;
};

extern const struct api_ui_asset api_ui_assets[];
extern const size_t api_ui_asset_count;

#endif
