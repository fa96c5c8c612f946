"""The pubsub service on a subdomain (XEP-0060), served inside the server:
found through the host's disco#items; nodes created by accounts, which
own them; explicit subscriptions and notifications to subscribers;
affiliations (owner, publisher, none, outcast); delete; off unless
configured; on one shard and on two."""

import pytest

import clients
from pubsub_util import (NS_DATA, NS_INFO, NS_ITEMS, NS_OWNER, NS_PUBSUB,
                         error_of, event_items, form_values, form_xml,
                         item_ids, items, iq, next_event, ok, pep_client,
                         publish, q)

SERVICE = 'pubsub.localhost'


def note(text):
    return f"<note xmlns='urn:example:news'>{text}</note>"


def sub_xml(op, node, jid):
    return (f"<pubsub xmlns='{NS_PUBSUB}'><{op} node='{node}' jid='{jid}'/>"
            '</pubsub>')


def affs_xml(node, affs):
    return (f"<pubsub xmlns='{NS_OWNER}'><affiliations node='{node}'>" +
            ''.join(f"<affiliation jid='{j}' affiliation='{a}'/>"
                    for j, a in affs) + '</affiliations></pubsub>')


async def test_off_by_default(server):
    async with clients.connected(server, 'alice/a') as (alice,):
        reply = ok(await iq(alice, 'get', f"<query xmlns='{NS_ITEMS}'/>",
                            to='localhost'))
        # only the group chat service, on by default
        assert [i.get('jid') for i in reply.iter(q(NS_ITEMS, 'item'))] == [
            'conference.localhost']
        reply = await iq(alice, 'get', f"<query xmlns='{NS_INFO}'/>",
                         to=SERVICE)
        assert error_of(reply)[1] == 'remote-server-not-found'


@pytest.mark.parametrize('shards', [1, 2])
async def test_service(server_factory, shards):
    server = server_factory(shards=shards, pubsub={'subdomain': 'pubsub'})
    alice = await pep_client(server, 'alice/a', caps=False)
    bob = await pep_client(server, 'bob/b', caps=False)
    carol = await pep_client(server, 'carol/c', caps=False)
    try:
        reply = ok(await iq(alice, 'get', f"<query xmlns='{NS_ITEMS}'/>",
                            to='localhost'))
        assert SERVICE in [i.get('jid')
                           for i in reply.iter(q(NS_ITEMS, 'item'))]
        info = ok(await iq(alice, 'get', f"<query xmlns='{NS_INFO}'/>",
                           to=SERVICE))
        assert [(i.get('category'), i.get('type'))
                for i in info.iter(q(NS_INFO, 'identity'))] == [
            ('pubsub', 'service')]
        feats = {f.get('var') for f in info.iter(q(NS_INFO, 'feature'))}
        assert NS_PUBSUB + '#subscribe' in feats

        # alice creates and owns 'news'; an instant node gets a name.
        ok(await iq(alice, 'set', f"<pubsub xmlns='{NS_PUBSUB}'><create "
                    "node='news'/></pubsub>", to=SERVICE))
        made = ok(await iq(alice, 'set', f"<pubsub xmlns='{NS_PUBSUB}'>"
                           "<create/></pubsub>", to=SERVICE))
        instant = made.find(f'.//{q(NS_PUBSUB, "create")}').get('node')
        assert instant
        assert error_of(await iq(bob, 'set', f"<pubsub xmlns='{NS_PUBSUB}'>"
                                 "<create node='news'/></pubsub>",
                                 to=SERVICE))[1] == 'conflict'
        listed = ok(await iq(bob, 'get', f"<query xmlns='{NS_ITEMS}'/>",
                             to=SERVICE))
        assert sorted(i.get('node') for i in listed.iter(
            q(NS_ITEMS, 'item'))) == sorted(['news', instant])

        # bob subscribes (his full JID) and gets what alice publishes.
        bob_full = str(bob.boundjid)
        sub = ok(await iq(bob, 'set', sub_xml('subscribe', 'news',
                                              bob_full), to=SERVICE))
        s = sub.find(f'.//{q(NS_PUBSUB, "subscription")}')
        assert (s.get('node'), s.get('jid'), s.get('subscription')) == (
            'news', bob_full, 'subscribed')
        assert error_of(await iq(bob, 'set', sub_xml(
            'subscribe', 'news', 'alice@localhost'), to=SERVICE)) == (
            'modify', 'bad-request', 'invalid-jid')
        # no jid at all (an attribute of another case is not one)
        assert error_of(await iq(bob, 'set', f"<pubsub xmlns='{NS_PUBSUB}'>"
                                 "<subscribe node='news' jId='bob@localhost'/>"
                                 "</pubsub>", to=SERVICE)) == (
            'modify', 'bad-request', 'jid-required')
        ok(await publish(alice, 'news', note('first'), 'n1', to=SERVICE))
        frm, _, ev = await next_event(bob)
        assert frm == SERVICE
        node, got, _ = event_items(ev)
        assert (node, [i for i, _ in got]) == ('news', ['n1'])
        assert got[0][1].text == 'first'
        assert item_ids(await items(carol, SERVICE, 'news')) == ['n1']
        subs = ok(await iq(bob, 'get', f"<pubsub xmlns='{NS_PUBSUB}'>"
                           "<subscriptions/></pubsub>", to=SERVICE))
        assert [(s.get('node'), s.get('jid')) for s in subs.iter(
            q(NS_PUBSUB, 'subscription'))] == [('news', bob_full)]

        # Only owners and publishers publish.
        assert error_of(await publish(bob, 'news', note('x'), to=SERVICE)
                        )[1] == 'forbidden'
        ok(await iq(alice, 'set', affs_xml('news', [
            ('bob@localhost', 'publisher'),
            ('carol@localhost', 'outcast')]), to=SERVICE))
        ok(await publish(bob, 'news', note('by bob'), 'n2', to=SERVICE))
        node, got, _ = event_items((await next_event(bob))[2])
        assert [i for i, _ in got] == ['n2']
        got = ok(await iq(alice, 'get', affs_xml('news', []), to=SERVICE))
        assert {(a.get('jid'), a.get('affiliation')) for a in got.iter(
            q(NS_OWNER, 'affiliation'))} == {
            ('alice@localhost', 'owner'), ('bob@localhost', 'publisher'),
            ('carol@localhost', 'outcast')}
        own = ok(await iq(bob, 'get', f"<pubsub xmlns='{NS_PUBSUB}'>"
                          "<affiliations/></pubsub>", to=SERVICE))
        assert [(a.get('node'), a.get('affiliation')) for a in own.iter(
            q(NS_PUBSUB, 'affiliation'))] == [('news', 'publisher')]
        # Outcasts may neither read nor subscribe; publishers do not
        # configure.
        assert error_of(await items(carol, SERVICE, 'news'))[1] == (
            'forbidden')
        assert error_of(await iq(carol, 'set', sub_xml(
            'subscribe', 'news', str(carol.boundjid)), to=SERVICE)
        )[1] == 'forbidden'
        assert error_of(await iq(bob, 'get', f"<pubsub xmlns='{NS_OWNER}'>"
                                 "<configure node='news'/></pubsub>",
                                 to=SERVICE))[1] == 'forbidden'

        # whitelist: the owner configures it; a non-member is refused.
        ok(await iq(alice, 'set', f"<pubsub xmlns='{NS_OWNER}'><configure "
                    "node='news'>" + form_xml(
                        NS_PUBSUB + '#node_config',
                        {'pubsub#access_model': 'whitelist'}) +
                    '</configure></pubsub>', to=SERVICE))
        x = ok(await iq(alice, 'get', f"<pubsub xmlns='{NS_OWNER}'>"
                        "<configure node='news'/></pubsub>", to=SERVICE)
               ).find(f'.//{q(NS_DATA, "x")}')
        assert form_values(x)['pubsub#access_model'] == ['whitelist']
        ok(await iq(alice, 'set', affs_xml('news', [
            ('carol@localhost', 'none')]), to=SERVICE))
        assert error_of(await items(carol, SERVICE, 'news')) == (
            'cancel', 'not-allowed', 'closed-node')
        ok(await items(bob, SERVICE, 'news'))  # a publisher

        # unsubscribe: no more notifications.
        ok(await iq(bob, 'set', sub_xml('unsubscribe', 'news', bob_full),
                    to=SERVICE))
        assert error_of(await iq(bob, 'set', sub_xml(
            'unsubscribe', 'news', bob_full), to=SERVICE)) == (
            'wait', 'unexpected-request', 'not-subscribed')
        ok(await iq(bob, 'set', sub_xml('subscribe', instant, bob_full),
                    to=SERVICE))
        ok(await publish(alice, 'news', note('unseen'), 'n3', to=SERVICE))
        ok(await publish(alice, instant, note('seen'), 'i1', to=SERVICE))
        node, got, _ = event_items((await next_event(bob))[2])
        assert (node, [i for i, _ in got]) == (instant, ['i1'])

        # delete: subscribers are told; the node is gone.
        ok(await iq(alice, 'set', f"<pubsub xmlns='{NS_OWNER}'><delete "
                    f"node='{instant}'/></pubsub>", to=SERVICE))
        _, _, ev = await next_event(bob)
        assert ev.find(f'{{{NS_PUBSUB}#event}}delete').get('node') == instant
        assert error_of(await items(bob, SERVICE, instant))[1] == (
            'item-not-found')
    finally:
        await clients.disconnect(alice, bob, carol)


async def test_service_persists(server_factory):
    server = server_factory(pubsub={'subdomain': 'pubsub'})
    async with clients.connected(server, 'alice/a') as (alice,):
        # auto-create on publish, by an account of the host
        ok(await publish(alice, 'auto', note('kept'), 'k', to=SERVICE))
    server.restart()
    async with clients.connected(server, 'bob/b') as (bob,):
        assert item_ids(await items(bob, SERVICE, 'auto')) == ['k']
