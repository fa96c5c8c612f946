"""XEP-0054 vcard-temp: an account stores its vCard and anyone reads it at
the bare JID. Round trips are checked element by element (unicode,
escaped characters, attributes, foreign namespaces); also replacing and
clearing, the 64 KiB limit, the forbidden and unavailable cases, the disco
feature, persistence across a restart and removal with the account."""

import xml.etree.ElementTree as ET

import pytest
from slixmpp.exceptions import IqError

import clients
import rawstream
from rawstream import q, stanza_error

NS_VCARD = 'vcard-temp'
NS_DISCO_INFO = 'http://jabber.org/protocol/disco#info'
VCARD_MAX = 64 * 1024

RICH_VCARD = (
    "<vCard xmlns='vcard-temp'>"
    '<FN>\u00c5lice W\u00f8nderland \u2014 \u65e5\u672c\u8a9e \U0001f389'
    '</FN>'
    '<N><FAMILY>O&apos;Brien &amp; Sons</FAMILY>'
    '<GIVEN>&lt;Alice&gt;</GIVEN><MIDDLE/></N>'
    '<NICKNAME>"quoted" &amp; ]]&gt; tricky</NICKNAME>\n  '
    '<DESC>line one\nline two&#13;with CR\tand tab</DESC>'
    "<NOTE xml:lang='fr' kind='a&apos;b&#9;c&#10;d&quot;e'>note</NOTE>"
    "<X-EXT xmlns='urn:example:ext' xmlns:e='urn:example:attr' "
    "e:flag='1' foo='bar'><inner xmlns=''>plain</inner></X-EXT>"
    '<TEL><WORK/><VOICE/><NUMBER>+1 303 555 1212</NUMBER></TEL>'
    '</vCard>')


def tree(e):
    """Everything XML says about an element, for exact comparison."""
    return (e.tag, dict(e.attrib), e.text or '',
            [tree(c) + (c.tail or '',) for c in e])


def vcard_of(reply):
    """The <vCard/> of a result."""
    assert reply.get('type') == 'result', ET.tostring(reply)
    children = list(reply)
    assert len(children) == 1, ET.tostring(reply)
    assert children[0].tag == q(NS_VCARD, 'vCard'), ET.tostring(reply)
    return children[0]


def get(s, to=None):
    return s.iq('get', f"<vCard xmlns='{NS_VCARD}'/>", to=to)


def set_vcard(s, vcard, to=None):
    return s.iq('set', vcard, to=to)


def expect_result(reply):
    assert reply.get('type') == 'result', ET.tostring(reply)
    assert len(reply) == 0, ET.tostring(reply)


def expect_error(reply, condition):
    assert reply.get('type') == 'error', ET.tostring(reply)
    assert stanza_error(reply)[1] == [condition], ET.tostring(reply)


def photo_vcard(size):
    """A vCard whose serialized form is exactly size bytes."""
    head = ("<vCard xmlns='vcard-temp'><PHOTO><TYPE>image/png</TYPE>"
            '<BINVAL>')
    tail = '</BINVAL></PHOTO></vCard>'
    return head + 'A' * (size - len(head) - len(tail)) + tail


def test_round_trip_own_and_other(server):
    """What alice stores comes back exactly: to herself with and without
    'to', and to bob at her bare JID, from her bare JID."""
    expected = tree(ET.fromstring(RICH_VCARD))
    with rawstream.logged_in(server, 'alice') as a, \
            rawstream.logged_in(server, 'bob') as b:
        expect_result(set_vcard(a, RICH_VCARD))
        assert tree(vcard_of(get(a))) == expected
        assert tree(vcard_of(get(a, to='alice@localhost'))) == expected
        reply = get(b, to='alice@localhost')
        assert reply.get('from') == 'alice@localhost'
        assert tree(vcard_of(reply)) == expected
        # normalised: the server stores per account, not per spelling
        assert tree(vcard_of(get(b, to='ALICE@LocalHost'))) == expected


async def test_slixmpp_plugin(server):
    """A client library's own vCard code interoperates."""
    async with clients.connected(server, 'alice', 'bob') as (a, b):
        for c in (a, b):
            c.register_plugin('xep_0054')
        vcard = a['xep_0054'].make_vcard()
        vcard['FN'] = 'Alice \u00e9\u00e8 & <Co>'
        vcard['NICKNAME'] = 'ally'
        await a['xep_0054'].publish_vcard(vcard, timeout=10)
        reply = await b['xep_0054'].get_vcard('alice@localhost', timeout=10)
        assert reply['vcard_temp']['FN'] == 'Alice \u00e9\u00e8 & <Co>'
        nick = reply.xml.find(f'{q(NS_VCARD, "vCard")}/'
                              f'{q(NS_VCARD, "NICKNAME")}')
        assert nick is not None and nick.text == 'ally', reply
        own = await a['xep_0054'].get_vcard('alice@localhost', timeout=10)
        assert own['vcard_temp']['FN'] == 'Alice \u00e9\u00e8 & <Co>'


def test_none_stored(server):
    """Own: an empty vCard (§3.1). Someone else's, or a missing account's:
    the same <service-unavailable/> (§3.3, no harvesting)."""
    with rawstream.logged_in(server, 'carol') as c:
        for to in (None, 'carol@localhost'):
            vcard = vcard_of(get(c, to=to))
            assert len(vcard) == 0 and not (vcard.text or '').strip()
            assert vcard.attrib == {}
        expect_error(get(c, to='bob@localhost'), 'service-unavailable')
        expect_error(get(c, to='nobody@localhost'), 'service-unavailable')


def test_replace_and_clear(server):
    first = ("<vCard xmlns='vcard-temp'><FN>First</FN>"
             '<NICKNAME>one</NICKNAME></vCard>')
    second = "<vCard xmlns='vcard-temp'><FN>Second</FN></vCard>"
    with rawstream.logged_in(server, 'alice') as a, \
            rawstream.logged_in(server, 'bob') as b:
        expect_result(set_vcard(a, first))
        expect_result(set_vcard(a, second))
        assert tree(vcard_of(get(b, to='alice@localhost'))) == \
            tree(ET.fromstring(second))
        # an empty vCard clears it
        expect_result(set_vcard(a, "<vCard xmlns='vcard-temp'>\n</vCard>"))
        assert len(vcard_of(get(a))) == 0
        expect_error(get(b, to='alice@localhost'), 'service-unavailable')


def test_size_limit(server):
    """Up to 64 KiB serialized is stored; more is <not-acceptable/> and
    leaves the stored vCard alone."""
    largest = photo_vcard(VCARD_MAX)
    with rawstream.logged_in(server, 'alice') as a:
        expect_result(set_vcard(a, largest))
        assert tree(vcard_of(get(a))) == tree(ET.fromstring(largest))
        expect_error(set_vcard(a, photo_vcard(VCARD_MAX + 1)),
                     'not-acceptable')
        expect_error(set_vcard(a, photo_vcard(200 * 1024)),
                     'not-acceptable')
        assert tree(vcard_of(get(a))) == tree(ET.fromstring(largest))


def nested(depth):
    return ("<vCard xmlns='vcard-temp'>" + '<X>' * depth + 'deep'
            + '</X>' * depth + '</vCard>')


def many_attrs(count):
    attrs = ' '.join(f"a{i}='{i}'" for i in range(count))
    return f"<vCard xmlns='vcard-temp'><X {attrs}/></vCard>"


def test_stored_only_if_readable(server_factory):
    """Whatever is accepted must be served. Stored vCards are read back
    with limits of their own, so one the stream took but that would not
    read back (very deep, very many attributes) is refused up front, or
    else every later get would fail; modest ones go through."""
    srv = server_factory(limits={'max_depth': 256, 'max_attrs': 1024})
    with rawstream.logged_in(srv, 'alice') as a:
        for vcard, modest in ((nested(30), True), (nested(240), False),
                              (many_attrs(60), True),
                              (many_attrs(1000), False)):
            reply = set_vcard(a, vcard)
            if reply.get('type') == 'error':
                assert not modest, ET.tostring(reply)
                expect_error(reply, 'not-acceptable')
                continue
            expect_result(reply)
            assert tree(vcard_of(get(a))) == tree(ET.fromstring(vcard))


def test_forbidden_and_server(server):
    """§3.2: nobody sets someone else's vCard (nor the server's); the
    server itself has none."""
    mine = "<vCard xmlns='vcard-temp'><FN>Bob</FN></vCard>"
    evil = "<vCard xmlns='vcard-temp'><FN>Mallory</FN></vCard>"
    with rawstream.logged_in(server, 'alice') as a, \
            rawstream.logged_in(server, 'bob') as b:
        expect_result(set_vcard(b, mine))
        expect_error(set_vcard(a, evil, to='bob@localhost'), 'forbidden')
        expect_error(set_vcard(a, evil, to='carol@localhost'), 'forbidden')
        expect_error(set_vcard(a, evil, to='localhost'), 'forbidden')
        expect_error(get(a, to='localhost'), 'service-unavailable')
        assert tree(vcard_of(get(a, to='bob@localhost'))) == \
            tree(ET.fromstring(mine))
        expect_error(get(a, to='carol@localhost'), 'service-unavailable')


def test_disco_feature(server):
    with rawstream.logged_in(server, 'alice') as a:
        reply = a.iq('get', f"<query xmlns='{NS_DISCO_INFO}'/>",
                     to='localhost')
        features = {f.get('var') for f in
                    reply.iter(q(NS_DISCO_INFO, 'feature'))}
        assert NS_VCARD in features, ET.tostring(reply)


def test_persists_across_restart(server):
    with rawstream.logged_in(server, 'alice') as a:
        expect_result(set_vcard(a, RICH_VCARD))
    server.restart()
    with rawstream.logged_in(server, 'bob') as b:
        assert tree(vcard_of(get(b, to='alice@localhost'))) == \
            tree(ET.fromstring(RICH_VCARD))


def test_removed_with_account(server):
    """stanzactl user del takes the vCard along: a new account of the same
    name starts without one."""
    with rawstream.logged_in(server, 'alice') as a:
        expect_result(set_vcard(a, RICH_VCARD))
    server.ctl('user', 'del', 'alice@localhost')
    server.add_user('alice', 'second-life')
    with rawstream.logged_in(server, 'alice') as a:
        assert len(vcard_of(get(a))) == 0
    with rawstream.logged_in(server, 'bob') as b:
        expect_error(get(b, to='alice@localhost'), 'service-unavailable')


@pytest.mark.parametrize('iq_type', ['get', 'set'])
async def test_slixmpp_errors(server, iq_type):
    """Errors reach a library client as proper iq errors."""
    async with clients.connected(server, 'alice') as (a,):
        iq = a.make_iq(ito='localhost', itype=iq_type)
        iq.xml.append(ET.fromstring(f"<vCard xmlns='{NS_VCARD}'/>"))
        with pytest.raises(IqError) as info:
            await iq.send(timeout=10)
        want = 'forbidden' if iq_type == 'set' else 'service-unavailable'
        assert info.value.iq['error']['condition'] == want
