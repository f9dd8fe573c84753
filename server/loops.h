// loops.h - the HTTP event loops: N threads, each running a libuv loop that drives its own
// libmicrohttpd daemon, all listening on one port (SO_REUSEPORT), so small requests answered
// inline use every core the way nginx's workers do. The main thread keeps signals and the
// drain; it talks to the loops through uv_async handles.
#ifndef SRV_LOOPS_H
#define SRV_LOOPS_H

#include <stdint.h>

#include "server/http.h"

struct srv_loops;

// Starts n (>= 1) loops serving cfg (index and reuse_port are set per loop). Returns 0, or -1
// with err set and nothing left running. Caller owns; srv_loops_join, then srv_loops_free.
int srv_loops_start(struct srv_loops **out, int n, const struct srv_http_config *cfg, char *err,
                    size_t errlen);

// Asks every loop to stop accepting connections (SIGTERM). Thread-safe.
void srv_loops_quiesce(struct srv_loops *loops);

// Requests in flight over all loops. Thread-safe.
int64_t srv_loops_inflight(struct srv_loops *loops);

// Asks every loop to stop, and waits for their threads.
void srv_loops_join(struct srv_loops *loops);

void srv_loops_free(struct srv_loops *loops);

#endif
