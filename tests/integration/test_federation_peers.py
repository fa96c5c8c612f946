"""Prosody 0.12 <-> ejabberd 23.01 through the federation harness.

These prove the harness (federation.py) on two servers known to federate,
before stanzad's own s2s is tested with it: each on its own loopback
address and domain, finding the other through the test's hosts file.

- SASL EXTERNAL (RFC 6120 §6.4, XEP-0178): both trust the test CA, no
  dialback: a message each way, a subscription accepted across servers
  and both contacts seeing each other online, an iq ping to the remote
  server, and the servers' logs show EXTERNAL in both directions.
- Dialback (XEP-0220): certificates signed by a CA neither trusts,
  dialback on: a message each way, and the logs show dialback.
- Refused: ejabberd's certificate is self-signed, dialback is off on
  both: no message gets through either way, the senders get an error
  back, and both logs say the certificate is why.
- Names: the hosts file, the test's DNS server and libunbound agree
  (no servers needed).
"""

import subprocess
import uuid

import pytest
from dnslib import RCODE, DNSRecord

from clients import (connect, disconnect, drain, next_with_id, presence_of,
                     send_and_receive, subscription, until)
from federation import Federation, attach_peers

USERS_P = {'alice': 'alice-secret'}
USERS_E = {'bob': 'bob-secret'}
P_DOMAIN = 'prosody.test'
E_DOMAIN = 'ejabberd.test'


def pair(fed, *, trust_ca, dialback, ejabberd_cert=None):
    """Prosody (alice) and ejabberd (bob) in `fed`, started."""
    p = fed.prosody(P_DOMAIN, trust_ca=trust_ca, dialback=dialback,
                    users=USERS_P)
    cert = fed.ca.self_signed(E_DOMAIN) if ejabberd_cert == 'bad' else None
    e = fed.ejabberd(E_DOMAIN, trust_ca=trust_ca, dialback=dialback,
                     users=USERS_E, cert=cert)
    fed.start(p, e)
    return p, e


async def clients(p, e):
    """alice on Prosody and bob on ejabberd, logged in, available and
    with their rosters fetched (a server pushes roster changes and
    subscription requests only to resources that asked for the roster,
    RFC 6121 §2.1.6 and §3.1.3)."""
    a = await connect(p, 'alice', 'home', mech=p.mech)
    try:
        b = await connect(e, 'bob', 'work', mech=e.mech)
    except BaseException:
        await disconnect(a)
        raise
    try:
        for c in (a, b):
            # subscriptions are answered by the tests, not by slixmpp
            c.roster.auto_authorize = None
            c.roster.auto_subscribe = False
            # bounces too (slixmpp gives them an event of their own)
            c.add_event_handler('message_error', c.messages.put_nowait)
            await c.get_roster(timeout=10)
    except BaseException:
        await disconnect(a, b)
        raise
    return a, b


# ---- names -------------------------------------------------------------------

LUA_RESOLVE = """
local ub = require "lunbound"
local ctx = ub.new{ hoststxt = arg[1], forward = arg[2],
                    resolvconf = false, async = false }
for _, q in ipairs{ {arg[3], 1}, {"_xmpp-server._tcp." .. arg[3], 33},
                    {"nowhere.example", 1} } do
  local r = ctx:resolve(q[1], q[2], 1)
  print(q[1], r.rcode, r[1] and table.concat({r[1]:byte(1, -1)}, ".") or "-")
end
"""


def test_names_resolve(tmp_path):
    """The hosts file and the DNS server agree, as libunbound (Prosody's
    and stanzad's resolver library) sees them with dns_config()."""
    fed = Federation(tmp_path)
    try:
        addr = fed.add_host('stanzad.test')
        assert addr.startswith('127.') and addr != '127.0.0.1'
        assert fed.add_host('other.test') != addr
        hosts = fed.names.hosts_path.read_text()
        assert f'{addr} stanzad.test\n' in hosts
        cfg = fed.dns_config()
        assert cfg['hosts'] == str(fed.names.hosts_path)
        # from the file
        res = subprocess.run(
            ['lua5.4', '-', cfg['hosts'], cfg['upstream'][0],
             'stanzad.test'],
            input=LUA_RESOLVE, capture_output=True, text=True, timeout=20)
        assert res.returncode == 0, res.stderr
        lines = [ln.split('\t') for ln in res.stdout.splitlines()]
        assert lines == [
            ['stanzad.test', '0', addr],
            ['_xmpp-server._tcp.stanzad.test', '3', '-'],  # NXDOMAIN
            ['nowhere.example', '3', '-'],
        ], res.stdout
        # libunbound answers for .test itself (a static local zone, RFC
        # 6761), anything else it asks the test's DNS server, never the
        # system's
        assert fed.names.queries == [('nowhere.example', 'A')]
        # from the DNS server (for resolvers that skip hosts files)
        q = DNSRecord.question('other.test', 'A')
        reply = DNSRecord.parse(q.send(fed.names.dns_address,
                                       fed.names.dns_port, timeout=5))
        assert [str(rr.rdata) for rr in reply.rr] == \
            [fed.names.lookup('other.test')]
        q = DNSRecord.question('_xmpp-server._tcp.other.test', 'SRV')
        reply = DNSRecord.parse(q.send(fed.names.dns_address,
                                       fed.names.dns_port, tcp=True,
                                       timeout=5))
        assert reply.header.rcode == RCODE.NXDOMAIN and not reply.rr
    finally:
        fed.close()


# ---- SASL EXTERNAL ---------------------------------------------------------

@pytest.fixture(scope='module')
def external_pair(tmp_path_factory):
    """One pair for the SASL EXTERNAL tests (starting one takes seconds)."""
    fed = Federation(tmp_path_factory.mktemp('external'))
    try:
        p, e = pair(fed, trust_ca=True, dialback=False)
        yield fed, p, e
    finally:
        fed.close()


@pytest.fixture
def external(request, external_pair):
    attach_peers(request, external_pair[0])
    return external_pair[1:]


@pytest.mark.deadline(40)
async def test_message_each_way(external):
    p, e = external
    a, b = await clients(p, e)
    try:
        # the first message also waits for the s2s connection
        await send_and_receive(a, b, timeout=20)
        await send_and_receive(b, a, timeout=20)
    finally:
        await disconnect(a, b)


@pytest.mark.deadline(40)
async def test_subscription_and_presence_across(external):
    p, e = external
    a, b = await clients(p, e)
    try:
        a_bare, b_bare = a.boundjid.bare, b.boundjid.bare
        # alice asks, bob approves: alice's server pushes the roster
        # change (subscription "to")
        a.send_presence(pto=b_bare, ptype='subscribe')
        await presence_of(b, a_bare, 'subscribe', timeout=20)
        b.send_presence(pto=a_bare, ptype='subscribed')
        await until(lambda: subscription(a, b_bare) == 'to',
                    what='alice subscribed to bob')
        # and the other way round: both
        b.send_presence(pto=a_bare, ptype='subscribe')
        await presence_of(a, b_bare, 'subscribe')
        a.send_presence(pto=b_bare, ptype='subscribed')
        await until(lambda: subscription(b, a_bare) == 'both',
                    what='bob subscribed both ways')
        await until(lambda: subscription(a, b_bare) == 'both',
                    what='alice subscribed both ways')
        # each now sees the other online: a new available presence of
        # one reaches the other across the servers
        a.send_presence(pstatus='here')
        b.send_presence(pstatus='there')
        await presence_of(a, b.boundjid.full, 'available', status='there')
        await presence_of(b, a.boundjid.full, 'available', status='here')
        # and offline, when bob leaves
        b.send_presence(ptype='unavailable')
        await presence_of(a, b.boundjid.full, 'unavailable')
    finally:
        await disconnect(a, b)


@pytest.mark.deadline(40)
async def test_ping_remote_server(external):
    p, e = external
    a, b = await clients(p, e)
    try:
        # XEP-0199 §4.2 client-to-server ping, to the other server
        await a['xep_0199'].ping(E_DOMAIN, timeout=15)
        await b['xep_0199'].ping(P_DOMAIN, timeout=15)
        # and one to a domain nobody serves fails
        with pytest.raises(Exception):
            await a['xep_0199'].ping('nowhere.test', timeout=10)
    finally:
        await disconnect(a, b)


@pytest.mark.deadline(40)
async def test_sasl_external_both_ways(external):
    p, e = external
    # stanzas both ways (the s2s streams may exist already)
    a, b = await clients(p, e)
    try:
        await send_and_receive(a, b, timeout=20)
        await send_and_receive(b, a, timeout=20)
    finally:
        await disconnect(a, b)
    # Prosody -> ejabberd: Prosody authenticated with EXTERNAL
    p.wait_for_log(rf'SASL EXTERNAL with {E_DOMAIN} succeeded')
    # ejabberd -> Prosody: Prosody accepted ejabberd's EXTERNAL
    p.wait_for_log(rf'Accepting SASL EXTERNAL identity from {E_DOMAIN}')
    # ejabberd's side of both
    e.wait_for_log(rf'Accepted inbound s2s EXTERNAL authentication '
                   rf'{P_DOMAIN} -> {E_DOMAIN}')
    e.wait_for_log(rf'Accepted outbound s2s EXTERNAL authentication '
                   rf'{E_DOMAIN} -> {P_DOMAIN}')
    # and no dialback anywhere
    assert 'dialback' not in p.log_text().lower()
    # Prosody found ejabberd through lua-unbound and the hosts file
    p.wait_for_log(rf'unbound\S*\s+debug\s+Results for {E_DOMAIN} IN A: '
                   rf'1 items')


# ---- dialback ----------------------------------------------------------------

@pytest.mark.deadline(60)
async def test_dialback(federation):
    p, e = pair(federation, trust_ca=False, dialback=True)
    a, b = await clients(p, e)
    try:
        await send_and_receive(a, b, timeout=20)
        await send_and_receive(b, a, timeout=20)
    finally:
        await disconnect(a, b)
    # the certificates did not verify, so EXTERNAL failed where it
    # was tried; each direction authenticated by dialback
    p.wait_for_log(r'verified dialback key\.\.\. it is valid')
    e.wait_for_log(rf'Accepted inbound s2s dialback authentication '
                   rf'{P_DOMAIN} -> {E_DOMAIN}')
    e.wait_for_log(rf'Accepted outbound s2s dialback authentication '
                   rf'{E_DOMAIN} -> {P_DOMAIN}')
    log = p.log_text()
    assert f'SASL EXTERNAL with {E_DOMAIN} succeeded' not in log
    assert 'Accepting SASL EXTERNAL identity' not in log
    assert 'Accepted inbound s2s EXTERNAL' not in e.log_text()


# ---- refused -------------------------------------------------------------------

@pytest.mark.deadline(60)
async def test_bad_certificate_refused(federation):
    p, e = pair(federation, trust_ca=True, dialback=False,
                ejabberd_cert='bad')
    a, b = await clients(p, e)
    try:
        for src, dst in ((a, b), (b, a)):
            body = f'must not arrive {uuid.uuid4().hex}'
            msg = src.make_message(mto=dst.boundjid.full, mbody=body,
                                   mtype='chat')
            msg_id = msg['id'] = uuid.uuid4().hex
            msg.send()
            # the sender's server gives the message back as an error
            # (the error need not carry the body: match the id)
            err = await next_with_id(src, msg_id, timeout=25)
            assert err['type'] == 'error', err
            assert err['from'] == dst.boundjid.full, err
            assert err['error']['condition'], err
        # nothing got through either way (the bounces may quote it)
        for c in (a, b):
            got = [m for m in drain(c.messages) if m['type'] != 'error'
                   and 'must not arrive' in m['body']]
            assert not got, (c.boundjid, got)
    finally:
        await disconnect(a, b)
    # and the logs say why: ejabberd's certificate does not verify, as
    # a server (Prosody's outgoing stream) nor as a client (incoming)
    for stream in ('s2sout', 's2sin'):
        p.wait_for_log(rf'{stream}\S*\s+warn\s+Forbidding insecure '
                       rf'connection to/from {E_DOMAIN} because its '
                       rf'certificate is not trusted')
    e.wait_for_log(r"Stream closed by peer: Your server's certificate is "
                   r"not trusted")
