"""Roster versioning with incremental pushes (RFC 6121 §2.6.3, XEP-0237).

A client that asks for the roster with a version it got earlier receives an
empty result and then exactly one push per item changed or removed since,
in the order of the changes, each with its own ver, the last one with the
current ver. The current ver gets an empty result and nothing else; a ver
the server never gave gets the full roster. The history is stored, so it
survives a restart. Raw streams, so that the order of everything the server
sends can be checked.
"""

import xml.etree.ElementTree as ET

from rawstream import NS_CLIENT, RawStream, logged_in, q

NS_ROSTER = 'jabber:iq:roster'
NS_PING = 'urn:xmpp:ping'
NS_ROSTERVER = 'urn:xmpp:features:rosterver'


def roster_get(stream, ver=None):
    """Sends a roster get (ver None: no ver attribute) and returns the
    reply and every element the server sent after it, up to the answer of
    a ping sent once the reply arrived. The server sends the interim
    pushes right behind the reply, so they all come before that answer."""
    attr = '' if ver is None else f" ver='{ver}'"
    reply = stream.iq('get', f"<query xmlns='{NS_ROSTER}'{attr}/>")
    assert reply.get('type') == 'result', ET.tostring(reply)
    stream.send(f"<iq type='get' id='fence' to='localhost'>"
                f"<ping xmlns='{NS_PING}'/></iq>")
    after = []
    while True:
        elem = stream.read_element()
        if elem.tag == q(NS_CLIENT, 'iq') and elem.get('id') == 'fence':
            return reply, after
        after.append(elem)
        if elem.tag == q(NS_CLIENT, 'iq') and elem.get('type') == 'set':
            stream.send(f"<iq type='result' id='{elem.get('id')}'/>")


def pushes(elements):
    """[(ver, jid, subscription, name)] of the roster pushes among
    elements; any other element fails the test."""
    out = []
    for e in elements:
        query = e.find(q(NS_ROSTER, 'query'))
        assert (e.tag == q(NS_CLIENT, 'iq') and e.get('type') == 'set'
                and query is not None), ET.tostring(e)
        # RFC 6121 §2.1.6: from the account's bare JID (or none).
        owner = e.get('to', '').split('/', 1)[0]
        assert e.get('from') in (None, owner), ET.tostring(e)
        items = query.findall(q(NS_ROSTER, 'item'))
        assert len(items) == 1, ET.tostring(e)
        it = items[0]
        out.append((query.get('ver'), it.get('jid'), it.get('subscription'),
                    it.get('name')))
    return out


def items_of(reply):
    query = reply.find(q(NS_ROSTER, 'query'))
    assert query is not None, f'no roster in {ET.tostring(reply)!r}'
    return query, {it.get('jid'): it.get('name')
                   for it in query.findall(q(NS_ROSTER, 'item'))}


def roster_set(stream, jid, name=None, remove=False):
    """Changes the roster and waits for the result; returns the ver of the
    push this resource got for it."""
    attrs = f"jid='{jid}'"
    if name is not None:
        attrs += f" name='{name}'"
    if remove:
        attrs += " subscription='remove'"
    stream.send(f"<iq type='set' id='set-{jid}'>"
                f"<query xmlns='{NS_ROSTER}'><item {attrs}/></query></iq>")
    ver = None
    while True:
        elem = stream.read_element()
        if elem.get('id') == f'set-{jid}':
            assert elem.get('type') == 'result', ET.tostring(elem)
            assert ver is not None, 'result before the push'
            return ver
        (ver, pjid, _, _), = pushes([elem])
        assert pjid == jid
        stream.send(f"<iq type='result' id='{elem.get('id')}'/>")


def test_feature_and_bootstrap(server):
    """The feature is announced after SASL (XEP-0237 §2.1); ver='' asks
    for the full roster with a ver to start from."""
    with RawStream(server.c2s_port) as s:
        s.secure()
        feats = s.authenticate('carol', server.passwords['carol'])
        assert feats.find(q(NS_ROSTERVER, 'ver')) is not None, \
            ET.tostring(feats)
        s.bind('feat')
        reply, after = roster_get(s, '')
        assert after == []
        query, items = items_of(reply)
        assert query.get('ver') is not None and items == {}


def test_incremental_pushes(server):
    with logged_in(server, 'alice', 'editor') as ed:
        roster_get(ed)  # interested: gets pushes of its own changes
        roster_set(ed, 'old1@localhost', 'Old One')
        roster_set(ed, 'old2@localhost', 'Old Two')

        with logged_in(server, 'alice', 'phone') as ph:
            reply, after = roster_get(ph, '')
            assert after == []
            query, items = items_of(reply)
            v1 = query.get('ver')
            assert items == {'old1@localhost': 'Old One',
                             'old2@localhost': 'Old Two'}

        vers = [roster_set(ed, 'new1@localhost', 'New One'),
                roster_set(ed, 'new2@localhost'),
                roster_set(ed, 'old1@localhost', 'Renamed'),
                roster_set(ed, 'old2@localhost', remove=True),
                # changed twice: one push, where the last change was
                roster_set(ed, 'new1@localhost', 'New One Again')]
        assert len(set(vers)) == 5
        current = vers[-1]

    def check(stream):
        # v1: an empty result, then the changes in the order they were
        # made; new1 appears once, with its latest state.
        reply, after = roster_get(stream, v1)
        assert len(reply) == 0, ET.tostring(reply)
        got = pushes(after)
        assert [(j, s, n) for _, j, s, n in got] == [
            ('new2@localhost', 'none', None),
            ('old1@localhost', 'none', 'Renamed'),
            ('old2@localhost', 'remove', None),
            ('new1@localhost', 'none', 'New One Again'),
        ]
        assert [v for v, _, _, _ in got] == [vers[1], vers[2], vers[3],
                                             current]

        # An intermediate version: only what came after it.
        reply, after = roster_get(stream, vers[2])
        assert len(reply) == 0
        assert [(v, j) for v, j, _, _ in pushes(after)] == [
            (vers[3], 'old2@localhost'), (current, 'new1@localhost')]

        # The current version: empty result, nothing after it.
        reply, after = roster_get(stream, current)
        assert len(reply) == 0 and after == [], ET.tostring(reply)

        # Versions the server never gave: the full roster with the
        # current ver, no pushes.
        full = {'old1@localhost': 'Renamed', 'new1@localhost':
                'New One Again', 'new2@localhost': None}
        for bad in ('', 'garbage', '007', '-1', str(int(current) + 1),
                    '99999999999999999999999'):
            reply, after = roster_get(stream, bad)
            assert after == [], bad
            query, items = items_of(reply)
            assert query.get('ver') == current and items == full, bad

        # No ver attribute: a client without versioning gets the full
        # roster without ver (RFC 3921 behaviour).
        reply, after = roster_get(stream)
        query, items = items_of(reply)
        assert after == [] and items == full
        assert query.get('ver') is None

    with logged_in(server, 'alice', 'phone') as ph:
        check(ph)
    server.restart()
    with logged_in(server, 'alice', 'phone') as ph:
        check(ph)


def test_live_pushes_continue_after_incremental_get(server):
    """After an incremental get the resource is interested: later changes
    are pushed to it live, with the next version."""
    with logged_in(server, 'bob', 'a') as a, logged_in(server, 'bob', 'b') as b:
        reply, _ = roster_get(a, '')
        v1 = items_of(reply)[0].get('ver')
        roster_get(b)
        v2 = roster_set(b, 'x@localhost', 'X')
        reply, after = roster_get(a, v1)
        # a was interested already: it got the live push before, and the
        # interim one now.
        assert [v for v, _, _, _ in pushes(after)] == [v2]
        v3 = roster_set(b, 'x@localhost', remove=True)
        elem = a.read_element()
        assert pushes([elem]) == [(v3, 'x@localhost', 'remove', None)]
        assert int(v3) > int(v2)


def test_readd_after_remove(server):
    """A contact removed and added again is pushed once, as it is now."""
    with logged_in(server, 'carol', 'a') as a:
        reply, _ = roster_get(a, '')
        v1 = items_of(reply)[0].get('ver')
        roster_set(a, 'y@localhost', 'Y')
        roster_set(a, 'y@localhost', remove=True)
        v = roster_set(a, 'y@localhost', 'Y2')
        reply, after = roster_get(a, v1)
        assert pushes(after) == [(v, 'y@localhost', 'none', 'Y2')]
