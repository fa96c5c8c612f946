"""stanzad federating with the real Prosody 0.12 and ejabberd 23.01.

Every test runs against both peers (parametrized by `kind`). Each "world"
is one Federation (test CA, hosts file, DNS server) with one stanzad, one
Prosody and one ejabberd, each on its own loopback address and domain;
starting one costs seconds, so a world is shared by the tests of a class.

- External world: stanzad (`s2s.ca_file` the test CA) and both peers trust
  the test CA, dialback is off everywhere, so every stream authenticates
  with SASL EXTERNAL (RFC 6120 §6.4, XEP-0178). A message each way, a
  subscription each way with presence seen across (on, off and on
  again), an iq ping (XEP-0199) to each server's domain, a message to an
  account the peer does not have, and the logs of all three servers show
  EXTERNAL in both directions. stanzad has a second host here whose
  certificate is self-signed: the peers refuse it both ways, and its
  users get their messages back.
- Dialback world: nobody trusts the test CA (stanzad uses the system's
  store) and dialback (XEP-0220) is on everywhere: messages each way, and
  the logs of both sides show dialback in both directions. stanzad runs 2
  shards here, so that a db:verify often travels to the route's owner on
  the other shard.
- Refused world: dialback off everywhere. Prosody's certificate is signed
  by the test CA but for another name, ejabberd's is self-signed: stanzad
  refuses both, as the server it connects to and as the one connecting.
  Nothing gets through in either direction, every sender gets an error
  back, the logs say why, and stanzad keeps running.
"""

import uuid

import pytest

from clients import (connect, disconnect, drain, next_with_id, presence_of,
                     subscription, until)
from conftest import USERS, Server, _servers_key
from federation import Federation, attach_peers

S_DOMAIN = 'stanzad.example'
BAD_DOMAIN = 'badcert.example'  # a second stanzad host, self-signed
PEER_DOMAINS = {'prosody': 'prosody.example', 'ejabberd': 'ejabberd.example'}
KINDS = list(PEER_DOMAINS)
# Accounts: a peer has BASES; stanzad has BASE-KIND for each peer, so that
# the tests against Prosody and against ejabberd share no roster.
BASES = ('alice', 'sub', 'pinger')
PEER_USERS = {b: f'{b}-peer-secret' for b in BASES}
S_USERS = {f'{b}-{k}': f'{b}-{k}-secret' for b in BASES for k in KINDS}
# Set-up on a loaded machine: resolve, connect, TLS, authentication.
S2S_TIMEOUT = 40


class HostView:
    """A stanzad host other than its first, as clients.connect() sees a
    server (address, ports, accounts)."""

    def __init__(self, srv, domain):
        self.srv = srv
        self.domain = domain
        self.c2s_port = srv.c2s_port
        self.tls_port = srv.tls_port
        self.passwords = {}

    def add_user(self, user, password):
        self.srv.ctl('user', 'add', f'{user}@{self.domain}',
                     stdin=password + '\n')
        self.passwords[user] = password

    def jid(self, user, resource=None):
        return f'{user}@{self.domain}' + (f'/{resource}' if resource else '')


class World:
    """A Federation with stanzad and one peer of each kind.

    `stanzad_s2s`: stanzad's s2s section (ca_file is filled in when
    `stanzad_trusts_ca`); `peer_opts`: {kind: options of fed.prosody() /
    fed.ejabberd()}, where cert may be a function of the Federation;
    `bad_host`: stanzad also serves BAD_DOMAIN with a self-signed
    certificate."""

    def __init__(self, root, *, stanzad_trusts_ca, stanzad_s2s, peer_opts,
                 shards=1, bad_host=False):
        self.root = root
        self.fed = Federation(root / 'federation')
        self.srv = None
        try:
            self._start(stanzad_trusts_ca, stanzad_s2s, peer_opts, shards,
                        bad_host)
        except BaseException:
            self.close()
            raise

    def _start(self, trusts_ca, s2s, peer_opts, shards, bad_host):
        fed = self.fed
        address = fed.add_host(S_DOMAIN)
        crt, key = fed.ca.issue(S_DOMAIN)
        hosts = [{'name': S_DOMAIN,
                  'tls': {'cert': str(crt), 'key': str(key)}}]
        if bad_host:
            # the same server, so the same address
            fed.add_host(BAD_DOMAIN, address)
            bcrt, bkey = fed.ca.self_signed(BAD_DOMAIN)
            hosts.append({'name': BAD_DOMAIN,
                          'tls': {'cert': str(bcrt), 'key': str(bkey)}})
        self.peers = {}
        for kind in KINDS:
            opts = dict(peer_opts[kind])
            if callable(opts.get('cert')):
                opts['cert'] = opts['cert'](fed)
            make = fed.prosody if kind == 'prosody' else fed.ejabberd
            self.peers[kind] = make(PEER_DOMAINS[kind], users=PEER_USERS,
                                    **opts)
        s2s = dict(s2s, connect_timeout=f'{S2S_TIMEOUT}s')
        if trusts_ca:
            s2s['ca_file'] = str(fed.ca.cert)
        self.srv = Server(self.root / 'stanzad', {
            'hosts': hosts,
            'shards': shards,
            'listeners': [{'type': 's2s', 'address': address,
                           'port': 5269}],
            'dns': fed.dns_config(),
            's2s': s2s,
        })
        # the peers find stanzad from their first stanza on, so stanzad
        # need not be up before them: both start side by side
        fed.start(*self.peers.values())
        self.srv.start()
        for user, password in {**USERS, **S_USERS}.items():
            self.srv.add_user(user, password)
        self.bad = None
        if bad_host:
            self.bad = HostView(self.srv, BAD_DOMAIN)
            self.bad.add_user('alice', 'alice-bad-secret')

    def attach(self, request):
        """This world's logs go with `request`'s test report if it fails."""
        attach_peers(request, self.fed)
        request.node.stash[_servers_key] = [self.srv] if self.srv else []
        return self

    def close(self):
        try:
            if self.srv is not None:
                self.srv.stop()
        finally:
            self.fed.close()
        assert not (self.srv and self.srv.problems), self.srv.problems


def world_fixture(name, **kwargs):
    @pytest.fixture(scope='class')
    def fixture(tmp_path_factory):
        w = World(tmp_path_factory.mktemp(name), **kwargs)
        try:
            yield w
        finally:
            w.close()
    return fixture


external_world = world_fixture(
    'external', stanzad_trusts_ca=True, stanzad_s2s={'dialback': False},
    peer_opts={k: {'trust_ca': True, 'dialback': False} for k in KINDS},
    bad_host=True)

dialback_world = world_fixture(
    'dialback', stanzad_trusts_ca=False, stanzad_s2s={'dialback': True},
    peer_opts={k: {'trust_ca': False, 'dialback': True} for k in KINDS},
    shards=2)

refused_world = world_fixture(
    'refused', stanzad_trusts_ca=True, stanzad_s2s={'dialback': False},
    peer_opts={
        # signed by the CA everyone trusts, but for another name
        'prosody': {'trust_ca': True, 'dialback': False,
                    'cert': lambda fed: fed.ca.issue('elsewhere.example')},
        'ejabberd': {'trust_ca': True, 'dialback': False,
                     'cert': lambda fed: fed.ca.self_signed(
                         PEER_DOMAINS['ejabberd'])},
    })


# ---- clients ----------------------------------------------------------------

async def ready(client):
    """Subscriptions are answered by the tests, not by slixmpp; bounces
    are queued with the messages; the roster is fetched (a server pushes
    roster changes and subscription requests only to resources that asked
    for it, RFC 6121 §2.1.6 and §3.1.3)."""
    client.roster.auto_authorize = None
    client.roster.auto_subscribe = False
    client.add_event_handler('message_error', client.messages.put_nowait)
    await client.get_roster(timeout=15)
    return client


async def pair(world, kind, base, resources=('home', 'work')):
    """(stanzad client BASE-KIND, peer client BASE), both ready."""
    peer = world.peers[kind]
    s = await connect(world.srv, f'{base}-{kind}', resources[0])
    try:
        p = await connect(peer, base, resources[1], mech=peer.mech)
    except BaseException:
        await disconnect(s)
        raise
    try:
        await ready(s)
        await ready(p)
    except BaseException:
        await disconnect(s, p)
        raise
    return s, p


async def server_roster(client):
    """{contact: subscription} as the client's server has it now (a
    full roster get: no version, so nothing cached is trusted)."""
    iq = client.make_iq_get()
    iq.enable('roster')
    res = await iq.send(timeout=15)
    return {str(jid): item['subscription']
            for jid, item in res['roster']['items'].items()}


async def exchange(src, dst, timeout=S2S_TIMEOUT):
    """src sends a chat message to dst's full JID; dst gets it, with the
    body, from src's full JID, to its own."""
    body = f'from {src.boundjid.bare} to {dst.boundjid.bare} ' \
        f'{uuid.uuid4().hex}'
    src.send_message(mto=dst.boundjid.full, mbody=body, mtype='chat')
    msg = await dst.next_message(body, timeout)
    assert msg['from'].full == src.boundjid.full, msg
    assert msg['to'].full == dst.boundjid.full, msg
    assert msg['type'] == 'chat', msg


async def bounced(src, to, timeout=S2S_TIMEOUT):
    """src sends a message to `to`; returns the error that comes back
    (matched by id: an error need not quote the body). The message must
    not be an echo: it comes from `to`."""
    body = f'must not arrive {uuid.uuid4().hex}'
    msg = src.make_message(mto=to, mbody=body, mtype='chat')
    msg_id = msg['id'] = uuid.uuid4().hex
    msg.send()
    err = await next_with_id(src, msg_id, timeout)
    assert err['type'] == 'error', err
    assert err['from'] == to, err
    assert err['error']['condition'], err
    return err


def assert_nothing_arrived(*clients):
    """No message of bounced() reached any of clients."""
    for c in clients:
        got = [m for m in drain(c.messages) if m['type'] != 'error'
               and 'must not arrive' in m['body']]
        assert not got, (c.boundjid, got)


def log_lines(srv, domain):
    """stanzad's log lines about s2s with `domain`."""
    return [ln for ln in srv.log_text().splitlines()
            if 's2s' in ln and domain in ln]


# ---- SASL EXTERNAL ----------------------------------------------------------

@pytest.fixture
def external(request, external_world):
    return external_world.attach(request)


@pytest.mark.parametrize('kind', KINDS)
class TestExternal:
    @pytest.mark.deadline(120)
    async def test_message_each_way(self, external, kind):
        s, p = await pair(external, kind, 'alice')
        try:
            # the first message of each direction waits for the stream
            await exchange(s, p)
            await exchange(p, s)
            # and once the streams are up, again
            await exchange(s, p, timeout=15)
            await exchange(p, s, timeout=15)
        finally:
            await disconnect(s, p)

    @pytest.mark.deadline(150)
    async def test_subscription_and_presence(self, external, kind):
        s, p = await pair(external, kind, 'sub')
        try:
            s_bare, p_bare = s.boundjid.bare, p.boundjid.bare
            # stanzad's user asks, the peer's approves (RFC 6121 §3.1)
            s.send_presence(pto=p_bare, ptype='subscribe')
            await presence_of(p, s_bare, 'subscribe', timeout=S2S_TIMEOUT)
            p.send_presence(pto=s_bare, ptype='subscribed')
            await until(lambda: subscription(s, p_bare) == 'to',
                        timeout=S2S_TIMEOUT, what='stanzad user subscribed')
            # the peer's user asks, stanzad's approves
            p.send_presence(pto=s_bare, ptype='subscribe')
            await presence_of(s, p_bare, 'subscribe', timeout=S2S_TIMEOUT)
            s.send_presence(pto=p_bare, ptype='subscribed')
            await until(lambda: subscription(p, s_bare) == 'both',
                        timeout=S2S_TIMEOUT, what='peer user: both')
            await until(lambda: subscription(s, p_bare) == 'both',
                        timeout=S2S_TIMEOUT, what='stanzad user: both')
            # the servers' rosters say so too, not only the pushes
            for c, contact in ((s, p_bare), (p, s_bare)):
                items = await server_roster(c)
                assert items.get(contact) == 'both', (c.boundjid, items)
            lines = external.srv.ctl('roster', 'list', s_bare).stdout
            assert f'{p_bare}\tboth' in lines, lines
            # each sees the other online, with its full JID
            s.send_presence(pstatus='here')
            p.send_presence(pstatus='there')
            await presence_of(s, p.boundjid.full, 'available',
                              status='there')
            await presence_of(p, s.boundjid.full, 'available',
                              status='here')
            # stanzad's user logs off: the peer's sees it go
            gone = s.boundjid.full
            await disconnect(s)
            await presence_of(p, gone, 'unavailable')
            # and back (another resource): the peer's user sees it come,
            # and it sees the peer's user (stanzad probed the contact)
            s = await connect(external.srv, f'sub-{kind}', 'again')
            await presence_of(p, s.boundjid.full, 'available')
            await presence_of(s, p.boundjid.full, 'available',
                              status='there')
            # the peer's user logs off: stanzad's sees it go
            gone = p.boundjid.full
            await disconnect(p)
            await presence_of(s, gone, 'unavailable')
        finally:
            await disconnect(s, p)

    @pytest.mark.deadline(120)
    async def test_ping_servers(self, external, kind):
        s, p = await pair(external, kind, 'pinger')
        peer = external.peers[kind]
        try:
            # XEP-0199 §4.2: to the other server's domain, each way; an
            # error or no answer raises
            await s['xep_0199'].ping(peer.domain, timeout=S2S_TIMEOUT)
            await p['xep_0199'].ping(S_DOMAIN, timeout=S2S_TIMEOUT)
        finally:
            await disconnect(s, p)

    @pytest.mark.deadline(120)
    async def test_unknown_user_bounces(self, external, kind):
        s, p = await pair(external, kind, 'alice', ('lost', 'lost'))
        peer = external.peers[kind]
        try:
            nobody = f'nobody-{uuid.uuid4().hex[:8]}@{peer.domain}'
            err = await bounced(s, nobody)
            # RFC 6121 §8.5.2.2.1; which of the two is the peer's choice
            assert err['error']['condition'] in (
                'service-unavailable', 'item-not-found'), err
            assert err['to'] == s.boundjid.full, err
            # the stream survived it
            await exchange(s, p, timeout=S2S_TIMEOUT)
        finally:
            await disconnect(s, p)

    @pytest.mark.deadline(120)
    async def test_sasl_external_both_ways(self, external, kind):
        srv, peer = external.srv, external.peers[kind]
        s, p = await pair(external, kind, 'alice', ('ext', 'ext'))
        try:
            await exchange(s, p)
            await exchange(p, s)
        finally:
            await disconnect(s, p)
        d = peer.domain
        # stanzad: our stream to the peer, and the peer's to us
        srv.wait_for_log(rf's2s out {S_DOMAIN} -> {d} authenticated by '
                         rf'SASL EXTERNAL')
        srv.wait_for_log(rf's2s in {d} -> {S_DOMAIN} authenticated by '
                         rf'SASL EXTERNAL')
        assert not [ln for ln in log_lines(srv, d) if 'dialback' in ln]
        if kind == 'prosody':
            peer.wait_for_log(rf'SASL EXTERNAL with {S_DOMAIN} succeeded')
            peer.wait_for_log(
                rf'Accepting SASL EXTERNAL identity from {S_DOMAIN}')
            assert 'dialback' not in peer.log_text().lower()
        else:
            peer.wait_for_log(rf'Accepted inbound s2s EXTERNAL '
                              rf'authentication {S_DOMAIN} -> {d}')
            peer.wait_for_log(rf'Accepted outbound s2s EXTERNAL '
                              rf'authentication {d} -> {S_DOMAIN}')
            assert 'dialback authentication' not in peer.log_text()

    @pytest.mark.deadline(150)
    async def test_refused_bad_stanzad_certificate(self, external, kind):
        """stanzad's host BAD_DOMAIN has a self-signed certificate, the
        peers trust only the test CA and dialback is off: the peer refuses
        it both ways (its own certificate is good: stanzad would not)."""
        srv, peer = external.srv, external.peers[kind]
        d = peer.domain
        s = await connect(external.bad, 'alice', 'bad')
        try:
            p = await connect(peer, 'alice', 'bad', mech=peer.mech)
        except BaseException:
            await disconnect(s)
            raise
        try:
            await ready(s)
            await ready(p)
            err = await bounced(s, p.boundjid.full)
            assert err['error']['condition'] in (
                'remote-server-not-found', 'remote-server-timeout'), err
            await bounced(p, s.boundjid.full)
            assert_nothing_arrived(s, p)
        finally:
            await disconnect(s, p)
        if kind == 'prosody':
            for stream in ('s2sout', 's2sin'):
                peer.wait_for_log(rf'{stream}\S*\s+warn\s+Forbidding '
                                  rf'insecure connection to/from '
                                  rf'{BAD_DOMAIN} because its certificate '
                                  rf'is not trusted')
            # which it told stanzad, on both streams
            for way in (f'out {BAD_DOMAIN} -> {d}', f'in {d} -> {BAD_DOMAIN}'):
                srv.wait_for_log(rf"s2s {way}: the peer sent stream error "
                                 rf"not-authorized: Your server's "
                                 rf"certificate is not trusted")
        else:
            peer.wait_for_log(rf'Failed inbound s2s EXTERNAL authentication '
                              rf'{BAD_DOMAIN} -> {d} .*: self.signed '
                              rf'certificate')
            peer.wait_for_log(rf'Failed to establish outbound s2s '
                              rf'connection {d} -> {BAD_DOMAIN}: Peer '
                              rf'certificate rejected: self.signed '
                              rf'certificate')
            srv.wait_for_log(rf's2s out {BAD_DOMAIN} -> {d}: stream error '
                             rf'not-authorized: SASL EXTERNAL refused')
        srv.wait_for_log(rf's2s out {BAD_DOMAIN} -> {d}: 1 stanzas bounced')
        assert not [ln for ln in log_lines(srv, BAD_DOMAIN)
                    if 'authenticated' in ln], log_lines(srv, BAD_DOMAIN)
        assert srv.alive(), 'stanzad died'


# ---- dialback ---------------------------------------------------------------

@pytest.fixture
def dialback(request, dialback_world):
    return dialback_world.attach(request)


@pytest.mark.parametrize('kind', KINDS)
class TestDialback:
    @pytest.mark.deadline(120)
    async def test_dialback_both_ways(self, dialback, kind):
        srv, peer = dialback.srv, dialback.peers[kind]
        s, p = await pair(dialback, kind, 'alice')
        try:
            await exchange(s, p)
            await exchange(p, s)
            await exchange(s, p, timeout=15)
        finally:
            await disconnect(s, p)
        d = peer.domain
        # stanzad: the peer verified our key (our stream to it) and the
        # peer's own server verified its key (its stream to us)
        srv.wait_for_log(rf'(?m)s2s out {S_DOMAIN} -> {d} authenticated '
                         rf'by dialback$')
        srv.wait_for_log(rf'(?m)s2s in {d} -> {S_DOMAIN} authenticated by '
                         rf'dialback$')
        # and as the authoritative server, stanzad confirmed to the peer
        # that the key on our stream to it is ours
        srv.wait_for_log(rf's2s in {d} -> {S_DOMAIN}: our key for '
                         rf'{S_DOMAIN} -> {d} is valid')
        # the certificates did not verify: no EXTERNAL either way
        assert not [ln for ln in log_lines(srv, d)
                    if 'by SASL EXTERNAL' in ln], log_lines(srv, d)
        if kind == 'prosody':
            # Prosody's stream to us: it sent its key, and answered our
            # db:verify about it as the authoritative server
            peer.wait_for_log(r'sent dialback key on outgoing s2s stream')
            peer.wait_for_log(r'verified dialback key\.\.\. it is valid')
            # our stream to Prosody: it asked us about our key
            peer.wait_for_log(rf'asking {S_DOMAIN} if key \S+ belongs to '
                              rf'them')
            log = peer.log_text()
            assert f'SASL EXTERNAL with {S_DOMAIN} succeeded' not in log
            assert 'Accepting SASL EXTERNAL identity' not in log
        else:
            peer.wait_for_log(rf'Accepted inbound s2s dialback '
                              rf'authentication {S_DOMAIN} -> {d}')
            peer.wait_for_log(rf'Accepted outbound s2s dialback '
                              rf'authentication {d} -> {S_DOMAIN}')
            assert 'Accepted inbound s2s EXTERNAL' not in peer.log_text()
            assert 'Accepted outbound s2s EXTERNAL' not in peer.log_text()


# ---- refused ----------------------------------------------------------------

@pytest.fixture
def refused(request, refused_world):
    return refused_world.attach(request)


@pytest.mark.parametrize('kind', KINDS)
class TestRefused:
    @pytest.mark.deadline(150)
    async def test_bad_peer_certificate(self, refused, kind):
        """The peer's certificate does not verify (Prosody: wrong name,
        ejabberd: self-signed) and dialback is off: stanzad refuses it
        both as the server it connects to and as the one connecting."""
        srv, peer = refused.srv, refused.peers[kind]
        d = peer.domain
        s, p = await pair(refused, kind, 'alice')
        try:
            # stanzad's own bounce (docs/internals/s2s.md: a failed
            # set-up is remote-server-not-found, a slow one -timeout)
            err = await bounced(s, p.boundjid.full)
            assert err['error']['condition'] in (
                'remote-server-not-found', 'remote-server-timeout'), err
            # the peer's bounce, whatever it chooses
            await bounced(p, s.boundjid.full)
            assert_nothing_arrived(s, p)
        finally:
            await disconnect(s, p)
        why = 'the certificate is not for this domain' \
            if kind == 'prosody' else 'self.signed certificate'
        out, into = f'{S_DOMAIN} -> {d}', f'{d} -> {S_DOMAIN}'
        srv.wait_for_log(rf's2s out {out}: TLS up, certificate not '
                         rf'verified: {why}')
        srv.wait_for_log(rf's2s out {out}: stream error policy-violation: '
                         r"the server's certificate does not verify")
        srv.wait_for_log(rf's2s out {out}: 1 stanzas bounced')
        srv.wait_for_log(rf's2s in {into}: certificate not verified: {why}')
        srv.wait_for_log(rf's2s in {into}: stream error not-authorized: '
                         r'certificate not trusted and dialback is off')
        assert not [ln for ln in log_lines(srv, d)
                    if 'authenticated' in ln], log_lines(srv, d)
        assert srv.alive(), 'stanzad died'
