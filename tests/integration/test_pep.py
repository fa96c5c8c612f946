"""XEP-0163 PEP on every account, with slixmpp clients: the OMEMO device
list published with publish-options pubsub#access_model=open and read by
a contact and a stranger; notifications only to the resources whose caps
(XEP-0115) say +notify for the node; the last item when a contact's
resource becomes available; each access model's denial (XEP-0060 §6.5.9);
max_items; retract notifications; the node configuration form;
precondition-not-met (§7.1.5); disco; persistence across a restart;
removal with the account; the owner and the contact on different shards.

"Gets nothing" is checked without sleeping: a resource that must not get
an event is interested in a sentinel node too, and the sentinel's event,
published after, must be the first it gets."""

import pytest

import clients
from pubsub_util import (NS_DATA, NS_INFO, NS_ITEMS, NS_OWNER, NS_PUBSUB,
                         WAIT, befriend, bound_shard, error_of, event_items,
                         form_values, form_xml, item_ids, items, iq,
                         next_event, ok, pep_client, publish, q)

DEVICELIST = 'eu.siacs.conversations.axolotl.devicelist'
NS_OMEMO = 'eu.siacs.conversations.axolotl'
SENTINEL = 'urn:example:sentinel'


def devices(*ids):
    return (f"<list xmlns='{NS_OMEMO}'>" +
            ''.join(f"<device id='{i}'/>" for i in ids) + '</list>')


def note(text):
    return f"<note xmlns='{SENTINEL}'>{text}</note>"


def listed_devices(payload):
    return [d.get('id') for d in payload.findall(q(NS_OMEMO, 'device'))]


async def other_shard_client(server, user, avoid, interests):
    """A resource of user on another shard than `avoid` (the kernel
    spreads connections over the shards by their addresses)."""
    extra = []
    try:
        for i in range(24):
            c = await pep_client(server, f'{user}/s{i}', interests)
            if bound_shard(server, c) != bound_shard(server, avoid):
                return c
            extra.append(c)
    finally:
        await clients.disconnect(*extra)
    raise AssertionError('no session landed on the other shard')


@pytest.mark.parametrize('shards', [1, 2])
async def test_omemo_device_list(server_factory, shards):
    server = server_factory(shards=shards)
    alice = await pep_client(server, 'alice/phone', caps=False)
    cs = [alice]
    try:
        # Published before bob is a contact: the last item reaches him
        # when his resource's presence with +notify arrives.
        r = ok(await publish(alice, DEVICELIST, devices(1), 'current',
                             {'pubsub#access_model': 'open'}))
        assert r.find(f'{q(NS_PUBSUB, "pubsub")}/{q(NS_PUBSUB, "publish")}'
                      ).get('node') == DEVICELIST
        ok(await publish(alice, SENTINEL, note('s1'), 'current',
                         {'pubsub#access_model': 'open'}))

        if shards == 2:
            notify = await other_shard_client(server, 'bob',
                                              alice, [NS_OMEMO + '.devicelist',
                                                      SENTINEL])
        else:
            notify = await pep_client(server, 'bob/notify',
                                      [DEVICELIST, SENTINEL])
        cs.append(notify)
        plain = await pep_client(server, 'bob/plain', [SENTINEL])
        cs.append(plain)
        await befriend(server, alice, notify)

        frm, typ, ev = await next_event(notify)
        assert (frm, typ) == ('alice@localhost', 'headline')
        node, got, _ = event_items(ev)
        assert node == DEVICELIST
        assert [(i, listed_devices(p)) for i, p in got] == [('current',
                                                             ['1'])]
        node, got, _ = event_items((await next_event(notify))[2])
        assert node == SENTINEL
        # plain announced no interest in the device list: its first event
        # is the sentinel.
        node, _, _ = event_items((await next_event(plain))[2])
        assert node == SENTINEL

        ok(await publish(alice, DEVICELIST, devices(1, 2), 'current',
                         {'pubsub#access_model': 'open'}))
        ok(await publish(alice, SENTINEL, note('s2'), 'current',
                         {'pubsub#access_model': 'open'}))
        node, got, _ = event_items((await next_event(notify))[2])
        assert node == DEVICELIST
        assert listed_devices(got[0][1]) == ['1', '2']
        node, got, _ = event_items((await next_event(notify))[2])
        assert node == SENTINEL
        node, got, _ = event_items((await next_event(plain))[2])
        assert node == SENTINEL and got[0][1].text == 's2'

        # Fetched by the contact and by a stranger (open access).
        carol = await pep_client(server, 'carol/x', caps=False)
        cs.append(carol)
        for reader in (notify, carol):
            reply = ok(await items(reader, 'alice@localhost', DEVICELIST))
            its = reply.find(f'{q(NS_PUBSUB, "pubsub")}/'
                             f'{q(NS_PUBSUB, "items")}')
            assert its.get('node') == DEVICELIST
            [item] = its.findall(q(NS_PUBSUB, 'item'))
            assert item.get('id') == 'current'
            assert listed_devices(item[0]) == ['1', '2']
        # A node with the default access model, presence.
        ok(await publish(alice, 'urn:example:private', note('p')))
        assert error_of(await items(carol, 'alice@localhost',
                                    'urn:example:private')) == (
            'auth', 'not-authorized', 'presence-subscription-required')
        ok(await items(notify, 'alice@localhost', 'urn:example:private'))
    finally:
        await clients.disconnect(*cs)


async def test_access_models(server):
    alice = await pep_client(server, 'alice/a', caps=False)
    bob = await pep_client(server, 'bob/b', caps=False)
    carol = await pep_client(server, 'carol/c', caps=False)
    try:
        await befriend(server, alice, bob)
        await alice.update_roster('bob@localhost', groups=['friends'])
        for model, extra in [('open', {}), ('presence', {}),
                             ('roster', {'pubsub#roster_groups_allowed':
                                         'friends'}),
                             ('whitelist', {})]:
            ok(await publish(alice, f'n-{model}', note(model), 'i',
                             {'pubsub#access_model': model, **extra}))
        A = 'alice@localhost'
        ok(await items(carol, A, 'n-open'))
        ok(await items(bob, A, 'n-presence'))
        assert error_of(await items(carol, A, 'n-presence')) == (
            'auth', 'not-authorized', 'presence-subscription-required')
        ok(await items(bob, A, 'n-roster'))
        assert error_of(await items(carol, A, 'n-roster')) == (
            'auth', 'not-authorized', 'not-in-roster-group')
        # Out of the group, bob is refused too.
        await alice.update_roster('bob@localhost', groups=['others'])
        assert error_of(await items(bob, A, 'n-roster')) == (
            'auth', 'not-authorized', 'not-in-roster-group')
        # whitelist: members only; the owner adds bob.
        assert error_of(await items(bob, A, 'n-whitelist')) == (
            'cancel', 'not-allowed', 'closed-node')
        ok(await iq(alice, 'set', f"<pubsub xmlns='{NS_OWNER}'>"
                    "<affiliations node='n-whitelist'>"
                    "<affiliation jid='bob@localhost' affiliation='member'/>"
                    "</affiliations></pubsub>"))
        assert item_ids(await items(bob, A, 'n-whitelist')) == ['i']
        affs = ok(await iq(alice, 'get', f"<pubsub xmlns='{NS_OWNER}'>"
                           "<affiliations node='n-whitelist'/></pubsub>"))
        got = {(a.get('jid'), a.get('affiliation')) for a in affs.iter(
            q(NS_OWNER, 'affiliation'))}
        assert got == {('alice@localhost', 'owner'),
                       ('bob@localhost', 'member')}
        assert error_of(await items(carol, A, 'n-whitelist')) == (
            'cancel', 'not-allowed', 'closed-node')
        # The owner reads everything; nobody else publishes or configures.
        ok(await items(alice, A, 'n-whitelist'))
        assert error_of(await publish(bob, 'n-open', note('x'),
                                      to=A))[1] == 'forbidden'
        assert error_of(await publish(bob, 'new', note('x'),
                                      to=A))[1] == 'forbidden'
        assert error_of(await iq(bob, 'get', f"<pubsub xmlns='{NS_OWNER}'>"
                                 "<configure node='n-open'/></pubsub>",
                                 to=A))[1] == 'forbidden'
        assert error_of(await items(bob, A, 'missing')) == (
            'cancel', 'item-not-found', None)
        # PEP has no explicit subscriptions (XEP-0163: presence does it).
        reply = await iq(bob, 'set', f"<pubsub xmlns='{NS_PUBSUB}'>"
                         "<subscribe node='n-open' jid='bob@localhost'/>"
                         "</pubsub>", to=A)
        assert error_of(reply) == ('cancel', 'feature-not-implemented',
                                   'unsupported')
    finally:
        await clients.disconnect(alice, bob, carol)


async def test_max_items(server):
    async with clients.connected(server, 'alice/a') as (alice,):
        for i in range(1, 6):
            ok(await publish(alice, 'log', note(i), f'i{i}',
                             {'pubsub#max_items': '3'}))
        A = 'alice@localhost'
        assert item_ids(await items(alice, A, 'log')) == ['i3', 'i4', 'i5']
        assert item_ids(await items(alice, A, 'log', max_items=2)) == [
            'i4', 'i5']
        assert item_ids(await items(alice, A, 'log', ids=['i1', 'i4'])) == [
            'i4']
        # Republishing an id replaces it and makes it the newest.
        ok(await publish(alice, 'log', note('again'), 'i3'))
        assert item_ids(await items(alice, A, 'log')) == ['i4', 'i5', 'i3']
        # A generated id when none is given.
        reply = ok(await publish(alice, 'log', note('anon')))
        new_id = reply.find(f'.//{q(NS_PUBSUB, "item")}').get('id')
        assert new_id
        assert item_ids(await items(alice, A, 'log')) == ['i5', 'i3',
                                                          new_id]
        # Lowering max_items trims at once.
        ok(await iq(alice, 'set', f"<pubsub xmlns='{NS_OWNER}'><configure "
                    "node='log'>" + form_xml(
                        NS_PUBSUB + '#node_config',
                        {'pubsub#max_items': '1'}) + '</configure></pubsub>'))
        assert item_ids(await items(alice, A, 'log')) == [new_id]
        # purge, then delete
        ok(await iq(alice, 'set', f"<pubsub xmlns='{NS_OWNER}'>"
                    "<purge node='log'/></pubsub>"))
        assert item_ids(await items(alice, A, 'log')) == []
        ok(await iq(alice, 'set', f"<pubsub xmlns='{NS_OWNER}'>"
                    "<delete node='log'/></pubsub>"))
        assert error_of(await items(alice, A, 'log'))[1] == 'item-not-found'


async def test_retract_notifications(server):
    alice = await pep_client(server, 'alice/a', caps=False)
    bob = await pep_client(server, 'bob/b', ['urn:example:mood'])
    try:
        await befriend(server, alice, bob)
        ok(await publish(alice, 'urn:example:mood', note('happy'), 'm1'))
        node, got, _ = event_items((await next_event(bob))[2])
        assert (node, [i for i, _ in got]) == ('urn:example:mood', ['m1'])
        ok(await iq(alice, 'set', f"<pubsub xmlns='{NS_PUBSUB}'><retract "
                    "node='urn:example:mood' notify='true'><item id='m1'/>"
                    "</retract></pubsub>"))
        node, got, retracted = event_items((await next_event(bob))[2])
        assert (node, got, retracted) == ('urn:example:mood', [], ['m1'])
        assert error_of(await iq(alice, 'set', f"<pubsub xmlns='{NS_PUBSUB}'>"
                                 "<retract node='urn:example:mood'>"
                                 "<item id='m1'/></retract></pubsub>")
                        )[1] == 'item-not-found'
        assert item_ids(await items(bob, 'alice@localhost',
                                    'urn:example:mood')) == []
    finally:
        await clients.disconnect(alice, bob)


async def test_own_resources_notified(server):
    """The owner's resources with +notify get its notifications too."""
    a1 = await pep_client(server, 'alice/one', ['urn:example:tune'])
    a2 = await pep_client(server, 'alice/two', caps=False)
    try:
        ok(await publish(a2, 'urn:example:tune', note('song'), 't'))
        frm, _, ev = await next_event(a1)
        assert frm == 'alice@localhost'
        assert event_items(ev)[0] == 'urn:example:tune'
    finally:
        await clients.disconnect(a1, a2)


async def test_node_config_form(server):
    async with clients.connected(server, 'alice/a') as (alice,):
        ok(await publish(alice, 'cfg', note(1)))
        get = f"<pubsub xmlns='{NS_OWNER}'><configure node='cfg'/></pubsub>"
        x = ok(await iq(alice, 'get', get)).find(f'.//{q(NS_DATA, "x")}')
        v = form_values(x)
        assert v['FORM_TYPE'] == [NS_PUBSUB + '#node_config']
        assert v['pubsub#access_model'] == ['presence']
        assert v['pubsub#max_items'] == ['1']
        assert v['pubsub#send_last_published_item'] == [
            'on_sub_and_presence']
        new = {'pubsub#access_model': 'whitelist', 'pubsub#max_items': '7',
               'pubsub#notify_retract': '0', 'pubsub#persist_items': '1',
               'pubsub#title': 'My node',
               'pubsub#send_last_published_item': 'never',
               'pubsub#roster_groups_allowed': ['a', 'b']}
        ok(await iq(alice, 'set', f"<pubsub xmlns='{NS_OWNER}'><configure "
                    "node='cfg'>" + form_xml(NS_PUBSUB + '#node_config', new)
                    + '</configure></pubsub>'))
        v = form_values(ok(await iq(alice, 'get', get)).find(
            f'.//{q(NS_DATA, "x")}'))
        for var, value in new.items():
            assert v[var] == (value if isinstance(value, list) else [value])
        for bad in ({'pubsub#access_model': 'bogus'},
                    {'pubsub#max_items': '0'},
                    {'pubsub#unknown': '1'}):
            reply = await iq(alice, 'set', f"<pubsub xmlns='{NS_OWNER}'>"
                             "<configure node='cfg'>" + form_xml(
                                 NS_PUBSUB + '#node_config', bad) +
                             '</configure></pubsub>')
            assert error_of(reply)[1] == 'not-acceptable', bad
        assert form_values(ok(await iq(alice, 'get', get)).find(
            f'.//{q(NS_DATA, "x")}'))['pubsub#max_items'] == ['7']
        d = ok(await iq(alice, 'get', f"<pubsub xmlns='{NS_OWNER}'>"
                        "<default/></pubsub>"))
        assert form_values(d.find(f'.//{q(NS_DATA, "x")}'))[
            'pubsub#access_model'] == ['presence']
        # create with configuration; create of an existing node
        ok(await iq(alice, 'set', f"<pubsub xmlns='{NS_PUBSUB}'><create "
                    "node='made'/><configure>" + form_xml(
                        NS_PUBSUB + '#node_config',
                        {'pubsub#access_model': 'open'}) +
                    '</configure></pubsub>'))
        v = form_values(ok(await iq(alice, 'get', f"<pubsub xmlns="
                                    f"'{NS_OWNER}'><configure node='made'/>"
                                    "</pubsub>")).find(
            f'.//{q(NS_DATA, "x")}'))
        assert v['pubsub#access_model'] == ['open']
        assert error_of(await iq(alice, 'set', f"<pubsub xmlns='{NS_PUBSUB}'>"
                                 "<create node='made'/></pubsub>")
                        )[1] == 'conflict'


async def test_precondition_not_met(server):
    async with clients.connected(server, 'alice/a') as (alice,):
        ok(await publish(alice, 'pre', note(1), 'x'))  # presence, 1 item
        for opts in ({'pubsub#access_model': 'open'},
                     {'pubsub#max_items': '5'},
                     {'pubsub#no_such_option': '1'}):
            assert error_of(await publish(alice, 'pre', note(2), 'y',
                                          opts)) == (
                'cancel', 'conflict', 'precondition-not-met'), opts
        assert item_ids(await items(alice, 'alice@localhost', 'pre')) == [
            'x']
        ok(await publish(alice, 'pre', note(3), 'z',
                         {'pubsub#access_model': 'presence',
                          'pubsub#max_items': '1'}))
        assert item_ids(await items(alice, 'alice@localhost', 'pre')) == [
            'z']
        # An unknown option cannot auto-create either.
        assert error_of(await publish(alice, 'fresh', note(1), 'a',
                                      {'pubsub#bogus': 'x'}))[2] == (
            'precondition-not-met')
        assert error_of(await items(alice, 'alice@localhost',
                                    'fresh'))[1] == 'item-not-found'


async def test_disco(server):
    async with clients.connected(server, 'alice/a', 'carol/c') as (alice,
                                                                   carol):
        ok(await publish(alice, 'pub', note(1), 'i',
                         {'pubsub#access_model': 'open'}))
        ok(await publish(alice, 'priv', note(1), 'i'))
        info = ok(await iq(carol, 'get', f"<query xmlns='{NS_INFO}'/>",
                           to='alice@localhost'))
        ids = {(i.get('category'), i.get('type'))
               for i in info.iter(q(NS_INFO, 'identity'))}
        assert ('pubsub', 'pep') in ids and ('account', 'registered') in ids
        feats = {f.get('var') for f in info.iter(q(NS_INFO, 'feature'))}
        assert {NS_PUBSUB + '#publish', NS_PUBSUB + '#publish-options',
                NS_PUBSUB + '#auto-create',
                NS_PUBSUB + '#access-whitelist'} <= feats

        def nodes(reply):
            return sorted(i.get('node')
                          for i in ok(reply).iter(q(NS_ITEMS, 'item')))
        get = f"<query xmlns='{NS_ITEMS}'/>"
        assert nodes(await iq(carol, 'get', get, to='alice@localhost')) == [
            'pub']
        assert nodes(await iq(alice, 'get', get, to='alice@localhost')) == [
            'priv', 'pub']


async def test_persistence_and_account_removal(server):
    async with clients.connected(server, 'alice/a') as (alice,):
        ok(await publish(alice, 'keep', note('kept'), 'k',
                         {'pubsub#access_model': 'open',
                          'pubsub#max_items': '4'}))
        ok(await publish(alice, 'keep', note('kept2'), 'k2'))
    server.restart()
    async with clients.connected(server, 'bob/b') as (bob,):
        assert item_ids(await items(bob, 'alice@localhost', 'keep')) == [
            'k', 'k2']
    async with clients.connected(server, 'alice/a') as (alice,):
        ok(await publish(alice, 'keep', note('kept3'), 'k3',
                         {'pubsub#max_items': '4'}))  # config kept too
    server.ctl('user', 'del', 'alice@localhost')
    server.add_user('alice', server.passwords['alice'])
    async with clients.connected(server, 'bob/b') as (bob,):
        assert error_of(await items(bob, 'alice@localhost',
                                    'keep'))[1] == 'item-not-found'


async def test_unsupported_and_bad_requests(server):
    async with clients.connected(server, 'alice/a') as (alice,):
        reply = await iq(alice, 'get', f"<pubsub xmlns='{NS_PUBSUB}'>"
                         "<options node='x' jid='alice@localhost'/>"
                         "</pubsub>")
        assert error_of(reply) == ('cancel', 'feature-not-implemented',
                                   'unsupported')
        reply = await iq(alice, 'set', f"<pubsub xmlns='{NS_PUBSUB}'>"
                         "<publish node='x'/></pubsub>")
        assert error_of(reply)[1] == 'bad-request'
        reply = await iq(alice, 'get', f"<pubsub xmlns='{NS_PUBSUB}'>"
                         "<items/></pubsub>")
        assert error_of(reply) == ('modify', 'bad-request',
                                   'nodeid-required')
        assert WAIT
