// store.c - durable layers and shared arrays in a data dir: an append-only log of changes with
// group commit, compacted into one file per layer / shared array (temporary file, fsync,
// rename, fsync of the folder); at start the files load, then the log on top.
#define _GNU_SOURCE // pwritev
#include "server/store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "core/layer.h"
#include "core/registry.h"
#include "server/store_log.h"

#define LAYER_EXT          ".ndl"
#define SHARED_EXT         ".nds"
#define LOG_FILE           "CURRENT.ndlog"
#define LOCK_FILE          "LOCK"
#define LOG_COMPACT_AT     (64u << 20) // compaction once the log holds this many bytes
#define LOG_RESERVE        (4u << 10)  // kept zeroed past the end for removals on a full disk
#define TMPFS_MAGIC_NUMBER 0x01021994  // linux/magic.h's TMPFS_MAGIC
#define LOG_CHUNK          (4u << 20)  // the log's space is zeroed ahead in steps of this size

// Where the whole copy a partial one (SRV_REC_OP_PARTIAL) continues is: the layer's file, a
// record earlier in this log, or nowhere (the name was removed earlier in this log, so its file
// is another layer's).
enum base_at { BASE_FILE, BASE_LOG, BASE_NONE };

// A name's latest record in the current log and, when that is a partial copy of a layer, where
// its base is.
struct log_entry {
    struct srv_rec last;
    enum base_at base;
    uint64_t base_offset, base_len; // BASE_LOG: the base record's payload
};

// The log's bytes when they are already in memory (at start), else {NULL, 0}: records are
// then read back from the file.
struct log_copy {
    const unsigned char *data;
    uint64_t len;
};

// The entry of each name in the current log (what compaction writes out), open addressing on
// (kind, name); cap a power of two, at most half full; a slot whose name is "" is free.
struct log_index {
    struct log_entry *slots;
    size_t cap, used;
};

struct srv_store {
    char layers[4096], shared[4096], logpath[4300]; // the two folders, the log
    int layers_fd, shared_fd;                       // open for fsync after a rename or unlink
    int lock_fd; // DIR/LOCK, flock()ed while open: one process per data dir (lock_dir)
    const struct srv_logger *log;
    struct nd_persist_hooks hooks;
    // The log. mu guards everything below; fdatasync runs outside it (one thread at a time,
    // syncing), so appends go on during a sync and the next sync covers them all.
    pthread_mutex_t mu;
    // Waiters for the sync in flight sleep on synced_cv[sync_gen & 1], later ones on the other:
    // the end of a sync wakes only those it covers, and one of the next (to start that sync).
    // One condition variable for all woke every waiter at every sync, most of them to sleep
    // again: context switches a CPU-bound server pays for (seen: 2.7 steps a sync, 8 waiters).
    pthread_cond_t synced_cv[2];
    uint64_t sync_gen, sync_target; // the sync in flight (or the last one): its number, its end
    // Appends go to memory, pending (the log's bytes from written to end); the syncing thread
    // writes them out before its fdatasync, outside mu. An append under its layer's lock is then
    // a copy: the pwritev it was cost 7.5 us a step under the lock, and one write a sync
    // replaces one a step. The space they go to is zeroed ahead (log_reserve, under mu), so
    // writing it cannot run out of room.
    struct nd_buf pending;
    uint64_t written;
    bool extending; // a syncing thread zeroes the next chunk ahead, outside mu (extend_ahead)
    int log_fd;
    uint64_t base;      // bytes of the logs compacted before: a ticket is base + an offset
    uint64_t end;       // bytes in the current log
    uint64_t allocated; // the file's size: zeros from end on, flushed
    uint64_t synced;    // every ticket up to this is durable
    bool syncing;
    uint64_t zero_ahead;     // LOG_CHUNK, or 0 on tmpfs (where a sync costs nothing anyway)
    uint64_t appends, syncs; // logged at the end: how well group commit worked
    enum nd_status failed;   // ND_STATUS_OK, or why every later change is refused
    char failure[300];
    struct log_index index;
};

// ---- writing ----

// ENOSPC and EDQUOT are the disk being full (507); anything else is an I/O failure (500).
static enum nd_status io_error(struct nd_error *err, const char *what, const char *path) {
    int e = errno;
    enum nd_status st = e == ENOSPC || e == EDQUOT ? ND_STATUS_STORAGE : ND_STATUS_INTERNAL;
    return nd_error_set(err, st, "cannot %s %s: %s", what, path, strerror(e));
}

static int pwritev_all(int fd, struct iovec *iov, int cnt, uint64_t off);

// A whole new file's bytes (the callers' files are fresh: offset 0).
static int write_all(int fd, const unsigned char *p, size_t n) {
    struct iovec iov = {(void *)p, n};
    return pwritev_all(fd, &iov, n ? 1 : 0, 0);
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

// ---- the log's index: the latest record per name ----

static uint64_t name_hash(unsigned char kind, const char *name) {
    uint64_t h = 1469598103934665603ull ^ kind; // FNV-1a
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        h = (h ^ *p) * 1099511628211ull;
    return h;
}

static struct log_entry *index_slot(struct log_index *ix, unsigned char kind, const char *name) {
    size_t i = (size_t)name_hash(kind, name) & (ix->cap - 1);
    while (ix->slots[i].last.name[0] &&
           (ix->slots[i].last.kind != kind || strcmp(ix->slots[i].last.name, name)))
        i = (i + 1) & (ix->cap - 1);
    return &ix->slots[i];
}

static const struct log_entry *index_find(const struct log_index *ix, unsigned char kind,
                                          const char *name) {
    if (!ix->cap)
        return NULL;
    const struct log_entry *x = index_slot((struct log_index *)ix, kind, name);
    return x->last.name[0] ? x : NULL;
}

static bool index_grow(struct log_index *ix) {
    size_t cap = ix->cap ? ix->cap * 2 : 64;
    struct log_entry *slots = calloc(cap, sizeof *slots);
    if (!slots)
        return false;
    struct log_index bigger = {slots, cap, ix->used};
    for (size_t i = 0; i < ix->cap; i++)
        if (ix->slots[i].last.name[0])
            *index_slot(&bigger, ix->slots[i].last.kind, ix->slots[i].last.name) = ix->slots[i];
    free(ix->slots);
    *ix = bigger;
    return true;
}

// Records a name's latest record; false when out of memory. A partial copy's base: the record
// before it when that was whole, the same base when it was partial too (each partial copy holds
// every record since its layer's last whole copy), none after a removal (the file is the
// removed layer's: its replay then stands alone and says so), else the file (a name new to this
// log).
static bool index_put(struct log_index *ix, const struct srv_rec *e) {
    if ((ix->used + 1) * 2 > ix->cap && !index_grow(ix))
        return false;
    struct log_entry *slot = index_slot(ix, e->kind, e->name);
    bool known = slot->last.name[0] != '\0';
    ix->used += known ? 0 : 1;
    if (e->op != SRV_REC_OP_PARTIAL || !known)
        slot->base = BASE_FILE;
    else if (slot->last.op == SRV_REC_OP_REMOVE)
        slot->base = BASE_NONE;
    else if (slot->last.op == SRV_REC_OP_PUT)
        *slot = (struct log_entry){
            .base = BASE_LOG, .base_offset = slot->last.offset, .base_len = slot->last.len};
    slot->last = *e;
    return true;
}

static void index_clear(struct log_index *ix) {
    if (ix->cap)
        memset(ix->slots, 0, ix->cap * sizeof *ix->slots);
    ix->used = 0;
}

// ---- the log: appends, group commit, compaction (all with s->mu held but the sync) ----

static enum nd_status failed_error(struct srv_store *s, struct nd_error *err) {
    return nd_error_set(err, s->failed,
                        "the data dir cannot be written since an earlier "
                        "failure (%s); changes are refused until normd restarts",
                        s->failure);
}

// Every waiter, whichever sync it waits for (mu held).
static void wake_all(struct srv_store *s) {
    pthread_cond_broadcast(&s->synced_cv[0]);
    pthread_cond_broadcast(&s->synced_cv[1]);
}

// After this every change is refused: the log may hold changes that are not durable and that
// later changes built on (persist.h); a restart reloads what is on disk.
static void fail_store(struct srv_store *s, const char *what) {
    int e = errno;
    if (s->failed != ND_STATUS_OK)
        return;
    s->failed = e == ENOSPC || e == EDQUOT ? ND_STATUS_STORAGE : ND_STATUS_INTERNAL;
    snprintf(s->failure, sizeof s->failure, "cannot %s %.200s: %s", what, s->logpath, strerror(e));
    srv_log(s->log, SRV_LOG_ERROR, "--data-dir: %s; refusing changes until a restart", s->failure);
    wake_all(s);
}

// Zeros written past the end of the log, in steps of LOG_CHUNK, and flushed: an append then
// overwrites blocks the file already has, so its fdatasync flushes data only, not the file's
// size and block map (several times faster: a sync per group of changes is what limits them).
// A put needs its bytes and the reserve there first: on a full disk it fails here, whole,
// while removals still find room in the reserve. Replay stops at the zeros (srv_rec_parse).
// Under a file-size limit (EFBIG) the reserve is not insisted on: removals do not help there.
static const unsigned char zeros[64 << 10];

static int log_reserve(struct srv_store *s, uint64_t n, uint64_t ahead) {
    uint64_t need = s->end + n + LOG_RESERVE;
    // An extension in flight writes zeros from allocated on, outside mu. Zeros written here,
    // then this record over them, would lie in its way: a sync writing the record before the
    // extension's pwrite reached it would see it zeroed, acknowledged. Only a put larger than
    // the room left (under 2 MiB once an extension starts) waits, a few ms.
    while (need > s->allocated && s->extending)
        pthread_cond_wait(&s->synced_cv[s->sync_gen & 1], &s->mu);
    if (need <= s->allocated)
        return 0;
    // Zeros start past the last record: a removal appended with no zeros ahead (the first change
    // after a compaction) lies beyond allocated, and zeroing from there erased it and, as
    // replay stops at zeros, every record after it.
    uint64_t want = need + ahead, at = s->allocated > s->end ? s->allocated : s->end;
    while (at < want) {
        size_t part = want - at < sizeof zeros ? (size_t)(want - at) : sizeof zeros;
        ssize_t w = pwrite(s->log_fd, zeros, part, (off_t)at);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0 && at >= need)
            break; // short of a whole chunk, still room for this record (a nearly full disk)
        if (w < 0 && errno == EFBIG && at >= s->end + n)
            break;
        if (w <= 0) {
            if (w == 0)
                errno = EIO;
            s->allocated = at; // zeros as far as they went: the end of the log stays clear
            return -1;
        }
        at += (uint64_t)w;
    }
    if (fdatasync(s->log_fd) != 0)
        return -1; // not failed yet: nothing appended relies on these zeros
    s->allocated = at;
    return 0;
}

// The reserve alone, after a start or a compaction left no zeros past the log's end (mu held):
// until the next put made it, a removal on a full disk found no room and failed the store. Its
// 4 KiB only: a log with no change since then is 4 KiB of zeros.
static void reserve_for_removals(struct srv_store *s) {
    if (s->failed == ND_STATUS_OK && log_reserve(s, 0, 0) != 0)
        srv_log(s->log, SRV_LOG_WARN,
                "--data-dir: no room for %s's reserve (%s): a removal "
                "may fail until there is",
                s->logpath, strerror(errno));
}

static int pwritev_all(int fd, struct iovec *iov, int cnt, uint64_t off) {
    while (cnt > 0) {
        ssize_t w = pwritev(fd, iov, cnt, (off_t)off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            if (w == 0)
                errno = EIO;
            return -1;
        }
        off += (uint64_t)w;
        size_t done = (size_t)w;
        for (; cnt > 0 && done >= iov->iov_len; iov++, cnt--)
            done -= iov->iov_len;
        if (cnt > 0) { // cut short inside this part
            iov->iov_base = (unsigned char *)iov->iov_base + done;
            iov->iov_len -= done;
        }
    }
    return 0;
}

static enum nd_status compact_locked(struct srv_store *s, const struct log_copy *mem,
                                     struct nd_error *err);

// One record at the end of the log (in pending, for the next sync to write); on failure
// nothing is appended. *eno: the errno of a failure.
static enum nd_status log_write(struct srv_store *s, unsigned char kind, unsigned char op,
                                const char *name, const void *bytes, uint64_t len, int *eno,
                                struct nd_error *err) {
    unsigned char hdr[SRV_REC_HEADER];
    srv_rec_header(hdr, kind, op, name, bytes, len);
    size_t nlen = strlen(name);
    uint64_t n = SRV_REC_HEADER + nlen + len;
    if (op != SRV_REC_OP_REMOVE && log_reserve(s, n, s->zero_ahead) != 0) {
        *eno = errno;
        return io_error(err, "make room in", s->logpath);
    }
    size_t had = s->pending.len;
    nd_buf_append(&s->pending, hdr, SRV_REC_HEADER);
    nd_buf_append(&s->pending, name, nlen);
    if (!nd_buf_append(&s->pending, bytes, (size_t)len)) {
        s->pending.len = had;
        s->pending.failed = 0;
        *eno = ENOMEM;
        return nd_error_set(err, ND_STATUS_OUT_OF_MEMORY, "out of memory appending to %s",
                            s->logpath);
    }
    struct srv_rec e = {
        .kind = kind, .op = op, .offset = s->end + SRV_REC_HEADER + nlen, .len = len};
    snprintf(e.name, sizeof e.name, "%s", name);
    s->end += n;
    s->appends++;
    if (!index_put(&s->index, &e)) {
        errno = ENOMEM;
        fail_store(s, "index a record of"); // compaction would miss it
    }
    return ND_STATUS_OK;
}

// Appends a record and gives its ticket. A put that finds no room (a full disk, a file-size
// limit) compacts first and tries once more: the log's superseded records are what takes room.
static enum nd_status log_append(struct srv_store *s, unsigned char kind, unsigned char op,
                                 const struct nd_store_put *put, uint64_t *ticket,
                                 struct nd_error *err) {
    enum nd_status st = check_name(put->name, err);
    if (st != ND_STATUS_OK)
        return st;
    pthread_mutex_lock(&s->mu);
    if (s->failed != ND_STATUS_OK) {
        st = failed_error(s, err);
        pthread_mutex_unlock(&s->mu);
        return st;
    }
    uint64_t len = op != SRV_REC_OP_REMOVE ? put->len : 0;
    int eno = 0;
    st = log_write(s, kind, op, put->name, put->bytes, len, &eno, err);
    if (st != ND_STATUS_OK && (eno == ENOSPC || eno == EDQUOT || eno == EFBIG) &&
        s->failed == ND_STATUS_OK && s->end > 0 && compact_locked(s, NULL, NULL) == ND_STATUS_OK) {
        nd_error_clear(err);
        st = log_write(s, kind, op, put->name, put->bytes, len, &eno, err);
    }
    if (st == ND_STATUS_OK) {
        *ticket = s->base + s->end;
        // A failure keeps the log, retried at the next append.
        if (s->end >= LOG_COMPACT_AT && compact_locked(s, NULL, NULL) == ND_STATUS_OK)
            reserve_for_removals(s);
    }
    pthread_mutex_unlock(&s->mu);
    return st;
}

// Writes out the pending bytes (mu held: a compaction, which then reads them back).
static int flush_pending(struct srv_store *s) {
    struct iovec iov = {s->pending.data, s->pending.len};
    if (pwritev_all(s->log_fd, &iov, iov.iov_len ? 1 : 0, s->written) != 0)
        return -1;
    s->written += s->pending.len;
    s->pending.len = 0;
    return 0;
}

// One sync of everything appended so far: the pending bytes are taken (appends start a new
// buffer), written and flushed outside mu (held on entry and return); then the waiters it
// covers are woken, and one waiting for a later ticket, to sync next.
static void sync_log(struct srv_store *s) {
    s->syncing = true;
    uint64_t gen = ++s->sync_gen, target = s->base + s->end, at = s->written;
    s->sync_target = target;
    struct nd_buf out = s->pending;
    s->pending = (struct nd_buf){0};
    int fd = s->log_fd;
    pthread_mutex_unlock(&s->mu);
    struct iovec iov = {out.data, out.len};
    int rc = pwritev_all(fd, &iov, out.len ? 1 : 0, at) != 0 ? -1 : fdatasync(fd);
    pthread_mutex_lock(&s->mu);
    s->syncing = false;
    s->syncs++;
    s->written = at + out.len;
    if (!s->pending.data) { // the buffer serves again (nothing was appended meanwhile)
        out.len = 0;
        s->pending = out;
    } else {
        nd_buf_deinit(&out);
    }
    if (rc == 0)
        s->synced = target > s->synced ? target : s->synced;
    else
        fail_store(s, "write or flush"); // its pages may be dropped: nothing later can be trusted
    pthread_cond_broadcast(&s->synced_cv[gen & 1]);
    pthread_cond_signal(&s->synced_cv[(gen + 1) & 1]); // (fail_store woke them all)
}

// Zeroes the next chunk of the log's space once half of what is left is used, in the thread
// that just synced (mu held on entry and return, let go meanwhile): log_reserve did it under mu
// while an append held its layer's lock, and every step stopped for the 5-8 ms it took (4% of
// the time at 16 connections). log_reserve still does it when this falls behind.
static void extend_ahead(struct srv_store *s) {
    uint64_t from = s->allocated, to = from + s->zero_ahead;
    if (!s->zero_ahead || s->extending || s->failed != ND_STATUS_OK || from < s->end ||
        from - s->end >= s->zero_ahead / 2)
        return;
    s->extending = true;
    int fd = s->log_fd;
    pthread_mutex_unlock(&s->mu);
    uint64_t at = from;
    while (at < to) {
        size_t part = to - at < sizeof zeros ? (size_t)(to - at) : sizeof zeros;
        ssize_t w = pwrite(fd, zeros, part, (off_t)at);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break; // log_reserve meets it again, and says why
        at += (uint64_t)w;
    }
    bool ok = at == to && fdatasync(fd) == 0;
    pthread_mutex_lock(&s->mu);
    s->extending = false;
    if (ok && s->allocated == from) // else log_reserve went on meanwhile, or a compaction
        s->allocated = to;
    wake_all(s); // a compaction waits for this, and a put that found no room (log_reserve)
}

// Group commit: the first waiter whose ticket is not durable syncs everything appended so far;
// waiters arriving meanwhile wait for the next sync, which covers them all.
static enum nd_status log_wait(void *ctx, uint64_t ticket, struct nd_error *err) {
    struct srv_store *s = ctx;
    pthread_mutex_lock(&s->mu);
    while (s->synced < ticket && s->failed == ND_STATUS_OK) {
        if (!s->syncing) {
            sync_log(s);
            extend_ahead(s);
            continue;
        }
        uint64_t gen = ticket <= s->sync_target ? s->sync_gen : s->sync_gen + 1;
        pthread_cond_wait(&s->synced_cv[gen & 1], &s->mu);
    }
    enum nd_status st = s->synced >= ticket ? ND_STATUS_OK : failed_error(s, err);
    pthread_mutex_unlock(&s->mu);
    return st;
}

// len bytes of the log from off into *out (empty); ND_STATUS_OK or why not.
static enum nd_status read_back(struct srv_store *s, uint64_t off, uint64_t len, struct nd_buf *out,
                                struct nd_error *err) {
    out->data = malloc(len ? (size_t)len : 1);
    if (!out->data)
        return nd_error_set(err, ND_STATUS_INTERNAL, "out of memory reading %s", s->logpath);
    out->cap = (size_t)len;
    while (out->len < len) {
        ssize_t r = pread(s->log_fd, out->data + out->len, len - out->len, (off_t)(off + out->len));
        if (r < 0 && errno == EINTR)
            continue;
        if (r == 0)
            errno = EIO; // the file is shorter than its index says
        if (r <= 0)
            return io_error(err, "read back", s->logpath);
        out->len += (size_t)r;
    }
    return ND_STATUS_OK;
}

// A record's len bytes at off: from mem when it holds them, else from the file.
static enum nd_status record_bytes(struct srv_store *s, const struct log_copy *mem, uint64_t off,
                                   uint64_t len, struct nd_buf *out, struct nd_error *err) {
    if (!mem || !mem->data || off > mem->len || len > mem->len - off)
        return read_back(s, off, len, out, err);
    if (!nd_buf_append(out, mem->data + off, (size_t)len))
        return nd_error_set(err, ND_STATUS_INTERNAL, "out of memory reading %s", s->logpath);
    return ND_STATUS_OK;
}

static unsigned char *read_file(int dir_fd, const char *file, size_t *len);

// A partial copy's whole bytes: its base (the whole record it continues, or the layer's file)
// merged with it. When the base cannot be read or does not fit (a file damaged or removed by
// hand), the partial copy stands alone, logged: its state is whole, only the history's older
// records are missing.
static enum nd_status rebuild(struct srv_store *s, const struct log_copy *mem,
                              const struct log_entry *x, struct nd_buf *out, struct nd_error *err) {
    struct nd_buf partial = {0}, base = {0};
    enum nd_status st = record_bytes(s, mem, x->last.offset, x->last.len, &partial, err);
    struct nd_error why;
    nd_error_clear(&why);
    enum nd_status got = ND_STATUS_INVALID_VALUE;
    if (st == ND_STATUS_OK && x->base == BASE_NONE)
        got = nd_error_set(&why, ND_STATUS_INVALID_VALUE, "it was removed earlier in the log");
    else if (st == ND_STATUS_OK && x->base == BASE_LOG)
        got = record_bytes(s, mem, x->base_offset, x->base_len, &base, &why);
    else if (st == ND_STATUS_OK) {
        char file[ND_NAME_MAX + sizeof LAYER_EXT];
        snprintf(file, sizeof file, "%s%s", x->last.name, LAYER_EXT);
        base.data = read_file(s->layers_fd, file, &base.len);
        got = base.data ? ND_STATUS_OK
                        : nd_error_set(&why, ND_STATUS_INVALID_VALUE, "cannot read %s/%s: %s",
                                       s->layers, file, strerror(errno));
    }
    if (st == ND_STATUS_OK && got == ND_STATUS_OK)
        got = nd_persist_merge(base.data, base.len, partial.data, partial.len, out, &why);
    if (st == ND_STATUS_OK && got != ND_STATUS_OK) {
        srv_log(s->log, SRV_LOG_ERROR,
                "layer %s: the log's train-step copy cannot continue its last whole copy (%s); "
                "its state is kept with the history's newest records only",
                x->last.name, why.msg);
        nd_buf_deinit(out);
        st = nd_buf_append(out, partial.data, partial.len)
                 ? ND_STATUS_OK
                 : nd_error_set(err, ND_STATUS_INTERNAL, "out of memory rebuilding %s",
                                x->last.name);
    }
    nd_buf_deinit(&partial);
    nd_buf_deinit(&base);
    return st;
}

// The bytes of the name's state the log holds: its latest record's payload, rebuilt when that
// is a partial copy. *out: empty.
static enum nd_status entry_bytes(struct srv_store *s, const struct log_copy *mem,
                                  const struct log_entry *x, struct nd_buf *out,
                                  struct nd_error *err) {
    if (x->last.op == SRV_REC_OP_PARTIAL)
        return rebuild(s, mem, x, out, err);
    return record_bytes(s, mem, x->last.offset, x->last.len, out, err);
}

// Writes the name's state in the log as its file (or removes the file).
static enum nd_status compact_entry(struct srv_store *s, const struct log_copy *mem,
                                    const struct log_entry *x, struct nd_error *err) {
    const struct srv_rec *e = &x->last;
    bool layer = e->kind == SRV_REC_KIND_LAYER;
    const char *dir = layer ? s->layers : s->shared;
    int dir_fd = layer ? s->layers_fd : s->shared_fd;
    const char *ext = layer ? LAYER_EXT : SHARED_EXT;
    if (e->op == SRV_REC_OP_REMOVE)
        return remove_file(dir, dir_fd, e->name, ext, err);
    struct nd_buf bytes = {0};
    enum nd_status st = entry_bytes(s, mem, x, &bytes, err);
    if (st == ND_STATUS_OK)
        st = write_atomically(dir, dir_fd, e->name, ext, bytes.data, bytes.len, err);
    nd_buf_deinit(&bytes);
    return st;
}

// Writes every name's latest state in the log as its file (temporary file, fsync, rename, fsync
// of the folder), then empties the log: a crash before that replays the log over files that
// already hold it, which changes nothing. Appends wait meanwhile (mu); a sync running outside
// mu only flushes a log whose records are in files by then.
static enum nd_status compact_locked(struct srv_store *s, const struct log_copy *mem,
                                     struct nd_error *err) {
    if (s->end == 0)
        return ND_STATUS_OK;
    // A sync's bytes must be in the file before they are read back or cut off, and zeros being
    // written ahead must not land after the cut.
    while (s->syncing || s->extending)
        pthread_cond_wait(&s->synced_cv[s->sync_gen & 1], &s->mu);
    if (flush_pending(s) != 0) {
        fail_store(s, "write");
        return failed_error(s, err);
    }
    enum nd_status st = ND_STATUS_OK;
    struct nd_error why;
    nd_error_clear(&why);
    size_t written = 0;
    for (size_t i = 0; st == ND_STATUS_OK && i < s->index.cap; i++)
        if (s->index.slots[i].last.name[0] &&
            (st = compact_entry(s, mem, &s->index.slots[i], &why)) == ND_STATUS_OK)
            written++;
    if (st != ND_STATUS_OK) {
        srv_log(s->log, SRV_LOG_WARN, "--data-dir: compaction of %s failed, the log stays: %s",
                s->logpath, why.msg);
        return nd_error_set(err, st, "%s", why.msg);
    }
    if (ftruncate(s->log_fd, 0) != 0)
        return io_error(err, "empty", s->logpath);
    if (fsync(s->log_fd) != 0) {
        fail_store(s, "flush the emptied");
        return failed_error(s, err);
    }
    srv_log(s->log, SRV_LOG_DEBUG, "--data-dir: compacted %llu bytes of log into %zu files",
            (unsigned long long)s->end, written);
    s->base += s->end;
    s->synced = s->base > s->synced ? s->base : s->synced; // everything is in files now
    wake_all(s); // waiters of a later sync may be covered now, with no sync to wake them
    s->end = s->allocated = s->written = 0;
    index_clear(&s->index);
    return ND_STATUS_OK;
}

// ---- the engine's hooks ----
//
// One process owns the folder, so the versions a shared store compares (put->expect) are
// always this process's own: nothing to check. save_* / remove_* are append_* then wait.

static enum nd_status append_layer(void *ctx, const struct nd_store_put *put, uint64_t *ticket,
                                   struct nd_error *err) {
    unsigned char op = put->partial ? SRV_REC_OP_PARTIAL : SRV_REC_OP_PUT;
    return log_append(ctx, SRV_REC_KIND_LAYER, op, put, ticket, err);
}

static enum nd_status append_shared(void *ctx, const struct nd_store_put *put, uint64_t *ticket,
                                    struct nd_error *err) {
    return log_append(ctx, SRV_REC_KIND_SHARED, SRV_REC_OP_PUT, put, ticket, err);
}

static enum nd_status durably(void *ctx, unsigned char kind, unsigned char op,
                              const struct nd_store_put *put, struct nd_error *err) {
    uint64_t ticket = 0;
    enum nd_status st = log_append(ctx, kind, op, put, &ticket, err);
    return st == ND_STATUS_OK ? log_wait(ctx, ticket, err) : st;
}

static enum nd_status save_layer(void *ctx, const struct nd_store_put *put, struct nd_error *err) {
    return durably(ctx, SRV_REC_KIND_LAYER, SRV_REC_OP_PUT, put, err);
}

static enum nd_status remove_layer(void *ctx, const struct nd_store_put *put,
                                   struct nd_error *err) {
    return durably(ctx, SRV_REC_KIND_LAYER, SRV_REC_OP_REMOVE, put, err);
}

static enum nd_status save_shared(void *ctx, const struct nd_store_put *put, struct nd_error *err) {
    return durably(ctx, SRV_REC_KIND_SHARED, SRV_REC_OP_PUT, put, err);
}

static enum nd_status remove_shared(void *ctx, const struct nd_store_put *put,
                                    struct nd_error *err) {
    return durably(ctx, SRV_REC_KIND_SHARED, SRV_REC_OP_REMOVE, put, err);
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

// Takes DIR/LOCK (flock, exclusive, not waiting) and writes this process's id in it. A second
// normd on the same data dir would replay and compact the log the first one appends to, and
// empty it under the first one's feet: acknowledged changes lost. The kernel lets go of the
// lock when the process ends, however it ends (kill -9 too), so a stale LOCK file blocks
// nothing.
static int lock_dir(struct srv_store *s, const char *dir, int dfd, char *err, size_t errlen) {
    s->lock_fd = openat(dfd, LOCK_FILE, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (s->lock_fd < 0) {
        snprintf(err, errlen, "normd: --data-dir: cannot open %s/%s: %s", dir, LOCK_FILE,
                 strerror(errno));
        return -1;
    }
    if (flock(s->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        char pid[24] = "";
        ssize_t n = pread(s->lock_fd, pid, sizeof pid - 1, 0);
        pid[n > 0 ? n : 0] = '\0';
        pid[strspn(pid, "0123456789")] = '\0'; // digits only: the file is anyone's to edit
        if (e == EWOULDBLOCK)
            snprintf(err, errlen,
                     "normd: --data-dir %s is in use by another normd (process %s, holding "
                     "%s/%s): one process per data dir",
                     dir, pid[0] ? pid : "unknown", dir, LOCK_FILE);
        else
            snprintf(err, errlen, "normd: --data-dir: cannot lock %s/%s: %s", dir, LOCK_FILE,
                     strerror(e));
        return -1;
    }
    char pid[24];
    int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(s->lock_fd, 0) != 0 || pwrite(s->lock_fd, pid, (size_t)n, 0) != n) {
        snprintf(err, errlen, "normd: --data-dir: cannot write %s/%s: %s", dir, LOCK_FILE,
                 strerror(errno));
        return -1;
    }
    return 0;
}

int srv_store_open(struct srv_store **out, const char *dir, const struct srv_logger *log, char *err,
                   size_t errlen) {
    struct srv_store *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "normd: out of memory");
        return -1;
    }
    s->layers_fd = s->shared_fd = s->log_fd = s->lock_fd = -1;
    s->log = log;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->synced_cv[0], NULL);
    pthread_cond_init(&s->synced_cv[1], NULL);
    char logdir[4100];
    snprintf(s->layers, sizeof s->layers, "%s/layers", dir);
    snprintf(s->shared, sizeof s->shared, "%s/shared", dir);
    snprintf(logdir, sizeof logdir, "%.4090s/log", dir);
    snprintf(s->logpath, sizeof s->logpath, "%s/%s", logdir, LOG_FILE);
    int dfd = -1, log_dfd = -1;
    if (open_folder(dir, &dfd, err, errlen) != 0 || lock_dir(s, dir, dfd, err, errlen) != 0 ||
        open_folder(s->layers, &s->layers_fd, err, errlen) != 0 ||
        open_folder(s->shared, &s->shared_fd, err, errlen) != 0 ||
        open_folder(logdir, &log_dfd, err, errlen) != 0) {
        if (dfd >= 0)
            close(dfd);
        if (log_dfd >= 0)
            close(log_dfd);
        srv_store_free(s);
        return -1;
    }
    s->log_fd = open(s->logpath, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (s->log_fd < 0) {
        snprintf(err, errlen, "normd: --data-dir: cannot open %s: %s", s->logpath, strerror(errno));
        close(dfd);
        close(log_dfd);
        srv_store_free(s);
        return -1;
    }
    struct statfs fs;
    s->zero_ahead = fstatfs(s->log_fd, &fs) == 0 && fs.f_type == TMPFS_MAGIC_NUMBER ? 0 : LOG_CHUNK;
    fsync(log_dfd); // the log file
    close(log_dfd);
    fsync(dfd); // the three folders themselves
    close(dfd);
    s->hooks = (struct nd_persist_hooks){.ctx = s,
                                         .save_layer = save_layer,
                                         .remove_layer = remove_layer,
                                         .save_shared = save_shared,
                                         .remove_shared = remove_shared,
                                         .append_layer = append_layer,
                                         .append_shared = append_shared,
                                         .wait = log_wait,
                                         .partial_ok = true};
    *out = s;
    return 0;
}

void srv_store_free(struct srv_store *store) {
    if (!store)
        return;
    if (store->log_fd >= 0) {
        pthread_mutex_lock(&store->mu);
        if (store->failed == ND_STATUS_OK)
            compact_locked(store, NULL, NULL); // a clean stop leaves files only
        srv_log(store->log, SRV_LOG_INFO,
                "--data-dir: %llu changes appended to the log, "
                "%llu syncs",
                (unsigned long long)store->appends, (unsigned long long)store->syncs);
        pthread_mutex_unlock(&store->mu);
        close(store->log_fd);
    }
    if (store->layers_fd >= 0)
        close(store->layers_fd);
    if (store->shared_fd >= 0)
        close(store->shared_fd);
    if (store->lock_fd >= 0)
        close(store->lock_fd); // last: the compaction above still held the data dir
    pthread_mutex_destroy(&store->mu);
    pthread_cond_destroy(&store->synced_cv[0]);
    pthread_cond_destroy(&store->synced_cv[1]);
    nd_buf_deinit(&store->pending);
    free(store->index.slots);
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

// Loads each "<valid name><ext>" of a folder but those the log changed (kind); logs and skips
// what fails.
static int load_folder(struct srv_store *s, const char *dir, int dir_fd, const char *ext,
                       load_fn load, unsigned char kind, struct nd_registry *reg) {
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
        if (!nd_name_valid(name) || index_find(&s->index, kind, name))
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

// Reads the whole log (at most the compaction size and one record) into *out (empty).
static enum nd_status read_log(struct srv_store *s, struct nd_buf *out, struct nd_error *err) {
    struct stat st;
    if (fstat(s->log_fd, &st) != 0)
        return io_error(err, "stat", s->logpath);
    return read_back(s, 0, (uint64_t)st.st_size, out, err);
}

// Keeps a copy of a damaged log next to it for inspection before compaction empties it.
static void keep_damaged(struct srv_store *s, const unsigned char *buf, uint64_t len) {
    char path[4320];
    snprintf(path, sizeof path, "%s.damaged", s->logpath);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || write_all(fd, buf, len) != 0 || fsync(fd) != 0)
        srv_log(s->log, SRV_LOG_ERROR, "cannot keep a copy of the damaged log in %s: %s", path,
                strerror(errno));
    else
        srv_log(s->log, SRV_LOG_ERROR, "a copy of the damaged log is in %s", path);
    if (fd >= 0)
        close(fd);
}

// Indexes the log's records, last one per name winning, up to the first bad one: a torn record
// at the end (a crash during an append, never acknowledged) is dropped; a damaged one in the
// middle stops the replay there, logged, and the log is copied aside. Returns the records.
static size_t replay_index(struct srv_store *s, const unsigned char *buf, uint64_t len) {
    uint64_t off = 0, next = 0;
    size_t records = 0;
    struct srv_rec e;
    while (off < len && srv_rec_parse(buf, len, off, &e, &next)) {
        if (!index_put(&s->index, &e)) {
            srv_log(s->log, SRV_LOG_ERROR, "out of memory replaying %s", s->logpath);
            break;
        }
        records++;
        off = next;
    }
    enum srv_rec_tail tail = srv_rec_tail(buf, len, off, NULL);
    if (tail == SRV_REC_TAIL_TORN)
        srv_log(s->log, SRV_LOG_WARN,
                "%s: dropping a torn record at its end (offset %llu): a "
                "write a crash cut short, never acknowledged",
                s->logpath, (unsigned long long)off);
    else if (tail == SRV_REC_TAIL_DAMAGED) {
        srv_log(s->log, SRV_LOG_ERROR,
                "%s: a damaged record at offset %llu; replay stops "
                "there, the %llu bytes from it on are not loaded",
                s->logpath, (unsigned long long)off, (unsigned long long)(len - off));
        keep_damaged(s, buf, len);
    }
    s->end = off;
    return records;
}

// Loads the log's state of each name of a kind (removals: nothing to load).
static int load_logged(struct srv_store *s, const struct log_copy *mem, unsigned char kind,
                       struct nd_registry *reg) {
    load_fn load = kind == SRV_REC_KIND_LAYER ? nd_registry_load_layer : nd_registry_load_shared;
    int loaded = 0;
    for (size_t i = 0; i < s->index.cap; i++) {
        const struct srv_rec *e = &s->index.slots[i].last;
        if (!e->name[0] || e->kind != kind || e->op == SRV_REC_OP_REMOVE)
            continue;
        struct nd_error err;
        nd_error_clear(&err);
        struct nd_buf bytes = {0};
        enum nd_status st = entry_bytes(s, mem, &s->index.slots[i], &bytes, &err);
        if (st == ND_STATUS_OK)
            st = load_named(reg, load, e->name, bytes.data, bytes.len, &err);
        nd_buf_deinit(&bytes);
        if (st == ND_STATUS_OK)
            loaded++;
        else
            srv_log(s->log, SRV_LOG_ERROR, "skipping the %s %s of %s: %s",
                    kind == SRV_REC_KIND_LAYER ? "layer" : "shared array", e->name, s->logpath,
                    err.msg);
    }
    return loaded;
}

int srv_store_load(struct srv_store *store, struct nd_registry *reg) {
    struct nd_buf buf = {0};
    struct nd_error err;
    nd_error_clear(&err);
    bool have_log = read_log(store, &buf, &err) == ND_STATUS_OK;
    struct log_copy log = {have_log ? buf.data : NULL, have_log ? buf.len : 0};
    size_t records = have_log ? replay_index(store, log.data, log.len) : 0;
    if (!have_log)
        srv_log(store->log, SRV_LOG_ERROR, "%s", err.msg);
    int shared = load_folder(store, store->shared, store->shared_fd, SHARED_EXT,
                             nd_registry_load_shared, SRV_REC_KIND_SHARED, reg);
    int layers = load_folder(store, store->layers, store->layers_fd, LAYER_EXT,
                             nd_registry_load_layer, SRV_REC_KIND_LAYER, reg);
    if (have_log) {
        shared += load_logged(store, &log, SRV_REC_KIND_SHARED, reg);
        layers += load_logged(store, &log, SRV_REC_KIND_LAYER, reg);
    }
    nd_registry_prune(reg, false); // in memory only: see nd_registry_prune
    srv_log(store->log, SRV_LOG_INFO, "%s: %zu changes replayed", store->logpath, records);
    srv_log(store->log, SRV_LOG_INFO, "loaded %d layers and %d shared arrays from disk", layers,
            shared);
    pthread_mutex_lock(&store->mu);
    if (store->end < log.len && ftruncate(store->log_fd, (off_t)store->end) != 0)
        fail_store(store, "cut the bad tail off"); // appends would follow it
    store->allocated = store->written = store->end;
    if (store->failed == ND_STATUS_OK)
        compact_locked(store, &log, NULL); // the files hold it all: the next start reads no log
    reserve_for_removals(store);
    pthread_mutex_unlock(&store->mu);
    nd_buf_deinit(&buf);
    return layers;
}
