// store.c - durable files for layers and shared arrays: temporary file, fsync, rename, fsync of
// the directory; loading them back at start.
#include "server/store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/layer.h"
#include "core/registry.h"

#define LAYER_EXT ".ndl"
#define SHARED_EXT ".nds"

struct srv_store {
    char layers[4096], shared[4096]; // the two folders
    int layers_fd, shared_fd;        // open for fsync after a rename or unlink
    const struct srv_logger *log;
    struct nd_persist_hooks hooks;
};

// ---- writing ----

// ENOSPC and EDQUOT are the disk being full (507); anything else is an I/O failure (500).
static enum nd_status io_error(struct nd_error *err, const char *what, const char *path) {
    int e = errno;
    enum nd_status st = e == ENOSPC || e == EDQUOT ? ND_STATUS_STORAGE : ND_STATUS_INTERNAL;
    return nd_error_set(err, st, "cannot %s %s: %s", what, path, strerror(e));
}

static int write_all(int fd, const unsigned char *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            if (w == 0)
                errno = EIO;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

// path + ".tmp", written and flushed, then renamed over path, then the directory flushed: the
// rename is atomic, and both fsyncs make it durable before the caller reports the change.
static enum nd_status write_atomically(const char *dir, int dir_fd, const char *name,
                                       const char *ext, const void *bytes, size_t len,
                                       struct nd_error *err) {
    char path[4200], tmp[4210];
    snprintf(path, sizeof path, "%s/%s%s", dir, name, ext);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return io_error(err, "create", tmp);
    if (write_all(fd, bytes, len) != 0 || fsync(fd) != 0) {
        enum nd_status st = io_error(err, "write", tmp);
        close(fd);
        unlink(tmp);
        return st;
    }
    if (close(fd) != 0 || rename(tmp, path) != 0) {
        enum nd_status st = io_error(err, "store", path);
        unlink(tmp);
        return st;
    }
    if (fsync(dir_fd) != 0)
        return io_error(err, "flush the folder of", path);
    return ND_STATUS_OK;
}

static enum nd_status remove_file(const char *dir, int dir_fd, const char *name, const char *ext,
                                  struct nd_error *err) {
    char path[4200];
    snprintf(path, sizeof path, "%s/%s%s", dir, name, ext);
    if (unlink(path) != 0 && errno != ENOENT)
        return io_error(err, "remove", path);
    if (fsync(dir_fd) != 0)
        return io_error(err, "flush the folder of", path);
    return ND_STATUS_OK;
}

// Names come from the engine, which accepts only ^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$: no '/',
// no leading '.', so a file name never leaves its folder. Checked again here all the same.
static enum nd_status check_name(const char *name, struct nd_error *err) {
    if (!nd_name_valid(name))
        return nd_error_set(err, ND_STATUS_INTERNAL, "refusing to store the name %.40s", name);
    return ND_STATUS_OK;
}

// One process owns the folder, so the versions a shared store compares (put->expect) are
// always this process's own: nothing to check.
static enum nd_status save_layer(void *ctx, const struct nd_store_put *put,
                                 struct nd_error *err) {
    struct srv_store *s = ctx;
    enum nd_status st = check_name(put->name, err);
    return st != ND_STATUS_OK ? st
                              : write_atomically(s->layers, s->layers_fd, put->name, LAYER_EXT,
                                                 put->bytes, put->len, err);
}

static enum nd_status remove_layer(void *ctx, const struct nd_store_put *put,
                                   struct nd_error *err) {
    struct srv_store *s = ctx;
    enum nd_status st = check_name(put->name, err);
    return st != ND_STATUS_OK ? st
                              : remove_file(s->layers, s->layers_fd, put->name, LAYER_EXT, err);
}

static enum nd_status save_shared(void *ctx, const struct nd_store_put *put,
                                  struct nd_error *err) {
    struct srv_store *s = ctx;
    enum nd_status st = check_name(put->name, err);
    return st != ND_STATUS_OK ? st
                              : write_atomically(s->shared, s->shared_fd, put->name, SHARED_EXT,
                                                 put->bytes, put->len, err);
}

static enum nd_status remove_shared(void *ctx, const struct nd_store_put *put,
                                    struct nd_error *err) {
    struct srv_store *s = ctx;
    enum nd_status st = check_name(put->name, err);
    return st != ND_STATUS_OK ? st
                              : remove_file(s->shared, s->shared_fd, put->name, SHARED_EXT, err);
}

// ---- opening ----

static int open_folder(const char *path, int *fd, char *err, size_t errlen) {
    if (mkdir(path, 0755) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "normd: --data-dir: cannot create %s: %s", path, strerror(errno));
        return -1;
    }
    *fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (*fd < 0 || access(path, W_OK) != 0) {
        snprintf(err, errlen, "normd: --data-dir: %s is not a writable folder: %s", path,
                 strerror(errno));
        return -1;
    }
    return 0;
}

int srv_store_open(struct srv_store **out, const char *dir, const struct srv_logger *log,
                   char *err, size_t errlen) {
    struct srv_store *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "normd: out of memory");
        return -1;
    }
    s->layers_fd = s->shared_fd = -1;
    s->log = log;
    snprintf(s->layers, sizeof s->layers, "%s/layers", dir);
    snprintf(s->shared, sizeof s->shared, "%s/shared", dir);
    int dfd = -1;
    if (open_folder(dir, &dfd, err, errlen) != 0 ||
        open_folder(s->layers, &s->layers_fd, err, errlen) != 0 ||
        open_folder(s->shared, &s->shared_fd, err, errlen) != 0) {
        if (dfd >= 0)
            close(dfd);
        srv_store_free(s);
        return -1;
    }
    fsync(dfd); // the two folders themselves
    close(dfd);
    s->hooks = (struct nd_persist_hooks){.ctx = s,
                                         .save_layer = save_layer,
                                         .remove_layer = remove_layer,
                                         .save_shared = save_shared,
                                         .remove_shared = remove_shared};
    *out = s;
    return 0;
}

void srv_store_free(struct srv_store *store) {
    if (!store)
        return;
    if (store->layers_fd >= 0)
        close(store->layers_fd);
    if (store->shared_fd >= 0)
        close(store->shared_fd);
    free(store);
}

const struct nd_persist_hooks *srv_store_hooks(struct srv_store *store) {
    return &store->hooks;
}

// ---- loading ----

// Reads a whole regular file through dir_fd (never following a link out of the folder).
static unsigned char *read_file(int dir_fd, const char *file, size_t *len) {
    int fd = openat(dir_fd, file, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    unsigned char *buf = malloc((size_t)st.st_size + 1);
    size_t got = 0;
    while (buf && got < (size_t)st.st_size) {
        ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);
        if (r <= 0 && !(r < 0 && errno == EINTR))
            break;
        got += r > 0 ? (size_t)r : 0;
    }
    close(fd);
    if (buf && got != (size_t)st.st_size) {
        free(buf);
        return NULL;
    }
    *len = got;
    return buf;
}

typedef enum nd_status (*load_fn)(struct nd_registry *reg, const void *bytes, size_t len,
                                  struct nd_error *err);

// Loads a file's bytes when they hold the object its name says: a copy ("a-backup.ndl" of
// layer a) must not stand in for the real file.
static enum nd_status load_named(struct nd_registry *reg, load_fn load, const char *name,
                                 const unsigned char *bytes, size_t len, struct nd_error *err) {
    char stored[ND_NAME_MAX + 1];
    bool shared = load == nd_registry_load_shared;
    enum nd_status st = nd_persist_stored_name(bytes, len, shared, stored, sizeof stored, err);
    if (st == ND_STATUS_OK && strcmp(stored, name) != 0)
        st = nd_error_set(err, ND_STATUS_INVALID_VALUE, "it holds %s, not %s", stored, name);
    return st == ND_STATUS_OK ? load(reg, bytes, len, err) : st;
}

// Loads each "<valid name><ext>" of a folder; logs and skips what fails.
static int load_folder(struct srv_store *s, const char *dir, int dir_fd, const char *ext,
                       load_fn load, struct nd_registry *reg) {
    DIR *d = opendir(dir);
    int loaded = 0;
    struct dirent *e;
    size_t elen = strlen(ext);
    while (d && (e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        char name[ND_NAME_MAX + 1];
        if (n <= elen || n - elen > ND_NAME_MAX || strcmp(e->d_name + n - elen, ext) != 0)
            continue;
        memcpy(name, e->d_name, n - elen);
        name[n - elen] = '\0';
        if (!nd_name_valid(name))
            continue;
        size_t len = 0;
        unsigned char *bytes = read_file(dir_fd, e->d_name, &len);
        struct nd_error err;
        nd_error_clear(&err);
        if (!bytes)
            nd_error_set(&err, ND_STATUS_INTERNAL, "cannot read it: %s", strerror(errno));
        else if (load_named(reg, load, name, bytes, len, &err) == ND_STATUS_OK)
            loaded++;
        if (err.code != ND_STATUS_OK)
            srv_log(s->log, SRV_LOG_ERROR, "skipping %s/%s: %s", dir, e->d_name, err.msg);
        free(bytes);
    }
    if (d)
        closedir(d);
    return loaded;
}

int srv_store_load(struct srv_store *store, struct nd_registry *reg) {
    int shared = load_folder(store, store->shared, store->shared_fd, SHARED_EXT,
                             nd_registry_load_shared, reg);
    int layers = load_folder(store, store->layers, store->layers_fd, LAYER_EXT,
                             nd_registry_load_layer, reg);
    nd_registry_prune(reg, false); // in memory only: see nd_registry_prune
    srv_log(store->log, SRV_LOG_INFO, "loaded %d layers and %d shared arrays from disk", layers,
            shared);
    return layers;
}
