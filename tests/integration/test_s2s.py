"""stanzad federating with stanzad: two or three servers on loopback, each
with its own domains and certificates from a test CA, finding each other
through the real resolver (libunbound) asking an unbound daemon
(dnsserver.py) that holds the SRV and A records of the test domains.

- SRV: `_xmpp-server._tcp` on a non-default port (STARTTLS), XEP-0368
  `_xmpps-server._tcp` preferred over it (direct TLS), and the A record
  on 5269 when there is no SRV; the logs of both ends show which was used.
- RFC 6121 across servers: subscriptions both ways, rosters on both sides,
  presence online and offline, and the probe a login sends answered by the
  other server after a restart.
- Bounces (RFC 6120 §10.4.3, §8.3.1): a domain without DNS records
  (<remote-server-not-found/>), a server that accepts the connection and
  never answers (<remote-server-timeout/> after s2s.connect_timeout),
  stanzas beyond s2s.max_queue (<resource-constraint/>), iq requests too;
  presence, errors and iq results are never answered with errors.
- s2s.idle_timeout closes a quiet stream; the next stanza opens another.
- Virtual hosts with a certificate each: SNI picks the right one for
  direct TLS server streams (SASL EXTERNAL succeeds for each) and clients.
- An external component (XEP-0114) of one server reachable from the other
  server's users, and its answers going out over s2s, with SASL EXTERNAL
  (the host's certificate names the component) and with dialback.
- A group chat room on A's conference service with an occupant from B
  (the service's domain federates like a host's); B's users cannot
  create rooms on A.
- An authenticated incoming stream refuses stanzas from another domain
  (<invalid-from/>), to a domain not ours (<host-unknown/>) and without
  addresses (<improper-addressing/>).
"""

import asyncio
import re
import socket
import ssl
import time
import uuid
import xml.etree.ElementTree as ET

import pytest
import yaml
from OpenSSL import SSL
from slixmpp.componentxmpp import ComponentXMPP
from slixmpp.exceptions import IqError

import clients
import rawstream
from conftest import Server, _servers_key, stop_and_check, free_ports
from dnsserver import BlackHole, DnsServer
from federation import TestCA, pick_address
from rawstream import NS_SASL, q
import test_muc as m
from test_presence import manual, presence_of

NS_SERVER = 'jabber:server'
NS_DISCO_INFO = 'http://jabber.org/protocol/disco#info'
WAIT = 15
PASSWORD = 'pw-secret'
COMPONENT = 'comp.a.example'
COMPONENT_SECRET = 'comp-secret'
ROOMS = 'conference.a.example'  # A's group chat service


# ---- the world: CA, certificates, ports, DNS ------------------------------

class World:
    """What every test of the module shares: the test CA and certificates,
    the ports each domain's server listens on, and the DNS server whose
    zone `example.` points the domains at them."""

    def __init__(self, root):
        self.root = root
        self.ca = TestCA(root / 'ca')
        # a.example's certificate names its component as well (how a
        # host's services are usually covered)
        self.certs = {
            'a.example': self.ca.issue('a.example',
                                       also=[COMPONENT, ROOMS]),
            'a.example/plain': self.ca.issue('a.example',
                                             name='a.example-plain'),
        }
        for d in ('a2.example', 'a3.example', 'b.example', 'c.example'):
            self.certs[d] = self.ca.issue(d)
        (self.a_s2s, self.a_s2s_tls, self.b_s2s,
         self.b_s2s_tls) = free_ports(4)
        # c.example has no SRV: its server must be on 5269 of its address
        self.c_addr = pick_address(ports=(5269,))
        self.hole = BlackHole()
        self.dns = DnsServer(root / 'dns')
        self.dns.zone('example', [
            # a: STARTTLS on a non-default port; its component likewise
            f'_xmpp-server._tcp.a SRV 0 0 {self.a_s2s} xmpp-a.example.',
            f'_xmpp-server._tcp.comp.a SRV 0 0 {self.a_s2s} '
            'xmpp-a.example.',
            f'_xmpp-server._tcp.conference.a SRV 0 0 {self.a_s2s} '
            'xmpp-a.example.',
            # a2, a3: direct TLS only (SNI picks the certificate)
            f'_xmpps-server._tcp.a2 SRV 0 0 {self.a_s2s_tls} '
            'xmpp-a.example.',
            f'_xmpps-server._tcp.a3 SRV 0 0 {self.a_s2s_tls} '
            'xmpp-a.example.',
            'xmpp-a A 127.0.0.1',
            # b: both; XEP-0368 direct TLS has the better priority
            f'_xmpps-server._tcp.b SRV 0 0 {self.b_s2s_tls} '
            'xmpp-b.example.',
            f'_xmpp-server._tcp.b SRV 5 0 {self.b_s2s} xmpp-b.example.',
            'xmpp-b A 127.0.0.1',
            # c: no SRV at all, only the domain's address (port 5269)
            f'c A {self.c_addr}',
            # hole: a server that accepts connections and never speaks
            f'_xmpp-server._tcp.hole SRV 0 0 {self.hole.port} '
            'xmpp-hole.example.',
            'xmpp-hole A 127.0.0.1',
            # nodns.example: nothing at all
        ])
        self.dns.start()

    def close(self):
        self.dns.stop()
        self.hole.close()


@pytest.fixture(scope='module')
def world(tmp_path_factory):
    w = World(tmp_path_factory.mktemp('s2s-world'))
    yield w
    w.close()


class Stanzad(Server):
    """A stanzad serving `hosts` (the first is its users' domain) with s2s
    listeners; users are made with stanzactl in that domain."""

    def __init__(self, root, hosts, s2s_listeners, overrides):
        self.domain = hosts[0]['name']
        super().__init__(root, dict(overrides, hosts=hosts))
        self.config['listeners'] += s2s_listeners
        self.config_path.write_text(
            yaml.safe_dump(self.config, sort_keys=False))

    def add_user(self, user, password, domain=None):
        self.ctl('user', 'add', f'{user}@{domain or self.domain}',
                 stdin=password + '\n')
        self.passwords[user] = password

    def jid(self, user, resource=None):
        return f'{user}@{self.domain}' + (f'/{resource}' if resource else '')


@pytest.fixture
def stanzads(request, tmp_path, world):
    """start(domains, ...) -> Stanzad; checked and stopped at teardown
    like conftest's server_factory."""
    servers = []
    request.node.stash[_servers_key] = servers

    def start(domains, *, users=('alice', 'bob', 'carol'), certs=None,
              dialback=False, listen=None, **overrides):
        certs = certs or {}
        hosts = []
        for d in domains:
            if certs.get(d) == 'self-signed':
                # stanzad makes one in its data_dir
                hosts.append({'name': d})
                continue
            crt, key = world.certs[certs.get(d, d)]
            hosts.append({'name': d,
                          'tls': {'cert': str(crt), 'key': str(key)}})
        addr, port, tls_port = listen
        s2s = [{'type': 's2s', 'address': addr, 'port': port}]
        if tls_port:
            s2s.append({'type': 's2s_tls', 'address': addr,
                        'port': tls_port})
        # These tests are about each server's own connection to the
        # other (which port, which authentication, its idle timer):
        # XEP-0288 would let the second direction ride on the first.
        # test_s2s_bidi.py covers bidi.
        s2s_conf = {'ca_file': str(world.ca.cert), 'dialback': dialback,
                    'bidi': False}
        s2s_conf.update(overrides.pop('s2s', {}))
        srv = Stanzad(tmp_path / f'server{len(servers)}', hosts, s2s,
                      dict(overrides, s2s=s2s_conf,
                           dns=world.dns.resolver_config()))
        servers.append(srv)
        srv.start()
        for user in users:
            srv.add_user(user, PASSWORD)
        return srv

    yield start
    stop_and_check(servers)


def server_a(world, stanzads, domains=('a.example',), **kw):
    return stanzads(list(domains),
                    listen=('127.0.0.1', world.a_s2s, world.a_s2s_tls), **kw)


def server_b(world, stanzads, **kw):
    return stanzads(['b.example'],
                    listen=('127.0.0.1', world.b_s2s, world.b_s2s_tls), **kw)


def server_c(world, stanzads, **kw):
    return stanzads(['c.example'], listen=(world.c_addr, 5269, None), **kw)


def unique(prefix='m'):
    return f'{prefix}-{uuid.uuid4().hex[:10]}'


async def send_across(src, dst, timeout=WAIT):
    """src sends a chat message to dst's full JID on another server; dst
    must get it from src's full JID."""
    return await clients.send_and_receive(src, dst, timeout=timeout)


def error_condition(stanza):
    """The stanza error condition of a slixmpp stanza of type error."""
    return stanza['error']['condition']


# ---- 1. finding the other server -------------------------------------------

async def test_srv_starttls_port_and_direct_tls(world, stanzads):
    """a.example publishes only _xmpp-server on a non-default port;
    b.example publishes _xmpps-server (priority 0) and _xmpp-server
    (priority 5). A reaches B with direct TLS on B's s2s_tls port, B
    reaches A with STARTTLS on A's port: a message each way, and both
    ends' logs say which connection was used."""
    a = server_a(world, stanzads)
    b = server_b(world, stanzads)
    async with clients.connected(a, 'alice') as (alice,), \
            clients.connected(b, 'bob') as (bob,):
        await send_across(alice, bob)
        await send_across(bob, alice)
    # A -> B: XEP-0368 direct TLS preferred, on B's s2s_tls listener
    a.wait_for_log(r's2s connected to b\.example at 127\.0\.0\.1\S* '
                   r'\(direct TLS\)')
    b.wait_for_log(rf'accepted from 127\.0\.0\.1\S* on s2s_tls port '
                   rf'{world.b_s2s_tls}\b')
    a.wait_for_log(r's2s out \S+ -> b\.example authenticated by SASL EXTERNAL')
    # B -> A: the STARTTLS SRV record's port
    a.wait_for_log(rf'accepted from 127\.0\.0\.1\S* on s2s port '
                   rf'{world.a_s2s}\b')
    b.wait_for_log(r's2s out \S+ -> a\.example authenticated by SASL EXTERNAL')
    assert not re.search(r's2s connected to a\.example .*direct TLS',
                         b.log_text())
    assert 'on s2s_tls port' not in a.log_text()


async def test_a_record_fallback(world, stanzads):
    """c.example has no SRV record: A connects to c.example's address on
    5269 (RFC 6120 §3.2.2), and C reaches A through A's SRV record."""
    a = server_a(world, stanzads)
    c = server_c(world, stanzads)
    async with clients.connected(a, 'alice') as (alice,), \
            clients.connected(c, 'carol') as (carol,):
        await send_across(alice, carol)
        await send_across(carol, alice)
    c.wait_for_log(r'accepted from \S+ on s2s port 5269\b')
    a.wait_for_log(rf's2s connected to c\.example at '
                   rf'{re.escape(world.c_addr)}')
    a.wait_for_log(r's2s out \S+ -> c\.example authenticated by SASL EXTERNAL')


@pytest.mark.deadline(90)
async def test_dialback_two_shards(world, stanzads):
    """Self-signed certificates on both sides, dialback on, two shards
    each: every stream is authenticated by asking the other server
    (XEP-0220 db:verify over the receiving server's own outgoing stream,
    whose route may live on another shard than the incoming stream).
    Several messages each way between several users arrive."""
    a = server_a(world, stanzads, dialback=True, shards=2,
                 certs={'a.example': 'self-signed'})
    b = server_b(world, stanzads, dialback=True, shards=2,
                 certs={'b.example': 'self-signed'})
    async with clients.connected(a, 'alice', 'carol') as (alice, carol), \
            clients.connected(b, 'bob', 'carol') as (bob, bcarol):
        for _ in range(3):
            for src, dst in ((alice, bob), (bob, alice), (carol, bcarol),
                             (bcarol, carol), (alice, bcarol)):
                await send_across(src, dst)
    for srv, other in ((a, 'b'), (b, 'a')):
        srv.wait_for_log(rf's2s out \S+ -> {other}\.example authenticated by dialback')
        srv.wait_for_log(rf's2s in {other}\.example -> \S+: verifying its '
                         r'dialback key')
        srv.wait_for_log(rf's2s in {other}\.example -> \S+ authenticated by '
                         r'dialback')
        assert 'SASL EXTERNAL' not in srv.log_text()


# ---- 2. presence subscriptions across servers -------------------------------

async def roster_item(client, contact):
    await client.get_roster(timeout=WAIT)
    item = client.client_roster[contact]
    return item['subscription'], item['pending_out']


async def until_subscription(client, contact, want):
    deadline = time.monotonic() + WAIT
    while True:
        state = await roster_item(client, contact)
        if state[0] == want:
            return state
        if time.monotonic() > deadline:
            raise AssertionError(f'{client.boundjid}: {contact} is {state}, '
                                 f'not {want}')
        await asyncio.sleep(0.1)


async def connect_manual(server, user):
    client = manual(await clients.connect(server, user, available=False))
    client.send_presence()
    return client


@pytest.mark.deadline(120)
async def test_subscription_and_presence(world, stanzads):
    """RFC 6121 §3.1 across servers: alice@a asks bob@b, bob approves and
    asks back, alice approves; both rosters say 'both'; each sees the
    other's presence, unavailable when one leaves; after B restarts,
    bob's login probes alice (§4.3) and A answers with her presence."""
    a = server_a(world, stanzads)
    b = server_b(world, stanzads)
    alice_jid, bob_jid = a.jid('alice'), b.jid('bob')
    alice = await connect_manual(a, 'alice')
    bob = await connect_manual(b, 'bob')
    try:
        alice.send_presence(pto=bob_jid, ptype='subscribe')
        await presence_of(bob, alice_jid, 'subscribe', timeout=WAIT)
        assert await until_subscription(alice, bob_jid, 'none') == \
            ('none', True)  # pending out (RFC 6121 §3.1.2)
        bob.send_presence(pto=alice_jid, ptype='subscribed')
        await presence_of(alice, bob_jid, 'subscribed', timeout=WAIT)
        # §3.1.6: the approval is followed by bob's current presence
        await presence_of(alice, bob_jid, None, timeout=WAIT)
        await until_subscription(alice, bob_jid, 'to')
        await until_subscription(bob, alice_jid, 'from')

        bob.send_presence(pto=alice_jid, ptype='subscribe')
        await presence_of(alice, bob_jid, 'subscribe', timeout=WAIT)
        alice.send_presence(pto=bob_jid, ptype='subscribed')
        await presence_of(bob, alice_jid, 'subscribed', timeout=WAIT)
        await presence_of(bob, alice_jid, None, timeout=WAIT)
        await until_subscription(alice, bob_jid, 'both')
        await until_subscription(bob, alice_jid, 'both')

        # a presence change crosses; so does going offline
        alice.send_presence(pstatus='busy', pshow='dnd')
        pres = await presence_of(bob, alice_jid, 'dnd', timeout=WAIT)
        assert pres['status'] == 'busy'
        await clients.disconnect(bob)
        await presence_of(alice, bob_jid, 'unavailable', timeout=WAIT)
    finally:
        await clients.disconnect(alice, bob)

    # B restarts (no stream survives, new dialback secret); alice is
    # online at A. bob's initial presence makes B probe alice over a new
    # stream, and A answers with her presence; A also gets bob's.
    alice = await connect_manual(a, 'alice')
    streams_from_b = len(re.findall(r's2s in b\.example -> \S+ authenticated',
                                    a.log_text()))
    try:
        b.restart()
        bob = await connect_manual(b, 'bob')
        try:
            await presence_of(bob, alice_jid, None, timeout=WAIT)
            await presence_of(alice, bob_jid, None, timeout=WAIT)
            assert (await roster_item(bob, alice_jid))[0] == 'both'
        finally:
            await clients.disconnect(bob)
        # over a stream B opened after its restart
        a.wait_for_log(r's2s in b\.example -> \S+ authenticated',
                       count=streams_from_b + 1)
    finally:
        await clients.disconnect(alice)


# ---- 3. bounces -------------------------------------------------------------

async def next_error(client, timeout=WAIT):
    """The next message of type error."""
    deadline = time.monotonic() + timeout
    while True:
        msg = await client.next_message(
            timeout=max(0.1, deadline - time.monotonic()))
        if msg['type'] == 'error':
            return msg


def no_presence_errors(client):
    """No presence error reached client (drains what it has)."""
    got = []
    while not client.presences.empty():
        p = client.presences.get_nowait()
        if p['type'] == 'error':
            got.append(p)
    assert not got, [str(p) for p in got]


async def test_bounce_no_dns_records(world, stanzads):
    """RFC 6120 §10.4.3: nodns.example has no records at all: a message
    and an iq request come back with <remote-server-not-found/>; the
    presence, the error and the iq result sent before them come back with
    nothing (presence is not answered with errors, §8.3.1 errors never
    are, an iq result waits for nothing)."""
    a = server_a(world, stanzads)
    async with clients.connected(a, 'alice') as (alice,):
        to = 'someone@nodns.example'
        alice.send_presence(pto=to, ptype='subscribe')
        alice.send_presence(pto=to)
        err = alice.make_message(mto=to, mbody='e', mtype='error')
        err['error']['condition'] = 'item-not-found'
        err.send()
        alice.make_iq_result(ito=to, id='r1').send()
        body = unique()
        alice.send_message(mto=to, mbody=body, mtype='chat')
        msg = await next_error(alice)
        assert msg['body'] == body
        assert msg['from'] == to
        assert error_condition(msg) == 'remote-server-not-found'
        assert msg['error']['type'] == 'cancel'
        # the message was the last one queued: had the others bounced,
        # their errors would have come first
        assert alice.messages.empty()
        no_presence_errors(alice)

        with pytest.raises(IqError) as e:
            await alice['xep_0030'].get_info(jid='nodns.example',
                                              timeout=WAIT)
        assert e.value.iq['error']['condition'] == 'remote-server-not-found'
        assert e.value.iq['from'] == 'nodns.example'


@pytest.mark.deadline(90)
async def test_bounce_timeout_and_queue_limit(world, stanzads):
    """hole.example's SRV target accepts TCP connections and never
    answers. With s2s.max_queue 2, the first two stanzas wait and come
    back with <remote-server-timeout/> once s2s.connect_timeout (3 s)
    passed; the three beyond the queue come back at once with
    <resource-constraint/>. An iq to the same domain times out too."""
    a = server_a(world, stanzads,
                 s2s={'connect_timeout': '3s', 'max_queue': 2})
    async with clients.connected(a, 'alice') as (alice,):
        to = 'someone@hole.example'
        bodies = [unique() for _ in range(5)]
        start = time.monotonic()
        for body in bodies:
            alice.send_message(mto=to, mbody=body, mtype='chat')
        early = [await next_error(alice, timeout=2.5) for _ in range(3)]
        assert time.monotonic() - start < 2.5
        assert sorted(m['body'] for m in early) == sorted(bodies[2:])
        for m in early:
            assert error_condition(m) == 'resource-constraint'
        late = [await next_error(alice, timeout=WAIT) for _ in range(2)]
        assert time.monotonic() - start >= 2.9
        assert sorted(m['body'] for m in late) == sorted(bodies[:2])
        for m in late:
            assert error_condition(m) == 'remote-server-timeout'
            assert m['from'] == to

        # a fresh attempt: an iq request times out the same way
        start = time.monotonic()
        with pytest.raises(IqError) as e:
            await alice['xep_0030'].get_info(jid=to, timeout=WAIT)
        assert e.value.iq['error']['condition'] == 'remote-server-timeout'
        assert time.monotonic() - start >= 2.9
    a.wait_for_log(r's2s out \S+ -> hole\.example: 2 stanzas bounced: timed out')


# ---- 4. idle timeout --------------------------------------------------------

@pytest.mark.deadline(90)
@pytest.mark.parametrize('side', ['sender', 'receiver'])
async def test_idle_timeout_reconnects(world, stanzads, side):
    """With s2s.idle_timeout 1 s on one side (the other keeps its 10 min),
    that side closes the quiet stream A opened to B: A's outgoing stream
    itself ('sender'), or B's incoming one, which A then sees closed by
    its peer ('receiver'). The next message opens a new stream and
    arrives."""
    short = {'s2s': {'idle_timeout': '1s'}}
    a = server_a(world, stanzads, **(short if side == 'sender' else {}))
    b = server_b(world, stanzads, **(short if side == 'receiver' else {}))
    async with clients.connected(a, 'alice') as (alice,), \
            clients.connected(b, 'bob') as (bob,):
        await send_across(alice, bob)
        if side == 'sender':
            a.wait_for_log(r's2s out \S+ -> b\.example: idle, closing', timeout=WAIT)
        else:
            b.wait_for_log(r's2s in a\.example -> \S+: idle, closing',
                           timeout=WAIT)
        a.wait_for_log(r's2s out \S+ -> b\.example closed', timeout=WAIT)
        assert len(re.findall(r's2s out \S+ -> b\.example authenticated',
                              a.log_text())) == 1
        await send_across(alice, bob)
        a.wait_for_log(r's2s out \S+ -> b\.example authenticated', count=2)
        b.wait_for_log(r's2s in a\.example -> \S+ authenticated', count=2)


# ---- 5. virtual hosts and SNI -----------------------------------------------

async def connect_vhost(server, jid, ca=None):
    """A client of a host other than the server's first, on its direct
    TLS port (its SNI names the host); with ca, it verifies the server's
    certificate for that host. Available once the server answered a
    ping."""
    client = clients.TestClient(f'{jid}/r', PASSWORD)
    if ca is not None:
        client.ssl_context.load_verify_locations(str(ca))
        client.ssl_context.check_hostname = True
        client.ssl_context.verify_mode = ssl.CERT_REQUIRED
    done = asyncio.get_running_loop().create_future()
    client.add_event_handler('session_start',
                             lambda _: done.done() or done.set_result(None))
    client.connect(('127.0.0.1', server.tls_port), use_ssl=True)
    try:
        await asyncio.wait_for(done, WAIT)
    except BaseException:
        client.abort()
        raise
    client.send_presence()
    await client['xep_0199'].ping(jid.split('@')[1], timeout=WAIT)
    return client


def c2s_cert_names(world, port, sni):
    """The DNS names of the certificate stanzad's direct TLS client
    listener shows for SNI name `sni` (verified against the test CA)."""
    ctx = ssl.create_default_context(cafile=str(world.ca.cert))
    with socket.create_connection(('127.0.0.1', port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=sni) as tls:
            cert = tls.getpeercert()
    return sorted(v for k, v in cert['subjectAltName'] if k == 'DNS')


@pytest.mark.deadline(90)
async def test_vhosts_sni(world, stanzads):
    """A serves a.example (the default), a2.example and a3.example, each
    with its own certificate. a2 and a3 are reachable only by direct TLS,
    where nothing but SNI tells A which certificate to show; B, trusting
    the CA and without dialback, reaches both with SASL EXTERNAL. Clients
    get each host's certificate by SNI too."""
    a = server_a(world, stanzads,
                 domains=('a.example', 'a2.example', 'a3.example'),
                 users=())
    for d in ('a2.example', 'a3.example'):
        a.add_user('alice', PASSWORD, domain=d)
    b = server_b(world, stanzads)
    for d in ('a.example', 'a2.example', 'a3.example'):
        assert c2s_cert_names(world, a.tls_port, d) == \
            sorted([d] + ([COMPONENT, ROOMS] if d == 'a.example' else []))

    async with clients.connected(b, 'bob') as (bob,):
        for d in ('a2.example', 'a3.example'):
            alice = await connect_vhost(a, f'alice@{d}', world.ca.cert)
            try:
                await send_across(bob, alice)
                await send_across(alice, bob)
            finally:
                await clients.disconnect(alice)
            b.wait_for_log(rf's2s connected to {re.escape(d)} at \S+ '
                           r'\(direct TLS\)')
            b.wait_for_log(rf's2s out \S+ -> {re.escape(d)} authenticated by '
                           r'SASL EXTERNAL')
    a.wait_for_log(r's2s in b\.example -> \S+ authenticated by SASL EXTERNAL',
                   count=2)
    assert 'not verified' not in b.log_text()


# ---- 6. components over s2s -------------------------------------------------

class Component(ComponentXMPP):
    """Answers every chat message with 'echo: BODY' and disco#info with a
    gateway identity."""

    def __init__(self, port):
        super().__init__(COMPONENT, COMPONENT_SECRET, '127.0.0.1', port)
        self.register_plugin('xep_0030')
        self['xep_0030'].add_identity(category='gateway', itype='smtp',
                                      name='echo')
        self.received = asyncio.Queue()
        self.add_event_handler('message', self.on_message)

    async def get_dns_records(self, domain, port=None):
        return [(domain, '127.0.0.1', self.server_port)]

    def on_message(self, msg):
        self.received.put_nowait(msg)
        if msg['type'] == 'chat':
            self.send_message(mto=msg['from'], mfrom=msg['to'],
                              mbody=f'echo: {msg["body"]}', mtype='chat')


async def connect_component(server):
    comp = Component(server.component_port)
    done = asyncio.get_running_loop().create_future()
    comp.add_event_handler('session_start',
                           lambda _: done.done() or done.set_result(None))
    comp.connect()
    try:
        await asyncio.wait_for(done, WAIT)
    except BaseException:
        comp.abort()
        raise
    return comp


@pytest.mark.deadline(90)
@pytest.mark.parametrize('auth', ['external', 'dialback'])
async def test_component_over_s2s(world, stanzads, auth):
    """bob@b.example writes to echo@comp.a.example, a component of A: the
    stream B opens to comp.a.example is accepted, the component gets the
    message, and its answer goes out over a stream from comp.a.example to
    b.example. 'external': A's certificate names the component and both
    servers use SASL EXTERNAL only; 'dialback': it does not, and dialback
    authenticates the component's domain both ways."""
    external = auth == 'external'
    a = server_a(world, stanzads, dialback=not external,
                 certs={} if external else {'a.example': 'a.example/plain'},
                 components=[{'domain': COMPONENT,
                              'secret': COMPONENT_SECRET}])
    b = server_b(world, stanzads, dialback=not external)
    comp = await connect_component(a)
    try:
        async with clients.connected(b, 'bob') as (bob,):
            body = unique()
            bob.send_message(mto=f'echo@{COMPONENT}', mbody=body,
                             mtype='chat')
            got = await asyncio.wait_for(comp.received.get(), WAIT)
            assert got['body'] == body and got['from'] == bob.boundjid
            reply = await bob.next_message(f'echo: {body}')
            assert reply['from'] == f'echo@{COMPONENT}'

            info = await bob['xep_0030'].get_info(jid=COMPONENT,
                                                  timeout=WAIT)
            ids = info['disco_info']['identities']
            assert ('gateway', 'smtp', None, 'echo') in ids, ids
    finally:
        comp.disconnect()
    # B's stream to the component: B's certificate is good either way
    b.wait_for_log(rf's2s out \S+ -> {re.escape(COMPONENT)} authenticated by '
                   r'SASL EXTERNAL')
    a.wait_for_log(r's2s in b\.example -> \S+ authenticated by SASL EXTERNAL')
    # the component's stream to B: from comp.a.example
    how = 'SASL EXTERNAL' if external else 'dialback'
    a.wait_for_log(rf's2s out \S+ -> b\.example authenticated by {how}')
    b.wait_for_log(rf's2s in {re.escape(COMPONENT)} -> \S+ authenticated by '
                   rf'{how}')
    if not external:
        # B asked A, the authoritative server of comp.a.example, to
        # verify the component's dialback key, over B's stream to it
        b.wait_for_log(rf's2s in {re.escape(COMPONENT)} -> \S+: verifying '
                       r'its dialback key')
        b.wait_for_log(rf's2s out \S+ -> {re.escape(COMPONENT)}: TLS up, '
                       r'certificate not verified')


async def test_muc_remote_occupant(world, stanzads):
    """A room on A's group chat service (a subdomain service, served in
    the process) with an occupant from B: B's stream to
    conference.a.example is accepted, the room's traffic goes out over a
    stream from conference.a.example, and the remote occupant joins,
    chats, gets private messages and leaves like a local one (its
    disconnect too: B sends the room its unavailable presence)."""
    a = server_a(world, stanzads, shards=2)
    b = server_b(world, stanzads)
    room = f'fed@{ROOMS}'
    alice = await clients.connect(a, 'alice', 'r',
                                  setup=m.rooms_setup(ROOMS))
    bob = await clients.connect(b, 'bob', 'r', setup=m.rooms_setup(ROOMS))
    try:
        # Only A's own accounts create rooms there.
        bob.send_raw(f"<presence to='mine@{ROOMS}/Bob'/>")
        e = await m.next_muc(bob, m.is_error(), WAIT)
        assert m.err_cond(e) == ('cancel', 'not-allowed')
        alice.send_raw(f"<presence to='{room}/Alice'/>")
        p = await m.next_muc(alice, lambda x: 110 in m.codes(x), WAIT)
        assert 201 in m.codes(p)
        await m.next_muc(alice, lambda x: x.find('{jabber:client}subject')
                         is not None, WAIT)
        bob.send_raw(f"<presence to='{room}/Bob'><x "
                     f"xmlns='{m.NS_MUC}'/></presence>")
        seen = await m.next_muc(bob, m.is_pres(f'{room}/Alice'), WAIT)
        assert m.item(seen).get('affiliation') == 'owner'
        p = await m.next_muc(bob, lambda x: 110 in m.codes(x), WAIT)
        assert p.get('from') == f'{room}/Bob'
        assert p.find(m.q(m.NS_OID, 'occupant-id')) is not None
        await m.next_muc(bob, lambda x: x.find('{jabber:client}subject')
                         is not None, WAIT)
        joined = await m.next_muc(alice, m.is_pres(f'{room}/Bob'), WAIT)
        assert m.item(joined).get('jid') == str(bob.boundjid)

        bob.send_raw(f"<message to='{room}' type='groupchat'>"
                     '<body>hi from b</body></message>')
        for c in (alice, bob):
            got = await m.next_muc(c, m.is_msg('hi from b'), WAIT)
            assert got.get('from') == f'{room}/Bob'
        alice.send_raw(f"<message to='{room}' type='groupchat'>"
                       '<body>hi from a</body></message>')
        got = await m.next_muc(bob, m.is_msg('hi from a'), WAIT)
        assert got.get('from') == f'{room}/Alice'
        alice.send_raw(f"<message to='{room}/Bob' type='chat'>"
                       '<body>just you</body></message>')
        got = await m.next_muc(bob, m.is_msg('just you'), WAIT)
        assert got.get('from') == f'{room}/Alice'

        await clients.disconnect(bob)
        await m.next_muc(alice, m.is_pres(f'{room}/Bob', 'unavailable'),
                         WAIT)
    finally:
        await clients.disconnect(alice, bob)
    b.wait_for_log(rf's2s out \S+ -> {re.escape(ROOMS)} authenticated by '
                   r'SASL EXTERNAL')
    a.wait_for_log(rf's2s out \S+ -> b\.example authenticated by SASL '
                   r'EXTERNAL')


# ---- 7. what an authenticated stream may carry ------------------------------

class S2SRawStream(rawstream.RawStream):
    """A raw server stream to stanzad, as b.example: STARTTLS with B's
    certificate, SASL EXTERNAL, then whatever the test sends."""

    def __init__(self, port, cert, key, sni):
        self.cert, self.key, self.sni = cert, key, sni
        super().__init__(port)

    def _handshake(self, deadline=None):
        deadline = deadline or self._deadline(None)
        ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
        ctx.set_verify(SSL.VERIFY_NONE, lambda *args: True)
        ctx.use_certificate_chain_file(str(self.cert))
        ctx.use_privatekey_file(str(self.key))
        conn = SSL.Connection(ctx, self.sock)
        conn.set_tlsext_host_name(self.sni.encode())
        conn.set_connect_state()
        while True:
            try:
                conn.do_handshake()
                break
            except SSL.WantReadError:
                self._select(deadline)
            except SSL.WantWriteError:
                self._select(deadline, read=False)
        self.tls = conn

    def open_server(self, to, frm):
        return self.open(to=to, xmlns=NS_SERVER, extra=f"from='{frm}'")

    def authenticate_external(self, to, frm):
        self.open_server(to, frm)
        feats = self.features()
        assert feats.find(q(rawstream.NS_TLS, 'starttls')) is not None
        self.starttls()
        self.open_server(to, frm)
        mechs = [m.text for m in self.features().iter(q(NS_SASL,
                                                        'mechanism'))]
        assert 'EXTERNAL' in mechs, mechs
        self.send(f"<auth xmlns='{NS_SASL}' mechanism='EXTERNAL'>=</auth>")
        elem = self.read_element()
        assert elem.tag == q(NS_SASL, 'success'), ET.tostring(elem)
        self._new_parser()
        self.open_server(to, frm)
        self.features()


@pytest.mark.parametrize('stanza,condition', [
    # RFC 6120 §4.9.3.9: not the domain the stream authenticated
    ("<message from='mallory@evil.example' to='alice@a.example' "
     "type='chat'><body>x</body></message>", 'invalid-from'),
    # a subdomain of the authenticated one is another domain too
    ("<message from='x@sub.b.example' to='alice@a.example' "
     "type='chat'><body>x</body></message>", 'invalid-from'),
    # §4.9.3.6: the 'to' is no domain of this server
    ("<message from='bob@b.example' to='someone@elsewhere.example' "
     "type='chat'><body>x</body></message>", 'host-unknown'),
    # §4.9.3.7 / §8.1.1.1: between servers both addresses are required
    ("<message from='bob@b.example' type='chat'><body>x</body></message>",
     'improper-addressing'),
    ("<iq from='bob@b.example' to='a.example' type='get' id='1'>"
     "<query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
     .replace("to='a.example' ", ''), 'improper-addressing'),
])
async def test_incoming_stream_addressing(world, stanzads, stanza,
                                          condition):
    """A stream that authenticated as b.example (to a.example) first
    carries a good message, which alice gets; then the bad stanza ends it
    with the stream error RFC 6120 names, and alice gets nothing of it."""
    a = server_a(world, stanzads)
    crt, key = world.certs['b.example']
    async with clients.connected(a, 'alice') as (alice,):
        with S2SRawStream(world.a_s2s, crt, key, 'a.example') as s:
            s.authenticate_external('a.example', 'b.example')
            body = unique()
            s.send(f"<message from='bob@b.example/r' to='alice@a.example' "
                   f"type='chat'><body>{body}</body></message>")
            msg = await alice.next_message(body)
            assert msg['from'] == 'bob@b.example/r'
            s.send(stanza)
            s.expect_stream_error(condition)
        await asyncio.sleep(0.3)
        assert alice.messages.empty()
    a.wait_for_log(rf'stream error {condition}')


async def test_incoming_stream_other_local_domain(world, stanzads):
    """The 'to' of a stanza may be any domain of the server, not only the
    one the stream was opened to (target multiplexing, accepted without
    asking: docs/internals/s2s.md): a stream authenticated as b.example
    to a.example delivers to alice@a2.example."""
    a = server_a(world, stanzads, domains=('a.example', 'a2.example'),
                 users=())
    a.add_user('alice', PASSWORD, domain='a2.example')
    crt, key = world.certs['b.example']
    alice = await connect_vhost(a, 'alice@a2.example')
    try:
        with S2SRawStream(world.a_s2s, crt, key, 'a.example') as s:
            s.authenticate_external('a.example', 'b.example')
            body = unique()
            s.send(f"<message from='bob@b.example/r' "
                   f"to='alice@a2.example' type='chat'><body>{body}</body>"
                   "</message>")
            msg = await alice.next_message(body)
            assert msg['from'] == 'bob@b.example/r'
            s.close_stream()
    finally:
        await clients.disconnect(alice)


async def test_dialback_unreachable_authority(world, stanzads):
    """XEP-0220 §2.4: a dialback request for a domain whose authoritative
    server cannot be asked (nodns.example has no records) is answered with
    a db:result of type error carrying the <error/> child the XEP
    requires, <remote-server-not-found/>, and the stream ends."""
    a = server_a(world, stanzads, dialback=True)
    crt, key = world.certs['b.example']
    with S2SRawStream(world.a_s2s, crt, key, 'a.example') as s:
        s.open_server('a.example', 'nodns.example')
        s.features()
        s.starttls()
        s.open_server('a.example', 'nodns.example')
        feats = s.features()
        assert feats.find(q('urn:xmpp:features:dialback',
                            'dialback')) is not None, ET.tostring(feats)
        s.send("<db:result xmlns:db='jabber:server:dialback' "
               "from='nodns.example' to='a.example'>"
               f"{'ab' * 32}</db:result>")
        elem = s.read_element(timeout=20)
        assert elem.tag == q('jabber:server:dialback', 'result'), \
            ET.tostring(elem)
        assert elem.get('type') == 'error', ET.tostring(elem)
        assert elem.get('from') == 'a.example'
        assert elem.get('to') == 'nodns.example'
        err = elem.find(q(NS_SERVER, 'error'))
        assert err is not None and err.get('type') == 'cancel', \
            ET.tostring(elem)
        assert err.find(q(rawstream.NS_STANZA_ERRORS,
                          'remote-server-not-found')) is not None, \
            ET.tostring(elem)
        s.expect_stream_error('not-authorized')
