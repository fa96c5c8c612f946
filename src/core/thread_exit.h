/*
 * thread_exit.h - work to do when the calling thread ends.
 *
 * Per-thread caches (arena chunks, expat parsers, TLS record buffers) free
 * what they hold when their thread ends. Each has a _Thread_local hook,
 * armed when it first keeps something; one pthread key serves them all,
 * and its destructor runs the thread's armed hooks. (Not on the main
 * thread, whose end is the process's.)
 */
#ifndef STANZAD_CORE_THREAD_EXIT_H
#define STANZAD_CORE_THREAD_EXIT_H

#include <stdbool.h>

struct thread_exit {
	void (*fn)(void);	  /* frees what the thread's cache holds */
	struct thread_exit *next; /* the thread's other armed hooks */
	bool armed;
};

/* Arms h, thread-local storage of the caller, to run once at this
 * thread's exit (again if it is armed again). True when armed (or already
 * was); false if not, and the caller must then keep nothing. */
bool thread_exit_arm(struct thread_exit *h);

#endif
