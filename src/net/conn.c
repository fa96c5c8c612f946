/*
 * conn.c - connections over libuv with optional TLS; see conn.h.
 *
 * TLS plumbing: a custom BIO whose read side returns the bytes of the
 * current uv read (c->rx) and whose write side appends to c->out. OpenSSL
 * drains c->rx completely on every SSL_read loop (partial records go to its
 * own buffer, released when empty), so nothing of the shard's read buffer
 * is referenced after on_read returns.
 *
 * Output over TLS: conn_write() only appends plaintext (c->plain); the
 * shard's tick seals it (SSL_write) just before the socket write, so the
 * stanzas one connection gets in one loop iteration cost one TLS record
 * (per 16 KiB) instead of one each: one AEAD pass setup and 22 bytes of
 * framing and tag per record. Anything that queues TLS records itself
 * (SSL_shutdown's close_notify) seals the pending plaintext first, so
 * records leave in the order their plaintext was written.
 */
#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>

#include "../core/bug.h"
#include "../core/hmap.h"
#include "../core/log.h"
#include "../core/shard.h"
#include "../core/stats.h"
#include "../core/xmalloc.h"
#include "conn.h"
#include "tls.h"

#define CONN_CLOSE_GRACE_MS 3000

static atomic_uint_fast64_t next_conn_id = 1;
static atomic_uint open_conns;
static BIO_METHOD *conn_bio_method;

/* The connection whose read callback is running on this thread. */
static _Thread_local struct conn *reading;

/* Ids of the connections conn_throttle stopped, per shard; touched only
 * by that shard's thread. Ids, not pointers: a connection may close
 * while throttled. */
static struct throttled {
	uint64_t *ids;
	size_t n, cap;
} throttled[SHARDS_MAX];

/* Per-address counts, shared by all shards. */
static uv_mutex_t ip_lock;
static struct hmap ip_counts; /* address -> (uintptr_t)count */

/* ---- the BIO between OpenSSL and the connection ---- */

static int bio_read(BIO *b, char *out, int outl)
{
	struct conn *c = BIO_get_data(b);
	BIO_clear_retry_flags(b);
	if (c->rxlen == 0) {
		BIO_set_retry_read(b);
		return -1;
	}
	size_t n = (size_t)outl < c->rxlen ? (size_t)outl : c->rxlen;
	memcpy(out, c->rx, n);
	c->rx += n;
	c->rxlen -= n;
	return (int)n;
}

static void mark_dirty(struct conn *c)
{
	if (c->dirty)
		return;
	c->dirty = true;
	if (c->shard->dirty == NULL)
		shard_want_tick(c->shard);
	c->next_dirty = c->shard->dirty;
	c->shard->dirty = c;
}

static int bio_write(BIO *b, const char *in, int inl)
{
	struct conn *c = BIO_get_data(b);
	BIO_clear_retry_flags(b);
	/* TLS records are queued whole; the output limit is checked on the
	 * plaintext side in conn_write. */
	if (buf_append(&c->out, in, (size_t)inl) < 0)
		return -1;
	mark_dirty(c);
	return inl;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	(void)b, (void)num, (void)ptr;
	return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

static int bio_create(BIO *b)
{
	BIO_set_init(b, 1);
	return 1;
}

static BIO_METHOD *bio_method(void)
{
	/* Created once on the main thread by conn_ip_init(). */
	return conn_bio_method;
}

/* ---- per-address counting ---- */

void conn_ip_init(void)
{
	BUG_ON(uv_mutex_init(&ip_lock) != 0);
	conn_bio_method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK,
				       "stanzad-conn");
	BIO_meth_set_read(conn_bio_method, bio_read);
	BIO_meth_set_write(conn_bio_method, bio_write);
	BIO_meth_set_ctrl(conn_bio_method, bio_ctrl);
	BIO_meth_set_create(conn_bio_method, bio_create);
}

void conn_ip_fini(void)
{
	hmap_clear(&ip_counts);
	uv_mutex_destroy(&ip_lock);
	BIO_meth_free(conn_bio_method);
	conn_bio_method = NULL;
	/* The shards have stopped: connections still throttled then are
	 * gone with them. */
	for (size_t i = 0; i < SHARDS_MAX; i++) {
		free(throttled[i].ids);
		throttled[i] = (struct throttled){ 0 };
	}
}

unsigned conn_ip_acquire(struct conn *c)
{
	BUG_ON(c->ip_counted);
	uv_mutex_lock(&ip_lock);
	uintptr_t n = (uintptr_t)hmap_get(&ip_counts, str_c(c->ip)) + 1;
	hmap_put(&ip_counts, str_c(c->ip), (void *)n);
	uv_mutex_unlock(&ip_lock);
	c->ip_counted = true;
	return (unsigned)n;
}

static void ip_release(struct conn *c)
{
	if (!c->ip_counted)
		return;
	uv_mutex_lock(&ip_lock);
	uintptr_t n = (uintptr_t)hmap_get(&ip_counts, str_c(c->ip));
	if (ALWAYS(n > 0) && n > 1)
		hmap_put(&ip_counts, str_c(c->ip), (void *)(n - 1));
	else
		hmap_del(&ip_counts, str_c(c->ip));
	uv_mutex_unlock(&ip_lock);
	c->ip_counted = false;
}

unsigned conn_count(void)
{
	return atomic_load(&open_conns);
}

/* ---- closing ---- */

static void on_handle_closed(uv_handle_t *h)
{
	struct conn *c = h->data;
	if (--c->handles_open > 0)
		return;
	hmap_del(&c->shard->conns, hmap_u64(&c->id));
	ip_release(c);
	SSL_free(c->ssl);
	c->ssl = NULL;
	buf_reset(&c->plain);
	buf_reset(&c->out);
	buf_reset(&c->inflight);
	atomic_fetch_sub(&open_conns, 1);
	struct shard *s = c->shard;
	atomic_fetch_sub(&s->nconns, 1);
	c->ops->destroy(c);
	shard_conn_removed(s);
}

void conn_abort(struct conn *c)
{
	if (c->state == CONN_CLOSED)
		return;
	c->state = CONN_CLOSED;
	uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
	uv_close((uv_handle_t *)&c->timer, on_handle_closed);
}

/* Also called with UV_ECANCELED when the handle closes first, always
 * before on_handle_closed: c is still there. */
static void on_shutdown(uv_shutdown_t *req, int status)
{
	(void)status;
	struct conn *c = req->data;
	free(req);
	c->sreq = NULL;
	conn_abort(c);
}

/* Called when nothing is left to write on a closing conn. */
static void finish_close(struct conn *c)
{
	if (c->state != CONN_CLOSING || c->sreq != NULL)
		return;
	c->sreq = xmalloc(sizeof(*c->sreq));
	c->sreq->data = c;
	if (uv_shutdown(c->sreq, (uv_stream_t *)&c->tcp, on_shutdown) != 0) {
		free(c->sreq);
		c->sreq = NULL;
		conn_abort(c);
	}
}

static void on_grace_timeout(uv_timer_t *t)
{
	conn_abort(t->data);
}

/*
 * Encrypts the queued plaintext into c->out. With partial writes on,
 * SSL_write takes one record (16 KiB) per call; our BIO accepts
 * everything, so loop until all is sealed. Returns -1 if OpenSSL refused
 * (the connection failed: the plaintext is dropped).
 */
static int seal(struct conn *c)
{
	const char *q = c->plain.data;
	size_t len = c->plain.len;
	int rc = 0;
	while (len > 0) {
		int chunk = len > INT_MAX ? INT_MAX : (int)len;
		int n = SSL_write(c->ssl, q, chunk);
		if (n <= 0) {
			ERR_clear_error();
			rc = -1;
			break;
		}
		q += n;
		len -= (size_t)n;
	}
	/* Keep no buffer while idle. */
	buf_reset(&c->plain);
	return rc;
}

void conn_close(struct conn *c)
{
	if (c->state != CONN_OPEN)
		return;
	c->state = CONN_CLOSING;
	uv_read_stop((uv_stream_t *)&c->tcp);
	uv_timer_start(&c->timer, on_grace_timeout, CONN_CLOSE_GRACE_MS, 0);
	/* What was written before the close leaves before close_notify;
	 * a failed TLS session has nothing more to send anyway. */
	if (c->ssl != NULL && c->plain.len > 0)
		seal(c);
	if (c->ssl != NULL && c->tls_up)
		SSL_shutdown(c->ssl); /* queues close_notify */
	mark_dirty(c);
}

/* ---- writing ---- */

static void flush(struct conn *c);

/* As on_shutdown, also called (UV_ECANCELED) before the close callback. */
static void on_write(uv_write_t *req, int status)
{
	struct conn *c = req->data;
	free(req);
	c->wreq = NULL;
	c->writing = false;
	if (status == 0)
		STATS_ADD(bytes_out, c->inflight.len);
	buf_reset(&c->inflight);
	if (c->state == CONN_CLOSED)
		return;
	if (status < 0) {
		conn_debug(c, "write failed: %s", uv_strerror(status));
		conn_abort(c);
		return;
	}
	flush(c);
}

static void flush(struct conn *c)
{
	if (c->writing || c->state == CONN_CLOSED)
		return;
	if (c->out.len == 0) {
		if (c->state == CONN_CLOSING)
			finish_close(c);
		return;
	}
	/* Try the socket directly first: usually everything fits. */
	uv_buf_t b = uv_buf_init(c->out.data, (unsigned)c->out.len);
	int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
	if (n > 0)
		STATS_ADD(bytes_out, (uint64_t)n);
	if (n == (int)c->out.len) {
		/* Keep no buffer while idle. */
		buf_reset(&c->out);
		if (c->state == CONN_CLOSING)
			finish_close(c);
		return;
	}
	if (n < 0 && n != UV_EAGAIN) {
		conn_debug(c, "write failed: %s", uv_strerror(n));
		conn_abort(c);
		return;
	}
	if (n > 0)
		buf_consume(&c->out, (size_t)n);
	/* Hand the rest to libuv; new output collects in c->out meanwhile. */
	struct buf tmp = c->inflight;
	c->inflight = c->out;
	c->out = tmp;
	c->out.max = c->inflight.max;
	b = uv_buf_init(c->inflight.data, (unsigned)c->inflight.len);
	BUG_ON(c->wreq != NULL);
	c->wreq = xmalloc(sizeof(*c->wreq));
	c->wreq->data = c;
	c->writing = true;
	if (uv_write(c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_write) != 0) {
		free(c->wreq);
		c->wreq = NULL;
		c->writing = false;
		conn_abort(c);
	}
}

void conn_flush_dirty(struct shard *s)
{
	struct conn *c = s->dirty;
	s->dirty = NULL;
	while (c != NULL) {
		struct conn *next = c->next_dirty;
		c->dirty = false;
		c->next_dirty = NULL;
		/* A failed seal ends an open stream; a closing one still
		 * sends what was sealed before (its close_notify). */
		if (c->plain.len > 0 && c->state != CONN_CLOSED &&
		    seal(c) < 0 && c->state == CONN_OPEN)
			conn_abort(c);
		flush(c);
		c = next;
	}
}

/* Bytes queued for c and not yet taken by the socket. */
static size_t queued(const struct conn *c)
{
	return c->plain.len + c->out.len + c->inflight.len;
}

/*
 * Whether len more bytes fit under max_output. Output is normally handed
 * to the socket at the tick, after a whole loop iteration of input; a
 * burst from other streams in one iteration can queue more than the limit
 * for a client that reads everything. So before saying no, hand the
 * socket what it takes now: only what the peer has not taken counts.
 */
static bool room_for(struct conn *c, size_t len)
{
	if (c->max_output == 0 || queued(c) + len <= c->max_output)
		return true;
	if (c->state != CONN_OPEN)
		return false;
	if (c->ssl != NULL && c->plain.len > 0 && seal(c) < 0)
		return false;
	flush(c);
	return c->state == CONN_OPEN && queued(c) + len <= c->max_output;
}

int conn_write(struct conn *c, const void *p, size_t len)
{
	if (c->state == CONN_CLOSED || len == 0)
		return 0;
	if (!room_for(c, len))
		return -1;
	/* Sealed at the flush (see the top of the file). */
	if (buf_append(c->ssl != NULL ? &c->plain : &c->out, p, len) < 0)
		return -1;
	mark_dirty(c);
	return 0;
}

int conn_write_bulk(struct conn *c, const void *p, size_t len)
{
	const char *q = p;
	while (len > 0) {
		size_t n = len < 64 * 1024 ? len : 64 * 1024;
		if (conn_write(c, q, n) < 0)
			return -1;
		q += n;
		len -= n;
	}
	return 0;
}

/* ---- reading ---- */

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
	(void)hint;
	struct conn *c = h->data;
	*b = uv_buf_init(c->shard->rbuf, sizeof(c->shard->rbuf));
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *b);

/* Whether c should be reading now. */
static bool may_read(const struct conn *c)
{
	return c->state == CONN_OPEN && !c->paused && !c->throttled &&
	       !c->limited;
}

static void on_rate_timer(uv_timer_t *t)
{
	struct conn *c = t->data;
	c->limited = false;
	if (may_read(c) && uv_read_start((uv_stream_t *)&c->tcp, on_alloc,
					 on_read) != 0)
		conn_abort(c);
}

/* Counts n bytes read against c's bucket; stops reading while it owes. */
static void rate_take(struct conn *c, size_t n)
{
	uint64_t now = uv_now(&c->shard->loop);
	int64_t refill = (int64_t)((now - c->tokens_at) * c->rate / 1000);
	c->tokens_at = now;
	c->tokens += refill;
	if (c->tokens > (int64_t)c->burst)
		c->tokens = c->burst;
	c->tokens -= (int64_t)n;
	if (c->tokens >= 0 || c->limited)
		return;
	/* Back at zero after this long; what was read meanwhile is owed. */
	uint64_t wait = ((uint64_t)-c->tokens * 1000 + c->rate - 1) / c->rate;
	c->limited = true;
	uv_read_stop((uv_stream_t *)&c->tcp);
	uv_timer_start(&c->timer, on_rate_timer, wait, 0);
	STATS_ADD(rate_limited, 1);
}

void conn_set_rate(struct conn *c, uint32_t rate, uint32_t burst)
{
	c->rate = rate;
	c->burst = burst;
	c->tokens = burst;
	c->tokens_at = uv_now(&c->shard->loop);
}

/* The records of one read go up together, up to a full plaintext
 * buffer: a client that sends one stanza per record (most do) would
 * otherwise cost a parser feed, and the parser's set-up and release
 * between stanzas, per stanza. */
static void read_tls(struct conn *c, const char *p, size_t n)
{
	char *pbuf = c->shard->pbuf;
	size_t have = 0;
	c->rx = p;
	c->rxlen = n;
	while (c->state == CONN_OPEN) {
		int r = SSL_read(c->ssl, pbuf + have, (int)(SHARD_PLAIN_BUF - have));
		if (r > 0) {
			if (!c->tls_up) {
				c->tls_up = true;
				if (c->ops->tls_ready)
					c->ops->tls_ready(c);
			}
			have += (size_t)r;
			if (have == SHARD_PLAIN_BUF) {
				c->ops->data(c, pbuf, have);
				have = 0;
			}
			continue;
		}
		int e = SSL_get_error(c->ssl, r);
		/* What came before the end or the error goes up first. */
		if (have > 0) {
			c->ops->data(c, pbuf, have);
			if (c->state != CONN_OPEN)
				break;
		}
		if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
			if (!c->tls_up && SSL_is_init_finished(c->ssl)) {
				c->tls_up = true;
				if (c->ops->tls_ready)
					c->ops->tls_ready(c);
			}
			break;
		}
		unsigned long err = ERR_peek_error();
		conn_debug(c, "TLS %s: %s",
			   e == SSL_ERROR_ZERO_RETURN ? "closed" : "error",
			   err ? ERR_reason_error_string(err) : "eof");
		ERR_clear_error();
		/* Send any alert OpenSSL queued, then go. */
		conn_close(c);
		break;
	}
	c->rx = NULL;
	c->rxlen = 0;
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *b)
{
	struct conn *c = stream->data;
	if (nread == 0)
		return;
	if (nread < 0) {
		if (nread != UV_EOF)
			conn_debug(c, "read failed: %s", uv_strerror((int)nread));
		conn_abort(c);
		return;
	}
	STATS_ADD(bytes_in, (uint64_t)nread);
	if (c->state != CONN_OPEN)
		return;
	reading = c;
	if (c->ssl != NULL)
		read_tls(c, b->base, (size_t)nread);
	else
		c->ops->data(c, b->base, (size_t)nread);
	reading = NULL;
	if (c->rate != 0 && c->state == CONN_OPEN)
		rate_take(c, (size_t)nread);
}

struct conn *conn_current(void)
{
	return reading;
}

void conn_pause(struct conn *c)
{
	c->paused = true;
	if (c->state == CONN_OPEN)
		uv_read_stop((uv_stream_t *)&c->tcp);
}

void conn_resume(struct conn *c)
{
	c->paused = false;
	if (may_read(c) &&
	    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0)
		conn_abort(c);
}

void conn_throttle(struct conn *c)
{
	if (c->throttled || c->state != CONN_OPEN)
		return;
	struct throttled *t = &throttled[c->shard->id];
	if (t->n == t->cap) {
		t->cap = t->cap ? t->cap * 2 : 16;
		t->ids = xrealloc(t->ids, t->cap * sizeof(*t->ids));
	}
	t->ids[t->n++] = c->id;
	c->throttled = true;
	uv_read_stop((uv_stream_t *)&c->tcp);
	STATS_ADD(read_throttles, 1);
}

void conn_unthrottle_all(struct shard *s)
{
	struct throttled *t = &throttled[s->id];
	for (size_t i = 0; i < t->n; i++) {
		struct conn *c = hmap_get(&s->conns, hmap_u64(&t->ids[i]));
		if (c == NULL || !c->throttled)
			continue;
		c->throttled = false;
		if (may_read(c) &&
		    uv_read_start((uv_stream_t *)&c->tcp, on_alloc,
				  on_read) != 0)
			conn_abort(c);
	}
	free(t->ids);
	*t = (struct throttled){ 0 };
}

/* ---- setup ---- */

static void on_timer(uv_timer_t *t)
{
	struct conn *c = t->data;
	if (c->state == CONN_OPEN)
		c->ops->timeout(c);
}

void conn_set_timer(struct conn *c, uint64_t ms)
{
	if (c->state != CONN_OPEN)
		return;
	if (ms == 0)
		uv_timer_stop(&c->timer);
	else
		uv_timer_start(&c->timer, on_timer, ms, 0);
}

static void conn_init(struct conn *c, struct shard *s,
		      const struct conn_ops *ops, size_t max_output);

int conn_accept(struct conn *c, struct shard *s, int fd,
		const struct sockaddr *peer, const struct conn_ops *ops,
		size_t max_output)
{
	conn_init(c, s, ops, max_output);
	if (uv_tcp_open(&c->tcp, fd) != 0) {
		close(fd);
		conn_abort(c);
		return -1;
	}
	if (peer != NULL) {
		if (peer->sa_family == AF_INET6)
			uv_ip6_name((const struct sockaddr_in6 *)peer, c->ip,
				    sizeof(c->ip));
		else
			uv_ip4_name((const struct sockaddr_in *)peer, c->ip,
				    sizeof(c->ip));
		uv_tcp_nodelay(&c->tcp, 1);
	}
	if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0) {
		conn_abort(c);
		return -1;
	}
	return 0;
}

void conn_start_tls_with(struct conn *c, SSL *ssl)
{
	BUG_ON(c->ssl != NULL);
	c->ssl = ssl;
	BIO *bio = BIO_new(bio_method());
	BUG_ON(bio == NULL);
	BIO_set_data(bio, c);
	SSL_set_bio(c->ssl, bio, bio);
	if (!SSL_is_server(ssl)) {
		/* The client speaks first: queue the ClientHello. */
		int r = SSL_do_handshake(ssl);
		int e = SSL_get_error(ssl, r);
		if (r <= 0 && e != SSL_ERROR_WANT_READ &&
		    e != SSL_ERROR_WANT_WRITE) {
			ERR_clear_error();
			conn_abort(c);
		}
	}
}

void conn_start_tls(struct conn *c, size_t host_idx)
{
	conn_start_tls_with(c, tls_new_server(host_idx));
}

static void conn_init(struct conn *c, struct shard *s,
		      const struct conn_ops *ops, size_t max_output)
{
	c->ops = ops;
	c->shard = s;
	c->id = atomic_fetch_add(&next_conn_id, 1);
	c->max_output = max_output;
	c->state = CONN_OPEN;
	BUG_ON(uv_tcp_init(&s->loop, &c->tcp) != 0);
	BUG_ON(uv_timer_init(&s->loop, &c->timer) != 0);
	c->tcp.data = c;
	c->timer.data = c;
	c->handles_open = 2;
	atomic_fetch_add(&open_conns, 1);
	atomic_fetch_add(&s->nconns, 1);
	hmap_put(&s->conns, hmap_u64(&c->id), c);
}

static void on_connect(uv_connect_t *req, int status)
{
	struct conn *c = req->data;
	conn_connect_fn *cb = c->connect_cb;
	free(req);
	c->connect_cb = NULL;
	if (c->state != CONN_OPEN) /* closed meanwhile (UV_ECANCELED) */
		return;
	if (status == 0) {
		uv_tcp_nodelay(&c->tcp, 1);
		if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0)
			status = UV_EIO;
	}
	cb(c, status);
}

int conn_connect(struct conn *c, struct shard *s, const struct sockaddr *sa,
		 const struct conn_ops *ops, size_t max_output,
		 conn_connect_fn *cb)
{
	conn_init(c, s, ops, max_output);
	if (sa->sa_family == AF_INET6)
		uv_ip6_name((const struct sockaddr_in6 *)sa, c->ip, sizeof(c->ip));
	else
		uv_ip4_name((const struct sockaddr_in *)sa, c->ip, sizeof(c->ip));
	uv_connect_t *req = xmalloc(sizeof(*req));
	req->data = c;
	c->connect_cb = cb;
	int r = uv_tcp_connect(req, &c->tcp, sa, on_connect);
	if (r != 0) {
		free(req);
		c->connect_cb = NULL;
		conn_abort(c);
		return r;
	}
	return 0;
}
