/*
 * thread_exit.c - hooks run at a thread's exit; see thread_exit.h.
 */
#include <pthread.h>
#include <stddef.h>

#include "bug.h"
#include "thread_exit.h"

static pthread_key_t exit_key;
static pthread_once_t exit_once = PTHREAD_ONCE_INIT;
static _Thread_local struct thread_exit *armed;

static void run_hooks(void *unused)
{
	(void)unused;
	while (armed != NULL) {
		struct thread_exit *h = armed;
		armed = h->next;
		h->armed = false;
		h->fn();
	}
}

static void exit_key_init(void)
{
	BUG_ON(pthread_key_create(&exit_key, run_hooks) != 0);
}

bool thread_exit_arm(struct thread_exit *h)
{
	if (h->armed)
		return true;
	BUG_ON(pthread_once(&exit_once, exit_key_init) != 0);
	/* any non-NULL value: it is what makes the destructor run */
	if (pthread_setspecific(exit_key, &armed) != 0)
		return false;
	h->next = armed;
	armed = h;
	h->armed = true;
	return true;
}
