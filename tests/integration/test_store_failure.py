"""Storage failures (issue 4) with real failures, no fake backend: a full
disk (the server runs under RLIMIT_FSIZE, so its writes past the limit fail
with EFBIG) and a locked database (this test holds SQLite's write lock from
its own connection past store.busy_timeout).

Either way every write the client asked for is answered with
<resource-constraint/> type 'wait' (the choice documented in
docs/internals/store.md, "Failures"): vCard, private XML, roster item,
block list; an offline message goes back to its sender with that error
rather than being lost. The server stays up and keeps serving reads, pings
and other users; a write that errored left nothing behind, what was
acknowledged before is intact, and writes work again once there is room
(restart without the limit) or the lock is gone.
"""

import resource
import sqlite3
import time
import xml.etree.ElementTree as ET

import rawstream
from rawstream import NS_CLIENT, q, stanza_error

NS_VCARD = 'vcard-temp'
NS_PRIVATE = 'jabber:iq:private'
NS_ROSTER = 'jabber:iq:roster'
NS_BLOCKING = 'urn:xmpp:blocking'
NS_PING = 'urn:xmpp:ping'
DOMAIN = 'localhost'

# Below SQLite's automatic checkpoint (1000 pages of 4 KiB), so the WAL
# itself reaches the limit: no checkpoint ever makes room again.
FSIZE_LIMIT = 1024 * 1024
BIG = 60000           # bytes of text in a filler vCard (VCARD_MAX 64 KiB)
FILL_MAX = 400        # bound on filler writes, far above what 1 MiB takes
BUSY_TIMEOUT = 1.0    # store.busy_timeout in the lock test, seconds
QUIET = 1.0           # how long "nothing more arrives" is listened for


def fsize_limit(limit):
    def preexec():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return preexec


# -- requests ---------------------------------------------------------------

def vcard(text):
    return f"<vCard xmlns='{NS_VCARD}'><DESC>{text}</DESC></vCard>"


def private(ns, text):
    return (f"<query xmlns='{NS_PRIVATE}'><data xmlns='{ns}'>{text}</data>"
            '</query>')


def roster_item(jid, name):
    return (f"<query xmlns='{NS_ROSTER}'><item jid='{jid}' name='{name}'/>"
            '</query>')


def block_item(jid):
    return f"<block xmlns='{NS_BLOCKING}'><item jid='{jid}'/></block>"


def ping():
    return f"<ping xmlns='{NS_PING}'/>"


# -- answers ----------------------------------------------------------------

def ok(reply):
    assert reply.get('type') == 'result', ET.tostring(reply)
    return reply


def refused_for_storage(reply):
    """A storage failure, as the client must see it: resource-constraint,
    type wait (try again later), with a text."""
    assert reply.get('type') == 'error', ET.tostring(reply)
    etype, conds = stanza_error(reply)
    assert conds == ['resource-constraint'], ET.tostring(reply)
    assert etype == 'wait', ET.tostring(reply)


def vcard_text(s, user):
    reply = ok(s.iq('get', f"<vCard xmlns='{NS_VCARD}'/>",
                    to=f'{user}@{DOMAIN}'))
    desc = reply.find(f'{q(NS_VCARD, "vCard")}/{q(NS_VCARD, "DESC")}')
    return desc.text if desc is not None else None


def private_text(s, ns):
    reply = ok(s.iq('get', f"<query xmlns='{NS_PRIVATE}'>"
                           f"<data xmlns='{ns}'/></query>"))
    data = reply.find(f'{q(NS_PRIVATE, "query")}/{q(ns, "data")}')
    assert data is not None, ET.tostring(reply)
    return data.text


def roster(s):
    reply = ok(s.iq('get', f"<query xmlns='{NS_ROSTER}'/>"))
    return {i.get('jid'): i.get('name')
            for i in reply.iter(q(NS_ROSTER, 'item'))}


def blocklist(s):
    reply = ok(s.iq('get', f"<blocklist xmlns='{NS_BLOCKING}'/>"))
    return sorted(i.get('jid') for i in reply.iter(q(NS_BLOCKING, 'item')))


def is_message(body):
    def match(e):
        b = e.find(q(NS_CLIENT, 'body'))
        return (e.tag == q(NS_CLIENT, 'message') and b is not None
                and b.text == body)
    return match


def bounced(s, body, timeout=10):
    """The error bounce of our message `body`."""
    return take(s, lambda e: is_message(body)(e)
                and e.get('type') == 'error', timeout)


def offline_messages(server, user):
    """Logs `user` in with initial presence; the bodies of the stored
    messages it gets."""
    with rawstream.logged_in(server, user) as s:
        s.send('<presence/>')
        bodies = []
        deadline = time.monotonic() + QUIET
        while True:
            try:
                e = s.read_element(max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                return bodies
            b = e.find(q(NS_CLIENT, 'body'))
            if e.tag == q(NS_CLIENT, 'message') and b is not None:
                bodies.append(b.text)
                deadline = time.monotonic() + QUIET


def take(s, predicate, timeout=10):
    """The first element, already set aside by an earlier wait or still
    to come, that matches."""
    for i, e in enumerate(s.skipped):
        if predicate(e):
            del s.skipped[i]
            return e
    return s.wait_for(predicate, timeout)


def nothing_more(s, what):
    """No further stanza matching `what` within QUIET."""
    deadline = time.monotonic() + QUIET
    while True:
        try:
            e = s.read_element(max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            return
        assert not what(e), ET.tostring(e)


# -- disk full --------------------------------------------------------------

def fill(s, make, what):
    """Sends writes made by make(i) until one fails; returns how many
    succeeded (the last success is make(n - 1))."""
    for i in range(FILL_MAX):
        reply = s.iq('set', make(i), timeout=20)
        if reply.get('type') == 'error':
            refused_for_storage(reply)
            return i
    raise AssertionError(f'{what}: {FILL_MAX} writes and still room')


def test_disk_full(server_factory):
    srv = server_factory(preexec=fsize_limit(FSIZE_LIMIT), log_level='info')
    bob_jid = f'bob@{DOMAIN}'
    carol_jid = f'carol@{DOMAIN}'
    with rawstream.logged_in(srv, 'alice') as a, \
            rawstream.logged_in(srv, 'bob') as b:
        # Acknowledged before the disk fills: must all survive.
        ok(a.iq('set', vcard('alice-before')))
        ok(a.iq('set', private('urn:test:kept', 'kept-before')))
        ok(a.iq('set', roster_item(bob_jid, 'Bob before')))
        ok(a.iq('set', block_item('spam-before@example.net')))
        b.message(carol_jid, 'stored-before')
        # Fill: big writes first, then the smallest kind (one page each),
        # until not even one page fits.
        big = fill(b, lambda i: vcard(f'big-{i}-' + 'x' * BIG), 'big')
        assert big >= 1, 'the very first big write failed'
        small = fill(b, lambda i: private('urn:test:fill', f'fill-{i}'),
                     'small')
        assert srv.alive(), 'stanzad died when the file size limit hit'

        # Every write is refused with an error, none is lost quietly.
        refused_for_storage(a.iq('set', vcard('alice-refused')))
        refused_for_storage(a.iq('set', private('urn:test:kept',
                                                'kept-refused')))
        refused_for_storage(a.iq('set', private('urn:test:new', 'new')))
        refused_for_storage(a.iq('set', roster_item(carol_jid, 'Carol')))
        refused_for_storage(a.iq('set', block_item('spam@example.net')))
        b.message(carol_jid, 'refused-while-full')
        refused_for_storage(bounced(b, 'refused-while-full'))

        # Still up: reads, pings, logins and other users are served.
        ok(a.iq('get', ping(), to=DOMAIN))
        assert vcard_text(a, 'alice') == 'alice-before'
        assert vcard_text(a, 'bob').startswith(f'big-{big - 1}-')
        assert private_text(a, 'urn:test:kept') == 'kept-before'
        assert private_text(a, 'urn:test:new') is None
        assert roster(a) == {bob_jid: 'Bob before'}
        assert blocklist(a) == ['spam-before@example.net']
        with rawstream.logged_in(srv, 'wendy') as w:
            ok(w.iq('get', ping(), to=DOMAIN))
            w.message(a.jid, 'online-delivery')
            a.wait_for(is_message('online-delivery'), 10)
        assert srv.alive()

    # Room again: what was acknowledged is there, what failed is not.
    srv.preexec = None
    srv.restart()
    with rawstream.logged_in(srv, 'alice') as a:
        assert vcard_text(a, 'alice') == 'alice-before'
        assert vcard_text(a, 'bob').startswith(f'big-{big - 1}-')
        assert private_text(a, 'urn:test:kept') == 'kept-before'
        assert private_text(a, 'urn:test:new') is None
        assert roster(a) == {bob_jid: 'Bob before'}
        assert blocklist(a) == ['spam-before@example.net']
        # and writes work again
        ok(a.iq('set', vcard('alice-after')))
        assert vcard_text(a, 'alice') == 'alice-after'
    with rawstream.logged_in(srv, 'bob') as b:
        assert private_text(b, 'urn:test:fill') == (
            f'fill-{small - 1}' if small else None)
    assert offline_messages(srv, 'carol') == ['stored-before']


# -- locked database ----------------------------------------------------------

def hold_write_lock(srv):
    """Our own connection holding the database's write lock. In WAL mode
    readers never block and only a write transaction blocks writers, so
    BEGIN IMMEDIATE (EXCLUSIVE is the same in WAL mode) is what a backup
    tool or a second stanzactl does."""
    con = sqlite3.connect(srv.data_dir / 'stanzad.db', timeout=10,
                          isolation_level=None)
    assert con.execute('PRAGMA journal_mode').fetchone()[0] == 'wal'
    con.execute('BEGIN IMMEDIATE')
    return con


def test_locked_database(server_factory):
    srv = server_factory(
        store={'busy_timeout': f'{int(BUSY_TIMEOUT * 1000)}ms'})
    bob_jid = f'bob@{DOMAIN}'
    carol_jid = f'carol@{DOMAIN}'
    with rawstream.logged_in(srv, 'alice') as a, \
            rawstream.logged_in(srv, 'bob') as b:
        ok(a.iq('set', vcard('alice-before')))
        con = hold_write_lock(srv)
        try:
            # A write waits for the lock; meanwhile the shard is free:
            # a ping and a message between online users go through.
            start = time.monotonic()
            a.send(f"<iq type='set' id='w1'>{vcard('alice-locked')}</iq>")
            a.send(f"<iq type='get' id='p1' to='{DOMAIN}'>{ping()}</iq>")
            b.message(a.jid, 'while-locked')
            ok(take(a, lambda e: e.get('id') == 'p1'))
            take(a, is_message('while-locked'))
            assert time.monotonic() - start < BUSY_TIMEOUT * 0.8, \
                'the ping or the message waited for the locked write'
            # A login's reads (SCRAM credentials, the avatar hash at bind,
            # the roster) run on the shard's own read connection: they do
            # not queue behind the write waiting on the pool's.
            w = rawstream.logged_in(srv, 'walter', mechanism='SCRAM-SHA-256')
            try:
                assert roster(w) == {}
                assert time.monotonic() - start < BUSY_TIMEOUT * 0.8, \
                    'the login waited for the locked write'
            finally:
                w.close()
            assert not [e for e in a.skipped if e.get('id') == 'w1'], \
                'the write was answered before the lock timed out'
            reply = take(a, lambda e: e.get('id') == 'w1')
            waited = time.monotonic() - start
            assert waited >= BUSY_TIMEOUT * 0.9, \
                'the write did not wait for the lock'
            assert waited < BUSY_TIMEOUT * 4, \
                f'store.busy_timeout not applied: the write waited {waited}s'
            refused_for_storage(reply)
            # The other writes: refused too, the message bounced.
            refused_for_storage(a.iq('set', roster_item(bob_jid, 'Bob')))
            refused_for_storage(a.iq('set', block_item('spam@example.net')))
            b.message(carol_jid, 'refused-while-locked')
            refused_for_storage(bounced(b, 'refused-while-locked'))
            # Reads are served (WAL: the lock does not block readers).
            assert vcard_text(a, 'alice') == 'alice-before'
            assert srv.alive()
        finally:
            con.execute('ROLLBACK')
            con.close()

        # Lock gone: writes work, the refused ones left nothing.
        assert roster(a) == {}
        assert blocklist(a) == []
        assert vcard_text(a, 'alice') == 'alice-before'
        ok(a.iq('set', vcard('alice-after')))
        assert vcard_text(a, 'alice') == 'alice-after'
        ok(a.iq('set', roster_item(bob_jid, 'Bob')))
        assert roster(a) == {bob_jid: 'Bob'}
        b.message(carol_jid, 'stored-after')
        ok(b.iq('get', ping(), to=DOMAIN))
        nothing_more(b, lambda e: e.get('type') == 'error')
    assert offline_messages(srv, 'carol') == ['stored-after']
