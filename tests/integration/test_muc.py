"""Group chat (XEP-0045) on conference.localhost, served inside the server:
the service and rooms in disco, instant and reserved rooms, joining with
nicks and passwords, presence of occupants, groupchat fan-out with
stanza ids (XEP-0359) and occupant ids (XEP-0421), subject, private
messages, nick changes, roles and affiliations (kick, ban, voice,
members-only, moderated), history on join, destruction, persistence
across a restart, self-ping (XEP-0410), moderation (XEP-0425), and all
of it with occupants on two shards. Raw stanzas, so that every attribute and status code the
server sends is checked as it is; test_slixmpp_plugin shows slixmpp's own
XEP-0045 plugin working against the service."""

import asyncio
import time

import pytest
from slixmpp.xmlstream import ET
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

import clients
from pubsub_util import (NS_DATA, NS_INFO, NS_ITEMS, error_of, form_xml,
                         iq, ok, q)

SERVICE = 'conference.localhost'
NS_MUC = 'http://jabber.org/protocol/muc'
NS_USER = NS_MUC + '#user'
NS_ADMIN = NS_MUC + '#admin'
NS_OWNER = NS_MUC + '#owner'
NS_CONFIG = NS_MUC + '#roomconfig'
NS_OID = 'urn:xmpp:occupant-id:0'
NS_SID = 'urn:xmpp:sid:0'
NS_DELAY = 'urn:xmpp:delay'
WAIT = 10


def rooms_setup(service):
    """A connect() setup: c.muc, a queue of every presence and message
    from `service`, as raw elements."""
    def setup(c):
        c.muc = asyncio.Queue()
        for kind in ('presence', 'message'):
            c.register_handler(Callback(
                f'muc {kind}', MatchXPath(f'{{jabber:client}}{kind}'),
                lambda s: c.muc.put_nowait(s.xml)
                if s['from'].domain == service else None))
    return setup


muc_setup = rooms_setup(SERVICE)


async def muc_client(server, spec):
    user, _, resource = spec.partition('/')
    return await clients.connect(server, user, resource or 'r',
                                 setup=muc_setup)


async def next_muc(c, pred=lambda x: True, timeout=WAIT):
    """The next stanza from the service that pred accepts (others are
    skipped)."""
    async def wait():
        while True:
            x = await c.muc.get()
            if pred(x):
                return x
    try:
        return await asyncio.wait_for(wait(), timeout)
    except asyncio.TimeoutError:
        raise AssertionError(f'{c.boundjid}: nothing matching from the '
                             'room')


async def nothing_more(c, pred=lambda x: True, wait=0.5):
    await asyncio.sleep(wait)
    got = [x for x in clients.drain(c.muc) if pred(x)]
    assert got == [], [ET.tostring(x) for x in got]


def send(c, xml):
    c.send_raw(xml)


def codes(x):
    ux = x.find(q(NS_USER, 'x'))
    return set() if ux is None else {
        int(s.get('code')) for s in ux.findall(q(NS_USER, 'status'))}


def item(x):
    return x.find(f'{q(NS_USER, "x")}/{q(NS_USER, "item")}')


def is_pres(frm=None, typ=None):
    def pred(x):
        return (x.tag == '{jabber:client}presence' and
                (frm is None or x.get('from') == frm) and
                x.get('type') == typ)
    return pred


def is_msg(body=None, frm=None):
    def pred(x):
        if x.tag != '{jabber:client}message' or x.get('type') == 'error':
            return False
        b = x.find('{jabber:client}body')
        return ((body is None or (b is not None and b.text == body)) and
                (frm is None or x.get('from') == frm))
    return pred


def is_error():
    return lambda x: x.get('type') == 'error'


def err_cond(x):
    err = x.find('{jabber:client}error')
    assert err is not None, ET.tostring(x)
    conds = [c.tag.split('}')[1] for c in err if not c.tag.endswith('text')]
    return err.get('type'), conds[0]


def join_xml(room, nick, password=None, history=None, muc=True):
    inner = ''
    if password is not None:
        inner += f'<password>{password}</password>'
    if history is not None:
        inner += '<history ' + ' '.join(
            f"{k}='{v}'" for k, v in history.items()) + '/>'
    x = f"<x xmlns='{NS_MUC}'>{inner}</x>" if muc else ''
    return f"<presence to='{room}@{SERVICE}/{nick}'>{x}</presence>"


async def join(c, room, nick, **kw):
    """Joins; returns (self presence, [everything before it])."""
    send(c, join_xml(room, nick, **kw))
    before = []
    while True:
        x = await next_muc(c)
        if x.get('type') == 'error':
            return x, before
        if x.tag.endswith('presence') and 110 in codes(x):
            return x, before
        before.append(x)


async def wait_subject(c):
    return await next_muc(c, lambda x: x.find('{jabber:client}subject')
                          is not None)


async def create(c, room, nick='owner', config=None):
    """Creates a room and configures it (config: muc#roomconfig fields;
    None: accept the defaults, an instant room)."""
    self_p, _ = await join(c, room, nick)
    assert {110, 201} <= codes(self_p), ET.tostring(self_p)
    await wait_subject(c)
    ok(await iq(c, 'set', f"<query xmlns='{NS_OWNER}'>" +
                form_xml(NS_CONFIG, config or {}) + '</query>',
                to=f'{room}@{SERVICE}'))


async def enter(c, room, nick, **kw):
    p, _ = await join(c, room, nick, **kw)
    assert p.get('type') != 'error', ET.tostring(p)
    await wait_subject(c)
    return p


def groupchat(c, room, body, msg_id=None):
    mid = f" id='{msg_id}'" if msg_id else ''
    send(c, f"<message to='{room}@{SERVICE}' type='groupchat'{mid}>"
         f'<body>{body}</body></message>')


async def test_service_disco(server):
    async with clients.connected(server, 'alice/a') as (alice,):
        items = ok(await iq(alice, 'get', f"<query xmlns='{NS_ITEMS}'/>",
                            to='localhost'))
        assert SERVICE in [i.get('jid') for i in items.iter(
            q(NS_ITEMS, 'item'))]
        info = ok(await iq(alice, 'get', f"<query xmlns='{NS_INFO}'/>",
                           to=SERVICE))
        assert [(i.get('category'), i.get('type')) for i in info.iter(
            q(NS_INFO, 'identity'))] == [('conference', 'text')]
        feats = {f.get('var') for f in info.iter(q(NS_INFO, 'feature'))}
        assert {NS_MUC, NS_OID, NS_SID} <= feats
        reply = await iq(alice, 'get', f"<query xmlns='{NS_INFO}'/>",
                         to=f'nowhere@{SERVICE}')
        assert error_of(reply)[1] == 'item-not-found'


async def test_off(server_factory):
    server = server_factory(muc={'enabled': False})
    async with clients.connected(server, 'alice/a') as (alice,):
        items = ok(await iq(alice, 'get', f"<query xmlns='{NS_ITEMS}'/>",
                            to='localhost'))
        assert SERVICE not in [i.get('jid') for i in items.iter(
            q(NS_ITEMS, 'item'))]


@pytest.mark.parametrize('shards', [1, 2])
async def test_join_chat_leave(server_factory, shards):
    server = server_factory(shards=shards)
    alice = await muc_client(server, 'alice/a')
    bob = await muc_client(server, 'bob/b')
    carol = await muc_client(server, 'carol/c')
    try:
        # A groupchat 1.0 join (no <x/>) makes an instant room at once.
        p, before = await join(alice, 'lounge', 'Alice', muc=False)
        assert codes(p) == {110, 201}
        assert before == []
        it = item(p)
        assert (it.get('affiliation'), it.get('role')) == ('owner',
                                                           'moderator')
        oid_alice = p.find(q(NS_OID, 'occupant-id')).get('id')
        assert oid_alice
        subj = await wait_subject(alice)
        assert subj.get('type') == 'groupchat'

        p, before = await join(bob, 'lounge', 'Bob')
        assert codes(p) == {110}
        assert [x.get('from') for x in before] == [f'lounge@{SERVICE}/Alice']
        # Semi-anonymous by default: bob does not see alice's JID...
        assert item(before[0]).get('jid') is None
        assert before[0].find(q(NS_OID, 'occupant-id')).get('id') == \
            oid_alice
        # ...but alice, a moderator, sees his.
        seen = await next_muc(alice, is_pres(f'lounge@{SERVICE}/Bob'))
        assert item(seen).get('jid') == str(bob.boundjid)
        assert item(seen).get('role') == 'participant'
        await wait_subject(bob)

        # Nick taken.
        p, _ = await join(carol, 'lounge', 'Bob')
        assert p.get('type') == 'error'
        assert err_cond(p) == ('cancel', 'conflict')
        await enter(carol, 'lounge', 'Carol')
        # No nick at all.
        walter = await muc_client(server, 'walter/w')
        send(walter, f"<presence to='lounge@{SERVICE}'><x xmlns='{NS_MUC}'/>"
             '</presence>')
        e = await next_muc(walter, is_error())
        assert err_cond(e) == ('modify', 'jid-malformed')
        await clients.disconnect(walter)

        # A message reaches everyone, the sender too, from its nick, with
        # one stanza id and the occupant id.
        groupchat(bob, 'lounge', 'hello all', 'm1')
        got = [await next_muc(c, is_msg('hello all')) for c in
               (alice, bob, carol)]
        for m in got:
            assert m.get('from') == f'lounge@{SERVICE}/Bob'
            assert m.get('id') == 'm1'
            assert m.get('type') == 'groupchat'
            sid = m.findall(q(NS_SID, 'stanza-id'))
            assert len(sid) == 1 and sid[0].get('by') == f'lounge@{SERVICE}'
            assert m.get('to') in (str(c.boundjid) for c in
                                   (alice, bob, carol))
        assert len({m.find(q(NS_SID, 'stanza-id')).get('id')
                    for m in got}) == 1
        assert len({m.find(q(NS_OID, 'occupant-id')).get('id')
                    for m in got}) == 1

        # A forged stanza id or occupant id is dropped.
        send(carol, f"<message to='lounge@{SERVICE}' type='groupchat'>"
             f"<body>forged</body><stanza-id xmlns='{NS_SID}' id='x' "
             f"by='lounge@{SERVICE}'/><occupant-id xmlns='{NS_OID}' "
             "id='fake'/></message>")
        m = await next_muc(alice, is_msg('forged'))
        assert [s.get('id') for s in m.findall(q(NS_SID, 'stanza-id'))] \
            != ['x']
        assert len(m.findall(q(NS_SID, 'stanza-id'))) == 1
        assert [o.get('id') for o in m.findall(q(NS_OID, 'occupant-id'))] \
            != ['fake']

        # Not an occupant: not-acceptable.
        walter = await muc_client(server, 'walter/w')
        groupchat(walter, 'lounge', 'let me in')
        e = await next_muc(walter, is_error())
        assert err_cond(e) == ('modify', 'not-acceptable')
        # A room that does not exist.
        groupchat(walter, 'nope', 'hello?')
        e = await next_muc(walter, is_error())
        assert err_cond(e)[1] == 'item-not-found'
        await clients.disconnect(walter)

        # Private message, from the sender's nick, to carol only.
        send(alice, f"<message to='lounge@{SERVICE}/Carol' type='chat'>"
             '<body>psst</body></message>')
        pm = await next_muc(carol, is_msg('psst'))
        assert pm.get('from') == f'lounge@{SERVICE}/Alice'
        assert pm.find(q(NS_USER, 'x')) is not None
        send(alice, f"<message to='lounge@{SERVICE}/Nobody' type='chat'>"
             '<body>?</body></message>')
        e = await next_muc(alice, is_error())
        assert err_cond(e)[1] == 'item-not-found'
        send(alice, f"<message to='lounge@{SERVICE}/Carol' "
             "type='groupchat'><body>x</body></message>")
        e = await next_muc(alice, is_error())
        assert err_cond(e) == ('modify', 'bad-request')

        # Subject: moderators only, by default.
        send(bob, f"<message to='lounge@{SERVICE}' type='groupchat'>"
             '<subject>bob rules</subject></message>')
        e = await next_muc(bob, is_error())
        assert err_cond(e) == ('auth', 'forbidden')
        send(alice, f"<message to='lounge@{SERVICE}' type='groupchat'>"
             '<subject>Welcome</subject></message>')
        for c in (alice, bob, carol):
            s = await wait_subject(c)
            assert s.find('{jabber:client}subject').text == 'Welcome'
            assert s.get('from') == f'lounge@{SERVICE}/Alice'

        # Nick change: 303 with the new nick, then the new presence.
        send(bob, f"<presence to='lounge@{SERVICE}/Robert'/>")
        gone = await next_muc(carol, is_pres(f'lounge@{SERVICE}/Bob',
                                             'unavailable'))
        assert 303 in codes(gone) and item(gone).get('nick') == 'Robert'
        await next_muc(carol, is_pres(f'lounge@{SERVICE}/Robert'))
        mine = await next_muc(bob, is_pres(f'lounge@{SERVICE}/Bob',
                                           'unavailable'))
        assert {303, 110} <= codes(mine)
        send(bob, f"<presence to='lounge@{SERVICE}/Carol'/>")
        e = await next_muc(bob, is_error())
        assert err_cond(e)[1] == 'conflict'

        # Presence update (status) goes to all.
        send(carol, f"<presence to='lounge@{SERVICE}/Carol'><show>away"
             '</show></presence>')
        upd = await next_muc(alice, is_pres(f'lounge@{SERVICE}/Carol'))
        assert upd.find('{jabber:client}show').text == 'away'

        # Self-ping (XEP-0410).
        ok(await iq(carol, 'get', "<ping xmlns='urn:xmpp:ping'/>",
                    to=f'lounge@{SERVICE}/Carol'))
        walter = await muc_client(server, 'walter/w')
        e = await iq(walter, 'get', "<ping xmlns='urn:xmpp:ping'/>",
                     to=f'lounge@{SERVICE}/Carol')
        assert error_of(e)[1] == 'not-acceptable'
        await clients.disconnect(walter)

        # Room disco: info for anyone, occupants for occupants.
        info = ok(await iq(carol, 'get', f"<query xmlns='{NS_INFO}'/>",
                           to=f'lounge@{SERVICE}'))
        feats = {f.get('var') for f in info.iter(q(NS_INFO, 'feature'))}
        assert {NS_MUC, 'muc_temporary', 'muc_open', 'muc_semianonymous',
                NS_OID, NS_SID} <= feats
        occ = ok(await iq(carol, 'get', f"<query xmlns='{NS_ITEMS}'/>",
                          to=f'lounge@{SERVICE}'))
        assert sorted(i.get('jid') for i in occ.iter(q(NS_ITEMS, 'item'))) \
            == [f'lounge@{SERVICE}/{n}' for n in ('Alice', 'Carol',
                                                  'Robert')]
        listed = ok(await iq(carol, 'get', f"<query xmlns='{NS_ITEMS}'/>",
                             to=SERVICE))
        assert f'lounge@{SERVICE}' in [i.get('jid') for i in listed.iter(
            q(NS_ITEMS, 'item'))]

        # Leaving: unavailable to all, 110 for the leaver.
        send(carol, f"<presence to='lounge@{SERVICE}/Carol' "
             "type='unavailable'/>")
        p = await next_muc(carol, is_pres(None, 'unavailable'))
        assert 110 in codes(p)
        p = await next_muc(alice, is_pres(f'lounge@{SERVICE}/Carol',
                                          'unavailable'))
        assert item(p).get('role') == 'none'
        # A disconnect leaves too.
        await clients.disconnect(bob)
        await next_muc(alice, is_pres(f'lounge@{SERVICE}/Robert',
                                      'unavailable'))
        # The last one out ends a temporary room.
        send(alice, f"<presence to='lounge@{SERVICE}/Alice' "
             "type='unavailable'/>")
        await next_muc(alice, is_pres(None, 'unavailable'))
        reply = await iq(alice, 'get', f"<query xmlns='{NS_INFO}'/>",
                         to=f'lounge@{SERVICE}')
        assert error_of(reply)[1] == 'item-not-found'
    finally:
        await clients.disconnect(alice, bob, carol)


async def test_reserved_room_and_config(server):
    alice = await muc_client(server, 'alice/a')
    bob = await muc_client(server, 'bob/b')
    carol = await muc_client(server, 'carol/c')
    try:
        room = f'club@{SERVICE}'
        p, _ = await join(alice, 'club', 'Alice')
        assert codes(p) == {110, 201}
        await wait_subject(alice)
        # Locked until configured: others cannot enter.
        p, _ = await join(bob, 'club', 'Bob')
        assert err_cond(p) == ('cancel', 'item-not-found')
        # Only the owner configures.
        e = await iq(bob, 'get', f"<query xmlns='{NS_OWNER}'/>", to=room)
        assert error_of(e)[1] == 'forbidden'
        form = ok(await iq(alice, 'get', f"<query xmlns='{NS_OWNER}'/>",
                           to=room))
        vars_ = {f.get('var') for f in form.iter(q(NS_DATA, 'field'))}
        assert {'muc#roomconfig_roomname', 'muc#roomconfig_persistentroom',
                'muc#roomconfig_membersonly', 'muc#roomconfig_moderatedroom',
                'muc#roomconfig_passwordprotectedroom',
                'muc#roomconfig_roomsecret', 'muc#roomconfig_maxusers',
                'muc#roomconfig_whois'} <= vars_
        # A bad value refuses the whole form.
        e = await iq(alice, 'set', f"<query xmlns='{NS_OWNER}'>" +
                     form_xml(NS_CONFIG, {'muc#roomconfig_maxusers': 'lots'})
                     + '</query>', to=room)
        assert error_of(e)[1] == 'not-acceptable'
        ok(await iq(alice, 'set', f"<query xmlns='{NS_OWNER}'>" +
                    form_xml(NS_CONFIG, {
                        'muc#roomconfig_roomname': 'The Club',
                        'muc#roomconfig_passwordprotectedroom': '1',
                        'muc#roomconfig_roomsecret': 'sesame',
                        'muc#roomconfig_maxusers': '2',
                        'muc#roomconfig_whois': 'anyone'}) + '</query>',
                    to=room))
        info = ok(await iq(bob, 'get', f"<query xmlns='{NS_INFO}'/>",
                           to=room))
        assert [i.get('name') for i in info.iter(q(NS_INFO, 'identity'))] \
            == ['The Club']
        feats = {f.get('var') for f in info.iter(q(NS_INFO, 'feature'))}
        assert {'muc_passwordprotected', 'muc_nonanonymous'} <= feats
        # Password.
        p, _ = await join(bob, 'club', 'Bob')
        assert err_cond(p) == ('auth', 'not-authorized')
        p, _ = await join(bob, 'club', 'Bob', password='wrong')
        assert err_cond(p) == ('auth', 'not-authorized')
        p = await enter(bob, 'club', 'Bob', password='sesame')
        # Non-anonymous: 100 and everyone sees JIDs.
        assert 100 in codes(p)
        # Full (maxusers 2).
        p, _ = await join(carol, 'club', 'Carol', password='sesame')
        assert err_cond(p) == ('wait', 'service-unavailable')
        # Destroy: everyone is told, the room is gone.
        ok(await iq(alice, 'set', f"<query xmlns='{NS_OWNER}'><destroy "
                    f"jid='other@{SERVICE}'><reason>moving</reason>"
                    '</destroy></query>', to=room))
        p = await next_muc(bob, is_pres(f'{room}/Bob', 'unavailable'))
        d = p.find(f'{q(NS_USER, "x")}/{q(NS_USER, "destroy")}')
        assert d.get('jid') == f'other@{SERVICE}'
        assert d.find(q(NS_USER, 'reason')).text == 'moving'
        e = await iq(alice, 'get', f"<query xmlns='{NS_INFO}'/>", to=room)
        assert error_of(e)[1] == 'item-not-found'
        # Cancelling the configuration of a new room destroys it.
        await join(alice, 'fleeting', 'Alice')
        await wait_subject(alice)
        ok(await iq(alice, 'set', f"<query xmlns='{NS_OWNER}'><x "
                    f"xmlns='{NS_DATA}' type='cancel'/></query>",
                    to=f'fleeting@{SERVICE}'))
        e = await iq(alice, 'get', f"<query xmlns='{NS_INFO}'/>",
                     to=f'fleeting@{SERVICE}')
        assert error_of(e)[1] == 'item-not-found'
    finally:
        await clients.disconnect(alice, bob, carol)


async def admin_set(c, room, items):
    return await iq(c, 'set', f"<query xmlns='{NS_ADMIN}'>" + ''.join(
        '<item ' + ' '.join(f"{k}='{v}'" for k, v in it.items()
                            if k != 'reason') + '>' +
        (f"<reason>{it['reason']}</reason>" if 'reason' in it else '') +
        '</item>' for it in items) + '</query>', to=f'{room}@{SERVICE}')


@pytest.mark.parametrize('shards', [1, 2])
async def test_roles_and_affiliations(server_factory, shards):
    server = server_factory(shards=shards)
    alice = await muc_client(server, 'alice/a')
    bob = await muc_client(server, 'bob/b')
    carol = await muc_client(server, 'carol/c')
    try:
        room = f'hall@{SERVICE}'
        await create(alice, 'hall', 'Alice',
                     {'muc#roomconfig_moderatedroom': '1'})
        # Moderated: a newcomer without affiliation is a visitor.
        p = await enter(bob, 'hall', 'Bob')
        assert item(p).get('role') == 'visitor'
        groupchat(bob, 'hall', 'can I speak?')
        e = await next_muc(bob, is_error())
        assert err_cond(e) == ('auth', 'forbidden')
        # Voice.
        e = await admin_set(bob, 'hall', [{'nick': 'Bob',
                                           'role': 'participant'}])
        assert error_of(e)[1] == 'forbidden'
        ok(await admin_set(alice, 'hall', [{'nick': 'Bob',
                                            'role': 'participant'}]))
        p = await next_muc(bob, is_pres(f'{room}/Bob'))
        assert item(p).get('role') == 'participant'
        groupchat(bob, 'hall', 'thanks')
        await next_muc(alice, is_msg('thanks'))
        # Unknown nick.
        e = await admin_set(alice, 'hall', [{'nick': 'Nobody',
                                             'role': 'none'}])
        assert error_of(e)[1] == 'item-not-found'
        # Role list.
        lst = ok(await iq(alice, 'get', f"<query xmlns='{NS_ADMIN}'><item "
                          "role='participant'/></query>", to=room))
        assert [i.get('nick') for i in lst.iter(q(NS_ADMIN, 'item'))] == \
            ['Bob']
        # Kick: 307 with actor and reason.
        await enter(carol, 'hall', 'Carol')
        ok(await admin_set(alice, 'hall', [{'nick': 'Carol', 'role': 'none',
                                            'reason': 'be nice'}]))
        p = await next_muc(carol, is_pres(f'{room}/Carol', 'unavailable'))
        assert {307, 110} <= codes(p)
        assert item(p).find(q(NS_USER, 'reason')).text == 'be nice'
        assert item(p).find(q(NS_USER, 'actor')).get('nick') == 'Alice'
        p = await next_muc(bob, is_pres(f'{room}/Carol', 'unavailable'))
        assert 307 in codes(p) and 110 not in codes(p)
        # Ban: 301, and the outcast cannot come back.
        ok(await admin_set(alice, 'hall', [{'jid': 'carol@localhost',
                                            'affiliation': 'outcast'}]))
        p, _ = await join(carol, 'hall', 'Carol')
        assert err_cond(p) == ('auth', 'forbidden')
        # Ban while present.
        ok(await admin_set(alice, 'hall', [{'jid': 'bob@localhost',
                                            'affiliation': 'outcast',
                                            'reason': 'spam'}]))
        p = await next_muc(bob, is_pres(f'{room}/Bob', 'unavailable'))
        assert {301, 110} <= codes(p)
        lst = ok(await iq(alice, 'get', f"<query xmlns='{NS_ADMIN}'><item "
                          "affiliation='outcast'/></query>", to=room))
        assert sorted(i.get('jid') for i in lst.iter(q(NS_ADMIN, 'item'))) \
            == ['bob@localhost', 'carol@localhost']
        e = await iq(bob, 'get', f"<query xmlns='{NS_ADMIN}'><item "
                     "affiliation='outcast'/></query>", to=room)
        assert error_of(e)[1] == 'forbidden'
        # Members-only.
        ok(await admin_set(alice, 'hall', [
            {'jid': 'bob@localhost', 'affiliation': 'none'},
            {'jid': 'carol@localhost', 'affiliation': 'member'}]))
        ok(await iq(alice, 'set', f"<query xmlns='{NS_OWNER}'>" +
                    form_xml(NS_CONFIG, {'muc#roomconfig_membersonly': '1'})
                    + '</query>', to=room))
        p, _ = await join(bob, 'hall', 'Bob')
        assert err_cond(p) == ('auth', 'registration-required')
        p = await enter(carol, 'hall', 'Carol')
        assert (item(p).get('affiliation'), item(p).get('role')) == (
            'member', 'participant')
        # The last owner cannot go.
        e = await admin_set(alice, 'hall', [{'jid': 'alice@localhost',
                                             'affiliation': 'member'}])
        assert error_of(e)[1] == 'conflict'
        # An admin cannot touch an owner; a member no one.
        ok(await admin_set(alice, 'hall', [{'jid': 'carol@localhost',
                                            'affiliation': 'admin'}]))
        p = await next_muc(carol, is_pres(f'{room}/Carol'))
        assert (item(p).get('affiliation'), item(p).get('role')) == (
            'admin', 'moderator')
        e = await admin_set(carol, 'hall', [{'jid': 'alice@localhost',
                                             'affiliation': 'outcast'}])
        assert error_of(e)[1] == 'not-allowed'
        e = await admin_set(carol, 'hall', [{'nick': 'Alice',
                                             'role': 'none'}])
        assert error_of(e)[1] == 'not-allowed'
        # Removing a member from a members-only room removes them: 321.
        ok(await admin_set(alice, 'hall', [{'jid': 'carol@localhost',
                                            'affiliation': 'none'}]))
        p = await next_muc(carol, is_pres(f'{room}/Carol', 'unavailable'))
        assert 321 in codes(p)
    finally:
        await clients.disconnect(alice, bob, carol)


async def test_change_notices_carry_reason_and_actor(server):
    """The presence that tells the occupants of a change of role or
    affiliation carries the moderator's reason and nick (actor), as kicks
    and bans do: XEP-0045 §8.4 shows the reason in the notice of voice,
    and profanity shows both ("role has been changed ... by Alice,
    reason: ..."). The presence kept for later joiners has neither."""
    alice = await muc_client(server, 'alice/a')
    bob = await muc_client(server, 'bob/b')
    carol = await muc_client(server, 'carol/c')
    try:
        room = f'notes@{SERVICE}'
        await create(alice, 'notes', 'Alice',
                     {'muc#roomconfig_moderatedroom': '1'})
        await enter(bob, 'notes', 'Bob')

        def bob_as(role):
            return lambda x: (is_pres(f'{room}/Bob')(x) and
                              item(x).get('role') == role)

        async def check(role, aff, reason):
            for c in (bob, alice):
                it = item(await next_muc(c, bob_as(role)))
                assert it.get('affiliation') == aff
                r = it.find(q(NS_USER, 'reason'))
                assert r is not None and r.text == reason, c.boundjid
                assert it.find(q(NS_USER, 'actor')).get('nick') == 'Alice'

        ok(await admin_set(alice, 'notes', [{'nick': 'Bob',
                                             'role': 'participant',
                                             'reason': 'a worthy witch'}]))
        await check('participant', 'none', 'a worthy witch')
        ok(await admin_set(alice, 'notes', [{'jid': 'bob@localhost',
                                             'affiliation': 'admin',
                                             'reason': 'trusted'}]))
        await check('moderator', 'admin', 'trusted')
        # Without a reason, none is made up.
        ok(await admin_set(alice, 'notes', [{'jid': 'bob@localhost',
                                             'affiliation': 'member'}]))
        for c in (bob, alice):
            it = item(await next_muc(c, bob_as('participant')))
            assert it.find(q(NS_USER, 'reason')) is None
            assert it.find(q(NS_USER, 'actor')).get('nick') == 'Alice'
        # A later joiner sees Bob as he is, without the last change's
        # reason or actor.
        _, before = await join(carol, 'notes', 'Carol')
        bp = [x for x in before if x.get('from') == f'{room}/Bob']
        assert len(bp) == 1
        it = item(bp[0])
        assert (it.get('role'), it.get('affiliation')) == ('participant',
                                                           'member')
        assert it.find(q(NS_USER, 'reason')) is None
        assert it.find(q(NS_USER, 'actor')) is None
    finally:
        await clients.disconnect(alice, bob, carol)


async def test_own_account_removed_with_two_occupants(server):
    """An owner takes their own account's affiliation away in a
    members-only room while it has two occupants, from the later one: both
    go with 321, and the actor of the second removal is the nick of the
    first, gone by then (it was read from a freed occupant:
    AddressSanitizer's heap-use-after-free). (A ban of one's own account,
    which the bug was first seen with, is refused since: XEP-0045 §9.1.)"""
    alice_a = await muc_client(server, 'alice/a')
    alice_b = await muc_client(server, 'alice/b')
    bob = await muc_client(server, 'bob/b')
    try:
        room = f'twice@{SERVICE}'
        await create(alice_a, 'twice', 'A1',
                     {'muc#roomconfig_membersonly': '1'})
        # A second owner, so the account may lose its own ownership.
        ok(await admin_set(alice_a, 'twice', [{'jid': 'bob@localhost',
                                               'affiliation': 'owner'}]))
        await enter(bob, 'twice', 'Bob')
        await enter(alice_b, 'twice', 'A2')
        ok(await admin_set(alice_b, 'twice', [{'jid': 'alice@localhost',
                                               'affiliation': 'none',
                                               'reason': 'bye'}]))
        gone = {}
        for _ in range(2):
            p = await next_muc(bob, lambda x: is_pres(typ='unavailable')(x)
                               and x.get('from') in (f'{room}/A1',
                                                     f'{room}/A2'))
            assert 321 in codes(p)
            it = item(p)
            assert it.find(q(NS_USER, 'reason')).text == 'bye'
            gone[p.get('from')] = it.find(q(NS_USER, 'actor')).get('nick')
        assert gone == {f'{room}/A1': 'A2', f'{room}/A2': 'A2'}
    finally:
        await clients.disconnect(alice_a, alice_b, bob)


async def test_history(server):
    alice = await muc_client(server, 'alice/a')
    bob = await muc_client(server, 'bob/b')
    try:
        await create(alice, 'past', 'Alice')
        for i in range(5):
            groupchat(alice, 'past', f'old {i}')
            await next_muc(alice, is_msg(f'old {i}'))
        # Default: all kept history, oldest first, with <delay/>.
        send(bob, join_xml('past', 'Bob'))
        hist = []
        while True:
            x = await next_muc(bob)
            if x.find('{jabber:client}subject') is not None:
                break
            if x.tag.endswith('message'):
                hist.append(x)
        assert [m.find('{jabber:client}body').text for m in hist] == \
            [f'old {i}' for i in range(5)]
        d = hist[0].find(q(NS_DELAY, 'delay'))
        assert d.get('from') == f'past@{SERVICE}' and d.get('stamp')
        send(bob, f"<presence to='past@{SERVICE}/Bob' type='unavailable'/>")
        await next_muc(bob, is_pres(None, 'unavailable'))

        async def history_with(limits):
            send(bob, join_xml('past', 'Bob', history=limits))
            got = []
            while True:
                x = await next_muc(bob)
                if x.find('{jabber:client}subject') is not None:
                    break
                if x.tag.endswith('message'):
                    got.append(x.find('{jabber:client}body').text)
            send(bob, f"<presence to='past@{SERVICE}/Bob' "
                 "type='unavailable'/>")
            await next_muc(bob, is_pres(None, 'unavailable'))
            return got

        assert await history_with({'maxstanzas': 2}) == ['old 3', 'old 4']
        assert await history_with({'maxstanzas': 0}) == []
        assert await history_with({'maxchars': 0}) == []
        assert await history_with({'seconds': 3600}) == \
            [f'old {i}' for i in range(5)]
        future = time.strftime('%Y-%m-%dT%H:%M:%SZ',
                               time.gmtime(time.time() + 3600))
        assert await history_with({'since': future}) == []
    finally:
        await clients.disconnect(alice, bob)


async def test_history_bounded(server_factory):
    server = server_factory(muc={'max_history': 3})
    alice = await muc_client(server, 'alice/a')
    bob = await muc_client(server, 'bob/b')
    try:
        await create(alice, 'short', 'Alice')
        for i in range(6):
            groupchat(alice, 'short', f'm{i}')
            await next_muc(alice, is_msg(f'm{i}'))
        send(bob, join_xml('short', 'Bob'))
        got = []
        while True:
            x = await next_muc(bob)
            if x.find('{jabber:client}subject') is not None:
                break
            if x.tag.endswith('message'):
                got.append(x.find('{jabber:client}body').text)
        assert got == ['m3', 'm4', 'm5']
    finally:
        await clients.disconnect(alice, bob)


async def test_invitation(server):
    alice = await muc_client(server, 'alice/a')
    bob = await muc_client(server, 'bob/b')
    try:
        await create(alice, 'party', 'Alice',
                     {'muc#roomconfig_membersonly': '1'})
        send(alice, f"<message to='party@{SERVICE}'><x xmlns='{NS_USER}'>"
             "<invite to='bob@localhost'><reason>come</reason></invite>"
             '</x></message>')
        inv = await next_muc(bob, lambda x: x.find(
            f'{q(NS_USER, "x")}/{q(NS_USER, "invite")}') is not None)
        i = inv.find(f'{q(NS_USER, "x")}/{q(NS_USER, "invite")}')
        assert inv.get('from') == f'party@{SERVICE}'
        assert i.get('from') == str(alice.boundjid)
        assert i.find(q(NS_USER, 'reason')).text == 'come'
        # The invitation made bob a member of the members-only room.
        p = await enter(bob, 'party', 'Bob')
        assert item(p).get('affiliation') == 'member'
    finally:
        await clients.disconnect(alice, bob)


async def test_persistent_room_survives_restart(server_factory):
    server = server_factory(shards=2)
    alice = await muc_client(server, 'alice/a')
    try:
        await create(alice, 'forever', 'Alice', {
            'muc#roomconfig_persistentroom': '1',
            'muc#roomconfig_roomname': 'Forever',
            'muc#roomconfig_membersonly': '1'})
        ok(await admin_set(alice, 'forever', [{'jid': 'bob@localhost',
                                               'affiliation': 'member'}]))
        send(alice, f"<message to='forever@{SERVICE}' type='groupchat'>"
             '<subject>Still here</subject></message>')
        await wait_subject(alice)
        # The last occupant leaving does not end a persistent room.
        send(alice, f"<presence to='forever@{SERVICE}/Alice' "
             "type='unavailable'/>")
        await next_muc(alice, is_pres(None, 'unavailable'))
        ok(await iq(alice, 'get', f"<query xmlns='{NS_INFO}'/>",
                    to=f'forever@{SERVICE}'))
        p = await enter(alice, 'forever', 'Alice')
        await clients.disconnect(alice)
        server.restart()
        alice = await muc_client(server, 'alice/a')
        bob = await muc_client(server, 'bob/b')
        carol = await muc_client(server, 'carol/c')
        try:
            info = ok(await iq(bob, 'get', f"<query xmlns='{NS_INFO}'/>",
                               to=f'forever@{SERVICE}'))
            assert [i.get('name') for i in info.iter(
                q(NS_INFO, 'identity'))] == ['Forever']
            feats = {f.get('var') for f in info.iter(q(NS_INFO, 'feature'))}
            assert {'muc_persistent', 'muc_membersonly'} <= feats
            p, _ = await join(carol, 'forever', 'Carol')
            assert err_cond(p)[1] == 'registration-required'
            p, _ = await join(bob, 'forever', 'Bob')
            assert item(p).get('affiliation') == 'member'
            s = await wait_subject(bob)
            assert s.find('{jabber:client}subject').text == 'Still here'
            p = await enter(alice, 'forever', 'Alice')
            assert item(p).get('affiliation') == 'owner'
            # Destroying it removes it from the store too.
            ok(await iq(alice, 'set', f"<query xmlns='{NS_OWNER}'>"
                        '<destroy/></query>', to=f'forever@{SERVICE}'))
        finally:
            await clients.disconnect(alice, bob, carol)
        server.restart()
        alice = await muc_client(server, 'alice/a')
        e = await iq(alice, 'get', f"<query xmlns='{NS_INFO}'/>",
                     to=f'forever@{SERVICE}')
        assert error_of(e)[1] == 'item-not-found'
    finally:
        await clients.disconnect(alice)


async def test_room_limit(server_factory):
    """muc.max_rooms bounds the rooms of a service; a destroyed room
    frees its place."""
    server = server_factory(muc={'max_rooms': 1})
    alice = await muc_client(server, 'alice/a')
    try:
        await create(alice, 'one', 'Alice')
        p, _ = await join(alice, 'two', 'Alice')
        assert err_cond(p) == ('wait', 'resource-constraint')
        ok(await iq(alice, 'set', f"<query xmlns='{NS_OWNER}'><destroy/>"
                    '</query>', to=f'one@{SERVICE}'))
        await next_muc(alice, is_pres(None, 'unavailable'))
        p, _ = await join(alice, 'two', 'Alice')
        assert 201 in codes(p)
    finally:
        await clients.disconnect(alice)


async def test_many_occupants_two_shards(server_factory):
    """Forty occupants over two shards: each gets every message once."""
    users = {f'u{i}': f'pw{i}' for i in range(40)}
    server = server_factory(users=users, shards=2,
                            limits={'max_conns_per_ip': 100})
    cs = []
    try:
        for i in range(40):
            cs.append(await muc_client(server, f'u{i}/r'))
        await create(cs[0], 'big', 'u0')
        for i, c in enumerate(cs[1:], 1):
            p, before = await join(c, 'big', f'u{i}')
            assert len([x for x in before if x.tag.endswith('presence')]) \
                == i
            await wait_subject(c)
        for k in range(3):
            groupchat(cs[k], 'big', f'round {k}')
        for c in cs:
            got = []
            for k in range(3):
                m = await next_muc(c, is_msg())
                got.append(m.find('{jabber:client}body').text)
            assert sorted(got) == [f'round {k}' for k in range(3)]
        for c in cs[:3]:
            await nothing_more(c, is_msg(), wait=0.3)
    finally:
        await clients.disconnect(*cs)


async def test_slixmpp_plugin(server):
    """slixmpp's own XEP-0045 plugin: join, chat, leave."""
    def setup(c):
        c.register_plugin('xep_0045')
    alice = await clients.connect(server, 'alice', 'a', setup=setup)
    bob = await clients.connect(server, 'bob', 'b', setup=setup)
    try:
        room = f'plug@{SERVICE}'
        await alice['xep_0045'].join_muc_wait(room, 'Alice', maxstanzas=0,
                                              timeout=WAIT)
        ok(await iq(alice, 'set', f"<query xmlns='{NS_OWNER}'>" +
                    form_xml(NS_CONFIG, {}) + '</query>', to=room))
        await bob['xep_0045'].join_muc_wait(room, 'Bob', maxstanzas=0,
                                            timeout=WAIT)
        await clients.until(
            lambda: 'Bob' in alice['xep_0045'].get_roster(room))
        got = asyncio.get_running_loop().create_future()
        bob.add_event_handler('groupchat_message',
                              lambda m: got.done() or got.set_result(m))
        alice.send_message(mto=room, mbody='via the plugin',
                           mtype='groupchat')
        m = await asyncio.wait_for(got, WAIT)
        assert m['body'] == 'via the plugin'
        assert m['from'].resource == 'Alice'
        await alice['xep_0045'].set_affiliation(
            room, 'member', jid='bob@localhost', timeout=WAIT)
        assert await alice['xep_0045'].get_affiliation_list(
            room, 'member', timeout=WAIT) == ['bob@localhost']
        await alice['xep_0045'].set_role(room, 'Bob', 'visitor',
                                         timeout=WAIT)
        await clients.until(lambda: alice['xep_0045'].get_jid_property(
            room, 'Bob', 'role') == 'visitor')
        bob['xep_0045'].leave_muc(room, 'Bob')
        await clients.until(
            lambda: 'Bob' not in alice['xep_0045'].get_roster(room))
        await alice['xep_0045'].destroy(room, reason='done', timeout=WAIT)
    finally:
        await clients.disconnect(alice, bob)


async def test_owner_removes_self_from_empty_room(server):
    """An admin action that removes the last occupant of a temporary room
    ends the room, and the reply still comes. (Banning oneself is not
    such an action: §9.1 refuses it with <conflict/>.)"""
    alice = await muc_client(server, 'alice/a')
    try:
        await create(alice, 'solo', 'Alice',
                     {'muc#roomconfig_membersonly': '1'})
        ok(await admin_set(alice, 'solo', [{'jid': 'bob@localhost',
                                            'affiliation': 'owner'}]))
        e = await admin_set(alice, 'solo', [{'jid': 'alice@localhost',
                                             'affiliation': 'outcast'}])
        assert err_cond(e) == ('cancel', 'conflict')
        ok(await admin_set(alice, 'solo', [{'jid': 'alice@localhost',
                                            'affiliation': 'none'}]))
        p = await next_muc(alice, is_pres(None, 'unavailable'))
        assert {321, 110} <= codes(p)
        e = await iq(alice, 'get', f"<query xmlns='{NS_INFO}'/>",
                     to=f'solo@{SERVICE}')
        assert error_of(e)[1] == 'item-not-found'
    finally:
        await clients.disconnect(alice)


NS_MODERATE = 'urn:xmpp:message-moderate:1'
NS_RETRACT = 'urn:xmpp:message-retract:1'


async def test_moderation(server):
    """XEP-0425: a moderator retracts a message by its stanza id; every
    occupant is told, and the message leaves the history."""
    alice = await muc_client(server, 'alice/a')
    bob = await muc_client(server, 'bob/b')
    carol = await muc_client(server, 'carol/c')
    try:
        room = f'mod@{SERVICE}'
        await create(alice, 'mod', 'Alice')
        await enter(bob, 'mod', 'Bob')
        info = ok(await iq(bob, 'get', f"<query xmlns='{NS_INFO}'/>",
                           to=room))
        assert NS_MODERATE in {f.get('var') for f in info.iter(
            q(NS_INFO, 'feature'))}
        groupchat(bob, 'mod', 'spam spam')
        m = await next_muc(alice, is_msg('spam spam'))
        sid = m.find(q(NS_SID, 'stanza-id')).get('id')
        groupchat(bob, 'mod', 'fine')
        await next_muc(alice, is_msg('fine'))

        def moderate_xml(msg_id, reason=None):
            r = f'<reason>{reason}</reason>' if reason else ''
            return (f"<moderate xmlns='{NS_MODERATE}' id='{msg_id}'>"
                    f"<retract xmlns='{NS_RETRACT}'/>{r}</moderate>")

        # Only moderators.
        e = await iq(bob, 'set', moderate_xml(sid), to=room)
        assert error_of(e)[1] == 'forbidden'
        e = await iq(alice, 'set', f"<moderate xmlns='{NS_MODERATE}'/>",
                     to=room)
        assert error_of(e)[1] == 'bad-request'
        ok(await iq(alice, 'set', moderate_xml(sid, 'no spam'), to=room))
        for c in (alice, bob):
            x = await next_muc(c, lambda x: x.find(q(NS_RETRACT, 'retract'))
                               is not None)
            assert x.get('from') == room and x.get('type') == 'groupchat'
            rt = x.find(q(NS_RETRACT, 'retract'))
            assert rt.get('id') == sid
            md = rt.find(q(NS_MODERATE, 'moderated'))
            assert md.get('by') == f'{room}/Alice'
            assert md.find(q(NS_OID, 'occupant-id')) is not None
            assert rt.find(q(NS_RETRACT, 'reason')).text == 'no spam'
        # A joiner's history no longer has it.
        send(carol, join_xml('mod', 'Carol'))
        got = []
        while True:
            x = await next_muc(carol)
            if x.find('{jabber:client}subject') is not None:
                break
            if x.tag.endswith('message'):
                got.append(x.find('{jabber:client}body').text)
        assert got == ['fine']
    finally:
        await clients.disconnect(alice, bob, carol)


NS_MODERATE_0 = 'urn:xmpp:message-moderate:0'
NS_RETRACT_0 = 'urn:xmpp:message-retract:0'
NS_FASTEN = 'urn:xmpp:fasten:0'


@pytest.mark.parametrize('version', ['0.2', '0.3'])
async def test_moderation_both_versions(server, version):
    """XEP-0425 0.2 (what Gajim 1.7 and older Converse.js send:
    <apply-to xmlns=fasten:0> around <moderate xmlns=message-moderate:0>)
    is answered like 0.3, and every announcement carries both forms, so
    an occupant's client reads it whichever version its moderator's
    spoke."""
    alice = await muc_client(server, 'alice/a')
    bob = await muc_client(server, 'bob/b')
    try:
        room = f'mod2@{SERVICE}'
        await create(alice, 'mod2', 'Alice')
        await enter(bob, 'mod2', 'Bob')
        info = ok(await iq(bob, 'get', f"<query xmlns='{NS_INFO}'/>",
                           to=room))
        feats = {f.get('var') for f in info.iter(q(NS_INFO, 'feature'))}
        assert {NS_MODERATE, NS_MODERATE_0} <= feats
        groupchat(bob, 'mod2', 'spam')
        m = await next_muc(alice, is_msg('spam'))
        sid = m.find(q(NS_SID, 'stanza-id')).get('id')
        if version == '0.2':
            def req(msg_id, inner=None):
                inner = inner if inner is not None else (
                    f"<moderate xmlns='{NS_MODERATE_0}'>"
                    f"<retract xmlns='{NS_RETRACT_0}'/>"
                    '<reason>no spam</reason></moderate>')
                return (f"<apply-to xmlns='{NS_FASTEN}' id='{msg_id}'>"
                        f'{inner}</apply-to>')
            e = await iq(bob, 'set', req(sid), to=room)
            assert error_of(e)[1] == 'forbidden'
            # no <retract/> inside: bad-request, as with 0.3
            e = await iq(alice, 'set', req(sid, f"<moderate xmlns="
                                           f"'{NS_MODERATE_0}'/>"),
                         to=room)
            assert error_of(e)[1] == 'bad-request'
            # fastening something else is not a moderation
            e = await iq(alice, 'set', req(sid, "<x xmlns='urn:example'/>"),
                         to=room)
            assert error_of(e)[1] == 'feature-not-implemented'
            ok(await iq(alice, 'set', req(sid), to=room))
        else:
            ok(await iq(alice, 'set',
                        f"<moderate xmlns='{NS_MODERATE}' id='{sid}'>"
                        f"<retract xmlns='{NS_RETRACT}'/>"
                        '<reason>no spam</reason></moderate>', to=room))
        for c in (alice, bob):
            x = await next_muc(c, lambda x: x.find(q(NS_FASTEN, 'apply-to'))
                               is not None)
            assert x.get('from') == room and x.get('type') == 'groupchat'
            ap = x.find(q(NS_FASTEN, 'apply-to'))
            assert ap.get('id') == sid
            md0 = ap.find(q(NS_MODERATE_0, 'moderated'))
            assert md0.get('by') == f'{room}/Alice'
            assert md0.find(q(NS_RETRACT_0, 'retract')) is not None
            assert md0.find(q(NS_MODERATE_0, 'reason')).text == 'no spam'
            rt = x.find(q(NS_RETRACT, 'retract'))
            assert rt.get('id') == sid
            assert rt.find(q(NS_MODERATE, 'moderated')).get('by') == \
                f'{room}/Alice'
            assert rt.find(q(NS_RETRACT, 'reason')).text == 'no spam'
    finally:
        await clients.disconnect(alice, bob)


async def test_presence_payload_bounded(server):
    """What a room keeps of an occupant's presence is bounded (8 KiB):
    a bigger one is shown without its children."""
    alice = await muc_client(server, 'alice/a')
    bob = await muc_client(server, 'bob/b')
    try:
        await create(alice, 'big', 'Alice')
        send(bob, f"<presence to='big@{SERVICE}/Bob'><status>"
             f"{'x' * 10000}</status><x xmlns='{NS_MUC}'/></presence>")
        p = await next_muc(alice, is_pres(f'big@{SERVICE}/Bob'))
        assert p.find('{jabber:client}status') is None
        await wait_subject(bob)
        send(bob, f"<presence to='big@{SERVICE}/Bob'><status>back"
             '</status></presence>')
        p = await next_muc(alice, is_pres(f'big@{SERVICE}/Bob'))
        assert p.find('{jabber:client}status').text == 'back'
    finally:
        await clients.disconnect(alice, bob)
