"""A real DNS server on loopback for tests: Debian's `unbound` daemon
serving zones the test writes, optionally DNSSEC-signed with ldns-signzone.

    dns = DnsServer(tmp_path / 'dns')
    dns.zone('example.test', [
        '_xmpp-server._tcp SRV 0 5 5269 xmpp.example.test.',
        'xmpp A 127.0.0.2',
    ])
    dns.zone('secure.test', [...], sign=True, tamper=['bad A'])
    dns.start()
    config = {'dns': dns.resolver_config(trust=['secure.test'])}
    ...
    dns.stop()

Each zone is an unbound `auth-zone` read from a zone file (relative owner
names are relative to the zone; an SOA and an NS record are added). A
signed zone gets its own key (ldns-keygen) and its trust anchor file
(`dns.trust_anchor(zone)`, the DNSKEY); `tamper` lists "owner TYPE" RRsets
whose signature is then broken, so a validating resolver finds them bogus.
Tests should ask only for names inside their zones: for others the server
would recurse from the root (and fail without a network).

`BlackHole` is an upstream that reads queries and never answers, for
timeouts. Both pick free loopback ports. The `dns_server` fixture in
conftest.py makes one DnsServer per test and stops it afterwards.
"""

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

UNBOUND = shutil.which('unbound') or '/usr/sbin/unbound'
LDNS_KEYGEN = shutil.which('ldns-keygen') or '/usr/bin/ldns-keygen'
LDNS_SIGNZONE = shutil.which('ldns-signzone') or '/usr/bin/ldns-signzone'
START_TIMEOUT = 10.0


def free_udp_tcp_port(address='127.0.0.1'):
    """A port free for both UDP and TCP on address."""
    for _ in range(50):
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.bind((address, 0))
        port = u.getsockname()[1]
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            t.bind((address, port))
            return port
        except OSError:
            continue
        finally:
            t.close()
            u.close()
    raise RuntimeError('no free UDP+TCP port')


def _query_soa(port, name):
    """A raw DNS SOA query over UDP; True when any answer comes back."""
    qname = b''.join(bytes([len(p)]) + p.encode()
                     for p in name.rstrip('.').split('.')) + b'\0'
    msg = b'\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00' + qname + \
        b'\x00\x06\x00\x01'
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.3)
        try:
            s.sendto(msg, ('127.0.0.1', port))
            data = s.recv(4096)
        except OSError:
            return False
    return data[:2] == b'\x12\x34'


class Zone:
    def __init__(self, name, records, sign, tamper):
        self.name = name.rstrip('.').lower()
        self.records = list(records)
        self.sign = sign
        self.tamper = list(tamper)
        self.file = None
        self.anchor = None


class DnsServer:
    def __init__(self, root):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.zones = {}
        self.proc = None
        self.port = None
        self.log_path = self.root / 'unbound.log'

    @property
    def address(self):
        return '127.0.0.1'

    @property
    def upstream(self):
        """The `dns.upstream` entry of stanzad's configuration."""
        return f'{self.address}@{self.port}'

    def zone(self, name, records, sign=False, tamper=()):
        """Adds a zone; records are zone-file lines, owners relative to
        name unless they end with a dot ('@' is the apex)."""
        if self.proc is not None:
            raise RuntimeError('add zones before start()')
        z = Zone(name, records, sign, tamper)
        self.zones[z.name] = z
        return z

    def trust_anchor(self, name):
        """The trust anchor file (DNSKEY) of a signed zone."""
        return str(self.zones[name.rstrip('.').lower()].anchor)

    def resolver_config(self, trust=(), **extra):
        """stanzad's `dns` section pointing at this server."""
        conf = {'upstream': [self.upstream]}
        anchors = [self.trust_anchor(z) for z in trust]
        if len(anchors) == 1:
            conf['trust_anchor_file'] = anchors[0]
        elif anchors:
            both = self.root / 'anchors.key'
            both.write_text(''.join(Path(a).read_text() for a in anchors))
            conf['trust_anchor_file'] = str(both)
        conf.update(extra)
        return conf

    # --- zone files ---

    def _zone_text(self, z):
        origin = z.name + '.'
        lines = [f'$ORIGIN {origin}', '$TTL 300',
                 f'@ SOA ns.{origin} hostmaster.{origin} 1 3600 600 '
                 '86400 300',
                 f'@ NS ns.{origin}',
                 'ns A 127.0.0.1']
        lines += z.records
        return '\n'.join(lines) + '\n'

    def _sign(self, z, path):
        keydir = self.root / f'keys-{z.name}'
        keydir.mkdir(exist_ok=True)
        out = subprocess.run(
            [LDNS_KEYGEN, '-a', 'ECDSAP256SHA256', '-k', z.name],
            cwd=keydir, check=True, capture_output=True, text=True)
        base = out.stdout.strip()
        z.anchor = keydir / f'{base}.key'
        signed = Path(str(path) + '.signed')
        subprocess.run(
            [LDNS_SIGNZONE, '-o', z.name + '.', '-f', str(signed),
             str(path), str(keydir / base)],
            check=True, capture_output=True, text=True)
        if z.tamper:
            self._tamper(z, signed)
        return signed

    @staticmethod
    def _tamper(z, signed):
        """Breaks the RRSIG over each "owner TYPE" in z.tamper by changing
        one byte of the signature (the base64 text stays valid)."""
        want = set()
        for t in z.tamper:
            owner, rtype = t.split()
            fqdn = owner if owner.endswith('.') else f'{owner}.{z.name}.'
            want.add((fqdn.lower(), rtype.upper()))
        out, hit = [], set()
        for line in signed.read_text().splitlines():
            f = line.split()
            if len(f) > 5 and f[3] == 'RRSIG' and \
                    (f[0].lower(), f[4].upper()) in want:
                sig = f[-1]
                flip = 'B' if sig[0] != 'B' else 'C'
                f[-1] = flip + sig[1:]
                line = '\t'.join(f)
                hit.add((f[0].lower(), f[4].upper()))
            out.append(line)
        missing = want - hit
        if missing:
            raise RuntimeError(f'no RRSIG to tamper with for {missing}')
        signed.write_text('\n'.join(out) + '\n')

    def _write_config(self):
        conf = [
            'server:',
            f'  interface: {self.address}',
            f'  port: {self.port}',
            '  do-daemonize: no',
            '  username: ""',
            '  chroot: ""',
            f'  directory: "{self.root}"',
            '  pidfile: ""',
            '  use-syslog: no',
            f'  logfile: "{self.log_path}"',
            '  verbosity: 1',
            '  num-threads: 1',
            '  do-ip6: no',
            '  so-reuseport: no',
            '  access-control: 127.0.0.0/8 allow',
            '  module-config: "iterator"',
            'remote-control:',
            '  control-enable: no',
        ]
        # unbound answers NXDOMAIN itself for the special-use names of
        # RFC 6761 (test., invalid.) unless told not to.
        for tld in sorted({z.name.rsplit('.', 1)[-1] for z in
                           self.zones.values()}):
            conf.insert(conf.index('remote-control:'),
                        f'  local-zone: "{tld}." nodefault')
        for z in self.zones.values():
            path = self.root / f'{z.name}.zone'
            path.write_text(self._zone_text(z))
            if z.sign:
                path = self._sign(z, path)
            z.file = path
            conf += ['auth-zone:',
                     f'  name: "{z.name}."',
                     f'  zonefile: "{path}"',
                     '  for-downstream: yes',
                     '  for-upstream: yes',
                     '  fallback-enabled: no']
        cfg = self.root / 'unbound.conf'
        cfg.write_text('\n'.join(conf) + '\n')
        return cfg

    # --- process ---

    def start(self):
        self.port = free_udp_tcp_port(self.address)
        cfg = self._write_config()
        check = UNBOUND + '-checkconf'
        if os.path.exists(check):
            res = subprocess.run([check, str(cfg)], capture_output=True,
                                 text=True)
            if res.returncode != 0:
                raise RuntimeError('unbound-checkconf: ' + res.stdout +
                                   res.stderr)
        self.proc = subprocess.Popen([UNBOUND, '-d', '-c', str(cfg)],
                                     stdout=subprocess.DEVNULL,
                                     stderr=open(self.root / 'stderr', 'w'))
        deadline = time.monotonic() + START_TIMEOUT
        probe = next(iter(self.zones), 'test')
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError('unbound exited: ' + self.logs())
            if _query_soa(self.port, probe):
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError('unbound did not answer: ' + self.logs())

    def logs(self):
        text = ''
        for p in (self.root / 'stderr', self.log_path):
            if p.exists():
                text += p.read_text()[-4000:]
        return text

    def stop(self):
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


class BlackHole:
    """A UDP and TCP "DNS server" that takes queries and never answers."""

    def __init__(self):
        self.port = free_udp_tcp_port()
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(('127.0.0.1', self.port))
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.bind(('127.0.0.1', self.port))
        self.tcp.listen(16)  # connections wait in the backlog, unanswered

    @property
    def upstream(self):
        return f'127.0.0.1@{self.port}'

    def received(self):
        """How many UDP queries arrived so far (drains them)."""
        n = 0
        self.udp.setblocking(False)
        while True:
            try:
                self.udp.recv(4096)
                n += 1
            except BlockingIOError:
                return n

    def close(self):
        self.udp.close()
        self.tcp.close()
