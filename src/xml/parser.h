/*
 * parser.h - the streaming XMPP XML parser (expat underneath, with limits).
 *
 * One struct xml_stream per XML stream. Bytes go in with xml_stream_feed()
 * in pieces of any size; the parser calls back on the stream header, on
 * every complete first-level element (a stanza, or <starttls/>, <auth/>...)
 * and on the closing </stream:stream>. Each stanza arrives as a tree in a
 * fresh capped arena whose ownership passes to the callback.
 *
 * Limits are enforced as bytes arrive, before tree memory is allocated:
 * bytes of one first-level element (max_stanza; also applied to bytes
 * between stanzas), element depth and attributes per element. Restricted
 * XML (RFC 6120 §11.1) is refused: DTDs, entity declarations and references
 * other than the five predefined and character references, comments and
 * processing instructions (the XML declaration itself is allowed, with no
 * encoding other than UTF-8). Non-whitespace text between stanzas is
 * bad-format.
 *
 * Memory: a feed that ends between stanzas (or pauses, or ends the stream)
 * leaves the stream parked: no expat parser and no buffers, only the
 * stream header's start tag (tens of bytes). The next feed gets a parser
 * again, transparently; an idle connection costs the struct and that tag.
 * Between stanzas the parser is left to the thread, ready for the next
 * feed of any of its streams with the same start tag (no new parser and
 * no re-parse of the header per read): a stream is fed and freed on one
 * thread, and threads that feed streams keep a few parsers each.
 */
#ifndef STANZAD_XML_PARSER_H
#define STANZAD_XML_PARSER_H

#include <stddef.h>

#include "../core/arena.h"
#include "../xmpp/errors.h"
#include "stanza.h"

struct xml_limits {
	size_t max_stanza;   /* bytes of one first-level element */
	unsigned max_depth;  /* element nesting below the stream root */
	unsigned max_attrs;  /* attributes (not counting xmlns decls) */
};

enum xml_cb_ret {
	XML_CONTINUE,
	XML_PAUSE, /* stop feeding; xml_stream_feed returns 1 */
};

struct xml_stream_cbs {
	/* The stream header. hdr lives in an arena freed after the call; it has
	 * the root's ns/name and its attributes (to, from, version, id,
	 * {NS_XML}lang). default_ns is the default namespace the header
	 * declared (empty if none); prefix is the prefix of the root element
	 * (empty if none). */
	enum xml_cb_ret (*stream_open)(void *ud, const struct xml_elem *hdr,
				       struct str default_ns, struct str prefix);
	/* A complete first-level element. The callee owns arena a (and so the
	 * tree) and must arena_destroy() it eventually. */
	enum xml_cb_ret (*stanza)(void *ud, struct xml_elem *stanza,
				  struct arena *a);
	/* </stream:stream>. */
	enum xml_cb_ret (*stream_close)(void *ud);
};

struct xml_stream;

/* Creates a parser. lim and cbs must outlive it. Never NULL. */
struct xml_stream *xml_stream_new(const struct xml_limits *lim,
				  const struct xml_stream_cbs *cbs, void *ud);
/* Frees the parser and any partial stanza. NULL is fine. */
void xml_stream_free(struct xml_stream *p);

/*
 * Feeds len bytes. Returns:
 *    0  all bytes consumed;
 *    1  a callback returned XML_PAUSE: *consumed_r bytes were consumed, up
 *       to and including the element that paused; the rest was not parsed
 *       and may be fed again (to this parser or, after xml_stream_reset, to
 *       a new stream);
 *   -1  the stream is broken: *err_r is the stream error to send
 *       (NOT_WELL_FORMED, RESTRICTED_XML, POLICY_VIOLATION, BAD_FORMAT,
 *       UNSUPPORTED_ENCODING, BAD_NAMESPACE_PREFIX) and *text_r a static
 *       human-readable reason. The parser must not be fed again.
 * consumed_r may be NULL.
 */
int xml_stream_feed(struct xml_stream *p, const char *data, size_t len,
		    size_t *consumed_r, enum stream_err *err_r,
		    const char **text_r);

/* Starts a new stream on the same parser object (after STARTTLS or SASL
 * success, RFC 6120 §5.4.3.3, §6.4.6): discards all parser state. */
void xml_stream_reset(struct xml_stream *p);

/* Parses one complete element from trusted stored bytes (e.g. what
 * xml_serialize wrote) as if it were a first-level element of a stream
 * whose default namespace is default_ns. Returns the tree copied into a,
 * or NULL if the bytes are not one well-formed element. */
struct xml_elem *xml_parse_elem(struct arena *a, struct str bytes,
				struct str default_ns);

/* True if xml_parse_elem can read bytes back (its depth, attribute and
 * memory limits are not a stream's): modules store only what they can
 * read again. */
bool xml_elem_readable(struct str bytes);

/* True when no partial stanza or unparsed bytes are held: the stream is at a
 * stanza boundary. */
bool xml_stream_idle(const struct xml_stream *p);

struct xml_stream_stats {
	/* No expat parser and no buffers besides the saved stream header
	 * (see above): before the first byte, after a feed that ended
	 * between stanzas, after the end. */
	bool parked;
	/* Heap bytes a parked stream holds, its struct included (else 0). */
	size_t parked_bytes;
	/* Expat parsers this stream has used: one per busy spell, and one
	 * more every time a parser has parsed max(max_stanza, 4 KiB). */
	unsigned long parsers;
	/* Of them, those made and primed with the stream's start tag; the
	 * others were taken ready from the thread's (see below). */
	unsigned long primes;
};

/* Frees the parsers this thread keeps for its streams (see the top): the
 * next feed of each stream makes and primes one. Threads free theirs
 * when they end; this is for tests of the priming path. */
void xml_thread_parsers_free(void);

/* Fills *st (for tests and the memory documentation). */
void xml_stream_get_stats(const struct xml_stream *p,
			  struct xml_stream_stats *st);

#endif
