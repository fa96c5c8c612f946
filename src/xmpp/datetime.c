/*
 * datetime.c - XEP-0082 date-time strings (XEP-0202 time, XEP-0203
 * delay stamps).
 */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
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

void xep82_format_us(int64_t us, char out[XEP82_DATETIME_LEN])
{
	int64_t sec = us >= 0 ? us / 1000000 : (us - 999999) / 1000000;
	int frac = (int)(us - sec * 1000000);
	time_t t = (time_t)sec;
	struct tm tm;
	if (gmtime_r(&t, &tm) == NULL)
		memset(&tm, 0, sizeof(tm));
	int year = tm.tm_year + 1900;
	snprintf(out, XEP82_DATETIME_LEN,
		 "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ",
		 year > 9999 ? 9999 : year < 0 ? 0 : year, tm.tm_mon + 1,
		 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, frac);
}

/* n decimal digits at *p (advanced), or -1. */
static int digits(const char **p, const char *end, int n)
{
	int v = 0;
	for (int i = 0; i < n; i++, (*p)++) {
		if (*p >= end || **p < '0' || **p > '9')
			return -1;
		v = v * 10 + (**p - '0');
	}
	return v;
}

static int expect(const char **p, const char *end, char c)
{
	if (*p >= end || **p != c)
		return -1;
	(*p)++;
	return 0;
}

static bool leap(int y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

int xep82_parse_us(struct str s, int64_t *us_r)
{
	static const int mdays[] = { 31, 28, 31, 30, 31, 30,
				     31, 31, 30, 31, 30, 31 };
	const char *p = s.p, *end = s.p + s.len;
	if (p == NULL)
		return -1;
	int y = digits(&p, end, 4);
	if (y < 1 || expect(&p, end, '-') < 0)
		return -1;
	int mo = digits(&p, end, 2);
	if (mo < 1 || mo > 12 || expect(&p, end, '-') < 0)
		return -1;
	int d = digits(&p, end, 2);
	int dmax = mdays[mo - 1] + (mo == 2 && leap(y));
	if (d < 1 || d > dmax || expect(&p, end, 'T') < 0)
		return -1;
	int h = digits(&p, end, 2);
	if (h < 0 || h > 23 || expect(&p, end, ':') < 0)
		return -1;
	int mi = digits(&p, end, 2);
	if (mi < 0 || mi > 59 || expect(&p, end, ':') < 0)
		return -1;
	int sec = digits(&p, end, 2);
	if (sec < 0 || sec > 60) /* 60: a leap second, read as :59.999999 */
		return -1;
	int64_t frac = 0;
	if (p < end && *p == '.') {
		p++;
		int n = 0;
		while (p < end && *p >= '0' && *p <= '9') {
			if (n < 6) {
				frac = frac * 10 + (*p - '0');
				n++;
			}
			p++;
		}
		if (n == 0)
			return -1;
		for (; n < 6; n++)
			frac *= 10;
	}
	if (sec == 60) {
		sec = 59;
		frac = 999999;
	}
	int64_t off = 0;
	if (p < end && *p == 'Z') {
		p++;
	} else if (p < end && (*p == '+' || *p == '-')) {
		int sign = *p++ == '-' ? -1 : 1;
		int oh = digits(&p, end, 2);
		if (oh < 0 || oh > 23 || expect(&p, end, ':') < 0)
			return -1;
		int om = digits(&p, end, 2);
		if (om < 0 || om > 59)
			return -1;
		off = sign * (oh * 3600 + om * 60);
	} else {
		return -1;
	}
	if (p != end)
		return -1;
	struct tm tm = { .tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d,
			 .tm_hour = h, .tm_min = mi, .tm_sec = sec };
	int64_t t = (int64_t)timegm(&tm) - off;
	*us_r = t * 1000000 + frac;
	return 0;
}
