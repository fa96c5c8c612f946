/*
 * private.h - private XML storage (XEP-0049, mod_private.c) for other
 * modules' storage jobs (thread pool): the bookmarks conversion of
 * XEP-0402 §6.
 */
#ifndef STANZAD_MOD_PRIVATE_H
#define STANZAD_MOD_PRIVATE_H

#include "../core/arena.h"
#include "../store/store.h"
#include "../xml/stanza.h"

/* 0 and the first stored element of namespace ns in *el_r (NULL: none),
 * -1 on a storage error or an unreadable stored value. */
int private_load(struct store *st, struct arena *a, const char *host,
		 const char *user, const char *ns, struct xml_elem **el_r);
/* Stores el (NULL or blank: deletes) as the account's one element of its
 * namespace: 0; 1 when it is too large or would not read back (nothing
 * stored); -1 on a storage error. */
int private_save(struct store *st, struct arena *a, const char *host,
		 const char *user, const struct xml_elem *el);

#endif
