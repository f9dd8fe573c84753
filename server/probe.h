// probe.h - `normd --probe URL`: the image's health check, so the runtime image needs no curl.
// One GET over a plain TCP socket: 2xx within the timeout is healthy, anything else is not.
#ifndef SRV_PROBE_H
#define SRV_PROBE_H

#include <stddef.h>

#define SRV_PROBE_TIMEOUT_MS 3000

// GETs url (http://HOST[:PORT][/PATH], HOST an IPv4 literal or "localhost") and waits at most
// timeout_ms in all. Returns the HTTP status (200..599) when one was read, else -1 with the
// reason in err.
int srv_probe(const char *url, int timeout_ms, char *err, size_t errlen);

// The `--probe` mode of main: returns -1 when argv is not `normd --probe URL` (or
// `--probe=URL`), else the process's exit status: 0 on a 2xx, 1 otherwise (one line on stderr),
// 2 on a usage error.
int srv_probe_main(int argc, char **argv);

#endif
