/*
 * listener.c - SO_REUSEPORT listening sockets per shard, and the hand-over
 * of each new connection to the least loaded shard; see listener.h.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../core/bug.h"
#include "../core/conf.h"
#include "../core/log.h"
#include "../core/shard.h"
#include "../core/xmalloc.h"
#include "listener.h"

struct listener {
	uv_poll_t poll;
	uv_timer_t pause; /* out of file descriptors: try again later */
	int fd;
	const struct listener_conf *lc;
	listener_accept_fn *fn;
	struct shard *shard;
	int handles_open;
	/* Resting for want of descriptors since this time (uv_now), logged
	 * once; 0 when not. */
	uint64_t starved_since;
};

/* A connection on its way to the shard that takes it. */
struct handoff {
	struct shard_msg m;
	int fd;
	struct sockaddr_storage peer;
	const struct listener_conf *lc;
	listener_accept_fn *fn;
};

/* Connections accepted per poll callback: the rest wait for the next loop
 * iteration, so a flood of connections cannot stall everything else. */
#define ACCEPT_BATCH 64
/* How long a listener rests when the process is out of descriptors. */
#define EMFILE_PAUSE_MS 100

static int *fds; /* [shard * nlisteners + i] */
static size_t nfds;
static unsigned nshards;

static int bind_one(const struct listener_conf *lc, char **error_r)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	memset(&ss, 0, sizeof(ss));
	struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
	if (inet_pton(AF_INET, lc->address, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		s4->sin_port = htons(lc->port);
		sl = sizeof(*s4);
	} else if (inet_pton(AF_INET6, lc->address, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(lc->port);
		sl = sizeof(*s6);
	} else {
		*error_r = xstrdup("bad listener address");
		return -1;
	}
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
			0);
	int one = 1;
	if (fd < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0 ||
	    (ss.ss_family == AF_INET6 &&
	     setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0) ||
	    bind(fd, (struct sockaddr *)&ss, sl) < 0 || listen(fd, 1024) < 0) {
		char b[512];
		snprintf(b, sizeof(b), "cannot listen on %s port %u (%s): %s",
			 lc->address, lc->port, listener_type_name(lc->type),
			 strerror(errno));
		*error_r = xstrdup(b);
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

int listeners_bind(const struct config *conf, unsigned n, char **error_r)
{
	nshards = n;
	nfds = (size_t)n * conf->nlisteners;
	fds = xcalloc(nfds, sizeof(*fds));
	for (size_t i = 0; i < nfds; i++)
		fds[i] = -1;
	for (unsigned s = 0; s < n; s++)
		for (size_t i = 0; i < conf->nlisteners; i++) {
			int fd = bind_one(&conf->listeners[i], error_r);
			if (fd < 0) {
				listeners_free();
				return -1;
			}
			fds[s * conf->nlisteners + i] = fd;
		}
	for (size_t i = 0; i < conf->nlisteners; i++)
		log_info("listening on %s port %u (%s)",
			 conf->listeners[i].address, conf->listeners[i].port,
			 listener_type_name(conf->listeners[i].type));
	return 0;
}

/* The shard with the fewest connections, open or on their way; from
 * equals, s itself. */
static struct shard *least_loaded(struct shard *s)
{
	struct shard *best = s;
	unsigned least = atomic_load_explicit(&s->nconns, memory_order_relaxed) +
			 atomic_load_explicit(&s->incoming, memory_order_relaxed);
	for (unsigned i = 0; i < nshards; i++) {
		struct shard *o = &s->all[i];
		unsigned n =
			atomic_load_explicit(&o->nconns, memory_order_relaxed) +
			atomic_load_explicit(&o->incoming, memory_order_relaxed);
		if (n < least) {
			least = n;
			best = o;
		}
	}
	return best;
}

static void on_handoff(struct shard *s, struct shard_msg *m)
{
	struct handoff *h = (struct handoff *)m;
	atomic_fetch_sub(&s->incoming, 1);
	if (s->stopped_hook_ran) /* shutting down: nothing new starts */
		close(h->fd);
	else
		h->fn(s, h->fd, (struct sockaddr *)&h->peer, h->lc);
	free(h);
}

static void on_readable(uv_poll_t *p, int status, int events);

static void resume_listener(uv_timer_t *t)
{
	struct listener *l = t->data;
	uv_poll_start(&l->poll, UV_READABLE, on_readable);
}

static void on_readable(uv_poll_t *p, int status, int events)
{
	(void)events;
	struct listener *l = p->data;
	if (status < 0) {
		log_warnx("listener on port %u: %s", l->lc->port,
			  uv_strerror(status));
		return;
	}
	for (int i = 0; i < ACCEPT_BATCH; i++) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		int fd = accept4(l->fd, (struct sockaddr *)&ss, &sl,
				 SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			/* EMFILE, ENFILE, ENOBUFS, ENOMEM: the pending
			 * connections wait in the backlog meanwhile. Said
			 * once per spell, not at every retry. */
			if (l->starved_since == 0) {
				log_warn("accept on port %u", l->lc->port);
				l->starved_since = uv_now(p->loop) | 1;
			}
			uv_poll_stop(&l->poll);
			uv_timer_start(&l->pause, resume_listener,
				       EMFILE_PAUSE_MS, 0);
			return;
		}
		if (l->starved_since != 0) {
			log_info("accepting on port %u again after %" PRIu64
				 " ms", l->lc->port,
				 uv_now(p->loop) - l->starved_since);
			l->starved_since = 0;
		}
		struct shard *to = least_loaded(l->shard);
		if (to == l->shard) {
			l->fn(to, fd, (struct sockaddr *)&ss, l->lc);
			continue;
		}
		struct handoff *h = malloc(sizeof(*h));
		if (h == NULL) {
			close(fd);
			continue;
		}
		h->m.fn = on_handoff;
		h->fd = fd;
		memcpy(&h->peer, &ss, sizeof(ss));
		h->lc = l->lc;
		h->fn = l->fn;
		atomic_fetch_add(&to->incoming, 1);
		shard_post(to, &h->m);
	}
}

void listeners_start(struct shard *s, const struct config *conf,
		     listener_accept_fn *fn)
{
	struct listener *ls = xcalloc(conf->nlisteners, sizeof(*ls));
	s->listeners = ls;
	s->nlisteners = conf->nlisteners;
	for (size_t i = 0; i < conf->nlisteners; i++) {
		struct listener *l = &ls[i];
		l->lc = &conf->listeners[i];
		l->fn = fn;
		l->shard = s;
		size_t k = s->id * conf->nlisteners + i;
		l->fd = fds[k];
		fds[k] = -1; /* the listener owns it now */
		BUG_ON(uv_poll_init_socket(&s->loop, &l->poll, l->fd) != 0);
		BUG_ON(uv_timer_init(&s->loop, &l->pause) != 0);
		l->poll.data = l;
		l->pause.data = l;
		l->handles_open = 2;
		BUG_ON(uv_poll_start(&l->poll, UV_READABLE, on_readable) != 0);
	}
}

static void on_listener_closed(uv_handle_t *h)
{
	struct listener *l = h->data;
	struct shard *s = l->shard;
	if (--l->handles_open > 0)
		return;
	close(l->fd);
	if (--s->nlisteners == 0) {
		free(s->listeners);
		s->listeners = NULL;
	}
}

void listeners_stop(struct shard *s)
{
	struct listener *ls = s->listeners;
	size_t n = s->nlisteners;
	for (size_t i = 0; i < n; i++) {
		uv_close((uv_handle_t *)&ls[i].poll, on_listener_closed);
		uv_close((uv_handle_t *)&ls[i].pause, on_listener_closed);
	}
}

void listeners_free(void)
{
	for (size_t i = 0; i < nfds; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	free(fds);
	fds = NULL;
	nfds = 0;
}
