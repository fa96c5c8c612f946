/*
 * ctl_server.h - stanzactl's side of the control socket (status, metrics,
 * kick): one request line, one answer (docs/internals/admin.md).
 */
#ifndef STANZAD_CLI_CTL_SERVER_H
#define STANZAD_CLI_CTL_SERVER_H

struct config;

/* How long stanzactl waits for the server's answer. */
#define CTL_CLIENT_TIMEOUT_S 10

/* Returned when no server answers on the socket (LSB "not running"). */
#define CTL_NOT_RUNNING 3

/*
 * Sends request (one line, no LF) to the server of conf. Returns 0 and
 * *body_r (malloc'ed: the answer's lines, caller frees), 1 when the server
 * answered ERR (*body_r is its reason), CTL_NOT_RUNNING when no server
 * listens on the socket, or -1 on any other failure (reported on stderr).
 */
int ctl_server_request(const struct config *conf, const char *request,
		       char **body_r);

#endif
