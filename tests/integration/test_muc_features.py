"""Group chat (XEP-0045) beyond the basics of test_muc.py: XEP-0249
direct invitations (client to client, online and offline), voice
requests (§7.13, §8.6), iqs to occupant JIDs forwarded to the occupants
(ping, disco, vCard) without revealing real JIDs, several sessions of
one account under one nick, and nick registration (§7.10, §7.12) with
its reservation surviving a restart."""

import asyncio

import pytest
from slixmpp.xmlstream import ET
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

import clients
from pubsub_util import NS_DATA, NS_INFO, NS_ITEMS, form_xml, iq, ok, q
from test_muc import (NS_ADMIN, admin_set, NS_MUC, NS_USER, SERVICE, codes, create,
                      enter, err_cond, groupchat, is_error, is_msg, is_pres,
                      item, join, muc_setup, next_muc, nothing_more, send,
                      wait_subject)

NS_CONF = 'jabber:x:conference'
NS_REQUEST = NS_MUC + '#request'
NS_REGISTER = 'jabber:iq:register'
NS_MUC_REGISTER = NS_MUC + '#register'
NS_PING = 'urn:xmpp:ping'
NS_VCARD = 'vcard-temp'
NS_DELAY = 'urn:xmpp:delay'


def iq_setup(c):
    """muc_setup, and c.iqs: every iq request the client gets, raw (the
    client's plugins still answer pings and disco#info)."""
    muc_setup(c)
    c.iqs = asyncio.Queue()
    # Pings only: a handler of every iq would keep slixmpp from answering
    # the ones it does not know.
    c.register_handler(Callback(
        'iq ping', MatchXPath(f"{{jabber:client}}iq/{{{NS_PING}}}ping"),
        lambda s: c.iqs.put_nowait(s.xml)))


def invite_setup(c):
    """muc_setup, and c.invites: messages with a direct invitation (slixmpp
    raises its message event only for messages with a body)."""
    muc_setup(c)
    c.invites = asyncio.Queue()
    c.register_handler(Callback(
        'invites', MatchXPath(f"{{jabber:client}}message/{{{NS_CONF}}}x"),
        lambda s: c.invites.put_nowait(s)))


async def client(server, spec, setup=muc_setup):
    user, _, resource = spec.partition('/')
    return await clients.connect(server, user, resource or 'r', setup=setup)


def fields(form):
    return {f.get('var'): [v.text for v in f.findall(q(NS_DATA, 'value'))]
            for f in form.findall(q(NS_DATA, 'field'))}


# ---- XEP-0249 ----

INVITE = (f"<x xmlns='{NS_CONF}' jid='lounge@{SERVICE}' password='pw' "
          "reason='Join us' continue='true' thread='t1'/>")


def invitation_of(msg):
    x = msg.xml.find(q(NS_CONF, 'x'))
    assert x is not None, msg
    return dict(x.attrib)


@pytest.mark.parametrize('shards', [1, 2])
async def test_direct_invitation(server_factory, shards):
    """A direct invitation is a message from client to client: it
    reaches the invitee as sent, now or from offline storage later; the
    room is not involved, and the server passes on the invitee's own
    jabber:x:conference feature (§3: the client advertises it)."""
    server = server_factory(shards=shards)
    alice = await client(server, 'alice/a')
    bob = await client(server, 'bob/b', invite_setup)
    try:
        await create(alice, 'lounge', 'Alice')
        bob['xep_0030'].add_feature(NS_CONF)
        info = ok(await iq(alice, 'get', f"<query xmlns='{NS_INFO}'/>",
                           to=str(bob.boundjid)))
        assert NS_CONF in {f.get('var') for f in info.iter(
            q(NS_INFO, 'feature'))}
        send(alice, f"<message to='{bob.boundjid}' id='inv1'>{INVITE}"
             '</message>')
        m = await asyncio.wait_for(bob.invites.get(), 10)
        assert m['from'] == alice.boundjid
        assert m['id'] == 'inv1'
        assert invitation_of(m) == {
            'jid': f'lounge@{SERVICE}', 'password': 'pw',
            'reason': 'Join us', 'continue': 'true', 'thread': 't1'}
        # The invitee joins with what it was given.
        await enter(bob, 'lounge', 'Bob')
    finally:
        await clients.disconnect(alice, bob)

    # Offline: stored (it is a normal message) and delivered at the next
    # initial presence, unchanged but for the storage delay.
    carol = await client(server, 'carol/c')
    try:
        send(carol, f"<message to='wendy@localhost' id='inv2'>{INVITE}"
             '</message>')
        await carol['xep_0199'].ping('localhost', timeout=5)
    finally:
        await clients.disconnect(carol)
    wendy = await client(server, 'wendy/w', invite_setup)
    try:
        m = await asyncio.wait_for(wendy.invites.get(), 10)
        assert m['id'] == 'inv2'
        assert m['from'].bare == 'carol@localhost'
        assert invitation_of(m)['jid'] == f'lounge@{SERVICE}'
        assert invitation_of(m)['password'] == 'pw'
        assert m.xml.find(q(NS_DELAY, 'delay')) is not None
    finally:
        await clients.disconnect(wendy)


# ---- voice requests ----

def voice_request_xml(room, extra=None):
    return (f"<message to='{room}@{SERVICE}'>" +
            form_xml(NS_REQUEST, {'muc#role': 'participant',
                                  **(extra or {})}) + '</message>')


def is_voice_form():
    return lambda x: (x.tag == '{jabber:client}message' and
                      x.find(q(NS_DATA, 'x')) is not None)


@pytest.mark.parametrize('shards', [1, 2])
async def test_voice_request(server_factory, shards):
    server = server_factory(shards=shards)
    alice = await client(server, 'alice/a')
    bob = await client(server, 'bob/b')
    carol = await client(server, 'carol/c')
    try:
        await create(alice, 'stage', 'Alice',
                     {'muc#roomconfig_moderatedroom': '1'})
        p = await enter(bob, 'stage', 'Bob')
        assert item(p).get('role') == 'visitor'
        await next_muc(alice, is_pres(f'stage@{SERVICE}/Bob'))
        groupchat(bob, 'stage', 'may I?')
        e = await next_muc(bob, is_error())
        assert err_cond(e) == ('auth', 'forbidden')

        # Not an occupant: refused.
        send(carol, voice_request_xml('stage'))
        e = await next_muc(carol, is_error())
        assert err_cond(e) == ('modify', 'not-acceptable')

        # The visitor asks; the moderator gets the approval form.
        send(bob, voice_request_xml('stage'))
        m = await next_muc(alice, is_voice_form())
        assert m.get('from') == f'stage@{SERVICE}'
        form = m.find(q(NS_DATA, 'x'))
        assert form.get('type') == 'form'
        f = fields(form)
        assert f['FORM_TYPE'] == [NS_REQUEST]
        assert f['muc#role'] == ['participant']
        assert f['muc#jid'] == [str(bob.boundjid)]
        assert f['muc#roomnick'] == ['Bob']
        assert f['muc#request_allow'] == ['false']
        # The visitor does not get it.
        await nothing_more(bob, is_voice_form())

        # Only a moderator answers it.
        send(bob, f"<message to='stage@{SERVICE}'>" + form_xml(
            NS_REQUEST, {'muc#role': 'participant', 'muc#roomnick': 'Bob',
                         'muc#request_allow': 'true'}) + '</message>')
        e = await next_muc(bob, is_error())
        assert err_cond(e) == ('auth', 'forbidden')
        send(alice, f"<message to='stage@{SERVICE}'>" + form_xml(
            NS_REQUEST, {'muc#role': 'participant', 'muc#roomnick': 'Nobody',
                         'muc#request_allow': 'true'}) + '</message>')
        e = await next_muc(alice, is_error())
        assert err_cond(e) == ('cancel', 'item-not-found')
        # Declined: nothing changes.
        send(alice, f"<message to='stage@{SERVICE}'>" + form_xml(
            NS_REQUEST, {'muc#role': 'participant', 'muc#roomnick': 'Bob',
                         'muc#request_allow': 'false'}) + '</message>')
        await nothing_more(bob, is_pres(f'stage@{SERVICE}/Bob'))

        # Approved: voice, announced to everyone.
        send(alice, f"<message to='stage@{SERVICE}'>" + form_xml(
            NS_REQUEST, {'muc#role': 'participant',
                         'muc#jid': str(bob.boundjid),
                         'muc#roomnick': 'Bob',
                         'muc#request_allow': 'true'}) + '</message>')
        for c in (alice, bob):
            p = await next_muc(c, is_pres(f'stage@{SERVICE}/Bob'))
            assert item(p).get('role') == 'participant'
        assert 110 in codes(p)
        groupchat(bob, 'stage', 'thank you')
        await next_muc(alice, is_msg('thank you', f'stage@{SERVICE}/Bob'))

        # A participant asking again changes nothing and bothers no one.
        send(bob, voice_request_xml('stage'))
        await nothing_more(alice, is_voice_form())
        # A form of another kind, or a malformed one, is a bad request.
        send(bob, f"<message to='stage@{SERVICE}'>" +
             form_xml('urn:example:other', {'x': '1'}) + '</message>')
        e = await next_muc(bob, is_error())
        assert err_cond(e) == ('modify', 'bad-request')
    finally:
        await clients.disconnect(alice, bob, carol)


# ---- iqs to occupants ----

@pytest.mark.parametrize('shards', [1, 2])
async def test_iq_to_occupants(server_factory, shards):
    server = server_factory(shards=shards)
    alice = await client(server, 'alice/a', iq_setup)
    bob = await client(server, 'bob/b', iq_setup)
    carol = await client(server, 'carol/c', iq_setup)
    try:
        await create(alice, 'den', 'Alice')
        await enter(bob, 'den', 'Bob')
        clients.drain(alice.iqs)

        # A ping to alice's occupant JID reaches alice from bob's
        # occupant JID, under an id of the room's; her answer comes back
        # to bob from her occupant JID with his id.
        asking = asyncio.ensure_future(iq(bob, 'get',
                                          f"<ping xmlns='{NS_PING}'/>",
                                          to=f'den@{SERVICE}/Alice'))
        got = await asyncio.wait_for(alice.iqs.get(), 10)
        assert got.get('from') == f'den@{SERVICE}/Bob'
        assert got.get('to') == str(alice.boundjid)
        assert got.find(q(NS_PING, 'ping')) is not None
        assert 'bob@localhost' not in ET.tostring(got).decode()
        reply = await asyncio.wait_for(asking, 10)
        # slixmpp matched the answer by the id it sent: the room gave
        # its own id back.
        assert reply.get('type') == 'result'
        assert got.get('id') != reply.get('id')
        assert reply.get('from') == f'den@{SERVICE}/Alice'
        assert reply.get('to') == str(bob.boundjid)
        assert 'alice@localhost' not in ET.tostring(reply).decode()

        # disco#info through the room: alice's client answers.
        info = ok(await iq(bob, 'get', f"<query xmlns='{NS_INFO}'/>",
                           to=f'den@{SERVICE}/Alice'))
        assert NS_PING in {f.get('var') for f in info.iter(
            q(NS_INFO, 'feature'))}

        # vCards are the account's: the request goes to alice's bare JID
        # and her server answers.
        ok(await iq(alice, 'set', f"<vCard xmlns='{NS_VCARD}'>"
                    '<FN>Alice A.</FN></vCard>'))
        v = ok(await iq(bob, 'get', f"<vCard xmlns='{NS_VCARD}'/>",
                        to=f'den@{SERVICE}/Alice'))
        assert v.find(f'{q(NS_VCARD, "vCard")}/{q(NS_VCARD, "FN")}'
                      ).text == 'Alice A.'

        # An error answer comes back as an error.
        e = await iq(bob, 'get', "<query xmlns='urn:example:none'/>",
                     to=f'den@{SERVICE}/Alice')
        assert e.get('type') == 'error'
        assert e.get('from') == f'den@{SERVICE}/Alice'

        # No such nick; not an occupant.
        e = await iq(bob, 'get', f"<ping xmlns='{NS_PING}'/>",
                     to=f'den@{SERVICE}/Nobody')
        assert err_cond(e) == ('cancel', 'item-not-found')
        e = await iq(carol, 'get', f"<ping xmlns='{NS_PING}'/>",
                     to=f'den@{SERVICE}/Alice')
        assert err_cond(e) == ('modify', 'not-acceptable')

        # A self-ping (XEP-0410) is still the room's to answer.
        clients.drain(bob.iqs)
        ok(await iq(bob, 'get', f"<ping xmlns='{NS_PING}'/>",
                    to=f'den@{SERVICE}/Bob'))
        assert clients.drain(bob.iqs) == []

        # A forged answer (no such request) goes nowhere.
        send(carol, f"<iq type='result' id='{got.get('id')}' "
             f"to='den@{SERVICE}/Bob'/>")
        await nothing_more(bob, lambda x: x.tag == '{jabber:client}iq')
    finally:
        await clients.disconnect(alice, bob, carol)


# ---- several sessions, one nick ----

@pytest.mark.parametrize('shards', [1, 2])
async def test_one_nick_several_sessions(server_factory, shards):
    server = server_factory(shards=shards)
    a1 = await client(server, 'alice/one')
    a2 = await client(server, 'alice/two')
    bob = await client(server, 'bob/b')
    carol = await client(server, 'carol/c')
    alice_jid = f'hall@{SERVICE}/Alice'
    try:
        await create(a1, 'hall', 'Alice')
        await enter(bob, 'hall', 'Bob')
        await next_muc(a1, is_pres(f'hall@{SERVICE}/Bob'))

        # Another account cannot take the nick...
        p, _ = await join(carol, 'hall', 'Alice')
        assert err_cond(p) == ('cancel', 'conflict')
        # ...another session of the same account joins it.
        send(a2, f"<presence to='{alice_jid}'><x xmlns='{NS_MUC}'/>"
             '<status>second</status></presence>')
        p = await next_muc(a2, lambda x: x.tag.endswith('presence') and
                           110 in codes(x))
        assert p.get('type') is None
        assert item(p).get('affiliation') == 'owner'
        await wait_subject(a2)
        # Bob sees one occupant whose presence changed, not a second.
        p = await next_muc(bob, is_pres(alice_jid))
        assert p.find('{jabber:client}status').text == 'second'
        # The first session sees itself updated.
        p = await next_muc(a1, is_pres(alice_jid))
        assert 110 in codes(p)
        items = ok(await iq(bob, 'get', f"<query xmlns='{NS_ITEMS}'/>",
                            to=f'hall@{SERVICE}'))
        assert sorted(i.get('jid') for i in items.iter(
            q(NS_ITEMS, 'item'))) == [alice_jid, f'hall@{SERVICE}/Bob']

        # Messages reach every session: private and groupchat.
        send(bob, f"<message to='{alice_jid}' type='chat'>"
             '<body>psst</body></message>')
        for c in (a1, a2):
            m = await next_muc(c, is_msg('psst', f'hall@{SERVICE}/Bob'))
            assert m.get('to') == str(c.boundjid)
        groupchat(bob, 'hall', 'all of you')
        for c in (a1, a2):
            await next_muc(c, is_msg('all of you'))
        # Either session speaks as the one occupant.
        groupchat(a2, 'hall', 'from two')
        m = await next_muc(bob, is_msg('from two'))
        assert m.get('from') == alice_jid

        # A nick change by one session alone is refused.
        send(a2, f"<presence to='hall@{SERVICE}/Other'/>")
        e = await next_muc(a2, is_error())
        assert err_cond(e) == ('cancel', 'not-acceptable')

        # One session leaves: it alone gets its unavailable presence; the
        # others see Alice still there.
        send(a2, f"<presence to='{alice_jid}' type='unavailable'/>")
        p = await next_muc(a2, is_pres(alice_jid, 'unavailable'))
        assert 110 in codes(p)
        p = await next_muc(bob, is_pres(alice_jid))
        assert p.get('type') is None
        await nothing_more(a1, is_pres(alice_jid, 'unavailable'))
        groupchat(bob, 'hall', 'still here?')
        await next_muc(a1, is_msg('still here?'))
        await nothing_more(a2, is_msg('still here?'))

        # The last session leaving is the occupant leaving.
        send(a1, f"<presence to='{alice_jid}' type='unavailable'/>")
        await next_muc(a1, is_pres(alice_jid, 'unavailable'))
        await next_muc(bob, is_pres(alice_jid, 'unavailable'))
    finally:
        await clients.disconnect(a1, a2, bob, carol)


async def test_session_end_leaves_one_session(server):
    """A session that ends (its server sends the room its unavailable)
    leaves; the account's other session stays in."""
    a1 = await client(server, 'alice/one')
    a2 = await client(server, 'alice/two')
    bob = await client(server, 'bob/b')
    try:
        await create(a1, 'porch', 'Alice')
        await enter(a2, 'porch', 'Alice')
        await enter(bob, 'porch', 'Bob')
        await clients.disconnect(a2)
        p = await next_muc(bob, is_pres(f'porch@{SERVICE}/Alice'))
        assert p.get('type') is None
        groupchat(bob, 'porch', 'hi')
        await next_muc(a1, is_msg('hi'))
    finally:
        await clients.disconnect(a1, bob)


# ---- nick registration ----

def register_xml(nick):
    return (f"<query xmlns='{NS_REGISTER}'>" +
            form_xml(NS_MUC_REGISTER, {'muc#register_roomnick': nick}) +
            '</query>')


async def reserved_nick(c, room):
    r = ok(await iq(c, 'get', f"<query xmlns='{NS_INFO}' "
                    "node='x-roomuser-item'/>", to=f'{room}@{SERVICE}'))
    ids = list(r.iter(q(NS_INFO, 'identity')))
    return ids[0].get('name') if ids else None


async def test_nick_registration(server_factory):
    server = server_factory(shards=2)
    alice = await client(server, 'alice/a')
    bob = await client(server, 'bob/b')
    carol = await client(server, 'carol/c')
    try:
        await create(alice, 'club', 'Alice', {
            'muc#roomconfig_membersonly': '1',
            'muc#roomconfig_persistentroom': '1'})
        info = ok(await iq(bob, 'get', f"<query xmlns='{NS_INFO}'/>",
                           to=f'club@{SERVICE}'))
        assert NS_REGISTER in {f.get('var') for f in info.iter(
            q(NS_INFO, 'feature'))}
        p, _ = await join(bob, 'club', 'Bobby')
        assert err_cond(p) == ('auth', 'registration-required')

        # The form, then a registration: a member with a reserved nick.
        r = ok(await iq(bob, 'get', f"<query xmlns='{NS_REGISTER}'/>",
                        to=f'club@{SERVICE}'))
        form = r.find(f'{q(NS_REGISTER, "query")}/{q(NS_DATA, "x")}')
        assert form.get('type') == 'form'
        assert fields(form)['FORM_TYPE'] == [NS_MUC_REGISTER]
        assert 'muc#register_roomnick' in fields(form)
        assert await reserved_nick(bob, 'club') is None
        ok(await iq(bob, 'set', register_xml('Bobby'),
                    to=f'club@{SERVICE}'))
        assert await reserved_nick(bob, 'club') == 'Bobby'
        r = ok(await iq(bob, 'get', f"<query xmlns='{NS_REGISTER}'/>",
                        to=f'club@{SERVICE}'))
        qr = r.find(q(NS_REGISTER, 'query'))
        assert qr.find(q(NS_REGISTER, 'registered')) is not None
        assert qr.find(q(NS_REGISTER, 'username')).text == 'Bobby'
        members = ok(await iq(alice, 'get', f"<query xmlns='{NS_ADMIN}'>"
                              "<item affiliation='member'/></query>",
                              to=f'club@{SERVICE}'))
        assert [(i.get('jid'), i.get('nick')) for i in members.iter(
            q(NS_ADMIN, 'item'))] == [('bob@localhost', 'Bobby')]
        p = await enter(bob, 'club', 'Bobby')
        assert item(p).get('affiliation') == 'member'

        # Errors: the nick is someone else's; a bad form; an outcast.
        e = await iq(carol, 'set', register_xml('Bobby'),
                     to=f'club@{SERVICE}')
        assert err_cond(e) == ('cancel', 'conflict')
        e = await iq(carol, 'set', register_xml('Alice'),
                     to=f'club@{SERVICE}')
        assert err_cond(e) == ('cancel', 'conflict')  # in use
        e = await iq(carol, 'set', f"<query xmlns='{NS_REGISTER}'>" +
                     form_xml('urn:example:other', {}) + '</query>',
                     to=f'club@{SERVICE}')
        assert err_cond(e) == ('modify', 'bad-request')
        e = await iq(carol, 'get', f"<query xmlns='{NS_REGISTER}'/>",
                     to=f'nowhere@{SERVICE}')
        assert err_cond(e) == ('cancel', 'item-not-found')
        ok(await iq(alice, 'set', f"<query xmlns='{NS_ADMIN}'><item "
                    "affiliation='outcast' jid='walter@localhost'/></query>",
                    to=f'club@{SERVICE}'))
        walter = await client(server, 'walter/w')
        try:
            e = await iq(walter, 'get', f"<query xmlns='{NS_REGISTER}'/>",
                         to=f'club@{SERVICE}')
            assert err_cond(e) == ('cancel', 'not-allowed')
        finally:
            await clients.disconnect(walter)
    finally:
        await clients.disconnect(alice, bob, carol)

    # The reservation survives a restart: carol registers (a member
    # now), and still cannot take bob's nick, in a join or a change.
    server.restart()
    bob = await client(server, 'bob/b')
    carol = await client(server, 'carol/c')
    try:
        assert await reserved_nick(bob, 'club') == 'Bobby'
        assert await reserved_nick(carol, 'club') is None
        ok(await iq(carol, 'set', register_xml('Caro'),
                    to=f'club@{SERVICE}'))
        p, _ = await join(carol, 'club', 'Bobby')
        assert err_cond(p) == ('cancel', 'conflict')
        await enter(carol, 'club', 'Caro')
        send(carol, f"<presence to='club@{SERVICE}/Bobby'/>")
        e = await next_muc(carol, is_error())
        assert err_cond(e) == ('cancel', 'conflict')
        # bob uses his nick; he may also pick another.
        await enter(bob, 'club', 'Bob2')
        send(bob, f"<presence to='club@{SERVICE}/Bob2' type='unavailable'/>")
        await next_muc(bob, is_pres(f'club@{SERVICE}/Bob2', 'unavailable'))
        # Cancelling the registration frees the nick and the membership.
        ok(await iq(bob, 'set', f"<query xmlns='{NS_REGISTER}'><remove/>"
                    '</query>', to=f'club@{SERVICE}'))
        assert await reserved_nick(bob, 'club') is None
        p, _ = await join(bob, 'club', 'Bobby')
        assert err_cond(p) == ('auth', 'registration-required')
    finally:
        await clients.disconnect(bob, carol)


# ---- the error tables of §8-§10 and §17.4 ----

@pytest.mark.parametrize('shards', [1, 2])
async def test_admin_errors(server_factory, shards):
    server = server_factory(shards=shards)
    alice = await client(server, 'alice/a')
    bob = await client(server, 'bob/b')
    carol = await client(server, 'carol/c')
    room = f'court@{SERVICE}'
    try:
        await create(alice, 'court', 'Alice',
                     {'muc#roomconfig_moderatedroom': '1'})
        ok(await admin_set(alice, 'court', [
            {'jid': 'bob@localhost', 'affiliation': 'admin'},
            {'jid': 'carol@localhost', 'affiliation': 'admin'}]))
        await enter(bob, 'court', 'Bob')
        await enter(carol, 'court', 'Carol')
        # §17.4: a role and an affiliation in one item.
        e = await admin_set(alice, 'court', [{
            'nick': 'Bob', 'role': 'none', 'jid': 'bob@localhost',
            'affiliation': 'member'}])
        assert err_cond(e) == ('modify', 'bad-request')
        # §9.1: an admin or owner banning itself: conflict.
        e = await admin_set(bob, 'court', [{'jid': 'bob@localhost',
                                            'affiliation': 'outcast'}])
        assert err_cond(e) == ('cancel', 'conflict')
        # §8.4: nobody takes an admin's voice, not even an owner.
        e = await admin_set(alice, 'court', [{'nick': 'Bob',
                                              'role': 'visitor'}])
        assert err_cond(e) == ('cancel', 'not-allowed')
        # §9.7: nor an admin's moderator status.
        e = await admin_set(alice, 'court', [{'nick': 'Bob',
                                              'role': 'participant'}])
        assert err_cond(e) == ('cancel', 'not-allowed')
        # §8.2: an admin cannot kick an owner...
        e = await admin_set(bob, 'court', [{'nick': 'Alice',
                                            'role': 'none'}])
        assert err_cond(e) == ('cancel', 'not-allowed')
        # ...but an admin of the same affiliation, yes, and an owner an
        # admin (only a lower affiliation is protected).
        ok(await admin_set(bob, 'court', [{'nick': 'Carol',
                                           'role': 'none'}]))
        p = await next_muc(carol, is_pres(f'{room}/Carol', 'unavailable'))
        assert 307 in codes(p)
        ok(await admin_set(alice, 'court', [{'nick': 'Bob',
                                             'role': 'none'}]))
        p = await next_muc(bob, is_pres(f'{room}/Bob', 'unavailable'))
        assert 307 in codes(p)
        # A message of no type with no form to the room: bad-request.
        send(carol, f"<message to='{room}'><body>hi</body></message>")
        e = await next_muc(carol, is_error())
        assert err_cond(e) == ('modify', 'bad-request')
    finally:
        await clients.disconnect(alice, bob, carol)
