"""IQs handled by the server itself (RFC 6120 §8.2.3): XEP-0030 service
discovery, XEP-0199 ping, XEP-0092 software version, XEP-0202 entity time,
errors for unknown payloads and malformed iqs, and iqs routed to clients."""

import datetime
import re
import xml.etree.ElementTree as ET

import pytest
from slixmpp.exceptions import IqError

import clients
import rawstream
from rawstream import NS_CLIENT, q, stanza_error

NS_DISCO_INFO = 'http://jabber.org/protocol/disco#info'
NS_DISCO_ITEMS = 'http://jabber.org/protocol/disco#items'
NS_PING = 'urn:xmpp:ping'
NS_VERSION = 'jabber:iq:version'
NS_TIME = 'urn:xmpp:time'
SERVER_FEATURES = {NS_DISCO_INFO, NS_DISCO_ITEMS, NS_PING, NS_VERSION,
                   NS_TIME}


async def server_iq(client, payload, to='localhost', iq_type='get'):
    """Sends an iq with the XML `payload` to `to`; returns the result's
    XML. A type='error' reply raises IqError."""
    iq = client.make_iq_get(ito=to)
    iq['type'] = iq_type
    iq.xml.append(ET.fromstring(payload))
    reply = await iq.send(timeout=10)
    assert reply['type'] == 'result'
    assert reply['from'] == to
    return reply.xml


async def test_disco_info(server):
    async with clients.connected(server, 'alice') as (a,):
        reply = await server_iq(a, f"<query xmlns='{NS_DISCO_INFO}'/>")
        query = reply.find(q(NS_DISCO_INFO, 'query'))
        identities = {(i.get('category'), i.get('type'))
                      for i in query.findall(q(NS_DISCO_INFO, 'identity'))}
        assert ('server', 'im') in identities
        features = {f.get('var')
                    for f in query.findall(q(NS_DISCO_INFO, 'feature'))}
        assert SERVER_FEATURES <= features, SERVER_FEATURES - features


async def test_disco_items(server):
    async with clients.connected(server, 'alice') as (a,):
        reply = await server_iq(a, f"<query xmlns='{NS_DISCO_ITEMS}'/>")
        query = reply.find(q(NS_DISCO_ITEMS, 'query'))
        assert query is not None, ET.tostring(reply)
        for item in query:
            assert item.tag == q(NS_DISCO_ITEMS, 'item')
            assert item.get('jid')


async def test_ping(server):
    async with clients.connected(server, 'alice') as (a,):
        reply = await server_iq(a, f"<ping xmlns='{NS_PING}'/>")
        assert len(reply) == 0, ET.tostring(reply)


async def test_version(server):
    async with clients.connected(server, 'alice') as (a,):
        reply = await server_iq(a, f"<query xmlns='{NS_VERSION}'/>")
        query = reply.find(q(NS_VERSION, 'query'))
        assert query.findtext(q(NS_VERSION, 'name')) == 'stanzad'
        assert query.findtext(q(NS_VERSION, 'version')) == '0.1.0'


async def test_time(server):
    async with clients.connected(server, 'alice') as (a,):
        reply = await server_iq(a, f"<time xmlns='{NS_TIME}'/>")
        now = datetime.datetime.now(datetime.timezone.utc)
        elem = reply.find(q(NS_TIME, 'time'))
        tzo = elem.findtext(q(NS_TIME, 'tzo'))
        utc = elem.findtext(q(NS_TIME, 'utc'))
        assert re.fullmatch(r'Z|[+-]\d\d:\d\d', tzo), tzo
        assert re.fullmatch(
            r'\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z', utc), utc
        stamp = datetime.datetime.fromisoformat(utc.replace('Z', '+00:00'))
        assert abs((stamp - now).total_seconds()) < 60


async def test_unknown_namespace(server):
    async with clients.connected(server, 'alice') as (a,):
        with pytest.raises(IqError) as info:
            await server_iq(a, "<query xmlns='urn:example:nothing'/>")
        error = info.value.iq['error']
        assert error['type'] == 'cancel'
        assert error['condition'] == 'service-unavailable'
        # and the stream is still fine
        await server_iq(a, f"<ping xmlns='{NS_PING}'/>")


def test_iq_without_id(server):
    with rawstream.logged_in(server, 'alice') as s:
        s.send(f"<iq type='get' to='localhost'><ping xmlns='{NS_PING}'/>"
               '</iq>')
        reply = s.wait_for(lambda e: e.tag == q(NS_CLIENT, 'iq'))
        assert reply.get('type') == 'error'
        assert stanza_error(reply)[1] == ['bad-request']
        assert s.iq('get', f"<ping xmlns='{NS_PING}'/>",
                    to='localhost').get('type') == 'result'


def test_iq_bogus_type(server):
    with rawstream.logged_in(server, 'alice') as s:
        reply = s.iq('bogus', f"<ping xmlns='{NS_PING}'/>", to='localhost',
                     iq_id='weird1')
        assert reply.get('type') == 'error'
        assert stanza_error(reply)[1] == ['bad-request']
        assert s.iq('get', f"<ping xmlns='{NS_PING}'/>",
                    to='localhost').get('type') == 'result'


def test_result_to_server_gets_no_reply(server):
    """RFC 6120 §8.2.3: iqs of type result or error are never answered."""
    with rawstream.logged_in(server, 'alice') as s:
        s.send("<iq type='result' id='unsolicited' to='localhost'/>")
        s.send("<iq type='error' id='unsolicited2' to='localhost'>"
               "<error type='cancel'><item-not-found xmlns="
               "'urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>")
        assert s.iq('get', f"<ping xmlns='{NS_PING}'/>",
                    to='localhost').get('type') == 'result'
        assert [e.get('id') for e in s.skipped] == []


async def test_disco_info_routed_to_client(server):
    """An iq to another user's full JID goes to that client, which
    (slixmpp) answers disco#info itself."""
    async with clients.connected(server, 'alice/a', 'bob/b') as (a, b):
        reply = await server_iq(a, f"<query xmlns='{NS_DISCO_INFO}'/>",
                                to=b.boundjid.full)
        query = reply.find(q(NS_DISCO_INFO, 'query'))
        features = {f.get('var')
                    for f in query.findall(q(NS_DISCO_INFO, 'feature'))}
        assert NS_DISCO_INFO in features
        # slixmpp's identity, not the server's
        identities = {(i.get('category'), i.get('type'))
                      for i in query.findall(q(NS_DISCO_INFO, 'identity'))}
        assert ('server', 'im') not in identities
