/*
 * stream.c - helpers shared by the stream state machines; see stream.h.
 */
#include <string.h>

#include <openssl/rand.h>

#include "../core/bug.h"
#include "../core/conf.h"
#include "../core/server.h"
#include "../core/stats.h"
#include "../xmpp/ns.h"
#include "stream.h"

/*
 * Each RAND_bytes call costs thousands of instructions and a getpid()
 * (the DRBG's fork check) whatever its size, so a shard draws bytes in
 * blocks and hands each out once.
 */
void stream_random_bytes(unsigned char *out, size_t n)
{
	static _Thread_local unsigned char pool[256];
	static _Thread_local size_t left;
	BUG_ON(n > sizeof(pool));
	if (left < n) {
		BUG_ON(RAND_bytes(pool, sizeof(pool)) != 1);
		left = sizeof(pool);
	}
	unsigned char *p = pool + sizeof(pool) - left;
	memcpy(out, p, n);
	memset(p, 0, n);
	left -= n;
}

void stream_new_id(char id[STREAM_ID_LEN + 1])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char rnd[STREAM_ID_LEN / 2];
	stream_random_bytes(rnd, sizeof(rnd));
	for (size_t i = 0; i < sizeof(rnd); i++) {
		id[2 * i] = hex[rnd[i] >> 4];
		id[2 * i + 1] = hex[rnd[i] & 15];
	}
	id[STREAM_ID_LEN] = '\0';
}

void stream_error_append(struct buf *b, enum stream_err err,
			 const char *text)
{
	if ((unsigned)err < STATS_STREAM_ERRS)
		STATS_ADD(stream_errors[err], 1);
	buf_printf(b, "<stream:error><%s xmlns='" NS_STREAM_ERRORS "'/>",
		   stream_err_name(err));
	if (text != NULL) {
		buf_append_c(b, "<text xmlns='" NS_STREAM_ERRORS
				"' xml:lang='en'>");
		buf_append_xml_escaped(b, str_c(text), false);
		buf_append_c(b, "</text>");
	}
	buf_append_c(b, "</stream:error></stream:stream>");
}

void stream_xml_limits(struct xml_limits *l)
{
	const struct limits_conf *lim = &server.conf->limits;
	*l = (struct xml_limits){
		.max_stanza = lim->max_stanza_size,
		.max_depth = lim->max_depth,
		.max_attrs = lim->max_attrs,
	};
}
