"""Federation test harness: real Prosody 0.12 and ejabberd 23.01 as peers.

Every server under test (the peers here, and stanzad in its own tests)
runs on its own loopback address (127.x.y.z) on the standard ports 5222
and 5269, with its own domain, and finds the others through one hosts file
that the test owns; nothing on the system (/etc/hosts, resolv.conf) is
read for these names or changed.

- `TestCA`: a CA made with the openssl CLI, and certificates signed by it
  (subjectAltName DNS:domain and the _xmpp-server SRV-ID, RFC 6120
  §13.7.1.2; id-on-xmppAddr only on request, see TestCA._san);
  `self_signed()` makes a "bad" one.
- `pick_address()`: a fresh 127.x.y.z where 5222 and 5269 are free.
- `Names`: the hosts file (domain -> address) plus a small DNS server on
  127.0.0.1 that answers A queries from that same file and NXDOMAIN for
  every other name (so SRV lookups fail at once and every server falls
  back to domain:5269, RFC 6120 §3.2.2). Prosody 0.12 resolves with
  lua-unbound (net.unbound replaces net.adns when lunbound loads): its
  `unbound` table gives libunbound the file as `hoststxt` and the DNS
  server as `forward`, with `resolvconf = false`. ejabberd 23.01 looks up
  SRV records with Erlang's inet_res, which never reads hosts files: its
  inetrc (ejabberdctl always sets ERL_INETRC to CONFIG_DIR/inetrc) names
  the DNS server and no resolv.conf; and it looks up addresses with
  glibc's getaddrinfo, so it runs in a mount namespace of its own where
  the hosts file is bind-mounted on /etc/hosts (the system's file is
  untouched). stanzad gets `dns: {hosts, upstream}` from
  `Federation.dns_config()`.
- `Prosody`, `Ejabberd`: a private instance in a directory of its own
  (config, certificate, data, logs), started and stopped within bounded
  times, run as the packages require (the tests run as root: prosodyctl
  drops to the prosody user, ejabberd is run as the ejabberd user with
  setpriv, as bench/peers/ does).
- `Federation`: owns all of the above for one test; the `federation`
  fixture gives one and stops everything at teardown, attaching the
  servers' logs to a failing test's report.
"""

import concurrent.futures
import ipaddress
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest
from dnslib import QTYPE, RCODE, RR, A
from dnslib.server import BaseResolver, DNSServer

XMPP_C2S_PORT = 5222
XMPP_S2S_PORT = 5269
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
CMD_TIMEOUT = 30.0
LOG_TAIL_LINES = 300
PROSODY_USER = 'prosody'
EJABBERD_USER = 'ejabberd'
# RFC 6120 §13.7.1.4: id-on-xmppAddr; RFC 6120 §13.7.1.2.1 / RFC 4985:
# id-on-dnsSRV (SRV-ID)
OID_XMPPADDR = '1.3.6.1.5.5.7.8.5'
OID_SRVNAME = '1.3.6.1.5.5.7.8.7'
DOMAIN_RE = re.compile(r'^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$')

_peers_key = pytest.StashKey[list]()


def run(args, timeout=CMD_TIMEOUT, **kwargs):
    """Runs a command; raises with its output if it fails."""
    res = subprocess.run(args, capture_output=True, text=True,
                         timeout=timeout, **kwargs)
    if res.returncode != 0:
        raise AssertionError(f'{" ".join(map(str, args))} exited '
                             f'{res.returncode}\n{res.stdout}{res.stderr}')
    return res


def tail(path, lines=LOG_TAIL_LINES):
    try:
        text = Path(path).read_text(errors='replace').splitlines()
    except FileNotFoundError:
        return '(no file)'
    head = f'[... {len(text) - lines} earlier lines]\n' \
        if len(text) > lines else ''
    return head + '\n'.join(text[-lines:])


# ---- certificates ---------------------------------------------------------

class TestCA:
    """A test CA in `root`, and certificates for domains signed by it."""
    __test__ = False

    def __init__(self, root):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.cert = self.root / 'ca.crt'
        self.key = self.root / 'ca.key'
        run(['openssl', 'req', '-x509', '-nodes', '-newkey', 'ec',
             '-pkeyopt', 'ec_paramgen_curve:P-256', '-days', '2',
             '-keyout', self.key, '-out', self.cert,
             '-subj', '/O=stanzad tests/CN=stanzad test CA',
             '-addext', 'basicConstraints=critical,CA:TRUE',
             '-addext', 'keyUsage=critical,keyCertSign,cRLSign'])

    @staticmethod
    def _san(domain, xmpp_addr=False, also=()):
        """RFC 6120 §13.7.1.2: a DNS-ID and the SRV-ID of the
        _xmpp-server service. An id-on-xmppAddr is only added when asked
        for: ejabberd 23.01 (p1_xmpp 1.6.1, get_domains_from_san) crashes
        the incoming stream on a server certificate that has one, before
        SASL EXTERNAL can succeed."""
        san = f'subjectAltName=DNS:{domain},' \
            f'otherName:{OID_SRVNAME};IA5:_xmpp-server.{domain}'
        if xmpp_addr:
            san += f',otherName:{OID_XMPPADDR};UTF8:{domain}'
        for name in also:
            san += f',DNS:{name},otherName:{OID_SRVNAME};' \
                f'IA5:_xmpp-server.{name}'
        return san

    def _paths(self, name):
        return self.root / f'{name}.crt', self.root / f'{name}.key'

    def issue(self, domain, name=None, xmpp_addr=False, also=()):
        """(cert, key) for `domain` (and the domains `also`, a host's
        services), signed by this CA. The certificate is for both TLS
        server and client use: a server presents it on its outgoing s2s
        connections too (SASL EXTERNAL)."""
        crt, key = self._paths(name or domain)
        run(['openssl', 'req', '-x509', '-nodes', '-newkey', 'ec',
             '-pkeyopt', 'ec_paramgen_curve:P-256', '-days', '2',
             '-CA', self.cert, '-CAkey', self.key,
             '-keyout', key, '-out', crt, '-subj', f'/CN={domain}',
             '-addext', self._san(domain, xmpp_addr, also),
             '-addext', 'basicConstraints=critical,CA:FALSE',
             '-addext', 'keyUsage=critical,digitalSignature',
             '-addext', 'extendedKeyUsage=serverAuth,clientAuth'])
        return crt, key

    def self_signed(self, domain, name=None):
        """A "bad" (cert, key) for `domain`: right names, but signed by
        nobody anyone trusts."""
        crt, key = self._paths(name or f'{domain}.self-signed')
        run(['openssl', 'req', '-x509', '-nodes', '-newkey', 'ec',
             '-pkeyopt', 'ec_paramgen_curve:P-256', '-days', '2',
             '-keyout', key, '-out', crt, '-subj', f'/CN={domain}',
             '-addext', self._san(domain),
             '-addext', 'extendedKeyUsage=serverAuth,clientAuth'])
        return crt, key


# ---- addresses and names --------------------------------------------------

_taken = set()
_taken_lock = threading.Lock()


def _ports_free(addr, ports):
    for port in ports:
        s = socket.socket()
        try:
            # no SO_REUSEADDR: a wildcard listener on the port (say a
            # system XMPP server on 0.0.0.0:5269) makes this fail too
            s.bind((addr, port))
        except OSError:
            return False
        finally:
            s.close()
    return True


def pick_address(ports=(XMPP_C2S_PORT, XMPP_S2S_PORT)):
    """A loopback address 127.x.y.z, not handed out before in this
    process, where `ports` are free."""
    rng = random.SystemRandom()
    for _ in range(200):
        # 127.0.0.0/16 is left alone: 127.0.0.1 and friends are where
        # everything else on the machine listens
        addr = f'127.{rng.randint(1, 254)}.{rng.randint(0, 255)}.' \
            f'{rng.randint(1, 254)}'
        with _taken_lock:
            if addr in _taken:
                continue
            if _ports_free(addr, ports):
                _taken.add(addr)
                return addr
    raise AssertionError(
        f'no loopback address with {ports} free: is a system XMPP server '
        'listening on all addresses? (bench/peers/install.sh stops and '
        'disables the packaged ones)')


class _HostsResolver(BaseResolver):
    def __init__(self, names):
        self.names = names

    def resolve(self, request, handler):
        reply = request.reply()
        q = request.q
        name = str(q.qname).rstrip('.').lower()
        addr = self.names.lookup(name)
        if addr is None:
            reply.header.rcode = RCODE.NXDOMAIN
        elif q.qtype == QTYPE.A:
            reply.add_answer(RR(q.qname, QTYPE.A, ttl=5, rdata=A(addr)))
        # else: the name exists but has no record of that type (NODATA)
        self.names.queries.append((name, QTYPE.get(q.qtype)))
        return reply


class _QuietLogger:
    def __getattr__(self, name):
        return lambda *args: None


class Names:
    """The hosts file every server under test resolves with, and a DNS
    server answering from it (for resolvers that ignore hosts files)."""

    def __init__(self, root):
        self.hosts_path = Path(root) / 'hosts'
        self.hosts_path.parent.mkdir(parents=True, exist_ok=True)
        # localhost too: ejabberd sees this file as its /etc/hosts
        self.hosts_path.write_text('# domain -> address for the servers '
                                   'under test\n'
                                   '127.0.0.1 localhost\n')
        os.chmod(self.hosts_path, 0o644)
        self._entries = {}
        self._lock = threading.Lock()
        self.queries = []  # (name, type) the DNS server was asked
        self.dns_address = '127.0.0.1'
        self.dns_port = None
        self._servers = []

    def add(self, domain, address):
        """Adds domain -> address (before the servers that must find it
        start: ejabberd and Prosody read the file when they start)."""
        domain = domain.lower()
        assert DOMAIN_RE.match(domain), domain
        ipaddress.IPv4Address(address)
        with self._lock:
            self._entries[domain] = address
            with open(self.hosts_path, 'a') as f:
                f.write(f'{address} {domain}\n')

    def lookup(self, domain):
        with self._lock:
            return self._entries.get(domain)

    def start_dns(self):
        """The DNS server, UDP and TCP on one free port of 127.0.0.1."""
        resolver = _HostsResolver(self)
        for _ in range(20):
            udp = DNSServer(resolver, address=self.dns_address, port=0,
                            logger=_QuietLogger())
            port = udp.server.server_address[1]
            try:
                tcp = DNSServer(resolver, address=self.dns_address,
                                port=port, tcp=True, logger=_QuietLogger())
            except OSError:  # that port is taken for TCP: another one
                udp.server.server_close()
                continue
            break
        else:
            raise AssertionError('no free port for the test DNS server')
        self.dns_port = port
        self._servers = [udp, tcp]
        for srv in self._servers:
            srv.start_thread()

    def stop_dns(self):
        for srv in self._servers:
            srv.stop()
            srv.server.server_close()
        self._servers = []

    @property
    def upstream(self):
        """The DNS server as libunbound's forwarder syntax, ADDR@PORT."""
        return f'{self.dns_address}@{self.dns_port}'


# ---- the peers ------------------------------------------------------------

class Peer:
    """What Prosody and Ejabberd share: a directory, a domain on an
    address, certificate, trust, dialback, accounts, logs."""

    kind = None
    mech = None  # the SCRAM mechanism its c2s offers

    def __init__(self, fed, domain, *, cert=None, trust_ca=True,
                 dialback=False, users=None, name=None):
        assert DOMAIN_RE.match(domain), domain
        self.fed = fed
        self.domain = domain
        self.address = pick_address()
        self.c2s_address = self.address
        self.c2s_port = XMPP_C2S_PORT
        self.s2s_port = XMPP_S2S_PORT
        self.root = fed.root / (name or f'{self.kind}-{domain}')
        self.root.mkdir(parents=True)
        self.trust_ca = trust_ca
        self.dialback = dialback
        self.passwords = dict(users or {})
        crt, key = cert or fed.ca.issue(domain)
        self.certs = self.root / 'certs'
        self.certs.mkdir()
        self.cert = self.certs / f'{domain}.crt'
        self.key = self.certs / f'{domain}.key'
        shutil.copyfile(crt, self.cert)
        shutil.copyfile(key, self.key)
        self.cafile = self.certs / 'ca.crt'
        shutil.copyfile(fed.ca.cert, self.cafile)
        self.running = False
        self.kept_logs = None  # the copies, once the Federation closed
        fed.names.add(domain, self.address)

    def jid(self, user, resource=None):
        return f'{user}@{self.domain}' + (f'/{resource}' if resource else '')

    def logs(self):
        """{name: path} of the files worth reading after a failure."""
        raise NotImplementedError

    def log_text(self):
        out = []
        for path in self.logs().values():
            try:
                out.append(Path(path).read_text(errors='replace'))
            except FileNotFoundError:
                pass
        return '\n'.join(out)

    def wait_for_log(self, pattern, timeout=10.0):
        """The first match of `pattern` (a regex) in the logs, waiting up
        to `timeout` seconds for it."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            m = regex.search(self.log_text())
            if m:
                return m
            if time.monotonic() > deadline:
                raise AssertionError(f'{self.kind} {self.domain}: log never '
                                     f'showed {pattern!r} in {timeout}s')
            time.sleep(0.1)

    def _wait_listening(self, alive):
        deadline = time.monotonic() + START_TIMEOUT
        pending = [self.c2s_port, self.s2s_port]
        while pending:
            if time.monotonic() > deadline:
                raise AssertionError(f'{self.kind} {self.domain} not '
                                     f'listening on {self.address}:{pending}'
                                     f' after {START_TIMEOUT}s')
            if not alive():
                raise AssertionError(f'{self.kind} {self.domain} exited '
                                     'during startup')
            pending = [p for p in pending
                       if not _port_open(self.address, p)]
            if pending:
                time.sleep(0.1)

    def _chown(self, user):
        for path in [self.root, *self.root.rglob('*')]:
            shutil.chown(path, user, user)
        os.chmod(self.root, 0o750)


def _port_open(addr, port):
    try:
        with socket.create_connection((addr, port), timeout=1):
            return True
    except OSError:
        return False


def _wait_gone(pid, timeout=STOP_TIMEOUT):
    """Waits for `pid` to exit: TERM halfway, KILL at the end."""
    deadline = time.monotonic() + timeout
    termed = False
    while os.path.isdir(f'/proc/{pid}'):
        left = deadline - time.monotonic()
        if left <= 0:
            _signal(pid, signal.SIGKILL)
            time.sleep(0.2)
            return False
        if not termed and left < timeout / 2:
            _signal(pid, signal.SIGTERM)
            termed = True
        time.sleep(0.1)
    return True


def _signal(pid, sig):
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _read_pid(path, cmdline_has):
    """The pid in `path` if that process runs and its command line holds
    `cmdline_has` (a recycled pid must not be taken for the server)."""
    try:
        pid = int(Path(path).read_text().strip())
        cmdline = Path(f'/proc/{pid}/cmdline').read_bytes()
    except (FileNotFoundError, ValueError):
        return None
    return pid if cmdline_has.encode() in cmdline else None


class Prosody(Peer):
    kind = 'prosody'
    mech = 'SCRAM-SHA-1'  # 0.12's internal_hashed keeps SHA-1 keys only

    def __init__(self, fed, domain, *, bidi=False, **kwargs):
        super().__init__(fed, domain, **kwargs)
        self.bidi = bidi
        self.config = self.root / 'prosody.cfg.lua'
        self.log_path = self.root / 'prosody.log'
        self.pid_path = self.root / 'prosody.pid'
        self.ctl_out = self.root / 'prosodyctl.out'

    def logs(self):
        return {'prosody.log': self.log_path,
                'prosodyctl.out': self.ctl_out}

    def write_config(self):
        r = self.root
        if self.dialback:
            auth = ('-- Certificates that do not verify fall back to '
                    'dialback (XEP-0220).\n'
                    's2s_secure_auth = false\n')
            modules = '"dialback";'
        else:
            auth = ('-- Only a verified certificate authenticates a '
                    'peer: no dialback.\n'
                    's2s_secure_auth = true\n')
            modules = ''
        if self.bidi:
            # XEP-0288; in 0.12 core, but not enabled by default
            modules += '"s2s_bidi";'
        # without cafile Prosody trusts the system's store only, where
        # the test CA is not
        cafile = f'cafile = "{self.cafile}";' if self.trust_ca else ''
        self.config.write_text(f'''\
-- Written by the federation test harness for {self.domain}.
pidfile = "{self.pid_path}"
data_path = "{r}/data"
daemonize = true
prosody_user = "{PROSODY_USER}"
prosody_group = "{PROSODY_USER}"
prosodyctl_service_warnings = false
admins = {{ }}
log = {{ debug = "{self.log_path}" }}

-- Its own loopback address, the standard ports.
interfaces = {{ "{self.address}" }}
c2s_ports = {{ {self.c2s_port} }}
s2s_ports = {{ {self.s2s_port} }}
c2s_direct_tls_ports = {{ }}
s2s_direct_tls_ports = {{ }}
legacy_ssl_ports = {{ }}
network_backend = "epoll"

-- Names are resolved with lua-unbound (net.unbound): the test's hosts
-- file first, anything else from the test's DNS server; never the
-- system's resolv.conf.
unbound = {{
	hoststxt = "{self.fed.names.hosts_path}";
	resolvconf = false;
	forward = "{self.fed.names.upstream}";
}}

c2s_require_encryption = true
s2s_require_encryption = true
{auth}ssl = {{
	certificate = "{self.cert}";
	key = "{self.key}";
	{cafile}
}}

authentication = "internal_hashed"
storage = "internal"
modules_enabled = {{
	"roster"; "saslauth"; "tls"; "disco"; "ping"; "posix";
	{modules}
}}
modules_disabled = {{ "http" }}

VirtualHost "{self.domain}"
''')

    def _ctl(self, *args, timeout=CMD_TIMEOUT):
        with open(self.ctl_out, 'a') as out:
            res = subprocess.run(
                ['prosodyctl', '--config', str(self.config), *args],
                stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                timeout=timeout)
        if res.returncode != 0:
            raise AssertionError(f'prosodyctl {args[0]} exited '
                                 f'{res.returncode}\n{tail(self.ctl_out)}')

    def pid(self):
        return _read_pid(self.pid_path, 'prosody')

    def start(self):
        (self.root / 'data').mkdir(exist_ok=True)
        self.write_config()
        self._chown(PROSODY_USER)
        # accounts are written to the data files, the server need not run
        for user, password in self.passwords.items():
            self._ctl('register', user, self.domain, password)
        self.running = True  # from here on, stop() must clean up
        self._ctl('start')
        self._wait_listening(lambda: self.pid() is not None or
                             not self.pid_path.exists())

    def stop(self):
        if not self.running:
            return
        self.running = False
        pid = self.pid()
        if pid is None:
            return
        try:
            self._ctl('stop', timeout=STOP_TIMEOUT)
        except (AssertionError, subprocess.TimeoutExpired):
            pass
        _wait_gone(pid)


class Ejabberd(Peer):
    kind = 'ejabberd'
    mech = 'SCRAM-SHA-256'

    def __init__(self, fed, domain, *, loglevel='info', **kwargs):
        super().__init__(fed, domain, **kwargs)
        self.loglevel = loglevel
        self.config = self.root / 'ejabberd.yml'
        self.ctl_config = self.root / 'ejabberdctl.cfg'
        self.pid_path = self.root / 'ejabberd.pid'
        self.logdir = self.root / 'logs'
        self.ctl_out = self.logdir / 'ejabberdctl.out'
        # a node name and cookie of its own: it talks to no other node
        self.node = f'fedpeer-{os.urandom(4).hex()}@localhost'

    def logs(self):
        return {'ejabberd.log': self.logdir / 'ejabberd.log',
                'error.log': self.logdir / 'error.log',
                'ejabberdctl.out': self.ctl_out}

    def write_config(self):
        r = self.root
        a, b, c, d = self.address.split('.')
        dns_ip = ','.join(self.fed.names.dns_address.split('.'))
        # ejabberdctl sets ERL_INETRC to CONFIG_DIR/inetrc. inet_res,
        # which ejabberd's s2s uses for its SRV lookups, asks DNS only
        # (it never reads hosts files): here the test's DNS server, and
        # resolv_conf "" keeps the system's servers out. The addresses
        # come from getaddrinfo (see _ctl). The node's own host name,
        # localhost, comes from the host entry.
        (r / 'inetrc').write_text(f'''\
{{host, {{127,0,0,1}}, ["localhost"]}}.
{{hosts_file, "{self.fed.names.hosts_path}"}}.
{{resolv_conf, ""}}.
{{nameserver, {{{dns_ip}}}, {self.fed.names.dns_port}}}.
{{lookup, [file, dns]}}.
''')
        self.ctl_config.write_text(f'''\
ERLANG_NODE={self.node}
ERL_OPTIONS="-env ERL_CRASH_DUMP_BYTES 0"
INET_DIST_INTERFACE=127.0.0.1
ERL_EPMD_ADDRESS=127.0.0.1
EJABBERD_PID_PATH={self.pid_path}
EJABBERD_BYPASS_WARNINGS=true
''')
        if self.dialback:
            dialback = '  mod_s2s_dialback: {}\n'
        else:
            dialback = ''
        # s2s_cafile replaces the system's store for s2s: without the
        # test CA the peers' certificates do not verify
        cafile = self.cafile if self.trust_ca else \
            '/etc/ssl/certs/ca-certificates.crt'
        self.config.write_text(f'''\
# Written by the federation test harness for {self.domain}.
hosts:
  - "{self.domain}"
loglevel: {self.loglevel}
log_rotate_count: 0
hide_sensitive_log_data: false
acme:
  auto: false
certfiles:
  - "{self.cert}"
  - "{self.key}"
listen:
  -
    port: {self.c2s_port}
    ip: "{self.address}"
    module: ejabberd_c2s
    starttls_required: true
  -
    port: {self.s2s_port}
    ip: "{self.address}"
    module: ejabberd_s2s_in
s2s_use_starttls: required
s2s_cafile: "{cafile}"
s2s_access: s2s
s2s_dns_timeout: 3
s2s_dns_retries: 1
outgoing_s2s_families:
  - ipv4
auth_method: internal
auth_password_format: scram
auth_scram_hash: sha256
default_db: mnesia
acl:
  local:
    user_regexp: ""
access_rules:
  c2s:
    allow: all
  s2s:
    allow: all
api_permissions:
  "console commands":
    from:
      - ejabberd_ctl
    who: all
    what: "*"
shaper: {{}}
modules:
  mod_roster: {{}}
  mod_disco: {{}}
  mod_ping: {{}}
{dialback}''')
        os.chmod(self.ctl_config, 0o600)

    def _ctl(self, *args, timeout=CMD_TIMEOUT, check=True, own_hosts=False):
        r = str(self.root)
        prefix = []
        if own_hosts:
            # ejabberd's s2s (p1_xmpp 1.6.1) finds addresses with
            # net:getaddrinfo, that is glibc, which reads /etc/hosts: the
            # server gets a mount namespace of its own in which the
            # test's hosts file is bind-mounted there. The system's file
            # is not changed; the mount goes away with the server.
            prefix = ['unshare', '--mount', '--propagation', 'private',
                      'sh', '-c', 'mount --bind "$0" /etc/hosts && '
                      'exec "$@"', str(self.fed.names.hosts_path)]
        with open(self.ctl_out, 'a') as out:
            res = subprocess.run(
                prefix + ['setpriv', f'--reuid={EJABBERD_USER}',
                 f'--regid={EJABBERD_USER}', '--init-groups',
                 'ejabberdctl', '--config-dir', r,
                 '--config', str(self.config),
                 '--ctl-config', str(self.ctl_config),
                 '--spool', str(self.root / 'db'),
                 '--logs', str(self.logdir), *args],
                # a clean environment: no EJABBERD_* or CONFIG_DIR of the
                # caller points it elsewhere; HOME holds the cookie
                env={'PATH': '/usr/sbin:/usr/bin:/sbin:/bin', 'HOME': r,
                     'LANG': 'C.UTF-8'},
                stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                timeout=timeout)
        if check and res.returncode != 0:
            raise AssertionError(f'ejabberdctl {args[0]} exited '
                                 f'{res.returncode}\n{tail(self.ctl_out)}')
        return res.returncode

    def pid(self):
        return _read_pid(self.pid_path, self.node)

    def _vm_alive(self):
        res = subprocess.run(['pgrep', '-f', f'name {self.node}'],
                             capture_output=True)
        return res.returncode == 0

    def start(self):
        (self.root / 'db').mkdir(exist_ok=True)
        self.logdir.mkdir(exist_ok=True)
        self.write_config()
        cookie = self.root / '.erlang.cookie'
        cookie.write_text(os.urandom(16).hex())
        self._chown(EJABBERD_USER)
        os.chmod(cookie, 0o400)
        self.running = True
        self._ctl('start', own_hosts=True)
        started = time.monotonic()
        # a bad config makes ejabberd halt within seconds
        self._wait_listening(lambda: time.monotonic() - started < 3 or
                             self._vm_alive())
        # each ejabberdctl is a VM of its own: register in parallel
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            for f in [pool.submit(self._ctl, 'register', user, self.domain,
                                  password)
                      for user, password in self.passwords.items()]:
                f.result()

    def stop(self):
        if not self.running:
            return
        self.running = False
        pid = self.pid()
        if pid is None and not self._vm_alive():
            return
        try:
            self._ctl('stop', timeout=STOP_TIMEOUT, check=False)
            # waits for the node to go, then ends epmd if no node is left
            self._ctl('stopped', timeout=STOP_TIMEOUT, check=False)
        except subprocess.TimeoutExpired:
            pass
        if pid is not None:
            _wait_gone(pid)


# ---- one test's federation ------------------------------------------------

class Federation:
    """The CA, the names and the peers of one test.

    The servers run as other users, so their files cannot live under
    pytest's temp dirs: every pytest session that starts (another suite
    on the same machine, say) makes pytest-of-USER 0700 again. They get a
    directory of their own instead, removed by close(), which first
    copies the servers' logs into `keep` (the test's temp dir)."""

    def __init__(self, keep):
        self.keep = Path(keep)
        self.keep.mkdir(parents=True, exist_ok=True)
        self.root = Path(tempfile.mkdtemp(prefix='xmpp-federation-'))
        try:
            os.chmod(self.root, 0o755)
            self.ca = TestCA(self.root / 'ca')
            self.names = Names(self.root)
            self.names.start_dns()
        except BaseException:
            shutil.rmtree(self.root, ignore_errors=True)
            raise
        self.peers = []

    def add_host(self, domain, address=None):
        """Adds a server of the test itself (stanzad) to the names;
        returns its address (a fresh one unless given)."""
        address = address or pick_address()
        self.names.add(domain, address)
        return address

    def dns_config(self):
        """stanzad's `dns:` settings for these names."""
        return {'hosts': str(self.names.hosts_path),
                'upstream': [self.names.upstream]}

    def prosody(self, domain, **kwargs):
        """A Prosody for `domain` (not started: see start())."""
        peer = Prosody(self, domain, **kwargs)
        self.peers.append(peer)
        return peer

    def ejabberd(self, domain, **kwargs):
        peer = Ejabberd(self, domain, **kwargs)
        self.peers.append(peer)
        return peer

    def start(self, *peers):
        """Starts peers side by side; returns once all listen."""
        with concurrent.futures.ThreadPoolExecutor(len(peers)) as pool:
            for f in [pool.submit(p.start) for p in peers]:
                f.result()

    def close(self):
        try:
            with concurrent.futures.ThreadPoolExecutor(
                    max(1, len(self.peers))) as pool:
                list(pool.map(lambda p: p.stop(), self.peers))
        finally:
            self.names.stop_dns()
            for peer in self.peers:
                dest = self.keep / peer.root.name
                dest.mkdir(exist_ok=True)
                kept = {}
                for name, path in peer.logs().items():
                    if Path(path).exists():
                        shutil.copyfile(path, dest / name)
                        kept[name] = dest / name
                peer.kept_logs = kept
            shutil.copyfile(self.names.hosts_path, self.keep / 'hosts')
            shutil.rmtree(self.root, ignore_errors=True)


def attach_peers(request, fed):
    """The logs of fed's peers go with the report if the test fails
    (for a Federation a fixture of wider scope made)."""
    request.node.stash[_peers_key] = fed.peers


@pytest.fixture
def federation(request, tmp_path):
    """A Federation in the test's temp dir, stopped at teardown."""
    fed = Federation(tmp_path / 'federation')
    attach_peers(request, fed)
    try:
        yield fed
    finally:
        fed.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for peer in item.stash.get(_peers_key, []):
            logs = peer.kept_logs or peer.logs()
            for name, path in logs.items():
                report.sections.append(
                    (f'{peer.kind} {peer.domain} {name} ({path})',
                     tail(path)))
