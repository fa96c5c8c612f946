/*
 * ctlproto.h - the request line of the control socket (docs/internals/
 * admin.md).
 *
 * A request is one line: a verb and its arguments separated by spaces,
 * ended by LF (a CR before it is allowed). The parser is shared by the
 * server and the fuzz target and takes untrusted bytes: anything it does
 * not accept is refused with a reason, never guessed at.
 */
#ifndef STANZAD_ADMIN_CTLPROTO_H
#define STANZAD_ADMIN_CTLPROTO_H

#include <stddef.h>

#include "../core/str.h"

/* Longest request line, LF included; longer ones end the connection. */
#define CTL_LINE_MAX 1024
#define CTL_ARGS_MAX 2

enum ctl_verb {
	CTL_PING,         /* ping: is anyone there */
	CTL_STATUS,       /* status: key value lines */
	CTL_METRICS,      /* metrics: Prometheus text format */
	CTL_KICK,         /* kick JID: end a session or all of an account's */
	CTL_USER_DELETED, /* user-deleted JID: revoke and end the sessions
			     of an account stanzactl just deleted */
	CTL_VERB_COUNT,
};

#define CTL_SOCKET_NAME "stanzad.ctl"

struct config;

/* The socket's path for conf (malloc'ed): control_socket, or
 * data_dir/stanzad.ctl. The server and stanzactl agree through it. */
char *control_path(const struct config *conf);

const char *ctl_verb_name(enum ctl_verb v);

struct ctl_req {
	enum ctl_verb verb;
	size_t nargs;
	struct str args[CTL_ARGS_MAX]; /* views into the line */
};

/* Parses line (without its LF; a trailing CR is ignored). Returns 0 and
 * fills *req_r, whose arguments point into line, or -1 and sets *error_r
 * (static text, for the "ERR" reply). */
int ctl_req_parse(struct str line, struct ctl_req *req_r,
		  const char **error_r);

#endif
