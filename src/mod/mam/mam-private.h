/*
 * mam-private.h - shared by the files of the message archive (XEP-0313):
 * mod_mam.c (the module, which messages, ids), prefs.c (XEP-0441
 * preferences), writer.c (queued copies written in batches), query.c
 * (queries and metadata), request.c (reading a query). See
 * docs/internals/mam.md.
 */
#ifndef STANZAD_MOD_MAM_PRIVATE_H
#define STANZAD_MOD_MAM_PRIVATE_H

#include <stdbool.h>
#include <stdint.h>

#include "../module.h"
#include "mam.h"

#define NS_SID "urn:xmpp:sid:0"
#define NS_HINTS "urn:xmpp:hints"
#define NS_FORWARD "urn:xmpp:forward:0"
#define NS_DELAY "urn:xmpp:delay"

/* mod_mam.c: the clock of archive ids, in microseconds since the epoch
 * (mam.h: the ids themselves). */
int64_t mam_now_us(void);

/* prefs.c */
enum mam_decision { MAM_ARCHIVE, MAM_SKIP, MAM_ASK_ROSTER };
/* What account's preferences say about contact (a: scratch space). */
enum mam_decision mam_decide(struct arena *a, struct str account,
			     const struct jid *contact);
/* Loads every stored preference set into the cache (start-up). */
int mam_prefs_start(struct store *st);
void mam_prefs_stop(void);
iq_handler_fn mam_prefs_get, mam_prefs_set;

/* writer.c */
void mam_writer_start(void);
/* Writes what is queued; the writer's last work at shutdown. */
void mam_writer_stop(struct store *st);
/* Queues a copy of st for account's archive under id, with contact as
 * `with`; check_account: make sure the account exists first (the
 * recipient had no available resource); check_roster: archive only if
 * contact is in account's roster (default='roster'). */
void mam_archive(const struct stanza *st, const struct jid *account,
		 const struct jid *contact, int64_t id, bool check_account,
		 bool check_roster);
/* Applies mam.retention now. */
void mam_purge(struct store *st);

/* query.c */
/* Only the account itself reads or configures its archive. */
bool mam_own_archive(const struct iq_ctx *ctx);
iq_handler_fn mam_query_set, mam_query_form, mam_metadata_get;

#endif
