/*
 * ctl_server.c - the control socket client; see ctl_server.h.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "../admin/ctlproto.h"
#include "../core/buf.h"
#include "../core/conf.h"
#include "../core/xmalloc.h"
#include "ctl_server.h"

/* Connects to path; CTL_NOT_RUNNING when nothing listens there. */
static int ctl_connect(const char *path, int *fd_r)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "stanzactl: control socket path too long: "
				"%s\n", path);
		return -1;
	}
	memcpy(sa.sun_path, path, strlen(path) + 1);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		perror("stanzactl: socket");
		return -1;
	}
	struct timeval tv = { .tv_sec = CTL_CLIENT_TIMEOUT_S };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
		*fd_r = fd;
		return 0;
	}
	int err = errno;
	close(fd);
	if (err == ENOENT || err == ECONNREFUSED)
		return CTL_NOT_RUNNING;
	fprintf(stderr, "stanzactl: cannot connect to %s: %s\n", path,
		strerror(err));
	return -1;
}

/* The number of complete lines in b after its first `skip` bytes. */
static size_t count_lines(const struct buf *b, size_t skip)
{
	size_t n = 0;
	for (size_t i = skip; i < b->len; i++)
		n += b->data[i] == '\n';
	return n;
}

/* Reads until the answer is complete: "ERR ...\n", or "OK n\n" and n
 * lines. Returns 0 or -1. */
static int read_answer(int fd, struct buf *b, size_t *head_len_r)
{
	for (;;) {
		char *lf = b->len ? memchr(b->data, '\n', b->len) : NULL;
		if (lf != NULL) {
			size_t head = (size_t)(lf - b->data) + 1;
			*head_len_r = head;
			if (strncmp(b->data, "OK ", 3) != 0)
				return 0;
			unsigned long want = strtoul(b->data + 3, NULL, 10);
			if (count_lines(b, head) >= want)
				return 0;
		}
		char chunk[4096];
		ssize_t n = read(fd, chunk, sizeof(chunk));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			fprintf(stderr, "stanzactl: %s from the server\n",
				n == 0 ? "incomplete answer"
				       : "no answer in time");
			return -1;
		}
		if (buf_append(b, chunk, (size_t)n) < 0)
			return -1;
	}
}

static int write_all(int fd, const char *p, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			perror("stanzactl: writing to the server");
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int ctl_server_request(const struct config *conf, const char *request,
		       char **body_r)
{
	char *path = control_path(conf);
	int fd = -1;
	int rc = ctl_connect(path, &fd);
	free(path);
	if (rc != 0)
		return rc;
	struct buf b = { .max = 16 * 1024 * 1024 };
	struct buf req = { 0 };
	buf_printf(&req, "%s\n", request);
	size_t head = 0;
	rc = write_all(fd, req.data, req.len) < 0 ||
			     read_answer(fd, &b, &head) < 0 ? -1 : 0;
	buf_reset(&req);
	close(fd);
	if (rc < 0) {
		buf_reset(&b);
		return -1;
	}
	bool ok = strncmp(b.data, "OK ", 3) == 0;
	size_t from = ok ? head : (strncmp(b.data, "ERR ", 4) == 0 ? 4 : 0);
	size_t to = ok ? b.len : head - 1;
	*body_r = str_xdup(STR(b.data + from, to - from));
	buf_reset(&b);
	return ok ? 0 : 1;
}
