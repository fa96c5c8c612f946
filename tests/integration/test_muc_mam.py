"""XEP-0313 archives of group chat rooms: a room archives its groupchat
messages with a body and its subject changes under its stanza-id (the
same opaque ids as the account archive), answers queries on its bare JID
to occupants (and to members of a members-only room), pages both ways
across a restart, filters by occupant JID, shows real JIDs only to whoever
may see them, keeps a XEP-0425 tombstone for a moderated message, removes
the archive with the room, applies mam.retention, and works with the room
and its occupants on different shards. slixmpp's own XEP-0313 plugin reads
a room's archive in test_slixmpp_plugin."""

import asyncio
import re
import sqlite3
import uuid

from slixmpp.xmlstream import ET
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

import clients
from pubsub_util import NS_INFO, error_of, form_xml, iq, ok, q
from test_muc import (NS_CONFIG, NS_OID, NS_OWNER, NS_SID, NS_USER, SERVICE,
                      create, enter, groupchat, is_msg, muc_client,
                      next_muc)

NS_MAM = 'urn:xmpp:mam:2'
NS_RSM = 'http://jabber.org/protocol/rsm'
NS_FWD = 'urn:xmpp:forward:0'
NS_DELAY = 'urn:xmpp:delay'
NS_CLIENT = 'jabber:client'
NS_ADMIN = 'http://jabber.org/protocol/muc#admin'
NS_MODERATE = 'urn:xmpp:message-moderate:1'
NS_RETRACT = 'urn:xmpp:message-retract:1'

PERSISTENT = {'muc#roomconfig_persistentroom': '1'}


class Page:
    def __init__(self, results, fin):
        self.results = results  # [(result element, its message)]
        self.fin = fin

    @property
    def ids(self):
        return [r.get('id') for r, _ in self.results]

    @property
    def messages(self):
        return [m for _, m in self.results]

    @property
    def bodies(self):
        return [m.findtext(q(NS_CLIENT, 'body')) for m in self.messages]

    @property
    def complete(self):
        return self.fin.get('complete') == 'true'

    def rsm(self, name):
        return self.fin.findtext(f'{q(NS_RSM, "set")}/{q(NS_RSM, name)}')


async def query(c, room, fields=None, rsm=None, flip=False):
    """A MAM query to the room's bare JID; its Page, or the error reply's
    element (a str: the condition)."""
    qid = uuid.uuid4().hex[:10]
    payload = f"<query xmlns='{NS_MAM}' queryid='{qid}'>"
    if fields is not None:
        payload += form_xml(NS_MAM, fields)
    if rsm is not None:
        payload += f"<set xmlns='{NS_RSM}'>" + ''.join(
            f'<{k}/>' if v is None else f'<{k}>{v}</{k}>'
            for k, v in rsm.items()) + '</set>'
    if flip:
        payload += '<flip-page/>'
    payload += '</query>'
    got = []
    name = f'mam-{qid}'
    c.register_handler(Callback(
        name, MatchXPath(f'{q(NS_CLIENT, "message")}/{q(NS_MAM, "result")}'),
        lambda m: got.append(m.xml)))
    try:
        reply = await iq(c, 'set', payload, to=f'{room}@{SERVICE}')
    finally:
        c.remove_handler(name)
    if reply.get('type') == 'error':
        return error_of(reply)[1]
    fin = reply.find(q(NS_MAM, 'fin'))
    assert fin is not None, ET.tostring(reply)
    results = []
    for m in got:
        r = m.find(q(NS_MAM, 'result'))
        if r.get('queryid') != qid:
            continue
        assert m.get('from') == f'{room}@{SERVICE}', ET.tostring(m)
        fwd = r.find(q(NS_FWD, 'forwarded'))
        assert fwd.find(q(NS_DELAY, 'delay')).get('stamp')
        inner = fwd.find(q(NS_CLIENT, 'message'))
        assert inner.get('to') is None  # XEP-0313 §6.1.2
        results.append((r, inner))
    return Page(results, fin)


def sid_of(msg):
    s = msg.find(q(NS_SID, 'stanza-id'))
    return None if s is None else (s.get('by'), s.get('id'))


def room_rows(server, room):
    db = sqlite3.connect(f'file:{server.data_dir / "stanzad.db"}?mode=ro',
                         uri=True, timeout=5)
    try:
        return db.execute(
            'SELECT id, with_res FROM mam JOIN mam_users USING (uid) '
            'WHERE host = ? AND user = ? ORDER BY id',
            (SERVICE, room)).fetchall()
    finally:
        db.close()


def has_archive_key(server, room):
    db = sqlite3.connect(f'file:{server.data_dir / "stanzad.db"}?mode=ro',
                         uri=True, timeout=5)
    try:
        return db.execute('SELECT count(*) FROM mam_users WHERE host = ? '
                          'AND user = ?', (SERVICE, room)).fetchone()[0] > 0
    finally:
        db.close()


async def say(sender, others, room, bodies):
    """sender says each body in room; returns the messages as the first
    of others got them (and waits for every other one too)."""
    for b in bodies:
        groupchat(sender, room, b)
    got = []
    for b in bodies:
        for i, c in enumerate(others):
            m = await next_muc(c, is_msg(b))
            if i == 0:
                got.append(m)
    return got


async def features(c, room):
    info = ok(await iq(c, 'get', f"<query xmlns='{NS_INFO}'/>",
                       to=f'{room}@{SERVICE}'))
    return {f.get('var') for f in info.iter(q(NS_INFO, 'feature'))}


async def test_paging_across_restart(server):
    alice = await muc_client(server, 'alice/a')
    bob = await muc_client(server, 'bob/b')
    room = 'arch'
    rj = f'{room}@{SERVICE}'
    try:
        await create(alice, room, 'Alice', PERSISTENT)
        assert {NS_MAM, NS_MAM + '#extended'} <= await features(alice, room)
        await enter(bob, room, 'Bob')
        bodies = [f'line {i}' for i in range(25)]
        live = await say(bob, [alice, bob], room, bodies)
        mine = await say(alice, [bob, alice], room, ['from alice'])
        # the stanza-id occupants got is the archive id
        sids = [sid_of(m) for m in live + mine]
        assert all(by == rj and len(i) == 32 for by, i in sids)
        forward, after, pages = [], None, 0
        while True:
            rsm = {'max': '10'}
            if after:
                rsm['after'] = after
            page = await query(bob, room, rsm=rsm)
            pages += 1
            forward += page.results
            assert page.rsm('first') == page.ids[0]
            assert page.rsm('last') == page.ids[-1]
            if page.complete:
                break
            after = page.rsm('last')
        assert pages == 3
        assert [r.get('id') for r, _ in forward] == [i for _, i in sids]
        assert [m.findtext(q(NS_CLIENT, 'body')) for _, m in forward] == \
            bodies + ['from alice']
        # as the occupants saw them: from the occupant JID, occupant id,
        # the room's stanza-id
        m = forward[0][1]
        assert m.get('from') == f'{rj}/Bob' and m.get('type') == 'groupchat'
        assert m.find(q(NS_OID, 'occupant-id')) is not None
        assert sid_of(m) == sids[0]
    finally:
        await clients.disconnect(alice, bob)
    server.restart()
    alice = await muc_client(server, 'alice/a')
    try:
        await enter(alice, room, 'Alice')
        ids = [i for _, i in sids]
        page = await query(alice, room, rsm={'max': '10', 'before': None})
        assert page.ids == ids[16:] and not page.complete
        backward = page.ids
        while not page.complete:
            page = await query(alice, room, rsm={'max': '10',
                                                 'before': page.rsm('first')})
            backward = page.ids + backward
        assert backward == ids
        flipped = await query(alice, room, rsm={'max': '5', 'before': None},
                              flip=True)
        assert flipped.ids == list(reversed(ids[21:]))
        # with: the occupant JID
        page = await query(alice, room, fields={'with': f'{rj}/Alice'})
        assert page.bodies == ['from alice'] and page.complete
        page = await query(alice, room, fields={'with': f'{rj}/Bob'},
                           rsm={'max': '3'})
        assert page.bodies == bodies[:3] and not page.complete
        page = await query(alice, room, fields={'after-id': ids[3],
                                                'before-id': ids[6]})
        assert page.ids == ids[4:6]
        page = await query(alice, room, rsm={'max': '0'})
        assert page.rsm('count') == '26'
        assert await query(alice, room, fields={'after-id': 'f' * 32}) == \
            'item-not-found'
        # a subject change is archived too (§6.1.2), after the restart's
        # messages, still under the same ids
        alice.send_raw(f"<message to='{rj}' type='groupchat'>"
                       '<subject>new topic</subject></message>')
        s = await next_muc(alice, lambda x: x.findtext(
            q(NS_CLIENT, 'subject')) == 'new topic')
        page = await query(alice, room, rsm={'after': ids[-1]})
        assert page.ids == [sid_of(s)[1]]
        assert page.messages[0].findtext(q(NS_CLIENT, 'subject')) == \
            'new topic'
        # metadata (§5): the first and the last
        md = ok(await iq(alice, 'get', f"<metadata xmlns='{NS_MAM}'/>",
                         to=rj)).find(q(NS_MAM, 'metadata'))
        assert md.find(q(NS_MAM, 'start')).get('id') == ids[0]
        assert md.find(q(NS_MAM, 'end')).get('id') == sid_of(s)[1]
        # the form (§4.1.5) on the room
        form = ok(await iq(alice, 'get', f"<query xmlns='{NS_MAM}'/>",
                           to=rj))
        assert form.find(q(NS_MAM, 'query')) is not None
    finally:
        await clients.disconnect(alice)


async def test_access_and_real_jids(server):
    alice = await muc_client(server, 'alice/a')
    bob = await muc_client(server, 'bob/b')
    carol = await muc_client(server, 'carol/c')
    try:
        await create(alice, 'open1', 'Alice')
        await enter(bob, 'open1', 'Bob')
        await say(bob, [alice, bob], 'open1', ['hello'])
        # not an occupant of an open room: forbidden
        assert await query(carol, 'open1') == 'forbidden'
        reply = await iq(carol, 'get', f"<query xmlns='{NS_MAM}'/>",
                         to=f'open1@{SERVICE}')
        assert error_of(reply)[1] == 'forbidden'
        # semi-anonymous: the owner sees Bob's real JID, Bob (a
        # participant) sees nobody's
        page = await query(alice, 'open1')
        item = page.messages[0].find(f'{q(NS_USER, "x")}/{q(NS_USER, "item")}')
        assert item is not None and item.get('jid') == 'bob@localhost/b'
        page = await query(bob, 'open1')
        assert page.bodies == ['hello']
        assert page.messages[0].find(q(NS_USER, 'x')) is None
        # a client's own muc#user <x/> is not archived as the room's
        bob.send_raw(f"<message to='open1@{SERVICE}' type='groupchat'>"
                     '<body>spoof</body>'
                     f"<x xmlns='{NS_USER}'><item jid='eve@evil'/></x>"
                     '</message>')
        await next_muc(alice, is_msg('spoof'))
        page = await query(alice, 'open1')
        items = page.messages[-1].findall(
            f'{q(NS_USER, "x")}/{q(NS_USER, "item")}')
        assert [i.get('jid') for i in items] == ['bob@localhost/b']

        # members-only: a member who is not in the room reads it
        await create(alice, 'club', 'Alice',
                     {'muc#roomconfig_membersonly': '1'})
        ok(await iq(alice, 'set', f"<query xmlns='{NS_ADMIN}'>"
                    "<item affiliation='member' jid='carol@localhost'/>"
                    '</query>', to=f'club@{SERVICE}'))
        await say(alice, [alice], 'club', ['members only'])
        page = await query(carol, 'club')
        assert page.bodies == ['members only']
        assert await query(bob, 'club') == 'forbidden'
        # an outcast is not a member any more
        ok(await iq(alice, 'set', f"<query xmlns='{NS_ADMIN}'>"
                    "<item affiliation='outcast' jid='carol@localhost'/>"
                    '</query>', to=f'club@{SERVICE}'))
        assert await query(carol, 'club') == 'forbidden'
    finally:
        await clients.disconnect(alice, bob, carol)


async def test_archiving_off(server):
    alice = await muc_client(server, 'alice/a')
    try:
        await create(alice, 'quiet', 'Alice',
                     {'muc#roomconfig_enablearchiving': '0'})
        form = ok(await iq(alice, 'get', f"<query xmlns='{NS_OWNER}'/>",
                           to=f'quiet@{SERVICE}'))
        f = [x for x in form.iter('{jabber:x:data}field')
             if x.get('var') == 'muc#roomconfig_enablearchiving']
        assert f and f[0].findtext('{jabber:x:data}value') == '0'
        assert NS_MAM not in await features(alice, 'quiet')
        m, = await say(alice, [alice], 'quiet', ['not kept'])
        assert sid_of(m)[0] == f'quiet@{SERVICE}'  # ids all the same
        reply = await iq(alice, 'set', f"<query xmlns='{NS_MAM}'/>",
                         to=f'quiet@{SERVICE}')
        assert error_of(reply)[1] == 'feature-not-implemented'
        # ejabberd's field name turns it on
        ok(await iq(alice, 'set', f"<query xmlns='{NS_OWNER}'>" +
                    form_xml(NS_CONFIG, {'mam': '1'}) + '</query>',
                    to=f'quiet@{SERVICE}'))
        m, = await say(alice, [alice], 'quiet', ['kept'])
        page = await query(alice, 'quiet')
        assert page.bodies == ['kept'] and page.ids == [sid_of(m)[1]]
    finally:
        await clients.disconnect(alice)
    # a temporary room: gone with its last occupant, and its archive too
    await clients.until(lambda: not has_archive_key(server, 'quiet'))
    assert room_rows(server, 'quiet') == []


async def test_moderation_tombstone(server):
    alice = await muc_client(server, 'alice/a')
    bob = await muc_client(server, 'bob/b')
    room = f'modarch@{SERVICE}'
    try:
        await create(alice, 'modarch', 'Alice', PERSISTENT)
        await enter(bob, 'modarch', 'Bob')
        bad, fine = await say(bob, [alice, bob], 'modarch',
                              ['secret stuff', 'fine'])
        sid = sid_of(bad)[1]
        ok(await iq(alice, 'set', f"<moderate xmlns='{NS_MODERATE}' "
                    f"id='{sid}'><retract xmlns='{NS_RETRACT}'/>"
                    '<reason>no secrets</reason></moderate>', to=room))
        await next_muc(bob, lambda x: x.find(q(NS_RETRACT, 'retract'))
                       is not None)
        for c in (alice, bob):
            page = await query(c, 'modarch')
            assert page.ids == [sid, sid_of(fine)[1]]
            t = page.messages[0]
            assert ET.tostring(t).decode().find('secret stuff') < 0
            assert t.find(q(NS_CLIENT, 'body')) is None
            assert t.get('from') == f'{room}/Bob'
            assert t.find(q(NS_OID, 'occupant-id')) is not None
            r = t.find(q(NS_RETRACT, 'retracted'))
            assert r is not None and r.get('stamp')
            assert r.findtext(q(NS_RETRACT, 'reason')) == 'no secrets'
            md = r.find(q(NS_MODERATE, 'moderated'))
            assert md.get('by') == f'{room}/Alice'
            assert md.find(q(NS_OID, 'occupant-id')) is not None
            assert page.bodies[1] == 'fine'
    finally:
        await clients.disconnect(alice, bob)
    server.restart()  # the tombstone is what is stored
    alice = await muc_client(server, 'alice/a')
    try:
        await enter(alice, 'modarch', 'Alice')
        page = await query(alice, 'modarch')
        assert page.bodies == [None, 'fine']
    finally:
        await clients.disconnect(alice)


async def test_destruction_removes_archive(server):
    alice = await muc_client(server, 'alice/a')
    try:
        await create(alice, 'doomed', 'Alice', PERSISTENT)
        await say(alice, [alice], 'doomed', ['a', 'b', 'c'])
        assert (await query(alice, 'doomed')).bodies == ['a', 'b', 'c']
        assert len(room_rows(server, 'doomed')) == 3
        ok(await iq(alice, 'set', f"<query xmlns='{NS_OWNER}'><destroy/>"
                    '</query>', to=f'doomed@{SERVICE}'))
        await clients.until(lambda: not has_archive_key(server, 'doomed'))
        assert room_rows(server, 'doomed') == []
        await next_muc(alice, lambda x: x.get('type') == 'unavailable')
        # made again under the same name: an empty archive
        await create(alice, 'doomed', 'Alice', PERSISTENT)
        assert (await query(alice, 'doomed')).bodies == []
        # a temporary room's archive goes when its last occupant leaves
        await create(alice, 'brief', 'Alice')
        await say(alice, [alice], 'brief', ['x'])
        assert (await query(alice, 'brief')).bodies == ['x']
    finally:
        await clients.disconnect(alice)
    await clients.until(lambda: not has_archive_key(server, 'brief'))


async def test_temporary_room_gone_at_restart(server):
    """A temporary room that ends with the server leaves no archive."""
    alice = await muc_client(server, 'alice/a')
    try:
        await create(alice, 'fleeting', 'Alice')
        await say(alice, [alice], 'fleeting', ['x'])
        assert (await query(alice, 'fleeting')).bodies == ['x']
    finally:
        # still in the room at the shutdown
        server.restart()
        await clients.disconnect(alice)
    assert not has_archive_key(server, 'fleeting')


async def test_retention(server_factory):
    server = server_factory(mam={'retention': '2s'})
    alice = await muc_client(server, 'alice/a')
    try:
        await create(alice, 'short', 'Alice', PERSISTENT)
        await say(alice, [alice], 'short', ['old'])
        assert (await query(alice, 'short')).bodies == ['old']
        await asyncio.sleep(2.5)
        assert (await query(alice, 'short')).bodies == []
        await say(alice, [alice], 'short', ['new'])
        assert (await query(alice, 'short')).bodies == ['new']
        await clients.until(lambda: len(room_rows(server, 'short')) == 1)
    finally:
        await clients.disconnect(alice)


async def test_two_shards(server_factory):
    """The room on one shard, occupants on both: ids, results and the
    fin reach every occupant, in order."""
    srv = server_factory(shards=2)
    bound = re.compile(r'^.*\bc\d+\b.*\bbound (\S+) on shard (\d+)', re.M)
    connected, on_shard = [], {}
    try:
        for i in range(16):
            user = f'sh{i}'
            srv.add_user(user, f'pw-{i}')
            c = await muc_client(srv, f'{user}/x')
            connected.append(c)
            jid = c.boundjid.full
            await asyncio.to_thread(
                srv.wait_for_log, rf'bound {re.escape(jid)} on shard \d')
            shard = {m.group(1): m.group(2)
                     for m in bound.finditer(srv.log_text())}
            on_shard.setdefault(shard[jid], c)
            if {'0', '1'} <= set(on_shard):
                break
        assert set(on_shard) == {'0', '1'}
        x, y = on_shard['0'], on_shard['1']
        await create(x, 'spread', 'X', PERSISTENT)
        await enter(y, 'spread', 'Y')
        got = await say(x, [y, x], 'spread', [f'x{i}' for i in range(5)])
        got += await say(y, [x, y], 'spread', [f'y{i}' for i in range(5)])
        for c in (x, y):
            page = await query(c, 'spread', rsm={'max': '4'})
            assert page.ids == [sid_of(m)[1] for m in got[:4]]
            page = await query(c, 'spread', rsm={'max': '20'})
            assert page.ids == [sid_of(m)[1] for m in got]
            assert page.bodies == [f'x{i}' for i in range(5)] + \
                [f'y{i}' for i in range(5)]
    finally:
        await clients.disconnect(*connected)


async def test_slixmpp_plugin(server):
    """slixmpp's XEP-0313 plugin pages through a room's archive."""
    alice = await muc_client(server, 'alice/a')
    try:
        alice.register_plugin('xep_0313')
        await create(alice, 'plug', 'Alice', PERSISTENT)
        bodies = [f'p{i}' for i in range(7)]
        await say(alice, [alice], 'plug', bodies)
        got = []
        async for m in alice['xep_0313'].iterate(
                jid=f'plug@{SERVICE}', rsm={'max': 3}):
            got.append(m['mam_result']['forwarded']['stanza']['body'])
        assert got == bodies
    finally:
        await clients.disconnect(alice)
