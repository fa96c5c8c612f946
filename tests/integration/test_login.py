"""Connection set-up: TLS (STARTTLS and XEP-0368 direct TLS), the generated
certificate, stream features, SASL (RFC 6120 §6; SCRAM RFC 5802/7677 with
channel binding RFC 5929/9266 and XEP-0440) and resource binding (§7)."""

import re
import subprocess
import threading
import time
import xml.etree.ElementTree as ET

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from OpenSSL import SSL, crypto

import clients
import rawstream
import scramclient
from conftest import STANZAD_BIN, sanitizer_env, sanitizer_reports
from rawstream import (NS_BIND, NS_CLIENT, NS_SASL, NS_SASL_CB, NS_SESSION,
                       NS_STREAM, NS_TLS, RawStream, q)

ALL_MECHANISMS = {'SCRAM-SHA-256-PLUS', 'SCRAM-SHA-1-PLUS', 'SCRAM-SHA-256',
                  'SCRAM-SHA-1', 'PLAIN'}
PORTS = ['starttls', 'direct_tls']


def open_secured(server, port_kind, **kwargs):
    """A RawStream through TLS on the STARTTLS or the direct-TLS port;
    returns (stream, post-TLS features)."""
    direct = port_kind == 'direct_tls'
    stream = RawStream(server.tls_port if direct else server.c2s_port,
                       direct_tls=direct, **kwargs)
    return stream, stream.secure()


def mechanisms(features):
    mechs = features.find(q(NS_SASL, 'mechanisms'))
    assert mechs is not None, ET.tostring(features)
    return [m.text for m in mechs.findall(q(NS_SASL, 'mechanism'))]


def cb_types(features):
    cb = features.find(q(NS_SASL_CB, 'sasl-channel-binding'))
    assert cb is not None, ET.tostring(features)
    return {c.get('type') for c in cb.findall(q(NS_SASL_CB,
                                                'channel-binding'))}


def sasl_condition(elem):
    assert elem.tag == q(NS_SASL, 'failure'), ET.tostring(elem)
    return [c.tag.split('}', 1)[1] for c in elem
            if c.tag != q(NS_SASL, 'text')]


# -- binary and certificate ------------------------------------------------

def test_version():
    out = subprocess.run([str(STANZAD_BIN), '--version'],
                         capture_output=True, text=True, timeout=10,
                         env=sanitizer_env())
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == 'stanzad 0.1.0'
    assert not sanitizer_reports(out.stderr), out.stderr


def test_certificate_generated(server):
    pem = (server.data_dir / 'certs' / 'localhost.pem').read_bytes()
    assert (server.data_dir / 'certs' / 'localhost.key').is_file()
    cert = x509.load_pem_x509_certificate(pem)
    key = cert.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    assert key.curve.name == 'secp256r1'
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA256)
    assert cert.issuer == cert.subject  # self-signed
    names = [a.value for a in cert.subject]
    try:
        san = cert.extensions.get_extension_for_class(
            x509.SubjectAlternativeName)
        names += san.value.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        pass
    assert 'localhost' in names


@pytest.mark.parametrize('port_kind', PORTS)
def test_served_certificate_is_the_generated_one(server, port_kind):
    stream, _ = open_secured(server, port_kind)
    with stream:
        served = crypto.dump_certificate(crypto.FILETYPE_PEM,
                                         stream.tls.get_peer_certificate())
        assert stream.tls_version() == 'TLSv1.3'
    on_disk = (server.data_dir / 'certs' / 'localhost.pem').read_bytes()
    assert x509.load_pem_x509_certificate(served) == \
        x509.load_pem_x509_certificate(on_disk)


def _openssl(*args):
    subprocess.run(['openssl', *map(str, args)], check=True,
                   capture_output=True, timeout=30)


def _make_ca_chain(d):
    """root CA -> intermediate CA -> leaf for localhost, EC P-256: the
    paths of (root, intermediate, leaf, leaf key)."""
    ec_key = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256',
              '-nodes', '-days', '2']
    ca_ext = ['-addext', 'basicConstraints=critical,CA:TRUE',
              '-addext', 'keyUsage=critical,keyCertSign,cRLSign']
    root, inter, leaf = d / 'root.crt', d / 'inter.crt', d / 'leaf.crt'
    _openssl('req', '-x509', *ec_key, '-keyout', d / 'root.key',
             '-out', root, '-subj', '/CN=chain test root', *ca_ext)
    _openssl('req', '-x509', *ec_key, '-keyout', d / 'inter.key',
             '-out', inter, '-subj', '/CN=chain test intermediate',
             '-CA', root, '-CAkey', d / 'root.key', *ca_ext)
    _openssl('req', '-x509', *ec_key, '-keyout', d / 'leaf.key',
             '-out', leaf, '-subj', '/CN=localhost',
             '-CA', inter, '-CAkey', d / 'inter.key',
             '-addext', 'subjectAltName=DNS:localhost',
             '-addext', 'basicConstraints=critical,CA:FALSE')
    return root, inter, leaf, d / 'leaf.key'


@pytest.mark.parametrize('layout', ['leaf_only', 'full_chain'])
def test_served_chain(server_factory, tmp_path, layout):
    """The server sends its certificate and the intermediate, built once
    at start-up: from the trust store (s2s.ca_file) when the certificate
    file has the leaf alone, from the file when it has the chain; never
    the root (RFC 8446 4.4.2)."""
    d = tmp_path / 'pki'
    d.mkdir()
    root, inter, leaf, key = _make_ca_chain(d)
    if layout == 'leaf_only':
        cert = leaf
        store = d / 'store.pem'
        store.write_bytes(root.read_bytes() + inter.read_bytes())
    else:
        cert = d / 'fullchain.pem'
        cert.write_bytes(leaf.read_bytes() + inter.read_bytes())
        store = root
    srv = server_factory(hosts=[{'name': 'localhost',
                                 'tls': {'cert': str(cert),
                                         'key': str(key)}}],
                         s2s={'ca_file': str(store)})
    for port_kind in PORTS:
        stream, _ = open_secured(srv, port_kind)
        with stream:
            chain = [c.get_subject().CN
                     for c in stream.tls.get_peer_cert_chain()]
        assert chain == ['localhost', 'chain test intermediate'], \
            (port_kind, chain)
    with rawstream.logged_in(srv, 'alice') as stream:
        assert stream.jid.startswith('alice@localhost/')


def test_certificate_and_accounts_survive_restart(server):
    path = server.data_dir / 'certs' / 'localhost.pem'
    before = path.read_bytes()
    server.restart()
    assert path.read_bytes() == before
    with rawstream.logged_in(server, 'alice') as stream:
        assert stream.jid.startswith('alice@localhost/')


# -- stream features ----------------------------------------------------------

def test_features_before_tls(server):
    with RawStream(server.c2s_port) as stream:
        header = stream.open()
        assert header.tag == q(NS_STREAM, 'stream')
        assert header.get('from') == 'localhost'
        assert header.get('version') == '1.0'
        assert header.get('id')
        features = stream.features()
        assert [c.tag for c in features] == [q(NS_TLS, 'starttls')]
        assert [c.tag for c in features[0]] == [q(NS_TLS, 'required')]


def test_stream_ids_and_resources_unpredictable(server):
    """Stream ids (RFC 6120 §4.7.3) and generated resources are random
    hex, never handed out twice (they come from a per-shard block of
    random bytes)."""
    ids, resources = [], []
    for _ in range(30):
        with RawStream(server.c2s_port) as stream:
            ids.append(stream.open().get('id'))
    for _ in range(10):
        with rawstream.logged_in(server, 'alice') as stream:
            resources.append(stream.jid.split('/', 1)[1])
    assert all(re.fullmatch('[0-9a-f]{24}', i) for i in ids), ids
    assert all(re.fullmatch('[0-9a-f]{16}', r) for r in resources), \
        resources
    assert len(set(ids)) == len(ids) and \
        len(set(resources)) == len(resources)
    # Not a counter or a repeating block: the bytes vary in every place.
    for pos in range(24):
        assert len({i[pos] for i in ids}) > 1, (pos, ids)


@pytest.mark.parametrize('port_kind', PORTS)
def test_features_after_tls(server, port_kind):
    stream, features = open_secured(server, port_kind)
    with stream:
        assert features.find(q(NS_TLS, 'starttls')) is None
        mechs = mechanisms(features)
        assert sorted(mechs) == sorted(ALL_MECHANISMS)
        assert cb_types(features) == {'tls-server-end-point',
                                      'tls-exporter'}


@pytest.mark.parametrize('port_kind', PORTS)
def test_tls11_refused(server, port_kind):
    """TLS 1.2 is the minimum: the server answers a TLS 1.1 ClientHello
    with a protocol_version alert."""
    with pytest.raises(SSL.Error, match='alert protocol version'):
        stream, _ = open_secured(server, port_kind,
                                 tls_max_version=SSL.TLS1_1_VERSION)
        stream.close()


@pytest.mark.parametrize('port_kind', PORTS)
def test_tls13_suite_server_preference(server, port_kind):
    """The client offers OpenSSL's default order (TLS_AES_256_GCM_SHA384
    first); the server's preference gives TLS_AES_128_GCM_SHA256, whose
    key schedule hashes with SHA-256 (cheaper per handshake)."""
    stream, _ = open_secured(server, port_kind)
    with stream:
        assert stream.tls_version() == 'TLSv1.3'
        assert stream.tls.get_cipher_name() == 'TLS_AES_128_GCM_SHA256'


def test_tls13_one_ticket_and_resumption(server):
    """One TLS 1.3 session ticket per handshake (OpenSSL's default is
    two; an XMPP client resumes one connection), and resuming with it
    works on the next connection."""
    import socket
    import ssl

    tickets = []

    def count(conn, direction, version, content_type, msg_type, data):
        if (direction == 'read' and
                content_type == ssl._TLSContentType.HANDSHAKE and
                msg_type == ssl._TLSMessageType.NEWSESSION_TICKET):
            tickets.append(1)

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx._msg_callback = count

    def connect(session=None):
        sock = socket.create_connection(('127.0.0.1', server.tls_port),
                                        timeout=10)
        tls = ctx.wrap_socket(sock, server_hostname='localhost',
                              session=session)
        header = rawstream.stream_header()
        tls.sendall(header.encode() if isinstance(header, str) else header)
        got = b''
        while b'</stream:features>' not in got:
            data = tls.recv(4096)
            assert data, got
            got += data
        return tls

    first = connect()
    assert first.version() == 'TLSv1.3'
    session, reused = first.session, first.session_reused
    first.close()
    assert not reused
    assert len(tickets) == 1, tickets
    again = connect(session)
    try:
        assert again.session_reused
    finally:
        again.close()


def test_features_tls12_no_exporter(server):
    stream, features = open_secured(server, 'direct_tls',
                                    tls_max_version=SSL.TLS1_2_VERSION)
    with stream:
        assert stream.tls_version() == 'TLSv1.2'
        assert set(mechanisms(features)) == ALL_MECHANISMS
        types = cb_types(features)
        assert 'tls-server-end-point' in types
        assert 'tls-exporter' not in types


def test_tls12_every_advertised_binding_works(server):
    """Whatever channel-binding types TLS 1.2 gets advertised (at least
    tls-server-end-point; tls-unique is allowed there) must work."""
    stream, features = open_secured(server, 'starttls',
                                    tls_max_version=SSL.TLS1_2_VERSION)
    stream.close()
    for cb_type in sorted(cb_types(features)):
        stream, _ = open_secured(server, 'starttls',
                                 tls_max_version=SSL.TLS1_2_VERSION)
        with stream:
            stream.authenticate('bob', server.passwords['bob'],
                                'SCRAM-SHA-256-PLUS', cb_type)


@pytest.mark.parametrize('port_kind', PORTS)
def test_features_after_sasl(server, port_kind):
    stream, _ = open_secured(server, port_kind)
    with stream:
        features = stream.authenticate('alice', server.passwords['alice'])
        assert features.find(q(NS_SASL, 'mechanisms')) is None
        assert features.find(q(NS_BIND, 'bind')) is not None
        session = features.find(q(NS_SESSION, 'session'))
        assert session is not None
        assert session.find(q(NS_SESSION, 'optional')) is not None


# -- SASL ---------------------------------------------------------------------

@pytest.mark.parametrize('mech', sorted(ALL_MECHANISMS))
def test_auth_before_tls_refused(server, mech):
    with RawStream(server.c2s_port) as stream:
        stream.open()
        stream.features()
        if mech == 'PLAIN':
            initial = b'\0alice\0' + server.passwords['alice'].encode()
        else:
            initial = b'n,,n=alice,r=abcdefghijklmnop'
        stream.send_auth(mech, initial)
        reply = stream.read_element()
        assert sasl_condition(reply) == ['encryption-required']


@pytest.mark.parametrize('mech', ['PLAIN', 'SCRAM-SHA-1', 'SCRAM-SHA-256'])
@pytest.mark.parametrize('port_kind', PORTS)
async def test_slixmpp_login(server, mech, port_kind):
    client = await clients.connect(server, 'alice', 'slix', mech=mech,
                                   direct_tls=port_kind == 'direct_tls')
    try:
        assert client.boundjid.full == 'alice@localhost/slix'
    finally:
        await clients.disconnect(client)


@pytest.mark.parametrize('mech,cb_type', [
    ('SCRAM-SHA-1', None),
    ('SCRAM-SHA-256', None),
    ('SCRAM-SHA-1-PLUS', 'tls-exporter'),
    ('SCRAM-SHA-1-PLUS', 'tls-server-end-point'),
    ('SCRAM-SHA-256-PLUS', 'tls-exporter'),
    ('SCRAM-SHA-256-PLUS', 'tls-server-end-point'),
])
@pytest.mark.parametrize('port_kind', PORTS)
def test_scram_login(server, mech, cb_type, port_kind):
    """Logs in with our own SCRAM client, which also checks the server's
    signature (mutual authentication)."""
    stream, _ = open_secured(server, port_kind)
    with stream:
        stream.authenticate('bob', server.passwords['bob'], mech, cb_type)
        assert stream.bind().startswith('bob@localhost/')


def test_plus_tls12_exporter_refused(server):
    stream, _ = open_secured(server, 'starttls',
                             tls_max_version=SSL.TLS1_2_VERSION)
    with stream:
        reply = stream.auth_scram('SCRAM-SHA-256-PLUS', 'bob',
                                  server.passwords['bob'],
                                  cb_type='tls-exporter')
        assert reply.tag == q(NS_SASL, 'failure'), ET.tostring(reply)


@pytest.mark.parametrize('mech', ['SCRAM-SHA-1-PLUS', 'SCRAM-SHA-256-PLUS'])
@pytest.mark.parametrize('cb_type', ['tls-exporter', 'tls-server-end-point'])
def test_plus_wrong_channel_binding(server, mech, cb_type):
    stream, _ = open_secured(server, 'starttls')
    with stream:
        real = scramclient.channel_binding(stream.tls, cb_type)
        wrong = bytes(b ^ 0x01 for b in real)
        reply = stream.auth_scram(mech, 'bob', server.passwords['bob'],
                                  cb_type=cb_type, cb_data=wrong)
        assert sasl_condition(reply) == ['not-authorized']


@pytest.mark.parametrize('tls', ['1.2', '1.3'])
def test_scram_y_flag(server, tls):
    """gs2 flag "y" (client supports channel binding but thinks the server
    does not) is a downgrade signal only if the server offered a binding
    the client could have used (RFC 5802 §6). On TLS 1.2 it offers
    tls-unique, the one every binding-capable client knows: "y" fails. On
    TLS 1.3 there is no tls-unique, so clients that know only it (slixmpp
    1.8) say "y" honestly, and are let in."""
    max_version = SSL.TLS1_2_VERSION if tls == '1.2' else None
    stream, _ = open_secured(server, 'starttls', tls_max_version=max_version)
    with stream:
        reply = stream.auth_scram('SCRAM-SHA-256', 'bob',
                                  server.passwords['bob'], gs2_flag='y')
        expected = 'failure' if tls == '1.2' else 'success'
        assert reply.tag == q(NS_SASL, expected), ET.tostring(reply)


@pytest.mark.parametrize('authzid,ok', [
    ('alice@localhost', True), ('bob@localhost', False)])
def test_plain_authzid(server, authzid, ok):
    """RFC 6120 §6.3.8: an authzid equal to the account's own bare JID is
    fine; acting for someone else is refused (§6.5.6 invalid-authzid)."""
    stream, _ = open_secured(server, 'starttls')
    with stream:
        reply = stream.auth_plain('alice', server.passwords['alice'],
                                  authzid=authzid)
        if ok:
            assert reply.tag == q(NS_SASL, 'success'), ET.tostring(reply)
        else:
            assert sasl_condition(reply) in (['invalid-authzid'],
                                             ['not-authorized'])


@pytest.mark.parametrize('mech', ['PLAIN', 'SCRAM-SHA-1', 'SCRAM-SHA-256',
                                  'SCRAM-SHA-256-PLUS'])
def test_wrong_password_then_retry(server, mech):
    cb_type = 'tls-exporter' if mech.endswith('-PLUS') else None
    stream, _ = open_secured(server, 'starttls')
    with stream:
        if mech == 'PLAIN':
            reply = stream.auth_plain('carol', 'wrong-password')
        else:
            reply = stream.auth_scram(mech, 'carol', 'wrong-password',
                                      cb_type=cb_type)
        assert sasl_condition(reply) == ['not-authorized']
        # the stream stays open for another try
        stream.authenticate('carol', server.passwords['carol'], mech,
                            cb_type)
        assert stream.bind().startswith('carol@localhost/')


@pytest.mark.parametrize('mech', ['PLAIN', 'SCRAM-SHA-256'])
def test_unknown_user(server, mech):
    stream, _ = open_secured(server, 'starttls')
    with stream:
        if mech == 'PLAIN':
            reply = stream.auth_plain('nobody', 'whatever')
        else:
            reply = stream.auth_scram(mech, 'nobody', 'whatever')
        assert sasl_condition(reply) == ['not-authorized']


def test_unknown_mechanism(server):
    stream, _ = open_secured(server, 'starttls')
    with stream:
        stream.send_auth('DIGEST-MD5')
        assert sasl_condition(stream.read_element()) == ['invalid-mechanism']
        stream.send_auth('X-NO-SUCH-MECH', b'data')
        assert sasl_condition(stream.read_element()) == ['invalid-mechanism']
        stream.authenticate('alice', server.passwords['alice'])


async def test_slixmpp_wrong_password(server):
    with pytest.raises(clients.LoginError):
        await clients.connect(server, 'alice', password='not-her-password')


# -- resource binding ---------------------------------------------------------

def test_bind_generated_resource(server):
    with rawstream.logged_in(server, 'alice') as one, \
            rawstream.logged_in(server, 'alice') as two:
        for stream in (one, two):
            bare, _, resource = stream.jid.partition('/')
            assert bare == 'alice@localhost'
            assert resource
        assert one.jid != two.jid


@pytest.mark.parametrize('port_kind', PORTS)
def test_bind_requested_resource(server, port_kind):
    with rawstream.logged_in(server, 'alice', 'laptop',
                             direct_tls=port_kind == 'direct_tls') as s:
        assert s.jid == 'alice@localhost/laptop'


def test_bind_conflict_overrides_old_session(server):
    old = rawstream.logged_in(server, 'alice', 'phone')
    with old, rawstream.logged_in(server, 'alice', 'phone') as new:
        assert new.jid == 'alice@localhost/phone'
        old.expect_stream_error('conflict')
        # the new session owns the full JID now
        with rawstream.logged_in(server, 'bob') as bob:
            bob.message('alice@localhost/phone', 'for-the-new-one')
            msg = new.wait_for(lambda e: e.tag == q(NS_CLIENT, 'message'))
            assert msg.findtext(q(NS_CLIENT, 'body')) == 'for-the-new-one'
            assert msg.get('from') == bob.jid


async def test_bind_conflict_slixmpp(server):
    async with clients.connected(server, 'bob/desk') as (old,):
        async with clients.connected(server, 'bob/desk', 'carol') as \
                (new, carol):
            await clients.send_and_receive(carol, new)
            await clients.until(lambda: old.stream_errors)
            assert [e['condition'] for e in old.stream_errors] == \
                ['conflict']


@pytest.mark.parametrize('port_kind', PORTS)
def test_client_closes_stream(server, port_kind):
    """RFC 6120 §4.4: the server answers </stream:stream> with its own and
    closes the connection."""
    with rawstream.logged_in(server, 'alice',
                             direct_tls=port_kind == 'direct_tls') as s:
        s.close_stream()
        s.wait_stream_end()
        s.wait_closed()


def test_shutdown_with_clients(server):
    """SIGTERM with sessions open (one half-way through SASL): each gets
    <system-shutdown/> (RFC 6120 §4.9.3.20) and stanzad exits 0 (checked
    by the fixture)."""
    streams = [rawstream.logged_in(server, 'alice'),
               rawstream.logged_in(server, 'bob', direct_tls=True)]
    streams.append(RawStream(server.c2s_port))
    streams[-1].secure()
    stopper = threading.Thread(target=server.stop)
    stopper.start()
    try:
        for stream in streams:
            with stream:
                stream.expect_stream_error('system-shutdown')
    finally:
        stopper.join(40)
    assert not server.problems, server.problems


def test_legacy_session_iq(server):
    with rawstream.logged_in(server, 'alice') as stream:
        reply = stream.iq('set', f"<session xmlns='{NS_SESSION}'/>")
        assert reply.get('type') == 'result', ET.tostring(reply)
        assert len(reply) == 0


@pytest.mark.parametrize('user', ['alice', 'nobody'])
def test_plain_overlong_password_is_cheap(server, user):
    """A 150 kB PLAIN password (within the stanza limit) is refused without
    running PBKDF2 over it: unbounded, each of its 10,000 iterations would
    hash the whole password again (seconds of CPU per attempt)."""
    stream, _ = open_secured(server, 'starttls')
    with stream:
        started = time.monotonic()
        reply = stream.auth_plain(user, 'p' * 150_000)
        elapsed = time.monotonic() - started
        assert sasl_condition(reply) == ['not-authorized']
        assert elapsed < 1.5, elapsed
        stream.authenticate('alice', server.passwords['alice'])
