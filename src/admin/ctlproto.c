/*
 * ctlproto.c - parsing of control socket requests; see ctlproto.h.
 */
#include <assert.h>
#include <string.h>

#include <stdio.h>

#include "../core/bug.h"
#include "../core/conf.h"
#include "../core/xmalloc.h"
#include "ctlproto.h"

char *control_path(const struct config *conf)
{
	if (conf->control_socket != NULL)
		return xstrdup(conf->control_socket);
	size_t n = strlen(conf->data_dir) + sizeof("/" CTL_SOCKET_NAME);
	char *p = xmalloc(n);
	snprintf(p, n, "%s/" CTL_SOCKET_NAME, conf->data_dir);
	return p;
}

static const struct {
	const char *name;
	size_t min_args, max_args;
} verbs[] = {
	[CTL_PING] = { "ping", 0, 0 },
	[CTL_STATUS] = { "status", 0, 0 },
	[CTL_METRICS] = { "metrics", 0, 0 },
	[CTL_KICK] = { "kick", 1, 1 },
	[CTL_USER_DELETED] = { "user-deleted", 1, 1 },
};
static_assert(ARRAY_SIZE(verbs) == CTL_VERB_COUNT, "a name per verb");

const char *ctl_verb_name(enum ctl_verb v)
{
	return (size_t)v < ARRAY_SIZE(verbs) ? verbs[v].name : "?";
}

/* Bytes allowed in a word: printable ASCII and UTF-8 (JIDs), not
 * controls, DEL or space. */
static bool word_byte(unsigned char ch)
{
	return ch > 0x20 && ch != 0x7f;
}

/* Splits line into words at single or repeated spaces. Returns the count
 * or -1 when there are more than max. */
static int split(struct str line, struct str *words, size_t max,
		 const char **error_r)
{
	size_t n = 0, i = 0;
	while (i < line.len) {
		if (line.p[i] == ' ') {
			i++;
			continue;
		}
		size_t start = i;
		while (i < line.len && line.p[i] != ' ') {
			if (!word_byte((unsigned char)line.p[i])) {
				*error_r = "control character in request";
				return -1;
			}
			i++;
		}
		if (n == max) {
			*error_r = "too many arguments";
			return -1;
		}
		words[n++] = STR(line.p + start, i - start);
	}
	return (int)n;
}

int ctl_req_parse(struct str line, struct ctl_req *req_r,
		  const char **error_r)
{
	if (line.len > 0 && line.p[line.len - 1] == '\r')
		line.len--;
	if (line.len >= CTL_LINE_MAX) {
		*error_r = "request too long";
		return -1;
	}
	struct str words[1 + CTL_ARGS_MAX];
	int n = split(line, words, ARRAY_SIZE(words), error_r);
	if (n < 0)
		return -1;
	if (n == 0) {
		*error_r = "empty request";
		return -1;
	}
	for (size_t v = 0; v < ARRAY_SIZE(verbs); v++) {
		if (!str_eq_c(words[0], verbs[v].name))
			continue;
		size_t nargs = (size_t)n - 1;
		if (nargs < verbs[v].min_args || nargs > verbs[v].max_args) {
			*error_r = "wrong number of arguments";
			return -1;
		}
		req_r->verb = (enum ctl_verb)v;
		req_r->nargs = nargs;
		for (size_t i = 0; i < nargs; i++)
			req_r->args[i] = words[1 + i];
		return 0;
	}
	*error_r = "unknown request";
	return -1;
}
