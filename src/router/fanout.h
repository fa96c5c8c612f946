/*
 * fanout.h - one serialized stanza for many recipients (group chat).
 *
 * A room message to a thousand occupants is serialized once: struct
 * shared_bytes holds the bytes, immutable, with a reference count that
 * any shard may drop. Each recipient's 'to' attribute is spliced in at
 * `at` (just after "<message") as the bytes are queued on its connection,
 * so nothing is copied or serialized per recipient but that attribute.
 *
 * struct fanout groups recipients by the shard that owns their
 * connection: the recipients on the calling shard are written at once,
 * every other shard gets one message for all of its recipients.
 */
#ifndef STANZAD_ROUTER_FANOUT_H
#define STANZAD_ROUTER_FANOUT_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "../core/buf.h"
#include "../core/shard.h"
#include "../core/str.h"

struct xml_elem;

/* No splice: the bytes already carry their addresses (or several
 * stanzas, each addressed). */
#define SHARED_NO_SPLICE ((size_t)-1)

struct shared_bytes {
	atomic_uint refs;
	size_t len;
	size_t at; /* where " to='...'" goes, or SHARED_NO_SPLICE */
	char data[];
};

/* Copies len bytes into a new shared buffer with one reference. */
struct shared_bytes *shared_new(const void *p, size_t len, size_t at);
/* Serializes x (a stanza without 'to', in jabber:client) and marks the
 * splice point after its name. NULL if x is too big. */
struct shared_bytes *shared_from_elem(const struct xml_elem *x);
static inline struct shared_bytes *shared_ref(struct shared_bytes *b)
{
	atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
	return b;
}
void shared_unref(struct shared_bytes **bp);

/* " to='JID'" escaped, ready to splice (malloc'ed; free()). */
char *shared_to_attr(struct str jid);

struct fanout_shard;
struct fanout {
	struct shared_bytes *b;
	struct fanout_shard *per[SHARDS_MAX];
};

/* Starts a fan-out of b (the fan-out takes a reference of its own). */
void fanout_init(struct fanout *f, struct shared_bytes *b);
/* Adds the connection conn_id on shard, whose 'to' is to_attr (as made
 * by shared_to_attr; NULL with b->at == SHARED_NO_SPLICE). */
void fanout_add(struct fanout *f, unsigned shard, uint64_t conn_id,
		const char *to_attr);
/* Writes to the calling shard's recipients and posts the rest. Call on
 * a shard thread. A recipient whose connection has gone is skipped:
 * its session's end sends the room its unavailable presence. */
void fanout_send(struct fanout *f);

#endif
