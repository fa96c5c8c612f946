/*
 * shard.h - shards: one thread, one libuv loop, and the connections it owns.
 *
 * The server runs N shards. A shard accepts its own connections (listening
 * sockets with SO_REUSEPORT) and owns their sessions outright: nothing
 * touches another shard's connections. Work for another shard travels as a
 * struct shard_msg through that shard's inbox (a mutex-protected list plus
 * uv_async_send). Ownership of a message and of everything it points to
 * passes to the receiving shard with shard_post().
 */
#ifndef STANZAD_SHARD_H
#define STANZAD_SHARD_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "buf.h"
#include "hmap.h"

#define SHARD_READ_BUF (64 * 1024)
#define SHARD_PLAIN_BUF (16 * 1024)
#define SHARDS_MAX 64

struct shard;
struct shard_msg;

/* Runs on the receiving shard's thread; must free m. */
typedef void shard_msg_fn(struct shard *s, struct shard_msg *m);

struct shard_msg {
	struct shard_msg *next;
	shard_msg_fn *fn;
};

/* Runs on the receiving shard's thread for a record of len bytes at p
 * (shard_post_record); p is valid only during the call. */
typedef void shard_rec_fn(struct shard *s, void *p, size_t len);

/* Called on the shard's thread: at start (to open listeners) and when the
 * shard is asked to stop (to close everything it owns, so the loop ends). */
typedef void shard_hook_fn(struct shard *s);

struct shard {
	unsigned id;
	struct shard *all; /* the array of every shard, this one at [id] */
	char name[16]; /* "s0", "s1"... for logs */
	uv_loop_t loop;
	uv_thread_t thread;
	uv_async_t wakeup;
	uv_check_t check; /* runs tick_hook once per loop iteration */
	uv_idle_t idle;   /* active while a tick is wanted: poll won't block */
	uv_mutex_t lock;  /* guards the inbox and stopping */
	struct shard_msg *inbox_head, **inbox_tail;
	bool stopping;
	bool stopped_hook_ran;
	bool dead;        /* the thread has left its loop (under lock) */
	/* Posts this shard's thread made during the current loop iteration,
	 * per receiving shard, handed over together by the tick (one lock and
	 * one wake-up per receiver instead of one per post); out_mask has a
	 * bit per non-empty list. Used while outbox_open. */
	struct shard_msg *out_head[SHARDS_MAX], **out_tail[SHARDS_MAX];
	uint64_t out_mask;
	struct buf rec[SHARDS_MAX]; /* shard_post_record, per receiver */
	uint64_t rec_mask;
	/* Record bytes sealed into the outbox, per receiver. */
	size_t out_recs[SHARDS_MAX];
	bool outbox_open;
	struct hmap conns;        /* conn id -> struct conn * */
	/* For the listeners' choice of shard (read by every shard): conns'
	 * count, and accepted connections posted to this shard not yet
	 * taken. */
	atomic_uint nconns;
	atomic_uint incoming;
	struct conn *dirty;       /* conns with output to flush (list) */
	void *listeners;          /* owned by net/listener.c */
	size_t nlisteners;
	void *resolver;           /* owned by net/resolve.c; NULL until used */
	struct buf scratch;         /* serialization scratch, reused */
	char rbuf[SHARD_READ_BUF];  /* shared read buffer, borrowed per read */
	char pbuf[SHARD_PLAIN_BUF]; /* plaintext out of SSL_read */
};

/* The shard running on this thread (NULL on the main thread). */
extern _Thread_local struct shard *shard_self;

/* Creates n shards and starts their threads; start_hook runs first on each
 * shard's thread, stop_hook when shards_stop() is called, tick_hook once per
 * loop iteration after I/O (where pending output is flushed). */
struct shard *shards_start(unsigned n, shard_hook_fn *start_hook,
			   shard_hook_fn *stop_hook, shard_hook_fn *tick_hook);
/* Asks every shard to stop, waits for the threads to end and frees them. */
void shards_stop(struct shard *shards, unsigned n);

/* Makes sure the tick runs in this loop iteration even if no I/O comes
 * (output queued from a timer callback, say). */
void shard_want_tick(struct shard *s);
/* True until s's last tick has run (shutdown, the last connection gone):
 * work queued for a later tick runs. On s's thread. */
bool shard_ticking(const struct shard *s);

/* Called (on s's thread) when a connection has left s->conns. */
void shard_conn_removed(struct shard *s);

/* Queues m for shard s (any thread, including s itself). Takes ownership.
 * Posts from one thread to one shard arrive in the order made; a shard's
 * own posts leave at the end of its loop iteration. */
void shard_post(struct shard *s, struct shard_msg *m);

/* Reserves a record of len bytes for shard s, to be handed to fn on s;
 * returns where to write them (aligned for any scalar; valid until the
 * next post from this thread), or NULL where records are not possible
 * (not on a running shard, s is this shard, no memory): then post a
 * message instead. Records from one shard to another are packed into one
 * buffer per loop iteration, or per 64 KiB when an iteration makes more
 * (that buffer then leaves at once), in order with its shard_post
 * messages: for many small posts (deliveries of serialized stanzas)
 * without a malloc, a free on another thread and a cache miss each. */
void *shard_post_record(struct shard *s, shard_rec_fn *fn, size_t len);

#endif
