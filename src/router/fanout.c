/*
 * fanout.c - shared serialized stanzas and their delivery; see fanout.h.
 */
#include <stdlib.h>
#include <string.h>

#include "../core/bug.h"
#include "../core/server.h"
#include "../core/shard.h"
#include "../core/xmalloc.h"
#include "../net/conn.h"
#include "../xml/stanza.h"
#include "../xmpp/ns.h"
#include "fanout.h"

struct shared_bytes *shared_new(const void *p, size_t len, size_t at)
{
	struct shared_bytes *b = xmalloc(sizeof(*b) + len + 1);
	atomic_init(&b->refs, 1);
	b->len = len;
	b->at = at;
	memcpy(b->data, p, len);
	b->data[len] = '\0';
	return b;
}

struct shared_bytes *shared_from_elem(const struct xml_elem *x)
{
	struct buf tmp = { .max = 4 * 1024 * 1024 };
	if (xml_serialize(&tmp, x, STR_LIT(NS_CLIENT)) < 0) {
		buf_reset(&tmp);
		return NULL;
	}
	/* "<" NAME, then the attributes: 'to' goes right after the name. */
	struct shared_bytes *b = shared_new(tmp.data, tmp.len,
					    1 + x->name.len);
	buf_reset(&tmp);
	return b;
}

void shared_unref(struct shared_bytes **bp)
{
	struct shared_bytes *b = *bp;
	*bp = NULL;
	if (b != NULL &&
	    atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) == 1)
		free(b);
}

char *shared_to_attr(struct str jid)
{
	struct buf b = { 0 };
	buf_append_c(&b, " to='");
	xml_escape(&b, jid, true);
	buf_append(&b, "'", 2); /* with the NUL */
	return b.data;
}

struct fanout_dest {
	uint64_t conn_id;
	size_t to_off; /* into names, or SIZE_MAX */
};

struct fanout_shard {
	struct shard_msg m;
	struct shared_bytes *b;
	struct fanout_dest *d;
	size_t n, cap;
	struct buf names; /* the to attributes, NUL-separated */
};

void fanout_init(struct fanout *f, struct shared_bytes *b)
{
	memset(f, 0, sizeof(*f));
	f->b = shared_ref(b);
}

void fanout_add(struct fanout *f, unsigned shard, uint64_t conn_id,
		const char *to_attr)
{
	BUG_ON(shard >= SHARDS_MAX);
	struct fanout_shard *fs = f->per[shard];
	if (fs == NULL) {
		fs = f->per[shard] = xcalloc(1, sizeof(*fs));
		fs->b = shared_ref(f->b);
	}
	if (fs->n == fs->cap) {
		fs->cap = fs->cap ? 2 * fs->cap : 16;
		fs->d = xrealloc(fs->d, fs->cap * sizeof(*fs->d));
	}
	struct fanout_dest *d = &fs->d[fs->n++];
	d->conn_id = conn_id;
	d->to_off = SIZE_MAX;
	if (to_attr != NULL) {
		d->to_off = fs->names.len;
		BUG_ON(buf_append(&fs->names, to_attr,
				  strlen(to_attr) + 1) < 0);
	}
}

static void shard_free(struct fanout_shard *fs)
{
	shared_unref(&fs->b);
	free(fs->d);
	buf_reset(&fs->names);
	free(fs);
}

static void deliver_here(struct shard *s, struct fanout_shard *fs)
{
	for (size_t i = 0; i < fs->n; i++) {
		struct conn *c = hmap_get(&s->conns,
					  hmap_u64(&fs->d[i].conn_id));
		if (c == NULL || conn_closing(c) ||
		    c->ops->deliver_shared == NULL)
			continue;
		const char *to = fs->d[i].to_off == SIZE_MAX
					 ? NULL
					 : fs->names.data + fs->d[i].to_off;
		c->ops->deliver_shared(c, fs->b, to);
	}
}

static void on_fanout_msg(struct shard *s, struct shard_msg *m)
{
	struct fanout_shard *fs = (struct fanout_shard *)m;
	if (!s->stopped_hook_ran)
		deliver_here(s, fs);
	shard_free(fs);
}

void fanout_send(struct fanout *f)
{
	for (unsigned i = 0; i < SHARDS_MAX; i++) {
		struct fanout_shard *fs = f->per[i];
		if (fs == NULL)
			continue;
		f->per[i] = NULL;
		if (i == shard_self->id) {
			deliver_here(shard_self, fs);
			shard_free(fs);
		} else {
			fs->m.fn = on_fanout_msg;
			shard_post(&server.shards[i], &fs->m);
		}
	}
	shared_unref(&f->b);
}
