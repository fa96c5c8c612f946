"""XEP-0191 blocking command end to end over raw streams: the disco
feature; the list (empty, block, unblock one, unblock all) and its pushes
to every resource; enforcement both ways (a blocked sender's message
bounces with <service-unavailable/> and is not delivered; a message to a
blocked JID gets <not-acceptable/> with <blocked/>); bare, domain and
full-JID matching; persistence across a reconnect; <forbidden/> for
another account; unavailable presence to a subscribed contact on block,
and current presence again on unblock."""

import uuid
import xml.etree.ElementTree as ET

import rawstream
from rawstream import NS_CLIENT, q, stanza_error
from test_offline import stored_count

NS_BLOCKING = 'urn:xmpp:blocking'
NS_BLOCKING_ERRORS = 'urn:xmpp:blocking:errors'
NS_DISCO_INFO = 'http://jabber.org/protocol/disco#info'
WAIT = 8


def items(*jids):
    return ''.join(f"<item jid='{j}'/>" for j in jids)


def block(s, *jids):
    return s.iq('set', f"<block xmlns='{NS_BLOCKING}'>{items(*jids)}</block>")


def unblock(s, *jids):
    return s.iq('set',
                f"<unblock xmlns='{NS_BLOCKING}'>{items(*jids)}</unblock>")


def blocklist(s, to=None):
    reply = s.iq('get', f"<blocklist xmlns='{NS_BLOCKING}'/>", to=to)
    assert reply.get('type') == 'result', ET.tostring(reply)
    assert len(reply) == 1, ET.tostring(reply)
    bl = reply[0]
    assert bl.tag == q(NS_BLOCKING, 'blocklist'), ET.tostring(reply)
    return sorted(i.get('jid') for i in bl)


def expect_result(reply):
    assert reply.get('type') == 'result', ET.tostring(reply)


def expect_error(reply, condition):
    assert reply.get('type') == 'error', ET.tostring(reply)
    assert stanza_error(reply)[1] == [condition], ET.tostring(reply)


def take(s, predicate, timeout=WAIT):
    """The first element, already skipped or still to come, that
    matches (replies are awaited by id, so other stanzas may have been
    set aside meanwhile)."""
    for i, e in enumerate(s.skipped):
        if predicate(e):
            del s.skipped[i]
            return e
    return s.wait_for(predicate, timeout)


def is_push(e, name):
    return (e.tag == q(NS_CLIENT, 'iq') and e.get('type') == 'set' and
            len(e) == 1 and e[0].tag == q(NS_BLOCKING, name))


def expect_push(s, name, *jids):
    """The next push of <block/> or <unblock/>; checks its items and
    addressing (from the bare JID, to the resource), answers it."""
    push = take(s, lambda e: is_push(e, name))
    assert push.get('to') == s.jid, ET.tostring(push)
    assert push.get('from') in (None, s.jid.split('/')[0]), \
        ET.tostring(push)
    assert sorted(i.get('jid') for i in push[0]) == sorted(jids), \
        ET.tostring(push)
    s.send(f"<iq type='result' id='{push.get('id')}'/>")
    return push


def is_message(e, body=None):
    if e.tag != q(NS_CLIENT, 'message'):
        return False
    b = e.find(q(NS_CLIENT, 'body'))
    return body is None or (b is not None and b.text == body)


def send_message(src, to):
    body = f'hello {uuid.uuid4().hex}'
    src.message(to, body)
    return body


def delivered(src, dst, to=None):
    """src's message reaches dst."""
    body = send_message(src, to or dst.jid)
    msg = dst.wait_for(lambda e: is_message(e, body), WAIT)
    assert msg.get('from') == src.jid, ET.tostring(msg)


def bounced(src, dst, condition, to=None, marker=None):
    """src's message to dst comes back as an error with condition and
    never reaches dst: a later message from marker (another stream,
    routed after the refusal) arrives with nothing from src before it.
    Returns the error."""
    body = send_message(src, to or dst.jid)
    err = src.wait_for(lambda e: e.tag == q(NS_CLIENT, 'message') and
                       e.get('type') == 'error', WAIT)
    assert stanza_error(err)[1] == [condition], ET.tostring(err)
    assert err.find(q(NS_CLIENT, 'body')).text == body, ET.tostring(err)
    if marker is not None:
        dst.skipped.clear()
        delivered(marker, dst)
        leaked = [e for e in dst.skipped if is_message(e, body)]
        assert not leaked, ET.tostring(leaked[0])
    return err


def available(*streams):
    for s in streams:
        s.send('<presence/>')
        # Our own broadcast comes back: the server has it.
        s.wait_for(lambda e, s=s: e.tag == q(NS_CLIENT, 'presence') and
                   e.get('from') == s.jid, WAIT)


def login(server, spec):
    user, _, resource = spec.partition('/')
    return rawstream.logged_in(server, user, resource or None)


def test_disco_feature(server):
    with login(server, 'alice/a') as a:
        reply = a.iq('get', f"<query xmlns='{NS_DISCO_INFO}'/>",
                     to='localhost')
        expect_result(reply)
        feats = [f.get('var') for f in
                 reply.iter(q(NS_DISCO_INFO, 'feature'))]
        assert NS_BLOCKING in feats


def test_empty_list_and_bad_requests(server):
    with login(server, 'alice/a') as a:
        assert blocklist(a) == []
        assert blocklist(a, to='alice@localhost') == []
        # §3.3: a block needs at least one item.
        expect_error(block(a), 'bad-request')
        expect_error(block(a, 'not a jid@@'), 'jid-malformed')
        expect_error(a.iq('set', f"<block xmlns='{NS_BLOCKING}'>"
                          "<item/></block>"), 'jid-malformed')
        assert blocklist(a) == []


def test_block_pushed_to_every_resource(server):
    with login(server, 'alice/one') as a1, login(server, 'alice/two') as a2:
        expect_result(block(a1, 'Bob@LocalHost'))
        # Normalised, on both resources.
        expect_push(a1, 'block', 'bob@localhost')
        expect_push(a2, 'block', 'bob@localhost')
        assert blocklist(a1) == ['bob@localhost']
        assert blocklist(a2) == ['bob@localhost']


def test_blocked_sender_and_blocked_recipient(server):
    with login(server, 'alice/a') as a, login(server, 'bob/b') as b, \
            login(server, 'carol/c') as c:
        available(a, b, c)
        delivered(b, a)
        expect_result(block(a, 'bob@localhost'))
        # §3.5: bob's messages bounce and are not delivered, to the full
        # or the bare JID.
        bounced(b, a, 'service-unavailable', marker=c)
        bounced(b, a, 'service-unavailable', to='alice@localhost',
                marker=c)
        # alice cannot write to bob: <not-acceptable/> + <blocked/>.
        err = bounced(a, b, 'not-acceptable', marker=c)
        assert err.get('from') == b.jid, ET.tostring(err)
        assert err.get('to') == a.jid, ET.tostring(err)
        blocked = err.find(f"{q(NS_CLIENT, 'error')}/"
                           f"{q(NS_BLOCKING_ERRORS, 'blocked')}")
        assert blocked is not None, ET.tostring(err)
        bounced(a, b, 'not-acceptable', to='bob@localhost', marker=c)
        # Others are untouched.
        delivered(c, a)
        delivered(a, c)


def test_block_domain(server):
    with login(server, 'alice/a') as a, login(server, 'bob/b') as b, \
            login(server, 'carol/c') as c, login(server, 'wendy/w') as w:
        expect_result(block(a, 'localhost'))
        assert blocklist(a) == ['localhost']
        bounced(b, a, 'service-unavailable')
        bounced(c, a, 'service-unavailable')
        bounced(a, w, 'not-acceptable')
        # The user's own resources are never blocked from each other.
        with login(server, 'alice/a2') as a2:
            delivered(a2, a)
        expect_result(unblock(a, 'localhost'))
        delivered(b, a)
        delivered(a, w)


def test_block_full_jid(server):
    with login(server, 'alice/a') as a, login(server, 'bob/work') as bw, \
            login(server, 'bob/home') as bh, login(server, 'carol/c') as c:
        expect_result(block(a, 'bob@localhost/work'))
        assert blocklist(a) == ['bob@localhost/work']
        bounced(bw, a, 'service-unavailable', marker=c)
        delivered(bh, a)
        bounced(a, bw, 'not-acceptable', marker=c)
        delivered(a, bh)


def test_unblock_one(server):
    with login(server, 'alice/one') as a1, login(server, 'alice/two') as a2, \
            login(server, 'bob/b') as b, login(server, 'carol/c') as c:
        expect_result(block(a1, 'bob@localhost', 'carol@localhost'))
        expect_push(a2, 'block', 'bob@localhost', 'carol@localhost')
        expect_result(unblock(a1, 'bob@localhost'))
        expect_push(a1, 'unblock', 'bob@localhost')
        expect_push(a2, 'unblock', 'bob@localhost')
        assert blocklist(a1) == ['carol@localhost']
        delivered(b, a1)
        bounced(c, a1, 'service-unavailable', marker=b)


def test_unblock_all(server):
    with login(server, 'alice/one') as a1, login(server, 'alice/two') as a2, \
            login(server, 'bob/b') as b, login(server, 'carol/c') as c:
        expect_result(block(a1, 'bob@localhost', 'carol@localhost',
                            'localhost'))
        bounced(b, a1, 'service-unavailable')
        expect_result(unblock(a1))
        # §3.4.2: the push is an empty <unblock/>.
        expect_push(a1, 'unblock')
        expect_push(a2, 'unblock')
        assert blocklist(a2) == []
        delivered(b, a1)
        delivered(c, a2)
        delivered(a1, b)


def test_persists_across_reconnect(server):
    with login(server, 'alice/a') as a:
        expect_result(block(a, 'bob@localhost'))
    with login(server, 'bob/b') as b, login(server, 'carol/c') as c:
        # Enforced from the very first stanza after the bind: the list
        # is being loaded then.
        a = login(server, 'alice/a')
        with a:
            bounced(b, a, 'service-unavailable', marker=c)
            assert blocklist(a) == ['bob@localhost']
            bounced(a, b, 'not-acceptable', marker=c)
    server.restart()
    with login(server, 'alice/a') as a, login(server, 'bob/b') as b:
        assert blocklist(a) == ['bob@localhost']
        bounced(b, a, 'service-unavailable')


def test_block_after_a_bind_that_found_the_list_empty(server):
    """A load that found the list empty lets later binds skip it until a
    block is stored: that block is enforced from the next bind on."""
    with login(server, 'alice/a') as a:
        # The get runs behind the bind's load of the list.
        assert blocklist(a) == []
    with login(server, 'alice/a') as a:
        expect_result(block(a, 'bob@localhost'))
    with login(server, 'bob/b') as b, login(server, 'carol/c') as c:
        with login(server, 'alice/a') as a:
            bounced(b, a, 'service-unavailable', marker=c)
            bounced(a, b, 'not-acceptable', marker=c)
        # With no session: the list is loaded for the check.
        send_message(b, 'alice@localhost')
        err = b.wait_for(lambda e: e.tag == q(NS_CLIENT, 'message') and
                         e.get('type') == 'error', WAIT)
        assert stanza_error(err)[1] == ['service-unavailable'], \
            ET.tostring(err)


def test_enforced_while_the_list_loads(server):
    """A stanza sent in the same packet as the bind is handled before the
    list's load can have finished: it is held until then, not let
    through."""
    with login(server, 'alice/a') as a:
        expect_result(block(a, 'bob@localhost'))
    with login(server, 'bob/b') as b, login(server, 'carol/c') as c:
        a = rawstream.RawStream(server.c2s_port)
        with a:
            a.secure()
            a.authenticate('alice', server.passwords['alice'])
            body = f'early {uuid.uuid4().hex}'
            a.send(f"<iq type='set' id='bind1'><bind xmlns='"
                   f"{rawstream.NS_BIND}'><resource>a</resource></bind>"
                   f"</iq><message to='{b.jid}' type='chat'><body>{body}"
                   '</body></message>')
            a.jid = take(a, lambda e: e.get('id') == 'bind1').find(
                f"{q(rawstream.NS_BIND, 'bind')}/"
                f"{q(rawstream.NS_BIND, 'jid')}").text
            err = take(a, lambda e: e.tag == q(NS_CLIENT, 'message'))
            assert err.get('type') == 'error', ET.tostring(err)
            assert stanza_error(err)[1] == ['not-acceptable'], \
                ET.tostring(err)
            b.skipped.clear()
            delivered(c, b)
            assert not [e for e in b.skipped if is_message(e, body)]


def test_forbidden_for_another_account(server):
    with login(server, 'alice/a') as a, login(server, 'bob/b') as b:
        expect_result(block(a, 'carol@localhost'))
        get = b.iq('get', f"<blocklist xmlns='{NS_BLOCKING}'/>",
                   to='alice@localhost')
        expect_error(get, 'forbidden')
        expect_error(b.iq('set', f"<block xmlns='{NS_BLOCKING}'>"
                          f"{items('bob@localhost')}</block>",
                          to='alice@localhost'), 'forbidden')
        expect_error(b.iq('set', f"<unblock xmlns='{NS_BLOCKING}'/>",
                          to='alice@localhost'), 'forbidden')
        assert blocklist(a) == ['carol@localhost']


def is_presence(e, sender, ptype=None):
    return (e.tag == q(NS_CLIENT, 'presence') and
            e.get('from', '').split('/')[0] == sender and
            e.get('type') == ptype)


def subscribe(a, b):
    """a subscribes to b's presence, b approves."""
    user_a, user_b = a.jid.split('/')[0], b.jid.split('/')[0]
    a.send(f"<presence to='{user_b}' type='subscribe'/>")
    b.wait_for(lambda e: is_presence(e, user_a, 'subscribe'), WAIT)
    b.send(f"<presence to='{user_a}' type='subscribed'/>")
    a.wait_for(lambda e: is_presence(e, user_b, 'subscribed'), WAIT)


def test_contact_sees_user_go_unavailable(server):
    with login(server, 'alice/a') as a, login(server, 'bob/b') as b, \
            login(server, 'carol/c') as c:
        available(a, b)
        subscribe(a, b)
        subscribe(b, a)
        a.send("<presence><status>here</status></presence>")
        b.wait_for(lambda e: is_presence(e, 'alice@localhost') and
                   e.get('from') == a.jid, WAIT)
        expect_result(block(a, 'bob@localhost'))
        # §3.3: unavailable from alice's available resource.
        gone = take(b, lambda e: is_presence(e, 'alice@localhost',
                                             'unavailable'))
        assert gone.get('from') == a.jid, ET.tostring(gone)
        # alice's later broadcasts no longer reach bob, and bob's no
        # longer reach alice.
        b.skipped.clear()
        a.send("<presence><status>hidden</status></presence>")
        b.send("<presence><status>bob hidden</status></presence>")
        a.wait_for(lambda e: e.tag == q(NS_CLIENT, 'presence') and
                   e.get('from') == a.jid, WAIT)
        a.skipped.clear()
        delivered(c, b)
        delivered(c, a)
        assert not [e for e in b.skipped
                    if is_presence(e, 'alice@localhost')], b.skipped
        assert not [e for e in a.skipped
                    if is_presence(e, 'bob@localhost')], a.skipped
        # §3.4: on unblock bob gets alice's current presence again.
        expect_result(unblock(a, 'bob@localhost'))
        back = take(b, lambda e: is_presence(e, 'alice@localhost'))
        assert back.find(q(NS_CLIENT, 'status')).text == 'hidden', \
            ET.tostring(back)


def is_iq_reply(e, iq_id):
    return e.tag == q(NS_CLIENT, 'iq') and e.get('id') == iq_id


def test_iq_blocked_both_ways(server):
    """§3.5 for iq: a blocked sender's get/set gets <service-unavailable/>
    (to the full or bare JID, so the server's answers on the account's
    behalf too), its result/error is dropped; the user's own iq to the
    blocked JID gets <not-acceptable/> + <blocked/>; the user's own server
    is never blocked, even with the domain on the list."""
    with login(server, 'alice/a') as a, login(server, 'bob/b') as b, \
            login(server, 'carol/c') as c:
        available(a, b, c)
        expect_result(b.iq('get', "<ping xmlns='urn:xmpp:ping'/>",
                           to='alice@localhost'))
        expect_result(block(a, 'bob@localhost'))
        expect_error(b.iq('get', "<query xmlns='jabber:iq:version'/>",
                          to=a.jid), 'service-unavailable')
        expect_error(b.iq('get', "<vCard xmlns='vcard-temp'/>",
                          to='alice@localhost'), 'service-unavailable')
        expect_error(b.iq('set', "<query xmlns='jabber:iq:private'>"
                          "<x xmlns='y'/></query>", to='alice@localhost'),
                     'service-unavailable')
        # A result from bob never reaches alice.
        b.send(f"<iq type='result' id='stray-1' to='{a.jid}'/>")
        a.skipped.clear()
        delivered(c, a)
        assert not [e for e in a.skipped if is_iq_reply(e, 'stray-1')]
        # alice's own iq to bob is refused with <blocked/>.
        reply = a.iq('get', "<ping xmlns='urn:xmpp:ping'/>", to=b.jid)
        expect_error(reply, 'not-acceptable')
        assert reply.find(f"{q(NS_CLIENT, 'error')}/"
                          f"{q(NS_BLOCKING_ERRORS, 'blocked')}") is not None
        # carol is not blocked; a domain block spares alice's own server.
        expect_result(c.iq('get', "<ping xmlns='urn:xmpp:ping'/>",
                           to='alice@localhost'))
        expect_result(block(a, 'localhost'))
        expect_result(a.iq('get', "<ping xmlns='urn:xmpp:ping'/>",
                           to='localhost'))
        assert sorted(blocklist(a)) == ['bob@localhost', 'localhost']


def test_enforced_for_an_account_with_no_session(server):
    """With alice offline her list is not cached: what bob sends that
    would have an effect (offline storage, a subscription request kept
    for her, the server answering for her) is checked against the stored
    list all the same."""
    with login(server, 'alice/a') as a:
        expect_result(block(a, 'bob@localhost'))
    with login(server, 'bob/b') as b, login(server, 'carol/c') as c:
        body = send_message(b, 'alice@localhost')
        err = b.wait_for(lambda e: e.tag == q(NS_CLIENT, 'message') and
                         e.get('type') == 'error', WAIT)
        assert stanza_error(err)[1] == ['service-unavailable'], \
            ET.tostring(err)
        assert err.find(q(NS_CLIENT, 'body')).text == body
        # The server answers pings for the account (RFC 6121 §8.5.1).
        expect_error(b.iq('get', "<ping xmlns='urn:xmpp:ping'/>",
                          to='alice@localhost'), 'service-unavailable')
        b.send("<presence type='subscribe' to='alice@localhost'/>")
        # carol is not blocked: her iq is answered, her message stored.
        expect_result(c.iq('get', "<ping xmlns='urn:xmpp:ping'/>",
                           to='alice@localhost'))
        carol_body = send_message(c, 'alice@localhost')
        expect_result(c.iq('get', "<ping xmlns='urn:xmpp:ping'/>",
                           to='localhost'))
        assert stored_count(server, 'alice') == 1
    with login(server, 'alice/a') as a:
        a.send('<presence/>')
        msg = a.wait_for(lambda e: is_message(e), WAIT)
        assert msg.find(q(NS_CLIENT, 'body')).text == carol_body
        # No subscription request from bob was kept for her.
        roster = a.iq('get', "<query xmlns='jabber:iq:roster'/>")
        expect_result(roster)
        with login(server, 'carol/c2') as c2:
            delivered(c2, a)
        assert not [e for e in a.skipped
                    if e.tag == q(NS_CLIENT, 'presence') and
                    e.get('type') == 'subscribe'], a.skipped


def test_burst_right_after_bind_keeps_order(server):
    """Messages sent at once after bind wait while the sender's list
    loads; the bind queues more jobs of the account behind the load, and
    messages read after the load must not pass the held ones (they did,
    now and then: m120.. arrived before m0..). Twenty fresh pairs, since
    the race needs the load to finish between two reads."""
    for k in range(20):
        server.add_user(f'ord-r{k}', 'pw')
        server.add_user(f'ord-s{k}', 'pw')
        with rawstream.logged_in(server, f'ord-r{k}') as r, \
                rawstream.logged_in(server, f'ord-s{k}') as s:
            _, got = rawstream.burst_to_reader(s, r, 288)
            assert got == [f'm{i}' for i in range(288)], \
                f'pair {k}: ' + ' '.join(got[:5])
