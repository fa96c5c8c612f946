/*
 * control.c - the server side of the control socket; see control.h and
 * docs/internals/admin.md.
 *
 * Everything here runs on the main thread's loop, which otherwise only
 * waits for signals, so a slow or hostile client cannot delay a stanza.
 * Each client has a bounded input buffer (one request line), an idle
 * timer, and at most one request in progress: while the shards are asked
 * for their part (a gather), the client is not read. A gather outlives
 * its client if the client leaves first: it is answered to nobody.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "../core/arena.h"
#include "../core/bug.h"
#include "../core/conf.h"
#include "../core/hmap.h"
#include "../core/log.h"
#include "../core/server.h"
#include "../core/shard.h"
#include "../core/xmalloc.h"
#include "../router/route.h"
#include "../router/sessions.h"
#include "../xmpp/jid.h"
#include "control.h"
#include "ctlproto.h"
#include "report.h"

/* Connections the kernel holds until accepted; the limit on clients is
 * CTL_MAX_CLIENTS, applied after accepting (with an answer). */
#define CTL_BACKLOG 128

struct gather;

struct ctl_client {
	uv_pipe_t pipe;
	uv_timer_t timer;
	struct ctl_client *prev, *next;
	uint64_t id;
	int open_handles;  /* freed when both handles are closed */
	bool closing;      /* shut down or closed: no more requests */
	bool reading;
	bool draining;     /* answered and shut down: input is discarded
			      until the peer closes, so that closing with
			      unread input (a reset) does not lose the
			      answer */
	struct gather *g;  /* the request in progress, or NULL */
	size_t inlen;
	char in[CTL_LINE_MAX];
	char who[64];      /* "uid 0 pid 123", for the log */
};

/* A status or metrics request waiting for every shard's part. */
struct gather {
	struct gather *next;   /* in ctl.done */
	struct ctl_client *cl; /* NULL once the client left */
	enum ctl_verb verb;
	atomic_uint pending;   /* shards yet to answer */
	struct shard_snap *snaps; /* one per shard */
};

struct gather_msg {
	struct shard_msg m;
	struct gather *g;
};

static struct {
	uv_loop_t *loop;
	uv_pipe_t listener;
	uv_async_t async;      /* a gather is complete */
	uv_mutex_t lock;       /* guards done */
	struct gather *done;
	struct ctl_client *clients;
	unsigned nclients;
	uint64_t next_id;
	char *path;            /* set while the socket exists */
	bool open;
} ctl;

/* ---- clients: writing and closing ---- */

struct ctl_write {
	uv_write_t req;
	char data[];
};

static void on_written(uv_write_t *req, int status)
{
	(void)status; /* a client that went away is closed by its read */
	free(req);
}

static void client_send(struct ctl_client *cl, const char *p, size_t len)
{
	if (cl->closing)
		return;
	struct ctl_write *w = xmalloc(sizeof(*w) + len);
	memcpy(w->data, p, len);
	uv_buf_t b = uv_buf_init(w->data, (unsigned)len);
	if (uv_write(&w->req, (uv_stream_t *)&cl->pipe, &b, 1, on_written) < 0)
		free(w);
}

/* "OK n" and the n lines of body, or "ERR text". */
static void client_reply(struct ctl_client *cl, const struct buf *body)
{
	size_t lines = 0;
	for (size_t i = 0; i < body->len; i++)
		lines += body->data[i] == '\n';
	char head[32];
	int n = snprintf(head, sizeof(head), "OK %zu\n", lines);
	client_send(cl, head, (size_t)n);
	if (body->len > 0)
		client_send(cl, body->data, body->len);
}

static void client_error(struct ctl_client *cl, const char *text)
{
	char line[160];
	int n = snprintf(line, sizeof(line), "ERR %s\n", text);
	client_send(cl, line, (size_t)n);
}

static void on_client_closed(uv_handle_t *h)
{
	struct ctl_client *cl = h->data;
	if (--cl->open_handles == 0)
		free(cl);
}

static void client_close(struct ctl_client *cl)
{
	if (uv_is_closing((uv_handle_t *)&cl->pipe))
		return;
	cl->closing = true;
	if (cl->g != NULL)
		cl->g->cl = NULL; /* answered to nobody */
	cl->g = NULL;
	if (cl->prev)
		cl->prev->next = cl->next;
	else
		ctl.clients = cl->next;
	if (cl->next)
		cl->next->prev = cl->prev;
	ctl.nclients--;
	log_debug("control: client %llu (%s) closed",
		  (unsigned long long)cl->id, cl->who);
	uv_close((uv_handle_t *)&cl->pipe, on_client_closed);
	uv_close((uv_handle_t *)&cl->timer, on_client_closed);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
	struct ctl_client *cl = req->data;
	free(req);
	if (status < 0) /* includes UV_ECANCELED: closed meanwhile */
		client_close(cl);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b);
static void on_client_read(uv_stream_t *s, ssize_t nread,
			   const uv_buf_t *b);

/* Ends the stream after what is queued has been written, then discards
 * input until the peer closes; the idle timer bounds both. */
static void client_end(struct ctl_client *cl)
{
	if (cl->closing)
		return;
	uv_shutdown_t *req = xmalloc(sizeof(*req));
	req->data = cl;
	if (uv_shutdown(req, (uv_stream_t *)&cl->pipe, on_shutdown) < 0) {
		free(req);
		client_close(cl);
		return;
	}
	cl->closing = true;
	cl->draining = true;
	if (!cl->reading &&
	    uv_read_start((uv_stream_t *)&cl->pipe, on_alloc,
			  on_client_read) == 0)
		cl->reading = true;
}

static void on_idle_timeout(uv_timer_t *t)
{
	struct ctl_client *cl = t->data;
	log_debug("control: client %llu idle, closed",
		  (unsigned long long)cl->id);
	client_close(cl);
}

/* ---- status and metrics: asking the shards ---- */

static void describe_conn(struct str key, void *value, void *ud)
{
	(void)key;
	struct conn *c = value;
	struct shard_snap *snap = ud;
	if (c->ops->describe == NULL || conn_closing(c))
		return;
	snap->conns = xreallocarray(snap->conns, snap->nconns + 1,
				    sizeof(*snap->conns));
	struct conn_info *ci = &snap->conns[snap->nconns++];
	memset(ci, 0, sizeof(*ci));
	c->ops->describe(c, ci);
}

/* On shard s (or on the main thread, for a shard that has ended): its
 * part of the gather. The last shard to answer hands the gather back. */
static void on_gather_msg(struct shard *s, struct shard_msg *m)
{
	struct gather *g = ((struct gather_msg *)m)->g;
	free(m);
	struct shard_snap *snap = &g->snaps[s->id];
	snap->stats = shard_stats[s->id];
	if (!s->stopped_hook_ran)
		hmap_foreach(&s->conns, describe_conn, snap);
	if (atomic_fetch_sub(&g->pending, 1) != 1)
		return;
	uv_mutex_lock(&ctl.lock);
	g->next = ctl.done;
	ctl.done = g;
	uv_mutex_unlock(&ctl.lock);
	uv_async_send(&ctl.async);
}

static void gather_free(struct gather *g)
{
	for (unsigned i = 0; i < server.nshards; i++)
		free(g->snaps[i].conns);
	free(g->snaps);
	free(g);
}

static void client_resume(struct ctl_client *cl);

static void gather_answer(struct gather *g)
{
	struct ctl_client *cl = g->cl;
	if (cl != NULL) {
		struct proc_snap p = { .nshards = server.nshards };
		struct buf body = { 0 };
		report_proc(&p);
		if (g->verb == CTL_STATUS)
			report_status(&body, &p, g->snaps);
		else
			report_metrics(&body, &p, g->snaps);
		client_reply(cl, &body);
		buf_reset(&body);
		cl->g = NULL;
		client_resume(cl);
	}
	gather_free(g);
}

static void answer_done(void)
{
	uv_mutex_lock(&ctl.lock);
	struct gather *g = ctl.done;
	ctl.done = NULL;
	uv_mutex_unlock(&ctl.lock);
	while (g != NULL) {
		struct gather *next = g->next;
		gather_answer(g);
		g = next;
	}
}

static void on_async(uv_async_t *h)
{
	(void)h;
	answer_done();
}

static void gather_start(struct ctl_client *cl, enum ctl_verb verb)
{
	struct gather *g = xcalloc(1, sizeof(*g));
	g->cl = cl;
	g->verb = verb;
	g->snaps = xcalloc(server.nshards, sizeof(*g->snaps));
	atomic_init(&g->pending, server.nshards);
	cl->g = g;
	for (unsigned i = 0; i < server.nshards; i++) {
		struct gather_msg *m = xcalloc(1, sizeof(*m));
		m->m.fn = on_gather_msg;
		m->g = g;
		shard_post(&server.shards[i], &m->m);
	}
}

/* ---- kick and user-deleted ---- */

/* Parses arg as user@host[/resource] on one of our hosts. */
static int parse_account(struct arena *a, struct str arg, struct jid *j,
			 const char **error_r)
{
	if (jid_parse(a, arg, j, error_r) < 0)
		return -1;
	if (j->node.len == 0) {
		*error_r = "expected user@host";
		return -1;
	}
	if (conf_find_host(server.conf, j->domain.p, j->domain.len) < 0) {
		*error_r = "not a host of this server";
		return -1;
	}
	return 0;
}

/*
 * kick: RFC 6120 §4.9.3.14 <policy-violation/> ("the entity has violated
 * some local service policy"): the administrator ended the session. Not
 * <reset/> (§4.9.3.16), which tells the client to reconnect at once,
 * which would undo the kick.
 *
 * user-deleted: §4.9.3.12 <not-authorized/>: the session's
 * authentication no longer holds. Clients treat it as a failed login and
 * do not retry with the same credentials.
 */
static void do_kick(struct ctl_client *cl, const struct ctl_req *req)
{
	struct arena *a = arena_new(0);
	struct jid j;
	const char *why;
	if (parse_account(a, req->args[0], &j, &why) < 0) {
		client_error(cl, why);
		arena_destroy(&a);
		return;
	}
	struct str bare = jid_to_str(a, &j, true);
	struct sess_ref refs[SESS_MAX_RESOURCES];
	size_t n;
	bool deleted = req->verb == CTL_USER_DELETED;
	if (deleted && j.resource.len > 0) {
		client_error(cl, "expected a bare JID");
		arena_destroy(&a);
		return;
	}
	if (deleted)
		n = sessions_revoke(bare, uv_hrtime(), refs, ARRAY_SIZE(refs));
	else if (j.resource.len > 0)
		n = sessions_find(bare, j.resource, &refs[0]) ? 1 : 0;
	else
		n = sessions_find_all(bare, refs, ARRAY_SIZE(refs));
	for (size_t i = 0; i < n; i++)
		route_kick(&refs[i],
			   deleted ? STREAM_ERR_NOT_AUTHORIZED
				   : STREAM_ERR_POLICY_VIOLATION,
			   deleted ? "account deleted"
				   : "kicked by the administrator");
	log_info("control: %s %s %.*s (%zu session(s) ended)", cl->who,
		 deleted ? "revoked the deleted account" : "kicked",
		 STR_FMT(req->args[0]), n);
	struct buf body = { 0 };
	buf_printf(&body, "sessions %zu\n", n);
	client_reply(cl, &body);
	buf_reset(&body);
	arena_destroy(&a);
}

/* ---- clients: reading ---- */

static void handle_line(struct ctl_client *cl, struct str line)
{
	struct ctl_req req;
	const char *why;
	uv_timer_again(&cl->timer);
	if (ctl_req_parse(line, &req, &why) < 0) {
		log_debug("control: client %llu: bad request: %s",
			  (unsigned long long)cl->id, why);
		client_error(cl, why);
		return;
	}
	log_debug("control: client %llu: %s", (unsigned long long)cl->id,
		  ctl_verb_name(req.verb));
	switch (req.verb) {
	case CTL_PING: {
		struct buf body = { 0 };
		client_reply(cl, &body);
		break;
	}
	case CTL_STATUS:
	case CTL_METRICS:
		gather_start(cl, req.verb);
		break;
	case CTL_KICK:
	case CTL_USER_DELETED:
		do_kick(cl, &req);
		break;
	case CTL_VERB_COUNT:
		BUG_ON(1);
	}
}

/* Handles the complete lines in the buffer, one at a time: a request
 * that waits for the shards stops it (and reading) until answered. */
static void process_input(struct ctl_client *cl)
{
	while (!cl->closing && cl->g == NULL) {
		char *lf = memchr(cl->in, '\n', cl->inlen);
		if (lf == NULL)
			break;
		size_t n = (size_t)(lf - cl->in);
		handle_line(cl, STR(cl->in, n));
		memmove(cl->in, lf + 1, cl->inlen - n - 1);
		cl->inlen -= n + 1;
	}
	if (cl->closing || cl->g != NULL)
		return;
	if (cl->inlen == sizeof(cl->in)) {
		client_error(cl, "request too long");
		client_end(cl);
	}
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
	(void)suggested;
	static char discard[4096];
	struct ctl_client *cl = h->data;
	if (cl->draining) {
		b->base = discard;
		b->len = sizeof(discard);
		return;
	}
	/* Read no more than fits: the rest waits in the socket. */
	b->base = cl->in + cl->inlen;
	b->len = sizeof(cl->in) - cl->inlen;
}

static void on_client_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
	(void)b;
	struct ctl_client *cl = s->data;
	if (nread == 0)
		return;
	if (nread < 0) {
		client_close(cl);
		return;
	}
	if (cl->draining)
		return;
	cl->inlen += (size_t)nread;
	process_input(cl);
	if (cl->g != NULL && cl->reading && !cl->closing) {
		uv_read_stop(s);
		cl->reading = false;
	}
}

static void client_resume(struct ctl_client *cl)
{
	process_input(cl);
	if (cl->closing || cl->g != NULL || cl->reading)
		return;
	if (uv_read_start((uv_stream_t *)&cl->pipe, on_alloc,
			  on_client_read) == 0)
		cl->reading = true;
	else
		client_close(cl);
}

/* The peer's uid and pid (SO_PEERCRED), for the log lines of actions. */
static void peer_who(struct ctl_client *cl)
{
	uv_os_fd_t fd;
	struct ucred uc;
	socklen_t len = sizeof(uc);
	snprintf(cl->who, sizeof(cl->who), "unknown peer");
	if (uv_fileno((uv_handle_t *)&cl->pipe, &fd) == 0 &&
	    getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &uc, &len) == 0)
		snprintf(cl->who, sizeof(cl->who), "uid %u pid %d",
			 (unsigned)uc.uid, (int)uc.pid);
}

static void on_connection(uv_stream_t *server_handle, int status)
{
	if (status < 0)
		return;
	struct ctl_client *cl = xcalloc(1, sizeof(*cl));
	cl->id = ++ctl.next_id;
	uv_pipe_init(ctl.loop, &cl->pipe, 0);
	uv_timer_init(ctl.loop, &cl->timer);
	cl->pipe.data = cl;
	cl->timer.data = cl;
	cl->open_handles = 2;
	cl->next = ctl.clients;
	if (ctl.clients)
		ctl.clients->prev = cl;
	ctl.clients = cl;
	ctl.nclients++;
	if (uv_accept(server_handle, (uv_stream_t *)&cl->pipe) < 0) {
		client_close(cl);
		return;
	}
	peer_who(cl);
	log_debug("control: client %llu connected (%s)",
		  (unsigned long long)cl->id, cl->who);
	uv_timer_start(&cl->timer, on_idle_timeout, CTL_IDLE_TIMEOUT_MS,
		       CTL_IDLE_TIMEOUT_MS);
	if (ctl.nclients > CTL_MAX_CLIENTS) {
		log_warnx("control: too many clients, refused %s", cl->who);
		client_error(cl, "too many clients");
		client_end(cl);
		return;
	}
	client_resume(cl);
}

/* ---- the socket ---- */

static char *path_error(const char *path, const char *what)
{
	size_t n = strlen(path) + strlen(what) + 32;
	char *e = xmalloc(n);
	snprintf(e, n, "control socket %s: %s", path, what);
	return e;
}

/* A socket file left at path: another server's (fail), or a crashed
 * one's (remove it). Returns 0 when path is free now. */
static int clear_stale(const char *path, char **error_r)
{
	struct stat st;
	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : (*error_r = path_error(path,
						 strerror(errno)), -1);
	if (!S_ISSOCK(st.st_mode)) {
		*error_r = path_error(path, "exists and is not a socket");
		return -1;
	}
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int rc = fd < 0 ? -1 : connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	int err = errno;
	if (fd >= 0)
		close(fd);
	if (rc == 0) {
		*error_r = path_error(path, "another stanzad is running "
					    "(it answers on this socket)");
		return -1;
	}
	if (err != ECONNREFUSED) {
		*error_r = path_error(path, strerror(err));
		return -1;
	}
	if (unlink(path) < 0) {
		*error_r = path_error(path, strerror(errno));
		return -1;
	}
	log_warnx("control: removed stale socket %s (left by a crash?)",
		  path);
	return 0;
}

int control_open(uv_loop_t *loop, const struct config *conf, char **error_r)
{
	char *path = control_path(conf);
	if (strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
		*error_r = path_error(path, "path too long for a Unix socket "
					    "(set control_socket)");
		free(path);
		return -1;
	}
	if (clear_stale(path, error_r) < 0) {
		free(path);
		return -1;
	}
	ctl.loop = loop;
	BUG_ON(uv_mutex_init(&ctl.lock) != 0);
	uv_pipe_init(loop, &ctl.listener, 0);
	uv_async_init(loop, &ctl.async, on_async);
	/* Created 0600 (not chmod'ed after: nobody else may connect in
	 * between). Only the main thread runs now. */
	mode_t old = umask(0177);
	int rc = uv_pipe_bind(&ctl.listener, path);
	umask(old);
	if (rc == 0)
		ctl.path = path;
	if (rc == 0)
		rc = uv_listen((uv_stream_t *)&ctl.listener, CTL_BACKLOG,
			       on_connection);
	if (rc < 0) {
		*error_r = path_error(path, uv_strerror(rc));
		if (ctl.path == NULL)
			free(path);
		ctl.open = true;
		control_close();
		return -1;
	}
	ctl.open = true;
	log_info("control socket %s", path);
	return 0;
}

void control_close(void)
{
	if (!ctl.open)
		return;
	ctl.open = false;
	/* The shards have stopped: every gather has been handed back. */
	answer_done();
	while (ctl.clients != NULL)
		client_close(ctl.clients);
	uv_close((uv_handle_t *)&ctl.listener, NULL);
	uv_close((uv_handle_t *)&ctl.async, NULL);
	if (ctl.path != NULL && unlink(ctl.path) < 0 && errno != ENOENT)
		log_warn("control: cannot remove %s", ctl.path);
	free(ctl.path);
	ctl.path = NULL;
	uv_mutex_destroy(&ctl.lock);
}
