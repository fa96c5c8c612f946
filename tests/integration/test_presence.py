"""RFC 6121 §3 and §4 end to end with real clients: a subscription asked,
approved and seen in both rosters; presence exchanged once subscribed;
probes at login; unavailable when a client goes; requests kept for an
offline contact; removal cancelling both directions. Checks wait for each
expected event on its own; the exact order is pinned by the scripts in
tests/scripts/subscription-approve*.xmppt."""

import asyncio
import sqlite3

import clients

WAIT = 8


def manual(client):
    """No automatic answers: the test decides (slixmpp accepts and
    subscribes back by default; False would mean 'refuse')."""
    client.roster.auto_authorize = None
    client.roster.auto_subscribe = False
    return client


class NoPresence(AssertionError):
    pass


def matches(pres, sender, ptype):
    frm = pres['from']
    if frm != sender and frm.bare != str(sender):
        return False
    if ptype is None:
        return pres['type'] in ('available', '', 'chat', 'away', 'xa', 'dnd')
    return pres['type'] == ptype


async def presence_of(client, sender, ptype=None, timeout=WAIT):
    """Waits for a presence from sender (a JID; bare matches any of its
    resources) of ptype (None: available), and takes it. Others received
    meanwhile stay for later calls."""
    seen = client.__dict__.setdefault('seen_presences', [])
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        for i, pres in enumerate(seen):
            if matches(pres, sender, ptype):
                return seen.pop(i)
        left = deadline - loop.time()
        if left <= 0:
            raise NoPresence(f'{client.boundjid}: no {ptype} presence '
                             f'from {sender}')
        try:
            seen.append(await asyncio.wait_for(client.presences.get(), left))
        except asyncio.TimeoutError:
            raise NoPresence(
                f"{client.boundjid}: no {ptype} presence from {sender}; "
                f"had {[(str(p['from']), p['type']) for p in seen]}") from None


async def roster_state(client, contact):
    """The item for contact in the server's roster, fetched fresh."""
    await client.get_roster(timeout=WAIT)
    item = client.client_roster[contact]
    return item['subscription'], item['pending_out']


async def subscribe(a, b, b_bare):
    """a asks b; b approves; returns when a's roster says 'to'."""
    a.send_presence(pto=b_bare, ptype='subscribe')
    await presence_of(b, a.boundjid.bare, 'subscribe')
    b.send_presence(pto=a.boundjid.bare, ptype='subscribed')
    await presence_of(a, b_bare, 'subscribed')


async def until_state(client, contact, want):
    deadline = asyncio.get_running_loop().time() + WAIT
    while True:
        state = await roster_state(client, contact)
        if state[0] == want:
            return state
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f'{contact}: {state}, wanted {want}')
        await asyncio.sleep(0.1)


async def test_subscription_approved_both_see_presence(server):
    async with clients.connected(server, 'alice/a', 'bob/b') as (a, b):
        manual(a), manual(b)
        await subscribe(a, b, 'bob@localhost')
        # §3.1.5: the approval is followed by the contact's presence.
        await presence_of(a, b.boundjid)
        assert (await until_state(a, 'bob@localhost', 'to'))[1] is False
        await until_state(b, 'alice@localhost', 'from')
        # And the other direction.
        await subscribe(b, a, 'alice@localhost')
        await presence_of(b, a.boundjid)
        await until_state(a, 'bob@localhost', 'both')
        await until_state(b, 'alice@localhost', 'both')
        listed = server.ctl('roster', 'list', 'alice@localhost').stdout
        assert listed.splitlines() == ['bob@localhost\tboth\t']
        # Presence changes now reach the contact.
        a.send_presence(pstatus='busy')
        pres = await presence_of(b, a.boundjid)
        assert pres['status'] == 'busy'


async def test_denied_subscription(server):
    async with clients.connected(server, 'carol/c', 'walter/d') as (c, d):
        manual(c), manual(d)
        c.send_presence(pto='walter@localhost', ptype='subscribe')
        await presence_of(d, 'carol@localhost', 'subscribe')
        assert await roster_state(c, 'walter@localhost') == ('none', True)
        d.send_presence(pto='carol@localhost', ptype='unsubscribed')
        await presence_of(c, 'walter@localhost', 'unsubscribed')
        assert await until_state(c, 'walter@localhost', 'none') == \
            ('none', False)
        # No subscription: carol's presence changes do not reach dave.
        c.send_presence(pstatus='secret')
        try:
            await presence_of(d, c.boundjid, timeout=1)
        except NoPresence:
            pass
        else:
            raise AssertionError('walter saw carol without a subscription')


async def test_probe_and_unavailable(server):
    async with clients.connected(server, 'alice/a', 'bob/b') as (a, b):
        manual(a), manual(b)
        await subscribe(a, b, 'bob@localhost')
        await subscribe(b, a, 'alice@localhost')
        # A new resource of alice probes bob at its initial presence.
        a2 = manual(await clients.connect(server, 'alice', 'second',
                                          available=False))
        try:
            a2.send_presence()
            await presence_of(a2, b.boundjid)
            # bob sees the new resource come online ...
            await presence_of(b, a2.boundjid)
            # ... and go away when its connection simply drops.
            a2.abort()
            await presence_of(b, a2.boundjid, 'unavailable')
        finally:
            await clients.disconnect(a2)


async def test_request_kept_for_offline_contact(server):
    async with clients.connected(server, 'wendy/e') as (e,):
        manual(e)
        e.send_presence(pto='walter@localhost', ptype='subscribe')
        await asyncio.sleep(0.5)
        f = manual(await clients.connect(server, 'walter', 'f',
                                         available=False))
        try:
            f.send_presence()
            # §3.1.3: delivered when walter becomes available.
            await presence_of(f, 'wendy@localhost', 'subscribe')
        finally:
            await clients.disconnect(f)


async def test_removal_cancels_both_ways(server):
    async with clients.connected(server, 'carol/g', 'wendy/h') as (g, h):
        manual(g), manual(h)
        await subscribe(g, h, 'wendy@localhost')
        await subscribe(h, g, 'carol@localhost')
        await until_state(g, 'wendy@localhost', 'both')
        g.del_roster_item('wendy@localhost')
        # §2.5.2: wendy loses both directions, and stops seeing carol's
        # resource (as for an outbound unsubscribed, §3.2.3).
        await until_state(h, 'carol@localhost', 'none')
        pres = await presence_of(h, g.boundjid, 'unavailable')
        assert pres['from'] == g.boundjid


async def test_probe_to_full_jid_reveals_that_resource_only(server):
    """RFC 6121 §4.3.2: a probe to a full JID learns about the addressed
    resource alone; one that is not there gives unavailable."""
    async with clients.connected(server, 'carol/g', 'wendy/h1',
                                 'wendy/h2') as (g, h1, h2):
        manual(g), manual(h1), manual(h2)
        await subscribe(g, h1, 'wendy@localhost')
        await until_state(g, 'wendy@localhost', 'to')
        # The approval brought both resources' presence: take it first.
        await presence_of(g, h1.boundjid)
        await presence_of(g, h2.boundjid)
        g.send_presence(pto='wendy@localhost/h1', ptype='probe')
        pres = await presence_of(g, h1.boundjid)
        assert pres['from'] == h1.boundjid
        g.send_presence(pto='wendy@localhost/gone', ptype='probe')
        pres = await presence_of(g, 'wendy@localhost', 'unavailable')
        assert pres['from'].bare == 'wendy@localhost'
        # Nothing from h2 came meanwhile; a probe to the bare JID shows
        # both (proving h2 is available to be seen).
        seen = g.__dict__.get('seen_presences', [])
        assert not [p for p in seen if p['from'] == h2.boundjid], seen
        g.send_presence(pto='wendy@localhost', ptype='probe')
        await presence_of(g, h2.boundjid)


async def test_subscription_to_missing_account_leaves_nothing(server):
    """§8.5.1: subscription stanzas for an account that does not exist are
    ignored, and no roster record is made for it."""
    async with clients.connected(server, 'carol/g') as (g,):
        # (A request would leave Pending In in an existing account.)
        g.send_presence(pto='nobody@localhost', ptype='subscribe')
        await g['xep_0199'].ping('localhost', timeout=5)
        await asyncio.sleep(0.3)
    db = sqlite3.connect(f'file:{server.data_dir / "stanzad.db"}?mode=ro',
                         uri=True, timeout=5)
    try:
        rows = db.execute("SELECT count(*) FROM roster WHERE user = "
                          "'nobody'").fetchone()[0]
    finally:
        db.close()
    assert rows == 0
