/*
 * stats.h - per-shard counters for `stanzactl metrics` and `status`.
 *
 * Each shard owns one struct shard_stats and is the only thread that
 * writes it: the hot paths add to plain integers, no atomics, no shared
 * cache lines (the records are aligned to a cache line). Other threads
 * never read them directly: the control socket asks every shard for a copy
 * through its inbox (src/admin/control.c), so the copy is taken on the
 * owning thread. Code running off a shard (the main thread, stanzactl,
 * unit tests) counts nothing.
 */
#ifndef STANZAD_CORE_STATS_H
#define STANZAD_CORE_STATS_H

#include <stdint.h>

#include "shard.h"

/* Indexes follow enum stanza_kind (router/route.h) and enum stream_err
 * (xmpp/errors.h); core cannot include them, route.c and stream.c check
 * the sizes with static_assert. */
#define STATS_KINDS 3
#define STATS_STREAM_ERRS 32

struct shard_stats {
	uint64_t stanzas_in[STATS_KINDS];  /* accepted from a stream */
	uint64_t stanzas_out[STATS_KINDS]; /* handed to a session, a
					      component or a remote server */
	uint64_t bytes_in, bytes_out;      /* on the sockets (TLS included) */
	uint64_t logins_ok, logins_failed; /* c2s SASL outcomes */
	uint64_t stream_errors[STATS_STREAM_ERRS]; /* sent, by condition */
	uint64_t stanza_errors;            /* error stanzas built */
	uint64_t pool_queued, pool_done;   /* thread-pool jobs (store) */
	uint64_t shard_reads;              /* store reads run on the shard
					      (store_queue_read) */
	uint64_t xml_parsers;              /* expat parsers set up for a
					      stream's input (xml/parser.c) */
	uint64_t xml_primes;               /* of them, made and primed with
					      a stream's start tag */
	uint64_t tls_bufs_reused;          /* OpenSSL record buffers taken
					      from the thread's cache
					      (net/tls.c) */
	uint64_t rate_limited;             /* client streams stopped for
					      limits.c2s_rate */
	uint64_t read_throttles;           /* streams stopped by a shared
					      writer's back-pressure
					      (conn_throttle) */
} __attribute__((aligned(64)));

extern struct shard_stats shard_stats[SHARDS_MAX];

/* The calling shard's counters, or NULL off a shard. */
static inline struct shard_stats *stats_self(void)
{
	struct shard *s = shard_self;
	return s != NULL ? &shard_stats[s->id] : NULL;
}

#define STATS_ADD(field, n)                               \
	do {                                              \
		struct shard_stats *st_ = stats_self();   \
		if (st_ != NULL)                          \
			st_->field += (n);                \
	} while (0)

#endif
