"""XEP-0160 offline messages: chat and normal messages for an account with
no available resource are stored (XEP-0203 delay stamp) and delivered, in
order, at its next initial presence; they survive a restart and a kill -9;
limits and unknown accounts give <service-unavailable/>; headlines are not
stored."""

import asyncio
import datetime
import signal
import sqlite3

import pytest

import clients

NS_DELAY = 'urn:xmpp:delay'


def stored_count(server, user='bob'):
    """Rows in the offline table, read straight from the database."""
    db = sqlite3.connect(f'file:{server.data_dir / "stanzad.db"}?mode=ro',
                         uri=True, timeout=5)
    try:
        return db.execute('SELECT count(*) FROM offline WHERE user = ?',
                          (user,)).fetchone()[0]
    finally:
        db.close()


async def wait_stored(server, n, user='bob', timeout=5):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while stored_count(server, user) < n:
        if loop.time() > deadline:
            raise AssertionError(f'{stored_count(server, user)} stored, '
                                 f'wanted {n}')
        await asyncio.sleep(0.05)


async def send_offline(server, bodies, to='bob@localhost', mtype='chat'):
    async with clients.connected(server, 'alice/a') as (a,):
        for body in bodies:
            a.send_message(mto=to, mbody=body, mtype=mtype)
        # A ping round trip: the messages have reached the server.
        await a['xep_0199'].ping('localhost', timeout=5)


async def receive_all(server, bodies):
    b = await clients.connect(server, 'bob', 'b')
    try:
        got = [await b.next_message(body, timeout=5) for body in bodies]
    finally:
        await clients.disconnect(b)
    return got


def check_delay(msg):
    delay = msg.xml.find(f'{{{NS_DELAY}}}delay')
    assert delay is not None, msg
    assert delay.get('from') == 'localhost'
    when = datetime.datetime.fromisoformat(
        delay.get('stamp').replace('Z', '+00:00'))
    age = datetime.datetime.now(datetime.timezone.utc) - when
    assert datetime.timedelta(0) <= age < datetime.timedelta(minutes=5)


async def test_stored_and_delivered_in_order(server):
    bodies = [f'offline {i}' for i in range(5)]
    await send_offline(server, bodies)
    await wait_stored(server, 5)
    listed = server.ctl('offline', 'list', 'bob@localhost').stdout
    rows = [line.split('\t') for line in listed.splitlines()]
    assert len(rows) == 5 and all(r[2] == 'alice@localhost' for r in rows)
    assert [int(r[0]) for r in rows] == sorted(int(r[0]) for r in rows)
    got = await receive_all(server, bodies)
    assert [m['body'] for m in got] == bodies
    for m in got:
        check_delay(m)
        assert m['from'].bare == 'alice@localhost'
    await wait_stored_at_most(server, 0)
    assert server.ctl('offline', 'list', 'bob@localhost').stdout == ''


async def wait_stored_at_most(server, n, timeout=5):
    """Delivered messages are deleted by a job after delivery."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while stored_count(server) > n:
        assert loop.time() < deadline, f'{stored_count(server)} still stored'
        await asyncio.sleep(0.05)


@pytest.mark.parametrize('shards', [1, 2])
async def test_stored_after_a_login_that_found_none(server_factory, shards):
    """A login whose check found nothing lets the next logins skip it
    until a message is stored: every later message must still arrive."""
    srv = server_factory(shards=shards)
    for rnd in range(2):
        b = await clients.connect(srv, 'bob', 'b')
        # The broadcast is queued behind the offline check: when bob has
        # his own presence, the check has found nothing.
        await b.next_presence(sender=b.boundjid)
        await clients.disconnect(b)
        bodies = [f'round {rnd} message {i}' for i in range(3)]
        await send_offline(srv, bodies)
        await wait_stored(srv, 3)
        got = await receive_all(srv, bodies)
        assert [m['body'] for m in got] == bodies
        await wait_stored_at_most(srv, 0)


async def test_survives_restart(server):
    await send_offline(server, ['before restart'])
    await wait_stored(server, 1)
    server.restart()
    got = await receive_all(server, ['before restart'])
    check_delay(got[0])


async def test_survives_kill_9(server):
    await send_offline(server, ['before kill'])
    await wait_stored(server, 1)
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait()
    server.proc = None
    server.start()
    got = await receive_all(server, ['before kill'])
    check_delay(got[0])


async def test_limit(server_factory):
    srv = server_factory(limits={'max_offline_messages': 2})
    async with clients.connected(srv, 'alice/a') as (a,):
        errors = asyncio.Queue()
        a.add_event_handler('message_error', errors.put_nowait)
        for i in range(3):
            a.send_message(mto='bob@localhost', mbody=f'm{i}', mtype='chat')
        err = await asyncio.wait_for(errors.get(), 5)
        assert err['error']['condition'] == 'service-unavailable'
        assert err['body'] == 'm2'
        # Returned as sent: the storage stamp is not the sender's.
        assert err.xml.find('{urn:xmpp:delay}delay') is None
    await wait_stored(srv, 2)
    await receive_all(srv, ['m0', 'm1'])


async def test_unknown_account_refused(server):
    async with clients.connected(server, 'alice/a') as (a,):
        errors = asyncio.Queue()
        a.add_event_handler('message_error', errors.put_nowait)
        a.send_message(mto='nobody@localhost', mbody='hello?', mtype='chat')
        err = await asyncio.wait_for(errors.get(), 5)
        assert err['error']['condition'] == 'service-unavailable'
        assert err.xml.find('{urn:xmpp:delay}delay') is None


async def test_headline_not_stored(server):
    await send_offline(server, ['news'], mtype='headline')
    await send_offline(server, ['real'])
    await wait_stored(server, 1)
    await asyncio.sleep(0.2)
    assert stored_count(server) == 1
