/*
 * caps.h - the server's XEP-0115 capabilities, for mod_disco.
 */
#ifndef STANZAD_MOD_CAPS_H
#define STANZAD_MOD_CAPS_H

#include <stdbool.h>

#include "../core/str.h"

#define CAPS_NODE "https://stanzad.org"

/* The verification string of the server's disco#info (XEP-0115 §5.1),
 * computed once from the module table. Static storage. */
const char *caps_ver(void);
/* True if node is CAPS_NODE "#" caps_ver() (XEP-0115 §6.2). */
bool caps_node_matches(struct str node);

/*
 * Clients' capabilities (XEP-0115 §6.3, the receiving side): what the
 * features behind a verification string are, learned once by asking one
 * entity that announced it and checking its answer hashes to it (§5.4),
 * then cached for the process (bounded: CAPS_CACHE_MAX strings).
 * Thread-safe: any shard may ask or learn.
 */
#define CAPS_CACHE_MAX 10000

struct jid;
struct xml_elem;

/* The <c/> of a presence (§4): its ver, hash and node, STR_NULL each when
 * the presence has none or it is not usable (no hash: legacy format). */
struct caps_ref {
	struct str ver, hash, node;
};
struct caps_ref caps_of(const struct xml_elem *presence);

/* Whether ver's features are known; whether they include feature (false
 * while unknown). */
bool caps_known(struct str ver);
bool caps_has_feature(struct str ver, struct str feature);

/* Makes c's features known: at once (fn(true, ud) before returning) when
 * they are, else by asking 'to' (the full JID that announced c) its
 * disco#info from 'from' (a host) unless the same ver is already being
 * asked; fn(ok, ud) runs when the answer came (ok: it verified and is
 * cached) or did not (timeout, error, a wrong hash), on whichever shard,
 * exactly once. */
typedef void caps_learned_fn(bool ok, void *ud);
void caps_learn(const struct jid *from, const struct jid *to,
		struct caps_ref c, caps_learned_fn *fn, void *ud);

/* The verification string of a disco#info <query/> (§5.1, §5.4) with
 * digest hash ("sha-1", "sha-256"...): 0 and the base64 text in *ver_r
 * (in a), -1 when the query breaks §5.4's rules (duplicate identities,
 * features or form types, a bad form) or the hash is unknown. */
struct arena;
int caps_compute(struct arena *a, const struct xml_elem *query,
		 struct str hash, struct str *ver_r);

/* Frees the cache (shutdown, after iq_requests_fini). */
void caps_fini(void);

#endif
