"""XEP-0115 for the server: the stream features carry a verification
string that is the hash of the server's actual disco#info (§5.1), and
disco#info for the node NODE#VER answers like the server itself (§6.2)."""

import base64
import hashlib

import pytest

import rawstream
from rawstream import q

NS_CAPS = 'http://jabber.org/protocol/caps'
NS_INFO = 'http://jabber.org/protocol/disco#info'


def ver_of(query):
    """XEP-0115 §5.1 over a disco#info <query/> (no extended forms)."""
    ids = sorted('{}/{}/{}/{}'.format(
        i.get('category'), i.get('type'),
        i.get('{http://www.w3.org/XML/1998/namespace}lang', ''),
        i.get('name', '')) for i in query.findall(q(NS_INFO, 'identity')))
    feats = sorted(f.get('var') for f in query.findall(q(NS_INFO, 'feature')))
    s = ''.join(x + '<' for x in ids + feats)
    return base64.b64encode(hashlib.sha1(s.encode()).digest()).decode()


def caps_of(features):
    c = features.find(q(NS_CAPS, 'c'))
    assert c is not None, 'no caps in the stream features'
    assert c.get('hash') == 'sha-1'
    return c.get('node'), c.get('ver')


@pytest.mark.parametrize('registration', [False, True])
def test_caps_ver_matches_disco_info(server_factory, registration):
    """Also with a feature that the config switches on (XEP-0077's):
    the hash and disco#info must list the same features."""
    server = server_factory(registration=registration)
    stream = rawstream.RawStream(server.c2s_port)
    with stream:
        node, ver = caps_of(stream.secure())
        stream.authenticate('alice', server.passwords['alice'])
        stream.jid = stream.bind()
        info = stream.iq('get', f"<query xmlns='{NS_INFO}'/>",
                         to='localhost')
        assert info.get('type') == 'result'
        query = info.find(q(NS_INFO, 'query'))
        assert ver == ver_of(query)
        feats = [f.get('var') for f in query.findall(q(NS_INFO, 'feature'))]
        assert ('jabber:iq:register' in feats) == registration

        by_node = stream.iq('get', f"<query xmlns='{NS_INFO}' "
                            f"node='{node}#{ver}'/>", to='localhost')
        assert by_node.get('type') == 'result'
        query = by_node.find(q(NS_INFO, 'query'))
        assert query.get('node') == f'{node}#{ver}'
        assert ver_of(query) == ver

        wrong = stream.iq('get', f"<query xmlns='{NS_INFO}' "
                          f"node='{node}#AAAA'/>", to='localhost')
        assert wrong.get('type') == 'error'
        assert rawstream.stanza_error(wrong) == ('cancel', ['item-not-found'])


def test_caps_not_offered_before_tls(server):
    stream = rawstream.RawStream(server.c2s_port)
    with stream:
        stream.open()
        assert stream.features().find(q(NS_CAPS, 'c')) is None
