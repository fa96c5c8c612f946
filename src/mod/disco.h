/*
 * disco.h - the children of a disco#info answer (XEP-0030 §3.1), for the
 * server's own answer (mod_disco.c) and the services that answer for their
 * domains and rooms themselves.
 */
#ifndef STANZAD_MOD_DISCO_H
#define STANZAD_MOD_DISCO_H

#include "../core/arena.h"
#include "../xml/stanza.h"

/* Appends <identity category type [name]/> to q; name may be NULL. */
void disco_add_identity(struct arena *a, struct xml_elem *q,
			const char *category, const char *type,
			const char *name);
/* Appends <feature var/> to q. */
void disco_add_feature(struct arena *a, struct xml_elem *q, const char *var);

#endif
