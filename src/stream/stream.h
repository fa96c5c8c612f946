/*
 * stream.h - what the stream state machines (c2s, components) share: stream
 * ids, stream error elements, the parser limits from the configuration,
 * and the shape check of an iq.
 */
#ifndef STANZAD_STREAM_STREAM_H
#define STANZAD_STREAM_STREAM_H

#include <stdbool.h>

#include "../core/buf.h"
#include "../core/str.h"
#include "../xml/parser.h"
#include "../xmpp/errors.h"

/* Hex digits of a stream id. */
#define STREAM_ID_LEN 24

/* Unpredictable bytes from a per-thread block; n at most 256. */
void stream_random_bytes(unsigned char *out, size_t n);
/* A fresh random stream id (RFC 6120 §4.7.3: unpredictable). */
void stream_new_id(char id[STREAM_ID_LEN + 1]);

/* Appends the stream error err with an optional text and the closing
 * </stream:stream> (RFC 6120 §4.9.1); the caller has written its header. */
void stream_error_append(struct buf *b, enum stream_err err,
			 const char *text);

/* The parser limits of the configuration (limits.*). */
void stream_xml_limits(struct xml_limits *l);

#endif
