"""Helpers for the publish-subscribe tests (test_pep.py, test_pubsub.py):
raw pubsub iqs through slixmpp clients, their errors, and clients that
announce +notify interests through XEP-0115 caps."""

import asyncio
import re

from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.xmlstream import ET
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

import clients

NS_PUBSUB = 'http://jabber.org/protocol/pubsub'
NS_OWNER = NS_PUBSUB + '#owner'
NS_EVENT = NS_PUBSUB + '#event'
NS_ERRORS = NS_PUBSUB + '#errors'
NS_DATA = 'jabber:x:data'
NS_STANZAS = 'urn:ietf:params:xml:ns:xmpp-stanzas'
NS_INFO = 'http://jabber.org/protocol/disco#info'
NS_ITEMS = 'http://jabber.org/protocol/disco#items'
WAIT = 10


def q(ns, name):
    return f'{{{ns}}}{name}'


def pep_setup(interests=(), caps=True):
    """A connect() setup: caps (XEP-0115) with NODE+notify for each
    interest (XEP-0163 §4.2), and c.events, a queue of the <event/>
    elements of received messages with their sender."""
    def setup(c):
        if caps:
            c.register_plugin('xep_0115')
            c.register_plugin('xep_0163')
        c.events = asyncio.Queue()
        c.register_handler(Callback(
            'pubsub events',
            MatchXPath(f'{{jabber:client}}message/{{{NS_EVENT}}}event'),
            lambda m: c.events.put_nowait(
                (m['from'].full, m['type'], m.xml.find(q(NS_EVENT,
                                                         'event'))))))
        for ns in interests:
            c['xep_0163'].add_interest(ns)
    return setup


async def pep_client(server, spec, interests=(), caps=True):
    user, _, resource = spec.partition('/')
    c = await clients.connect(server, user, resource or None,
                              setup=pep_setup(interests, caps))
    if caps:
        # slixmpp 1.8 hashes its features for the first presence before
        # all its plugins have added theirs, so that ver does not verify
        # (XEP-0115 §5.4: the server ignores it); a new presence with
        # the hash of what it answers does.
        await c['xep_0115'].update_caps(broadcast=False)
        c.send_presence()
        await c['xep_0199'].ping(server.jid(user).split('@')[1],
                                 timeout=WAIT)
    return c


async def next_event(c, timeout=WAIT):
    try:
        return await asyncio.wait_for(c.events.get(), timeout)
    except asyncio.TimeoutError:
        raise AssertionError(f'{c.boundjid} got no pubsub event')


def event_items(event):
    """(node, [(item id, payload element)], [retracted ids])."""
    items = event.find(q(NS_EVENT, 'items'))
    assert items is not None, ET.tostring(event)
    got = [(i.get('id'), i[0] if len(i) else None)
           for i in items.findall(q(NS_EVENT, 'item'))]
    retracted = [r.get('id') for r in items.findall(q(NS_EVENT, 'retract'))]
    return items.get('node'), got, retracted


async def iq(c, typ, payload, to=None):
    """Sends an iq with payload (XML text); returns the reply's element,
    result or error."""
    stanza = c.make_iq(ito=to, itype=typ)
    stanza.append(ET.fromstring(payload))
    try:
        reply = await stanza.send(timeout=WAIT)
    except IqError as e:
        reply = e.iq
    except IqTimeout:
        raise AssertionError(f'no reply to {payload}')
    return reply.xml


def error_of(reply):
    """(error type, defined condition, pubsub condition or None)."""
    assert reply.get('type') == 'error', ET.tostring(reply)
    err = reply.find('{jabber:client}error')
    defined = [c.tag.split('}')[1] for c in err
               if c.tag.startswith(f'{{{NS_STANZAS}}}') and
               not c.tag.endswith('}text')]
    app = [c.tag.split('}')[1] for c in err
           if c.tag.startswith(f'{{{NS_ERRORS}}}')]
    return err.get('type'), defined[0], app[0] if app else None


def ok(reply):
    assert reply.get('type') == 'result', ET.tostring(reply)
    return reply


def form_xml(form_type, fields, typ='submit'):
    out = [f"<x xmlns='{NS_DATA}' type='{typ}'>"]
    if form_type:
        out.append(f"<field var='FORM_TYPE' type='hidden'>"
                   f"<value>{form_type}</value></field>")
    for var, value in fields.items():
        values = value if isinstance(value, list) else [value]
        out.append(f"<field var='{var}'>" +
                   ''.join(f'<value>{v}</value>' for v in values) +
                   '</field>')
    out.append('</x>')
    return ''.join(out)


def publish_xml(node, payload, item_id=None, options=None):
    opts = ''
    if options is not None:
        opts = ('<publish-options>' +
                form_xml(NS_PUBSUB + '#publish-options', options) +
                '</publish-options>')
    idattr = f" id='{item_id}'" if item_id else ''
    return (f"<pubsub xmlns='{NS_PUBSUB}'><publish node='{node}'>"
            f"<item{idattr}>{payload}</item></publish>{opts}</pubsub>")


async def publish(c, node, payload, item_id=None, options=None, to=None):
    return await iq(c, 'set', publish_xml(node, payload, item_id, options),
                    to=to)


async def items(c, to, node, max_items=None, ids=()):
    m = f" max_items='{max_items}'" if max_items is not None else ''
    inner = ''.join(f"<item id='{i}'/>" for i in ids)
    return await iq(c, 'get', f"<pubsub xmlns='{NS_PUBSUB}'><items "
                    f"node='{node}'{m}>{inner}</items></pubsub>", to=to)


def item_ids(reply):
    its = ok(reply).find(f'{q(NS_PUBSUB, "pubsub")}/{q(NS_PUBSUB, "items")}')
    return [i.get('id') for i in its.findall(q(NS_PUBSUB, 'item'))]


def form_values(x):
    """{var: [values]} of a data form element."""
    return {f.get('var'): [v.text or '' for v in f.findall(q(NS_DATA,
                                                             'value'))]
            for f in x.findall(q(NS_DATA, 'field'))}


def bound_shard(server, client):
    found = server.wait_for_log(
        rf'bound {re.escape(str(client.boundjid))} on shard (\d+)')
    return int(found[-1].group(1))


async def befriend(server, a, b):
    """Mutual presence subscription between a and b (slixmpp approves and
    subscribes back by itself); waits until both rosters say both."""
    a.send_presence(pto=b.boundjid.bare, ptype='subscribe')

    def both(x, y):
        out = server.ctl('roster', 'list', x.boundjid.bare).stdout
        return any(line.split()[:2] == [y.boundjid.bare, 'both']
                   for line in out.splitlines())
    await clients.until(lambda: both(a, b) and both(b, a), WAIT,
                        'a mutual subscription')
