"""XEP-0313 message archive of accounts: both sides archived once, the
XEP-0359 stanza-id delivered to the recipient is the archive id, paging
forwards and backwards (also across a restart), the with/start/end/ids
filters, XEP-0441 preferences, XEP-0334 hints, errors, two shards,
offline messages, account removal and retention."""

import asyncio
import datetime
import re
import sqlite3
import uuid
import xml.etree.ElementTree as ET

import pytest
from slixmpp.exceptions import IqError
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

import clients

NS_MAM = 'urn:xmpp:mam:2'
NS_RSM = 'http://jabber.org/protocol/rsm'
NS_SID = 'urn:xmpp:sid:0'
NS_FWD = 'urn:xmpp:forward:0'
NS_DELAY = 'urn:xmpp:delay'
NS_DATA = 'jabber:x:data'
NS_HINTS = 'urn:xmpp:hints'
NS_CLIENT = 'jabber:client'
NS_DISCO = 'http://jabber.org/protocol/disco#info'


def q(ns, name):
    return f'{{{ns}}}{name}'


def unique(prefix='m'):
    return f'{prefix}-{uuid.uuid4().hex[:12]}'


def archived_rows(server, user):
    """(id, with_jid) of user's archive, straight from the database (the
    server writes archived messages in batches: a query writes what is
    queued first, see flushed_rows)."""
    db = sqlite3.connect(f'file:{server.data_dir / "stanzad.db"}?mode=ro',
                         uri=True, timeout=5)
    try:
        return db.execute('SELECT id, with_jid FROM mam JOIN mam_users '
                          'USING (uid) WHERE user = ? ORDER BY id',
                          (user,)).fetchall()
    finally:
        db.close()


async def flushed_rows(server, c, user):
    """archived_rows once c's query has made the server write everything
    queued."""
    await query(c)
    return archived_rows(server, user)


class Page:
    def __init__(self, results, fin):
        self.results = results  # [(id, stamp, inner message element)]
        self.fin = fin

    @property
    def ids(self):
        return [r[0] for r in self.results]

    @property
    def bodies(self):
        return [r[2].findtext(q(NS_CLIENT, 'body')) for r in self.results]

    @property
    def complete(self):
        return self.fin.get('complete') == 'true'

    def rsm(self, name):
        return self.fin.findtext(f'{q(NS_RSM, "set")}/{q(NS_RSM, name)}')


async def query(c, fields=None, rsm=None, flip=False, to=None,
                form_type=NS_MAM):
    """Sends a MAM query; returns its Page. fields: var -> value or list;
    rsm: name -> text (None: an empty element)."""
    qid = unique('q')
    iq = c.make_iq_set(ito=to)
    qe = ET.SubElement(iq.xml, q(NS_MAM, 'query'), queryid=qid)
    if fields is not None:
        x = ET.SubElement(qe, q(NS_DATA, 'x'), type='submit')
        if form_type is not None:
            f = ET.SubElement(x, q(NS_DATA, 'field'), var='FORM_TYPE',
                              type='hidden')
            ET.SubElement(f, q(NS_DATA, 'value')).text = form_type
        for var, value in fields.items():
            f = ET.SubElement(x, q(NS_DATA, 'field'), var=var)
            for v in value if isinstance(value, list) else [value]:
                ET.SubElement(f, q(NS_DATA, 'value')).text = v
    if rsm is not None:
        s = ET.SubElement(qe, q(NS_RSM, 'set'))
        for name, text in rsm.items():
            ET.SubElement(s, q(NS_RSM, name)).text = text
    if flip:
        ET.SubElement(qe, q(NS_MAM, 'flip-page'))
    got = []
    name = f'mam-{qid}'
    c.register_handler(Callback(
        name, MatchXPath(f'{q(NS_CLIENT, "message")}/{q(NS_MAM, "result")}'),
        got.append))
    try:
        reply = await iq.send(timeout=10)
    finally:
        c.remove_handler(name)
    fin = reply.xml.find(q(NS_MAM, 'fin'))
    assert fin is not None, reply
    results = []
    for m in got:
        r = m.xml.find(q(NS_MAM, 'result'))
        if r.get('queryid') != qid:
            continue
        assert m['from'] == c.boundjid.bare
        fwd = r.find(q(NS_FWD, 'forwarded'))
        stamp = fwd.find(q(NS_DELAY, 'delay')).get('stamp')
        inner = fwd.find(q(NS_CLIENT, 'message'))
        results.append((r.get('id'), stamp, inner))
    return Page(results, fin)


def condition(iq):
    """The defined condition of an error reply, read from the XML (slixmpp
    1.8 knows only RFC 3920's, not policy-violation)."""
    err = iq.xml.find(q(NS_CLIENT, 'error'))
    ns = 'urn:ietf:params:xml:ns:xmpp-stanzas'
    names = [c.tag.split('}')[1] for c in err if c.tag.startswith(f'{{{ns}}}')
             and c.tag != q(ns, 'text')]
    assert len(names) == 1, names
    return names[0]


async def query_error(c, **kwargs):
    with pytest.raises(IqError) as e:
        await query(c, **kwargs)
    return condition(e.value.iq)


def stanza_ids(msg):
    return [(s.get('by'), s.get('id'))
            for s in msg.xml.findall(q(NS_SID, 'stanza-id'))]


async def settle(c):
    """A ping round trip: what c sent before has been routed."""
    await c['xep_0199'].ping(c.boundjid.domain, timeout=5)


async def chat(a, b, n, prefix=None):
    """a sends n messages to b (bare JID); b receives them all."""
    prefix = prefix or unique()
    bodies = [f'{prefix} {i}' for i in range(n)]
    for body in bodies:
        a.send_message(mto=b.boundjid.bare, mbody=body, mtype='chat')
    got = [await b.next_message(body) for body in bodies]
    return bodies, got


async def test_both_sides_and_stanza_id(server):
    async with clients.connected(server, 'alice/a', 'bob/b') as (a, b):
        body = unique()
        a.send_message(mto='bob@localhost', mbody=body, mtype='chat')
        msg = await b.next_message(body)
        ids = stanza_ids(msg)
        assert len(ids) == 1 and ids[0][0] == 'bob@localhost', ids
        page = await query(b)
        assert page.bodies == [body] and page.complete
        assert page.ids == [ids[0][1]]
        inner = page.results[0][2]
        assert inner.get('from') == a.boundjid.full
        # the recipient's copy keeps the stanza-id it was delivered with
        assert inner.find(q(NS_SID, 'stanza-id')).get('id') == ids[0][1]
        stamp = datetime.datetime.fromisoformat(
            page.results[0][1].replace('Z', '+00:00'))
        age = datetime.datetime.now(datetime.timezone.utc) - stamp
        assert datetime.timedelta(0) <= age < datetime.timedelta(minutes=1)
        # the sender's copy, without the recipient's stanza-id
        page = await query(a)
        assert page.bodies == [body]
        inner = page.results[0][2]
        assert inner.get('to') == 'bob@localhost'
        assert inner.find(q(NS_SID, 'stanza-id')) is None
        assert page.rsm('first') == page.rsm('last') == page.ids[0]
        # one row each, whatever the number of resources
        assert len(archived_rows(server, 'bob')) == 1
        assert len(archived_rows(server, 'alice')) == 1


async def test_one_copy_for_many_resources_and_self(server):
    async with clients.connected(server, 'alice/a', 'bob/b1', 'bob/b2') as \
            (a, b1, b2):
        body = unique()
        a.send_message(mto='bob@localhost', mbody=body, mtype='chat')
        m1 = await b1.next_message(body)
        m2 = await b2.next_message(body)
        assert stanza_ids(m1) == stanza_ids(m2)
        # to oneself: one copy, as received
        body2 = unique()
        b1.send_message(mto=b2.boundjid.full, mbody=body2, mtype='chat')
        await b2.next_message(body2)
        await settle(b1)
        page = await query(b1)
        assert page.bodies == [body, body2]
        page = await query(b1, fields={'with': 'bob@localhost'})
        assert page.bodies == [body2]


async def test_disco_features(server):
    async with clients.connected(server, 'alice/a') as (a,):
        info = await a['xep_0030'].get_info(jid='alice@localhost',
                                            timeout=5)
        feats = info['disco_info']['features']
        for f in (NS_MAM, NS_MAM + '#extended', NS_SID):
            assert f in feats, feats
        iq = a.make_iq_get(ito='alice@localhost')
        ET.SubElement(iq.xml, q(NS_MAM, 'query'))
        form = (await iq.send(timeout=5)).xml.find(
            f'{q(NS_MAM, "query")}/{q(NS_DATA, "x")}')
        vars_ = {f.get('var') for f in form.findall(q(NS_DATA, 'field'))}
        assert {'FORM_TYPE', 'with', 'start', 'end', 'before-id',
                'after-id', 'ids'} <= vars_


async def test_forged_stanza_id_removed(server):
    async with clients.connected(server, 'alice/a', 'bob/b') as (a, b):
        body = unique()
        m = a.make_message(mto='bob@localhost', mbody=body, mtype='chat')
        ET.SubElement(m.xml, q(NS_SID, 'stanza-id'), by='bob@localhost',
                      id='forged')
        ET.SubElement(m.xml, q(NS_SID, 'stanza-id'), by='other@example.org',
                      id='kept')
        m.send()
        got = await b.next_message(body)
        ids = stanza_ids(got)
        assert ('other@example.org', 'kept') in ids
        ours = [i for by, i in ids if by == 'bob@localhost']
        assert len(ours) == 1 and ours[0] != 'forged'


async def test_what_is_archived(server):
    """§6.1.1 and XEP-0334: chat/normal with a body; no headlines, no
    chat states alone, nothing with no-store or no-permanent-store; a
    message with a store hint and no body is kept."""
    async with clients.connected(server, 'alice/a', 'bob/b') as (a, b):
        keep = unique('keep')
        a.send_message(mto='bob@localhost', mbody=keep, mtype='chat')
        a.send_message(mto='bob@localhost', mbody=unique('hl'),
                       mtype='headline')
        for hint in ('no-store', 'no-permanent-store'):
            m = a.make_message(mto='bob@localhost', mbody=unique(hint),
                               mtype='chat')
            ET.SubElement(m.xml, q(NS_HINTS, hint))
            m.send()
        m = a.make_message(mto='bob@localhost', mtype='chat')
        ET.SubElement(m.xml,
                      q('http://jabber.org/protocol/chatstates', 'composing'))
        m.send()
        stored = a.make_message(mto='bob@localhost', mtype='chat')
        ET.SubElement(stored.xml, q(NS_HINTS, 'store'))
        ET.SubElement(stored.xml, q('urn:example', 'thing'))
        stored.send()
        normal = unique('normal')
        a.send_message(mto='bob@localhost', mbody=normal, mtype='normal')
        await b.next_message(normal)
        page = await query(b)
        assert page.bodies == [keep, None, normal]
        assert page.results[1][2].find(q('urn:example', 'thing')) is not None
        assert (await query(a)).bodies == [keep, None, normal]


async def test_paging_across_restart(server):
    async with clients.connected(server, 'alice/a', 'bob/b') as (a, b):
        bodies, _ = await chat(a, b, 25)
        forward = []
        after = None
        pages = 0
        while True:
            rsm = {'max': '10'}
            if after:
                rsm['after'] = after
            page = await query(b, rsm=rsm)
            pages += 1
            forward += page.ids
            assert page.rsm('first') == page.ids[0]
            assert page.rsm('last') == page.ids[-1]
            if page.complete:
                break
            after = page.rsm('last')
        assert pages == 3 and len(forward) == 25
        assert len(set(forward)) == 25
        # in the order sent (ids are opaque: they say nothing of order)
        everything = await query(b, rsm={'max': '25'})
        assert everything.ids == forward and everything.bodies == bodies
    server.restart()
    async with clients.connected(server, 'bob/b') as (b,):
        backward = []
        page = await query(b, rsm={'max': '10', 'before': None})
        assert page.bodies == bodies[15:] and not page.complete
        backward = page.ids + backward
        while not page.complete:
            page = await query(b, rsm={'max': '10',
                                        'before': page.rsm('first')})
            backward = page.ids + backward
        assert backward == forward
        # flip-page: the same page, newest first
        flipped = await query(b, rsm={'max': '10', 'before': None},
                              flip=True)
        assert flipped.bodies == list(reversed(bodies[15:]))
        # before-id and after-id: the messages between two
        page = await query(b, fields={'after-id': forward[3],
                                      'before-id': forward[7]})
        assert page.ids == forward[4:7] and page.complete
        # count only
        page = await query(b, rsm={'max': '0'})
        assert page.results == [] and page.rsm('count') == '25'
        # a message after the restart comes after the others, and the
        # ids from before still name them (the archive key is kept)
        a = await clients.connect(server, 'alice', 'a')
        try:
            body = unique('after-restart')
            a.send_message(mto='bob@localhost', mbody=body, mtype='chat')
            got = await b.next_message(body)
            new_id = stanza_ids(got)[0][1]
            assert new_id not in forward and len(new_id) == 32
            page = await query(b, rsm={'after': forward[-1]})
            assert page.ids == [new_id] and page.bodies == [body]
        finally:
            await clients.disconnect(a)


async def test_filters(server):
    async with clients.connected(server, 'alice/a', 'bob/b', 'carol/c') as \
            (a, b, c):
        from_a, _ = await chat(a, b, 3, 'from-alice')
        await asyncio.sleep(1.1)  # second-granular stamps apart
        page = await query(b)
        middle = page.results[-1][1]
        from_c, _ = await chat(c, b, 2, 'from-carol')
        page = await query(b, fields={'with': 'alice@localhost'})
        assert page.bodies == from_a
        page = await query(b, fields={'with': c.boundjid.full})
        assert page.bodies == from_c
        page = await query(b, fields={'with': 'carol@localhost/other'})
        assert page.bodies == []
        assert page.complete
        all_ = await query(b)
        ids = all_.ids
        stamps = [r[1] for r in all_.results]
        # start and end are inclusive
        page = await query(b, fields={'start': stamps[3]})
        assert page.bodies == from_c
        page = await query(b, fields={'end': middle})
        assert page.bodies == from_a
        page = await query(b, fields={'start': stamps[1], 'end': stamps[3]})
        assert page.ids == ids[1:4]
        t = datetime.datetime.fromisoformat(stamps[3].replace('Z', '+00:00'))
        offset = t.astimezone(datetime.timezone(datetime.timedelta(hours=2)))
        page = await query(b, fields={'start': offset.isoformat()})
        assert page.bodies == from_c
        page = await query(b, fields={'ids': [ids[4], ids[0]]})
        assert page.ids == [ids[0], ids[4]]
        page = await query(b, fields={'ids': [ids[0], ids[4]],
                                      'with': 'carol@localhost'})
        assert page.ids == [ids[4]]
        # the sender's side filters by the recipient
        page = await query(a, fields={'with': 'bob@localhost'})
        assert page.bodies == from_a
        page = await query(a, fields={'with': 'carol@localhost'})
        assert page.bodies == []


async def test_errors(server):
    async with clients.connected(server, 'alice/a', 'bob/b') as (a, b):
        _, got = await chat(a, b, 2)
        known = stanza_ids(got[0])[0][1]
        assert await query_error(b, rsm={'after': '12345'}) == \
            'item-not-found'
        assert await query_error(b, rsm={'before': 'abc'}) == \
            'item-not-found'
        assert await query_error(b, fields={'after-id': '77'}) == \
            'item-not-found'
        assert await query_error(b, fields={'ids': [known, '99']}) == \
            'item-not-found'
        # alice's archive has its own ids: bob's is not there
        assert await query_error(a, fields={'ids': [known]}) == \
            'item-not-found'
        assert await query_error(b, fields={'start': 'yesterday'}) == \
            'bad-request'
        assert await query_error(b, fields={'with': 'a@b@c'}) == \
            'jid-malformed'
        assert await query_error(b, fields={}, form_type='urn:xmpp:mam:1') \
            == 'bad-request'
        assert await query_error(b, fields={'x-custom': 'v'}) == \
            'feature-not-implemented'
        assert await query_error(b, rsm={'max': 'ten'}) == 'bad-request'
        assert await query_error(b, to='alice@localhost') == 'forbidden'
        many = [str(i + 1) for i in range(300)]
        assert await query_error(b, fields={'ids': many}) == \
            'policy-violation'
        # a large max is cut to the server's page, not refused
        page = await query(b, rsm={'max': '100000'})
        assert len(page.results) == 2 and page.complete


async def set_prefs(c, default, always=(), never=()):
    iq = c.make_iq_set()
    p = ET.SubElement(iq.xml, q(NS_MAM, 'prefs'), default=default)
    for name, jids in (('always', always), ('never', never)):
        e = ET.SubElement(p, q(NS_MAM, name))
        for j in jids:
            ET.SubElement(e, q(NS_MAM, 'jid')).text = j
    reply = await iq.send(timeout=5)
    return reply.xml.find(q(NS_MAM, 'prefs'))


async def get_prefs(c):
    iq = c.make_iq_get()
    ET.SubElement(iq.xml, q(NS_MAM, 'prefs'))
    reply = await iq.send(timeout=5)
    p = reply.xml.find(q(NS_MAM, 'prefs'))
    lists = {name: sorted(j.text for j in p.findall(
        f'{q(NS_MAM, name)}/{q(NS_MAM, "jid")}'))
        for name in ('always', 'never')}
    return p.get('default'), lists['always'], lists['never']


async def add_contact(c, jid):
    await c['xep_0030'].get_info(jid=c.boundjid.domain, timeout=5)
    iq = c.make_iq_set()
    qe = ET.SubElement(iq.xml, q('jabber:iq:roster', 'query'))
    ET.SubElement(qe, q('jabber:iq:roster', 'item'), jid=jid)
    await iq.send(timeout=5)


async def test_preferences(server):
    async with clients.connected(server, 'alice/a', 'bob/b', 'carol/c') as \
            (a, b, c):
        assert await get_prefs(b) == ('always', [], [])
        # never, with carol always
        await set_prefs(b, 'never', always=['Carol@localhost'])
        assert await get_prefs(b) == ('never', ['carol@localhost'], [])
        body_a = unique('a-never')
        a.send_message(mto='bob@localhost', mbody=body_a, mtype='chat')
        got = await b.next_message(body_a)
        assert stanza_ids(got) == []  # not archived: no stanza-id
        _, got_c = await chat(c, b, 1, 'c-always')
        assert len(stanza_ids(got_c[0])) == 1
        await settle(b)
        # bob's own outgoing messages follow his preferences too
        b_out = unique('b-out')
        b.send_message(mto='alice@localhost', mbody=b_out, mtype='chat')
        await a.next_message(b_out)
        assert [r[1] for r in await flushed_rows(server, b, 'bob')] == \
            ['carol@localhost']
        # alice's preferences are hers (always): both messages
        assert (await query(a)).bodies == [body_a, b_out]
        # roster: carol is a contact, alice is not
        await add_contact(b, 'carol@localhost')
        await set_prefs(b, 'roster', never=['carol@localhost/c'])
        body_a2 = unique('a-roster')
        a.send_message(mto='bob@localhost', mbody=body_a2, mtype='chat')
        got = await b.next_message(body_a2)
        assert stanza_ids(got) == []
        # never lists carol's full JID c: a resource of hers not listed
        # passes through the roster
        c2 = await clients.connect(server, 'carol', 'c2')
        try:
            body = unique('c2-roster')
            c2.send_message(mto='bob@localhost', mbody=body, mtype='chat')
            got = await b.next_message(body)
            assert len(stanza_ids(got)) == 1
        finally:
            await clients.disconnect(c2)
        body = unique('c-never')
        c.send_message(mto='bob@localhost', mbody=body, mtype='chat')
        got = await b.next_message(body)
        assert stanza_ids(got) == []
        # outgoing with roster: to carol kept, to alice not
        b.send_message(mto='carol@localhost', mbody=unique('b-to-c'),
                       mtype='chat')
        b.send_message(mto='alice@localhost', mbody=unique('b-to-a'),
                       mtype='chat')
        await settle(b)
        page = await query(b)
        withs = [r[1] for r in archived_rows(server, 'bob')]
        assert withs == ['carol@localhost'] * 3, withs
        assert len(page.results) == 3
    # preferences survive a restart
    server.restart()
    async with clients.connected(server, 'bob/b') as (b,):
        assert await get_prefs(b) == ('roster', [], ['carol@localhost/c'])
        await set_prefs(b, 'always')
        assert await get_prefs(b) == ('always', [], [])
        with pytest.raises(IqError) as e:
            await set_prefs(b, 'sometimes')
        assert e.value.iq['error']['condition'] == 'bad-request'


async def test_offline_archived_once(server):
    async with clients.connected(server, 'alice/a') as (a,):
        bodies = [unique('off') for _ in range(3)]
        for body in bodies:
            a.send_message(mto='bob@localhost', mbody=body, mtype='chat')
        await settle(a)
        # a message for an account that does not exist is not archived
        a.send_message(mto='nobody@localhost', mbody=unique('nobody'),
                       mtype='chat')
        await settle(a)
    b = await clients.connect(server, 'bob', 'b')
    try:
        got = [await b.next_message(body) for body in bodies]
        page = await query(b)
        assert page.bodies == bodies
        assert [stanza_ids(m)[0][1] for m in got] == page.ids
        assert len(archived_rows(server, 'bob')) == 3
        assert archived_rows(server, 'nobody') == []
        # alice's three copies, and the one to nobody as sent
        assert len(archived_rows(server, 'alice')) == 4
    finally:
        await clients.disconnect(b)


async def test_metadata(server):
    async with clients.connected(server, 'alice/a', 'bob/b') as (a, b):
        iq = b.make_iq_get()
        ET.SubElement(iq.xml, q(NS_MAM, 'metadata'))
        md = (await iq.send(timeout=5)).xml.find(q(NS_MAM, 'metadata'))
        assert md is not None and len(md) == 0
        _, got = await chat(a, b, 3)
        iq = b.make_iq_get()
        ET.SubElement(iq.xml, q(NS_MAM, 'metadata'))
        md = (await iq.send(timeout=5)).xml.find(q(NS_MAM, 'metadata'))
        assert md.find(q(NS_MAM, 'start')).get('id') == \
            stanza_ids(got[0])[0][1]
        assert md.find(q(NS_MAM, 'end')).get('id') == \
            stanza_ids(got[2])[0][1]


@pytest.mark.deadline(150)
async def test_two_shards(server_factory):
    """Sender and recipient on different shards: both archives, the
    stanza-id, and queries answered on either shard."""
    srv = server_factory(shards=2)
    bound = re.compile(r'^.*\bc\d+\b.*\bbound (\S+) on shard (\d+)', re.M)
    connected, on_shard = [], {}
    try:
        for i in range(16):
            user = f'shard{i}'
            srv.add_user(user, f'pw-{i}')
            client = await clients.connect(srv, user, 'x')
            connected.append(client)
            jid = client.boundjid.full
            await asyncio.to_thread(
                srv.wait_for_log, rf'bound {re.escape(jid)} on shard \d')
            shard = {m.group(1): m.group(2)
                     for m in bound.finditer(srv.log_text())}
            on_shard.setdefault(shard[jid], client)
            if {'0', '1'} <= set(on_shard):
                break
        assert set(on_shard) == {'0', '1'}
        x, y = on_shard['0'], on_shard['1']
        bodies_xy, got_xy = await chat(x, y, 5)
        bodies_yx, got_yx = await chat(y, x, 5)
        page = await query(y)
        assert page.bodies == bodies_xy + bodies_yx
        assert page.ids[:5] == [stanza_ids(m)[0][1] for m in got_xy]
        page = await query(x)
        assert page.bodies == bodies_xy + bodies_yx
        assert page.ids[5:] == [stanza_ids(m)[0][1] for m in got_yx]
    finally:
        await clients.disconnect(*connected)


async def test_account_removal(server):
    async with clients.connected(server, 'alice/a', 'bob/b') as (a, b):
        await set_prefs(b, 'always', never=['carol@localhost'])
        await chat(a, b, 3)
        assert len(await flushed_rows(server, b, 'bob')) == 3
    server.ctl('user', 'del', 'bob@localhost')
    assert archived_rows(server, 'bob') == []
    db = sqlite3.connect(f'file:{server.data_dir / "stanzad.db"}?mode=ro',
                         uri=True, timeout=5)
    try:
        assert db.execute("SELECT count(*) FROM mam_prefs WHERE user = "
                          "'bob'").fetchone()[0] == 0
        # nothing left behind the account key either
        assert db.execute('SELECT count(*) FROM mam WHERE uid NOT IN '
                          '(SELECT uid FROM mam_users)').fetchone()[0] == 0
    finally:
        db.close()
    assert len(archived_rows(server, 'alice')) == 3


async def test_retention(server_factory):
    server = server_factory(mam={'retention': '2s'})
    async with clients.connected(server, 'alice/a', 'bob/b') as (a, b):
        old, _ = await chat(a, b, 2, 'old')
        assert (await query(b)).bodies == old
        await asyncio.sleep(2.5)
        # past retention: never returned, even before the purge ran
        assert (await query(b)).bodies == []
        new, _ = await chat(a, b, 1, 'new')
        assert (await query(b)).bodies == new
        # the writer purged the old ones on its way
        await clients.until(lambda: len(archived_rows(server, 'bob')) == 1)
    await asyncio.sleep(2.5)
    server.restart()  # the purge at start-up
    assert archived_rows(server, 'bob') == []
    assert archived_rows(server, 'alice') == []


async def test_groupchat_not_in_account_archive(server):
    """Group chat messages belong to the room's archive (XEP-0313 §4.1.2,
    §6.1.1): the account archive keeps none of them, gives them no
    stanza-id of its own, and leaves the room's XEP-0359 stanza-id (by the
    room's JID) in place, both from a room of this server (its fan-out)
    and through the router as a remote room's message arrives; only a
    stanza-id by the account itself is removed. A chat message beside
    them is archived as usual."""
    from test_muc import SERVICE, create, enter, groupchat, is_msg, \
        muc_client, next_muc
    a = await muc_client(server, 'alice/a')
    b = await muc_client(server, 'bob/b')
    try:
        await create(a, 'mamroom', 'Alice')
        await enter(b, 'mamroom', 'Bob')
        bodies = [unique('gc') for _ in range(3)]
        for body in bodies:
            groupchat(b, 'mamroom', body)
        for body in bodies:
            m = await next_muc(a, is_msg(body))
            sids = [(s.get('by'), s.get('id'))
                    for s in m.findall(q(NS_SID, 'stanza-id'))]
            assert len(sids) == 1, sids
            assert sids[0][0] == f'mamroom@{SERVICE}' and sids[0][1]
        # As a remote room's message comes in: routed to alice's full
        # JID with the room's id and one forged in alice's name.
        room = 'far@conference.example.net'
        gc, chat = unique('rgc'), unique('rchat')
        for typ, body in (('groupchat', gc), ('chat', chat)):
            b.send_raw(
                f"<message to='{a.boundjid.full}' type='{typ}'>"
                f'<body>{body}</body>'
                f"<stanza-id xmlns='{NS_SID}' by='{room}' id='room-1'/>"
                f"<stanza-id xmlns='{NS_SID}' by='alice@localhost' "
                "id='forged'/></message>")
        m = await a.next_message(gc)
        assert stanza_ids(m) == [(room, 'room-1')], stanza_ids(m)
        m = await a.next_message(chat)
        ids = stanza_ids(m)
        assert ids[0] == (room, 'room-1') and len(ids) == 2, ids
        assert ids[1][0] == 'alice@localhost' and ids[1][1] != 'forged'
        page = await query(a)
        assert page.bodies == [chat], page.bodies
        assert page.ids == [ids[1][1]]
        page = await query(b)
        assert page.bodies == [chat], page.bodies
        assert len(archived_rows(server, 'alice')) == 1
        assert len(archived_rows(server, 'bob')) == 1
    finally:
        await clients.disconnect(a, b)


def metric_value(server, name):
    out = server.ctl('metrics').stdout
    m = re.search(rf'^stanzad_{name} (\d+)$', out, re.M)
    assert m is not None, out
    return int(m.group(1))


async def test_back_pressure_nothing_shed(server_factory):
    """A tiny mam.queue_high and several senders flooding on two shards:
    the writer falls behind, the senders' streams stop reading (the
    read_throttles_total counter rises) and resume, and every message is
    delivered once and archived exactly once on both sides. Nothing
    hangs: the last messages are delivered though no later one comes to
    restart a stopped stream."""
    srv = server_factory(shards=2, mam={'queue_high': 8})
    senders, receivers = 6, 2
    per_sender = 150
    users = [f'fl{i}' for i in range(senders + receivers)]
    for i, u in enumerate(users):
        srv.add_user(u, f'pw-{i}')
    connected = []
    try:
        for i, u in enumerate(users):
            connected.append(await clients.connect(srv, u, 'x',
                                                   password=f'pw-{i}'))
        tx, rx = connected[:senders], connected[senders:]
        assert metric_value(srv, 'read_throttles_total') == 0
        sent = {c.boundjid.bare: [] for c in tx}
        for n in range(per_sender):
            for i, c in enumerate(tx):
                body = f'flood {i} {n} {unique()}'
                to = rx[(i + n) % receivers]
                c.send_message(mto=to.boundjid.bare, mbody=body,
                               mtype='chat')
                sent[c.boundjid.bare].append((to, body))
        expect = {r.boundjid.bare: set() for r in rx}
        for lst in sent.values():
            for to, body in lst:
                expect[to.boundjid.bare].add(body)
        ids = {}
        for r in rx:
            want = expect[r.boundjid.bare]
            got = {}
            while len(got) < len(want):
                m = await r.next_message(timeout=30)
                body = m['body']
                assert body in want and body not in got, body
                s = stanza_ids(m)
                assert len(s) == 1 and s[0][0] == r.boundjid.bare, s
                got[body] = s[0][1]
            ids[r.boundjid.bare] = got
        throttles = metric_value(srv, 'read_throttles_total')
        assert throttles > 0, 'back-pressure never engaged'
        total = senders * per_sender
        # Every copy archived exactly once: the receivers' archives hold
        # what they were delivered, with the ids they were given...
        for r in rx:
            bare = r.boundjid.bare
            want = expect[bare]
            pages, after = [], None
            while True:
                page = await query(r, rsm={'max': '250', **(
                    {'after': after} if after else {})})
                pages.extend(zip(page.ids, page.bodies))
                if page.complete:
                    break
                after = page.rsm('last')
            assert len(pages) == len(want), (len(pages), len(want))
            assert dict((b, i) for i, b in pages) == ids[bare]
            assert len(archived_rows(srv, r.boundjid.user)) == len(want)
        # ...and every sender's archive what it sent, once each.
        for c in tx:
            rows = await flushed_rows(srv, c, c.boundjid.user)
            assert len(rows) == per_sender, len(rows)
        assert sum(len(v) for v in expect.values()) == total
        srv.wait_for_log(r'mam: the archive writer is \d+ messages behind')
        srv.wait_for_log(r'mam: the archive writer caught up')
    finally:
        await clients.disconnect(*connected)


async def test_switched_off(server_factory):
    """mam.enabled: false: messages are delivered without a stanza-id,
    nothing is archived, and the account does not advertise the archive
    (what bench/compare runs, like the servers it is compared with)."""
    srv = server_factory(mam={'enabled': False})
    async with clients.connected(srv, 'alice/a', 'bob/b') as (a, b):
        info = await a['xep_0030'].get_info(jid='alice@localhost',
                                            timeout=5)
        feats = info['disco_info']['features']
        assert NS_MAM not in feats and NS_SID not in feats, feats
        bodies, got = await chat(a, b, 3)
        assert [stanza_ids(m) for m in got] == [[], [], []]
        page = await query(b)
        assert page.results == [] and page.complete
        assert archived_rows(srv, 'alice') == archived_rows(srv, 'bob') \
            == []
