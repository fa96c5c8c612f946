/*
 * vcard.h - the stored vCard (XEP-0054, mod_vcard.c) for other modules'
 * storage jobs (thread pool): the avatar conversion of XEP-0398.
 */
#ifndef STANZAD_MOD_VCARD_H
#define STANZAD_MOD_VCARD_H

#include "../core/arena.h"
#include "../store/store.h"
#include "../xml/stanza.h"

#define NS_VCARD "vcard-temp"
#define NS_VCARD_UPDATE "vcard-temp:x:update"

/* 0 and the account's vCard in *vcard_r (NULL: none stored), -1 on a
 * storage error or an unreadable stored vCard. */
int vcard_load(struct store *st, struct arena *a, const char *host,
	       const char *user, struct xml_elem **vcard_r);
/* Stores vcard as the account's vCard: 0; 1 when it is too large or
 * would not read back (nothing stored); -1 on a storage error. */
int vcard_save(struct store *st, const char *host, const char *user,
	       const struct xml_elem *vcard);

#endif
