// log.c - JSON lines on stderr, one write(2) each so concurrent lines never interleave.
#include "server/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *const level_names[] = {"error", "warn", "info", "debug"};

int srv_log_level_parse(const char *text) {
    for (int i = 0; i < 4; i++)
        if (strcmp(text, level_names[i]) == 0)
            return i;
    return -1;
}

const char *srv_log_level_name(enum srv_log_level level) {
    return (unsigned)level < 4 ? level_names[level] : "info";
}

// Appends s to buf as JSON string content (quotes and control characters escaped).
static size_t escape(char *buf, size_t size, size_t len, const char *s) {
    for (; *s && len + 7 < size; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            buf[len++] = '\\';
            buf[len++] = (char)c;
        } else if (c < 0x20) {
            len += (size_t)snprintf(buf + len, size - len, "\\u%04x", c);
        } else {
            buf[len++] = (char)c;
        }
    }
    return len;
}

static size_t timestamp(char *buf, size_t size) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(buf, size, "%Y-%m-%dT%H:%M:%S", &tm);
    return n + (size_t)snprintf(buf + n, size - n, ".%03ldZ", ts.tv_nsec / 1000000);
}

static void emit(const struct srv_logger *lg, char *line, size_t len, size_t size) {
    if (len >= size - 2)
        len = size - 2;
    line[len++] = '\n';
    ssize_t ignored = write(lg->fd, line, len);
    (void)ignored; // nowhere to report a failed log write
}

void srv_log(const struct srv_logger *lg, enum srv_log_level level, const char *fmt, ...) {
    if (level > lg->level)
        return;
    char msg[1024], line[2300], ts[40];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    timestamp(ts, sizeof ts);
    size_t len = (size_t)snprintf(line, sizeof line, "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":\"",
                                  ts, srv_log_level_name(level));
    len = escape(line, sizeof line, len, msg);
    len += (size_t)snprintf(line + len, sizeof line - len, "\"}");
    emit(lg, line, len, sizeof line);
}

void srv_log_request(const struct srv_logger *lg, const char *request_id, const char *trace_id,
                     const char *method, const char *route, const char *path, int status,
                     uint64_t bytes_in, uint64_t bytes_out, uint64_t micros) {
    if (SRV_LOG_INFO > lg->level)
        return;
    char line[1400], ts[40];
    timestamp(ts, sizeof ts);
    size_t len = (size_t)snprintf(line, sizeof line,
                                  "{\"ts\":\"%s\",\"level\":\"info\",\"msg\":\"request\","
                                  "\"request_id\":\"",
                                  ts);
    len = escape(line, sizeof line, len, request_id);
    if (trace_id) {
        len += (size_t)snprintf(line + len, sizeof line - len, "\",\"trace_id\":\"");
        len = escape(line, sizeof line, len, trace_id);
    }
    len += (size_t)snprintf(line + len, sizeof line - len, "\",\"method\":\"");
    len = escape(line, sizeof line, len, method);
    len +=
        (size_t)snprintf(line + len, sizeof line - len, "\",\"route\":\"%s\",\"path\":\"", route);
    len = escape(line, sizeof line, len, path);
    len += (size_t)snprintf(line + len, sizeof line - len,
                            "\",\"status\":%d,\"bytes_in\":%llu,\"bytes_out\":%llu,\"us\":%llu}",
                            status, (unsigned long long)bytes_in, (unsigned long long)bytes_out,
                            (unsigned long long)micros);
    emit(lg, line, len, sizeof line);
}
