// probe.c - a minimal HTTP/1.0 GET for health checks: parse the URL, connect and exchange under
// one deadline, read the status line. Plain POSIX sockets; nothing of libmicrohttpd or libuv.
#include "server/probe.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct target {
    struct sockaddr_in addr;
    char host[64]; // as written in the URL
    long port;
    const char *path;
};

static int fail(char *err, size_t errlen, const char *what, const char *detail) {
    snprintf(err, errlen, "%s%s%.80s", what, detail ? ": " : "", detail ? detail : "");
    return -1;
}

static int fail_errno(char *err, size_t errlen, const char *what) {
    return fail(err, errlen, what, errno == ETIMEDOUT ? "timed out" : strerror(errno));
}

static long long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

// ---- the URL ----

// "[:PORT]" then "/PATH" or the end; *rest is left at the path.
static int parse_port(const char *p, long *port, const char **rest) {
    *port = 80;
    *rest = p;
    if (*p != ':')
        return 0;
    char *end;
    errno = 0;
    *port = strtol(p + 1, &end, 10);
    if (errno || end == p + 1 || !isdigit((unsigned char)p[1]) || *port < 1 || *port > 65535 ||
        (*end && *end != '/'))
        return -1;
    *rest = end;
    return 0;
}

static int parse_url(const char *url, struct target *t, char *err, size_t errlen) {
    static const char scheme[] = "http://";
    if (strncmp(url, scheme, sizeof scheme - 1) != 0)
        return fail(err, errlen, "not an http:// URL", NULL);
    const char *host = url + sizeof scheme - 1;
    size_t hlen = strcspn(host, ":/");
    if (hlen == 0 || hlen >= sizeof t->host)
        return fail(err, errlen, "no host in the URL", NULL);
    memcpy(t->host, host, hlen);
    t->host[hlen] = '\0';
    const char *path;
    if (parse_port(host + hlen, &t->port, &path) != 0)
        return fail(err, errlen, "bad port in the URL", NULL);
    t->path = *path ? path : "/";
    if (t->path[strcspn(t->path, " \t\r\n")] != '\0')
        return fail(err, errlen, "blank or control character in the path", NULL);
    memset(&t->addr, 0, sizeof t->addr);
    t->addr.sin_family = AF_INET;
    t->addr.sin_port = htons((unsigned short)t->port);
    const char *ip = strcmp(t->host, "localhost") == 0 ? "127.0.0.1" : t->host;
    if (inet_pton(AF_INET, ip, &t->addr.sin_addr) != 1)
        return fail(err, errlen, "the host must be an IPv4 address or localhost", t->host);
    return 0;
}

// ---- the exchange ----

// Waits until fd is ready for events or the deadline passes (-1, errno ETIMEDOUT).
static int wait_fd(int fd, short events, long long deadline) {
    for (;;) {
        long long left = deadline - now_ms();
        if (left <= 0) {
            errno = ETIMEDOUT;
            return -1;
        }
        struct pollfd p = {.fd = fd, .events = events};
        int n = poll(&p, 1, (int)left);
        if (n > 0)
            return 0;
        if (n == 0)
            errno = ETIMEDOUT;
        if (n == 0 || errno != EINTR)
            return -1;
    }
}

// A connected non-blocking socket, or -1 with errno set.
static int connect_to(const struct target *t, long long deadline) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    int soerr = 0;
    socklen_t len = sizeof soerr;
    if (fcntl(fd, F_SETFL, O_NONBLOCK) != 0 ||
        (connect(fd, (const struct sockaddr *)&t->addr, sizeof t->addr) != 0 &&
         errno != EINPROGRESS) ||
        wait_fd(fd, POLLOUT, deadline) != 0 ||
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0 || soerr != 0) {
        int e = soerr ? soerr : errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

static int send_all(int fd, const char *buf, size_t len, long long deadline) {
    while (len > 0) {
        if (wait_fd(fd, POLLOUT, deadline) != 0)
            return -1;
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
        if (n < 0 && errno != EINTR && errno != EAGAIN)
            return -1;
        if (n > 0) {
            buf += n;
            len -= (size_t)n;
        }
    }
    return 0;
}

// Reads up to the end of the status line (or what fits in buf, or the end of the stream).
static int read_status_line(int fd, char *buf, size_t size, long long deadline) {
    size_t n = 0;
    while (n < size - 1 && !memchr(buf, '\n', n)) {
        if (wait_fd(fd, POLLIN, deadline) != 0)
            return -1;
        ssize_t r = recv(fd, buf + n, size - 1 - n, 0);
        if (r == 0)
            break;
        if (r < 0 && errno != EINTR && errno != EAGAIN)
            return -1;
        if (r > 0)
            n += (size_t)r;
    }
    buf[n] = '\0';
    return 0;
}

// "HTTP/1.x NNN ..." -> NNN, or -1.
static int status_code(const char *line) {
    if (strncmp(line, "HTTP/1.", 7) != 0 || !isdigit((unsigned char)line[7]) || line[8] != ' ')
        return -1;
    const char *s = line + 9;
    for (int i = 0; i < 3; i++)
        if (!isdigit((unsigned char)s[i]))
            return -1;
    if (s[3] != ' ' && s[3] != '\r' && s[3] != '\n')
        return -1;
    int code = (s[0] - '0') * 100 + (s[1] - '0') * 10 + (s[2] - '0');
    return code >= 100 ? code : -1;
}

static int exchange(int fd, const struct target *t, long long deadline, char *err, size_t errlen) {
    char buf[512];
    int n = snprintf(buf, sizeof buf,
                     "GET %s HTTP/1.0\r\nHost: %s:%ld\r\nUser-Agent: normd-probe\r\n"
                     "Connection: close\r\n\r\n",
                     t->path, t->host, t->port);
    if (n < 0 || (size_t)n >= sizeof buf)
        return fail(err, errlen, "the URL is too long", NULL);
    if (send_all(fd, buf, (size_t)n, deadline) != 0)
        return fail_errno(err, errlen, "sending the request");
    if (read_status_line(fd, buf, sizeof buf, deadline) != 0)
        return fail_errno(err, errlen, "reading the reply");
    int code = status_code(buf);
    if (code < 0)
        return fail(err, errlen, buf[0] ? "not an HTTP reply" : "empty reply", NULL);
    return code;
}

int srv_probe(const char *url, int timeout_ms, char *err, size_t errlen) {
    struct target t;
    if (parse_url(url, &t, err, errlen) != 0)
        return -1;
    long long deadline = now_ms() + timeout_ms;
    int fd = connect_to(&t, deadline);
    if (fd < 0)
        return fail_errno(err, errlen, "connecting");
    int code = exchange(fd, &t, deadline, err, errlen);
    close(fd);
    return code;
}

// ---- the command ----

int srv_probe_main(int argc, char **argv) {
    const char *url;
    if (argc >= 2 && strcmp(argv[1], "--probe") == 0)
        url = argc == 3 ? argv[2] : NULL;
    else if (argc >= 2 && strncmp(argv[1], "--probe=", 8) == 0)
        url = argc == 2 ? argv[1] + 8 : NULL;
    else
        return -1;
    if (!url) {
        fprintf(stderr, "normd: usage: normd --probe http://HOST:PORT/PATH\n");
        return 2;
    }
    char err[160];
    int code = srv_probe(url, SRV_PROBE_TIMEOUT_MS, err, sizeof err);
    if (code >= 200 && code <= 299)
        return 0;
    if (code > 0)
        fprintf(stderr, "normd: probe %.200s: HTTP %d\n", url, code);
    else
        fprintf(stderr, "normd: probe %.200s: %s\n", url, err);
    return 1;
}
