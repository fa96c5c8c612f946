/*
 * log.c - leveled logging to stderr, one line per call, with a UTC
 * timestamp and the thread's name. One fprintf per line keeps lines whole
 * across shard threads (stdio locks the stream per call).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"

static enum log_level log_level = LOG_LEVEL_INFO;
static _Thread_local const char *thread_name = "main";

static const char *const level_names[] = {
	[LOG_LEVEL_ERROR] = "error",
	[LOG_LEVEL_WARN] = "warn",
	[LOG_LEVEL_INFO] = "info",
	[LOG_LEVEL_DEBUG] = "debug",
};

const char *log_level_name(enum log_level l)
{
	return l <= LOG_LEVEL_DEBUG ? level_names[l] : "?";
}

int log_level_parse(const char *name, enum log_level *l_r)
{
	for (int i = 0; i <= LOG_LEVEL_DEBUG; i++)
		if (strcmp(name, level_names[i]) == 0) {
			*l_r = (enum log_level)i;
			return 0;
		}
	return -1;
}

void log_set_level(enum log_level l)
{
	log_level = l;
}

enum log_level log_get_level(void)
{
	return log_level;
}

void log_set_thread_name(const char *name)
{
	thread_name = name;
}

void log_vmsg(enum log_level l, const char *fmt, va_list ap)
{
	if (l > log_level)
		return;
	char line[2048];
	vsnprintf(line, sizeof(line), fmt, ap);
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	struct tm tm;
	gmtime_r(&ts.tv_sec, &tm);
	fprintf(stderr, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %-5s [%s] %s\n",
		tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
		tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000,
		log_level_name(l), thread_name, line);
}

void log_msg(enum log_level l, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_vmsg(l, fmt, ap);
	va_end(ap);
}

void log_warn(const char *fmt, ...)
{
	int saved = errno;
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	log_msg(LOG_LEVEL_WARN, "%s: %s", line, strerror(saved));
}

_Noreturn void fatalx(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_vmsg(LOG_LEVEL_ERROR, fmt, ap);
	va_end(ap);
	exit(1);
}
