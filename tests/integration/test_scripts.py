"""Scripted conversations: every tests/scripts/*.xmppt file is one test
(format in tests/scripts/README.md, runner in xmppt.py), and every
tests/scripts/must-fail/*.xmppt must fail the way its `# expect-failure:`
line says, with the transcript in the message, so that a matcher that
accepts everything cannot go unnoticed. The matcher and the parser are also
tested here on their own, without a server.

Scripts with the same `# config:` share one server for the whole module
(starting one and creating the accounts costs more than most scripts);
`# accounts:` names accounts that are deleted with all their data and
created again before the script, so scripts that store state can start
clean on a shared server.
"""

import json
import re
import xml.etree.ElementTree as ET

import pytest

import conftest
import xmppt
from conftest import USERS

SCRIPTS_DIR = conftest.REPO_ROOT / 'tests' / 'scripts'
SCRIPTS = sorted(SCRIPTS_DIR.glob('*.xmppt'))
MUST_FAIL = sorted((SCRIPTS_DIR / 'must-fail').glob('*.xmppt'))


class ServerPool:
    """The module's servers, one per distinct script config. A server
    that died is replaced for the next script (and reported at the end,
    when every server must stop cleanly)."""

    def __init__(self, root):
        self.root = root
        self.servers = []  # every server started, for logs and teardown
        self._by_config = {}

    def get(self, config):
        key = json.dumps(config, sort_keys=True)
        srv = self._by_config.get(key)
        if srv is None or not srv.alive():
            srv = conftest.Server(self.root / f'server{len(self.servers)}',
                                  config)
            self.servers.append(srv)
            srv.start()
            for user, password in USERS.items():
                srv.add_user(user, password)
            self._by_config[key] = srv
        return srv

    def stop_all(self):
        problems = []
        for i, srv in enumerate(self.servers):
            srv.stop()
            problems += [f'server #{i} ({srv.log_path}): {p}'
                         for p in srv.problems]
        return problems


@pytest.fixture(scope='module')
def pool(tmp_path_factory):
    servers = ServerPool(tmp_path_factory.mktemp('scripts'))
    yield servers
    problems = servers.stop_all()
    if problems:
        pytest.fail('\n'.join(problems), pytrace=False)


@pytest.fixture
def script_server(request, pool):
    """get(script) -> the shared server for it, with its fresh accounts;
    the logs of the module's servers go into the report of a failure."""
    request.node.stash[conftest._servers_key] = pool.servers

    def get(script):
        srv = pool.get(script.config)
        for user in script.accounts:
            srv.ctl('user', 'del', srv.jid(user), check=False)
            srv.add_user(user, USERS.get(user, f'{user}-secret'))
        return srv
    return get


def run_script(path, script_server):
    """Parses and runs; returns (script, ScriptFailure or None)."""
    try:
        script = xmppt.parse_file(path)
    except xmppt.ScriptError as e:
        pytest.fail(str(e), pytrace=False)
    srv = script_server(script)
    log_size = len(srv.log_text())
    failure = None
    try:
        xmppt.run(script, srv)
    except xmppt.ScriptFailure as e:
        failure = e
    problems = []
    if not srv.alive():
        problems.append('stanzad died during this script')
    found = conftest.sanitizer_reports(srv.log_text()[log_size:])
    if found:
        problems.append(f'sanitizer reports in the log: {found}')
    if problems:
        pytest.fail('\n'.join(problems) + (f'\n\n{failure}' if failure
                                           else ''), pytrace=False)
    return script, failure


@pytest.mark.parametrize('path', SCRIPTS, ids=lambda p: p.name)
def test_script(path, script_server):
    script, failure = run_script(path, script_server)
    assert script.expect_failure is None, (
        f'{path.name} has "# expect-failure:"; such scripts go in '
        'must-fail/')
    if failure:
        pytest.fail(str(failure), pytrace=False)


@pytest.mark.parametrize('path', MUST_FAIL, ids=lambda p: p.name)
def test_script_must_fail(path, script_server):
    """The runner fails these, for the reason their header gives, and the
    message has the transcript."""
    script, failure = run_script(path, script_server)
    assert script.expect_failure, f'{path.name} has no "# expect-failure:"'
    assert failure is not None, f'{path.name} passed but must fail'
    message = str(failure)
    assert not isinstance(failure, xmppt.ScriptError), message
    assert re.search(script.expect_failure, message), (
        f'{path.name} failed, but not with {script.expect_failure!r}:\n'
        f'{message}')
    # every client's login, and stanzas both ways, with their times
    transcript = message.partition('\n\ntranscript (')[2]
    for name in script.clients:
        assert re.search(rf'^ +\d+\.\d{{3}}s  {re.escape(name)} +-- '
                         'connected: ', transcript, re.M), message
    for arrow in ('>>', '<<'):
        assert re.search(rf'^ +\d+\.\d{{3}}s  \S.* {arrow} <', transcript,
                         re.M), message


def test_scripts_exist():
    assert len(SCRIPTS) >= 7 and len(MUST_FAIL) >= 2, (SCRIPTS, MUST_FAIL)


# -- the matcher on its own ---------------------------------------------------

def expect(text):
    """An expected stanza as a script block gives it (scansion prefix
    declared, jabber:client by default)."""
    head, tail = xmppt._EXPECT_WRAP
    return ET.fromstring(head + text + tail)[0]


def got(text):
    return ET.fromstring(f"<x xmlns='jabber:client'>{text}</x>")[0]


MSG = ("<message from='a@l/r' to='b@l/s' type='chat' id='m1'>"
       "<body> Hello </body><thread>t1</thread>"
       "<x xmlns='urn:example:x' k='v'><y>deep</y></x></message>")


@pytest.mark.parametrize('expected', [
    "<message/>",
    "<message type='chat'/>",
    "<message from='a@l/r' type='chat'><body>Hello</body></message>",
    "<message id='{scansion:any}'><body>{scansion:any}</body></message>",
    "<message><body>Hello</body><x xmlns='urn:example:x'/></message>",
    "<message><thread/><x xmlns='urn:example:x'><y>deep</y></x></message>",
    "<message><body>\n\t\tHello\n\t</body></message>",
    "<message scansion:strict='true' from='a@l/r' to='b@l/s' type='chat'"
    " id='m1'><body>Hello</body><thread>t1</thread>"
    "<x xmlns='urn:example:x' k='v' scansion:strict='false'/></message>",
])
def test_matcher_accepts(expected):
    assert xmppt.mismatch(expect(expected), got(MSG)) is None


@pytest.mark.parametrize('expected, why', [
    ("<iq/>", r'^/iq: got <message> instead'),
    ("<message type='normal'/>", r"attribute type is 'chat', expected"),
    ("<message xml:lang='en'/>", r'no attribute xml:lang'),
    ("<message><body>Goodbye</body></message>",
     r"/message/body: text is 'Hello', expected 'Goodbye'"),
    ("<message><subject/></message>", r'no child <subject>'),
    ("<message><thread/><body/></message>",
     r'^/message: no <body> after the children matched before it'),
    ("<message><body/><body/></message>", r'no <body> after'),
    ("<message><x xmlns='urn:example:other'/></message>", r'no child'),
    ("<message><x xmlns='urn:example:x'><y>shallow</y></x></message>",
     r"^/message/x/y: text is 'deep', expected 'shallow'"),
    ("<message scansion:strict='true' from='a@l/r' to='b@l/s' "
     "type='chat'/>", r"extra attributes \['id'\]"),
    ("<message scansion:strict='true' from='a@l/r' to='b@l/s' type='chat'"
     " id='m1'><body>Hello</body></message>", r'has 3 child elements'),
    ("<message><x xmlns='urn:example:x' scansion:strict='true' k='v'/>"
     "</message>", r'^/message/x: has 1 child elements \[.y xmlns="urn:ex'),
    ("<message><thread scansion:strict='true'/></message>",
     r"/thread: text is 't1', expected ''"),
])
def test_matcher_rejects(expected, why):
    reason = xmppt.mismatch(expect(expected), got(MSG))
    assert reason is not None and re.search(why, reason), reason


def test_to_xml_round_trips():
    elem = got(MSG.replace("k='v'", "k='v&amp;&lt;' xml:lang='en'"))
    text = xmppt.to_xml(elem)
    assert text.startswith('<message from="a@l/r"'), text
    assert '<x xmlns="urn:example:x" k="v&amp;&lt;" xml:lang="en">' in text
    assert xmppt.mismatch(elem, got(text)) is None
    assert xmppt.mismatch(got(text), elem) is None


# -- the parser on its own ----------------------------------------------------

GOOD = """# A title
# config: shards: 2
# config: {limits: {max_depth: 16}}
# accounts: dave, erin
# timeout: 2.5
[Client] Juliet
\tjid: juliet@localhost
[Client] Juliet's phone
\tjid: juliet@localhost
\tpassword: pw
\tresource: mobile
---------
# a comment
Juliet connects
Juliet's phone   connects
Juliet sends:
\t<message to="${Juliet's phone's full JID}">
\t\t<body>two
\t\tlines</body>

\t</message>
Juliet's phone receives: nothing
Juliet's phone receives:
\t<message from="${Juliet's JID}"/>
Juliet disconnects
"""


def test_parse():
    s = xmppt.parse(GOOD, 'good.xmppt')
    assert s.title == 'A title'
    assert s.config == {'shards': 2, 'limits': {'max_depth': 16}}
    assert s.accounts == ['dave', 'erin'] and s.timeout == 2.5
    assert list(s.clients) == ['Juliet', "Juliet's phone"]
    phone = s.clients["Juliet's phone"]
    assert (phone.jid, phone.password, phone.resource) == \
        ('juliet@localhost', 'pw', 'mobile')
    assert s.clients['Juliet'].password == 'auto'
    assert [(a.line, a.client, a.verb) for a in s.actions] == [
        (14, 'Juliet', 'connects'), (15, "Juliet's phone", 'connects'),
        (16, 'Juliet', 'sends'), (22, "Juliet's phone", 'receives nothing'),
        (23, "Juliet's phone", 'receives'), (25, 'Juliet', 'disconnects')]
    assert s.actions[2].xml == ('<message to="${Juliet\'s phone\'s full '
                                'JID}"><body>two\nlines</body></message>')
    assert s.actions[2].xml_line == 17


@pytest.mark.parametrize('change, error', [
    (('---------\n', ''), r':13: not understood.*line of dashes'),
    (('jid: juliet@localhost\n[', 'jid: juliet\n['),
     r':6: client .Juliet. needs "jid'),
    (('resource: mobile', 'resuorce: mobile'), r':11: unknown client key'),
    (('Juliet disconnects', 'Juliet leaves'), r":25: unknown action"),
    (('Juliet disconnects', 'Romeo connects'), r':25: no client'),
    (('<body>two', '<body>two<'), r':18: Juliet sends: malformed XML'),
    (('${Juliet\'s JID}', '${Romeo\'s JID}'), r':24: unknown variable'),
    (('Juliet\'s phone receives:\n\t<message from',
      'Juliet\'s phone receives:\n\t<presence/><message from'),
     r':24: .* exactly one element'),
    (('<message from', '<message scansion:strict="yes" from'),
     r':24: scansion:strict must be'),
    (('# timeout: 2.5', '# timeout: soon'), r':5: bad timeout'),
    (('# config: shards: 2', '# config: [1]'), r':2: bad config'),
    (('# a comment', '\t<presence/>'), r':13: indented line without'),
    (('Juliet disconnects', 'Juliet sends:'), r':25: .*needs indented XML'),
])
def test_parse_errors(change, error):
    text = GOOD.replace(*change)
    assert text != GOOD
    with pytest.raises(xmppt.ScriptError) as info:
        xmppt.parse(text, 'good.xmppt')
    assert re.search(error, str(info.value)), str(info.value)


def test_parse_re_registers():
    s = xmppt.parse(GOOD.replace('Juliet disconnects',
                                 'Juliet disconnects\nJuliet re-registers'))
    assert [(a.client, a.verb) for a in s.actions[-2:]] == [
        ('Juliet', 'disconnects'), ('Juliet', 're-registers')]


def test_parse_header_only():
    with pytest.raises(xmppt.ScriptError, match=r'^h.xmppt: no line of '):
        xmppt.parse(GOOD.partition('---------')[0], 'h.xmppt')


def test_readme_example_parses():
    readme = (SCRIPTS_DIR / 'README.md').read_text()
    example = readme.split('```\n')[1]
    s = xmppt.parse(example, 'README.md')
    assert [a.verb for a in s.actions] == [
        'connects', 'sends', 'receives', 'receives nothing', 'disconnects']


def test_parse_config_lines_merge():
    s = xmppt.parse(GOOD.replace('# a comment',
                                 '# config: {limits: {max_attrs: 8}}'))
    assert s.config == {'shards': 2, 'limits': {'max_depth': 16}}
    s = xmppt.parse(GOOD.replace('# timeout: 2.5',
                                 '# config: {limits: {max_attrs: 8}}'))
    assert s.config == {'shards': 2,
                        'limits': {'max_depth': 16, 'max_attrs': 8}}
