"""RFC 6121 §8.5: delivery of messages addressed to a local account's bare
JID follows the presence of its resources: only available resources, the
highest non-negative priority for chat and normal, every non-negative one
for headline; negative priority only at the full JID; no available
resource means offline storage (XEP-0160, see test_offline.py)."""

import asyncio

import clients
from test_offline import wait_stored


async def set_presence(client, server, priority=0, ptype=None):
    """Broadcast presence, then a ping so the server has processed it."""
    if ptype:
        client.send_presence(ptype=ptype)
    else:
        client.send_presence(ppriority=priority)
    await client['xep_0199'].ping('localhost', timeout=5)


async def got(client, body, timeout=2):
    try:
        await client.next_message(body, timeout)
        return True
    except AssertionError:
        return False


async def send(src, to, body, mtype='chat'):
    src.send_message(mto=to, mbody=body, mtype=mtype)


async def test_highest_priority_gets_chat(server):
    async with clients.connected(server, 'alice', 'bob/low', 'bob/high') \
            as (a, low, high):
        await set_presence(low, server, priority=1)
        await set_presence(high, server, priority=5)
        await send(a, 'bob@localhost', 'to-highest')
        assert await got(high, 'to-highest')
        assert not await got(low, 'to-highest', timeout=1)


async def test_equal_priorities_all_get_chat(server):
    async with clients.connected(server, 'alice', 'bob/one', 'bob/two') \
            as (a, one, two):
        await set_presence(one, server, priority=3)
        await set_presence(two, server, priority=3)
        await send(a, 'bob@localhost', 'to-both')
        assert await got(one, 'to-both')
        assert await got(two, 'to-both')


async def test_headline_to_every_non_negative(server):
    async with clients.connected(server, 'alice', 'bob/low', 'bob/high',
                                 'bob/neg') as (a, low, high, neg):
        await set_presence(low, server, priority=0)
        await set_presence(high, server, priority=9)
        await set_presence(neg, server, priority=-1)
        await send(a, 'bob@localhost', 'news', mtype='headline')
        assert await got(low, 'news')
        assert await got(high, 'news')
        assert not await got(neg, 'news', timeout=1)


async def test_negative_priority_only_at_full_jid(server):
    async with clients.connected(server, 'alice', 'bob/neg') as (a, neg):
        await set_presence(neg, server, priority=-5)
        await send(a, 'bob@localhost', 'to-bare')
        # §8.5.2.2: no resource with a non-negative priority: stored.
        await wait_stored(server, 1)
        assert not await got(neg, 'to-bare', timeout=0.5)
        await send(a, neg.boundjid.full, 'to-full')
        assert await got(neg, 'to-full')


async def test_unavailable_resource_skipped(server):
    async with clients.connected(server, 'alice', 'bob/away', 'bob/here') \
            as (a, away, here):
        await set_presence(away, server, ptype='unavailable')
        await send(a, 'bob@localhost', 'who-is-here')
        assert await got(here, 'who-is-here')
        assert not await got(away, 'who-is-here', timeout=1)


async def test_never_available_gets_nothing_at_bare(server):
    async with clients.connected(server, 'alice') as (a,):
        silent = await clients.connect(server, 'bob', 'silent',
                                       available=False)
        try:
            await send(a, 'bob@localhost', 'anyone?')
            await wait_stored(server, 1)
            assert not await got(silent, 'anyone?', timeout=0.5)
        finally:
            await clients.disconnect(silent)


async def test_groupchat_to_bare_jid_refused(server):
    async with clients.connected(server, 'alice', 'bob/b') as (a, b):
        errors = asyncio.Queue()
        a.add_event_handler('message_error', errors.put_nowait)
        await send(a, 'bob@localhost', 'gc', mtype='groupchat')
        err = await asyncio.wait_for(errors.get(), 5)
        assert err['error']['condition'] == 'service-unavailable'
        assert not await got(b, 'gc', timeout=0.5)
