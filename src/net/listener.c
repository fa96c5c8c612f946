/*
 * listener.c - SO_REUSEPORT listening sockets per shard; see listener.h.
 */
#include <arpa/inet.h>
#include <errno.h>
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
	uv_tcp_t tcp;
	const struct listener_conf *lc;
	listener_accept_fn *fn;
	struct shard *shard;
};

static int *fds; /* [shard * nlisteners + i] */
static size_t nfds;

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

int listeners_bind(const struct config *conf, unsigned nshards,
		   char **error_r)
{
	nfds = (size_t)nshards * conf->nlisteners;
	fds = xcalloc(nfds, sizeof(*fds));
	for (size_t i = 0; i < nfds; i++)
		fds[i] = -1;
	for (unsigned s = 0; s < nshards; s++)
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

static void on_connection(uv_stream_t *server, int status)
{
	struct listener *l = server->data;
	if (status < 0) {
		log_warnx("accept: %s", uv_strerror(status));
		return;
	}
	l->fn(l->shard, server, l->lc);
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
		BUG_ON(uv_tcp_init(&s->loop, &l->tcp) != 0);
		l->tcp.data = l;
		size_t k = s->id * conf->nlisteners + i;
		BUG_ON(uv_tcp_open(&l->tcp, fds[k]) != 0);
		fds[k] = -1; /* the handle owns it now */
		BUG_ON(uv_listen((uv_stream_t *)&l->tcp, 1024, on_connection) !=
		       0);
	}
}

static void on_listener_closed(uv_handle_t *h)
{
	struct listener *l = h->data;
	struct shard *s = l->shard;
	if (--s->nlisteners == 0) {
		free(s->listeners);
		s->listeners = NULL;
	}
}

void listeners_stop(struct shard *s)
{
	struct listener *ls = s->listeners;
	size_t n = s->nlisteners;
	for (size_t i = 0; i < n; i++)
		uv_close((uv_handle_t *)&ls[i].tcp, on_listener_closed);
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
