// log.h - leveled one-line logs on stderr. Only server/ logs; core and api return errors.
#ifndef SRV_LOG_H
#define SRV_LOG_H

#include <stdint.h>

enum srv_log_level {
    SRV_LOG_ERROR,
    SRV_LOG_WARN,
    SRV_LOG_INFO,
    SRV_LOG_DEBUG,
};

// "error", "warn", "info", "debug" -> level; -1 for anything else.
int srv_log_level_parse(const char *text);
const char *srv_log_level_name(enum srv_log_level level);

// Where lines go and which: owned by the server state (main.c), read-only once serving.
struct srv_logger {
    enum srv_log_level level; // lines above it are dropped
    int fd;                   // stderr
};

// A JSON line {"ts": ..., "level": ..., "msg": ...} (message escaped). Thread-safe (one write).
void srv_log(const struct srv_logger *lg, enum srv_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

// The access line of one request (info level): request id, the W3C trace id when the request
// carried one (NULL: none), method, route, path, status, body bytes in and out, microseconds.
void srv_log_request(const struct srv_logger *lg, const char *request_id, const char *trace_id,
                     const char *method, const char *route, const char *path, int status,
                     uint64_t bytes_in, uint64_t bytes_out, uint64_t micros);

#endif
