"""XEP-0049 private XML storage: elements stored under their namespace
come back exactly, several namespaces per set (one transaction), several
elements per namespace; refused namespaces, requests for another account,
the size and namespace-count bounds, persistence across a restart and
removal with the account."""

import xml.etree.ElementTree as ET

import pytest

import clients
import rawstream
from rawstream import q, stanza_error

NS_PRIVATE = 'jabber:iq:private'
NS_DISCO_INFO = 'http://jabber.org/protocol/disco#info'
PRIVATE_MAX = 64 * 1024
PRIVATE_MAX_KEYS = 64

EXODUS = ("<exodus xmlns='exodus:prefs'>"
          '<defaultnick>H\u00e4mlet &amp; &lt;Ophelia&gt; \u2014 \u4e39\u9ea6'
          ' \U0001f480</defaultnick>'
          "<opt name='a&apos;b&#9;c&#10;d' xml:lang='en'>line1\nline2&#13;"
          '</opt>\n  '
          "<ext xmlns='urn:example:other' xmlns:e='urn:example:attr' "
          "e:flag='yes'><plain xmlns=''>x</plain></ext>"
          '</exodus>')
BOOKMARKS = ("<storage xmlns='storage:bookmarks'>"
             "<conference jid='room@conference.localhost' autojoin='true' "
             "name='The Room'><nick>alice</nick></conference></storage>")


def tree(e):
    """Everything XML says about an element, for exact comparison."""
    return (e.tag, dict(e.attrib), e.text or '',
            [tree(c) + (c.tail or '',) for c in e])


def query(*elements):
    return f"<query xmlns='{NS_PRIVATE}'>{''.join(elements)}</query>"


def store(s, *elements, to=None):
    return s.iq('set', query(*elements), to=to)


def fetch(s, element, to=None):
    return s.iq('get', query(element), to=to)


def stored(reply):
    """The elements of a get result's <query/>."""
    assert reply.get('type') == 'result', ET.tostring(reply)
    assert len(reply) == 1, ET.tostring(reply)
    assert reply[0].tag == q(NS_PRIVATE, 'query'), ET.tostring(reply)
    return [tree(e) for e in reply[0]]


def expected(*elements):
    return [tree(ET.fromstring(e)) for e in elements]


def empty(ns, name):
    return (q(ns, name), {}, '', [])


def expect_result(reply):
    assert reply.get('type') == 'result', ET.tostring(reply)
    assert len(reply) == 0, ET.tostring(reply)


def expect_error(reply, condition):
    assert reply.get('type') == 'error', ET.tostring(reply)
    assert stanza_error(reply)[1] == [condition], ET.tostring(reply)


def test_round_trip(server):
    with rawstream.logged_in(server, 'alice') as a:
        assert stored(fetch(a, "<exodus xmlns='exodus:prefs'/>")) == \
            [empty('exodus:prefs', 'exodus')]
        expect_result(store(a, EXODUS))
        for to in (None, 'alice@localhost'):
            assert stored(fetch(a, "<exodus xmlns='exodus:prefs'/>",
                                to=to)) == expected(EXODUS)


def test_several_namespaces_and_elements(server):
    """One set with two namespaces stores both; elements sharing a
    namespace are kept together, in order (§2.3: a set MAY hold
    several); a namespace never stored gives the requested element."""
    first = "<item xmlns='urn:example:list' n='1'/>"
    second = "<item xmlns='urn:example:list' n='2'>two</item>"
    with rawstream.logged_in(server, 'alice') as a:
        expect_result(store(a, first, EXODUS, second, BOOKMARKS))
        assert stored(fetch(a, "<exodus xmlns='exodus:prefs'/>")) == \
            expected(EXODUS)
        assert stored(fetch(a, "<storage xmlns='storage:bookmarks'/>")) \
            == expected(BOOKMARKS)
        assert stored(fetch(a, "<item xmlns='urn:example:list'/>")) == \
            expected(first, second)
        assert stored(fetch(a, "<other xmlns='urn:example:none'/>")) == \
            [empty('urn:example:none', 'other')]


def test_replace_and_delete(server):
    """A set replaces what its namespaces held and leaves the others; an
    empty element deletes its namespace."""
    newer = ("<exodus xmlns='exodus:prefs'><defaultnick>Yorick"
             '</defaultnick></exodus>')
    with rawstream.logged_in(server, 'alice') as a:
        expect_result(store(a, EXODUS, BOOKMARKS))
        expect_result(store(a, newer))
        assert stored(fetch(a, "<exodus xmlns='exodus:prefs'/>")) == \
            expected(newer)
        assert stored(fetch(a, "<storage xmlns='storage:bookmarks'/>")) \
            == expected(BOOKMARKS)
        expect_result(store(a, "<exodus xmlns='exodus:prefs'/>"))
        assert stored(fetch(a, "<exodus xmlns='exodus:prefs'/>")) == \
            [empty('exodus:prefs', 'exodus')]


@pytest.mark.parametrize('element', [
    "<x xmlns='jabber:client'/>",
    "<x xmlns='jabber:server'/>",
    '<x/>',  # inherits jabber:iq:private
    "<query xmlns='jabber:iq:private'/>",
    "<x xmlns=''/>",
])
def test_refused_namespaces(server, element):
    """Reserved namespaces are <not-acceptable/> (§2.3), for get and set,
    and a set holding one stores none of its other elements."""
    with rawstream.logged_in(server, 'alice') as a:
        expect_error(store(a, element), 'not-acceptable')
        expect_error(fetch(a, element), 'not-acceptable')
        expect_error(store(a, BOOKMARKS, element), 'not-acceptable')
        assert stored(fetch(a, "<storage xmlns='storage:bookmarks'/>")) \
            == [empty('storage:bookmarks', 'storage')]


def test_bad_queries(server):
    """No element: <not-acceptable/> (§2.3 MUST); a get for two
    namespaces is a <bad-request/> (clients MUST NOT)."""
    with rawstream.logged_in(server, 'alice') as a:
        expect_error(a.iq('set', query()), 'not-acceptable')
        expect_error(a.iq('get', query()), 'not-acceptable')
        expect_error(a.iq('get', query("<exodus xmlns='exodus:prefs'/>",
                                       "<storage xmlns='storage:bookmarks'"
                                       '/>')), 'bad-request')


def test_forbidden(server):
    """Only the account itself, at its bare JID or with no 'to'."""
    with rawstream.logged_in(server, 'alice') as a, \
            rawstream.logged_in(server, 'bob') as b:
        expect_result(store(b, BOOKMARKS))
        evil = ("<storage xmlns='storage:bookmarks'><conference "
                "jid='evil@conference.localhost'/></storage>")
        for to in ('bob@localhost', 'localhost'):
            expect_error(store(a, evil, to=to), 'forbidden')
            expect_error(fetch(a, "<storage xmlns='storage:bookmarks'/>",
                               to=to), 'forbidden')
        # An account that does not exist: RFC 6121 §8.5.1.
        expect_error(store(a, evil, to='nobody@localhost'),
                     'service-unavailable')
        expect_error(fetch(a, "<storage xmlns='storage:bookmarks'/>",
                           to='nobody@localhost'), 'service-unavailable')
        assert stored(fetch(b, "<storage xmlns='storage:bookmarks'/>")) \
            == expected(BOOKMARKS)
        assert stored(fetch(a, "<storage xmlns='storage:bookmarks'/>")) \
            == [empty('storage:bookmarks', 'storage')]


def big(ns, size):
    """An element in ns that makes a stored value of exactly size bytes
    (the value is the element inside <query xmlns='jabber:iq:private'>)."""
    head = f"<big xmlns='{ns}'>"
    tail = '</big>'
    wrapper = len(query(''))
    return head + 'B' * (size - wrapper - len(head) - len(tail)) + tail


def test_size_limit_is_atomic(server):
    """64 KiB per namespace; a set with one element too large stores
    nothing at all, though its other namespace was fine."""
    with rawstream.logged_in(server, 'alice') as a:
        largest = big('urn:example:big', PRIVATE_MAX)
        expect_result(store(a, largest))
        assert stored(fetch(a, "<big xmlns='urn:example:big'/>")) == \
            expected(largest)
        expect_error(store(a, BOOKMARKS,
                           big('urn:example:big', PRIVATE_MAX + 1)),
                     'not-acceptable')
        assert stored(fetch(a, "<storage xmlns='storage:bookmarks'/>")) \
            == [empty('storage:bookmarks', 'storage')]
        assert stored(fetch(a, "<big xmlns='urn:example:big'/>")) == \
            expected(largest)


def test_namespace_quota(server):
    """At most 64 namespaces per account: the set that would pass it is a
    <policy-violation/> and stores nothing; deleting one makes room."""
    def el(i):
        return f"<data xmlns='urn:example:ns{i}'>{i}</data>"
    with rawstream.logged_in(server, 'alice') as a:
        for start in range(0, PRIVATE_MAX_KEYS, 16):
            expect_result(store(a, *(el(i) for i in range(start,
                                                          start + 16))))
        # replacing existing namespaces is fine at the limit
        expect_result(store(a, el(0), el(1)))
        expect_error(store(a, el(1), el(PRIVATE_MAX_KEYS)),
                     'policy-violation')
        assert stored(fetch(a, f"<data xmlns='urn:example:ns"
                               f"{PRIVATE_MAX_KEYS}'/>")) == \
            [empty(f'urn:example:ns{PRIVATE_MAX_KEYS}', 'data')]
        expect_result(store(a, "<data xmlns='urn:example:ns5'/>"))
        expect_result(store(a, el(PRIVATE_MAX_KEYS)))
        assert stored(fetch(a, f"<data xmlns='urn:example:ns"
                               f"{PRIVATE_MAX_KEYS}'/>")) == \
            expected(el(PRIVATE_MAX_KEYS))


async def test_slixmpp_client(server):
    """A library client's iqs (no 'to'), and the disco feature."""
    async with clients.connected(server, 'alice') as (a,):
        iq = a.make_iq_set()
        iq.xml.append(ET.fromstring(query(BOOKMARKS)))
        await iq.send(timeout=10)
        iq = a.make_iq_get()
        iq.xml.append(ET.fromstring(
            query("<storage xmlns='storage:bookmarks'/>")))
        reply = await iq.send(timeout=10)
        assert stored(reply.xml) == expected(BOOKMARKS)
        info = await a['xep_0030'].get_info(jid='localhost', timeout=10)
        assert NS_PRIVATE in info['disco_info']['features']


def test_persists_across_restart(server):
    with rawstream.logged_in(server, 'alice') as a:
        expect_result(store(a, EXODUS, BOOKMARKS))
    server.restart()
    with rawstream.logged_in(server, 'alice') as a:
        assert stored(fetch(a, "<exodus xmlns='exodus:prefs'/>")) == \
            expected(EXODUS)
        assert stored(fetch(a, "<storage xmlns='storage:bookmarks'/>")) \
            == expected(BOOKMARKS)


def test_removed_with_account(server):
    with rawstream.logged_in(server, 'alice') as a:
        expect_result(store(a, EXODUS))
    server.ctl('user', 'del', 'alice@localhost')
    server.add_user('alice', 'second-life')
    with rawstream.logged_in(server, 'alice') as a:
        assert stored(fetch(a, "<exodus xmlns='exodus:prefs'/>")) == \
            [empty('exodus:prefs', 'exodus')]
