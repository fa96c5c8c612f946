"""slixmpp clients for the integration tests.

TestClient is a slixmpp ClientXMPP that connects to 127.0.0.1 on the test
server's port, accepts the self-signed certificate, logs in with one given
SASL mechanism and queues what it receives. It is otherwise unmodified:
slixmpp 1.8 knows only tls-unique channel binding, so for non-PLUS SCRAM on
TLS 1.3 it sends the gs2 flag "y", which the server accepts there (see
test_login.test_scram_y_flag). The -PLUS mechanisms are tested with
scramclient.

Witness is the pair of logged-in clients of the bad-input tests: it runs on
its own event-loop thread, so that synchronous tests can check that the
server still routes messages before and after they abuse it.
"""

import asyncio
import contextlib
import ssl
import threading
import uuid

import slixmpp

DEFAULT_MECH = 'SCRAM-SHA-256'
LOGIN_TIMEOUT = 15.0
RECEIVE_TIMEOUT = 10.0


class LoginError(AssertionError):
    pass


class TestClient(slixmpp.ClientXMPP):
    __test__ = False  # not a pytest test class

    def __init__(self, jid, password, mech=DEFAULT_MECH):
        super().__init__(jid, password, sasl_mech=mech)
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        self.register_plugin('xep_0030')  # answers disco#info itself
        self.register_plugin('xep_0199')  # answers pings
        self.messages = asyncio.Queue()
        self.presences = asyncio.Queue()
        self.stream_errors = []
        self.add_event_handler('message', self.messages.put_nowait)
        self.add_event_handler('presence', self.presences.put_nowait)
        self.add_event_handler('stream_error', self.stream_errors.append)

    async def get_dns_records(self, domain, port=None):
        # Connect to the test server's address, never resolve "localhost"
        # (it may resolve to ::1 first).
        return [(domain, self.address[0], self.address[1])]

    async def next_message(self, body=None, timeout=RECEIVE_TIMEOUT):
        """The next received message (with `body`, if given)."""
        async def matching():
            while True:
                msg = await self.messages.get()
                if body is None or msg['body'] == body:
                    return msg
        try:
            return await asyncio.wait_for(matching(), timeout)
        except asyncio.TimeoutError:
            raise AssertionError(
                f'{self.boundjid} got no message {body!r} in {timeout}s')

    async def next_presence(self, timeout=RECEIVE_TIMEOUT, sender=None):
        """The next presence received (from `sender`, if given; a client
        also gets its own broadcast presence, RFC 6121 §4.2.2)."""
        async def matching():
            while True:
                pres = await self.presences.get()
                if sender is None or pres['from'] == sender:
                    return pres
        try:
            return await asyncio.wait_for(matching(), timeout)
        except asyncio.TimeoutError:
            raise AssertionError(
                f'{self.boundjid} got no presence in {timeout}s')


async def connect(server, user, resource=None, *, mech=DEFAULT_MECH,
                  direct_tls=False, password=None, timeout=LOGIN_TIMEOUT,
                  available=True, setup=None):
    """A TestClient through session start; raises LoginError otherwise.
    With available=True it then sends initial presence, as real clients
    do (RFC 6121 §4.2: only available resources get messages addressed to
    the bare JID), and waits for a ping round trip so the server has
    processed it. setup(client), if given, runs before connecting
    (plugins, features that the initial presence's caps must show)."""
    client = TestClient(server.jid(user, resource),
                        password or server.passwords[user], mech)
    if setup is not None:
        setup(client)
    done = asyncio.get_running_loop().create_future()

    def finish(error=None):
        if done.done():
            return
        if error:
            done.set_exception(LoginError(f'{user}/{resource}: {error}'))
        else:
            done.set_result(None)

    client.add_event_handler('session_start', lambda _: finish())
    client.add_event_handler('failed_all_auth',
                             lambda _: finish('authentication failed'))
    client.add_event_handler('connection_failed',
                             lambda e: finish(f'connection failed: {e}'))
    client.add_event_handler('disconnected',
                             lambda e: finish(f'disconnected: {e}'))
    port = server.tls_port if direct_tls else server.c2s_port
    # the federation peers each listen on an address of their own
    host = getattr(server, 'c2s_address', '127.0.0.1')
    client.connect((host, port), use_ssl=direct_tls,
                   force_starttls=not direct_tls)
    try:
        await asyncio.wait_for(done, timeout)
    except asyncio.TimeoutError:
        client.cancel_connection_attempt()
        client.abort()
        raise LoginError(f'{user}/{resource}: no session in {timeout}s')
    except LoginError:
        client.cancel_connection_attempt()
        client.abort()
        raise
    if available:
        client.send_presence()
        await client['xep_0199'].ping(server.jid(user).split('@')[1],
                                      timeout=timeout)
    return client


async def until(predicate, timeout=RECEIVE_TIMEOUT, what=None):
    """Polls predicate() until it is true; fails after timeout."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f'timed out waiting for {what or predicate}')
        await asyncio.sleep(0.05)


async def disconnect(*clients):
    for client in clients:
        client.cancel_connection_attempt()
        if client.transport is None:
            continue
        try:
            await asyncio.wait_for(client.disconnect(wait=2), 5)
        except asyncio.TimeoutError:
            client.abort()


@contextlib.asynccontextmanager
async def connected(server, *specs, **kwargs):
    """`async with connected(server, 'alice', 'bob/home') as (a, b):`"""
    clients = []
    try:
        for spec in specs:
            user, _, resource = spec.partition('/')
            clients.append(await connect(server, user, resource or None,
                                         **kwargs))
        yield clients
    finally:
        await disconnect(*clients)


async def send_and_receive(src, dst, to=None, timeout=RECEIVE_TIMEOUT):
    """src sends a message to `to` (default dst's full JID); dst must get
    it, from src's full JID."""
    body = f'hello {uuid.uuid4().hex}'
    src.send_message(mto=to or dst.boundjid.full, mbody=body, mtype='chat')
    msg = await dst.next_message(body, timeout)
    assert msg['from'] == src.boundjid, (msg['from'], src.boundjid)
    return msg


async def round_trip(a, b):
    """A message from a to b and one back."""
    await send_and_receive(a, b)
    await send_and_receive(b, a)


async def presence_of(client, sender, ptype, status=None, timeout=15):
    """The next presence of `ptype` ('available' if it has none) from
    `sender` (a bare or full JID), with `status` if given."""
    while True:
        pres = await client.next_presence(timeout=timeout)
        frm = pres['from']
        if sender in (frm.bare, frm.full) and pres['type'] == ptype and \
                (status is None or pres['status'] == status):
            return pres


async def next_with_id(client, msg_id, timeout):
    """The next message received with this id."""
    async def matching():
        while True:
            msg = await client.messages.get()
            if msg['id'] == msg_id:
                return msg
    try:
        return await asyncio.wait_for(matching(), timeout)
    except asyncio.TimeoutError:
        raise AssertionError(f'{client.boundjid}: no message {msg_id} '
                             f'back in {timeout}s')


def drain(queue):
    items = []
    while not queue.empty():
        items.append(queue.get_nowait())
    return items


def subscription(client, contact):
    return client.client_roster[contact]['subscription']


async def _cancel_other_tasks():
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


class Witness:
    """`with Witness(server) as w:` two clients (walter, wendy) on a
    background event loop; entering and leaving each prove a message round
    trip, and w.round_trip() proves one in between."""

    def __init__(self, server, users=('walter', 'wendy')):
        self.server = server
        self.users = users
        self.clients = []
        self._loop = None
        self._thread = None

    def _run(self, coro, timeout=30):
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(timeout)

    async def _connect(self):
        for user in self.users:
            self.clients.append(await connect(self.server, user, 'witness'))

    def round_trip(self):
        assert self.server.alive(), 'stanzad died'
        self._run(round_trip(*self.clients))

    def __enter__(self):
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever,
                                        name='witness', daemon=True)
        self._thread.start()
        try:
            self._run(self._connect())
            self.round_trip()
        except BaseException:
            self._shutdown()
            raise
        return self

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc_type is None:
                self.round_trip()
        finally:
            self._shutdown()

    def _shutdown(self):
        try:
            self._run(disconnect(*self.clients), timeout=15)
            self._run(_cancel_other_tasks(), timeout=5)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
            if not self._thread.is_alive():
                self._loop.close()
