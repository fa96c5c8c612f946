/*
 * datetime.h - XEP-0082 date-time strings.
 */
#ifndef STANZAD_XMPP_DATETIME_H
#define STANZAD_XMPP_DATETIME_H

#define XEP82_DATETIME_LEN 96 /* room for any int, for the compiler */

/* Writes the current time in UTC as CCYY-MM-DDThh:mm:ss.sssZ. */
void xep82_now(char out[XEP82_DATETIME_LEN]);

#endif
