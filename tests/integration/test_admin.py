"""stanzactl against the running server's control socket (status, metrics,
user kick, user del of a connected user) and the checks of configuration
and certificates (config check, cert check). docs/admin.md describes the
commands, docs/internals/admin.md the control socket."""

import os
import re
import socket
import stat
import subprocess

import pytest
import yaml

import clients
from conftest import STANZACTL_BIN, metrics, sanitizer_env
from rawstream import NS_SASL, RawStream, q

STATUS_NOT_RUNNING = 3


def ctl_socket(server):
    return server.data_dir / 'stanzad.ctl'


def delta(before, after, name):
    return after[name] - before[name]


def status_lines(server):
    res = server.ctl('status')
    lines = res.stdout.splitlines()
    assert lines[0] == 'stanzad is running'
    return lines[1:]


def status_value(server, key):
    for line in status_lines(server):
        words = line.split()
        if words[0] == key:
            return words[1:]
    raise AssertionError(f'no {key} in status')


def control_request(server, data, read_until=None, timeout=5):
    """Sends raw bytes to the control socket; returns what came back
    until the server closed (or read_until was seen)."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(timeout)
        s.connect(str(ctl_socket(server)))
        s.sendall(data)
        got = b''
        while read_until is None or read_until not in got:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            got += chunk
        return got.decode(errors='replace')


# -- status ------------------------------------------------------------------


def test_status_running(server):
    res = server.ctl('status')
    assert res.returncode == 0
    lines = res.stdout.splitlines()
    assert lines[0] == 'stanzad is running'
    keys = {line.split()[0]: line.split()[1:] for line in lines[1:]}
    assert keys['version'] == ['0.1.0']
    assert keys['pid'] == [str(server.proc.pid)]
    assert keys['shards'] == ['1']
    assert keys['c2s_sessions'] == ['0']
    assert keys['c2s_host'] == ['localhost', '0']
    assert int(keys['rss'][0]) > 1024 * 1024
    for key in ('uptime', 'connections', 's2s_in_connections',
                's2s_out_connections', 'component_connections',
                'pool_jobs', 'store_queue_waiting'):
        assert key in keys, key


async def test_status_counts_sessions(server):
    async with clients.connected(server, 'alice/one', 'alice/two', 'bob'):
        assert status_value(server, 'c2s_sessions') == ['3']
        assert status_value(server, 'c2s_host') == ['localhost', '3']
        assert status_value(server, 'c2s_connections') == ['3']
    await clients.until(
        lambda: status_value(server, 'c2s_sessions') == ['0'],
        what='sessions gone from status')


def test_status_not_running(server):
    server.stop()
    assert not server.problems, server.problems
    # a clean stop removes the socket
    assert not ctl_socket(server).exists()
    res = server.ctl('status', check=False)
    assert res.returncode == STATUS_NOT_RUNNING, res
    assert 'not running' in res.stdout
    # commands that need the server fail (1), without a traceback of sorts
    res = server.ctl('metrics', check=False)
    assert res.returncode == 1
    assert 'not running' in res.stderr


def test_socket_is_private_and_replaced_when_stale(server):
    path = ctl_socket(server)
    mode = os.stat(path).st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o600
    # a crash leaves the socket behind; the next start replaces it
    server.proc.kill()
    server.proc.wait()
    server.proc = None
    assert path.exists()
    res = server.ctl('status', check=False)
    assert res.returncode == STATUS_NOT_RUNNING
    server.start()
    server.wait_for_log(r'removed stale socket')
    assert server.ctl('status').returncode == 0


def test_second_server_refused(server):
    """A second server on the same data directory must not take the
    running one's control socket."""
    with open(server.root / 'second.log', 'wb') as log:
        res = subprocess.run(
            [str(STANZACTL_BIN.parent / 'stanzad'), '-c',
             str(server.config_path)],
            stdout=log, stderr=subprocess.STDOUT, cwd=server.root,
            env=sanitizer_env(), timeout=30)
    assert res.returncode != 0
    assert 'another stanzad is running' in \
        (server.root / 'second.log').read_text()
    assert server.ctl('status').returncode == 0


# -- metrics -----------------------------------------------------------------


async def test_metrics_move(server):
    m0 = metrics(server)
    assert m0['stanzad_c2s_sessions{host="localhost"}'] == 0
    async with clients.connected(server, 'alice', 'bob') as (alice, bob):
        m1 = metrics(server)
        assert delta(m0, m1, 'stanzad_logins_total{result="ok"}') == 2
        assert m1['stanzad_c2s_sessions{host="localhost"}'] == 2
        assert m1['stanzad_connections{type="c2s"}'] == 2
        assert delta(m0, m1, 'stanzad_bytes_in_total') > 0
        assert delta(m0, m1, 'stanzad_bytes_out_total') > 0
        for i in range(7):
            alice.send_message(mto=bob.boundjid.full, mbody=f'm{i}',
                               mtype='chat')
        for i in range(7):
            await bob.next_message(f'm{i}')
        m2 = metrics(server)
        assert delta(m1, m2, 'stanzad_stanzas_in_total{kind="message"}') \
            == 7
        assert delta(m1, m2, 'stanzad_stanzas_out_total{kind="message"}') \
            == 7
        assert delta(m1, m2, 'stanzad_bytes_in_total') > 7 * 20
    # a failed login
    with RawStream(server.c2s_port) as stream:
        stream.secure()
        reply = stream.auth_plain('carol', 'wrong')
        assert reply.tag == q(NS_SASL, 'failure')
    m3 = metrics(server)
    assert delta(m2, m3, 'stanzad_logins_total{result="failed"}') == 1
    assert delta(m2, m3, 'stanzad_logins_total{result="ok"}') == 0
    assert m3['stanzad_resident_memory_bytes'] > 1024 * 1024
    assert m3['stanzad_pool_jobs_total'] >= m0['stanzad_pool_jobs_total']


# -- kick and user del ---------------------------------------------------------


async def test_kick_ends_session(server):
    async with clients.connected(server, 'alice/phone', 'alice/desk',
                                 'bob') as (phone, desk, bob):
        m0 = metrics(server)
        res = server.ctl('user', 'kick', 'alice@localhost/phone')
        assert 'sessions 1' in res.stdout
        await clients.until(lambda: phone.stream_errors, what='kick')
        assert [e['condition'] for e in phone.stream_errors] == \
            ['policy-violation']
        server.wait_for_log(r'control: uid \d+ pid \d+ kicked '
                            r'alice@localhost/phone \(1 session')
        # the other resource and the other account stay
        await clients.round_trip(desk, bob)
        assert desk.stream_errors == []
        m1 = metrics(server)
        assert delta(
            m0, m1,
            'stanzad_stream_errors_total{condition="policy-violation"}') \
            == 1
        # the bare JID ends every resource of the account
        res = server.ctl('user', 'kick', 'alice@localhost')
        assert 'sessions 1' in res.stdout
        await clients.until(lambda: desk.stream_errors, what='kick all')
        assert bob.stream_errors == []


def test_kick_bad_arguments(server):
    for jid in ('nobody@elsewhere.example', 'not a jid', '@localhost'):
        res = server.ctl('user', 'kick', jid, check=False)
        assert res.returncode == 1, jid
    res = server.ctl('user', 'kick', 'nobody@localhost')
    assert 'sessions 0' in res.stdout


async def test_delete_connected_user(server):
    async with clients.connected(server, 'carol', 'bob') as (carol, bob):
        res = server.ctl('user', 'del', 'carol@localhost')
        assert 'deleted' in res.stdout
        assert 'sessions 1' in res.stdout
        await clients.until(lambda: carol.stream_errors, what='del kick')
        assert [e['condition'] for e in carol.stream_errors] == \
            ['not-authorized']
        assert bob.stream_errors == []
    server.wait_for_log(r'revoked the deleted account carol@localhost')
    with pytest.raises(clients.LoginError):
        await clients.connect(server, 'carol', timeout=5)


def test_delete_during_login_cannot_bind(server):
    """The race of a login that authenticated just before the account was
    deleted and binds after: the bind is refused."""
    with RawStream(server.c2s_port) as stream:
        stream.secure()
        stream.authenticate('carol', server.passwords['carol'])
        server.ctl('user', 'del', 'carol@localhost')
        stream.send("<iq type='set' id='b1'><bind xmlns="
                    "'urn:ietf:params:xml:ns:xmpp-bind'/></iq>")
        stream.expect_stream_error('not-authorized')
    # a new account of the same name logs in and binds normally
    server.add_user('carol', 'new-carol-pw')
    with RawStream(server.c2s_port) as stream:
        stream.secure()
        stream.authenticate('carol', 'new-carol-pw')
        assert stream.bind('r').startswith('carol@localhost/')


# -- the control socket itself -------------------------------------------------


def test_garbage_on_control_socket(server):
    got = control_request(server, b'hello\x00\x01\nSTATUS\nkick a b c d\n'
                          b'ping\n', read_until=b'OK 0\n')
    lines = got.splitlines()
    assert lines[0] == 'ERR control character in request'
    assert lines[1] == 'ERR unknown request'
    assert lines[2] == 'ERR too many arguments'
    assert lines[3] == 'OK 0'
    # an endless line is cut off and the connection closed
    got = control_request(server, b'x' * 5000)
    assert got == 'ERR request too long\n'
    # binary noise
    got = control_request(server, bytes(range(256)) * 4 + b'\n')
    assert got.startswith('ERR ')
    assert server.alive()
    assert server.ctl('status').returncode == 0


def test_control_clients_are_bounded(server):
    socks = []
    try:
        for _ in range(20):
            s = socket.socket(socket.AF_UNIX)
            socks.append(s)
            s.connect(str(ctl_socket(server)))  # blocking: waits for room
            s.settimeout(5)
        # the 17th and later are told and closed
        refused = 0
        for s in socks[16:]:
            if s.recv(100) == b'ERR too many clients\n':
                refused += 1
        assert refused == 4
    finally:
        for s in socks:
            s.close()
    assert server.ctl('status').returncode == 0


# -- config check ------------------------------------------------------------


def write_config(tmp_path, name, config):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config) if isinstance(config, dict)
                    else config)
    return path


def config_check(*args):
    res = subprocess.run([str(STANZACTL_BIN), 'config', 'check', *args],
                         capture_output=True, text=True,
                         env=sanitizer_env(), timeout=30)
    return res


GOOD = {
    'hosts': ['localhost'],
    'data_dir': 'data',
    'listeners': [{'type': 'c2s', 'address': '127.0.0.1', 'port': 5222}],
}


def test_config_check_good(server, tmp_path):
    res = server.ctl('config', 'check')
    assert res.returncode == 0
    assert 'configuration ok' in res.stdout
    path = write_config(tmp_path, 'good.yml', GOOD)
    res = config_check('--config', str(path))
    assert res.returncode == 0, res.stdout
    assert re.search(r'configuration ok: 0 error', res.stdout)


@pytest.mark.parametrize('config, message', [
    (dict(GOOD, limits={'max_depth': 1}),
     r'good\.yml:\d+: limits\.max_depth: \'1\' is out of range'),
    (dict(GOOD, limits={'max_stanza_size': '10parsecs'}),
     r'limits\.max_stanza_size: bad unit'),
    (dict(GOOD, listeners=[{'type': 'c2s', 'address': 'localhost',
                            'port': 5222}]),
     r'listeners\[\]\.address: \'localhost\' is not a numeric'),
    (dict(GOOD, registraton=True), r"unknown key 'registraton'"),
    ({'data_dir': 'x', 'listeners': GOOD['listeners']},
     r"missing required key 'hosts'"),
    ('hosts: [localhost\nlisteners: {\n', r'YAML syntax error'),
    (dict(GOOD, hosts=[{'name': 'localhost',
                        'tls': {'cert': 'nosuch.pem',
                                'key': 'nosuch.key'}}]),
     r'hosts\[0\]\.tls: cannot load certificate'),
    (dict(GOOD, dns={'upstream': ['127.0.0.1'],
                     'trust_anchor_file': 'nosuch.anchor'}),
     r'dns: '),
])
def test_config_check_errors(tmp_path, config, message):
    path = write_config(tmp_path, 'good.yml', config)
    res = config_check('-c', str(path))
    assert res.returncode == 1, res.stdout
    assert re.search(message, res.stdout), res.stdout
    assert 'configuration has errors' in res.stdout


def test_config_check_missing_file(tmp_path):
    res = config_check(f'--config={tmp_path}/nosuch.yml')
    assert res.returncode == 1
    assert 'No such file' in res.stdout


def test_config_check_warnings(tmp_path):
    config = dict(GOOD, registration=True,
                  limits={'registration_interval': '0s'},
                  listeners=GOOD['listeners'] + [
                      {'type': 'component', 'address': '0.0.0.0',
                       'port': 5347}])
    res = config_check('--config', str(write_config(tmp_path, 'w.yml',
                                                    config)))
    assert res.returncode == 0, res.stdout
    assert re.search(r'warning: registration: open to anyone without a '
                     r'rate limit', res.stdout)
    assert re.search(r'warning: listeners\[1\]: component listener on '
                     r'0\.0\.0\.0', res.stdout)
    assert re.search(r'warning: hosts\[0\]\.tls: localhost has no '
                     r'certificate', res.stdout)
    assert re.search(r'0 error\(s\), 3 warning\(s\)', res.stdout)


# -- cert check --------------------------------------------------------------


def openssl(*args, cwd):
    subprocess.run(['openssl', *args], cwd=cwd, check=True,
                   capture_output=True)


def make_key(d, name):
    openssl('genpkey', '-algorithm', 'EC', '-pkeyopt',
            'ec_paramgen_curve:P-256', '-out', name, cwd=d)


def make_cert(d, key, cert, san='DNS:localhost', start=None, end=None):
    """A self-signed certificate; with start/end (YYYYMMDDHHMMSSZ)
    through `openssl ca`, which sets any validity period."""
    if start is None:
        openssl('req', '-x509', '-key', key, '-out', cert, '-days', '365',
                '-subj', '/CN=localhost', '-addext',
                f'subjectAltName={san}', cwd=d)
        return
    ca = d / 'ca'
    ca.mkdir(exist_ok=True)
    (ca / 'index.txt').write_text('')
    (ca / 'serial').write_text('01\n')
    (d / 'ca.cnf').write_text(
        '[ca]\ndefault_ca = d\n[d]\ndatabase = ca/index.txt\n'
        'serial = ca/serial\nnew_certs_dir = ca\ndefault_md = sha256\n'
        'policy = p\ncopy_extensions = copy\nunique_subject = no\n'
        '[p]\ncommonName = supplied\n')
    openssl('req', '-new', '-key', key, '-out', 'r.csr', '-subj',
            '/CN=localhost', '-addext', f'subjectAltName={san}', cwd=d)
    openssl('ca', '-batch', '-config', 'ca.cnf', '-selfsign', '-keyfile',
            key, '-in', 'r.csr', '-out', cert, '-startdate', start,
            '-enddate', end, cwd=d)


def cert_check(server, cert, key):
    config = dict(server.config)
    config['hosts'] = [{'name': 'localhost',
                        'tls': {'cert': str(cert), 'key': str(key)}}]
    path = server.root / 'cert.yml'
    path.write_text(yaml.safe_dump(config))
    return subprocess.run([str(STANZACTL_BIN), '-c', str(path), 'cert',
                           'check'], capture_output=True, text=True,
                          env=sanitizer_env(), timeout=30)


def test_cert_check_generated(server):
    res = server.ctl('cert', 'check')
    assert 'localhost: ' in res.stdout
    assert 'names: DNS:localhost' in res.stdout
    assert 'ok: the key matches the certificate' in res.stdout
    assert 'warning: self-signed' in res.stdout
    assert re.search(r'ok: expires on \d{4}-\d\d-\d\d, in 36\d\d days',
                     res.stdout)
    assert 'key: EC, 256 bits' in res.stdout


def test_cert_check_good(server, tmp_path):
    make_key(tmp_path, 'k.pem')
    make_cert(tmp_path, 'k.pem', 'c.pem',
              san='DNS:localhost,otherName:1.3.6.1.5.5.7.8.5;UTF8:'
                  'localhost')
    res = cert_check(server, tmp_path / 'c.pem', tmp_path / 'k.pem')
    assert res.returncode == 0, res.stdout
    assert 'names: DNS:localhost XMPP:localhost' in res.stdout
    assert 'ok: the certificate names localhost' in res.stdout
    assert 'ok: the key matches the certificate' in res.stdout
    assert re.search(r'ok: expires on .*, in 36[45] days', res.stdout)
    assert 'certificates ok: 0 error(s), 1 warning(s)' in res.stdout


def test_cert_check_expired(server, tmp_path):
    make_key(tmp_path, 'k.pem')
    make_cert(tmp_path, 'k.pem', 'c.pem', start='20200101000000Z',
              end='20200201000000Z')
    res = cert_check(server, tmp_path / 'c.pem', tmp_path / 'k.pem')
    assert res.returncode == 1, res.stdout
    assert re.search(r'error: expired on 2020-02-01', res.stdout)


def test_cert_check_expires_soon(server, tmp_path):
    import datetime
    now = datetime.datetime.now(datetime.timezone.utc)
    fmt = '%Y%m%d%H%M%SZ'
    make_key(tmp_path, 'k.pem')
    make_cert(tmp_path, 'k.pem', 'c.pem',
              start=(now - datetime.timedelta(days=80)).strftime(fmt),
              end=(now + datetime.timedelta(days=5, hours=1)).strftime(fmt))
    res = cert_check(server, tmp_path / 'c.pem', tmp_path / 'k.pem')
    assert res.returncode == 0, res.stdout
    assert re.search(r'warning: expires on .*, in 5 days', res.stdout)


def test_cert_check_name_mismatch(server, tmp_path):
    make_key(tmp_path, 'k.pem')
    make_cert(tmp_path, 'k.pem', 'c.pem', san='DNS:other.example')
    res = cert_check(server, tmp_path / 'c.pem', tmp_path / 'k.pem')
    assert res.returncode == 1, res.stdout
    assert 'names: DNS:other.example' in res.stdout
    assert 'error: the certificate does not name localhost' in res.stdout


def test_cert_check_key_mismatch(server, tmp_path):
    make_key(tmp_path, 'k.pem')
    make_key(tmp_path, 'other.pem')
    make_cert(tmp_path, 'k.pem', 'c.pem')
    res = cert_check(server, tmp_path / 'c.pem', tmp_path / 'other.pem')
    assert res.returncode == 1, res.stdout
    assert 'error: the server cannot load it' in res.stdout
    assert re.search(r'error: the key .*other\.pem does not match',
                     res.stdout)


# -- status of server-to-server streams ------------------------------------


def federated(server_factory, fed, domain):
    """A stanzad serving localhost and `domain`, with an s2s listener on
    the address the test's names give `domain`."""
    address = fed.add_host(domain)
    srv = server_factory(hosts=['localhost', domain],
                         dns=fed.dns_config())
    # the listeners of the base config are known only now: add s2s
    srv.stop()
    assert not srv.problems, srv.problems
    srv.config['listeners'].append(
        {'type': 's2s', 'address': address, 'port': 5269})
    srv.config_path.write_text(yaml.safe_dump(srv.config, sort_keys=False))
    srv.start()
    return srv


def s2s_lines(srv):
    return [line.split() for line in status_lines(srv)
            if line.startswith('s2s_')]


@pytest.mark.deadline(60)
async def test_status_shows_s2s_routes(server_factory, tmp_path):
    from federation import Federation
    fed = Federation(tmp_path / 'fed')
    try:
        a = federated(server_factory, fed, 'a.test')
        b = federated(server_factory, fed, 'b.test')
        a.ctl('user', 'add', 'ann@a.test', 'ann-pw')
        with RawStream(a.c2s_port) as stream:
            stream.open(to='a.test')
            stream.features()
            stream.starttls()
            stream.open(to='a.test')
            stream.features()
            stream.authenticate('ann', 'ann-pw', restart=False)
            stream.open(to='a.test')
            stream.features()
            stream.bind('r')
            # an iq to the other server: its answer proves the route
            reply = stream.iq('get', "<ping xmlns='urn:xmpp:ping'/>",
                              to='b.test', timeout=30)
            assert reply.get('type') == 'result'
        # A opened a stream to b.test and authenticated by dialback
        # (self-signed certificates); B verified it over a stream of
        # its own to a.test
        await clients.until(
            lambda: ['s2s_out', 'a.test', 'b.test', 'dialback']
            in s2s_lines(a), what='s2s_out on a')
        assert ['s2s_in', 'b.test', 'a.test', 'dialback'] in s2s_lines(b)
        assert status_value(a, 's2s_out_connections') == ['1']
        assert status_value(b, 's2s_in_connections') == ['1']
        m = metrics(a)
        assert m['stanzad_connections{type="s2s_out"}'] == 1
        assert m['stanzad_stanzas_out_total{kind="iq"}'] >= 1
    finally:
        fed.close()
