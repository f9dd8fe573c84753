// h_history.c - GET /v1/layers/{name}/history: the layer's last train-steps, oldest first, from
// its bounded ring (core/history.h).
#include <stdlib.h>
#include <string.h>

#include "api/internal.h"

// The reply text of one record: ten keys and their numbers, generously.
#define RECORD_TEXT_BYTES 384

// limit: a decimal integer from 1 to the ring's capacity; absent: every record held (0).
static int parse_limit(struct api_call *call, int32_t *limit) {
    const char *text = api_query(call->req, "limit");
    *limit = 0;
    if (!text)
        return API_OK;
    size_t n = strlen(text);
    bool digits = n > 0 && n <= 4 && strspn(text, "0123456789") == n;
    long v = digits ? strtol(text, NULL, 10) : 0;
    if (v < 1 || v > ND_HISTORY_CAPACITY)
        return api_fail(&call->err, API_E_INVALID_VALUE, "limit",
                        "limit must be an integer from 1 to %d", ND_HISTORY_CAPACITY);
    *limit = (int32_t)v;
    return API_OK;
}

// A double, or null when the record does not hold it.
static void write_optional(struct jw *w, const char *key, bool present, double v) {
    jw_key(w, key);
    if (present)
        jw_double(w, v);
    else
        jw_null(w);
}

static void write_record(struct jw *w, const struct nd_history_record *rec) {
    bool stats = rec->flags & ND_HISTORY_STATS, opt = rec->flags & ND_HISTORY_OPTIMIZER;
    jw_obj_begin(w);
    jw_key(w, "version");
    jw_uint(w, rec->version);
    jw_key(w, "train_step");
    jw_int(w, rec->train_step);
    jw_key(w, "time");
    jw_double(w, rec->time);
    write_optional(w, "loss", rec->flags & ND_HISTORY_LOSS, rec->loss);
    write_optional(w, "batch_mean_norm", stats, rec->batch_mean_norm);
    write_optional(w, "batch_variance_norm", stats, rec->batch_variance_norm);
    jw_key(w, "optimizer");
    if (opt)
        jw_string(w, nd_optimizer_kind_name(rec->optimizer));
    else
        jw_null(w);
    write_optional(w, "learning_rate", opt, rec->learning_rate);
    jw_obj_end(w);
}

static int reply_history(struct api_call *call, const char *name,
                         const struct nd_history_record *recs, int32_t n, uint64_t total) {
    struct jw w;
    api_writer_init(call, &w);
    jw_obj_begin(&w);
    jw_key(&w, "name");
    jw_string(&w, name);
    jw_key(&w, "capacity");
    jw_int(&w, ND_HISTORY_CAPACITY);
    jw_key(&w, "total");
    jw_uint(&w, total);
    jw_key(&w, "records");
    jw_arr_begin(&w);
    for (int32_t i = 0; i < n; i++)
        write_record(&w, &recs[i]);
    jw_arr_end(&w);
    jw_obj_end(&w);
    return api_reply_json(call, 200, &w);
}

int api_h_history(struct api_call *call) {
    int32_t limit;
    struct nd_layer *layer;
    if (parse_limit(call, &limit) != 0 || api_layer_from_path(call, &layer) != 0)
        return API_FAIL;
    size_t bytes = ND_HISTORY_CAPACITY * sizeof(struct nd_history_record);
    int rc = api_reserve(call, (int64_t)(bytes + ND_HISTORY_CAPACITY * RECORD_TEXT_BYTES),
                         "the layer's history");
    struct nd_history_record *recs = rc == 0 ? malloc(bytes) : NULL;
    if (rc == 0 && !recs)
        rc = api_fail(&call->err, API_E_UNAVAILABLE, NULL, NULL);
    int32_t n = 0;
    uint64_t total = 0, version = 0;
    struct nd_error ce;
    nd_error_clear(&ce);
    if (rc == 0 &&
        nd_layer_history_read(layer, limit, recs, &n, &total, &version, &ce) != ND_STATUS_OK)
        rc = api_core_error(call, &ce, "");
    if (rc == 0) {
        api_reply_etag(call, version); // the layer's version, as GET /v1/layers/{name}
        rc = reply_history(call, nd_layer_name(layer), recs, n, total);
    }
    free(recs);
    nd_layer_unref(layer);
    return rc;
}
