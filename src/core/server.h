/*
 * server.h - the process-wide state every subsystem may read: the loaded
 * configuration, the store and the shards. Set up once by main() before the
 * shards start and read-only afterwards.
 */
#ifndef STANZAD_SERVER_H
#define STANZAD_SERVER_H

#include <time.h>

struct config;
struct shard;
struct store;

struct server {
	const struct config *conf;
	struct store *store;
	struct shard *shards;
	unsigned nshards;
	time_t started;
};

extern struct server server;

#endif
