"""XEP-0077 in-band registration: the stream feature and the form before
authentication, account creation (then a login with slixmpp), its refusals
(conflict, not-acceptable, bad-request, the per-address rate limit, the
whole thing switched off), password change, and account removal, which
ends every session of the account with <not-authorized/> (on any shard)
and deletes its stored data. Registration streams are raw (slixmpp
registers only through its feature handler, used once below); the
authenticated side is slixmpp where it has the call."""

import asyncio
import re
import sqlite3
import time
import xml.etree.ElementTree as ET
from xml.sax.saxutils import escape

import pytest
from slixmpp.exceptions import IqError

import clients
import rawstream
from rawstream import NS_SASL, RawStream, q, stanza_error

NS_REGISTER = 'jabber:iq:register'
NS_REGISTER_FEATURE = 'http://jabber.org/features/iq-register'
NS_ROSTER = 'jabber:iq:roster'
NS_VCARD = 'vcard-temp'
NS_DISCO_INFO = 'http://jabber.org/protocol/disco#info'

REG_ON = {'registration': True, 'limits': {'registration_interval': '0s'}}


def preauth_stream(server, direct_tls=False):
    """A RawStream through TLS, not authenticated; returns (stream,
    features)."""
    port = server.tls_port if direct_tls else server.c2s_port
    s = RawStream(port, direct_tls=direct_tls)
    return s, s.secure()


def query(*fields):
    return f"<query xmlns='{NS_REGISTER}'>{''.join(fields)}</query>"


def field(name, value=None):
    if value is None:
        return f'<{name}/>'
    return f'<{name}>{escape(value)}</{name}>'


def register(s, user, password):
    """Sends a registration set; returns the reply."""
    fields = []
    if user is not None:
        fields.append(field('username', user))
    if password is not None:
        fields.append(field('password', password))
    return s.iq('set', query(*fields))


def expect_result(reply):
    assert reply.get('type') == 'result', ET.tostring(reply)


def expect_error(reply, condition, err_type=None):
    assert reply.get('type') == 'error', ET.tostring(reply)
    etype, conds = stanza_error(reply)
    assert conds == [condition], ET.tostring(reply)
    if err_type is not None:
        assert etype == err_type, ET.tostring(reply)
    # §3.3 and common sense: a refused request is not echoed back (it
    # may hold a password).
    assert reply.find(q(NS_REGISTER, 'query')) is None, ET.tostring(reply)


def plain_login(server, user, password):
    """True if SASL PLAIN succeeds for user/password on a fresh stream."""
    with RawStream(server.c2s_port) as s:
        s.secure()
        result = s.auth_plain(user, password)
        return result.tag == q(NS_SASL, 'success')


def accounts(server):
    return server.ctl('user', 'list', 'localhost').stdout.split()


def stored_rows(server, user):
    """Rows for user in every per-user table, read straight from the
    database: {table: count} for the tables that have any."""
    db = sqlite3.connect(f'file:{server.data_dir / "stanzad.db"}?mode=ro',
                         uri=True, timeout=5)
    try:
        tables = [r[0] for r in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")]
        found = {}
        for t in tables:
            cols = [c[1] for c in db.execute(f'PRAGMA table_info("{t}")')]
            col = 'username' if 'username' in cols else 'user'
            if col in cols:
                n = db.execute(f'SELECT count(*) FROM "{t}" WHERE {col} = ?',
                               (user,)).fetchone()[0]
                if n:
                    found[t] = n
        return found
    finally:
        db.close()


# ---- before authentication ----


def test_feature_and_form(server_factory):
    """Registration on: the feature is offered after TLS (both listeners)
    and not before it; a get returns instructions, username, password."""
    server = server_factory(**REG_ON)
    with RawStream(server.c2s_port) as s:
        s.open()
        plain = s.features()
        assert plain.find(q(NS_REGISTER_FEATURE, 'register')) is None
    for direct_tls in (False, True):
        s, feats = preauth_stream(server, direct_tls)
        with s:
            assert feats.find(q(NS_REGISTER_FEATURE, 'register')) is not None
            reply = s.iq('get', query())
            expect_result(reply)
            form = reply.find(q(NS_REGISTER, 'query'))
            assert form is not None, ET.tostring(reply)
            names = [c.tag for c in form]
            assert names == [q(NS_REGISTER, n) for n in
                             ('instructions', 'username', 'password')]
            assert form.find(q(NS_REGISTER, 'instructions')).text
            assert not form.find(q(NS_REGISTER, 'username')).text


def test_no_register_iq_before_tls(server_factory):
    """Registration needs TLS: before it, the iq ends the stream as any
    stanza before authentication does."""
    server = server_factory(**REG_ON)
    with RawStream(server.c2s_port) as s:
        s.open()
        s.features()
        s.send("<iq type='set' id='r1'>" +
               query(field('username', 'sneaky'), field('password', 'pw'))
               + '</iq>')
        s.expect_stream_error('not-authorized')
    assert 'sneaky' not in accounts(server)


async def test_register_then_login(server_factory):
    """A registered account logs in (slixmpp, SCRAM and PLAIN) with its
    password, and only with it; the username is nodeprep'd."""
    server = server_factory(**REG_ON)
    s, _ = preauth_stream(server)
    with s:
        expect_result(register(s, 'NewBie', 'n3w-secret \u00e9'))
        # The same stream can then authenticate with the new account.
        result = s.auth_plain('newbie', 'n3w-secret \u00e9')
        assert result.tag == q(NS_SASL, 'success'), ET.tostring(result)
    assert 'newbie' in accounts(server)
    server.passwords['newbie'] = 'n3w-secret \u00e9'
    for mech in ('SCRAM-SHA-256', 'SCRAM-SHA-1', 'PLAIN'):
        async with clients.connected(server, 'newbie/x', mech=mech) as (c,):
            assert c.boundjid.bare == 'newbie@localhost'
    with pytest.raises(clients.LoginError):
        await clients.connect(server, 'newbie', password='wrong')


async def test_slixmpp_registers(server_factory):
    """slixmpp's own XEP-0077 client (the stream feature, get, set) makes
    an account and then logs in to it in the same connection."""
    server = server_factory(**REG_ON)
    client = clients.TestClient('fresh@localhost', 'fresh-pw')
    client.register_plugin('xep_0077')
    # slixmpp 1.8 queues every stanza but bind and session until the
    # session starts, its own registration iqs included (so its XEP-0077
    # client cannot register); this lets them out, as its tests do.
    client._always_send_everything = True
    registered = asyncio.get_running_loop().create_future()

    async def on_register(form):
        assert form['register']['instructions']
        iq = client.Iq()
        iq['type'] = 'set'
        iq['register']['username'] = 'fresh'
        iq['register']['password'] = 'fresh-pw'
        try:
            await iq.send(timeout=10)
            registered.set_result(True)
        except IqError as e:
            registered.set_exception(AssertionError(str(e.iq)))

    started = asyncio.get_running_loop().create_future()
    client.add_event_handler('register', on_register)
    client.add_event_handler('session_start',
                             lambda _: started.set_result(True))
    client.connect(('127.0.0.1', server.c2s_port), force_starttls=True)
    try:
        await asyncio.wait_for(registered, 15)
        await asyncio.wait_for(started, 15)
        assert client.boundjid.bare == 'fresh@localhost'
    finally:
        await clients.disconnect(client)
    assert 'fresh' in accounts(server)


def test_registration_off(server_factory):
    """Registration off (the default): no feature, get and set answered
    <service-unavailable/>, no account made; the stream goes on."""
    server = server_factory()
    s, feats = preauth_stream(server)
    with s:
        assert feats.find(q(NS_REGISTER_FEATURE, 'register')) is None
        expect_error(s.iq('get', query()), 'service-unavailable', 'cancel')
        expect_error(register(s, 'intruder', 'pw'), 'service-unavailable',
                     'cancel')
        result = s.auth_plain('alice', server.passwords['alice'])
        assert result.tag == q(NS_SASL, 'success')
    assert 'intruder' not in accounts(server)
    assert not plain_login(server, 'intruder', 'pw')


def test_other_preauth_iq_unchanged(server_factory):
    """Pre-auth iqs that are not registration still end the stream."""
    server = server_factory(**REG_ON)
    cases = [
        f"<iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>",
        f"<iq type='result' id='p2'/>",
        f"<iq type='get'>{query()}</iq>",  # no id
        f"<iq type='get' id='p3'>{query()}{query()}</iq>",  # two children
    ]
    for stanza in cases:
        s, _ = preauth_stream(server)
        with s:
            s.send(stanza)
            s.expect_stream_error('not-authorized')


def test_conflict(server_factory):
    """An existing name (after nodeprep) is a <conflict/>; its password is
    not changed."""
    server = server_factory(**REG_ON)
    s, _ = preauth_stream(server)
    with s:
        for name in ('alice', 'ALICE', 'Alice'):
            expect_error(register(s, name, 'hijack'), 'conflict', 'cancel')
    assert plain_login(server, 'alice', server.passwords['alice'])
    assert not plain_login(server, 'alice', 'hijack')


def test_not_acceptable_and_bad_request(server_factory):
    """Missing, empty or invalid username or password: <not-acceptable/>;
    a field given twice: <bad-request/>; <remove/> unauthenticated:
    <unexpected-request/>. None of them creates an account, and the
    stream stays usable."""
    server = server_factory(**REG_ON)
    refused = [
        (None, 'pw'), ('', 'pw'), ('   ', 'pw'),
        ('a@b', 'pw'), ('x/y', 'pw'), ("o'neil", 'pw'), ('l' * 1100, 'pw'),
        ('nopw', None), ('nopw', ''),
        ('ctrlpw', '\u0085bad'),     # SASLprep: prohibited control
        ('softpw', '\u00ad'),        # SASLprep maps it to nothing
        ('longpw', 'p' * 1025),
    ]
    s, _ = preauth_stream(server)
    with s:
        for user, password in refused:
            reply = register(s, user, password)
            expect_error(reply, 'not-acceptable', 'modify')
        expect_error(s.iq('set', query(field('username', 'twice'),
                                       field('username', 'twice2'),
                                       field('password', 'pw'))),
                     'bad-request', 'modify')
        expect_error(s.iq('set', query(field('remove'))),
                     'unexpected-request')
        result = s.auth_plain('bob', server.passwords['bob'])
        assert result.tag == q(NS_SASL, 'success')
    made = set(accounts(server)) - set(server.passwords)
    assert not made, made


def test_rate_limit(server_factory):
    """One successful registration per address per interval (default
    60 s): the next one gets <resource-constraint/> (wait) and makes no
    account; refused attempts do not use the slot."""
    server = server_factory(registration=True)
    s, _ = preauth_stream(server)
    with s:
        expect_error(register(s, 'alice', 'x'), 'conflict')
        expect_error(register(s, '', 'x'), 'not-acceptable')
        expect_result(register(s, 'first', 'pw1'))
    s, _ = preauth_stream(server)
    with s:
        expect_error(register(s, 'second', 'pw2'), 'resource-constraint',
                     'wait')
    assert 'first' in accounts(server)
    assert 'second' not in accounts(server)


def test_rate_limit_expires(server_factory):
    """After the interval, the address may register again."""
    server = server_factory(registration=True,
                            limits={'registration_interval': '1s'})
    s, _ = preauth_stream(server)
    with s:
        expect_result(register(s, 'one', 'pw'))
        expect_error(register(s, 'two', 'pw'), 'resource-constraint')
        time.sleep(1.2)
        expect_result(register(s, 'two', 'pw'))
    assert {'one', 'two'} <= set(accounts(server))


def test_pipelined_register_and_auth(server_factory):
    """A registration and the SASL auth that uses it, sent in one write:
    the stream reads the auth only after the account exists."""
    server = server_factory(**REG_ON)
    s, _ = preauth_stream(server)
    with s:
        auth = rawstream.b64(b'\0piped\0piped-pw')
        s.send("<iq type='set' id='reg1'>" +
               query(field('username', 'piped'),
                     field('password', 'piped-pw')) +
               f"</iq><auth xmlns='{NS_SASL}' mechanism='PLAIN'>{auth}"
               '</auth>')
        expect_result(s.read_element())
        result = s.read_element()
        assert result.tag == q(NS_SASL, 'success'), ET.tostring(result)


# ---- authenticated ----


def test_registered_get_and_disco(server_factory):
    """After binding, a get says <registered/> with the username; the
    server lists jabber:iq:register in disco#info only with registration
    on."""
    for overrides, advertised in ((REG_ON, True), ({}, False)):
        server = server_factory(**overrides)
        with rawstream.logged_in(server, 'carol') as s:
            for to in ('localhost', None):
                reply = s.iq('get', query(), to=to)
                expect_result(reply)
                got = reply.find(q(NS_REGISTER, 'query'))
                assert got.find(q(NS_REGISTER, 'registered')) is not None
                assert got.find(q(NS_REGISTER, 'username')).text == 'carol'
                assert got.find(q(NS_REGISTER, 'password')) is None
            # not someone else's
            expect_error(s.iq('get', query(), to='bob@localhost'),
                         'service-unavailable')
            info = s.iq('get', f"<query xmlns='{NS_DISCO_INFO}'/>",
                        to='localhost')
            feats = {f.get('var') for f in
                     info.find(q(NS_DISCO_INFO, 'query'))}
            assert (NS_REGISTER in feats) == advertised, feats
        server.stop()


async def test_password_change(server_factory):
    """slixmpp changes its password (registration off: still allowed);
    the new one logs in, the old one no longer does."""
    server = server_factory()
    async with clients.connected(server, 'alice/a') as (a,):
        a.register_plugin('xep_0077')
        await a['xep_0077'].change_password('n3w-alice', jid='localhost')
    assert not plain_login(server, 'alice', 'alice-secret')
    server.passwords['alice'] = 'n3w-alice'
    for mech in ('SCRAM-SHA-256', 'PLAIN'):
        async with clients.connected(server, 'alice/b', mech=mech):
            pass
    with pytest.raises(clients.LoginError):
        await clients.connect(server, 'alice', password='alice-secret')


def test_password_change_refused(server_factory):
    """Another username: <not-authorized/>; missing or empty fields:
    <bad-request/>; a password SASLprep refuses: <not-acceptable/>. The
    password stays what it was."""
    server = server_factory()
    with rawstream.logged_in(server, 'bob') as s:
        cases = [
            ((field('username', 'alice'), field('password', 'x')),
             'not-authorized'),
            ((field('username', 'nobody'), field('password', 'x')),
             'not-authorized'),
            ((field('password', 'x'),), 'bad-request'),
            ((field('username', 'bob'),), 'bad-request'),
            ((field('username', 'bob'), field('password')), 'bad-request'),
            ((field('username', 'bob'), field('password', '')),
             'bad-request'),
            ((field('username', 'bob'), field('password', 'a\u0085')),
             'not-acceptable'),
            ((field('username', 'bob'), field('password', 'x'),
              field('password', 'y')), 'bad-request'),
            ((field('username', 'bob'), field('remove')), 'bad-request'),
            ((), 'bad-request'),
        ]
        for fields, cond in cases:
            expect_error(s.iq('set', query(*fields), to='localhost'), cond)
        # the own name in another case is the own name
        expect_result(s.iq('set', query(field('username', 'BOB'),
                                        field('password', 'bob-2')),
                           to='localhost'))
    assert plain_login(server, 'bob', 'bob-2')
    assert not plain_login(server, 'bob', 'bob-secret')
    assert not plain_login(server, 'alice', 'x')


def bound_shard(server, jid):
    found = server.wait_for_log(rf'bound {re.escape(jid)} on shard (\d)')
    return found[-1].group(1)


def test_remove_kicks_every_session(server_factory):
    """<remove/>: result first, then every session of the account (here on
    both shards) ends with <not-authorized/>; others stay; the account
    cannot log in any more."""
    server = server_factory(shards=2)
    sessions, shards = [], set()
    try:
        for i in range(16):
            s = rawstream.logged_in(server, 'alice', f'r{i}')
            sessions.append(s)
            shards.add(bound_shard(server, s.jid))
            if shards == {'0', '1'} and len(sessions) >= 3:
                break
        assert shards == {'0', '1'}, shards
        with rawstream.logged_in(server, 'bob') as bob:
            first, rest = sessions[0], sessions[1:]
            reply = first.iq('set', query(field('remove')))
            expect_result(reply)
            first.expect_stream_error('not-authorized')
            for s in rest:
                s.expect_stream_error('not-authorized')
            # bob is untouched
            expect_result(bob.iq('get', "<ping xmlns='urn:xmpp:ping'/>",
                                 to='localhost'))
    finally:
        for s in sessions:
            s.close()
    assert 'alice' not in accounts(server)
    assert not plain_login(server, 'alice', server.passwords['alice'])
    # The ended sessions wrote nothing back (XEP-0012 logout time, ...):
    # their jobs run after the purge, so give them time to be wrong.
    time.sleep(0.5)
    assert stored_rows(server, 'alice') == {}
    assert stored_rows(server, 'bob') != {}  # the check sees rows


async def test_remove_with_slixmpp(server_factory):
    """slixmpp's cancel_registration: result, then the stream error."""
    server = server_factory()
    async with clients.connected(server, 'carol/a') as (c,):
        c.register_plugin('xep_0077')
        await c['xep_0077'].cancel_registration(jid='localhost')
        await clients.until(lambda: c.stream_errors, what='stream error')
        cond = c.stream_errors[0]['condition']
        assert cond == 'not-authorized', c.stream_errors[0]
    with pytest.raises(clients.LoginError):
        await clients.connect(server, 'carol')


def test_remove_deletes_data(server_factory):
    """Data stored before removal (vCard, roster) is gone for a new
    account registered under the same name."""
    server = server_factory(**REG_ON)
    vcard = f"<vCard xmlns='{NS_VCARD}'><FN>Old Carol</FN></vCard>"
    roster_item = (f"<query xmlns='{NS_ROSTER}'><item jid='bob@localhost' "
                   "name='Bobby'/></query>")
    with rawstream.logged_in(server, 'carol') as s:
        expect_result(s.iq('set', vcard))
        expect_result(s.iq('set', roster_item))
        got = s.iq('get', f"<vCard xmlns='{NS_VCARD}'/>")
        assert 'Old Carol' in ET.tostring(got, encoding='unicode')
        got = s.iq('get', f"<query xmlns='{NS_ROSTER}'/>")
        assert len(got.find(q(NS_ROSTER, 'query'))) == 1
        expect_result(s.iq('set', query(field('remove')), to='localhost'))
        s.expect_stream_error('not-authorized')
    assert server.ctl('roster', 'list', 'carol@localhost',
                      check=False).stdout == ''
    s, _ = preauth_stream(server)
    with s:
        expect_result(register(s, 'carol', 'carol-2'))
    server.passwords['carol'] = 'carol-2'
    with rawstream.logged_in(server, 'carol') as s:
        got = s.iq('get', f"<vCard xmlns='{NS_VCARD}'/>")
        expect_result(got)
        card = got.find(q(NS_VCARD, 'vCard'))
        assert card is not None and len(card) == 0, ET.tostring(got)
        got = s.iq('get', f"<query xmlns='{NS_ROSTER}'/>")
        expect_result(got)
        assert len(got.find(q(NS_ROSTER, 'query'))) == 0, ET.tostring(got)


def roster_items(s):
    got = s.iq('get', f"<query xmlns='{NS_ROSTER}'/>")
    expect_result(got)
    return {i.get('jid'): (i.get('subscription'), i.get('ask'))
            for i in got.find(q(NS_ROSTER, 'query'))}


def test_remove_cancels_subscriptions(server_factory):
    """XEP-0077 §3.2: removal cancels the subscriptions in the account's
    roster (as RFC 6121 §2.5.2 removal of each item would): bob, mutual
    contact, ends with None both ways; carol's pending request is
    refused."""
    from test_blocking import available, is_presence, subscribe
    server = server_factory()
    with rawstream.logged_in(server, 'alice', 'a') as a, \
            rawstream.logged_in(server, 'bob', 'b') as b, \
            rawstream.logged_in(server, 'carol', 'c') as c:
        for s in (a, b, c):
            roster_items(s)  # interested: gets roster pushes
        available(a, b, c)
        subscribe(a, b)
        subscribe(b, a)
        c.send("<presence to='alice@localhost' type='subscribe'/>")
        a.wait_for(lambda e: is_presence(e, 'carol@localhost',
                                         'subscribe'), 8)
        assert roster_items(b)['alice@localhost'] == ('both', None)
        assert roster_items(c)['alice@localhost'] == ('none', 'subscribe')
        expect_result(a.iq('set', query(field('remove')), to='localhost'))
        a.expect_stream_error('not-authorized')
        b.wait_for(lambda e: is_presence(e, 'alice@localhost',
                                         'unavailable'), 8)
        c.wait_for(lambda e: is_presence(e, 'alice@localhost',
                                         'unsubscribed'), 8)
        assert roster_items(b)['alice@localhost'] == ('none', None)
        assert roster_items(c)['alice@localhost'] == ('none', None)


def test_session_bound_after_removal_is_ended(server):
    """A login that passed SASL before the account was removed, and binds
    after the removal ended its sessions, is ended too."""
    late = RawStream(server.c2s_port)
    with late:
        late.secure()
        late.authenticate('alice', server.passwords['alice'])
        with rawstream.logged_in(server, 'alice', 'r') as s:
            expect_result(s.iq('set', query(field('remove'))))
            s.expect_stream_error('not-authorized')
        late.jid = late.bind('late')
        late.expect_stream_error('not-authorized')
    assert 'alice' not in accounts(server)
