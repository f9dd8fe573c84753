// change_msg.h - the message a replica publishes after it changed the shared store (the Lua
// script of store_redis.c writes it; every replica's subscriber reads it): "L <version> <name>"
// after a layer's change, "S <version> <name>" after a shared array's, version 0 for a removal.
// Anyone who can publish on the channel can send anything, so the reader takes only that form.
#ifndef SRV_CHANGE_MSG_H
#define SRV_CHANGE_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SRV_CHANGE_NAME_MAX 128 // ND_NAME_MAX: a longer name is no layer's

struct srv_change {
    bool shared;      // a shared array (S), else a layer (L)
    uint64_t version; // the store's version after the change; 0: removed
    char name[SRV_CHANGE_NAME_MAX + 1];
};

// Reads m (len bytes, not NUL-terminated): true with *out filled for a well-formed message (a
// version of at most 20 digits that fits in 64 bits, a name of 1..128 bytes with no space,
// control character or NUL), false otherwise. Linear in len.
bool srv_change_parse(const char *m, size_t len, struct srv_change *out);

// Writes c as the message into buf (NUL-terminated); the length, or -1 when size is too small.
int srv_change_format(const struct srv_change *c, char *buf, size_t size);

#endif
