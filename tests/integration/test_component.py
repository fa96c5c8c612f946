"""External components (XEP-0114) end to end: slixmpp's ComponentXMPP
connects, gets stanzas for its domain (messages, iq) and answers them, and
sends to users, on one shard and on two (the component on one shard, the
users spread over both); the handshake and the stream checks with raw
streams: a wrong secret (<not-authorized/>), a domain that is no
component's (<host-unknown/>), a forged 'from' (<invalid-from/>), a second
stream for a connected domain (<conflict/>, the first one stays); a
configured component that is not connected (<service-unavailable/>, never
offline storage); subscriptions from a component; disco#items."""

import asyncio
import hashlib
import re
import uuid
import xml.etree.ElementTree as ET

import pytest
from slixmpp.componentxmpp import ComponentXMPP
from slixmpp.exceptions import IqError

import clients
import rawstream
from rawstream import NS_CLIENT, NS_STREAM, q
from test_presence import manual, presence_of

NS_COMPONENT = 'jabber:component:accept'
NS_DISCO_INFO = 'http://jabber.org/protocol/disco#info'
NS_DISCO_ITEMS = 'http://jabber.org/protocol/disco#items'
COMPONENT = 'gw.localhost'
SECRET = 'gw-secret'
# A component whose domain is not under the host: not in its disco#items.
OTHER = 'other.example'
COMPONENTS = [{'domain': COMPONENT, 'secret': SECRET},
              {'domain': OTHER, 'secret': 'other-secret'}]
WAIT = 10


def unique(prefix):
    return f'{prefix}-{uuid.uuid4().hex[:12]}'


class Component(ComponentXMPP):
    """A component that queues what it receives and answers disco#info
    with a gateway identity (slixmpp's XEP-0030 plugin)."""

    def __init__(self, port, jid=COMPONENT, secret=SECRET):
        super().__init__(jid, secret, '127.0.0.1', port)
        self.register_plugin('xep_0030')
        self['xep_0030'].add_identity(category='gateway', itype='smtp',
                                      name='test gateway')
        self.messages = asyncio.Queue()
        self.presences = asyncio.Queue()
        self.add_event_handler('message', self.messages.put_nowait)
        self.add_event_handler('presence', self.presences.put_nowait)

    async def get_dns_records(self, domain, port=None):
        return [(domain, '127.0.0.1', self.server_port)]

    async def next_message(self, body, timeout=WAIT):
        while True:
            msg = await asyncio.wait_for(self.messages.get(), timeout)
            if msg['body'] == body:
                return msg

    async def next_presence(self, ptype, timeout=WAIT):
        while True:
            pres = await asyncio.wait_for(self.presences.get(), timeout)
            if pres['type'] == ptype:
                return pres


async def connect_component(server, timeout=WAIT):
    comp = Component(server.component_port)
    done = asyncio.get_running_loop().create_future()

    def finish(error=None):
        if not done.done():
            if error:
                done.set_exception(AssertionError(error))
            else:
                done.set_result(None)

    comp.add_event_handler('session_start', lambda _: finish())
    comp.add_event_handler('disconnected',
                           lambda e: finish(f'component disconnected: {e}'))
    comp.connect()
    try:
        await asyncio.wait_for(done, timeout)
    except BaseException:
        comp.abort()
        raise
    return comp


async def disconnect_component(comp):
    try:
        await asyncio.wait_for(comp.disconnect(wait=2), 5)
    except asyncio.TimeoutError:
        comp.abort()


def digest(stream_id, secret=SECRET):
    return hashlib.sha1((stream_id + secret).encode()).hexdigest()


def raw_component(server, domain=COMPONENT):
    """A raw stream to the component listener after our header; returns
    (stream, the server's header)."""
    s = rawstream.RawStream(server.component_port)
    s.send(rawstream.stream_header(to=domain, xmlns=NS_COMPONENT,
                                   version=None))
    return s, s.read_header()


def raw_authenticated(server, secret=SECRET, upper=False):
    s, header = raw_component(server)
    value = digest(header.get('id'), secret)
    s.send(f'<handshake>{value.upper() if upper else value}</handshake>')
    reply = s.read_element()
    assert reply.tag == q(NS_COMPONENT, 'handshake'), ET.tostring(reply)
    assert reply.text is None and len(reply) == 0
    return s


def component_shard(server):
    found = server.wait_for_log(
        rf'\[s(\d+)\] c\d+ component {re.escape(COMPONENT)} connected')
    return int(found[-1].group(1))


async def users_across_shards(server, user, shards, least=3):
    """At least `least` sessions of user; with two shards, more until one
    is on the other shard than the component (the kernel spreads
    connections over the shards by their addresses)."""
    comp_shard = component_shard(server)
    users = []
    try:
        for i in range(24):
            if len(users) >= least and (shards == 1 or any(
                    s != comp_shard for s in session_shards(server, users))):
                return users
            users.append(await clients.connect(server, user, f'r{i}'))
    except BaseException:
        await clients.disconnect(*users)
        raise
    await clients.disconnect(*users)
    raise AssertionError('no session landed on the other shard')


def session_shards(server, users):
    shards = []
    for u in users:
        found = server.wait_for_log(
            rf'bound {re.escape(str(u.boundjid))} on shard (\d+)')
        shards.append(int(found[-1].group(1)))
    return shards


@pytest.fixture
def comp_server(server_factory):
    return server_factory(components=COMPONENTS)


# -- stanzas to and from a component ---------------------------------------

@pytest.mark.parametrize('shards', [1, 2])
async def test_messages_both_ways(server_factory, shards):
    """A user's message to an address in the component's domain reaches
    the component with the user's full JID, and the component's answer
    reaches the user; with two shards, from and to sessions on both
    shards, one of them not the component's."""
    server = server_factory(components=COMPONENTS, shards=shards)
    comp = await connect_component(server)
    users = []
    try:
        users = await users_across_shards(server, 'alice', shards)
        for user in users:
            body = unique('to-gw')
            user.send_message(mto=f'echo@{COMPONENT}', mbody=body,
                              mtype='chat')
            msg = await comp.next_message(body)
            assert msg['from'] == user.boundjid
            assert msg['to'] == f'echo@{COMPONENT}'
            answer = unique('from-gw')
            comp.send_message(mto=msg['from'], mfrom=f'echo@{COMPONENT}',
                              mbody=answer, mtype='chat')
            got = await user.next_message(answer)
            assert got['from'] == f'echo@{COMPONENT}'
            assert got['type'] == 'chat'
        # to the domain itself, from the domain itself, to a bare JID
        body = unique('domain')
        users[0].send_message(mto=COMPONENT, mbody=body)
        msg = await comp.next_message(body)
        assert msg['from'] == users[0].boundjid
        answer = unique('to-bare')
        comp.send_message(mto='alice@localhost', mfrom=COMPONENT,
                          mbody=answer, mtype='chat')
        got = await asyncio.wait_for(
            asyncio.gather(*(u.next_message(answer) for u in users)), WAIT)
        assert all(g['from'] == COMPONENT for g in got)
    finally:
        await clients.disconnect(*users)
        await disconnect_component(comp)


@pytest.mark.parametrize('shards', [1, 2])
async def test_component_answers_iq(server_factory, shards):
    server = server_factory(components=COMPONENTS, shards=shards)
    comp = await connect_component(server)
    users = []
    try:
        users = await users_across_shards(server, 'bob', shards)
        for user in users:
            info = await user['xep_0030'].get_info(jid=COMPONENT,
                                                   timeout=WAIT)
            assert info['from'] == COMPONENT
            ids = info['disco_info']['identities']
            assert ('gateway', 'smtp', None, 'test gateway') in ids, ids
        # and an iq the component sends to a user, answered by the user
        # (slixmpp clients answer pings)
        reply = await comp['xep_0030'].get_info(
            jid=users[0].boundjid.full, ifrom=COMPONENT, timeout=WAIT)
        assert reply['type'] == 'result'
        assert reply['from'] == users[0].boundjid
    finally:
        await clients.disconnect(*users)
        await disconnect_component(comp)


async def test_component_iq_to_server(comp_server):
    """The server answers the component like any other entity."""
    comp = await connect_component(comp_server)
    try:
        info = await comp['xep_0030'].get_info(jid='localhost',
                                               ifrom=COMPONENT,
                                               timeout=WAIT)
        ids = info['disco_info']['identities']
        assert any(i[0] == 'server' for i in ids), ids
    finally:
        await disconnect_component(comp)


async def test_subscription_from_component(comp_server):
    """RFC 6121 §3.1.3: a subscription request from a component is an
    inbound request like any remote entity's; the user's approval goes
    back to the component, and then the user's presence."""
    comp = await connect_component(comp_server)
    bob = manual(await clients.connect(comp_server, 'bob', 'home'))
    try:
        await bob.get_roster(timeout=WAIT)
        comp.send_presence(pto='bob@localhost', pfrom=COMPONENT,
                           ptype='subscribe')
        req = await presence_of(bob, COMPONENT, 'subscribe')
        assert req['to'] == 'bob@localhost'
        bob.send_presence(pto=COMPONENT, ptype='subscribed')
        approved = await comp.next_presence('subscribed')
        assert approved['from'] == 'bob@localhost'
        assert approved['to'] == COMPONENT
        # the approval is followed by bob's current presence (§3.1.5)
        pres = await comp.next_presence('available')
        assert pres['from'] == bob.boundjid
        await bob.get_roster(timeout=WAIT)
        item = bob.client_roster[COMPONENT]
        assert item['subscription'] == 'from'
    finally:
        await clients.disconnect(bob)
        await disconnect_component(comp)


# -- the handshake ----------------------------------------------------------

def test_raw_handshake(comp_server):
    """Our header names the component's domain and carries an id; the
    right digest (lower or upper case) gets an empty <handshake/>."""
    s, header = raw_component(comp_server)
    assert header.tag == q(NS_STREAM, 'stream')
    assert header.get('from') == COMPONENT
    assert len(header.get('id', '')) >= 16
    s.send(f"<handshake>{digest(header.get('id'))}</handshake>")
    reply = s.read_element()
    assert reply.tag == q(NS_COMPONENT, 'handshake')
    s.close_stream()
    s.wait_stream_end()
    s.close()
    # the domain is free again once the first stream ended
    s = raw_authenticated(comp_server, upper=True)
    s.close_stream()
    s.close()


def test_stream_ids_differ(comp_server):
    ids = set()
    for _ in range(3):
        s, header = raw_component(comp_server)
        ids.add(header.get('id'))
        s.close()
    assert len(ids) == 3


@pytest.mark.parametrize('secret', ['wrong', '', 'gw-secret '])
def test_bad_secret(comp_server, secret):
    s, header = raw_component(comp_server)
    value = digest(header.get('id'), secret) if secret else 'x' * 40
    s.send(f'<handshake>{value}</handshake>')
    s.expect_stream_error('not-authorized')
    s.close()


def test_digest_of_another_stream_refused(comp_server):
    """The digest binds the stream id: one of another stream fails."""
    s1, h1 = raw_component(comp_server)
    s2, _ = raw_component(comp_server)
    s2.send(f"<handshake>{digest(h1.get('id'))}</handshake>")
    s2.expect_stream_error('not-authorized')
    s1.close()
    s2.close()


def test_stanza_before_handshake(comp_server):
    s, _ = raw_component(comp_server)
    s.send(f"<message from='{COMPONENT}' to='alice@localhost'>"
           '<body>early</body></message>')
    s.expect_stream_error('not-authorized')
    s.close()


@pytest.mark.parametrize('domain', ['nope.localhost', 'localhost'])
def test_unknown_domain(comp_server, domain):
    """A domain that is no component's, a host included."""
    s, _ = raw_component(comp_server, domain)
    s.expect_stream_error('host-unknown')
    s.close()


def test_client_namespace_refused(comp_server):
    s = rawstream.RawStream(comp_server.component_port)
    s.send(rawstream.stream_header(to=COMPONENT, xmlns=NS_CLIENT))
    s.expect_stream_error('invalid-namespace')
    s.close()


def test_handshake_timeout(server_factory):
    server = server_factory(components=COMPONENTS,
                            limits={'auth_timeout': '1s'})
    s, _ = raw_component(server)
    s.expect_stream_error('connection-timeout', timeout=10)
    s.close()


async def test_second_stream_refused(comp_server):
    """XEP-0114 leaves it open; as Prosody's default (kick_new), a second
    stream for a connected domain is refused with <conflict/> after a
    right handshake, and the first one keeps working."""
    comp = await connect_component(comp_server)
    alice = await clients.connect(comp_server, 'alice', 'a')
    try:
        s, header = raw_component(comp_server)
        s.send(f"<handshake>{digest(header.get('id'))}</handshake>")
        await asyncio.to_thread(s.expect_stream_error, 'conflict')
        s.close()
        body = unique('still')
        alice.send_message(mto=COMPONENT, mbody=body)
        await comp.next_message(body)
    finally:
        await clients.disconnect(alice)
        await disconnect_component(comp)


# -- what a component may send ----------------------------------------------

@pytest.mark.parametrize('sender', [
    'alice@localhost', 'localhost', f'x.{COMPONENT}', OTHER,
    f'user@{OTHER}/r', 'not a jid@'])
async def test_forged_from(comp_server, sender):
    """'from' must be the component's domain or an address in it; nothing
    forged is delivered."""
    bob = await clients.connect(comp_server, 'bob', 'b')
    try:
        s = await asyncio.to_thread(raw_authenticated, comp_server)
        s.send(f"<message from='{sender}' to='bob@localhost/b' "
               "type='chat'><body>forged</body></message>")
        await asyncio.to_thread(s.expect_stream_error, 'invalid-from')
        s.close()
        # a ping round trip later, still nothing
        await bob['xep_0199'].ping('localhost', timeout=WAIT)
        assert bob.messages.empty()
    finally:
        await clients.disconnect(bob)


@pytest.mark.parametrize('stanza', [
    "<message to='bob@localhost'><body>x</body></message>",
    f"<message from='{COMPONENT}'><body>x</body></message>",
])
def test_addresses_required(comp_server, stanza):
    s = raw_authenticated(comp_server)
    s.send(stanza)
    s.expect_stream_error('improper-addressing')
    s.close()


async def test_raw_component_stanzas(comp_server):
    """Any address in the domain may send; case is normalised; a bad iq
    and a malformed 'to' are answered with errors on the stream;
    elements that are no stanzas end it."""
    bob = await clients.connect(comp_server, 'bob', 'b')
    try:
        s = await asyncio.to_thread(raw_authenticated, comp_server)
        s.send("<message from='Someone@GW.LocalHost/Res' "
               "to='bob@localhost/b' type='chat'><body>hi</body></message>")
        msg = await bob.next_message('hi')
        assert msg['from'] == f'someone@{COMPONENT}/Res'
        s.send(f"<iq type='get' from='{COMPONENT}' to='localhost'/>")
        reply = await asyncio.to_thread(s.read_element)
        assert reply.tag == q(NS_COMPONENT, 'iq'), ET.tostring(reply)
        assert reply.get('type') == 'error'
        assert reply.get('to') == COMPONENT
        assert rawstream.stanza_error(_in_client_ns(reply))[1] == [
            'bad-request']
        s.send(f"<message from='{COMPONENT}' to='a@b@c' id='m1'>"
               '<body>x</body></message>')
        reply = await asyncio.to_thread(s.read_element)
        assert reply.get('id') == 'm1' and reply.get('type') == 'error'
        assert rawstream.stanza_error(_in_client_ns(reply))[1] == [
            'jid-malformed']
        # an iq to the server gets its answer in the component's namespace
        s.send(f"<iq type='get' id='p1' from='{COMPONENT}' to='localhost'>"
               "<ping xmlns='urn:xmpp:ping'/></iq>")
        reply = await asyncio.to_thread(s.read_element)
        assert reply.tag == q(NS_COMPONENT, 'iq')
        assert (reply.get('id'), reply.get('type')) == ('p1', 'result')
        s.send("<foo xmlns='urn:example'/>")
        await asyncio.to_thread(s.expect_stream_error,
                                'unsupported-stanza-type')
        s.close()
        s = await asyncio.to_thread(raw_authenticated, comp_server)
        s.send(f"<message xmlns='jabber:client' from='{COMPONENT}' "
               "to='bob@localhost'/>")
        await asyncio.to_thread(s.expect_stream_error, 'invalid-namespace')
        s.close()
    finally:
        await clients.disconnect(bob)


def _in_client_ns(elem):
    """A copy of elem with jabber:component:accept names in jabber:client
    (what rawstream.stanza_error expects)."""
    copy = ET.fromstring(ET.tostring(elem))
    for e in copy.iter():
        if e.tag.startswith(f'{{{NS_COMPONENT}}}'):
            e.tag = e.tag.replace(NS_COMPONENT, NS_CLIENT)
    return copy


# -- a configured component that is not connected ---------------------------

async def check_unavailable(client, server):
    """Stanzas to the component's domain: iq and message errors, presence
    dropped, nothing stored."""
    with pytest.raises(IqError) as info:
        await client['xep_0030'].get_info(jid=COMPONENT, timeout=WAIT)
    assert info.value.iq['error']['condition'] == 'service-unavailable'
    assert info.value.iq['from'] == COMPONENT
    body = unique('nobody')
    client.send_message(mto=f'user@{COMPONENT}', mbody=body, mtype='chat')
    err = await client.next_message()
    assert err['type'] == 'error'
    assert err['error']['condition'] == 'service-unavailable'
    assert err['from'] == f'user@{COMPONENT}'
    client.send_presence(pto=f'user@{COMPONENT}')
    await client['xep_0199'].ping('localhost', timeout=WAIT)
    assert client.messages.empty()
    while not client.presences.empty():  # her own broadcast comes back
        pres = client.presences.get_nowait()
        assert pres['from'].domain != COMPONENT, pres


async def test_not_connected(comp_server):
    alice = await clients.connect(comp_server, 'alice', 'a')
    try:
        await check_unavailable(alice, comp_server)
        # connected, then gone again
        comp = await connect_component(comp_server)
        body = unique('present')
        alice.send_message(mto=COMPONENT, mbody=body)
        await comp.next_message(body)
        await disconnect_component(comp)
        await clients.until(
            lambda: 'component gw.localhost disconnected'
            in comp_server.log_text(), what='the component to leave')
        await check_unavailable(alice, comp_server)
    finally:
        await clients.disconnect(alice)


async def test_unconfigured_domain_unchanged(comp_server):
    """Domains that are no component's still get what s2s gives them."""
    alice = await clients.connect(comp_server, 'alice', 'a')
    try:
        with pytest.raises(IqError) as info:
            await alice['xep_0030'].get_info(jid='elsewhere.example',
                                             timeout=WAIT)
        assert info.value.iq['error']['condition'] == \
            'remote-server-not-found'
    finally:
        await clients.disconnect(alice)


# -- discovery ----------------------------------------------------------------

async def test_disco_items(comp_server):
    """Components under the host are its disco#items, connected or not;
    others are not."""
    alice = await clients.connect(comp_server, 'alice', 'a')
    try:
        items = await alice['xep_0030'].get_items(jid='localhost',
                                                  timeout=WAIT)
        jids = [i[0] for i in items['disco_items']['items']]
        # and the group chat service, on by default
        assert sorted(jids) == ['conference.localhost', COMPONENT]
        items = await alice['xep_0030'].get_items(jid='alice@localhost',
                                                  timeout=WAIT)
        assert not items['disco_items']['items']
    finally:
        await clients.disconnect(alice)
