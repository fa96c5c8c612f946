/*
 * jid.h - XMPP addresses (RFC 6122 / RFC 7622 §3 part limits) with
 * stringprep normalisation through libidn: nodeprep for the localpart,
 * nameprep for the domainpart, resourceprep for the resourcepart. Each part
 * is at most 1023 bytes after preparation.
 *
 * A struct jid holds views of the normalised parts; an absent node or
 * resource has len 0. Parsed JIDs live in the arena given to jid_parse().
 */
#ifndef STANZAD_XMPP_JID_H
#define STANZAD_XMPP_JID_H

#include <stdbool.h>

#include "../core/arena.h"
#include "../core/buf.h"
#include "../core/str.h"

#define JID_PART_MAX 1023

struct jid {
	struct str node;     /* localpart; len 0 if absent */
	struct str domain;   /* never empty in a valid JID */
	struct str resource; /* len 0 if absent */
};

/*
 * Parses and normalises in. Returns 0 and fills *jid_r with NUL-terminated
 * views allocated in a, or -1 and sets *error_r to a static reason (invalid
 * characters, empty or oversized part, stringprep failure, arena cap).
 */
int jid_parse(struct arena *a, struct str in, struct jid *jid_r,
	      const char **error_r);

/* Prepare one part alone (e.g. a SASL username, a requested resource).
 * Same return convention; *out_r is allocated in a. */
int jid_nodeprep(struct arena *a, struct str in, struct str *out_r,
		 const char **error_r);
int jid_nameprep(struct arena *a, struct str in, struct str *out_r,
		 const char **error_r);
int jid_resourceprep(struct arena *a, struct str in, struct str *out_r,
		     const char **error_r);

/* Appends node@domain/resource (or the bare form) to b. Returns 0 or -1 on
 * b's max. */
int jid_to_buf(struct buf *b, const struct jid *j, bool bare);
/* Formats into a; returns the NUL-terminated string view (STR_NULL on cap). */
struct str jid_to_str(struct arena *a, const struct jid *j, bool bare);
/* The longest string form of a JID (3 x 1023 + 2), with room to spare. */
#define JID_TEXT_MAX 3200
/* Formats into buf, which holds any JID jid_parse made; returns the
 * NUL-terminated view. For lookups by JID on hot paths: no allocation. */
struct str jid_to_text(const struct jid *j, bool bare,
		       char buf[JID_TEXT_MAX]);

bool jid_eq(const struct jid *a, const struct jid *b);
bool jid_bare_eq(const struct jid *a, const struct jid *b);
static inline bool jid_is_bare(const struct jid *j)
{
	return j->resource.len == 0;
}

#endif
