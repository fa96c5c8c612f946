"""Integration test fixtures: run a real stanzad on free loopback ports.

`server_factory(**overrides)` writes a YAML config into a temp dir, starts
`$STANZAD_BIN -c CONFIG` (default build/stanzad, relative to the repo root),
waits until both listeners accept TCP connections and creates the standard
accounts (USERS) with stanzactl. At teardown every server gets SIGTERM and
must exit with status 0 and without sanitizer reports in its log; on any test
failure the logs of the test's servers are attached to the report.

`async def` tests are run here in a fresh event loop with a deadline
(marker `deadline(seconds)`, default DEFAULT_DEADLINE), so that no test can
hang even without pytest-timeout.
"""

import asyncio
import copy
import inspect
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
DOMAIN = 'localhost'
DEFAULT_DEADLINE = 60.0
READY_TIMEOUT = 20.0
STOP_TIMEOUT = 30.0
CTL_TIMEOUT = 30.0
LOG_TAIL_LINES = 400

# Accounts every server gets. walter and wendy are the witness pair of the
# bad-input tests (clients.Witness); the others are for the tests themselves.
USERS = {
    'alice': 'alice-secret',
    'bob': 'bob-secret',
    'carol': 'carol-secret',
    'walter': 'walter-secret',
    'wendy': 'wendy-secret',
}

SANITIZER_MARKERS = ('ERROR: AddressSanitizer', 'LeakSanitizer',
                     'runtime error:')

BASE_CONFIG = {
    'hosts': [DOMAIN],
    'data_dir': 'data',
    'log_level': 'debug',
    'shards': 1,
    'listeners': [],  # filled in with free ports
    'limits': {
        'max_stanza_size': '256KiB',
        'max_depth': 32,
        'max_attrs': 64,
        'auth_timeout': '30s',
        'max_conns_per_ip': 32,
        'max_sasl_attempts': 3,
    },
}

_servers_key = pytest.StashKey[list]()

# the federation fixture and its report hook (tests/integration/federation.py)
pytest_plugins = ('federation',)


def _binary(env_name, default):
    path = Path(os.environ.get(env_name) or default)
    return path if path.is_absolute() else REPO_ROOT / path


STANZAD_BIN = _binary('STANZAD_BIN', 'build/stanzad')
# stanzactl defaults to the one built next to stanzad, so that pointing
# STANZAD_BIN at the ASan build also tests the ASan stanzactl.
STANZACTL_BIN = _binary('STANZACTL_BIN', STANZAD_BIN.parent / 'stanzactl')


def sanitizer_env():
    env = dict(os.environ)
    env.setdefault('ASAN_OPTIONS', 'detect_leaks=1')
    env.setdefault('UBSAN_OPTIONS', 'print_stacktrace=1:halt_on_error=1')
    return env


def sanitizer_reports(text):
    return [m for m in SANITIZER_MARKERS if m in text]


def proc_cpu_s(pid):
    """utime + stime of a process, all threads, in seconds."""
    with open(f'/proc/{pid}/stat') as f:
        fields = f.read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def metrics(server):
    """The server's metrics as {'name{labels}': value}; checks the text
    format."""
    out = server.ctl('metrics').stdout
    values = {}
    for line in out.splitlines():
        if line.startswith('#'):
            assert re.match(r'# (HELP|TYPE) stanzad_\w+ ', line), line
            continue
        m = re.fullmatch(r'(stanzad_\w+(?:\{[^}]*\})?) (\d+)', line)
        assert m, f'not a metric line: {line!r}'
        values[m.group(1)] = int(m.group(2))
    return values


def thread_stacks(pid):
    """Backtraces of a hung process (for the report), if gdb is there."""
    gdb = shutil.which('gdb')
    if not gdb:
        return '(no gdb to show them)'
    try:
        res = subprocess.run(
            [gdb, '-p', str(pid), '-batch', '-nx',
             '-ex', 'thread apply all bt'],
            capture_output=True, text=True, timeout=30)
        return res.stdout[-20000:]
    except (OSError, subprocess.TimeoutExpired) as e:
        return f'(gdb failed: {e})'


_handed_out = set()  # every port free_ports() returned in this run


def free_ports(count):
    """Distinct free TCP ports on 127.0.0.1 (held open together while
    picking, so that they differ), never one handed out before in this
    run: a port a module-scoped fixture picked once (the s2s world's) is
    free again in the kernel's eyes, and a later server of another test
    must not be given it for a second listener."""
    socks = []
    try:
        while len(socks) < count:
            s = socket.socket()
            s.bind(('127.0.0.1', 0))
            if s.getsockname()[1] in _handed_out:
                s.close()
                continue
            socks.append(s)
        ports = [s.getsockname()[1] for s in socks]
        _handed_out.update(ports)
        return ports
    finally:
        for s in socks:
            s.close()


def _merge(base, overrides):
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


def _port_open(port):
    try:
        with socket.create_connection(('127.0.0.1', port), timeout=1):
            return True
    except OSError:
        return False


class Server:
    """One stanzad process and its temp dir (config, data, log)."""

    def __init__(self, root, overrides, preexec=None):
        self.root = Path(root)
        # Runs in the child before exec (e.g. setrlimit); the tests may
        # change it between restarts.
        self.preexec = preexec
        self.root.mkdir(parents=True)
        self.config_path = self.root / 'stanzad.yaml'
        self.data_dir = self.root / 'data'
        self.log_path = self.root / 'stanzad.log'
        self.c2s_port, self.tls_port, component_port = free_ports(3)
        self.config = copy.deepcopy(BASE_CONFIG)
        self.config['listeners'] = [
            {'type': 'c2s', 'address': '127.0.0.1', 'port': self.c2s_port},
            {'type': 'c2s_tls', 'address': '127.0.0.1',
             'port': self.tls_port},
        ]
        # s2s_port=N adds a server-to-server listener (STARTTLS) on
        # 127.0.0.1:N, for tests whose DNS points other servers there.
        self.s2s_port = overrides.pop('s2s_port', None)
        if self.s2s_port:
            self.config['listeners'].append(
                {'type': 's2s', 'address': '127.0.0.1',
                 'port': self.s2s_port})
        # A server with components (XEP-0114) gets a component listener.
        self.component_port = None
        if overrides.get('components'):
            self.component_port = component_port
            self.config['listeners'].append(
                {'type': 'component', 'address': '127.0.0.1',
                 'port': self.component_port})
        # Listeners given in overrides come in addition to the client
        # ones (an s2s listener on a federation test's own address).
        overrides = dict(overrides)
        self.config['listeners'] += overrides.pop('listeners', [])
        _merge(self.config, overrides)
        # The first host is the one the accounts and jid() are in.
        first = self.config['hosts'][0]
        self.domain = first['name'] if isinstance(first, dict) else first
        self.config_path.write_text(
            yaml.safe_dump(self.config, sort_keys=False))
        self.proc = None
        self.passwords = {}
        self.problems = []  # collected at stop, reported at teardown

    # -- process ----------------------------------------------------------

    def start(self):
        assert STANZAD_BIN.exists(), f'{STANZAD_BIN} not built'
        with open(self.log_path, 'ab') as log:
            self.proc = subprocess.Popen(
                [str(STANZAD_BIN), '-c', str(self.config_path)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                cwd=self.root, env=sanitizer_env(),
                preexec_fn=self.preexec)
        self._wait_ready()

    def _wait_ready(self):
        deadline = time.monotonic() + READY_TIMEOUT
        pending = [p for p in (self.c2s_port, self.tls_port,
                               self.component_port, self.s2s_port) if p]
        while pending:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f'stanzad exited with {self.proc.returncode} during '
                    f'startup\n{self.log_tail()}')
            if time.monotonic() > deadline:
                raise AssertionError(
                    f'stanzad not listening on {pending} after '
                    f'{READY_TIMEOUT}s\n{self.log_tail()}')
            pending = [p for p in pending if not _port_open(p)]
            if pending:
                time.sleep(0.05)

    def stop(self):
        """SIGTERM; records a problem unless it exits 0 with a clean log."""
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                stacks = thread_stacks(proc.pid)
                proc.kill()
                proc.wait()
                self.problems.append(
                    f'stanzad did not exit within {STOP_TIMEOUT}s of '
                    f'SIGTERM (killed); its threads were:\n{stacks}')
                return
        else:
            self.problems.append(
                f'stanzad died before the end of the test '
                f'(status {proc.returncode})')
            return
        if proc.returncode != 0:
            self.problems.append(
                f'stanzad exited with status {proc.returncode} on SIGTERM')
        found = sanitizer_reports(self.log_text())
        if found:
            self.problems.append(f'sanitizer reports in the log: {found}')

    def restart(self):
        self.stop()
        assert not self.problems, self.problems
        with open(self.log_path, 'ab') as log:
            log.write(b'\n===== restart =====\n')
        self.start()

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    # -- log --------------------------------------------------------------

    def log_text(self):
        try:
            return self.log_path.read_text(errors='replace')
        except FileNotFoundError:
            return ''

    def log_tail(self, lines=LOG_TAIL_LINES):
        text = self.log_text().splitlines()
        head = ''
        if len(text) > lines:
            head = (f'[... {len(text) - lines} earlier lines in '
                    f'{self.log_path}]\n')
        return head + '\n'.join(text[-lines:])

    def wait_for_log(self, pattern, timeout=10.0, count=1):
        """Waits until `pattern` (a regex) matched `count` times; returns
        all matches."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            found = list(regex.finditer(self.log_text()))
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(
                    f'log never showed {count}x {pattern!r} within '
                    f'{timeout}s')
            time.sleep(0.05)

    # -- stanzactl and accounts -------------------------------------------

    def ctl(self, *args, stdin=None, check=True):
        """Runs stanzactl -c CONFIG ARGS; returns the CompletedProcess."""
        assert STANZACTL_BIN.exists(), f'{STANZACTL_BIN} not built'
        res = subprocess.run(
            [str(STANZACTL_BIN), '-c', str(self.config_path), *args],
            input=stdin, capture_output=True, text=True, cwd=self.root,
            env=sanitizer_env(), timeout=CTL_TIMEOUT)
        found = sanitizer_reports(res.stderr)
        assert not found, f'stanzactl {args}: {found}\n{res.stderr}'
        if check:
            assert res.returncode == 0, (
                f'stanzactl {" ".join(args)} exited {res.returncode}\n'
                f'stdout: {res.stdout}\nstderr: {res.stderr}')
        return res

    def add_user(self, user, password):
        self.ctl('user', 'add', f'{user}@{self.domain}',
                 stdin=password + '\n')
        self.passwords[user] = password

    def jid(self, user, resource=None):
        return f'{user}@{self.domain}' + \
            (f'/{resource}' if resource else '')


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for i, srv in enumerate(item.stash.get(_servers_key, [])):
            report.sections.append(
                (f'stanzad log #{i} ({srv.log_path})', srv.log_tail()))


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem):
    """Runs `async def` tests in a fresh event loop, bounded in time."""
    func = pyfuncitem.obj
    if not inspect.iscoroutinefunction(func):
        return None
    marker = pyfuncitem.get_closest_marker('deadline')
    limit = marker.args[0] if marker else DEFAULT_DEADLINE
    names = pyfuncitem._fixtureinfo.argnames
    kwargs = {name: pyfuncitem.funcargs[name] for name in names}

    async def bounded():
        try:
            await asyncio.wait_for(func(**kwargs), limit)
        except asyncio.TimeoutError:
            pytest.fail(f'test did not finish within {limit}s')

    asyncio.run(bounded())
    return True


def stop_and_check(servers):
    """Stops the servers a test started and fails the test if any of them
    did not exit cleanly or logged a sanitizer report (Server.problems);
    the logs are attached by pytest_runtest_makereport."""
    problems = []
    for i, srv in enumerate(servers):
        srv.stop()
        problems += [f'server #{i}: {p}' for p in srv.problems]
    if problems:
        pytest.fail('\n'.join(problems), pytrace=False)


@pytest.fixture
def server_factory(request, tmp_path):
    """start(**overrides) -> Server, with USERS created. Overrides are
    merged into the config (nested dicts such as limits key by key);
    preexec= runs in the server process before exec (resource limits)."""
    servers = []
    request.node.stash[_servers_key] = servers

    def start(users=USERS, preexec=None, **overrides):
        srv = Server(tmp_path / f'server{len(servers)}', overrides, preexec)
        servers.append(srv)
        srv.start()
        for user, password in users.items():
            srv.add_user(user, password)
        return srv

    yield start
    stop_and_check(servers)


@pytest.fixture
def server(server_factory):
    """A server with the default config and the USERS accounts."""
    return server_factory()


@pytest.fixture
def dns_server(tmp_path):
    """A DnsServer (dnsserver.py) in the test's temp dir: add zones, then
    start(); stopped at teardown. Point stanzad at it with
    `dns=dns_server.resolver_config()`."""
    from dnsserver import DnsServer
    dns = DnsServer(tmp_path / 'dns')
    yield dns
    dns.stop()
