/*
 * control.h - the control socket: how stanzactl talks to the running
 * server (status, metrics, kicking sessions). docs/internals/admin.md has
 * the protocol.
 *
 * A Unix stream socket (config control_socket, default
 * DATA_DIR/stanzad.ctl, mode 0600) served on the main thread's loop with
 * libuv. Requests that need the shards' state (status, metrics) ask every
 * shard for a copy through its inbox and answer when the last one is in;
 * nothing of a shard is read from the main thread.
 */
#ifndef STANZAD_ADMIN_CONTROL_H
#define STANZAD_ADMIN_CONTROL_H

#include <stddef.h>

#include <uv.h>

struct config;

/* Most clients at once; more are told so and closed. */
#define CTL_MAX_CLIENTS 16
/* A client that sends no complete request for this long is closed. */
#define CTL_IDLE_TIMEOUT_MS 10000

/* Binds and listens on loop (the main thread's), replacing a stale
 * socket left by a crash; fails if another server answers on it. Call
 * before the loop runs; connections are served from the next uv_run.
 * Returns 0, or -1 with *error_r (malloc'ed). */
int control_open(uv_loop_t *loop, const struct config *conf, char **error_r);

/* After the shards stopped: closes every client and the socket and
 * removes it. The loop must run once more to finish the closes. */
void control_close(void);

#endif
