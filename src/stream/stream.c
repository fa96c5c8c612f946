/*
 * stream.c - helpers shared by the stream state machines; see stream.h.
 */
#include <stdio.h>

#include <openssl/rand.h>

#include "../core/bug.h"
#include "../core/conf.h"
#include "../core/server.h"
#include "../xmpp/ns.h"
#include "stream.h"

void stream_new_id(char id[STREAM_ID_LEN + 1])
{
	unsigned char rnd[STREAM_ID_LEN / 2];
	BUG_ON(RAND_bytes(rnd, sizeof(rnd)) != 1);
	for (size_t i = 0; i < sizeof(rnd); i++)
		snprintf(id + 2 * i, 3, "%02x", rnd[i]);
}

void stream_error_append(struct buf *b, enum stream_err err,
			 const char *text)
{
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
