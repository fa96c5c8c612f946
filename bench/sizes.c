/*
 * sizes.c - bench/sizes: what stanzad spends per connection and per session,
 * printed for BENCHMARKS.md (issue 5: at most 24 KiB per idle TLS session).
 *
 * First the sizeof of the fixed structures (the c2s connection, struct conn
 * and its libuv handles, struct sess_ref), then heap measured with
 * mallinfo2() around N real objects: the XML stream parser of a session,
 * session table entries, the c2s allocation itself, and OpenSSL's server
 * object after a TLS 1.3 handshake with stanzad's context settings. Unlike
 * bench/loadgen this links stanzad's libraries: they are what it measures.
 * Heap figures include malloc's chunk headers; kernel socket buffers and
 * fragmentation are not in them (the RSS per session of loadgen idle is).
 */
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <uv.h>

#include "core/xmalloc.h"
#include "net/conn.h"
#include "net/tls.h"
#include "router/sessions.h"
#include "stream/c2s.h"
#include "xml/parser.h"

#define N_XML 1000
#define N_SESS 1000
#define N_TLS 64

/* What an idle client's parser has seen: the header after SASL, the
 * bind and session iqs, a roster get and initial presence. */
static const char stream_head[] =
	"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
	"xmlns:stream='http://etherx.jabber.org/streams' to='bench.test' "
	"version='1.0' xml:lang='en'>"
	"<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:"
	"xmpp-bind'/></iq>"
	"<iq type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>"
	"<presence/>";

static size_t heap_used(void)
{
	struct mallinfo2 mi = mallinfo2();
	return mi.uordblks + mi.hblkhd;
}

static void row(const char *what, size_t bytes, const char *note)
{
	printf("%-46s %7zu B%s%s\n", what, bytes, note[0] ? "  " : "", note);
}

static void die(const char *what)
{
	fprintf(stderr, "sizes: %s\n", what);
	ERR_print_errors_fp(stderr);
	exit(1);
}

/* ---- sizeof ---- */

static void print_structs(void)
{
	struct c2s_sizes cs;
	c2s_sizes(&cs);
	printf("sizeof (bytes of the fixed structures)\n");
	row("struct c2s (one per client connection)", cs.c2s,
	    "includes struct conn");
	row("  struct conn", cs.conn, "");
	row("    uv_tcp_t", sizeof(uv_tcp_t), "");
	row("    uv_timer_t", sizeof(uv_timer_t), "");
	row("    uv_write_t", sizeof(uv_write_t), "");
	row("    uv_shutdown_t", sizeof(uv_shutdown_t), "");
	row("    struct buf (x2: output queue, in flight)",
	    sizeof(struct buf), "");
	row("struct sess_ref (session table entry's ref)",
	    sizeof(struct sess_ref), "");
}

/* ---- heap: c2s allocation and XML parser ---- */

static enum xml_cb_ret on_open(void *ud, const struct xml_elem *hdr,
			       struct str default_ns, struct str prefix)
{
	return XML_CONTINUE;
}

static enum xml_cb_ret on_stanza(void *ud, struct xml_elem *x,
				 struct arena *a)
{
	(*(unsigned *)ud)++;
	arena_destroy(&a);
	return XML_CONTINUE;
}

static enum xml_cb_ret on_close(void *ud)
{
	return XML_CONTINUE;
}

static const struct xml_stream_cbs xml_cbs = {
	.stream_open = on_open,
	.stanza = on_stanza,
	.stream_close = on_close,
};

static size_t heap_c2s(void)
{
	struct c2s_sizes cs;
	c2s_sizes(&cs);
	void **v = xcalloc(N_XML, sizeof(*v));
	size_t before = heap_used();
	for (size_t i = 0; i < N_XML; i++)
		v[i] = xcalloc(1, cs.c2s);
	size_t per = (heap_used() - before) / N_XML;
	for (size_t i = 0; i < N_XML; i++)
		free(v[i]);
	free(v);
	return per;
}

static size_t heap_xml(void)
{
	static const struct xml_limits lim = {
		.max_stanza = 256 * 1024, .max_depth = 32, .max_attrs = 64,
	};
	struct xml_stream **v = xcalloc(N_XML, sizeof(*v));
	unsigned stanzas = 0;
	size_t before = heap_used();
	for (size_t i = 0; i < N_XML; i++) {
		enum stream_err err;
		const char *text;
		v[i] = xml_stream_new(&lim, &xml_cbs, &stanzas);
		if (xml_stream_feed(v[i], stream_head, strlen(stream_head),
				    NULL, &err, &text) != 0)
			die(text);
	}
	size_t per = (heap_used() - before) / N_XML;
	if (stanzas != 3 * N_XML)
		die("the parser did not deliver the test stanzas");
	for (size_t i = 0; i < N_XML; i++)
		xml_stream_free(v[i]);
	free(v);
	return per;
}

/* ---- heap: session table ---- */

/* One account with one resource each, as the idle benchmark's accounts
 * have; a resource like the 16 hex digits c2s generates. */
static size_t heap_sessions(void)
{
	char bare[64], res[32];
	sessions_init(1);
	size_t before = heap_used();
	for (unsigned i = 0; i < N_SESS; i++) {
		struct sess_ref ref = { .conn_id = i + 1 }, old;
		snprintf(bare, sizeof(bare), "bench%u@bench.test", i + 1);
		snprintf(res, sizeof(res), "%016x", i * 2654435761u);
		if (sessions_bind(str_c(bare), str_c(res), ref, &old) != 0)
			die("sessions_bind");
	}
	size_t per = (heap_used() - before) / N_SESS;
	if (sessions_count() != N_SESS)
		die("session table count");
	sessions_fini();
	return per;
}

/* ---- heap: OpenSSL server object after a TLS 1.3 handshake ---- */

/* The server's own context (tls.c), for a fresh self-signed certificate
 * in a temporary directory. */
static SSL_CTX *server_ctx(void)
{
	char dir[] = "/tmp/stanzad-sizes-XXXXXX", cert[64], key[64];
	if (mkdtemp(dir) == NULL)
		die("mkdtemp");
	snprintf(cert, sizeof(cert), "%s/cert.pem", dir);
	snprintf(key, sizeof(key), "%s/cert.key", dir);
	const char *why;
	char *error = NULL;
	if (tls_make_self_signed("bench.test", cert, key, &why) < 0)
		die(why);
	SSL_CTX *ctx = tls_ctx_new(cert, key, &error);
	if (ctx == NULL)
		die(error);
	unlink(cert);
	unlink(key);
	rmdir(dir);
	return ctx;
}

/* The client side, in a child process so that its memory is not counted:
 * N_TLS handshakes in order, one byte of application data on each, then
 * it waits for the parent to close the sockets. */
static void client(int fds[][2])
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	SSL *ssl[N_TLS];
	if (ctx == NULL)
		die("client context");
	for (int i = 0; i < N_TLS; i++) {
		close(fds[i][0]);
		ssl[i] = SSL_new(ctx);
		SSL_set_fd(ssl[i], fds[i][1]);
		if (SSL_connect(ssl[i]) != 1)
			die("client handshake");
		if (SSL_write(ssl[i], "x", 1) != 1)
			die("client write");
	}
	char c;
	for (int i = 0; i < N_TLS; i++)
		while (SSL_read(ssl[i], &c, 1) > 0)
			;
	_exit(0);
}

static size_t heap_tls(const char **version_r)
{
	int fds[N_TLS][2];
	for (int i = 0; i < N_TLS; i++)
		if (socketpair(AF_UNIX, SOCK_STREAM, 0, fds[i]) != 0)
			die("socketpair");
	SSL_CTX *ctx = server_ctx();
	fflush(stdout);
	pid_t pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0)
		client(fds);
	SSL *ssl[N_TLS];
	size_t before = heap_used();
	for (int i = 0; i < N_TLS; i++) {
		char c;
		close(fds[i][1]);
		ssl[i] = SSL_new(ctx);
		SSL_set_fd(ssl[i], fds[i][0]);
		if (SSL_accept(ssl[i]) != 1 || SSL_read(ssl[i], &c, 1) != 1)
			die("server handshake");
	}
	size_t per = (heap_used() - before) / N_TLS;
	*version_r = SSL_get_version(ssl[0]);
	for (int i = 0; i < N_TLS; i++) {
		SSL_free(ssl[i]);
		close(fds[i][0]);
	}
	int status;
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
	    WEXITSTATUS(status) != 0)
		die("the TLS client failed");
	SSL_CTX_free(ctx);
	return per;
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	print_structs();
	size_t c2s = heap_c2s(), xml = heap_xml(), sess = heap_sessions();
	const char *version = "";
	size_t tls = heap_tls(&version);
	char note[96];
	if (c2s == 0) {
		/* a sanitizer's allocator: glibc's statistics stay at 0 */
		printf("\nheap: not measurable (malloc is not glibc's)\n");
		return 0;
	}
	printf("\nheap per object (mallinfo2, chunk headers included)\n");
	row("c2s allocation (xcalloc of struct c2s)", c2s, "");
	snprintf(note, sizeof(note), "after header, bind, roster get, "
		 "presence; mean of %d", N_XML);
	row("XML stream parser (expat + struct xml_stream)", xml, note);
	snprintf(note, sizeof(note), "one account, one resource; mean of %d",
		 N_SESS);
	row("session table entry", sess, note);
	snprintf(note, sizeof(note), "%s, idle after one record; mean of %d",
		 version, N_TLS);
	row("OpenSSL server SSL object", tls, note);
	row("sum per idle TLS session", c2s + xml + sess + tls,
	    "before kernel buffers and fragmentation");
	return 0;
}
