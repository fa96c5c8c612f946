"""XEP-0288 bidirectional server-to-server streams.

Each server runs on its own loopback address (port 5269 there) with a
certificate from the federation harness's test CA, which every server
trusts, so the streams authenticate with SASL EXTERNAL; names come from the
harness's hosts file and DNS server. What is counted is TCP connections:
`ss` lists the established sockets of a stanzad process, and those on its
own s2s address (incoming) or to the other server's (outgoing) are the
server-to-server connections between the two.

- The offer: an incoming stream's features carry
  <bidi xmlns='urn:xmpp:features:bidi'/> (before TLS too), unless
  s2s.bidi is off; asking before TLS is refused.
- stanzad <-> stanzad, bidi on both: messages both ways, an iq each way to
  the other server, all over one connection (two shards, so the incoming
  stream and the route it carries may live on different shards); the logs
  say which stream was made bidirectional.
- bidi off on either side: the same traffic takes two connections.
- dialback (certificates not trusted): bidi both ways and traffic flows,
  over two connections, since each server verifies the other's key over
  a connection of its own.
- stanzad <-> Prosody 0.12 with mod_s2s_bidi, whichever server connects
  first: messages both ways over one connection.
- stanzad <-> ejabberd 23.01, which has no XEP-0288: federation works both
  ways with bidi on, over two connections.
"""

import asyncio
import re
import socket
import subprocess
import time

import pytest
import yaml

from clients import connect, disconnect, send_and_receive
from conftest import Server, _servers_key, stop_and_check
from federation import XMPP_S2S_PORT

USERS = {'alice': 'alice-secret', 'bob': 'bob-secret'}
WAIT = 20.0


class S2SServer(Server):
    """A stanzad serving `domain` on an address of the federation's, with
    an s2s listener there, a certificate of the test CA, and accounts in
    that domain."""

    def __init__(self, root, fed, domain, s2s, shards):
        self.domain = domain
        self.address = fed.add_host(domain)
        crt, key = fed.ca.issue(domain)
        # ca_file=None: the system's store, where the test CA is not
        s2s = {'ca_file': str(fed.ca.cert), **s2s}
        if s2s['ca_file'] is None:
            del s2s['ca_file']
        super().__init__(root, {
            'hosts': [{'name': domain,
                       'tls': {'cert': str(crt), 'key': str(key)}}],
            'shards': shards,
            'dns': fed.dns_config(),
            's2s': s2s,
        })
        self.config['listeners'].append(
            {'type': 's2s', 'address': self.address,
             'port': XMPP_S2S_PORT})
        self.config_path.write_text(
            yaml.safe_dump(self.config, sort_keys=False))

    def add_user(self, user, password):
        self.ctl('user', 'add', f'{user}@{self.domain}',
                 stdin=password + '\n')
        self.passwords[user] = password

    def jid(self, user, resource=None):
        return f'{user}@{self.domain}' + (f'/{resource}' if resource else '')


@pytest.fixture
def stanzads(request, tmp_path):
    """start(fed, domain, shards=1, **s2s) -> a running S2SServer with the
    USERS; each is stopped at teardown and must exit cleanly."""
    servers = []
    request.node.stash[_servers_key] = servers

    def start(fed, domain, shards=1, **s2s):
        srv = S2SServer(tmp_path / f'server{len(servers)}', fed, domain,
                        s2s, shards)
        servers.append(srv)
        srv.start()
        for user, password in USERS.items():
            srv.add_user(user, password)
        return srv

    yield start
    stop_and_check(servers)


# ---- counting connections ---------------------------------------------------

SS_LINE = re.compile(r'^\S+\s+\S+\s+(\S+):(\d+)\s+(\S+):(\d+)\s+(.*)$')


def sockets_of(pid):
    """(local, remote) of the established TCP sockets of process pid, as
    ('addr', port) pairs."""
    out = subprocess.run(['ss', '-tnpH', 'state', 'established'],
                         capture_output=True, text=True, check=True,
                         timeout=10).stdout
    found = []
    for line in out.splitlines():
        m = SS_LINE.match(line.strip())
        if m and re.search(rf'pid={pid},', m.group(5)):
            found.append(((m.group(1), int(m.group(2))),
                          (m.group(3), int(m.group(4)))))
    return found


def s2s_connections(srv, peer_address):
    """The server-to-server connections of stanzad srv with the server on
    peer_address: the incoming ones (to srv's s2s listener; only the peer
    connects there) and the outgoing ones (to the peer's)."""
    here = (srv.address, XMPP_S2S_PORT)
    there = (peer_address, XMPP_S2S_PORT)
    return [s for s in sockets_of(srv.proc.pid)
            if s[0] == here or s[1] == there]


async def settle_count(srv, peer_address, want, timeout=5.0):
    """Waits until srv has `want` connections with the peer, and checks
    that it stays so for a moment (a second connection opened late would
    show)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        conns = s2s_connections(srv, peer_address)
        if len(conns) == want:
            await asyncio.sleep(0.5)
            conns = s2s_connections(srv, peer_address)
            if len(conns) == want:
                return conns
        if loop.time() > deadline:
            raise AssertionError(f'{srv.domain}: {len(conns)} s2s '
                                 f'connections, not {want}: {conns}')
        await asyncio.sleep(0.1)


async def traffic(a, b, a_domain, b_domain):
    """A message a -> b first (that server connects), then b -> a, a -> b
    again, and an iq ping from each client to the other's server."""
    await send_and_receive(a, b, timeout=WAIT)
    await send_and_receive(b, a, timeout=WAIT)
    await send_and_receive(a, b, timeout=WAIT)
    await a['xep_0199'].ping(b_domain, timeout=WAIT)
    await b['xep_0199'].ping(a_domain, timeout=WAIT)


# ---- the offer ------------------------------------------------------------------

def s2s_open(srv, send=''):
    """Opens a server stream to srv as other.example (plaintext, before
    STARTTLS), sends `send` after the header; returns all srv sent until
    it closed the stream or 5 s passed."""
    with socket.create_connection((srv.address, XMPP_S2S_PORT),
                                  timeout=5) as sock:
        sock.sendall(
            "<?xml version='1.0'?><stream:stream xmlns='jabber:server' "
            "xmlns:stream='http://etherx.jabber.org/streams' "
            f"from='other.example' to='{srv.domain}' version='1.0'>"
            .encode())
        got = b''
        deadline = time.monotonic() + 5
        while b'</stream:features>' not in got:
            assert time.monotonic() < deadline, got
            got += sock.recv(4096)
        if send:
            sock.sendall(send.encode())
            try:
                while (chunk := sock.recv(4096)) and \
                        time.monotonic() < deadline:
                    got += chunk
            except socket.timeout:
                pass
        return got.decode()


@pytest.mark.parametrize('bidi', [True, False])
def test_offer(federation, stanzads, bidi):
    srv = stanzads(federation, 'a.example', bidi=bidi)
    got = s2s_open(srv)
    assert "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'>" in got, got
    offered = "<bidi xmlns='urn:xmpp:features:bidi'/>" in got
    assert offered == bidi, got


def test_bidi_before_tls_refused(federation, stanzads):
    """XEP-0288 §2: STARTTLS first."""
    srv = stanzads(federation, 'a.example')
    got = s2s_open(srv, "<bidi xmlns='urn:xmpp:bidi'/>")
    assert '<policy-violation' in got and '</stream:stream>' in got, got


# ---- stanzad <-> stanzad ------------------------------------------------------

@pytest.mark.deadline(90)
async def test_stanzad_pair_one_connection(federation, stanzads):
    sa = stanzads(federation, 'a.example', shards=2)
    sb = stanzads(federation, 'b.example', shards=2)
    a = await connect(sa, 'alice', 'home')
    b = await connect(sb, 'bob', 'work')
    try:
        await traffic(a, b, sa.domain, sb.domain)
        # one TCP connection, a's outgoing one, b's incoming one
        conns = await settle_count(sa, sb.address, 1)
        assert conns[0][1] == (sb.address, XMPP_S2S_PORT), conns
        await settle_count(sb, sa.address, 1)
        # and more traffic both ways keeps to it
        for _ in range(3):
            await send_and_receive(b, a, timeout=WAIT)
            await send_and_receive(a, b, timeout=WAIT)
        await settle_count(sa, sb.address, 1)
    finally:
        await disconnect(a, b)
    sa.wait_for_log(r's2s out \S+ -> b\.example authenticated by SASL EXTERNAL, '
                    r'bidirectional')
    sb.wait_for_log(r's2s in a\.example -> \S+: bidirectional, carries '
                    r'b\.example -> a\.example')
    # b never connected to a itself
    assert not re.search(r's2s out \S+ -> a\.example authenticated',
                     sb.log_text())
    assert not re.search(r's2s in b\.example -> ', sa.log_text())


@pytest.mark.deadline(90)
@pytest.mark.parametrize('off', ['initiator', 'receiver'])
async def test_stanzad_pair_bidi_off(federation, stanzads, off):
    """bidi off on the server that connects first (it does not ask) or on
    the other one (it does not offer): each direction has its own
    connection."""
    sa = stanzads(federation, 'a.example', bidi=off != 'initiator')
    sb = stanzads(federation, 'b.example', bidi=off != 'receiver')
    a = await connect(sa, 'alice', 'home')
    b = await connect(sb, 'bob', 'work')
    try:
        await traffic(a, b, sa.domain, sb.domain)
        conns = await settle_count(sa, sb.address, 2)
        # one each way
        assert sorted(s[0] == (sa.address, XMPP_S2S_PORT)
                      for s in conns) == [False, True], conns
        await settle_count(sb, sa.address, 2)
    finally:
        await disconnect(a, b)
    sa.wait_for_log(r's2s out \S+ -> b\.example authenticated by SASL EXTERNAL'
                    r'(?!,)')
    sb.wait_for_log(r's2s out \S+ -> a\.example authenticated by SASL EXTERNAL'
                    r'(?!,)')
    assert 'bidirectional' not in sa.log_text() + sb.log_text()


@pytest.mark.deadline(90)
async def test_stanzad_pair_dialback(federation, stanzads):
    sa = stanzads(federation, 'a.example', ca_file=None, dialback=True)
    sb = stanzads(federation, 'b.example', ca_file=None, dialback=True)
    a = await connect(sa, 'alice', 'home')
    b = await connect(sb, 'bob', 'work')
    try:
        await traffic(a, b, sa.domain, sb.domain)
        await settle_count(sa, sb.address, 2)
    finally:
        await disconnect(a, b)
    # each stream asked for bidi and authenticated by dialback; each was
    # attached at its receiver
    sa.wait_for_log(r's2s out \S+ -> b\.example authenticated by dialback, '
                    r'bidirectional')
    sb.wait_for_log(r's2s out \S+ -> a\.example authenticated by dialback, '
                    r'bidirectional')
    sa.wait_for_log(r's2s in b\.example -> \S+: bidirectional')
    sb.wait_for_log(r's2s in a\.example -> \S+: bidirectional')
    assert 'SASL EXTERNAL' not in sa.log_text() + sb.log_text()


# ---- stanzad <-> Prosody ------------------------------------------------------

P_DOMAIN = 'prosody.example'


@pytest.mark.deadline(120)
@pytest.mark.parametrize('first', ['stanzad', 'prosody'])
async def test_prosody_one_connection(federation, stanzads, first):
    """Prosody 0.12 with mod_s2s_bidi: whichever server connects, the
    other one sends over that connection too."""
    p = federation.prosody(P_DOMAIN, trust_ca=True, bidi=True,
                           users={'bob': 'bob-secret'})
    federation.start(p)
    sa = stanzads(federation, 'a.example', shards=2)
    a = await connect(sa, 'alice', 'home')
    try:
        b = await connect(p, 'bob', 'work', mech=p.mech)
    except BaseException:
        await disconnect(a)
        raise
    try:
        if first == 'stanzad':
            await traffic(a, b, sa.domain, P_DOMAIN)
        else:
            await traffic(b, a, P_DOMAIN, sa.domain)
        conns = await settle_count(sa, p.address, 1)
        incoming = conns[0][0] == (sa.address, XMPP_S2S_PORT)
        assert incoming == (first == 'prosody'), conns
    finally:
        await disconnect(a, b)
    if first == 'stanzad':
        sa.wait_for_log(rf's2s out \S+ -> {P_DOMAIN} authenticated by SASL EXTERNAL, '
                        r'bidirectional')
        p.wait_for_log(r'Requested bidirectional stream')
    else:
        sa.wait_for_log(rf's2s in {P_DOMAIN} -> \S+: bidirectional, carries '
                        rf'a\.example -> {P_DOMAIN}')
        p.wait_for_log(r'Requesting bidirectional stream')


# ---- stanzad <-> ejabberd -----------------------------------------------------

@pytest.mark.deadline(120)
async def test_ejabberd_without_bidi(federation, stanzads):
    """ejabberd 23.01 offers no bidi: with it on, stanzad federates as
    before, each server over its own connection."""
    e = federation.ejabberd('ejabberd.example', trust_ca=True,
                            users={'bob': 'bob-secret'})
    federation.start(e)
    sa = stanzads(federation, 'a.example')
    a = await connect(sa, 'alice', 'home')
    try:
        b = await connect(e, 'bob', 'work', mech=e.mech)
    except BaseException:
        await disconnect(a)
        raise
    try:
        await traffic(a, b, sa.domain, e.domain)
        await settle_count(sa, e.address, 2)
    finally:
        await disconnect(a, b)
    sa.wait_for_log(r's2s out \S+ -> ejabberd\.example authenticated by SASL '
                    r'EXTERNAL(?!,)')
    sa.wait_for_log(r's2s in ejabberd\.example -> \S+ authenticated')
    assert 'bidirectional' not in sa.log_text()
