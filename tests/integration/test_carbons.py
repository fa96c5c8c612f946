"""XEP-0280 message carbons with slixmpp's xep_0280 plugin: the disco
feature; enable/disable per resource (and <forbidden/> for another
account); <received/> copies to carbons-enabled resources that did not get
the original (full-JID delivery, bare-JID delivery by priority, a message
that went to offline storage); <sent/> copies of what another resource
sends, never back to the sender; what is not copied (§6.1: groupchat,
headline, normal without body or IM payload; <private/>, §9; a message
that already carries a carbon); on one shard and across two.

"Gets nothing" is checked without sleeping: after the message that must
not be copied, a message that must be is sent the same way, and it has to
be the first copy to arrive (delivery to one session keeps order)."""

import asyncio
import uuid

import pytest
import slixmpp

import clients
from test_delivery import set_presence

NS_CARBONS = 'urn:xmpp:carbons:2'
NS_FORWARD = 'urn:xmpp:forward:0'
WAIT = 8


async def carbons_client(server, spec, enable=True):
    user, _, resource = spec.partition('/')
    c = await clients.connect(server, user, resource or None)
    c.register_plugin('xep_0280')
    c.copies = asyncio.Queue()
    c.add_event_handler('carbon_received',
                        lambda m: c.copies.put_nowait(('received', m)))
    c.add_event_handler('carbon_sent',
                        lambda m: c.copies.put_nowait(('sent', m)))
    if enable:
        await c['xep_0280'].enable(timeout=WAIT)
    return c


async def next_copy(c, timeout=WAIT):
    try:
        kind, m = await asyncio.wait_for(c.copies.get(), timeout)
    except asyncio.TimeoutError:
        raise AssertionError(f'{c.boundjid} got no carbon in {timeout}s')
    wrapper = m.xml
    assert wrapper.get('from') == c.boundjid.bare, wrapper.get('from')
    assert wrapper.get('to') == c.boundjid.full, wrapper.get('to')
    inner = wrapper.find(f'{{{NS_CARBONS}}}{kind}/{{{NS_FORWARD}}}forwarded/'
                         '{jabber:client}message')
    assert inner is not None, slixmpp.xmlstream.tostring(wrapper)
    return kind, inner, wrapper


def body_of(inner):
    return inner.findtext('{jabber:client}body')


def unique(prefix):
    return f'{prefix}-{uuid.uuid4().hex[:8]}'


async def expect_copy(c, kind, body):
    got_kind, inner, _ = await next_copy(c)
    assert (got_kind, body_of(inner)) == (kind, body)
    return inner


async def test_disco_feature(server):
    async with clients.connected(server, 'alice') as (a,):
        info = await a['xep_0030'].get_info(jid='localhost', timeout=WAIT)
        assert NS_CARBONS in info['disco_info']['features']


async def connected_carbons(server, specs):
    cs = []
    for spec, enable in specs:
        cs.append(await carbons_client(server, spec, enable))
    return cs


@pytest.mark.parametrize('shards', [1, 2])
async def test_received_and_sent(server_factory, shards):
    server = server_factory(shards=shards)
    cs = await connected_carbons(server, [
        ('alice/a', False), ('alice/b', True), ('alice/c', False),
        ('bob/home', False)])
    a, b, c, bob = cs
    try:
        # Inbound to alice/a: b gets <received/>, c (not enabled) nothing.
        body = unique('in')
        bob.send_message(mto=a.boundjid.full, mbody=body, mtype='chat')
        await a.next_message(body)
        inner = await expect_copy(b, 'received', body)
        assert inner.get('from') == bob.boundjid.full
        assert inner.get('to') == a.boundjid.full
        assert inner.get('type') == 'chat'
        # Outbound from alice/a: b gets <sent/>, with the stamped 'from'.
        body = unique('out')
        a.send_message(mto=bob.boundjid.full, mbody=body, mtype='chat')
        await bob.next_message(body)
        inner = await expect_copy(b, 'sent', body)
        assert inner.get('from') == a.boundjid.full
        assert inner.get('to') == bob.boundjid.full
        # The sender never gets its own copy, even with carbons on: b
        # sends, a (off) and c (off) get nothing, b nothing either.
        body = unique('from-b')
        b.send_message(mto=bob.boundjid.full, mbody=body, mtype='chat')
        await bob.next_message(body)
        sentinel = unique('sentinel')
        bob.send_message(mto=a.boundjid.full, mbody=sentinel, mtype='chat')
        await expect_copy(b, 'received', sentinel)
        assert a.copies.empty() and c.copies.empty()
    finally:
        await clients.disconnect(*cs)


async def test_bare_jid_delivery(server):
    """§7: a copy for each enabled resource that RFC 6121 did not pick."""
    cs = await connected_carbons(server, [
        ('alice/high', False), ('alice/low', True), ('alice/neg', True),
        ('bob/home', False)])
    high, low, neg, bob = cs
    try:
        await set_presence(high, server, priority=5)
        await set_presence(low, server, priority=1)
        await set_presence(neg, server, priority=-1)
        body = unique('bare')
        bob.send_message(mto='alice@localhost', mbody=body, mtype='chat')
        await high.next_message(body)
        await expect_copy(low, 'received', body)
        await expect_copy(neg, 'received', body)
        # Same priority: both get the original, so no copy for low.
        await set_presence(low, server, priority=5)
        body = unique('both')
        bob.send_message(mto='alice@localhost', mbody=body, mtype='chat')
        await high.next_message(body)
        await low.next_message(body)
        await expect_copy(neg, 'received', body)
        sentinel = unique('sentinel')
        bob.send_message(mto=high.boundjid.full, mbody=sentinel,
                         mtype='chat')
        await expect_copy(low, 'received', sentinel)
    finally:
        await clients.disconnect(*cs)


async def test_offline_message_is_copied(server):
    """No available resource with priority >= 0: the message is stored,
    and a carbons-enabled resource with a negative priority sees it."""
    cs = await connected_carbons(server, [('carol/neg', True),
                                          ('bob/home', False)])
    neg, bob = cs
    try:
        await set_presence(neg, server, priority=-5)
        body = unique('stored')
        bob.send_message(mto='carol@localhost', mbody=body, mtype='chat')
        await expect_copy(neg, 'received', body)
    finally:
        await clients.disconnect(*cs)
    async with clients.connected(server, 'carol') as (carol,):
        assert (await carol.next_message(body))['body'] == body


async def test_disable(server):
    cs = await connected_carbons(server, [('alice/a', False),
                                          ('alice/b', True),
                                          ('bob/home', False)])
    a, b, bob = cs
    try:
        await b['xep_0280'].disable(timeout=WAIT)
        await b['xep_0280'].disable(timeout=WAIT)  # twice is fine (§10.1)
        bob.send_message(mto=a.boundjid.full, mbody='quiet', mtype='chat')
        await a.next_message('quiet')
        await b['xep_0280'].enable(timeout=WAIT)
        await b['xep_0280'].enable(timeout=WAIT)
        body = unique('again')
        bob.send_message(mto=a.boundjid.full, mbody=body, mtype='chat')
        await expect_copy(b, 'received', body)  # and not 'quiet'
    finally:
        await clients.disconnect(*cs)


def raw_message(client, to, mtype, children):
    msg = client.make_message(mto=to, mtype=mtype)
    if mtype is None:
        del msg['type']
    for child in children:
        msg.append(slixmpp.xmlstream.ET.fromstring(child))
    return msg


NOT_COPIED = [
    ('groupchat', ['<body>x</body>']),
    ('headline', ['<body>x</body>']),
    ('normal', ["<x xmlns='jabber:x:oob'><url>https://x</url></x>"]),
    (None, []),
    ('chat', ['<body>x</body>', f"<private xmlns='{NS_CARBONS}'/>",
              "<no-copy xmlns='urn:xmpp:hints'/>"]),
    ('chat', [f"<received xmlns='{NS_CARBONS}'><forwarded "
              f"xmlns='{NS_FORWARD}'><message xmlns='jabber:client' "
              "from='bob@localhost/x' to='alice@localhost/a' type='chat'>"
              "<body>forged</body></message></forwarded></received>"]),
]

COPIED = [
    ('normal', ['<body>x</body>']),
    (None, ['<body>x</body>']),
    ('normal', ["<active xmlns='http://jabber.org/protocol/chatstates'/>"]),
    ('chat', ["<composing xmlns='http://jabber.org/protocol/chatstates'/>"]),
    (None, ["<received xmlns='urn:xmpp:receipts' id='r1'/>"]),
    ('normal', ["<displayed xmlns='urn:xmpp:chat-markers:0' id='m1'/>"]),
    ('normal', ["<x xmlns='jabber:x:conference' jid='room@muc.example'/>"]),
]


def marked(children, tag):
    return children + [f"<thread>{tag}</thread>"]


@pytest.mark.parametrize('direction', ['received', 'sent'])
async def test_eligibility(server, direction):
    """§6.1 and §9, both ways. Each case is followed by a sentinel; what
    must be copied has to arrive, in order, before it."""
    cs = await connected_carbons(server, [('alice/a', False),
                                          ('alice/b', True),
                                          ('bob/home', False)])
    a, b, bob = cs
    src, dst = (bob, a) if direction == 'received' else (a, bob)
    try:
        for i, (mtype, children) in enumerate(NOT_COPIED + COPIED):
            tag = f'case-{i}'
            raw_message(src, dst.boundjid.full, mtype,
                        marked(children, tag)).send()
            if (mtype, children) in COPIED:
                kind, inner, _ = await next_copy(b)
                assert kind == direction
                assert inner.findtext('{jabber:client}thread') == tag, \
                    (mtype, children)
            sentinel = unique('sentinel')
            src.send_message(mto=dst.boundjid.full, mbody=sentinel,
                             mtype='chat')
            kind, inner, _ = await next_copy(b)
            assert (kind, body_of(inner)) == (direction, sentinel), \
                f'case {i} ({mtype}, {children}) was copied'
    finally:
        await clients.disconnect(*cs)


async def test_enable_for_another_account_is_forbidden(server):
    async with clients.connected(server, 'alice', 'bob') as (a, bob):
        iq = a.make_iq_set(ito='bob@localhost')
        iq.append(slixmpp.xmlstream.ET.fromstring(
            f"<enable xmlns='{NS_CARBONS}'/>"))
        with pytest.raises(slixmpp.exceptions.IqError) as e:
            await iq.send(timeout=WAIT)
        assert e.value.condition == 'forbidden'
