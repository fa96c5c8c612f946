/*
 * accounts.h - user accounts: (host, username) -> SCRAM credentials.
 *
 * Usernames are stored nodeprep'd and hosts nameprep'd; callers normalise
 * (jid_nodeprep/jid_nameprep) before calling. Synchronous: see store.h.
 */
#ifndef STANZAD_STORE_ACCOUNTS_H
#define STANZAD_STORE_ACCOUNTS_H

#include "../auth/scram_creds.h"
#include "store.h"

/* Returns 0 and fills *creds_r, 1 if there is no such account, or -1 on a
 * storage error (logged). */
int accounts_get(struct store *st, const char *host, const char *user,
		 struct scram_creds *creds_r);
/* Returns 0 if the account exists, 1 if not, -1 on error: for jobs that
 * must not write data for an account removed meanwhile. */
int accounts_exists(struct store *st, const char *host, const char *user);
/* Creates the account. Returns 0, 1 if it already exists, -1 on error. */
int accounts_create(struct store *st, const char *host, const char *user,
		    const struct scram_creds *creds);
/* Replaces the credentials. Returns 0, 1 if no such account, -1 on error. */
int accounts_set(struct store *st, const char *host, const char *user,
		 const struct scram_creds *creds);
/* Deletes the account. Returns 0, 1 if no such account, -1 on error. */
int accounts_delete(struct store *st, const char *host, const char *user);
/* Calls fn for each account of host in username order. Returns 0 or -1. */
typedef void accounts_list_fn(const char *user, void *ud);
int accounts_list(struct store *st, const char *host, accounts_list_fn *fn,
		  void *ud);

/* The accounts schema, listed in store.c's store_schemas. */
extern const struct store_schema accounts_schema;

#endif
