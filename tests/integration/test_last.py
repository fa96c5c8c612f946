"""XEP-0012 Last Activity: the server's uptime (§5); an account's time
since its last logout and the status of its last unavailable presence
(§4), 0 while it has a connected resource, only for itself and contacts
with a From subscription (else forbidden; an account that does not exist
gets service-unavailable, RFC 6121 §8.5.1);
persistence across a restart; the disco feature."""

import sqlite3
import time
import xml.etree.ElementTree as ET

import rawstream
from rawstream import NS_CLIENT, q, stanza_error

NS_LAST = 'jabber:iq:last'
NS_DISCO_INFO = 'http://jabber.org/protocol/disco#info'
QUERY = f"<query xmlns='{NS_LAST}'/>"


def last(s, to):
    """(seconds, text) of a last activity result."""
    reply = s.iq('get', QUERY, to=to)
    assert reply.get('type') == 'result', ET.tostring(reply)
    assert reply.get('from') == to, ET.tostring(reply)
    assert len(reply) == 1, ET.tostring(reply)
    query = reply[0]
    assert query.tag == q(NS_LAST, 'query'), ET.tostring(reply)
    assert len(query) == 0, ET.tostring(reply)
    seconds = query.get('seconds')
    assert seconds is not None and seconds.isdigit(), ET.tostring(reply)
    return int(seconds), query.text or ''


def last_error(s, to):
    reply = s.iq('get', QUERY, to=to)
    assert reply.get('type') == 'error', ET.tostring(reply)
    return stanza_error(reply)


def is_presence(sender, ptype):
    def match(e):
        return (e.tag == q(NS_CLIENT, 'presence')
                and e.get('from', '').split('/')[0] == sender
                and e.get('type') == ptype)
    return match


def logout(s, presence=None):
    """Ends the session (after presence, if given) and waits until the
    server has closed the connection."""
    if presence is not None:
        s.send(presence)
    s.close_stream()
    s.wait_closed()
    s.close()


def subscribe(server, user, contact):
    """user gets a subscription to contact's presence: contact's roster
    item for user is From. Both sessions end afterwards."""
    sc = rawstream.logged_in(server, contact)
    su = rawstream.logged_in(server, user)
    try:
        sc.send('<presence/>')
        su.send('<presence/>')
        su.send(f"<presence to='{server.jid(contact)}' type='subscribe'/>")
        sc.wait_for(is_presence(server.jid(user), 'subscribe'))
        sc.send(f"<presence to='{server.jid(user)}' type='subscribed'/>")
        # Sent once contact's roster item was saved (one keyed job).
        su.wait_for(is_presence(server.jid(contact), 'subscribed'))
    finally:
        logout(su)
        logout(sc)


def test_server_uptime(server):
    with rawstream.logged_in(server, 'alice') as a:
        first, text = last(a, 'localhost')
        assert 0 <= first < 60
        assert text == ''
        time.sleep(1.2)
        second, _ = last(a, 'localhost')
        assert second >= first + 1
        assert second < first + 60


def test_disco_feature(server):
    with rawstream.logged_in(server, 'alice') as a:
        reply = a.iq('get', f"<query xmlns='{NS_DISCO_INFO}'/>",
                     to='localhost')
        assert reply.get('type') == 'result', ET.tostring(reply)
        features = [f.get('var') for f in
                    reply.iter(q(NS_DISCO_INFO, 'feature'))]
        assert NS_LAST in features


def test_contact_sees_logout_time_and_status(server):
    subscribe(server, 'alice', 'bob')
    bob = server.jid('bob')
    b = rawstream.logged_in(server, 'bob', 'desk')
    b.send('<presence/>')
    logout(b, "<presence type='unavailable'>"
              '<status>Heading Home &amp; away \u2014 \U0001f3e0</status>'
              '</presence>')
    time.sleep(1.1)
    with rawstream.logged_in(server, 'alice') as a:
        seconds, text = last(a, bob)
        assert 1 <= seconds < 60
        assert text == 'Heading Home & away \u2014 \U0001f3e0'

        # Connected (not yet available) is online too: 0, no text.
        b = rawstream.logged_in(server, 'bob', 'phone')
        assert last(a, bob) == (0, '')
        b.send('<presence/>')
        assert last(a, bob) == (0, '')

        # Ending while available sends unavailable without status: the
        # earlier status is not repeated.
        logout(b)
        time.sleep(1.1)
        seconds, text = last(a, bob)
        assert 1 <= seconds < 60
        assert text == ''


def test_status_of_last_unavailable_only(server):
    subscribe(server, 'alice', 'bob')
    b = rawstream.logged_in(server, 'bob')
    b.send("<presence type='unavailable'><status>first</status></presence>")
    b.send('<presence><status>back</status></presence>')
    logout(b, "<presence type='unavailable'><status>second</status>"
              '</presence>')
    time.sleep(0.3)
    with rawstream.logged_in(server, 'alice') as a:
        assert last(a, server.jid('bob'))[1] == 'second'


def test_own_last_activity(server):
    logout(rawstream.logged_in(server, 'carol', 'one'))
    with rawstream.logged_in(server, 'carol', 'two') as c:
        # The account itself may ask; it is connected, so 0 (§4).
        assert last(c, server.jid('carol')) == (0, '')


def test_unauthorized_requesters_are_forbidden(server):
    subscribe(server, 'alice', 'bob')
    with rawstream.logged_in(server, 'carol') as c, \
            rawstream.logged_in(server, 'bob') as b:
        c.send('<presence/>')
        # carol has no subscription to bob, online or not.
        assert last_error(c, server.jid('bob')) == ('auth', ['forbidden'])
        # bob's subscription is the other way (alice's item: To only).
        assert last_error(b, server.jid('alice')) == ('auth', ['forbidden'])
        # An account that does not exist: RFC 6121 §8.5.1 (the server
        # answers for no one).
        assert last_error(c, 'nobody@localhost') == \
            ('cancel', ['service-unavailable'])
        # Unchanged for everyone with a subscription.
        with rawstream.logged_in(server, 'alice') as a:
            assert last(a, server.jid('bob')) == (0, '')


def test_persists_across_restart(server):
    subscribe(server, 'alice', 'bob')
    b = rawstream.logged_in(server, 'bob')
    logout(b, "<presence type='unavailable'><status>gone fishing</status>"
              '</presence>')
    time.sleep(1.1)
    server.restart()
    with rawstream.logged_in(server, 'alice') as a:
        seconds, text = last(a, server.jid('bob'))
        assert 1 <= seconds < 60
        assert text == 'gone fishing'
        # The server's uptime started again.
        assert last(a, 'localhost')[0] < seconds + 1


def stored_rows(server, user):
    db = sqlite3.connect(f'file:{server.data_dir / "stanzad.db"}?mode=ro',
                         uri=True)
    try:
        return db.execute('SELECT count(*) FROM last_activity WHERE '
                          'host = ? AND user = ?',
                          ('localhost', user)).fetchone()[0]
    finally:
        db.close()


def test_never_logged_out_is_item_not_found(server):
    """An account with no recorded logout (as one from before this
    module): item-not-found while offline, 0 while connected."""
    subscribe(server, 'alice', 'bob')
    time.sleep(0.3)
    assert stored_rows(server, 'bob') == 1
    db = sqlite3.connect(server.data_dir / 'stanzad.db', timeout=10)
    with db:
        db.execute("DELETE FROM last_activity WHERE user = 'bob'")
    db.close()
    with rawstream.logged_in(server, 'alice') as a:
        assert last_error(a, server.jid('bob')) == \
            ('cancel', ['item-not-found'])
        with rawstream.logged_in(server, 'bob'):
            assert last(a, server.jid('bob')) == (0, '')


def test_removed_with_the_account(server):
    subscribe(server, 'alice', 'bob')
    time.sleep(0.3)
    assert stored_rows(server, 'bob') == 1
    server.ctl('user', 'del', server.jid('bob'))
    assert stored_rows(server, 'bob') == 0
    server.add_user('bob', 'bob-secret')
    # The new bob has no roster: alice is no longer allowed.
    with rawstream.logged_in(server, 'alice') as a:
        assert last_error(a, server.jid('bob')) == ('auth', ['forbidden'])
