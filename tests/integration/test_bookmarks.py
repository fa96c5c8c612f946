"""XEP-0402 bookmarks with #compat, with slixmpp clients: a bookmark
published in the urn:xmpp:bookmarks:1 node is seen as XEP-0048 in private
storage (XEP-0049) and in the XEP-0223 node storage:bookmarks; a XEP-0048
list set in either older place becomes one XEP-0402 item per room, with
notifications only for the rooms that changed (§6.2); retracting removes
the room from the legacy lists; url bookmarks survive a XEP-0402 change;
everything persists across a restart; two clients on different shards;
the disco features."""

import pytest

import clients
from pubsub_util import (NS_INFO, NS_PUBSUB, event_items, iq, items,
                         next_event, ok, pep_client, publish, q)
from test_pep import other_shard_client

NS_BM2 = 'urn:xmpp:bookmarks:1'
NS_BM = 'storage:bookmarks'
NS_PRIVATE = 'jabber:iq:private'
A = 'alice@localhost'
BM2_OPTIONS = {'pubsub#persist_items': 'true', 'pubsub#max_items': 'max',
               'pubsub#send_last_published_item': 'never',
               'pubsub#access_model': 'whitelist'}
LEGACY_OPTIONS = {'pubsub#persist_items': 'true',
                  'pubsub#access_model': 'whitelist'}
READY = 'urn:example:ready'


async def watchers_ready(*cs):
    """Waits until the server knows the caps of each client (interested
    in READY): the READY item published before it came is its last-item
    delivery, sent once its +notify features are known."""
    for c in cs:
        node, _, _ = event_items((await next_event(c))[2])
        assert node == READY


async def publish_ready(server):
    """READY's item, published by a resource of alice that leaves."""
    async with clients.connected(server, 'alice/setup') as (setup,):
        ok(await publish(setup, READY, f"<r xmlns='{READY}'/>", 'r'))


def conference2(name=None, autojoin=None, nick=None, ext=''):
    attrs = ''
    if name is not None:
        attrs += f" name='{name}'"
    if autojoin is not None:
        attrs += f" autojoin='{autojoin}'"
    inner = f'<nick>{nick}</nick>' if nick is not None else ''
    if ext:
        inner += f'<extensions>{ext}</extensions>'
    return f"<conference xmlns='{NS_BM2}'{attrs}>{inner}</conference>"


async def private_bookmarks(c):
    """{room: (name, autojoin, nick)} and the url bookmarks of the
    private storage:bookmarks."""
    reply = ok(await iq(c, 'get', f"<query xmlns='{NS_PRIVATE}'>"
                        f"<storage xmlns='{NS_BM}'/></query>"))
    storage = reply.find(f'{q(NS_PRIVATE, "query")}/{q(NS_BM, "storage")}')
    return legacy_rooms(storage)


def legacy_rooms(storage):
    rooms = {c.get('jid'): (c.get('name'), c.get('autojoin'),
                            c.findtext(q(NS_BM, 'nick')))
             for c in storage.findall(q(NS_BM, 'conference'))}
    urls = [u.get('url') for u in storage.findall(q(NS_BM, 'url'))]
    return rooms, urls


async def pep_legacy_bookmarks(c):
    reply = ok(await items(c, A, NS_BM))
    its = list(reply.iter(q(NS_PUBSUB, 'item')))
    assert [i.get('id') for i in its] == ['current']
    return legacy_rooms(its[0].find(q(NS_BM, 'storage')))


async def pep2_bookmarks(c):
    """{room: conference element} of the XEP-0402 node."""
    reply = ok(await items(c, A, NS_BM2))
    return {i.get('id'): i.find(q(NS_BM2, 'conference'))
            for i in reply.iter(q(NS_PUBSUB, 'item'))}


async def set_private(c, inner):
    ok(await iq(c, 'set', f"<query xmlns='{NS_PRIVATE}'>"
                f"<storage xmlns='{NS_BM}'>{inner}</storage></query>"))


async def retract(c, node, item_id):
    return ok(await iq(c, 'set', f"<pubsub xmlns='{NS_PUBSUB}'>"
                       f"<retract node='{node}' notify='true'>"
                       f"<item id='{item_id}'/></retract></pubsub>"))


@pytest.mark.parametrize('shards', [1, 2])
async def test_pep2_seen_as_legacy(server_factory, shards):
    server = server_factory(shards=shards)
    await publish_ready(server)
    new = await pep_client(server, 'alice/new', [NS_BM2, READY])
    cs = [new]
    try:
        if shards == 2:
            old = await other_shard_client(server, 'alice', new,
                                           [NS_BM, READY])
        else:
            old = await pep_client(server, 'alice/old', [NS_BM, READY])
        cs.append(old)
        await watchers_ready(new, old)
        # A url bookmark kept by a legacy client survives.
        await set_private(old, "<url name='Site' url='https://example.org/'/>")
        # The legacy client hears of the list it set as the 0223 item.
        node, got, _ = event_items((await next_event(old))[2])
        assert node == NS_BM and [i for i, _ in got] == ['current']

        ext = "<state xmlns='urn:example:ext'>pinned</state>"
        ok(await publish(new, NS_BM2, conference2('Coven', 'true', 'Ali',
                                                  ext),
                         'coven@chat.example', BM2_OPTIONS))
        ok(await publish(new, NS_BM2, conference2('Orchard'),
                         'orchard@chat.example', BM2_OPTIONS))
        rooms = {'coven@chat.example': ('Coven', 'true', 'Ali'),
                 'orchard@chat.example': ('Orchard', None, None)}
        assert await private_bookmarks(old) == (
            rooms, ['https://example.org/'])
        assert await pep_legacy_bookmarks(old) == (
            rooms, ['https://example.org/'])
        # The legacy client's notifications: the whole new list, twice.
        for n in (1, 2):
            node, got, _ = event_items((await next_event(old))[2])
            assert node == NS_BM
            assert len(got[0][1].findall(q(NS_BM, 'conference'))) == n
        # The extension travels in the legacy conference, and back.
        reply = ok(await iq(old, 'get', f"<query xmlns='{NS_PRIVATE}'>"
                            f"<storage xmlns='{NS_BM}'/></query>"))
        conf = next(c for c in reply.iter(q(NS_BM, 'conference'))
                    if c.get('jid') == 'coven@chat.example')
        assert conf.findtext(q('urn:example:ext', 'state')) == 'pinned'

        # Retracting removes the room from both legacy lists.
        await retract(new, NS_BM2, 'coven@chat.example')
        rooms = {'orchard@chat.example': ('Orchard', None, None)}
        assert await private_bookmarks(old) == (
            rooms, ['https://example.org/'])
        assert await pep_legacy_bookmarks(old) == (
            rooms, ['https://example.org/'])
        # The owner's XEP-0402 resource got its own three changes.
        evs = [event_items((await next_event(new))[2]) for _ in range(3)]
        assert [(n, [i for i, _ in g], r) for n, g, r in evs] == [
            (NS_BM2, ['coven@chat.example'], []),
            (NS_BM2, ['orchard@chat.example'], []),
            (NS_BM2, [], ['coven@chat.example'])]
    finally:
        await clients.disconnect(*cs)


@pytest.mark.parametrize('shards', [1, 2])
async def test_legacy_seen_as_pep2(server_factory, shards):
    server = server_factory(shards=shards)
    await publish_ready(server)
    old = await pep_client(server, 'alice/old', caps=False)
    cs = [old]
    try:
        if shards == 2:
            new = await other_shard_client(server, 'alice', old,
                                           [NS_BM2, READY])
        else:
            new = await pep_client(server, 'alice/new', [NS_BM2, READY])
        cs.append(new)
        await watchers_ready(new)
        await set_private(
            old, "<conference jid='coven@chat.example' name='Coven' "
            "autojoin='1'><nick>Ali</nick>"
            "<state xmlns='urn:example:ext'>pinned</state></conference>"
            "<conference jid='orchard@chat.example' name='Orchard'/>"
            "<url name='Site' url='https://example.org/'/>")
        bms = await pep2_bookmarks(new)
        assert sorted(bms) == ['coven@chat.example', 'orchard@chat.example']
        coven = bms['coven@chat.example']
        assert coven.get('name') == 'Coven'
        assert coven.get('autojoin') == 'true'
        assert coven.findtext(q(NS_BM2, 'nick')) == 'Ali'
        assert coven.findtext(f'{q(NS_BM2, "extensions")}/'
                              f'{q("urn:example:ext", "state")}') == 'pinned'
        assert bms['orchard@chat.example'].get('autojoin') is None
        assert (await pep_legacy_bookmarks(new))[1] == [
            'https://example.org/']
        got_ids = set()
        for _ in range(2):
            node, got, _ = event_items((await next_event(new))[2])
            assert node == NS_BM2
            got_ids |= {i for i, _ in got}
        assert got_ids == {'coven@chat.example', 'orchard@chat.example'}

        # A list with coven unchanged, orchard gone and a new room: one
        # publish and one retraction, nothing for coven (§6.2).
        await set_private(
            old, "<conference jid='coven@chat.example' name='Coven' "
            "autojoin='true'><nick>Ali</nick>"
            "<state xmlns='urn:example:ext'>pinned</state></conference>"
            "<conference jid='glade@chat.example'/>")
        evs = [event_items((await next_event(new))[2]) for _ in range(2)]
        assert sorted((tuple(i for i, _ in g), tuple(r))
                      for _, g, r in evs) == [
            ((), ('orchard@chat.example',)),
            (('glade@chat.example',), ())]
        assert sorted(await pep2_bookmarks(new)) == [
            'coven@chat.example', 'glade@chat.example']

        # The XEP-0223 node, set by a XEP-0048 v1.1 client.
        ok(await publish(old, NS_BM, f"<storage xmlns='{NS_BM}'>"
                         "<conference jid='glade@chat.example' "
                         "name='Glade'/></storage>", 'current',
                         LEGACY_OPTIONS))
        bms = await pep2_bookmarks(new)
        assert list(bms) == ['glade@chat.example']
        assert bms['glade@chat.example'].get('name') == 'Glade'
        assert await private_bookmarks(old) == (
            {'glade@chat.example': ('Glade', None, None)}, [])

        # Emptied in private storage: no bookmarks anywhere.
        ok(await iq(old, 'set', f"<query xmlns='{NS_PRIVATE}'>"
                    f"<storage xmlns='{NS_BM}'/></query>"))
        assert await pep2_bookmarks(new) == {}
        assert await pep_legacy_bookmarks(new) == ({}, [])
    finally:
        await clients.disconnect(*cs)


async def test_persistence_and_disco(server):
    async with clients.connected(server, 'alice/a', 'bob/b') as (alice,
                                                                 bob):
        ok(await publish(alice, NS_BM2, conference2('Coven', 'true'),
                         'coven@chat.example', BM2_OPTIONS))
        info = ok(await iq(alice, 'get', f"<query xmlns='{NS_INFO}'/>",
                           to=A))
        feats = {f.get('var') for f in info.iter(q(NS_INFO, 'feature'))}
        assert {NS_BM2 + '#compat', NS_BM2 + '#compat-pep'} <= feats
        # Whitelist nodes: the bookmarks are nobody else's business.
        reply = await items(bob, A, NS_BM)
        assert reply.get('type') == 'error'
    server.restart()
    async with clients.connected(server, 'alice/a') as (alice,):
        assert await private_bookmarks(alice) == (
            {'coven@chat.example': ('Coven', 'true', None)}, [])
        assert list(await pep2_bookmarks(alice)) == ['coven@chat.example']
        # The node the server made still takes the XEP-0402 options.
        ok(await publish(alice, NS_BM2, conference2('Orchard'),
                         'orchard@chat.example', BM2_OPTIONS))
        await set_private(alice, "<conference jid='x@chat.example'/>")
        assert list(await pep2_bookmarks(alice)) == ['x@chat.example']
    server.restart()
    async with clients.connected(server, 'alice/a') as (alice,):
        assert list(await pep2_bookmarks(alice)) == ['x@chat.example']
        assert (await pep_legacy_bookmarks(alice))[0] == {
            'x@chat.example': (None, None, None)}
