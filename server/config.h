// config.h - normd's configuration: flags > NORMD_* environment variables > defaults, from one
// table (name, flag, variable, default, range, help), as redis's static_configs.
#ifndef SRV_CONFIG_H
#define SRV_CONFIG_H

#include <stdint.h>
#include <stdio.h>

#include "server/log.h"

#define SRV_VERSION "0.3.0"

struct srv_config {
    char host[128];
    int64_t port;
    int64_t threads;        // engine threads (and libuv workers)
    int64_t http_threads;   // event loops serving HTTP
    int64_t max_body_bytes; // larger bodies get 413
    int64_t max_elements;   // per tensor
    int64_t max_layers;
    double drain_timeout;    // seconds to finish in-flight requests after SIGTERM
    int64_t log_level;       // enum srv_log_level
    char api_key[4096];      // "" for none; a secret: never printed
    char data_dir[1024];     // "" for none: layers live in memory only
    int64_t max_connections; // over every HTTP loop together
    double idle_timeout;     // seconds a connection may wait for its next request line
    double request_timeout;  // seconds from a request line to its last body byte
    int64_t admin_port;      // 0: none; else /healthz, /readyz, /metrics on their own port
    int64_t max_memory;      // bytes of the memory budget (default: half the RAM or cgroup)
    char cors_origins[2048]; // "" (off), "*", or origins "https://app.example[:port]", commas
    char store[1100];        // --store as given: "", "dir:PATH" or "redis://HOST[:PORT][/DB]"
    // --store and --data-dir resolved (srv_config_load): the kind, and for a dir store its
    // folder in data_dir above, for Redis its address.
    int64_t store_kind; // enum srv_store_kind
    char redis_host[256];
    int64_t redis_port, redis_db;
};

enum srv_store_kind {
    SRV_STORE_MEMORY, // no store: layers live in memory only
    SRV_STORE_DIR,    // files in data_dir (server/store.h)
    SRV_STORE_REDIS,  // Redis at redis_host:redis_port, database redis_db (server/store_redis.h)
};

enum srv_config_result {
    SRV_CONFIG_OK,
    SRV_CONFIG_EXIT,  // --help or --version was printed: exit 0
    SRV_CONFIG_ERROR, // err holds "normd: --port: ..."; exit 2
};

// Loads the configuration from argv and the environment (getenv), printing --help and
// --version to out.
enum srv_config_result srv_config_load(struct srv_config *cfg, int argc, char **argv, FILE *out,
                                       char *err, size_t errlen);

// The usage text (flags, variables, defaults, ranges).
void srv_config_usage(FILE *out);

#endif
