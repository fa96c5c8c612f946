/*
 * parser.c - the streaming XMPP XML parser: expat in namespace mode below,
 * XML stream semantics (RFC 6120 §4.2-4.4, §4.9.3) and restricted XML
 * (RFC 6120 §11) above; see parser.h and docs/internals/xml.md.
 *
 * Positions are byte offsets in the input of the current expat parser
 * (XML_GetCurrentByteIndex). Input goes to expat in slices cut so that no
 * unit (a first-level element, or the bytes before one) ever has more than
 * max_stanza + 1 bytes fed before the limits are checked: expat's buffer,
 * the pending text and the tree stay bounded by the limits, whatever the
 * size of a feed.
 *
 * Between stanzas a stream holds no expat parser at all: once a feed ends
 * at a stanza boundary (or pauses, or the stream is over) expat and the
 * text buffer are freed, and only the stream header's start tag is kept
 * (p->prime: its name and namespace declarations). The next feed creates a
 * parser and primes it with that tag, so parsing resumes in the same
 * namespace context with no byte parsed twice. Positions restart with
 * every parser; the whitespace count since the last stanza is carried over
 * (gap_carry), so limits do not depend on how input was split.
 */
#include <expat.h>
#include <limits.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#include "../core/buf.h"
#include "../core/bug.h"
#include "../core/stats.h"
#include "../core/thread_exit.h"
#include "../core/xmalloc.h"
#include "../xmpp/ns.h"
#include "parser.h"

/* Separates URI, local name and prefix in expat's names. Expat refuses it
 * inside namespace URIs (CVE-2022-25236), and names cannot contain it, so
 * splitting is unambiguous. */
#define NS_SEP '\n'
/* Tree memory of a stanza: about 4 bytes per input byte, plus slack. */
#define ARENA_FACTOR 4
#define ARENA_SLACK (16 * 1024)
/* A partial token this small (or under max_stanza / 4) is always reparsed:
 * rescanning it costs about what the read that brought the bytes did. */
#define REPARSE_SMALL 4096
/* Bytes expat may rescan for forced reparses of larger partial tokens in
 * one unit, per max_stanza. */
#define REPARSE_FACTOR 8
/* Bytes a parser takes at least before it is recycled (recycle_after). */
#define RECYCLE_MIN 4096
/* Sanity bound on max_stanza so positions never overflow. */
#define MAX_STANZA_CEIL ((size_t)1 << 30)

/*
 * Expat 2.6 (and distribution backports to 2.5) defer reparsing a partial
 * token until the buffered input has doubled, against quadratic rescans
 * (CVE-2023-52425). That can hold back a complete stanza until the peer
 * sends more, so deferral is switched off when the partial token is small,
 * and for a slice holding a '>' (the end of any tag) within a rescan
 * budget. The declaration is weak: older expat lacks it.
 */
XMLPARSEAPI(XML_Bool)
XML_SetReparseDeferralEnabled(XML_Parser parser, XML_Bool enabled);
#pragma weak XML_SetReparseDeferralEnabled

enum xs_state {
	XS_HEADER, /* waiting for the stream header */
	XS_OPEN,   /* header seen: stanzas flow */
	XS_CLOSED, /* </stream:stream> seen */
	XS_FAILED, /* err is set; no more input */
};

/* Why expat was stopped from a handler, during one feed. */
enum xs_halt {
	XS_RUN,
	XS_PAUSED, /* a callback returned XML_PAUSE */
	XS_ENDED,  /* the root closed; the rest is checked here, not by expat */
	XS_RECYCLE, /* expat has parsed enough: go on with a new parser */
	XS_ERROR,
};

struct xml_stream {
	XML_Parser xp; /* NULL between stanzas and before the first byte */
	const struct xml_limits *lim;
	const struct xml_stream_cbs *cbs;
	void *ud;
	enum xs_state state;
	enum xs_halt halt;
	bool priming;	    /* parsing the synthetic header of prime() */
	bool deferral;	    /* expat's reparse deferral is on */
	bool in_feed;	    /* catches calls from inside callbacks */
	unsigned depth;	    /* open elements, the root included */
	XML_Index fed;	    /* bytes given to this expat parser */
	XML_Index ev_end;   /* end of the last event */
	XML_Index gap_start; /* end of the last stanza or of the header */
	XML_Index stanza_start;
	XML_Index pause_pos;
	size_t reparse;	   /* bytes rescanned by forced reparses */
	size_t stream_off; /* caller bytes since reset, for encoding sniffing */
	size_t gap_carry;  /* whitespace since the last stanza, from parsers
			      already freed */
	unsigned long salt; /* expat's hash salt, one draw per stream */
	unsigned long parsers; /* expat parsers used, for statistics */
	unsigned long primes;  /* of them, made and primed (prime()) */
	struct arena *arena; /* the stanza being built, NULL between stanzas */
	struct xml_elem *cur; /* its innermost open element */
	struct xml_text *text_node; /* text node still growing, or NULL */
	struct buf text;	    /* its text once expat has split it */
	/* While the header is parsed: the root's xmlns declarations, written
	 * out, and its default namespace for stream_open. */
	struct buf root_decls;
	struct buf default_ns;
	/* The root's start tag, rebuilt: "<" qname root_decls ">". NULL
	 * before the header. */
	char *prime;
	size_t prime_len;
	enum stream_err err;
	const char *err_text;
};

static const char empty_str[] = "";

static size_t max_stanza(const struct xml_stream *p)
{
	size_t m = p->lim->max_stanza;
	return m < MAX_STANZA_CEIL ? m : MAX_STANZA_CEIL;
}

/*
 * Expat interns every element and attribute name it meets for the life of
 * the parser (its DTD tables), about ten bytes of memory per input byte
 * for distinct names. A peer whose reads never end between stanzas would
 * keep one parser forever: past this many bytes a parser is replaced at
 * the next stanza boundary.
 */
static size_t recycle_after(const struct xml_stream *p)
{
	return max_stanza(p) > RECYCLE_MIN ? max_stanza(p) : RECYCLE_MIN;
}

static size_t stanza_cap(const struct xml_stream *p)
{
	return ARENA_FACTOR * max_stanza(p) + ARENA_SLACK;
}

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static void set_error(struct xml_stream *p, enum stream_err err,
		      const char *text)
{
	if (p->err == STREAM_ERR_NONE) {
		p->err = err;
		p->err_text = text;
	}
	p->state = XS_FAILED;
}

/* From a handler: record the error and make XML_Parse return at once. */
static void cb_fail(struct xml_stream *p, enum stream_err err,
		    const char *text)
{
	if (p->halt != XS_RUN)
		return;
	set_error(p, err, text);
	p->halt = XS_ERROR;
	XML_StopParser(p->xp, XML_FALSE);
}

/* From a handler: suspend expat right after the current event. */
static void cb_stop(struct xml_stream *p, enum xs_halt why)
{
	p->halt = why;
	p->pause_pos = p->ev_end;
	BUG_ON(XML_StopParser(p->xp, XML_TRUE) != XML_STATUS_OK);
}

static void mark(struct xml_stream *p)
{
	p->ev_end = XML_GetCurrentByteIndex(p->xp) +
		    XML_GetCurrentByteCount(p->xp);
}

struct qname {
	struct str uri, local, prefix;
};

/* Splits expat's "uri\nlocal\nprefix" (or "uri\nlocal", or "local") into
 * views of expat's memory; the tree builder copies each part once. */
static void split_name(const char *name, struct qname *q)
{
	const char *s1 = strchr(name, NS_SEP);
	q->prefix = STR(empty_str, 0);
	if (s1 == NULL) {
		q->uri = STR(empty_str, 0);
		q->local = str_c(name);
		return;
	}
	q->uri = STR(name, (size_t)(s1 - name));
	const char *l = s1 + 1;
	const char *s2 = strchr(l, NS_SEP);
	if (s2 == NULL) {
		q->local = str_c(l);
		return;
	}
	q->local = STR(l, (size_t)(s2 - l));
	q->prefix = str_c(s2 + 1);
}

static unsigned count_attrs(const XML_Char **atts)
{
	unsigned n = 0;
	while (atts[2 * n] != NULL)
		n++;
	return n;
}

static int build_attrs(struct arena *a, struct xml_elem *e,
		       const XML_Char **atts)
{
	struct xml_attr **tail = &e->attrs;
	for (; *atts != NULL; atts += 2) {
		struct qname q;
		split_name(atts[0], &q);
		struct xml_attr *at = xml_attr_new(a, q.uri, q.local,
						   str_c(atts[1]));
		if (at == NULL)
			return -1;
		*tail = at;
		tail = &at->next;
	}
	return 0;
}

/* The element of a start tag, appended to parent if not NULL. NULL when
 * the arena's cap is reached. */
static struct xml_elem *build_elem(struct arena *a, struct xml_elem *parent,
				   const XML_Char *name, const XML_Char **atts)
{
	struct qname q;
	split_name(name, &q);
	struct xml_elem *e = parent ? xml_add_child(a, parent, q.uri, q.local)
				    : xml_elem_new(a, q.uri, q.local);
	if (e == NULL || build_attrs(a, e, atts) < 0)
		return NULL;
	return e;
}

/*
 * Text: the first piece of a text node is copied straight into the tree
 * (the common case: one piece per node). Expat splits text at entity and
 * character references, CDATA sections and feed boundaries; further pieces
 * gather in p->text and the node gets one copy at the next tag, so text
 * fed a byte at a time stays linear.
 */
static int text_piece(struct xml_stream *p, const char *s, size_t len)
{
	if (len == 0)
		return 0;
	if (p->text_node == NULL) {
		if (xml_add_text(p->arena, p->cur, STR(s, len)) < 0)
			return -1;
		p->text_node = (struct xml_text *)p->cur->last_child;
		return 0;
	}
	if (p->text.len == 0)
		buf_append_str(&p->text, p->text_node->text);
	buf_append(&p->text, s, len);
	return 0;
}

static int text_flush(struct xml_stream *p)
{
	struct xml_text *t = p->text_node;
	p->text_node = NULL;
	if (t == NULL || p->text.len == 0)
		return 0;
	struct str s = arena_strdup(p->arena, buf_str(&p->text));
	p->text.len = 0;
	if (s.p == NULL)
		return -1;
	t->text = s;
	return 0;
}

/* Saves the root's start tag for prime(), in one exact-size allocation:
 * it is all an idle stream keeps of its header. */
static void save_prime(struct xml_stream *p, const struct qname *q)
{
	size_t pre = q->prefix.len ? q->prefix.len + 1 : 0;
	size_t n = 1 + pre + q->local.len + p->root_decls.len + 1;
	char *t = xmalloc(n);
	t[0] = '<';
	if (pre) {
		memcpy(t + 1, q->prefix.p, q->prefix.len);
		t[pre] = ':';
	}
	memcpy(t + 1 + pre, q->local.p, q->local.len);
	if (p->root_decls.len)
		memcpy(t + 1 + pre + q->local.len, p->root_decls.data,
		       p->root_decls.len);
	t[n - 1] = '>';
	free(p->prime);
	p->prime = t;
	p->prime_len = n;
	buf_reset(&p->root_decls);
}

static void root_open(struct xml_stream *p, const XML_Char *name,
		      const XML_Char **atts)
{
	if (count_attrs(atts) > p->lim->max_attrs) {
		cb_fail(p, STREAM_ERR_POLICY_VIOLATION, "too many attributes");
		return;
	}
	if ((size_t)XML_GetCurrentByteCount(p->xp) > max_stanza(p)) {
		cb_fail(p, STREAM_ERR_POLICY_VIOLATION,
			"stream header too large");
		return;
	}
	struct arena *a = arena_new(stanza_cap(p));
	struct xml_elem *hdr = build_elem(a, NULL, name, atts);
	if (hdr == NULL) {
		arena_destroy(&a);
		cb_fail(p, STREAM_ERR_POLICY_VIOLATION,
			"stream header too large");
		return;
	}
	struct qname q;
	split_name(name, &q);
	save_prime(p, &q);
	p->depth = 1;
	p->state = XS_OPEN;
	p->gap_start = p->ev_end;
	p->reparse = 0;
	enum xml_cb_ret r = p->cbs->stream_open(p->ud, hdr,
						buf_str(&p->default_ns),
						q.prefix);
	arena_destroy(&a);
	buf_reset(&p->default_ns);
	if (r == XML_PAUSE)
		cb_stop(p, XS_PAUSED);
}

static void stanza_open(struct xml_stream *p)
{
	BUG_ON(p->arena != NULL);
	p->stanza_start = XML_GetCurrentByteIndex(p->xp);
	p->arena = arena_new(stanza_cap(p));
}

static void XMLCALL on_start(void *ud, const XML_Char *name,
			     const XML_Char **atts)
{
	struct xml_stream *p = ud;
	if (p->halt != XS_RUN)
		return;
	if (p->priming) {
		p->depth = 1;
		return;
	}
	mark(p);
	if (p->depth == 0) {
		root_open(p, name, atts);
		return;
	}
	/* depth counts the root, so it is the new element's level below it */
	if (p->depth > p->lim->max_depth) {
		cb_fail(p, STREAM_ERR_POLICY_VIOLATION,
			"elements nested too deep");
		return;
	}
	if (count_attrs(atts) > p->lim->max_attrs) {
		cb_fail(p, STREAM_ERR_POLICY_VIOLATION, "too many attributes");
		return;
	}
	if (p->depth == 1)
		stanza_open(p);
	struct xml_elem *e = NULL;
	if (text_flush(p) == 0)
		e = build_elem(p->arena, p->depth == 1 ? NULL : p->cur, name,
			       atts);
	if (e == NULL) {
		cb_fail(p, STREAM_ERR_POLICY_VIOLATION, "stanza too large");
		return;
	}
	p->cur = e;
	p->depth++;
}

static void root_close(struct xml_stream *p)
{
	p->state = XS_CLOSED;
	enum xml_cb_ret r = p->cbs->stream_close(p->ud);
	cb_stop(p, r == XML_PAUSE ? XS_PAUSED : XS_ENDED);
}

static void stanza_close(struct xml_stream *p)
{
	if ((size_t)(p->ev_end - p->stanza_start) > max_stanza(p)) {
		cb_fail(p, STREAM_ERR_POLICY_VIOLATION, "stanza too large");
		return;
	}
	struct arena *a = p->arena;
	struct xml_elem *e = p->cur;
	p->arena = NULL;
	p->cur = NULL;
	p->gap_start = p->ev_end;
	p->reparse = 0;
	if (p->cbs->stanza(p->ud, e, a) == XML_PAUSE)
		cb_stop(p, XS_PAUSED);
	else if ((size_t)p->ev_end > recycle_after(p))
		cb_stop(p, XS_RECYCLE);
}

static void XMLCALL on_end(void *ud, const XML_Char *name)
{
	struct xml_stream *p = ud;
	(void)name;
	if (p->halt != XS_RUN) {
		/* <stream:stream/> paused on its start: the end is the same
		 * tag, so it belongs before the pause too */
		if (p->halt == XS_PAUSED && p->depth == 1 &&
		    p->state == XS_OPEN) {
			p->depth = 0;
			p->state = XS_CLOSED;
			p->cbs->stream_close(p->ud);
		}
		return;
	}
	mark(p);
	if (--p->depth == 0) {
		root_close(p);
		return;
	}
	if (text_flush(p) < 0) {
		cb_fail(p, STREAM_ERR_POLICY_VIOLATION, "stanza too large");
		return;
	}
	if (p->depth == 1)
		stanza_close(p);
	else
		p->cur = p->cur->node.parent;
}

/* Character data at depth 1 is what separates stanzas: whitespace only
 * (RFC 6120 §11.7 keepalives), and no more of it than max_stanza. */
static void gap_text(struct xml_stream *p, const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (!is_space(s[i])) {
			cb_fail(p, STREAM_ERR_BAD_FORMAT,
				"text between stanzas");
			return;
		}
	}
	if ((size_t)(p->ev_end - p->gap_start) > max_stanza(p))
		cb_fail(p, STREAM_ERR_POLICY_VIOLATION,
			"too much whitespace between stanzas");
}

static void XMLCALL on_text(void *ud, const XML_Char *s, int len)
{
	struct xml_stream *p = ud;
	if (p->halt != XS_RUN)
		return;
	mark(p);
	if (p->depth == 1)
		gap_text(p, s, (size_t)len);
	else if (text_piece(p, s, (size_t)len) < 0)
		cb_fail(p, STREAM_ERR_POLICY_VIOLATION, "stanza too large");
}

/* CDATA section edges are events without data: keep ev_end current. */
static void XMLCALL on_cdata_edge(void *ud)
{
	struct xml_stream *p = ud;
	if (p->halt == XS_RUN)
		mark(p);
}

/* The parser is created for UTF-8, so expat ignores the declared encoding
 * and only reports it here (RFC 6120 §11.6). */
static void XMLCALL on_xml_decl(void *ud, const XML_Char *version,
				const XML_Char *encoding, int standalone)
{
	struct xml_stream *p = ud;
	(void)version;
	(void)standalone;
	if (p->halt != XS_RUN)
		return;
	mark(p);
	if (encoding != NULL && strcasecmp(encoding, "UTF-8") != 0)
		cb_fail(p, STREAM_ERR_UNSUPPORTED_ENCODING,
			"encoding other than UTF-8");
}

/* The root's declarations: the default namespace for stream_open, and all
 * of them for prime(). Declarations below the root need no bookkeeping:
 * expat resolves them. */
static void XMLCALL on_ns_decl(void *ud, const XML_Char *prefix,
			       const XML_Char *uri)
{
	struct xml_stream *p = ud;
	if (p->halt != XS_RUN || p->priming || p->depth != 0)
		return;
	if (prefix == NULL) {
		p->default_ns.len = 0;
		buf_append_c(&p->default_ns, uri ? uri : "");
	}
	if (uri == NULL)
		return;
	buf_append_c(&p->root_decls, " xmlns");
	if (prefix) {
		buf_append(&p->root_decls, ":", 1);
		buf_append_c(&p->root_decls, prefix);
	}
	buf_append(&p->root_decls, "='", 2);
	xml_escape(&p->root_decls, str_c(uri), true);
	buf_append(&p->root_decls, "'", 1);
}

/* RFC 6120 §11.1: no DTD, so no entity declarations and no way to reach
 * expat's entity expansion (billion laughs) at all. */
static void XMLCALL on_doctype(void *ud, const XML_Char *name,
			       const XML_Char *sysid, const XML_Char *pubid,
			       int has_internal_subset)
{
	(void)name;
	(void)sysid;
	(void)pubid;
	(void)has_internal_subset;
	cb_fail(ud, STREAM_ERR_RESTRICTED_XML, "DTD");
}

static void XMLCALL on_entity_decl(void *ud, const XML_Char *name,
				   int is_param, const XML_Char *value,
				   int value_len, const XML_Char *base,
				   const XML_Char *sysid, const XML_Char *pubid,
				   const XML_Char *notation)
{
	(void)name;
	(void)is_param;
	(void)value;
	(void)value_len;
	(void)base;
	(void)sysid;
	(void)pubid;
	(void)notation;
	cb_fail(ud, STREAM_ERR_RESTRICTED_XML, "entity declaration");
}

static void XMLCALL on_comment(void *ud, const XML_Char *data)
{
	(void)data;
	cb_fail(ud, STREAM_ERR_RESTRICTED_XML, "comment");
}

static void XMLCALL on_pi(void *ud, const XML_Char *target,
			  const XML_Char *data)
{
	(void)target;
	(void)data;
	cb_fail(ud, STREAM_ERR_RESTRICTED_XML, "processing instruction");
}

/* Expat's own errors. Entities other than the predefined five can only be
 * undefined here (no DTD), so an entity error is restricted XML. */
static enum stream_err map_expat_error(enum XML_Error e)
{
	switch (e) {
	case XML_ERROR_UNDEFINED_ENTITY:
	case XML_ERROR_RECURSIVE_ENTITY_REF:
	case XML_ERROR_ASYNC_ENTITY:
	case XML_ERROR_BINARY_ENTITY_REF:
	case XML_ERROR_ATTRIBUTE_EXTERNAL_ENTITY_REF:
	case XML_ERROR_EXTERNAL_ENTITY_HANDLING:
	case XML_ERROR_PARAM_ENTITY_REF:
	case XML_ERROR_ENTITY_DECLARED_IN_PE:
	case XML_ERROR_NOT_STANDALONE:
	case XML_ERROR_AMPLIFICATION_LIMIT_BREACH:
		return STREAM_ERR_RESTRICTED_XML;
	case XML_ERROR_UNBOUND_PREFIX:
		return STREAM_ERR_BAD_NAMESPACE_PREFIX;
	case XML_ERROR_UNKNOWN_ENCODING:
	case XML_ERROR_INCORRECT_ENCODING:
		return STREAM_ERR_UNSUPPORTED_ENCODING;
	case XML_ERROR_NO_MEMORY:
		return STREAM_ERR_RESOURCE_CONSTRAINT;
	default:
		return STREAM_ERR_NOT_WELL_FORMED;
	}
}

static void *xml_malloc(size_t n)
{
	return xmalloc(n);
}

static void *xml_realloc(void *ptr, size_t n)
{
	return xrealloc(ptr, n);
}

/* Out of memory aborts, as everywhere else (xmalloc.h). */
static const XML_Memory_Handling_Suite xml_mem = {
	.malloc_fcn = xml_malloc,
	.realloc_fcn = xml_realloc,
	.free_fcn = free,
};

static void set_deferral(struct xml_stream *p, bool on)
{
	if (p->deferral == on)
		return;
	p->deferral = on;
	if (XML_SetReparseDeferralEnabled != NULL)
		XML_SetReparseDeferralEnabled(p->xp, on ? XML_TRUE : XML_FALSE);
}

static void expat_setup(struct xml_stream *p)
{
	XML_Parser xp = p->xp;
	XML_SetUserData(xp, p);
	/* Without a salt expat draws one from the system for every parser;
	 * a stream makes a parser per busy spell, so it draws once. */
	if (p->salt != 0)
		XML_SetHashSalt(xp, p->salt);
	XML_SetReturnNSTriplet(xp, XML_TRUE);
	XML_SetParamEntityParsing(xp, XML_PARAM_ENTITY_PARSING_NEVER);
	XML_SetElementHandler(xp, on_start, on_end);
	XML_SetCharacterDataHandler(xp, on_text);
	XML_SetCdataSectionHandler(xp, on_cdata_edge, on_cdata_edge);
	XML_SetXmlDeclHandler(xp, on_xml_decl);
	XML_SetStartNamespaceDeclHandler(xp, on_ns_decl);
	XML_SetStartDoctypeDeclHandler(xp, on_doctype);
	XML_SetEntityDeclHandler(xp, on_entity_decl);
	XML_SetCommentHandler(xp, on_comment);
	XML_SetProcessingInstructionHandler(xp, on_pi);
	p->deferral = false;
	set_deferral(p, true);
}

/*
 * Each thread keeps expat parsers for the streams it runs, so that input
 * arriving between stanzas costs no parser set-up:
 *
 * - One reset parser (the spare) for the next stream that starts: a new
 *   parser mallocs its buffers, tag and binding structs on first use,
 *   which costs more than the stanza it then parses; a reset keeps them
 *   (and clears everything else, the hash salt included).
 * - Up to PRIMED_MAX parsers that stand inside an open stream between
 *   stanzas, one per saved start tag (p->prime). A feed that ends between
 *   stanzas leaves its parser here, and the next feed of any stream of
 *   this thread with the same start tag takes it, instead of priming a
 *   parser of its own and resetting it afterwards (together about a fifth
 *   of the server's CPU per message when reads carry one stanza each).
 *   Between stanzas expat holds nothing of a stream but the root's tag
 *   and namespace bindings, which the start tag determines, the names it
 *   has interned (bounded per parser by recycle_after) and its byte count,
 *   which the taking stream resumes from. Client streams of one client
 *   library share a start tag, so one parser serves all of them.
 *
 * Threads that end free theirs (core/thread_exit.h).
 */
#define PRIMED_MAX 4

struct primed {
	char *prime; /* the start tag (a copy); NULL: an unused slot */
	size_t prime_len;
	XML_Parser xp; /* NULL while a stream has it */
	XML_Index fed; /* bytes it has parsed */
	bool deferral;
	unsigned long used; /* the clock at its last put, for eviction */
};

struct thread_parsers {
	XML_Parser spare;
	struct primed primed[PRIMED_MAX];
	unsigned long clock;
};

static _Thread_local struct thread_parsers *thread_parsers;

void xml_thread_parsers_free(void)
{
	struct thread_parsers *t = thread_parsers;
	if (t == NULL)
		return;
	if (t->spare != NULL)
		XML_ParserFree(t->spare);
	for (size_t i = 0; i < PRIMED_MAX; i++) {
		if (t->primed[i].xp != NULL)
			XML_ParserFree(t->primed[i].xp);
		free(t->primed[i].prime);
	}
	free(t);
	thread_parsers = NULL;
}

static _Thread_local struct thread_exit parsers_exit = {
	.fn = xml_thread_parsers_free,
};

static struct thread_parsers *parsers_self(void)
{
	if (thread_parsers != NULL)
		return thread_parsers;
	BUG_ON(!thread_exit_arm(&parsers_exit));
	thread_parsers = xcalloc(1, sizeof(*thread_parsers));
	return thread_parsers;
}

static XML_Parser spare_take(void)
{
	struct thread_parsers *t = parsers_self();
	XML_Parser xp = t->spare;
	t->spare = NULL;
	return xp;
}

static void spare_put(XML_Parser xp)
{
	struct thread_parsers *t = parsers_self();
	if (t->spare != NULL || XML_ParserReset(xp, "UTF-8") != XML_TRUE)
		XML_ParserFree(xp);
	else
		t->spare = xp;
}

static struct primed *primed_find(struct thread_parsers *t, const char *prime,
				  size_t len)
{
	for (size_t i = 0; i < PRIMED_MAX; i++) {
		struct primed *e = &t->primed[i];
		if (e->prime != NULL && e->prime_len == len &&
		    memcmp(e->prime, prime, len) == 0)
			return e;
	}
	return NULL;
}

/* A slot for a start tag no slot has: an unused one, else the one put
 * least recently (its parser is freed). */
static struct primed *primed_slot(struct thread_parsers *t, const char *prime,
				  size_t len)
{
	struct primed *e = &t->primed[0];
	for (size_t i = 1; i < PRIMED_MAX && e->prime != NULL; i++) {
		struct primed *c = &t->primed[i];
		if (c->prime == NULL || c->used < e->used)
			e = c;
	}
	if (e->xp != NULL)
		spare_put(e->xp);
	free(e->prime);
	e->prime = xmalloc(len);
	memcpy(e->prime, prime, len);
	e->prime_len = len;
	e->xp = NULL;
	return e;
}

/* Takes the parser off the stream and frees the text buffer. Only at a
 * point where expat holds nothing the stream needs: between stanzas (what
 * it holds past a pause point is what the caller feeds again), or once
 * the stream is over. */
static XML_Parser expat_detach(struct xml_stream *p)
{
	BUG_ON(p->arena != NULL || p->text_node != NULL);
	XML_Parser xp = p->xp;
	p->xp = NULL;
	buf_reset(&p->text);
	return xp;
}

/* Gives up the parser (reset, to the spare), as expat_detach allows. */
static void expat_drop(struct xml_stream *p)
{
	if (p->xp != NULL)
		spare_put(expat_detach(p));
}

/* Between stanzas of an open stream, with nothing unparsed: the parser
 * goes to the thread's primed ones (or, when another parser with the
 * same start tag is there already, to the spare). */
static void primed_put(struct xml_stream *p)
{
	BUG_ON(p->state != XS_OPEN || p->depth != 1 || p->ev_end != p->fed);
	struct thread_parsers *t = parsers_self();
	struct primed *e = primed_find(t, p->prime, p->prime_len);
	if (e == NULL)
		e = primed_slot(t, p->prime, p->prime_len);
	if (e->xp != NULL) {
		expat_drop(p);
		return;
	}
	e->fed = p->fed;
	e->deferral = p->deferral;
	e->used = ++t->clock;
	e->xp = expat_detach(p);
}

/* Inside an open stream, at a parser that has been fed `fed` bytes and
 * stands between stanzas: positions go on from there; the whitespace
 * already seen since the last stanza still counts (gap_start may lie
 * before the parser's position). */
static void resume_at(struct xml_stream *p, XML_Index fed)
{
	p->depth = 1;
	p->fed = p->ev_end = fed;
	p->gap_start = p->fed - (XML_Index)p->gap_carry;
	p->gap_carry = 0;
	p->reparse = 0;
}

/* A parser some stream of this thread left with p's start tag, if any:
 * p goes on at its position. */
static bool primed_take(struct xml_stream *p)
{
	struct primed *e = primed_find(parsers_self(), p->prime, p->prime_len);
	if (e == NULL || e->xp == NULL)
		return false;
	p->xp = e->xp;
	e->xp = NULL;
	p->deferral = e->deferral;
	XML_SetUserData(p->xp, p);
	resume_at(p, e->fed);
	return true;
}

/* Everything but the limits and callbacks back to a fresh stream. */
static void state_init(struct xml_stream *p)
{
	arena_destroy(&p->arena);
	p->cur = NULL;
	p->text_node = NULL;
	expat_drop(p);
	p->state = XS_HEADER;
	p->halt = XS_RUN;
	p->priming = false;
	p->depth = 0;
	p->fed = p->ev_end = p->gap_start = 0;
	p->stanza_start = p->pause_pos = 0;
	p->reparse = p->stream_off = p->gap_carry = 0;
	buf_reset(&p->root_decls);
	buf_reset(&p->default_ns);
	free(p->prime);
	p->prime = NULL;
	p->prime_len = 0;
	p->err = STREAM_ERR_NONE;
	p->err_text = NULL;
}

struct xml_stream *xml_stream_new(const struct xml_limits *lim,
				  const struct xml_stream_cbs *cbs, void *ud)
{
	struct xml_stream *p = xcalloc(1, sizeof(*p));
	p->lim = lim;
	p->cbs = cbs;
	p->ud = ud;
	/* On failure the salt stays 0 and expat draws its own. */
	if (getrandom(&p->salt, sizeof(p->salt), GRND_NONBLOCK) !=
	    (ssize_t)sizeof(p->salt))
		p->salt = 0;
	state_init(p);
	return p;
}

void xml_stream_free(struct xml_stream *p)
{
	if (p == NULL)
		return;
	BUG_ON(p->in_feed);
	state_init(p);
	free(p);
}

void xml_stream_reset(struct xml_stream *p)
{
	BUG_ON(p->in_feed);
	state_init(p);
}

/* A new expat parser for an open stream, fed the saved start tag of the
 * root so that it has the same name and namespace bindings. */
static void prime(struct xml_stream *p)
{
	BUG_ON(p->prime == NULL || p->arena != NULL);
	p->priming = true;
	p->depth = 0;
	enum XML_Status st = XML_Parse(p->xp, p->prime, (int)p->prime_len,
				       XML_FALSE);
	BUG_ON(st != XML_STATUS_OK || p->depth != 1);
	p->priming = false;
	p->primes++;
	STATS_ADD(xml_primes, 1);
	resume_at(p, (XML_Index)p->prime_len);
}

/* Makes the expat parser a feed needs: a fresh one for a new stream; in
 * an open stream, a primed one of the thread's, else a new one primed. */
static void expat_make(struct xml_stream *p)
{
	static const XML_Char sep = NS_SEP;
	p->parsers++;
	STATS_ADD(xml_parsers, 1);
	if (p->state == XS_OPEN && primed_take(p))
		return;
	p->xp = spare_take();
	if (p->xp == NULL)
		p->xp = XML_ParserCreate_MM("UTF-8", &xml_mem, &sep);
	BUG_ON(p->xp == NULL);
	expat_setup(p);
	if (p->state == XS_OPEN)
		prime(p);
}

/* After a feed: between stanzas, or after the end, the stream keeps only
 * the saved start tag (and the whitespace count since the last stanza);
 * between stanzas its parser stays primed for the thread's next feed. */
static void expat_release(struct xml_stream *p)
{
	if (p->xp == NULL || p->state == XS_HEADER)
		return;
	if (p->state == XS_OPEN) {
		if (p->arena != NULL || p->ev_end != p->fed)
			return;
		p->gap_carry = (size_t)(p->ev_end - p->gap_start);
		primed_put(p);
		return;
	}
	/* over: a failed stream's partial stanza is of no use */
	arena_destroy(&p->arena);
	p->cur = NULL;
	p->text_node = NULL;
	expat_drop(p);
}

/* UTF-16 and UTF-32 show as a BOM or NUL bytes at the start, which are
 * never UTF-8 (RFC 6120 §11.6). */
static bool bad_encoding(const struct xml_stream *p, const char *data,
			 size_t len)
{
	for (size_t i = 0; i < len && p->stream_off + i < 2; i++) {
		unsigned char c = (unsigned char)data[i];
		if (c == 0 || (p->stream_off + i == 0 && c >= 0xFE))
			return true;
	}
	return false;
}

/* The bytes after </stream:stream>: whitespace, or nothing. */
static int trailing(struct xml_stream *p, const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (!is_space(s[i])) {
			set_error(p, STREAM_ERR_NOT_WELL_FORMED,
				  "data after the end of the stream");
			return -1;
		}
	}
	return 0;
}

/* Where the unit being received started: the open stanza, else the end
 * of the last event (the bytes after it are one partial token). */
static XML_Index unit_start(const struct xml_stream *p)
{
	return p->arena ? p->stanza_start : p->ev_end;
}

static size_t slice_len(const struct xml_stream *p, size_t left)
{
	XML_Index room = unit_start(p) + (XML_Index)max_stanza(p) + 1 - p->fed;
	BUG_ON(room < 1);
	size_t n = left < (size_t)room ? left : (size_t)room;
	return n < INT_MAX ? n : INT_MAX;
}

/* Force a reparse when the partial token is small, or when the slice may
 * complete a tag, within budget; else let expat wait for more input. */
static int choose_deferral(struct xml_stream *p, const char *s, size_t n)
{
	size_t pending = (size_t)(p->fed - p->ev_end);
	size_t small = max_stanza(p) / 4;
	if (pending <= (small < REPARSE_SMALL ? small : REPARSE_SMALL)) {
		set_deferral(p, false);
		return 0;
	}
	if (memchr(s, '>', n) == NULL) {
		set_deferral(p, true);
		return 0;
	}
	p->reparse += pending;
	if (p->reparse > REPARSE_FACTOR * max_stanza(p)) {
		set_error(p, STREAM_ERR_POLICY_VIOLATION,
			  "input fragmented to force rescans");
		return -1;
	}
	set_deferral(p, false);
	return 0;
}

static int check_pending(struct xml_stream *p)
{
	if ((size_t)(p->fed - unit_start(p)) <= max_stanza(p))
		return 0;
	set_error(p, STREAM_ERR_POLICY_VIOLATION,
		  p->arena ? "stanza too large"
			   : "too much data between stanzas");
	return -1;
}

static int parse_failed(struct xml_stream *p)
{
	if (p->halt != XS_ERROR) {
		enum XML_Error e = XML_GetErrorCode(p->xp);
		set_error(p, map_expat_error(e), XML_ErrorString(e));
	}
	p->halt = XS_RUN;
	return -1;
}

static int suspended(struct xml_stream *p, const char *data, size_t len,
		     XML_Index base, size_t *done)
{
	/* Pausing events end with a '>' fed in this call: never deferred. */
	BUG_ON(p->pause_pos < base || p->pause_pos > p->fed);
	size_t upto = (size_t)(p->pause_pos - base);
	enum xs_halt why = p->halt;
	p->halt = XS_RUN;
	p->stream_off += upto;
	if (why == XS_ENDED) {
		if (trailing(p, data + upto, len - upto) < 0)
			return -1;
		*done = len;
		return 0;
	}
	BUG_ON(why != XS_PAUSED && why != XS_RECYCLE);
	/* Expat holds the bytes past the pause point, which the caller
	 * feeds again (or feed() does, for XS_RECYCLE): the next slice
	 * starts with a new parser. */
	if (p->state == XS_OPEN) {
		p->gap_carry = (size_t)(p->ev_end - p->gap_start);
		expat_drop(p);
	}
	*done = upto;
	return why == XS_RECYCLE ? 2 : 1;
}

/* Feeds data to the current expat parser (made first if there is none).
 * Returns as feed(), or 2 when expat was recycled after *done bytes. */
static int feed_expat(struct xml_stream *p, const char *data, size_t len,
		      size_t *done)
{
	if (p->xp == NULL)
		expat_make(p);
	XML_Index base = p->fed;
	for (size_t off = 0; off < len;) {
		size_t n = slice_len(p, len - off);
		if (choose_deferral(p, data + off, n) < 0)
			return -1;
		p->fed += (XML_Index)n;
		enum XML_Status st =
			XML_Parse(p->xp, data + off, (int)n, XML_FALSE);
		off += n;
		if (st == XML_STATUS_SUSPENDED)
			return suspended(p, data, len, base, done);
		if (st != XML_STATUS_OK)
			return parse_failed(p);
		if (check_pending(p) < 0)
			return -1;
	}
	p->stream_off += len;
	*done = len;
	return 0;
}

static int feed(struct xml_stream *p, const char *data, size_t len,
		size_t *done)
{
	if (p->state == XS_FAILED)
		return -1;
	if (p->state == XS_CLOSED) {
		if (trailing(p, data, len) < 0)
			return -1;
		*done = len;
		return 0;
	}
	if (bad_encoding(p, data, len)) {
		set_error(p, STREAM_ERR_UNSUPPORTED_ENCODING,
			  "not UTF-8 (BOM or NUL byte)");
		return -1;
	}
	size_t off = 0;
	int r;
	do {
		size_t n = 0;
		r = feed_expat(p, data + off, len - off, &n);
		off += n;
	} while (r == 2 && off < len);
	*done = off;
	return r == 2 ? 0 : r;
}

int xml_stream_feed(struct xml_stream *p, const char *data, size_t len,
		    size_t *consumed_r, enum stream_err *err_r,
		    const char **text_r)
{
	BUG_ON(p->in_feed);
	p->in_feed = true;
	size_t done = 0;
	int r = feed(p, data, len, &done);
	expat_release(p);
	p->in_feed = false;
	if (consumed_r)
		*consumed_r = done;
	if (r < 0) {
		*err_r = p->err;
		*text_r = p->err_text;
	}
	return r;
}

bool xml_stream_idle(const struct xml_stream *p)
{
	switch (p->state) {
	case XS_HEADER:
		return p->fed == 0;
	case XS_OPEN:
		return p->xp == NULL ||
		       (p->arena == NULL && p->ev_end == p->fed);
	case XS_CLOSED:
		return true;
	case XS_FAILED:
		return false;
	}
	return false;
}

void xml_stream_get_stats(const struct xml_stream *p,
			  struct xml_stream_stats *st)
{
	st->parked = p->xp == NULL && p->arena == NULL && p->text.cap == 0 &&
		     p->root_decls.cap == 0 && p->default_ns.cap == 0;
	st->parked_bytes = st->parked ? sizeof(*p) + p->prime_len : 0;
	st->parsers = p->parsers;
	st->primes = p->primes;
}

/* ---- one element from stored bytes ---- */

struct parse_one {
	struct arena *dst;
	struct xml_elem *result;
};

static enum xml_cb_ret one_open(void *ud, const struct xml_elem *hdr,
				struct str default_ns, struct str prefix)
{
	(void)ud, (void)hdr, (void)default_ns, (void)prefix;
	return XML_CONTINUE;
}

static enum xml_cb_ret one_stanza(void *ud, struct xml_elem *x,
				  struct arena *a)
{
	struct parse_one *p = ud;
	if (p->result == NULL)
		p->result = xml_copy(p->dst, x);
	arena_destroy(&a);
	return XML_CONTINUE;
}

static enum xml_cb_ret one_close(void *ud)
{
	(void)ud;
	return XML_CONTINUE;
}

struct xml_elem *xml_parse_elem(struct arena *a, struct str bytes,
				struct str default_ns)
{
	static const struct xml_stream_cbs cbs = {
		.stream_open = one_open,
		.stanza = one_stanza,
		.stream_close = one_close,
	};
	/* The limits count the synthetic header too: leave room for it. */
	struct xml_limits lim = {
		.max_stanza = bytes.len + 4096,
		.max_depth = 64,
		.max_attrs = 256,
	};
	struct parse_one p = { .dst = a };
	struct xml_stream *xs = xml_stream_new(&lim, &cbs, &p);
	/* One feed for header and element: a stream frees its expat parser
	 * between feeds that end at a stanza boundary. */
	struct buf in = { 0 };
	buf_append_c(&in, "<stream:stream xmlns:stream='" NS_STREAMS
			  "' xmlns='");
	buf_append_xml_escaped(&in, default_ns, true);
	buf_append_c(&in, "'>");
	buf_append_str(&in, bytes);
	enum stream_err err;
	const char *why;
	bool ok = xml_stream_feed(xs, in.data, in.len, NULL, &err, &why) == 0;
	buf_reset(&in);
	xml_stream_free(xs);
	return ok ? p.result : NULL;
}

bool xml_elem_readable(struct str bytes)
{
	struct arena *scratch = arena_new(0);
	bool ok = xml_parse_elem(scratch, bytes, STR_LIT("")) != NULL;
	arena_destroy(&scratch);
	return ok;
}
