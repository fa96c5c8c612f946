/*
 * conn.h - a client or server connection: TCP over libuv, optionally TLS.
 *
 * The stream layer embeds struct conn as the first member of its session
 * and drives it through struct conn_ops. Reads borrow the shard's read
 * buffer; TLS runs over a BIO that reads straight from that buffer and
 * writes straight into the connection's output queue, so an idle
 * connection keeps no buffers of its own (and OpenSSL releases its record
 * buffers: SSL_MODE_RELEASE_BUFFERS), nor libuv requests (allocated for a
 * uv_write or uv_shutdown and freed in its callback).
 *
 * Output is queued by conn_write() and flushed once per loop iteration
 * (the shard's tick), so the replies to a batch of pipelined stanzas leave
 * in one write; over TLS the plaintext of one iteration is sealed at the
 * flush, in as few records as fit (16 KiB each), not one per stanza. A connection is freed only from libuv's close callback,
 * after the loop iteration that asked for the close: code holding a conn
 * pointer during a callback may keep using it until it returns, but must
 * check conn_closing() before doing more work.
 */
#ifndef STANZAD_NET_CONN_H
#define STANZAD_NET_CONN_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>
#include <uv.h>

#include "../core/buf.h"
#include "../xmpp/errors.h"

struct conn;
struct conn_info;
struct shard;
struct shared_bytes;
struct stanza;

struct conn_ops {
	/* Plaintext bytes from the peer. */
	void (*data)(struct conn *c, const char *p, size_t len);
	/* The conn's timer fired (see conn_set_timer). */
	void (*timeout)(struct conn *c);
	/* The connection is closed: release the stream's state and free the
	 * object that embeds the conn. Called exactly once. */
	void (*destroy)(struct conn *c);
	/* The TLS handshake completed (optional). */
	void (*tls_ready)(struct conn *c);
	/* A routed stanza for this session (consumed). Sessions that cannot
	 * take stanzas (not bound yet) bounce or drop it. */
	void (*deliver)(struct conn *c, struct stanza *st);
	/* Bytes serialized once for many sessions (router/fanout.h): queue
	 * them with to_attr spliced in at b->at (optional; NULL: only
	 * stanzas through deliver reach this kind of stream). */
	void (*deliver_shared)(struct conn *c, const struct shared_bytes *b,
			       const char *to_attr);
	/* End the stream with err (another shard asked, e.g. a resource
	 * conflict). */
	void (*kick)(struct conn *c, enum stream_err err, const char *text);
	/* Fills *ci for stanzactl status (optional; on the conn's shard). */
	void (*describe)(const struct conn *c, struct conn_info *ci);
};

/* What the control socket reports about a connection (conn_ops.describe;
 * stanzactl status). */
enum conn_kind {
	CONN_KIND_OTHER,
	CONN_KIND_C2S,
	CONN_KIND_S2S,
	CONN_KIND_COMPONENT,
};

struct conn_info {
	enum conn_kind kind;
	bool out;         /* s2s: we opened it */
	bool ready;       /* c2s: bound; s2s: authenticated; component:
			     handshake done */
	size_t host_idx;  /* c2s, s2s: our host */
	char peer[256];   /* s2s: the remote domain; component: its domain;
			     empty when not known yet */
	const char *auth; /* s2s: how the peer (in) or we (out) were
			     authenticated, static; NULL: not yet */
};

typedef void conn_connect_fn(struct conn *c, int status);

enum conn_state {
	CONN_OPEN,
	CONN_CLOSING, /* flushing what is queued, then closing */
	CONN_CLOSED,  /* uv_close called; freed in the close callback */
};

struct conn {
	uv_tcp_t tcp;
	uv_timer_t timer;
	/* Requests exist only while libuv has one: most output leaves by
	 * uv_try_write, and a shutdown happens once. */
	uv_write_t *wreq;
	uv_shutdown_t *sreq;
	const struct conn_ops *ops;
	struct shard *shard;
	uint64_t id;
	SSL *ssl;
	struct conn *next_dirty;
	conn_connect_fn *connect_cb; /* while an outgoing connect runs */
	const char *rx; /* TLS bytes offered to OpenSSL during a read */
	size_t rxlen;
	struct buf plain;    /* TLS: plaintext queued this loop iteration,
				sealed into records at the flush */
	struct buf out;      /* queued bytes (TLS records when ssl) */
	struct buf inflight; /* bytes handed to uv_write */
	enum conn_state state;
	bool dirty, writing, tls_up, ip_counted;
	bool paused;    /* conn_pause: a request of the stream's own runs */
	bool throttled; /* conn_throttle: a shared writer is behind */
	bool limited;   /* over its rate (conn_set_rate) until the timer */
	uint8_t handles_open;
	uint32_t rate, burst; /* conn_set_rate: bytes/s, bucket; rate 0: none */
	int64_t tokens;       /* bytes the bucket holds (< 0: owed) */
	uint64_t tokens_at;   /* loop time (ms) tokens was counted at */
	size_t max_output;
	char ip[INET6_ADDRSTRLEN];
};

/* Initialises c (memory owned by the caller's session object) on fd, a
 * connected socket it owns from now on, from the remote address peer
 * (NULL for a socketpair, as the fuzz targets use). Returns 0, or -1 if
 * the loop would not take it (c is then already closing and ops->destroy
 * will be called). */
int conn_accept(struct conn *c, struct shard *s, int fd,
		const struct sockaddr *peer, const struct conn_ops *ops,
		size_t max_output);

/* Initialises c and connects it to sa (an outgoing server connection).
 * cb runs once with 0 (reading has started) or a libuv error; it does not
 * run when the conn is closed first. Returns 0, or a libuv error (c is
 * then already closing and ops->destroy will be called). */
int conn_connect(struct conn *c, struct shard *s, const struct sockaddr *sa,
		 const struct conn_ops *ops, size_t max_output,
		 conn_connect_fn *cb);

/* Starts TLS on the connection (after <proceed/>, or at once for direct
 * TLS) with host host_idx's context. */
void conn_start_tls(struct conn *c, size_t host_idx);
/* Starts TLS with a given SSL (owned by the conn from now on): a client
 * SSL sends its ClientHello at once. */
void conn_start_tls_with(struct conn *c, SSL *ssl);

/* Queues bytes for the peer (encrypting when TLS is on). Returns 0, or -1
 * when the queue would pass max_output even after the socket took what it
 * takes now (only what the peer has not read counts): the caller must end
 * the stream. */
int conn_write(struct conn *c, const void *p, size_t len);
static inline int conn_write_str(struct conn *c, const char *s)
{
	return conn_write(c, s, strlen(s));
}

/* As conn_write, for output that may be larger than max_output at once
 * (a group chat join sends the whole room): written in pieces of at most
 * 64 KiB, each a conn_write. Returns 0, or -1 as conn_write. */
int conn_write_bulk(struct conn *c, const void *p, size_t len);

/* Stops and restarts reading from the socket (while a request for this
 * connection runs on the thread pool). */
void conn_pause(struct conn *c);
void conn_resume(struct conn *c);

/*
 * Back-pressure from a consumer shared by many connections (the message
 * archive's writer, docs/internals/mam.md): conn_throttle stops reading
 * from c until conn_unthrottle_all runs on c's shard. Independent of
 * conn_pause: the socket is read only when neither holds it. What was
 * read already (the rest of the current read, at most SHARD_READ_BUF
 * bytes) is still processed. Counted in the shard's read_throttles.
 * Both on c's (the calling) shard only.
 */
void conn_throttle(struct conn *c);
/* Restarts reading on every connection of shard s that conn_throttle
 * stopped (and that is still open); the caller's shard must be s. */
void conn_unthrottle_all(struct shard *s);

/* The connection whose input is being processed on this thread (inside
 * a read callback), or NULL: stanzas that came from another shard, a
 * pool job's completion, a timer. */
struct conn *conn_current(void);

/* Closes after the queued output is written (bounded by a short timer).
 * Stops reading at once. Safe to call twice. */
void conn_close(struct conn *c);
/* Closes now, dropping queued output. */
void conn_abort(struct conn *c);
static inline bool conn_closing(const struct conn *c)
{
	return c->state != CONN_OPEN;
}

/* Limits what is read from c to rate bytes/s on average, burst at once
 * (a token bucket; rate 0: no limit). Past it, reading stops until the
 * bucket has refilled, so the peer's TCP connection waits: nothing is
 * dropped. Uses the conn's timer: call once the stream no longer needs
 * conn_set_timer (a client stream after authentication). */
void conn_set_rate(struct conn *c, uint32_t rate, uint32_t burst);

/* (Re)arms the conn's single timer; 0 stops it. */
void conn_set_timer(struct conn *c, uint64_t ms);

/* Writes every dirty conn of shard s; the shard tick calls this. */
void conn_flush_dirty(struct shard *s);

/* Connections per source address across all shards. conn_ip_acquire
 * counts c's address and returns the new count; conn_ip_release undoes it
 * (done automatically when c closes). */
unsigned conn_ip_acquire(struct conn *c);
void conn_ip_init(void);
/* After the shards stopped; also frees conn_throttle's lists. */
void conn_ip_fini(void);

/* Number of open connections in the process. */
unsigned conn_count(void);

/* Log helpers that carry the connection id: "c12 ...". */
#define conn_log(l, c, fmt, ...) \
	log_msg((l), "c%llu " fmt, (unsigned long long)(c)->id, ##__VA_ARGS__)
#define conn_debug(c, fmt, ...)                                           \
	do {                                                              \
		if (log_enabled(LOG_LEVEL_DEBUG))                         \
			conn_log(LOG_LEVEL_DEBUG, c, fmt, ##__VA_ARGS__); \
	} while (0)

#endif
