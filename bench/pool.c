/*
 * pool.c - a set of sessions of the load generator opened with a limit
 * on concurrent handshakes (the --concurrency option), kept online, and
 * closed together. Slot i logs in as user i % nusers; when sessions
 * outnumber users the extra ones are further resources of the same
 * accounts (server-generated). Invariant: conns[i] is non-NULL exactly
 * while slot i is online; `live` counts connections not yet freed.
 */
#include <stdio.h>
#include <stdlib.h>

#include "loadgen-private.h"

static void pool_launch(struct lg_pool *p);

static void pool_check_all_up(struct lg_pool *p)
{
	if (p->all_up_done || p->up + p->failed < p->count)
		return;
	p->all_up_done = true;
	p->t_all_up = lg_now_ns();
	if (p->ops->all_up)
		p->ops->all_up(p);
}

static void pool_on_online(struct lg_conn *c, struct lg_elem *roster)
{
	struct lg_pool *p = c->owner;
	p->opening--;
	p->up++;
	p->conns[c->slot] = c;
	if (p->ops->up)
		p->ops->up(p, c, roster);
	pool_launch(p);
	pool_check_all_up(p);
}

static void pool_on_stanza(struct lg_conn *c, struct lg_elem *st)
{
	struct lg_pool *p = c->owner;
	if (p->ops->stanza)
		p->ops->stanza(p, c, st);
}

static void pool_on_closed(struct lg_conn *c)
{
	struct lg_pool *p = c->owner;
	p->live--;
	if (c->t_online) {
		/* Still in conns[]: gone while we wanted it (dropped). */
		if (p->conns[c->slot] == c) {
			p->conns[c->slot] = NULL;
			p->dropped++;
		}
	} else {
		p->opening--;
		p->failed++;
		pool_launch(p);
	}
	pool_check_all_up(p);
	if (p->closing && p->live == 0 && p->ops->all_closed)
		p->ops->all_closed(p);
}

static const struct lg_conn_ops pool_conn_ops = {
	.online = pool_on_online,
	.stanza = pool_on_stanza,
	.closed = pool_on_closed,
};

static void pool_launch(struct lg_pool *p)
{
	int limit = p->run->o.concurrency;
	while (!p->closing && p->next < p->count && p->opening < limit) {
		int slot = p->next++;
		p->opening++;
		p->live++;
		lg_conn_open(p->run, slot % p->run->nusers, p->flags,
			     &pool_conn_ops, p, slot);
	}
}

void lg_pool_start(struct lg_pool *p, struct lg_run *run, int count,
		   unsigned flags, const struct lg_pool_ops *ops, void *ctx)
{
	*p = (struct lg_pool){
		.run = run,
		.ops = ops,
		.ctx = ctx,
		.conns = lg_xcalloc((size_t)count, sizeof(*p->conns)),
		.count = count,
		.flags = flags,
		.t_start = lg_now_ns(),
	};
	pool_launch(p);
	pool_check_all_up(p); /* count == 0 */
}

void lg_pool_close(struct lg_pool *p)
{
	p->closing = true;
	for (int i = 0; i < p->count; i++) {
		struct lg_conn *c = p->conns[i];
		if (c) {
			/* Closed by us: not a drop, whatever happens next. */
			p->conns[i] = NULL;
			lg_conn_close(c);
		}
	}
	if (p->live == 0 && p->ops->all_closed)
		p->ops->all_closed(p);
}

void lg_pool_free(struct lg_pool *p)
{
	free(p->conns);
	p->conns = NULL;
}

void lg_pool_print(const struct lg_pool *p)
{
	double up_s = p->t_all_up ? (p->t_all_up - p->t_start) / 1e9 : 0;
	printf(" sessions=%d up=%d login_failed=%d dropped=%d up_s=%.3f",
	       p->count, p->up, p->failed, p->dropped, up_s);
}
