"""Idle sessions and their return (stanzad issue 5).

Between stanzas a session holds no XML parser: only the start tag of the
client's stream header is kept, and a parser primed with it is made when
bytes arrive again. These tests drive sessions through many stanzas, let
them go idle, and check that everything still works afterwards: stanzas
split across TLS records (separate reads) on both sides of the idle
transition, prefixes declared on the stream header, whitespace keepalives,
and a long pipelined burst (the parser is also replaced inside one read
after a few KiB, see src/xml/parser.c).
"""

import socket
import time
import xml.etree.ElementTree as ET

from OpenSSL import SSL

import rawstream
from conftest import metrics
from rawstream import NS_CLIENT, RawStream, q, stream_header

NS_P = 'urn:example:idle'
IDLE = 1.0  # seconds: long enough for every read to have been processed
PING = "<ping xmlns='urn:xmpp:ping'/>"


def login_with_header(server, user, extra=''):
    """Logged in, with `extra` attributes on the post-SASL stream header."""
    stream = RawStream(server.c2s_port)
    try:
        stream.secure()
        stream.authenticate(user, server.passwords[user], restart=False)
        stream.send(stream_header(extra=extra))
        stream.read_header()
        stream.features()
        stream.jid = stream.bind()
    except BaseException:
        stream.close()
        raise
    return stream


def next_message(stream, timeout=None):
    return stream.wait_for(lambda e: e.tag == q(NS_CLIENT, 'message'),
                           timeout)


def body(msg):
    return msg.findtext(q(NS_CLIENT, 'body'))


def send_prefixed(sender, receiver, ns, text, n):
    """sender sends receiver a message with <p:x p:n='n'/>, p bound on
    the sender's stream header: it arrives with p resolved to ns."""
    sender.send(f"<message to='{receiver.jid}' type='chat'>"
                f"<body>{text}</body><p:x p:n='{n}'/></message>")
    msg = next_message(receiver)
    assert body(msg) == text
    x = msg.find(q(ns, 'x'))
    assert x is not None, ET.tostring(msg)
    assert x.get(q(ns, 'n')) == str(n)


def assert_alive(stream):
    reply = stream.iq('get', PING, to='localhost')
    assert reply.get('type') == 'result', ET.tostring(reply)


def test_idle_after_many_stanzas_then_split(server):
    a = rawstream.logged_in(server, 'alice')
    b = rawstream.logged_in(server, 'bob')
    with a, b:
        # many stanzas, one record each
        for i in range(150):
            a.message(b.jid, f'one {i}')
        for i in range(150):
            assert body(next_message(b)) == f'one {i}'
        time.sleep(IDLE)
        # a stanza split over two records, the idle period in between:
        # the first read ends inside the stanza, so the parser stays
        a.send(f"<message to='{b.jid}' type='chat'><bo")
        time.sleep(IDLE)
        a.send('dy>across idle</body></message>')
        assert body(next_message(b)) == 'across idle'
        # a read that ends exactly between stanzas, then idle, then the
        # next stanza in three pieces
        a.send(f"<message to='{b.jid}' type='chat'><body>x</body>"
               '</message>\n ')
        assert body(next_message(b)) == 'x'
        time.sleep(IDLE)
        a.send(f"<message to='{b.jid}'")
        a.send(" type='chat'><body>after")
        time.sleep(IDLE)
        a.send(' idle</body></message>')
        assert body(next_message(b)) == 'after idle'
        assert_alive(a)
        assert_alive(b)


def test_header_prefix_survives_idle(server):
    """A prefix bound on the stream header is in scope after idle periods,
    and the stream's close tag still matches its prefixed root."""
    a = login_with_header(server, 'alice', extra=f"xmlns:p='{NS_P}'")
    b = rawstream.logged_in(server, 'bob')
    with a, b:
        for i in range(3):
            time.sleep(IDLE)
            send_prefixed(a, b, NS_P, f'p{i}', i)
        time.sleep(IDLE)
        a.close_stream()
        a.wait_stream_end()


def test_sessions_take_turns_with_one_parser(server):
    """Input on a session between stanzas takes the parser another session
    of the shard with the same stream header left between its stanzas,
    instead of priming one of its own (stanzad_xml_primes_total)."""
    a = rawstream.logged_in(server, 'alice')
    b = rawstream.logged_in(server, 'bob')
    with a, b:
        before = metrics(server)
        rounds = 30
        for i in range(rounds):
            for s in (a, b):
                reply = s.iq('get', PING, to='localhost')
                assert reply.get('type') == 'result', ET.tostring(reply)
        after = metrics(server)
        spells = (after['stanzad_xml_parsers_total'] -
                  before['stanzad_xml_parsers_total'])
        primes = (after['stanzad_xml_primes_total'] -
                  before['stanzad_xml_primes_total'])
        # one spell per ping: each waits for its reply
        assert spells >= 2 * rounds, spells
        assert primes <= 2, f'{primes} parsers primed for {spells} spells'


def test_record_buffers_come_from_the_cache(server):
    """An idle connection holds no TLS record buffers: OpenSSL frees the
    read buffer after every read and the write buffer after every write.
    The shard keeps the freed buffers and hands them out again, so a busy
    session's reads and replies do not allocate
    (stanzad_tls_buffers_reused_total)."""
    a = rawstream.logged_in(server, 'alice')
    with a:
        before = metrics(server)['stanzad_tls_buffers_reused_total']
        n = 40
        for i in range(n):
            assert_alive(a)
        reused = metrics(server)['stanzad_tls_buffers_reused_total'] - before
        # a read buffer per ping and a write buffer per reply, at least
        assert reused >= 2 * n, reused


def test_broken_stream_leaves_the_shared_parser_alone(server):
    """A session that takes turns with others on the shard's parser and
    then sends bad XML gets not-well-formed; the sessions with the same
    header go on, through the parser taken after the error too."""
    a = rawstream.logged_in(server, 'alice')
    b = rawstream.logged_in(server, 'bob')
    c = rawstream.logged_in(server, 'carol')
    with a, b, c:
        for s in (a, b, c):
            assert_alive(s)
        # a mismatched end tag inside a stanza, after a good one
        a.send("<iq type='get' id='ok' to='localhost'>" + PING + '</iq>'
               "<message><body>x</message>")
        a.expect_stream_error('not-well-formed')
        for i in range(5):
            for s in (b, c):
                assert_alive(s)
            b.message(c.jid, f'after {i}')
            assert body(next_message(c)) == f'after {i}'


def test_header_bindings_stay_apart(server):
    """Sessions whose stream headers bind one prefix to different
    namespaces take turns: each stanza resolves the prefix by its own
    stream's header."""
    ns_other = 'urn:example:idle-other'
    a = login_with_header(server, 'alice', extra=f"xmlns:p='{NS_P}'")
    c = login_with_header(server, 'carol', extra=f"xmlns:p='{ns_other}'")
    b = rawstream.logged_in(server, 'bob')
    with a, b, c:
        for i in range(10):
            for s, ns in ((a, NS_P), (c, ns_other)):
                send_prefixed(s, b, ns, f'{ns} {i}', i)


def test_keepalives_while_idle(server):
    """Whitespace keepalives (RFC 6120 §4.6.1) one at a time while idle."""
    a = rawstream.logged_in(server, 'alice')
    b = rawstream.logged_in(server, 'bob')
    with a, b:
        for _ in range(20):
            a.send(' ')
            time.sleep(0.05)
        time.sleep(IDLE)
        a.message(b.jid, 'still here')
        assert body(next_message(b)) == 'still here'


def test_pipelined_burst_then_idle(server):
    """One write of many stanzas with distinct element names (more than
    one parser's worth), then idle, then more."""
    a = rawstream.logged_in(server, 'alice')
    b = rawstream.logged_in(server, 'bob')
    with a, b:
        burst = ''.join(
            f"<message to='{b.jid}' type='chat'><body>burst {i}</body>"
            f"<x{i} xmlns='urn:example:n{i}' a{i}='v'/></message>"
            for i in range(300))
        a.send(burst)
        for i in range(300):
            msg = next_message(b)
            assert body(msg) == f'burst {i}'
            assert msg.find(q(f'urn:example:n{i}', f'x{i}')) is not None
        time.sleep(IDLE)
        a.message(b.jid, 'after burst')
        assert body(next_message(b)) == 'after burst'
        assert_alive(a)


def corked(stream, send):
    """Whatever send() writes on the stream's socket leaves in one TCP
    segment (TCP_CORK; it stays under loopback's MSS here), so the server
    reads it in one read: one TLS record per stream.send() call."""
    stream.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
    try:
        send()
    finally:
        stream.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 0)


def test_records_of_one_read_share_a_parser(server):
    """Clients send one stanza per TLS record: the records of one read go
    to the parser together, so the parser set up when input arrives
    between stanzas serves them all instead of being made and released
    for each (stanzad_xml_parsers_total)."""
    a = rawstream.logged_in(server, 'alice')
    with a:
        n = 40
        before = metrics(server)['stanzad_xml_parsers_total']

        def pings():
            for i in range(n):
                a.send(f"<iq type='get' id='p{i}' to='localhost'>{PING}"
                       '</iq>')
        corked(a, pings)
        for i in range(n):
            reply = a.wait_for(lambda e, i=i: e.get('id') == f'p{i}')
            assert reply.get('type') == 'result', ET.tostring(reply)
        used = metrics(server)['stanzad_xml_parsers_total'] - before
        assert 1 <= used <= 2, f'{used} parsers for {n} records in one read'
        # and the parser is gone again once the read is done
        time.sleep(IDLE)
        assert_alive(a)


def test_stanzas_and_close_notify_in_one_read(server):
    """Stanzas and the TLS close_notify after them arrive in one read: the
    stanzas are all handled before the connection ends."""
    a = rawstream.logged_in(server, 'alice')
    b = rawstream.logged_in(server, 'bob')
    with a, b:
        def last_words():
            for i in range(5):
                a.message(b.jid, f'last {i}')
            try:
                a.tls.shutdown()  # close_notify, written at once
            except SSL.WantReadError:
                pass  # (waiting for the server's: not needed)
        corked(a, last_words)
        for i in range(5):
            assert body(next_message(b)) == f'last {i}'
        assert_alive(b)
