/*
 * s2s_harness.h - what fuzz_s2s and fuzz_s2s_out share: one in-process
 * shard running real s2s streams, a resolver that fails at once, and the
 * loop that feeds a peer's bytes through a socketpair.
 */
#ifndef STANZAD_FUZZ_S2S_HARNESS_H
#define STANZAD_FUZZ_S2S_HARNESS_H

#include <stddef.h>
#include <stdint.h>

#include "core/shard.h"

extern struct shard harness_shard;

/* Loads config (its "DIR" replaced by a fresh temporary directory), sets
 * up TLS, the shard and s2s; name prefixes error messages. Aborts on
 * failure. */
void harness_init(const char *name, const char *config);

/* Writes data to peer (the remote server's end of the socketpair) while
 * the loop runs, closes the peer's write side, and aborts if the stream
 * outlives it; then stops the shard's s2s and closes peer. */
void harness_feed(const char *name, int peer, const uint8_t *data,
		  size_t size);

#endif
