/*
 * errors.h - typed XMPP error conditions, generated from errors.def.
 *
 * The peer's fault has one typed value and one exit path: stream errors end
 * the stream (stream_fail), stanza errors answer the stanza.
 */
#ifndef STANZAD_XMPP_ERRORS_H
#define STANZAD_XMPP_ERRORS_H

enum stream_err {
	STREAM_ERR_NONE = 0,
#define STREAM_ERR(id, name) STREAM_ERR_##id,
#include "errors.def"
#undef STREAM_ERR
};

enum stanza_err {
	STANZA_ERR_NONE = 0,
#define STANZA_ERR(id, name, type) STANZA_ERR_##id,
#include "errors.def"
#undef STANZA_ERR
};

/* The RFC 6120 condition element name, e.g. "policy-violation". */
const char *stream_err_name(enum stream_err e);
const char *stanza_err_name(enum stanza_err e);
/* The default error type of RFC 6120 §8.3.2, e.g. "cancel". */
const char *stanza_err_type(enum stanza_err e);

#endif
