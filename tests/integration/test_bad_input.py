"""Hostile and broken input (RFC 6120 §4.9 stream errors, §11 XML
restrictions, and the configured limits).

Each case must get exactly the expected stream error, then the server ends
the stream and closes the connection. Every test runs inside a Witness: two
other logged-in clients exchange messages before and after the abuse, so a
server that crashes, stalls or mixes up sessions fails the test.
"""

import os
import random
import re
import resource
import time

import pytest

import rawstream
import scramclient
from clients import Witness
from conftest import proc_cpu_s
from rawstream import (NS_CLIENT, NS_SASL, NS_STREAM, RawStream, XML_DECL,
                       client_hello, q, stream_header)

PING = "<ping xmlns='urn:xmpp:ping'/>"


def assert_alive(stream):
    """The stream still works: the server answers a ping."""
    reply = stream.iq('get', PING, to='localhost')
    assert reply.get('type') == 'result'


def secured(server):
    """A stream on the STARTTLS port through TLS, before SASL."""
    stream = RawStream(server.c2s_port)
    stream.secure()
    return stream


def fails_with(server, condition, data, *, login=True):
    """Sends data on a fresh stream (logged in as carol, or right after the
    stream header on the STARTTLS port) and expects `condition`."""
    if login:
        stream = rawstream.logged_in(server, 'carol')
    else:
        stream = RawStream(server.c2s_port)
        stream.open()
        stream.features()
    with stream:
        stream.send_until_closed(data)
        stream.expect_stream_error(condition)


def nested(depth):
    return '<a>' * depth + '</a>' * depth


def with_attrs(count):
    attrs = ' '.join(f"a{i}='{i}'" for i in range(count))
    return f"<x xmlns='urn:example:x' {attrs}/>"


# -- not-well-formed ----------------------------------------------------------

@pytest.mark.parametrize('data', [
    "<message><body>x</message>",
    "<message to='bob@localhost' to='alice@localhost'/>",
    "<message><body>\x01</body></message>",
    b"<message><body>\xff\xfe</body></message>",
    "<message><body>x</body></message></iq>",
    "<message id='unterminated><body/></message>",
], ids=['mismatched-tag', 'duplicate-attr', 'control-char', 'bad-utf8',
        'stray-end-tag', 'bad-attr-quote'])
def test_not_well_formed(server, data):
    with Witness(server):
        fails_with(server, 'not-well-formed', data)


def test_unbound_prefix(server):
    """An undeclared prefix breaks XML namespaces (RFC 6120 §4.9.3.13
    counts that as not-well-formed; §4.9.3.2 has bad-namespace-prefix)."""
    with Witness(server):
        fails_with(server, ('bad-namespace-prefix', 'not-well-formed'),
                   "<nope:message/>")


def test_not_well_formed_before_tls(server):
    with Witness(server):
        fails_with(server, 'not-well-formed', '<a></b>', login=False)


# -- restricted-xml (RFC 6120 §11.1) ------------------------------------------

@pytest.mark.parametrize('prolog', [
    '<!DOCTYPE stream:stream>',
    "<!DOCTYPE stream:stream [<!ENTITY boom 'boom'>]>",
], ids=['doctype', 'entity-declaration'])
@pytest.mark.parametrize('where', ['initial', 'after-sasl'])
def test_restricted_xml_prolog(server, prolog, where):
    with Witness(server):
        stream = RawStream(server.c2s_port)
        with stream:
            if where == 'after-sasl':
                stream.secure()
                stream.authenticate('carol', server.passwords['carol'],
                                    restart=False)
            stream.send_until_closed(XML_DECL + prolog +
                                     stream_header(decl=False))
            stream.expect_stream_error('restricted-xml')


@pytest.mark.parametrize('data', [
    '<!-- a comment -->',
    "<message to='bob@localhost'><!-- a comment --><body>x</body></message>",
    '<?some-pi data?>',
    "<message to='bob@localhost'><?some-pi data?><body>x</body></message>",
], ids=['comment', 'comment-in-stanza', 'pi', 'pi-in-stanza'])
def test_restricted_xml(server, data):
    with Witness(server):
        fails_with(server, 'restricted-xml', data)


def test_xml_declaration_allowed(server):
    """The XML declaration is not a processing instruction: allowed at the
    start of each stream (rawstream always sends one)."""
    with Witness(server):
        with rawstream.logged_in(server, 'carol') as s:
            assert_alive(s)


# -- policy-violation ---------------------------------------------------------

def test_stanza_too_big(server_factory):
    srv = server_factory(limits={'max_stanza_size': '4KiB'})
    with Witness(srv), rawstream.logged_in(srv, 'carol') as carol, \
            rawstream.logged_in(srv, 'bob') as bob:
        carol.message(bob.jid, 'x' * 1024)
        msg = bob.wait_for(lambda e: e.tag == q(NS_CLIENT, 'message'))
        assert len(msg.findtext(q(NS_CLIENT, 'body'))) == 1024
        carol.send_until_closed(f"<message to='{bob.jid}'><body>"
                                f"{'x' * 8192}</body></message>")
        carol.expect_stream_error('policy-violation')
        assert_alive(bob)


def test_stanza_too_big_default_limit(server):
    with Witness(server):
        # only just over 256 KiB, so that the server has read (nearly) all
        # of it when it closes, and the close does not become a reset
        fails_with(server, 'policy-violation',
                   "<message to='bob@localhost'><body>" + 'y' * 262_144 +
                   '</body></message>')


def test_nesting_too_deep(server):
    with Witness(server), rawstream.logged_in(server, 'bob') as bob:
        with rawstream.logged_in(server, 'carol') as carol:
            carol.send(f"<message to='{bob.jid}'><x xmlns='urn:example:x'>"
                       f'{nested(20)}</x></message>')
            bob.wait_for(lambda e: e.tag == q(NS_CLIENT, 'message'))
            carol.send_until_closed(
                f"<message to='{bob.jid}'><x xmlns='urn:example:x'>"
                f'{nested(40)}</x></message>')
            carol.expect_stream_error('policy-violation')


def test_too_many_attributes(server):
    with Witness(server), rawstream.logged_in(server, 'bob') as bob:
        with rawstream.logged_in(server, 'carol') as carol:
            carol.send(f"<message to='{bob.jid}'>{with_attrs(20)}</message>")
            bob.wait_for(lambda e: e.tag == q(NS_CLIENT, 'message'))
            carol.send_until_closed(
                f"<message to='{bob.jid}'>{with_attrs(80)}</message>")
            carol.expect_stream_error('policy-violation')


def _opened(port, source=None):
    stream = RawStream(port, source=source)
    stream.open()
    stream.features()
    return stream


def test_too_many_connections_per_ip(server_factory):
    srv = server_factory(limits={'max_conns_per_ip': 4})
    with Witness(srv):  # two of the four
        held = [_opened(srv.c2s_port), _opened(srv.c2s_port)]
        try:
            extra = RawStream(srv.c2s_port)
            with extra:
                extra.send(stream_header())
                extra.expect_stream_error('policy-violation')
            # the limit is per source address
            other = _opened(srv.c2s_port, source='127.0.0.2')
            other.close()
            # and a freed slot can be used again
            held.pop().close()
            deadline = time.monotonic() + 5
            while True:
                probe = RawStream(srv.c2s_port)
                probe.send(stream_header())
                probe.read_header()
                feats = probe.read_element()
                probe.close()
                if feats.tag == q(NS_STREAM, 'features'):
                    break
                assert time.monotonic() < deadline, 'slot never freed'
                time.sleep(0.2)
        finally:
            for stream in held:
                stream.close()


def test_out_of_descriptors_waits(server_factory):
    """Out of file descriptors, a listener rests and tries again: new
    connections wait in the kernel's backlog (not accepted and dropped),
    the server does not spin, sessions it has go on, and once descriptors
    are free again the waiting connections are served."""
    srv = server_factory(shards=1)
    pid = srv.proc.pid
    held, waiting = [], []
    with Witness(srv) as w:
        was = resource.prlimit(pid, resource.RLIMIT_NOFILE)
        used = len(os.listdir(f'/proc/{pid}/fd'))
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (used + 3, was[1]))
        try:
            held += [_opened(srv.c2s_port) for _ in range(3)]
            waiting += [RawStream(srv.c2s_port, timeout=1) for _ in range(2)]
            for stream in waiting:
                stream.send(stream_header())
                with pytest.raises(TimeoutError):
                    stream.read_header()
            srv.wait_for_log(r'accept on port \d+: Too many open files')
            before = proc_cpu_s(pid)
            time.sleep(1)
            assert proc_cpu_s(pid) - before < 0.3, 'spinning while out of fds'
            w.round_trip()
            # a second of retries every 100 ms, logged once
            warned = re.findall(r'accept on port \d+: Too many open files',
                                srv.log_text())
            assert len(warned) == 1, warned
            for stream in held[:2]:
                stream.close()
            for stream in waiting:
                stream.timeout = 5
                stream.read_header()
                assert stream.features().tag == q(NS_STREAM, 'features')
            # and the end of the spell is logged
            srv.wait_for_log(r'accepting on port \d+ again after \d+ ms')
        finally:
            resource.prlimit(pid, resource.RLIMIT_NOFILE, was)
            for stream in held + waiting:
                stream.close()


def test_too_many_sasl_failures(server):
    with Witness(server), secured(server) as stream:
        for _ in range(2):
            reply = stream.auth_plain('carol', 'wrong')
            assert reply.tag == q(NS_SASL, 'failure')
            assert reply.find(q(NS_SASL, 'not-authorized')) is not None
        stream.send_auth('PLAIN', b'\0carol\0wrong-again')
        stream.expect_stream_error('policy-violation')


def test_too_many_sasl_failures_scram(server):
    with Witness(server), secured(server) as stream:
        for _ in range(2):
            reply = stream.auth_scram('SCRAM-SHA-256', 'carol', 'wrong')
            assert reply.find(q(NS_SASL, 'not-authorized')) is not None
        scram = scramclient.ScramClient('SCRAM-SHA-256', 'carol', 'wrong')
        stream.send_auth('SCRAM-SHA-256', scram.client_first())
        challenge = stream.read_element()
        assert challenge.tag == q(NS_SASL, 'challenge')
        final = scram.client_final(rawstream.unb64(challenge.text))
        stream.send(f"<response xmlns='{NS_SASL}'>"
                    f'{rawstream.b64(final)}</response>')
        # a <failure/> may come first; expect_stream_error skips it
        stream.expect_stream_error('policy-violation')


# -- other stream errors ------------------------------------------------------

def test_text_between_stanzas(server):
    with Witness(server):
        fails_with(server, 'bad-format',
                   "hello<message to='bob@localhost'><body>x</body></message>")


def test_whitespace_between_stanzas_allowed(server):
    with Witness(server), rawstream.logged_in(server, 'carol') as s:
        s.send('  \n\t  \r\n')
        s.send(f"<iq type='get' to='localhost' id='p1'>{PING}</iq>")
        s.send('\n \n')
        reply = s.wait_for(lambda e: e.tag == q(NS_CLIENT, 'iq'))
        assert reply.get('type') == 'result'
        assert_alive(s)


@pytest.mark.parametrize('header', [
    {'xmlns': 'jabber:server'},
    {'xmlns': 'urn:foo'},
    {'stream_ns': 'urn:wrong:streams'},
], ids=['jabber-server', 'urn-foo', 'stream-namespace'])
@pytest.mark.parametrize('port_kind', ['starttls', 'direct_tls'])
def test_invalid_namespace(server, header, port_kind):
    direct = port_kind == 'direct_tls'
    with Witness(server):
        with RawStream(server.tls_port if direct else server.c2s_port,
                       direct_tls=direct) as stream:
            stream.send_until_closed(stream_header(**header))
            stream.expect_stream_error('invalid-namespace')


def test_host_unknown(server):
    with Witness(server), RawStream(server.c2s_port) as stream:
        stream.send_until_closed(stream_header(to='nosuch.example'))
        stream.expect_stream_error('host-unknown')


def test_error_closes_without_client_reply(server):
    """A client that never answers the server's </stream:stream> is
    disconnected anyway."""
    with Witness(server), RawStream(server.c2s_port) as stream:
        stream.send_until_closed(stream_header(version='2.0'))
        stream.expect_stream_error('unsupported-version', timeout=15,
                                   reply=False)


def test_unsupported_version(server):
    with Witness(server), RawStream(server.c2s_port) as stream:
        stream.send_until_closed(stream_header(version='2.0'))
        stream.expect_stream_error('unsupported-version')


@pytest.mark.parametrize('data', [
    "<foo xmlns='jabber:client'/>",
    "<foo xmlns='jabber:client'><message/></foo>",
], ids=['empty', 'with-children'])
def test_unsupported_stanza_type(server, data):
    with Witness(server):
        fails_with(server, 'unsupported-stanza-type', data)


def test_stanza_before_sasl(server):
    with Witness(server), secured(server) as stream:
        stream.send_until_closed(
            "<message to='bob@localhost'><body>sneaky</body></message>")
        stream.expect_stream_error('not-authorized')


# -- auth_timeout -------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize('stage', ['header', 'tls'])
def test_auth_timeout(server_factory, stage):
    srv = server_factory(limits={'auth_timeout': '2s'})
    with Witness(srv):
        stream = secured(srv) if stage == 'tls' else RawStream(srv.c2s_port)
        with stream:
            if stage == 'header':
                stream.open()
                stream.features()
            started = time.monotonic()
            stream.expect_stream_error('connection-timeout', timeout=8)
            assert time.monotonic() - started > 1.0


@pytest.mark.slow
def test_auth_timeout_silent_connection(server_factory):
    """A connection that never sends anything is closed too."""
    srv = server_factory(limits={'auth_timeout': '2s'})
    with Witness(srv), RawStream(srv.c2s_port) as stream:
        stream.wait_closed(timeout=8)
        if stream.received:
            stream.expect_stream_error('connection-timeout', timeout=1)


@pytest.mark.slow
def test_auth_timeout_spares_logged_in(server_factory):
    srv = server_factory(limits={'auth_timeout': '2s'})
    with Witness(srv), rawstream.logged_in(srv, 'carol') as s:
        time.sleep(3.5)
        assert_alive(s)


# -- abrupt clients -----------------------------------------------------------

@pytest.mark.parametrize('port_kind', ['starttls', 'direct_tls'])
@pytest.mark.parametrize('seed', [1, 2, 3])
def test_random_garbage(server, port_kind, seed):
    rng = random.Random(seed)
    garbage = b'\x00\xff' + bytes(rng.getrandbits(8) for _ in range(4096))
    with Witness(server):
        port = server.tls_port if port_kind == 'direct_tls' \
            else server.c2s_port
        with RawStream(port) as stream:
            stream.send_until_closed(garbage)
            stream.wait_closed(timeout=10)


def test_garbage_after_login(server):
    rng = random.Random(7)
    garbage = b'\x00\xff' + bytes(rng.getrandbits(8) for _ in range(4096))
    with Witness(server), rawstream.logged_in(server, 'carol') as stream:
        stream.send_until_closed(garbage)
        # NUL is never allowed in XML
        stream.expect_stream_error('not-well-formed')


@pytest.mark.parametrize('cut', ['nothing', 'half-hello', 'full-hello'])
@pytest.mark.parametrize('port_kind', ['starttls', 'direct_tls'])
def test_tls_handshake_abandoned(server, cut, port_kind):
    hello = client_hello()
    data = {'nothing': b'', 'half-hello': hello[:len(hello) // 2],
            'full-hello': hello}[cut]
    with Witness(server):
        direct = port_kind == 'direct_tls'
        stream = RawStream(server.tls_port if direct else server.c2s_port)
        with stream:
            if not direct:
                stream.open()
                stream.features()
                stream.send("<starttls xmlns='urn:ietf:params:xml:ns:"
                            "xmpp-tls'/>")
                stream.read_element()
            stream.send(data)
        with rawstream.logged_in(server, 'carol', direct_tls=direct):
            pass


@pytest.mark.parametrize('mech', ['SCRAM-SHA-256', 'SCRAM-SHA-1-PLUS'])
def test_disconnect_mid_sasl(server, mech):
    with Witness(server):
        stream = secured(server)
        with stream:
            scram = scramclient.ScramClient(
                mech, 'carol', server.passwords['carol'],
                cb_type='tls-exporter',
                cb_data=scramclient.tls_exporter(stream.tls))
            stream.send_auth(mech, scram.client_first())
            assert stream.read_element().tag == q(NS_SASL, 'challenge')
        # carol can still log in
        with rawstream.logged_in(server, 'carol', mechanism='SCRAM-SHA-256'):
            pass


def test_disconnect_after_stream_header(server):
    with Witness(server):
        for port in (server.c2s_port, server.tls_port):
            stream = RawStream(port, direct_tls=port == server.tls_port)
            stream.send(stream_header())
            stream.close()
