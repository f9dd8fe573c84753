// persist.c - the change protocol (see persist.h and layer_impl.h): what a change records to
// undo, the saves through the hooks in order, the undo when a save fails, and the store locks
// the registry takes to remove or replace a stored copy. The bytes are the codec's (codec.h).
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>

#include "core/codec.h"
#include "core/layer_impl.h"
#include "core/persist.h"

// ---- storing changes ----
//
// Locks, in this order: the layer's rwlock (a change holds it for writing), the layer's
// store_lock, its shared arrays' store locks (by name), an array's rwlock. A change holds the
// store locks from nd__undo_begin to nd__undo_release, so the state it records, the change, the
// saves and a possible undo are one step for every layer sharing an array; the registry takes a
// layer's store_lock to remove or replace its stored copy. A shared array bound during the
// change (initialize) is not store-locked: it is either new (no one else has it yet; stored
// here) or already stored (not stored again), so no lock is taken out of order.

static bool persisting(const struct nd_layer *l) {
    return l->persist && l->persist->save_layer;
}

static bool shared_slot(const struct nd_layer *l, int id) {
    return l->shared[id][0] && l->arrays[id];
}

static void array_lock(struct nd_array *a) {
    if (a && a->store_lock)
        nd_mutex_lock(a->store_lock);
}

static void array_unlock(struct nd_array *a) {
    if (a && a->store_lock)
        nd_mutex_unlock(a->store_lock);
}

// The two shared arrays of a layer in name order (a layer never binds one array twice, but two
// layers may bind two arrays as Scaling/Biases and Biases/Scaling).
static void order_pair(struct nd_array *const in[2], struct nd_array *out[2]) {
    bool swap = in[0] && in[1] && strcmp(in[0]->shared_name, in[1]->shared_name) > 0;
    out[0] = swap ? in[1] : in[0];
    out[1] = swap ? in[0] : in[1];
    if (out[0] == out[1])
        out[1] = NULL;
}

enum nd_status nd__undo_begin(struct nd_layer *l, struct nd__undo *u, struct nd_error *err) {
    memset(u, 0, sizeof *u);
    if (!persisting(l))
        return ND_STATUS_OK;
    nd_mutex_lock(l->store_lock);
    u->owner = l;
    for (int id = 0; id < ND_ARRAY_AFFINE_COUNT; id++) {
        if (!shared_slot(l, id))
            continue;
        u->arrays[id] = l->arrays[id];
        nd_array_ref(u->arrays[id]);
    }
    struct nd_array *order[2];
    order_pair(u->arrays, order);
    array_lock(order[0]);
    array_lock(order[1]);
    nd_history_mark(&l->history, &u->history);
    enum nd_status st = nd__layer_snapshot(l, &u->layer, err);
    for (int id = 0; st == ND_STATUS_OK && id < ND_ARRAY_AFFINE_COUNT; id++)
        if (u->arrays[id])
            st = nd__array_snapshot(u->arrays[id], &u->shared[id], err);
    if (st != ND_STATUS_OK)
        nd__undo_release(u);
    return st;
}

void nd__undo_release(struct nd__undo *u) {
    if (u->owner) {
        struct nd_array *order[2];
        order_pair(u->arrays, order);
        array_unlock(order[1]);
        array_unlock(order[0]);
        nd_mutex_unlock(u->owner->store_lock);
        u->owner = NULL;
    }
    nd_buf_deinit(&u->layer);
    for (int id = 0; id < ND_ARRAY_AFFINE_COUNT; id++) {
        nd_buf_deinit(&u->shared[id]);
        nd_array_unref(u->arrays[id]);
        u->arrays[id] = NULL;
    }
}

static void undo_apply(struct nd_layer *l, struct nd__undo *u, bool restore_layer) {
    if (restore_layer && u->layer.len) {
        nd__layer_restore(l, &u->layer, NULL);
        nd_history_rewind(&l->history, &u->history);
    }
    for (int id = 0; id < ND_ARRAY_AFFINE_COUNT; id++)
        if (u->arrays[id] && u->shared[id].len)
            nd__array_restore(u->arrays[id], &u->shared[id], NULL);
}

// Group commit applies when the caller asked for it (ticket not NULL) and the hooks have it.
static bool deferring(const struct nd_persist_hooks *h, const uint64_t *ticket) {
    return ticket && h->append_layer && h->append_shared && h->wait;
}

// Whether a deferred save (a train-step's) hands over a partial copy (see struct nd_store_put).
static bool partial_copy(const struct nd_layer *l, const struct nd_persist_hooks *h,
                         const uint64_t *ticket) {
    uint64_t total = l->history.total, since = l->whole_history;
    return deferring(h, ticket) && h->partial_ok && l->whole_stored && total >= since &&
           total - since <= ND_PERSIST_PARTIAL_MAX && total - since <= (uint64_t)l->history.count;
}

// Appends (deferring: the ticket is kept, the largest one covers every earlier append) or
// saves a shared array's bytes.
static enum nd_status put_shared(const struct nd_persist_hooks *h, const struct nd_store_put *put,
                                 uint64_t *ticket, struct nd_error *err) {
    if (!deferring(h, ticket))
        return h->save_shared(h->ctx, put, err);
    uint64_t t = 0;
    enum nd_status st = h->append_shared(h->ctx, put, &t, err);
    *ticket = t > *ticket ? t : *ticket;
    return st;
}

static enum nd_status put_layer(const struct nd_persist_hooks *h, const struct nd_store_put *put,
                                uint64_t *ticket, struct nd_error *err) {
    if (!deferring(h, ticket))
        return h->save_layer(h->ctx, put, err);
    uint64_t t = 0;
    enum nd_status st = h->append_layer(h->ctx, put, &t, err);
    *ticket = t > *ticket ? t : *ticket;
    return st;
}

// A shared array's store version is its own + 1: a new array (version 0) must not look absent.
// ticket NULL: durable on return.
static enum nd_status save_shared(const struct nd_persist_hooks *hooks, struct nd_array *a,
                                  uint64_t *ticket, struct nd_error *err) {
    struct nd_buf b = {0};
    enum nd_status st = nd__array_serialize(a, &b, err);
    struct nd_store_put put = {a->shared_name, b.data, b.len, a->stored_version, a->version + 1};
    if (st == ND_STATUS_OK)
        st = put_shared(hooks, &put, ticket, err);
    if (st == ND_STATUS_OK) {
        a->stored_version = put.version;
        atomic_store(&a->stored, true);
    }
    nd_buf_deinit(&b);
    return st;
}

// The shared saves that succeeded (bit id) of arrays u holds.
struct saves {
    unsigned held;
};

static bool held_by(const struct nd__undo *u, const struct nd_array *a) {
    for (int id = 0; u && id < ND_ARRAY_AFFINE_COUNT; id++)
        if (u->arrays[id] == a)
            return true;
    return false;
}

// Stores the layer, its shared arrays first so a stored layer never names a missing one: those
// u holds (the change may have changed them), and new ones; a shared array bound during the
// change that is already stored is left as it is. A detached layer (deleted or replaced while
// this change was on its way) is not stored any more, but the shared arrays it changed still
// serve other layers: they are stored unless they left the store with their last layer.
static enum nd_status save_all(struct nd_layer *l, struct nd__undo *u, struct saves *done,
                               struct nd_error *err) {
    uint64_t *ticket = u && u->defer ? &u->ticket : NULL;
    const struct nd_persist_hooks *h = l->persist;
    enum nd_status st = ND_STATUS_OK;
    for (int id = 0; st == ND_STATUS_OK && h->save_shared && id < ND_ARRAY_AFFINE_COUNT; id++) {
        if (!shared_slot(l, id))
            continue;
        struct nd_array *a = l->arrays[id];
        if (held_by(u, a)) {
            if (l->detached && !atomic_load(&a->stored))
                continue; // pruned
            st = save_shared(h, a, ticket, err);
            done->held |= st == ND_STATUS_OK ? 1u << id : 0u;
        } else if (!l->detached && !atomic_load(&a->stored)) {
            array_lock(a);
            st = save_shared(h, a, ticket, err);
            array_unlock(a);
        }
    }
    struct nd_buf b = {0};
    bool partial = partial_copy(l, h, ticket);
    if (st == ND_STATUS_OK && !l->detached)
        st = partial ? nd__layer_serialize_partial(l, l->whole_history, &b, err)
                     : nd__layer_serialize(l, &b, err);
    struct nd_store_put put = {l->name, b.data, b.len, l->stored_version, l->version, partial};
    if (st == ND_STATUS_OK && !l->detached)
        st = put_layer(h, &put, ticket, err);
    if (st == ND_STATUS_OK && !l->detached) {
        l->stored_version = put.version;
        if (!partial) {
            l->whole_stored = true;
            l->whole_history = l->history.total;
        }
    }
    nd_buf_deinit(&b);
    return st;
}

enum nd_status nd__save_layer(struct nd_layer *l, struct nd_error *err) {
    if (!persisting(l))
        return ND_STATUS_OK;
    struct saves done = {0};
    return save_all(l, NULL, &done, err);
}

enum nd_status nd__persist_change(struct nd_layer *l, struct nd__undo *u, bool restore_layer,
                                  struct nd_error *err) {
    if (!u->owner)
        return ND_STATUS_OK;
    struct saves done = {0};
    enum nd_status st = save_all(l, u, &done, err);
    if (st == ND_STATUS_OK)
        return st;
    undo_apply(l, u, restore_layer);
    // Shared arrays stored before the layer's save failed hold the undone change: store them
    // as they are again (best effort: the store is failing, and a later change stores them).
    for (int id = 0; id < ND_ARRAY_AFFINE_COUNT; id++)
        if (done.held & (1u << id))
            save_shared(l->persist, u->arrays[id], NULL, NULL); // durable on return
    return st;
}

enum nd_status nd_persist_wait(const struct nd_persist_hooks *hooks, uint64_t ticket,
                               struct nd_error *err) {
    if (!hooks || !hooks->wait || ticket == 0)
        return ND_STATUS_OK;
    return hooks->wait(hooks->ctx, ticket, err);
}

void nd__shared_unstore(const struct nd_persist_hooks *hooks, struct nd_array *a) {
    if (!hooks)
        return;
    array_lock(a); // after a change of one of its (detached) layers that stores it
    struct nd_store_put put = {a->shared_name, NULL, 0, a->stored_version, 0};
    if (hooks->remove_shared && hooks->remove_shared(hooks->ctx, &put, NULL) == ND_STATUS_OK)
        a->stored_version = 0;
    atomic_store(&a->stored, false);
    array_unlock(a);
}

void nd__layer_store_lock(struct nd_layer *l) {
    if (l && persisting(l))
        nd_mutex_lock(l->store_lock);
}

void nd__layer_store_unlock(struct nd_layer *l) {
    if (l && persisting(l))
        nd_mutex_unlock(l->store_lock);
}

void nd__layer_detach(struct nd_layer *l) {
    if (l && persisting(l))
        l->detached = true;
}

enum nd_status nd__layer_unstore(struct nd_layer *l, struct nd_error *err) {
    if (!persisting(l))
        return ND_STATUS_OK;
    nd_mutex_lock(l->store_lock);
    struct nd_store_put put = {l->name, NULL, 0, l->stored_version, 0};
    enum nd_status st = l->persist->remove_layer
                            ? l->persist->remove_layer(l->persist->ctx, &put, err)
                            : ND_STATUS_OK;
    if (st == ND_STATUS_OK)
        l->detached = true;
    nd_mutex_unlock(l->store_lock);
    return st;
}
