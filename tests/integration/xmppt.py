"""Scripted XMPP conversations (.xmppt files): parser, runner and matcher.

The format follows Prosody's scansion .scs files: a header with a title,
settings and [Client] blocks, a line of dashes, then actions
(`X connects`, `X sends:`, `X receives:`, `X receives: nothing`,
`X disconnects`, `X re-registers`) with indented XML. tests/scripts/README.md describes it.

The runner drives one rawstream.RawStream per client, in script order, in
one thread; every wait is bounded. Everything each client sends and
receives after login goes into a transcript with timestamps, and every
failure (ScriptFailure) carries the script line and the whole transcript.
Received stanzas are matched as scansion does: what the expected stanza
says must be there, anything else may be, unless scansion:strict="true".
"""

import bisect
import dataclasses
import re
import time
import xml.etree.ElementTree as ET
from xml.sax.saxutils import escape, quoteattr

import yaml

import rawstream
from rawstream import NS_CLIENT, NS_STREAM, NS_TLS, q

NS_SCANSION = 'https://matthewwild.co.uk/projects/scansion'
NS_XML = 'http://www.w3.org/XML/1998/namespace'
STRICT = q(NS_SCANSION, 'strict')
ANY = '{scansion:any}'

RECEIVE_TIMEOUT = 5.0  # `X receives:` (header `# timeout:` changes it)
NOTHING_WAIT = 0.5  # `X receives: nothing` listens this long
DRAIN_WAIT = 0.2  # on failure: collecting what is still on the wire

SETTINGS = ('config', 'accounts', 'timeout', 'expect-failure')
CLIENT_KEYS = ('jid', 'password', 'resource')
VERBS = ('connects', 'disconnects', 'sends:', 'receives:',
         'receives: nothing', 're-registers')

# The XML of a block is parsed inside a wrapper with the namespaces of a
# client stream (and, for expectations, the scansion prefix) declared.
_SEND_WRAP = (f'<wrapper xmlns="{NS_CLIENT}" xmlns:stream="{NS_STREAM}">',
              '</wrapper>')
_EXPECT_WRAP = (f'<wrapper xmlns="{NS_CLIENT}" xmlns:stream="{NS_STREAM}" '
                f'xmlns:scansion="{NS_SCANSION}">', '</wrapper>')
# prefixes shown without declaration (predeclared, or XML's own)
_PREFIXES = {NS_XML: 'xml', NS_STREAM: 'stream', NS_SCANSION: 'scansion'}
_VAR = re.compile(r'\$\{([^}]*)\}')
_SETTING = re.compile(r'#\s*(' + '|'.join(SETTINGS) + r')\s*:\s*(.*)$')
_CLIENT = re.compile(r'\[Client\]\s+(\S.*?)\s*$')
_KEY = re.compile(r'\s+([a-z]+)\s*:\s*(.*?)\s*$')


class ScriptFailure(AssertionError):
    """The script did not run as written (message: line and transcript)."""


class ScriptError(ScriptFailure):
    """The script itself is malformed."""


@dataclasses.dataclass
class ClientSpec:
    name: str
    line: int
    jid: str = ''
    password: str = 'auto'
    resource: str | None = None

    @property
    def user(self):
        return self.jid.partition('@')[0]

    @property
    def domain(self):
        return self.jid.partition('@')[2]


@dataclasses.dataclass
class Action:
    line: int
    client: str
    verb: str  # one of VERBS, without the colon
    xml: str | None = None  # the block, dedented, variables unexpanded
    xml_line: int = 0  # script line of the block's first line
    xml_starts: list = dataclasses.field(default_factory=list)  # offsets

    def line_at(self, offset):
        """The script line of an offset into xml."""
        return self.xml_line + bisect.bisect_right(self.xml_starts,
                                                   offset) - 1

    def describe(self):
        return f'{self.client} {self.verb}'


@dataclasses.dataclass
class Script:
    path: str
    title: str = ''
    config: dict = dataclasses.field(default_factory=dict)
    accounts: list = dataclasses.field(default_factory=list)
    timeout: float = RECEIVE_TIMEOUT
    expect_failure: str | None = None
    clients: dict = dataclasses.field(default_factory=dict)
    actions: list = dataclasses.field(default_factory=list)


# -- parsing ----------------------------------------------------------------

def parse_file(path):
    with open(path, encoding='utf-8') as f:
        return parse(f.read(), str(path))


def parse(text, path='<script>'):
    """A Script; raises ScriptError naming the line of any mistake."""
    script = Script(path)
    lines = text.splitlines()
    body = _parse_header(script, lines)
    if body is None:
        raise ScriptError(f'{path}: no line of dashes (---) ends the '
                          'header')
    _parse_body(script, lines, body)
    _check(script)
    return script


def _error(script, line, message):
    return ScriptError(f'{script.path}:{line}: {message}')


def _parse_header(script, lines):
    """Fills in title, settings and clients; returns the index of the
    first body line, or None without a separator."""
    client = None
    for i, raw in enumerate(lines):
        line, num = raw.rstrip(), i + 1
        if re.fullmatch(r'-{3,}', line):
            return i + 1
        if not line.strip():
            client = None
        elif line.startswith('#'):
            client = None
            _header_comment(script, num, line)
        elif (m := _CLIENT.match(line)):
            client = _new_client(script, num, m.group(1))
        elif client is not None and (m := _KEY.fullmatch(line)):
            _client_key(script, client, num, m.group(1), m.group(2))
        else:
            raise _error(script, num, f'not understood here: {line!r} '
                         '(the header ends at a line of dashes, ---)')
    return None


def _header_comment(script, num, line):
    m = _SETTING.match(line)
    if not m:
        if not script.title:
            script.title = line.lstrip('#').strip()
        return
    key, value = m.group(1), m.group(2).strip()
    try:
        if key == 'config':
            extra = yaml.safe_load(value)
            if not isinstance(extra, dict):
                raise ValueError('not a mapping')
            _merge(script.config, extra)
        elif key == 'accounts':
            script.accounts += value.replace(',', ' ').split()
        elif key == 'timeout':
            script.timeout = float(value)
            if not 0 < script.timeout <= 60:
                raise ValueError('not in (0, 60]')
        else:
            re.compile(value)
            script.expect_failure = value
    except (ValueError, re.error, yaml.YAMLError) as e:
        raise _error(script, num, f'bad {key} setting {value!r}: {e}')


def _merge(base, extra):
    """Nested mappings are merged key by key, as conftest does."""
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


def _new_client(script, num, name):
    if name in script.clients:
        raise _error(script, num, f'client {name!r} defined twice')
    spec = ClientSpec(name, num)
    script.clients[name] = spec
    return spec


def _client_key(script, spec, num, key, value):
    if key not in CLIENT_KEYS:
        raise _error(script, num, f'unknown client key {key!r} (known: '
                     f'{", ".join(CLIENT_KEYS)})')
    setattr(spec, key, value)


def _parse_body(script, lines, start):
    i = start
    while i < len(lines):
        line, num = lines[i].rstrip(), i + 1
        i += 1
        if not line.strip() or line.startswith('#'):
            continue
        if line[0].isspace():
            raise _error(script, num, 'indented line without an action '
                         'before it')
        action = _parse_action(script, num, line)
        if action.verb in ('sends', 'receives'):
            block, i = _take_block(lines, i)
            if not block:
                raise _error(script, num, f'{action.describe()}: needs '
                             'indented XML on the next lines')
            action.xml_line = block[0][0]
            action.xml, action.xml_starts = _join_block(
                [text for _, text in block])
        script.actions.append(action)


def _parse_action(script, num, line):
    # the longest name first: "Juliet's phone" before "Juliet"
    for name in sorted(script.clients, key=len, reverse=True):
        if not line.startswith(name + ' '):
            continue
        verb = re.sub(r'\s+', ' ', line[len(name):].strip())
        if verb in VERBS:
            return Action(num, name,
                          verb.removesuffix(':').replace(': ', ' '))
        raise _error(script, num, f'unknown action {verb!r} for {name} '
                     f'(known: {", ".join(VERBS)})')
    raise _error(script, num, f'no client of this script starts {line!r}')


def _take_block(lines, i):
    """The indented lines from i on (blank lines inside are dropped):
    ([(line number, stripped text)], index after the block)."""
    block = []
    while i < len(lines) and (not lines[i].strip() or lines[i][0].isspace()):
        if lines[i].strip():
            block.append((i + 1, lines[i].strip()))
        i += 1
    return block, i


def _join_block(texts):
    """Lines are joined directly between tags (so that indentation adds no
    whitespace text) and with a newline inside text. Returns the text and
    the offset where each line starts in it."""
    out, starts = texts[0], [0]
    for text in texts[1:]:
        glue = '' if out.endswith('>') and text.startswith('<') else '\n'
        out += glue
        starts.append(len(out))
        out += text
    return out, starts


def _check(script):
    for spec in script.clients.values():
        if not re.fullmatch(r'[^@/\s]+@[^@/\s]+', spec.jid):
            raise _error(script, spec.line, f'client {spec.name!r} needs '
                         '"jid: user@domain" (a bare JID)')
    for action in script.actions:
        if action.xml is None:
            continue
        expect = action.verb == 'receives'
        text = _VAR.sub(lambda m: _check_var(script, action, m.group(1)),
                        action.xml)
        elem = _parse_xml(script, action, text, expect)
        if expect:
            _check_strict_values(script, action, elem)


def _check_var(script, action, expr):
    if _lookup_var(script, expr) is None:
        raise _error(script, action.xml_line, f'unknown variable '
                     f'${{{expr}}} (known: ${{NAME\'s full JID}}, '
                     f'${{NAME\'s JID}} for the clients '
                     f'{", ".join(script.clients)})')
    # as long as the variable, so that XML errors keep their offsets
    return 'v' * (len(expr) + 3)


def _lookup_var(script, expr):
    """(client name, 'full' or 'bare') for a variable, or None."""
    for suffix, kind in (("'s full JID", 'full'), ("'s JID", 'bare')):
        name = expr.removesuffix(suffix)
        if name != expr and name in script.clients:
            return name, kind
    return None


def _parse_xml(script, action, text, expect):
    """The one element of a block; ScriptError with the line otherwise."""
    head, tail = _EXPECT_WRAP if expect else _SEND_WRAP
    try:
        wrapper = ET.fromstring(head + text + tail)
    except ET.ParseError as e:
        row, col = e.position
        offset = sum(len(r) + 1 for r in
                     (head + text).split('\n')[:row - 1]) + col - len(head)
        line = action.line_at(max(0, offset))
        raise _error(script, line, f'{action.describe()}: malformed XML: '
                     f'{e}') from None
    if len(wrapper) != 1 or (wrapper.text or '').strip() or \
            (wrapper[0].tail or '').strip():
        raise _error(script, action.xml_line, f'{action.describe()}: the '
                     'block must be exactly one element (one stanza)')
    return wrapper[0]


def _check_strict_values(script, action, elem):
    for node in elem.iter():
        if node.get(STRICT) not in (None, 'true', 'false'):
            raise _error(script, action.xml_line, 'scansion:strict must '
                         'be "true" or "false"')


# -- matching ---------------------------------------------------------------

def mismatch(expected, received, strict=False, path=''):
    """None if `received` matches `expected`, else the first difference
    (with its path). Subset match: every attribute and child element of
    `expected` must be in `received` (children in order), extra ones are
    allowed unless scansion:strict="true" holds for the element (set on it
    or on an ancestor; "false" turns it off again below). Text is compared
    stripped, when expected is not empty (or when strict); ANY as an
    attribute value or text matches any value."""
    marker = expected.get(STRICT)
    if marker is not None:
        strict = marker == 'true'
    path = f'{path}/{_split(expected.tag)[1]}'
    if expected.tag != received.tag:
        return f'{path}: got <{tag_name(received.tag)}> instead'
    why = _attr_mismatch(expected, received, strict, path)
    if why:
        return why
    want = (expected.text or '').strip()
    got = (received.text or '').strip()
    if want != ANY and (want or strict) and want != got:
        return f'{path}: text is {got!r}, expected {want!r}'
    if strict:
        return _strict_children(expected, received, path)
    return _ordered_children(expected, received, path)


def _attr_mismatch(expected, received, strict, path):
    for name, want in expected.attrib.items():
        if name == STRICT:
            continue
        got = received.get(name)
        if got is None:
            return f'{path}: no attribute {qname(name)} (expected {want!r})'
        if want != ANY and got != want:
            return (f'{path}: attribute {qname(name)} is {got!r}, '
                    f'expected {want!r}')
    if strict:
        extra = sorted(qname(n) for n in received.attrib
                       if n not in expected.attrib)
        if extra:
            return f'{path}: extra attributes {extra} (strict)'
    return None


def _strict_children(expected, received, path):
    if len(expected) != len(received):
        got = [tag_name(c.tag) for c in received]
        return (f'{path}: has {len(received)} child elements {got}, '
                f'expected {len(expected)} (strict)')
    for want, got in zip(expected, received):
        why = mismatch(want, got, True, path)
        if why:
            return why
    return None


def _ordered_children(expected, received, path):
    """Each expected child matches a later received child than the one
    before it (the earliest match is taken, which finds an assignment
    whenever one exists)."""
    got = list(received)
    pos = 0
    for want in expected:
        for j in range(pos, len(got)):
            if mismatch(want, got[j], False, path) is None:
                pos = j + 1
                break
        else:
            same = [c for c in got[pos:] if c.tag == want.tag]
            if same:
                return mismatch(want, same[0], False, path)
            if any(c.tag == want.tag for c in got[:pos]):
                return (f'{path}: no <{tag_name(want.tag)}> after the '
                        'children matched before it (children match in '
                        'order)')
            return f'{path}: no child <{tag_name(want.tag)}>'
    return None


# -- serializing (for transcripts and messages) -----------------------------

def qname(clark):
    """A readable attribute name: 'type', 'xml:lang', '{urn:x}y'."""
    ns, local = _split(clark)
    prefix = _PREFIXES.get(ns)
    if prefix is not None:
        return f'{prefix}:{local}'
    return clark if ns else local


def tag_name(clark):
    """A readable element name: 'body', 'stream:error',
    'x xmlns="urn:x"' (to go between < and >)."""
    ns, local = _split(clark)
    if ns in ('', NS_CLIENT):
        return local
    if ns in _PREFIXES:
        return f'{_PREFIXES[ns]}:{local}'
    return f'{local} xmlns={quoteattr(ns)}'


def to_xml(elem, parent_ns=NS_CLIENT):
    """Compact XML for elements parsed from a client stream: default
    namespaces where they change, the stream: prefix as in the stream."""
    ns, local = _split(elem.tag)
    attrs, decls = [], {}
    if ns == NS_STREAM:
        name, inner_ns = f'stream:{local}', parent_ns
    else:
        name, inner_ns = local, ns
        if ns != parent_ns:
            attrs.append(f'xmlns={quoteattr(ns)}')
    for key, value in elem.attrib.items():
        attrs.append(f'{_attr_name(key, decls)}={quoteattr(value)}')
    attrs += [f'xmlns:{p}={quoteattr(u)}' for u, p in decls.items()]
    open_tag = ' '.join([name] + attrs)
    inner = escape(elem.text or '') + ''.join(
        to_xml(child, inner_ns) + escape(child.tail or '')
        for child in elem)
    return f'<{open_tag}>{inner}</{name}>' if inner else f'<{open_tag}/>'


def _split(clark):
    if clark.startswith('{'):
        ns, _, local = clark[1:].partition('}')
        return ns, local
    return '', clark


def _attr_name(key, decls):
    ns, local = _split(key)
    if not ns:
        return local
    if ns in _PREFIXES:
        return f'{_PREFIXES[ns]}:{local}'
    prefix = decls.setdefault(ns, f'ns{len(decls)}')
    return f'{prefix}:{local}'


# -- running ----------------------------------------------------------------

class Transcript:
    """Every line each client sent or received, with the time since the
    script started."""

    def __init__(self):
        self.start = time.monotonic()
        self.entries = []

    def add(self, who, what, text):
        self.entries.append((time.monotonic() - self.start, who, what, text))

    def format(self):
        if not self.entries:
            return '  (empty)'
        width = max(len(who) for _, who, _, _ in self.entries)
        out = []
        for stamp, who, what, text in self.entries:
            lead = f'  {stamp:7.3f}s  {who:<{width}}  {what:<2} '
            rest = text.splitlines() or ['']
            out.append(lead + rest[0])
            out += [' ' * len(lead) + more for more in rest[1:]]
        return '\n'.join(out)


class _Client:
    """A script client: its spec and, while connected, its stream."""

    def __init__(self, spec):
        self.spec = spec
        self.stream = None
        self.jid = None  # the bound full JID

    def bare(self):
        return self.jid.partition('/')[0] if self.jid else self.spec.jid


class Runner:
    """Runs one Script against `server` (anything with .c2s_port and
    .passwords, a dict of user -> password, like conftest.Server; for
    `re-registers` also .ctl(*args, stdin=...), running stanzactl)."""

    def __init__(self, script, server):
        self.script = script
        self.server = server
        self.clients = {n: _Client(s) for n, s in script.clients.items()}
        self.transcript = Transcript()
        self.action = None

    def run(self):
        try:
            for action in self.script.actions:
                self.action = action
                getattr(self, '_' + re.sub(r'[ -]', '_', action.verb))(action)
            self.action = None
        except ScriptFailure:
            raise
        except (AssertionError, OSError, rawstream.SSL.Error) as e:
            self.fail(f'{type(e).__name__}: {e}')
        finally:
            self._close_all()
        return self.transcript

    def fail(self, message):
        """Raises ScriptFailure with the line, message and transcript."""
        self._drain()
        where = f'{self.script.path}'
        if self.action is not None:
            where += f':{self.action.line}: {self.action.describe()}'
        raise ScriptFailure(f'{where}: {message}\n\ntranscript '
                            f'({self.script.title or "untitled"}):\n'
                            f'{self.transcript.format()}')

    # -- actions ------------------------------------------------------------

    def _connects(self, action):
        client = self.clients[action.client]
        if client.stream is not None:
            self.fail('is already connected')
        spec = client.spec
        password = spec.password
        if password == 'auto':
            password = self.server.passwords.get(spec.user)
            if password is None:
                self.fail(f'no account {spec.user!r} on the test server '
                          '(list it in "# accounts:", or give "password:")')
        client.stream = self._login(spec, password)
        client.jid = client.stream.jid
        self.transcript.add(spec.name, '--',
                            f'connected: STARTTLS, SASL PLAIN as '
                            f'{spec.user}, bound {client.jid}')

    def _login(self, spec, password):
        # login and stream close are not what `# timeout:` is about
        stream = rawstream.RawStream(
            self.server.c2s_port,
            timeout=max(self.script.timeout, RECEIVE_TIMEOUT))
        try:
            stream.open(to=spec.domain)
            assert stream.features().find(q(NS_TLS, 'starttls')) \
                is not None, 'no <starttls/> offered'
            stream.starttls()
            stream.open(to=spec.domain)
            stream.features()
            stream.authenticate(spec.user, password, 'PLAIN', restart=False)
            stream.open(to=spec.domain)
            stream.features()
            stream.jid = stream.bind(spec.resource)
        except (AssertionError, OSError, rawstream.SSL.Error) as e:
            stream.close()
            self.fail(f'login failed: {type(e).__name__}: {e}')
        return stream

    def _disconnects(self, action):
        client = self._connected(action)
        self.transcript.add(client.spec.name, '>>', '</stream:stream>')
        try:
            client.stream.send('</stream:stream>')
        except (OSError, rawstream.SSL.Error) as e:
            # fine if the server ended the stream first (a stream error)
            if not client.stream.ended:
                self.fail(f'cannot send </stream:stream>: {e}')
        try:
            client.stream.wait_stream_end()
        except (TimeoutError, rawstream.StreamClosed) as e:
            self.fail(f'the server did not close the stream: {e}')
        self._log_unread(client)
        self.transcript.add(client.spec.name, '<<', '</stream:stream>')
        try:
            client.stream.wait_closed()
        except TimeoutError:
            self.fail('the server did not close the connection after '
                      '</stream:stream>')
        client.stream.close()
        client.stream = None

    def _re_registers(self, action):
        """The account is deleted with all its data and created again
        with the same password (what `# accounts:` does before a script).
        Other accounts keep what they stored about it: their roster items
        still name it, so a script can give two contacts subscription
        states that disagree, as after an account was lost and registered
        again, or with a server that lost or never kept its rosters."""
        spec = self.clients[action.client].spec
        online = [c.spec.name for c in self.clients.values()
                  if c.stream is not None and c.spec.jid == spec.jid]
        if online:
            self.fail(f'{", ".join(online)} must disconnect first (the '
                      'account goes away)')
        password = self.server.passwords.get(spec.user)
        if password is None:
            self.fail(f'no account {spec.user!r} on the test server')
        self.server.ctl('user', 'del', spec.jid)
        self.server.ctl('user', 'add', spec.jid, stdin=password + '\n')
        self.transcript.add(spec.name, '--', f're-registered {spec.jid}: '
                            'the account and all its data deleted, then '
                            'created again')

    def _sends(self, action):
        client = self._connected(action)
        text = self._expand(action.xml)
        self.transcript.add(client.spec.name, '>>', text)
        client.stream.send(text)

    def _receives(self, action):
        client = self._connected(action)
        expected = _parse_xml(self.script, action, self._expand(action.xml),
                              expect=True)
        elem = self._read(client, self.script.timeout)
        if elem is None:
            self.fail(f'nothing received within {self.script.timeout}s; '
                      f'expected\n  {to_xml(expected)}')
        why = mismatch(expected, elem)
        if why:
            self.fail(f'stanza does not match: {why}\n  expected: '
                      f'{to_xml(expected)}\n  received: {to_xml(elem)}')

    def _receives_nothing(self, action):
        client = self._connected(action)
        elem = self._read(client, NOTHING_WAIT)
        if elem is not None:
            self.fail(f'expected nothing within {NOTHING_WAIT}s, '
                      f'received\n  {to_xml(elem)}')

    # -- helpers --------------------------------------------------------------

    def _connected(self, action):
        client = self.clients[action.client]
        if client.stream is None:
            self.fail(f'{action.client} is not connected')
        return client

    def _read(self, client, timeout):
        """The next stanza (logged), or None after timeout."""
        try:
            elem = client.stream.read_element(timeout)
        except TimeoutError:
            return None
        except rawstream.StreamClosed as e:
            self.transcript.add(client.spec.name, '<<', '(stream closed)')
            self.fail(f'the stream ended: {e}')
        self.transcript.add(client.spec.name, '<<', to_xml(elem))
        return elem

    def _expand(self, text):
        def value(m):
            name, kind = _lookup_var(self.script, m.group(1))
            client = self.clients[name]
            if kind == 'bare':
                return escape(client.bare(), {'"': '&quot;', "'": '&apos;'})
            if client.jid is None:
                self.fail(f'${{{m.group(1)}}} used before {name} connects')
            return escape(client.jid, {'"': '&quot;', "'": '&apos;'})
        return _VAR.sub(value, text)

    def _log_unread(self, client):
        stream = client.stream
        while stream._pending:
            self.transcript.add(client.spec.name, '<<',
                                to_xml(stream._pending.popleft()) +
                                '   (unread)')

    def _drain(self):
        """Logs what connected clients received but the script did not
        read (it often explains a failure)."""
        deadline = time.monotonic() + DRAIN_WAIT
        for client in self.clients.values():
            if client.stream is None:
                continue
            while True:
                try:
                    left = max(0.0, deadline - time.monotonic())
                    elem = client.stream.read_element(left)
                except (TimeoutError, AssertionError, OSError,
                        rawstream.SSL.Error):
                    break
                self.transcript.add(client.spec.name, '<<',
                                    to_xml(elem) + '   (unread)')

    def _close_all(self):
        """Ends the streams the script left open, politely and briefly."""
        for client in self.clients.values():
            if client.stream is None:
                continue
            stream, client.stream = client.stream, None
            try:
                stream.close_stream()
                stream.wait_stream_end(1.0)
            except (AssertionError, OSError, rawstream.SSL.Error):
                pass
            stream.close()


def run(script, server):
    """Runs the script; returns its Transcript or raises ScriptFailure."""
    return Runner(script, server).run()
