/*
 * datetime.h - XEP-0082 date-time strings.
 */
#ifndef STANZAD_XMPP_DATETIME_H
#define STANZAD_XMPP_DATETIME_H

#include <stdint.h>

#include "../core/str.h"

#define XEP82_DATETIME_LEN 96 /* room for any int, for the compiler */

/* Writes the current time in UTC as CCYY-MM-DDThh:mm:ss.sssZ. */
void xep82_now(char out[XEP82_DATETIME_LEN]);

/* Writes us (microseconds since the epoch) in UTC as
 * CCYY-MM-DDThh:mm:ss.ssssssZ. */
void xep82_format_us(int64_t us, char out[XEP82_DATETIME_LEN]);

/* Reads a XEP-0082 DateTime, CCYY-MM-DDThh:mm:ss[.s+](Z|(+|-)hh:mm), as
 * microseconds since the epoch (fractions beyond microseconds are cut).
 * Returns 0, or -1 if s is anything else (or out of years 0001-9999). */
int xep82_parse_us(struct str s, int64_t *us_r);

#endif
