"""Raw XMPP client streams for tests that need byte-level control.

RawStream speaks RFC 6120 over a plain socket and, after STARTTLS or on the
direct-TLS port (XEP-0368), over pyOpenSSL (which can export keying material
for tls-exporter). Every wait has a deadline, so a silent server fails the
test instead of hanging it. The socket is non-blocking and all waiting is
done with select().

What the server sends is parsed incrementally with ElementTree's
XMLPullParser; every complete first-level element (child of the stream root)
is queued for read_element(). The parser is replaced at each stream restart
(after <proceed/> and <success/>), when the server sends a new header.
"""

import base64
import collections
import errno
import itertools
import select
import socket
import ssl
import threading
import time
import xml.etree.ElementTree as ET

from OpenSSL import SSL

import scramclient

NS_STREAM = 'http://etherx.jabber.org/streams'
NS_CLIENT = 'jabber:client'
NS_TLS = 'urn:ietf:params:xml:ns:xmpp-tls'
NS_SASL = 'urn:ietf:params:xml:ns:xmpp-sasl'
NS_BIND = 'urn:ietf:params:xml:ns:xmpp-bind'
NS_SESSION = 'urn:ietf:params:xml:ns:xmpp-session'
NS_STREAM_ERRORS = 'urn:ietf:params:xml:ns:xmpp-streams'
NS_STANZA_ERRORS = 'urn:ietf:params:xml:ns:xmpp-stanzas'
NS_SASL_CB = 'urn:xmpp:sasl-cb:0'

DEFAULT_TIMEOUT = 10.0
XML_DECL = "<?xml version='1.0'?>"
_ids = itertools.count(1)


def q(ns, tag):
    """Clark notation: q(NS_CLIENT, 'iq') == '{jabber:client}iq'."""
    return f'{{{ns}}}{tag}'


def b64(data: bytes) -> str:
    # RFC 6120 §6.4.2: empty data is sent as a single '='.
    return base64.b64encode(data).decode() if data else '='


def unb64(text) -> bytes:
    text = (text or '').strip()
    return b'' if text in ('', '=') else base64.b64decode(text)


def stream_header(to='localhost', version='1.0', xmlns=NS_CLIENT,
                  stream_ns=NS_STREAM, extra='', decl=True):
    attrs = [f"xmlns='{xmlns}'", f"xmlns:stream='{stream_ns}'"]
    if to is not None:
        attrs.append(f"to='{to}'")
    if version is not None:
        attrs.append(f"version='{version}'")
    if extra:
        attrs.append(extra)
    return (XML_DECL if decl else '') + f"<stream:stream {' '.join(attrs)}>"


def client_hello() -> bytes:
    """The first flight of a real TLS client: a complete ClientHello."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname='localhost')
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


class StreamClosed(AssertionError):
    """The server ended the stream or the connection while we waited."""


class RawStream:
    def __init__(self, port, *, direct_tls=False, tls_max_version=None,
                 source=None, timeout=DEFAULT_TIMEOUT):
        self.timeout = timeout
        self.tls_max_version = tls_max_version
        src = (source, 0) if source else None
        self.sock = socket.create_connection(('127.0.0.1', port),
                                             timeout=timeout,
                                             source_address=src)
        self.sock.setblocking(False)
        self.tls = None
        self.eof = False
        self.received = bytearray()  # everything the server sent (plain)
        self.skipped = []  # elements read past by wait_for()
        self._new_parser()
        if direct_tls:
            self._handshake()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    # -- low-level I/O ----------------------------------------------------

    def _deadline(self, timeout):
        return time.monotonic() + (self.timeout if timeout is None
                                   else timeout)

    def _select(self, deadline, read=True):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError('timed out waiting for the server; so far '
                               f'it sent {bytes(self.received[-2000:])!r}')
        rl, wl = ([self.sock], []) if read else ([], [self.sock])
        select.select(rl, wl, [], remaining)

    def _handshake(self, deadline=None):
        deadline = deadline or self._deadline(None)
        ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
        ctx.set_verify(SSL.VERIFY_NONE, lambda *args: True)
        if self.tls_max_version:
            ctx.set_max_proto_version(self.tls_max_version)
            if self.tls_max_version < SSL.TLS1_2_VERSION:
                # let OpenSSL offer the old versions the server must refuse
                ctx.set_min_proto_version(SSL.TLS1_VERSION)
                ctx.set_cipher_list(b'DEFAULT:@SECLEVEL=0')
        conn = SSL.Connection(ctx, self.sock)
        conn.set_tlsext_host_name(b'localhost')
        conn.set_connect_state()
        while True:
            try:
                conn.do_handshake()
                break
            except SSL.WantReadError:
                self._select(deadline)
            except SSL.WantWriteError:
                self._select(deadline, read=False)
        self.tls = conn

    def send(self, data, timeout=None):
        """Sends all of data (str or bytes). Raises ConnectionError if the
        server has closed the connection."""
        if isinstance(data, str):
            data = data.encode()
        deadline = self._deadline(timeout)
        while data:
            chunk = data[:16384]
            try:
                n = (self.tls.send(chunk) if self.tls
                     else self.sock.send(chunk))
                data = data[n:]
            except (BlockingIOError, SSL.WantWriteError):
                self._select(deadline, read=False)
            except SSL.WantReadError:
                self._select(deadline)
            except SSL.SysCallError as e:
                raise ConnectionResetError(str(e)) from e

    def _recv(self, deadline) -> bytes:
        """Some bytes, or b'' at the end of the connection."""
        while True:
            try:
                if self.tls:
                    return self.tls.recv(65536)
                return self.sock.recv(65536)
            except (BlockingIOError, SSL.WantReadError):
                self._select(deadline)
            except SSL.WantWriteError:
                self._select(deadline, read=False)
            except (SSL.ZeroReturnError, SSL.SysCallError,
                    ConnectionResetError):
                # close_notify, EOF without close_notify, or RST: all end
                # the connection as far as the tests are concerned.
                return b''
            except OSError as e:
                if e.errno in (errno.ECONNRESET, errno.EPIPE):
                    return b''
                raise

    def _pump(self, deadline):
        data = self._recv(deadline)
        if not data:
            self.eof = True
            return
        self.received += data
        try:
            self._feed(data)
        except ET.ParseError as e:
            raise AssertionError(
                f'the server sent malformed XML ({e}) in this stream: '
                f'{bytes(self.received[-2000:])!r}') from None

    # -- parsing ----------------------------------------------------------

    def _new_parser(self):
        self._parser = ET.XMLPullParser(events=('start', 'end'))
        self._depth = 0
        self._root = None
        self._pending = collections.deque()
        self.header = None  # the server's stream header element
        self.ended = False  # the server sent </stream:stream>

    def _feed(self, data):
        self._parser.feed(data)
        for event, elem in self._parser.read_events():
            if event == 'start':
                if self._depth == 0:
                    self.header = self._root = elem
                self._depth += 1
                continue
            self._depth -= 1
            if self._depth == 1:
                self._pending.append(elem)
                self._root.remove(elem)
            elif self._depth == 0:
                self.ended = True

    def _wait(self, predicate, timeout, what):
        deadline = self._deadline(timeout)
        while not predicate():
            if self.eof:
                raise StreamClosed(
                    f'connection closed while waiting for {what}; the '
                    f'server sent {bytes(self.received[-2000:])!r}')
            self._pump(deadline)

    def read_element(self, timeout=None):
        """The next first-level element the server sends."""
        self._wait(lambda: self._pending or self.ended, timeout,
                   'an element')
        if not self._pending:
            raise StreamClosed('stream ended while waiting for an element; '
                               f'received {bytes(self.received[-2000:])!r}')
        return self._pending.popleft()

    def wait_for(self, predicate, timeout=None):
        """Reads elements until predicate(elem); others go to skipped."""
        deadline = self._deadline(timeout)
        while True:
            elem = self.read_element(max(0.0, deadline - time.monotonic()))
            if predicate(elem):
                return elem
            self.skipped.append(elem)

    def read_header(self, timeout=None):
        self._wait(lambda: self.header is not None, timeout,
                   'the stream header')
        return self.header

    def wait_stream_end(self, timeout=None):
        """Waits for the server's </stream:stream>."""
        self._wait(lambda: self.ended, timeout, '</stream:stream>')

    def wait_closed(self, timeout=None):
        """Waits until the server closes the TCP connection."""
        deadline = self._deadline(timeout)
        while not self.eof:
            self._pump(deadline)

    # -- stream negotiation -----------------------------------------------

    def open(self, **header_args):
        """Sends a stream header, returns the server's header element."""
        self.send(stream_header(**header_args))
        return self.read_header()

    def features(self):
        elem = self.read_element()
        assert elem.tag == q(NS_STREAM, 'features'), ET.tostring(elem)
        return elem

    def starttls(self):
        self.send(f"<starttls xmlns='{NS_TLS}'/>")
        elem = self.read_element()
        assert elem.tag == q(NS_TLS, 'proceed'), ET.tostring(elem)
        self._handshake()
        self._new_parser()

    def secure(self):
        """On the STARTTLS port: header, STARTTLS, new header. On a direct
        TLS stream: the header. Returns the post-TLS features."""
        self.open()
        if self.tls is None:
            feats = self.features()
            assert feats.find(q(NS_TLS, 'starttls')) is not None
            self.starttls()
            self.open()
        return self.features()

    def tls_version(self):
        return self.tls.get_protocol_version_name()

    # -- SASL ---------------------------------------------------------------

    def send_auth(self, mechanism, initial=b''):
        self.send(f"<auth xmlns='{NS_SASL}' mechanism='{mechanism}'>"
                  f'{b64(initial)}</auth>')

    def auth_plain(self, user, password, authzid=''):
        """Returns the server's <success/> or <failure/>."""
        self.send_auth('PLAIN',
                       f'{authzid}\0{user}\0{password}'.encode())
        return self.read_element()

    def auth_scram(self, mechanism, user, password, *, cb_type=None,
                   cb_data=None, gs2_flag=None):
        """Runs SCRAM; returns <success/> or <failure/>. On success the
        server's signature must be right. cb_data defaults to the real
        channel-binding data of this connection for cb_type."""
        if cb_type and cb_data is None:
            cb_data = scramclient.channel_binding(self.tls, cb_type)
        scram = scramclient.ScramClient(mechanism, user, password,
                                        cb_type=cb_type,
                                        cb_data=cb_data or b'',
                                        gs2_flag=gs2_flag)
        self.send_auth(mechanism, scram.client_first())
        elem = self.read_element()
        if elem.tag != q(NS_SASL, 'challenge'):
            return elem
        final = scram.client_final(unb64(elem.text))
        self.send(f"<response xmlns='{NS_SASL}'>{b64(final)}</response>")
        elem = self.read_element()
        if elem.tag == q(NS_SASL, 'challenge'):
            # server-final-message as a challenge (RFC 6120 §6.3.10 allows
            # it either there or as additional data with success).
            scram.verify_server_final(unb64(elem.text))
            self.send(f"<response xmlns='{NS_SASL}'/>")
            elem = self.read_element()
            assert elem.tag != q(NS_SASL, 'success') or not elem.text
        elif elem.tag == q(NS_SASL, 'success'):
            assert unb64(elem.text), 'success without server-final-message'
            scram.verify_server_final(unb64(elem.text))
        return elem

    def authenticate(self, user, password, mechanism='PLAIN', cb_type=None,
                     restart=True):
        """SASL must succeed. Then, with restart, opens the new stream and
        returns its features; without, the caller sends the header."""
        if mechanism == 'PLAIN':
            result = self.auth_plain(user, password)
        else:
            result = self.auth_scram(mechanism, user, password,
                                     cb_type=cb_type)
        assert result.tag == q(NS_SASL, 'success'), ET.tostring(result)
        self._new_parser()
        if not restart:
            return None
        self.open()
        return self.features()

    # -- stanzas --------------------------------------------------------------

    def iq(self, iq_type, payload='', to=None, iq_id=None, timeout=None):
        """Sends an iq and returns the reply with the same id."""
        iq_id = iq_id or f'raw{next(_ids)}'
        to_attr = f" to='{to}'" if to else ''
        self.send(f"<iq type='{iq_type}' id='{iq_id}'{to_attr}>"
                  f'{payload}</iq>')
        return self.wait_for(
            lambda e: e.tag == q(NS_CLIENT, 'iq') and e.get('id') == iq_id,
            timeout)

    def bind(self, resource=None):
        """Binds (the server picks the resource if None); returns the full
        JID."""
        inner = (f'<resource>{resource}</resource>'
                 if resource is not None else '')
        reply = self.iq('set', f"<bind xmlns='{NS_BIND}'>{inner}</bind>")
        assert reply.get('type') == 'result', ET.tostring(reply)
        return reply.find(f'{q(NS_BIND, "bind")}/{q(NS_BIND, "jid")}').text

    def send_until_closed(self, data):
        """Sends data the server may refuse part-way (it closes the
        connection after an error)."""
        try:
            self.send(data, timeout=5)
        except (ConnectionError, TimeoutError):
            pass

    def message(self, to, body, msg_type='chat'):
        self.send(f"<message to='{to}' type='{msg_type}'>"
                  f'<body>{body}</body></message>')

    def close_stream(self):
        """Sends our closing tag, if the connection still takes it."""
        try:
            self.send('</stream:stream>', timeout=2)
        except (ConnectionError, TimeoutError, SSL.Error):
            pass

    def expect_stream_error(self, condition, timeout=None, reply=True):
        """The next stream-level element must be <stream:error> with
        exactly `condition` (or one of a tuple of them); then the server
        must end the stream and close the connection. With reply, we answer
        its </stream:stream> with ours (RFC 6120 §4.4), else the server has
        to give up waiting for it. Returns the error element."""
        try:
            error = self.wait_for(
                lambda e: e.tag == q(NS_STREAM, 'error'), timeout)
        except StreamClosed as e:
            raise AssertionError(
                f'expected stream error <{condition}/>, got none: {e}')
        conds = [c.tag for c in error
                 if c.tag.startswith(f'{{{NS_STREAM_ERRORS}}}')
                 and c.tag != q(NS_STREAM_ERRORS, 'text')]
        allowed = (condition,) if isinstance(condition, str) else condition
        assert len(conds) == 1 and conds[0] in [
            q(NS_STREAM_ERRORS, c) for c in allowed], (
            f'expected <{condition}/>, got {ET.tostring(error)!r}')
        self.wait_stream_end(timeout)
        if reply:
            self.close_stream()
        self.wait_closed(timeout)
        return error


def stanza_error(reply):
    """(type, [condition names]) of an error stanza."""
    err = reply.find(q(NS_CLIENT, 'error'))
    assert err is not None, ET.tostring(reply)
    conds = [c.tag.split('}', 1)[1] for c in err
             if c.tag.startswith(f'{{{NS_STANZA_ERRORS}}}')
             and c.tag != q(NS_STANZA_ERRORS, 'text')]
    return err.get('type'), conds


def burst_to_reader(sender, reader, n, body='x' * 1000, timeout=30):
    """sender writes n messages (ids m0..m<n-1>) to reader in one send
    while a thread reads them; returns the seconds until the last arrived
    and the message ids in arrival order. Raises what the reader met."""
    got, failed = [], []

    def drain():
        try:
            while len(got) < n:
                el = reader.read_element(timeout=timeout)
                if el.tag == q(NS_CLIENT, 'message'):
                    got.append(el.get('id'))
        except Exception as e:  # re-raised below
            failed.append(e)

    t = threading.Thread(target=drain)
    t.start()
    start = time.monotonic()
    sender.send(''.join(f"<message to='{reader.jid}' type='chat' "
                        f"id='m{i}'><body>{body}</body></message>"
                        for i in range(n)), timeout=timeout)
    t.join(timeout + 10)
    elapsed = time.monotonic() - start
    if failed:
        raise failed[0]
    return elapsed, got


def logged_in(server, user, resource=None, *, direct_tls=False,
              mechanism='PLAIN', password=None, **kwargs):
    """A RawStream that is through TLS, SASL and resource binding; its
    bound full JID is in .jid."""
    port = server.tls_port if direct_tls else server.c2s_port
    stream = RawStream(port, direct_tls=direct_tls, **kwargs)
    try:
        stream.secure()
        stream.authenticate(user, password or server.passwords[user],
                            mechanism)
        stream.jid = stream.bind(resource)
    except BaseException:
        stream.close()
        raise
    return stream
