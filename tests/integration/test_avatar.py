"""XEP-0398: the XEP-0084 avatar in PEP and the vCard PHOTO (XEP-0054,
XEP-0153) converted both ways by the server, with slixmpp clients: an
avatar published in PEP (open) read as a vCard, and its hash in the
account's presence (§4); a presence-only avatar not copied into the
world-readable vCard (§6); a vCard PHOTO published as the avatar nodes
with a notification to a contact, read back by the contact; the photo
removed; the hash after a restart; the account and the contact on
different shards; the disco feature."""

import base64
import hashlib

import pytest
from slixmpp.xmlstream import ET

import clients
from pubsub_util import (NS_INFO, NS_PUBSUB, befriend, event_items, iq,
                         items, next_event, ok, pep_client, publish, q)
from test_pep import other_shard_client

NS_DATA = 'urn:xmpp:avatar:data'
NS_META = 'urn:xmpp:avatar:metadata'
NS_VCARD = 'vcard-temp'
NS_UPDATE = 'vcard-temp:x:update'
OPEN = {'pubsub#access_model': 'open'}
A = 'alice@localhost'


def image(seed):
    """Bytes that look like a PNG (the server sniffs a missing type)."""
    return b'\x89PNG\r\n\x1a\n' + bytes((seed * 7 + i) % 256
                                        for i in range(3000))


def sha1(data):
    return hashlib.sha1(data).hexdigest()


async def set_pep_avatar(c, data, options=OPEN, mime='image/png'):
    h = sha1(data)
    ok(await publish(c, NS_DATA, f"<data xmlns='{NS_DATA}'>"
                     f"{base64.b64encode(data).decode()}</data>", h, options))
    ok(await publish(c, NS_META, f"<metadata xmlns='{NS_META}'><info "
                     f"id='{h}' bytes='{len(data)}' type='{mime}' "
                     "width='64' height='64'/></metadata>", h, options))
    return h


async def vcard_of(c, to=A):
    return ok(await iq(c, 'get', f"<vCard xmlns='{NS_VCARD}'/>", to=to)
              ).find(q(NS_VCARD, 'vCard'))


def photo_of(vcard):
    """(TYPE, bytes) of the vCard's PHOTO, or None."""
    ph = vcard.find(q(NS_VCARD, 'PHOTO'))
    if ph is None:
        return None
    return (ph.findtext(q(NS_VCARD, 'TYPE')),
            base64.b64decode(ph.findtext(q(NS_VCARD, 'BINVAL'))))


async def presence_hash(watcher, sender, status):
    """The vcard-temp:x:update photo of sender's next presence with this
    status, as watcher gets it (None: no <photo/>)."""
    pres = await clients.presence_of(watcher, sender, 'available',
                                     status=status)
    return pres.xml.findtext(f'{q(NS_UPDATE, "x")}/{q(NS_UPDATE, "photo")}')


def vcard_xml(fn, data=None, mime='image/png'):
    photo = ''
    if data is not None:
        b64 = base64.encodebytes(data).decode()  # with line breaks
        photo = (f'<PHOTO><TYPE>{mime}</TYPE><BINVAL>{b64}</BINVAL>'
                 '</PHOTO>')
    return f"<vCard xmlns='{NS_VCARD}'><FN>{fn}</FN>{photo}</vCard>"


@pytest.mark.parametrize('shards', [1, 2])
async def test_pep_avatar_to_vcard(server_factory, shards):
    server = server_factory(shards=shards)
    alice = await pep_client(server, 'alice/a', caps=False)
    cs = [alice]
    try:
        if shards == 2:
            bob = await other_shard_client(server, 'bob', alice, [])
        else:
            bob = await pep_client(server, 'bob/b', caps=False)
        cs.append(bob)
        await befriend(server, alice, bob)
        # A vCard with other fields first: they stay.
        ok(await iq(alice, 'set', vcard_xml('Alice')))
        data = image(1)
        h = await set_pep_avatar(alice, data)
        vcard = await vcard_of(bob)
        assert photo_of(vcard) == ('image/png', data)
        assert vcard.findtext(q(NS_VCARD, 'FN')) == 'Alice'
        # §4: the hash in alice's presence, added by the server.
        alice.send_presence(pstatus='av1')
        assert await presence_hash(bob, A, 'av1') == h
        # A client's own empty <photo/> is left alone.
        pres = alice.make_presence(pstatus='av2')
        pres.append(ET.fromstring(
            f"<x xmlns='{NS_UPDATE}'><photo/></x>"))
        pres.send()
        assert await presence_hash(bob, A, 'av2') == ''

        # A new avatar replaces the PHOTO.
        data2 = image(2)
        h2 = await set_pep_avatar(alice, data2, mime='image/jpeg')
        assert photo_of(await vcard_of(bob)) == ('image/jpeg', data2)
        alice.send_presence(pstatus='av3')
        assert await presence_hash(bob, A, 'av3') == h2

        # XEP-0398 §6: a presence-only avatar stays out of the vCard.
        data3 = image(3)
        ok(await iq(alice, 'set', f"<pubsub xmlns='{NS_PUBSUB}#owner'>"
                    f"<configure node='{NS_DATA}'>"
                    "<x xmlns='jabber:x:data' type='submit'>"
                    "<field var='FORM_TYPE'><value>"
                    f"{NS_PUBSUB}#node_config</value></field>"
                    "<field var='pubsub#access_model'><value>presence"
                    "</value></field></x></configure></pubsub>"))
        await set_pep_avatar(alice, data3, options=None)
        assert photo_of(await vcard_of(bob)) == ('image/jpeg', data2)

        # XEP-0084 §4.7: an empty metadata item removes the photo.
        ok(await publish(alice, NS_META, f"<metadata xmlns='{NS_META}'/>",
                         'off'))
        vcard = await vcard_of(bob)
        assert photo_of(vcard) is None
        assert vcard.findtext(q(NS_VCARD, 'FN')) == 'Alice'
        alice.send_presence(pstatus='av4')
        assert await presence_hash(bob, A, 'av4') is None
    finally:
        await clients.disconnect(*cs)


@pytest.mark.parametrize('shards', [1, 2])
async def test_vcard_to_pep(server_factory, shards):
    server = server_factory(shards=shards)
    alice = await pep_client(server, 'alice/a', caps=False)
    cs = [alice]
    try:
        if shards == 2:
            bob = await other_shard_client(server, 'bob', alice, [NS_META])
        else:
            bob = await pep_client(server, 'bob/b', [NS_META])
        cs.append(bob)
        await befriend(server, alice, bob)
        data = image(5)
        h = sha1(data)
        ok(await iq(alice, 'set', vcard_xml('Alice', data)))
        # The contact hears of the new metadata (XEP-0398 §3: SHOULD).
        frm, _, ev = await next_event(bob)
        node, got, _ = event_items(ev)
        assert (frm, node) == (A, NS_META)
        [(item_id, md)] = got
        info = md.find(q(NS_META, 'info'))
        assert item_id == h and info.get('id') == h
        assert info.get('type') == 'image/png'
        assert info.get('bytes') == str(len(data))
        # ... and reads the data by that id.
        reply = ok(await items(bob, A, NS_DATA, ids=[h]))
        [it] = reply.iter(q(NS_PUBSUB, 'item'))
        assert it.get('id') == h
        assert base64.b64decode(it.findtext(q(NS_DATA, 'data'))) == data
        alice.send_presence(pstatus='v1')
        assert await presence_hash(bob, A, 'v1') == h

        # Another field changed, the same photo: nothing republished
        # (the next event bob gets is the next photo's).
        ok(await iq(alice, 'set', vcard_xml('Alice L.', data)))
        data2 = image(6)
        ok(await iq(alice, 'set', vcard_xml('Alice L.', data2)))
        _, got, _ = event_items((await next_event(bob))[2])
        assert [i for i, _ in got] == [sha1(data2)]
        # The conversion did not convert back: the vCard is the client's.
        vcard = await vcard_of(bob)
        assert vcard.findtext(q(NS_VCARD, 'FN')) == 'Alice L.'
        assert photo_of(vcard) == ('image/png', data2)

        # The photo removed: the avatar is switched off in PEP.
        ok(await iq(alice, 'set', vcard_xml('Alice L.')))
        _, got, _ = event_items((await next_event(bob))[2])
        [(_, md)] = got
        assert md.tag == q(NS_META, 'metadata') and len(md) == 0
    finally:
        await clients.disconnect(*cs)


async def test_hash_after_restart_and_disco(server):
    async with clients.connected(server, 'alice/a') as (alice,):
        ok(await iq(alice, 'set', vcard_xml('Alice', image(9))))
        info = ok(await iq(alice, 'get', f"<query xmlns='{NS_INFO}'/>",
                           to=A))
        feats = {f.get('var') for f in info.iter(q(NS_INFO, 'feature'))}
        assert 'urn:xmpp:pep-vcard-conversion:0' in feats
    server.restart()
    bob = await pep_client(server, 'bob/b', caps=False)
    alice = await pep_client(server, 'alice/a', caps=False)
    try:
        await befriend(server, alice, bob)
        alice.send_presence(pstatus='after')
        assert await presence_hash(bob, A, 'after') == sha1(image(9))
        reply = ok(await items(bob, A, NS_META))
        [it] = reply.iter(q(NS_PUBSUB, 'item'))
        assert it.get('id') == sha1(image(9))
    finally:
        await clients.disconnect(alice, bob)
