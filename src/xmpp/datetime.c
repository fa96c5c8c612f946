/*
 * datetime.c - XEP-0082 date-time strings (XEP-0202 time, XEP-0203
 * delay stamps).
 */
#include <stdio.h>
#include <time.h>

#include "datetime.h"

void xep82_now(char out[XEP82_DATETIME_LEN])
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	struct tm tm;
	gmtime_r(&ts.tv_sec, &tm);
	/* Years past 9999 do not fit XEP-0082 anyway: clamp for the format
	 * checker and for the reader. */
	int year = tm.tm_year + 1900;
	snprintf(out, XEP82_DATETIME_LEN,
		 "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
		 year > 9999 ? 9999 : year, tm.tm_mon + 1, tm.tm_mday,
		 tm.tm_hour, tm.tm_min, tm.tm_sec,
		 (int)(ts.tv_nsec / 1000000));
}
