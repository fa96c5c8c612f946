"""The resolver for server-to-server (src/net/resolve.c), through
`stanzactl dns` (the server's own code on a loop of its own) and
build/tests/resolve_probe (cancel, many at once, shutdown), against a real
DNS server: unbound on loopback (dnsserver.py) serving an unsigned zone
`example.` and a DNSSEC-signed zone `secure.example.`.
"""

import collections
import re
import subprocess
import time

import pytest
import yaml

from conftest import (STANZACTL_BIN, STANZAD_BIN, sanitizer_env,
                      sanitizer_reports)
from dnsserver import BlackHole, DnsServer

PROBE_BIN = STANZAD_BIN.parent / 'tests' / 'resolve_probe'

TLSA_HEX = 'a0b1c2d3e4f5' * 4

PLAIN = [
    # priorities: a (0), b (5), c (10), whatever the file order
    '_xmpp-server._tcp.prio SRV 10 0 5269 c.prio.example.',
    '_xmpp-server._tcp.prio SRV 0 0 5269 a.prio.example.',
    '_xmpp-server._tcp.prio SRV 5 0 5269 b.prio.example.',
    'a.prio A 127.0.1.1', 'b.prio A 127.0.1.2', 'c.prio A 127.0.1.3',
    # weights within priority 0; "last" has priority 1
    '_xmpp-server._tcp.weight SRV 0 99 5269 heavy.weight.example.',
    '_xmpp-server._tcp.weight SRV 0 1 5269 light.weight.example.',
    '_xmpp-server._tcp.weight SRV 1 0 5269 last.weight.example.',
    'heavy.weight A 127.0.1.4', 'light.weight A 127.0.1.5',
    'last.weight A 127.0.1.6',
    # weight 0 next to weight 50: rarely first
    '_xmpp-server._tcp.zero SRV 0 0 5269 zero.zero.example.',
    '_xmpp-server._tcp.zero SRV 0 50 5269 fifty.zero.example.',
    'zero.zero A 127.0.1.7', 'fifty.zero A 127.0.1.8',
    # XEP-0368: xmpps and xmpp merged by priority; one host twice
    '_xmpps-server._tcp.tls SRV 0 0 5270 direct.tls.example.',
    '_xmpp-server._tcp.tls SRV 5 0 5269 starttls.tls.example.',
    '_xmpp-server._tcp.tls SRV 7 0 5299 direct.tls.example.',
    'direct.tls A 127.0.2.1', 'direct.tls AAAA ::1',
    'starttls.tls A 127.0.2.2',
    # "." : no service, even though the domain has an address
    '_xmpp-server._tcp.none SRV 0 0 0 .',
    'none A 127.0.3.1',
    # "." for STARTTLS but a direct TLS record
    '_xmpp-server._tcp.tlsonly SRV 0 0 0 .',
    '_xmpps-server._tcp.tlsonly SRV 0 0 5270 x.tlsonly.example.',
    'x.tlsonly A 127.0.3.2',
    # no SRV: the domain itself on 5269
    'plain A 127.0.4.1', 'plain AAAA ::4',
    # a target without address is left out
    '_xmpp-server._tcp.partial SRV 0 0 5269 noaddr.partial.example.',
    '_xmpp-server._tcp.partial SRV 1 0 5269 ok.partial.example.',
    'ok.partial A 127.0.5.1',
    '_xmpp-server._tcp.noaddr SRV 0 0 5269 nothing.noaddr.example.',
    # an IDN (bücher.example)
    '_xmpp-server._tcp.xn--bcher-kva SRV 0 0 5269 '
    'xmpp.xn--bcher-kva.example.',
    'xmpp.xn--bcher-kva A 127.0.6.1',
    # the hosts file wins over DNS for the target's address
    '_xmpp-server._tcp.hosted SRV 0 0 5269 xmpp.hosted.example.',
    'xmpp.hosted A 127.0.7.1',
    # a target behind a CNAME
    '_xmpp-server._tcp.cname SRV 0 0 5269 alias.cname.example.',
    'alias.cname CNAME real.cname.example.',
    'real.cname A 127.0.8.1',
    # the target of a name in the signed zone
    'xmpp.plain2 A 127.0.8.2',
]

SECURE = [
    '_xmpp-server._tcp SRV 0 0 5269 xmpp.secure.example.',
    'xmpp A 127.0.9.1',
    f'_5269._tcp.xmpp TLSA 3 1 1 {TLSA_HEX}',
    # no SRV: the denial must validate too
    'fallback A 127.0.9.3',
    # a secure SRV whose target is in the unsigned zone
    '_xmpp-server._tcp.mixed SRV 0 0 5269 xmpp.plain2.example.',
    # two targets, one in each zone: DANE applies to the first only
    '_xmpp-server._tcp.split SRV 0 0 5269 xmpp.secure.example.',
    '_xmpp-server._tcp.split SRV 1 0 5269 xmpp.plain2.example.',
    # broken signatures (tamper below)
    '_xmpp-server._tcp.badsrv SRV 0 0 5269 xmpp.secure.example.',
    '_xmpp-server._tcp.badaddr SRV 0 0 5269 bad.secure.example.',
    'bad A 127.0.9.2',
    # Records at the domains themselves: unbound's auth-zone gives no
    # valid NXDOMAIN proof below two empty non-terminals (_tcp.mixed...),
    # which would make the xmpps-server denial bogus for the wrong reason.
    'mixed TXT "x"', 'badsrv TXT "x"', 'badaddr TXT "x"', 'split TXT "x"',
]
TAMPER = ['_xmpp-server._tcp.badsrv SRV', 'bad A']


@pytest.fixture(scope='module')
def dns(tmp_path_factory):
    d = DnsServer(tmp_path_factory.mktemp('dns'))
    d.zone('example', PLAIN)
    d.zone('secure.example', SECURE, sign=True, tamper=TAMPER)
    d.start()
    yield d
    d.stop()


class Ctl:
    """Runs stanzactl with a config made of the given dns section."""

    def __init__(self, root):
        self.root = root
        self.n = 0

    def config(self, dns_conf):
        self.n += 1
        path = self.root / f'ctl{self.n}.yaml'
        path.write_text(yaml.safe_dump({
            'hosts': ['localhost'],
            'data_dir': str(self.root / 'data'),
            'listeners': [{'type': 'c2s', 'address': '127.0.0.1',
                           'port': 5222}],
            'dns': dns_conf,
        }))
        return path

    def run(self, dns_conf, *args, timeout=30):
        res = subprocess.run(
            [str(STANZACTL_BIN), '-c', str(self.config(dns_conf)), 'dns',
             *args], capture_output=True, text=True, env=sanitizer_env(),
            timeout=timeout)
        found = sanitizer_reports(res.stderr)
        assert not found, f'stanzactl dns {args}: {found}\n{res.stderr}'
        return res


@pytest.fixture
def ctl(tmp_path):
    return Ctl(tmp_path)


Target = collections.namedtuple('Target', 'host port tls addrs secure')


def parse(out):
    """stanzactl dns output -> (secure, [Target...])."""
    lines = out.splitlines()
    m = re.fullmatch(r'\S+: (\d+) targets?, DNSSEC (secure|insecure)',
                     lines[0])
    assert m, out
    targets = []
    for line in lines[1:]:
        t = re.fullmatch(r'(\d+) (\S+) port (\d+) (direct TLS|STARTTLS)'
                         r'(, DNSSEC secure)?', line)
        if t:
            targets.append(Target(t[2], int(t[3]), t[4] == 'direct TLS',
                                  [], t[5] is not None))
        else:
            assert line.startswith('    '), out
            targets[-1].addrs.append(line.strip())
    assert len(targets) == int(m[1]), out
    return m[2] == 'secure', targets


def resolve(ctl, conf, domain):
    res = ctl.run(conf, domain)
    assert res.returncode == 0, res.stderr
    return parse(res.stdout)


def fails(ctl, conf, domain, message):
    res = ctl.run(conf, domain)
    assert res.returncode == 1, res.stdout
    assert message in res.stderr, res.stderr
    assert res.stdout == ''


def test_priorities(ctl, dns):
    secure, t = resolve(ctl, dns.resolver_config(), 'prio.example')
    assert not secure
    assert [(x.host, x.port, x.tls, x.addrs) for x in t] == [
        ('a.prio.example', 5269, False, ['127.0.1.1']),
        ('b.prio.example', 5269, False, ['127.0.1.2']),
        ('c.prio.example', 5269, False, ['127.0.1.3']),
    ]


def test_weights(ctl, dns):
    """RFC 2782: weighted random within a priority (99 against 1), the
    higher priority value always last; weight 0 rarely first."""
    conf = dns.resolver_config()
    firsts = collections.Counter()
    zero_first = 0
    for _ in range(20):
        _, t = resolve(ctl, conf, 'weight.example')
        assert sorted(x.host for x in t[:2]) == [
            'heavy.weight.example', 'light.weight.example']
        assert t[2].host == 'last.weight.example'
        firsts[t[0].host] += 1
        _, z = resolve(ctl, conf, 'zero.example')
        assert {x.host for x in z} == {'zero.zero.example',
                                       'fifty.zero.example'}
        zero_first += z[0].host == 'zero.zero.example'
    # P(light first) = 2/101 per run; P(zero first) = 1/51
    assert firsts['heavy.weight.example'] >= 15, firsts
    assert zero_first <= 5


def test_xmpps_merged(ctl, dns):
    _, t = resolve(ctl, dns.resolver_config(), 'tls.example')
    assert [(x.host, x.port, x.tls) for x in t] == [
        ('direct.tls.example', 5270, True),
        ('starttls.tls.example', 5269, False),
        ('direct.tls.example', 5299, False),
    ]
    # AAAA first, then A; the host's second use has the same addresses
    assert t[0].addrs == ['::1', '127.0.2.1']
    assert t[2].addrs == ['::1', '127.0.2.1']


def test_dot_target_means_no_service(ctl, dns):
    fails(ctl, dns.resolver_config(), 'none.example',
          'offers no XMPP server service')


def test_dot_for_starttls_only(ctl, dns):
    _, t = resolve(ctl, dns.resolver_config(), 'tlsonly.example')
    assert [(x.host, x.port, x.tls, x.addrs) for x in t] == [
        ('x.tlsonly.example', 5270, True, ['127.0.3.2'])]


def test_fallback_without_srv(ctl, dns):
    secure, t = resolve(ctl, dns.resolver_config(), 'plain.example')
    assert [(x.host, x.port, x.tls, x.addrs) for x in t] == [
        ('plain.example', 5269, False, ['::4', '127.0.4.1'])]


def test_targets_without_address(ctl, dns):
    conf = dns.resolver_config()
    _, t = resolve(ctl, conf, 'partial.example')
    assert [x.host for x in t] == ['ok.partial.example']
    fails(ctl, conf, 'noaddr.example', 'no address found')
    fails(ctl, conf, 'nxdomain.example', 'no address found')


def test_cname_target(ctl, dns):
    _, t = resolve(ctl, dns.resolver_config(), 'cname.example')
    assert [(x.host, x.addrs) for x in t] == [
        ('alias.cname.example', ['127.0.8.1'])]


def test_idn(ctl, dns):
    _, t = resolve(ctl, dns.resolver_config(), 'bücher.example')
    assert [(x.host, x.addrs) for x in t] == [
        ('xmpp.xn--bcher-kva.example', ['127.0.6.1'])]


def test_ip_literal_needs_no_dns(ctl):
    hole = BlackHole()
    try:
        conf = {'upstream': [hole.upstream], 'timeout': '5s'}
        start = time.monotonic()
        _, t = resolve(ctl, conf, '127.0.0.5')
        _, t6 = resolve(ctl, conf, '[::1]')
        assert time.monotonic() - start < 4
        assert hole.received() == 0
    finally:
        hole.close()
    assert [(x.host, x.port, x.addrs) for x in t] == [
        ('127.0.0.5', 5269, ['127.0.0.5'])]
    assert [(x.host, x.addrs) for x in t6] == [('[::1]', ['::1'])]


def test_invalid_names(ctl, dns):
    conf = dns.resolver_config()
    for bad in ('a..example', 'x' * 64 + '.example',
                '.'.join(['abcdefghi'] * 26), 'sp ace.example'):
        fails(ctl, conf, bad, 'not a valid DNS name')


def test_hosts_file(ctl, dns, tmp_path):
    hosts = tmp_path / 'hosts'
    hosts.write_text('127.0.0.66 xmpp.hosted.example\n'
                     '127.0.0.77 onlyhosts.example\n')
    conf = dns.resolver_config(hosts=str(hosts))
    _, t = resolve(ctl, conf, 'hosted.example')
    assert [(x.host, x.addrs) for x in t] == [
        ('xmpp.hosted.example', ['127.0.0.66'])]
    # no SRV in DNS: the fallback address comes from the hosts file
    _, t = resolve(ctl, conf, 'onlyhosts.example')
    assert [(x.host, x.port, x.addrs) for x in t] == [
        ('onlyhosts.example', 5269, ['127.0.0.77'])]
    # without it, DNS
    _, t = resolve(ctl, dns.resolver_config(), 'hosted.example')
    assert t[0].addrs == ['127.0.7.1']


def test_timeout(ctl):
    hole = BlackHole()
    try:
        start = time.monotonic()
        res = ctl.run({'upstream': [hole.upstream], 'timeout': '1500ms'},
                      'somewhere.example')
        took = time.monotonic() - start
        assert res.returncode == 1
        assert 'timed out' in res.stderr, res.stderr
        assert 1.4 < took < 10, took
        assert hole.received() > 0  # the queries did go out
    finally:
        hole.close()


def test_dnssec_secure(ctl, dns):
    conf = dns.resolver_config(trust=['secure.example'])
    secure, t = resolve(ctl, conf, 'secure.example')
    assert secure
    assert [(x.host, x.addrs, x.secure) for x in t] == [
        ('xmpp.secure.example', ['127.0.9.1'], True)]
    # no SRV: the proof of their absence is validated too
    secure, t = resolve(ctl, conf, 'fallback.secure.example')
    assert secure and t[0].addrs == ['127.0.9.3'] and t[0].secure
    # without the anchor nothing is secure
    secure, t = resolve(ctl, dns.resolver_config(), 'secure.example')
    assert not secure and t[0].addrs == ['127.0.9.1'] and not t[0].secure


def test_dnssec_mixed_is_insecure(ctl, dns):
    """A signed SRV record pointing into an unsigned zone: not every
    answer used was secure."""
    conf = dns.resolver_config(trust=['secure.example'])
    secure, t = resolve(ctl, conf, 'mixed.secure.example')
    assert not secure
    assert t[0].addrs == ['127.0.8.2'] and not t[0].secure
    secure, t = resolve(ctl, conf, 'prio.example')
    assert not secure and not any(x.secure for x in t)


def test_dnssec_per_target(ctl, dns):
    """RFC 7673 §3.2: whether DANE applies is decided per target: a
    secure SRV answer with one target in the signed zone and one in the
    unsigned one is insecure as a whole, secure for the first."""
    conf = dns.resolver_config(trust=['secure.example'])
    secure, t = resolve(ctl, conf, 'split.secure.example')
    assert not secure
    assert [(x.host, x.secure) for x in t] == [
        ('xmpp.secure.example', True), ('xmpp.plain2.example', False)]


def test_dnssec_bogus(ctl, dns):
    conf = dns.resolver_config(trust=['secure.example'])
    for domain in ('badsrv.secure.example', 'badaddr.secure.example'):
        fails(ctl, conf, domain, 'DNSSEC validation failed')
    # the same answers without validation: only the anchor makes them bad
    secure, t = resolve(ctl, dns.resolver_config(), 'badaddr.secure.example')
    assert not secure and t[0].addrs == ['127.0.9.2']


def test_tlsa(ctl, dns):
    conf = dns.resolver_config(trust=['secure.example'])
    res = ctl.run(conf, 'tlsa', 'xmpp.secure.example', '5269')
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == [
        'xmpp.secure.example: 1 TLSA record, DNSSEC secure',
        f'3 1 1 {TLSA_HEX}']
    res = ctl.run(conf, 'tlsa', 'xmpp.secure.example', '5270')
    assert res.stdout.splitlines() == [
        'xmpp.secure.example: 0 TLSA records, DNSSEC secure']
    res = ctl.run(dns.resolver_config(), 'tlsa', 'xmpp.secure.example',
                  '5269')
    assert res.stdout.splitlines()[0] == \
        'xmpp.secure.example: 1 TLSA record, DNSSEC insecure'
    res = ctl.run(conf, 'tlsa', 'bad.secure.example', '0')
    assert res.returncode == 1 and 'bad port' in res.stderr


def probe(conf_path, *args):
    assert PROBE_BIN.exists(), f'{PROBE_BIN} not built'
    res = subprocess.run([str(PROBE_BIN), str(conf_path), *args],
                         capture_output=True, text=True,
                         env=sanitizer_env(), timeout=60)
    found = sanitizer_reports(res.stderr)
    assert not found, f'resolve_probe {args}: {found}\n{res.stderr}'
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.splitlines()[-1] == 'ok', res.stdout
    return res.stdout.splitlines()


def test_cancel(ctl, dns):
    out = probe(ctl.config(dns.resolver_config()), 'cancel', 'tls.example')
    assert len(out) == 2 and out[0] in ('cb 0 ok', 'cb 2 ok'), out


def test_many_at_once(ctl, dns):
    probe(ctl.config(dns.resolver_config()), 'many', '200', 'tls.example')


def test_shutdown_with_pending_queries(ctl):
    hole = BlackHole()
    try:
        out = probe(ctl.config({'upstream': [hole.upstream],
                                'timeout': '30s'}),
                    'shutdown', 'pending.example')
        assert hole.received() > 0
    finally:
        hole.close()
    assert sorted(out[:-1]) == ['cb late shutting down',
                                'cb server shutting down',
                                'cb tlsa shutting down']


def test_server_with_dns_server_fixture(server_factory, dns_server):
    """The conftest fixture as federation tests use it: stanzad starts
    with its resolver pointed at it, and `stanzactl dns` with the server's
    own configuration finds the peer."""
    dns_server.zone('peer.example', [
        '_xmpps-server._tcp SRV 0 0 5270 xmpp.peer.example.',
        'xmpp A 127.0.0.9'])
    dns_server.start()
    srv = server_factory(users={}, dns=dns_server.resolver_config())
    secure, t = parse(srv.ctl('dns', 'peer.example').stdout)
    assert not secure
    assert [(x.host, x.port, x.tls, x.addrs) for x in t] == [
        ('xmpp.peer.example', 5270, True, ['127.0.0.9'])]
    assert srv.alive()


def test_server_refuses_bad_dns_config(tmp_path):
    for dns_conf, message in [
            ({'trust_anchor_file': str(tmp_path / 'missing.key')},
             'trust anchor file'),
            ({'hosts': str(tmp_path / 'missing-hosts')}, 'hosts file'),
            ({'upstream': ['127.0.0.1@99999']}, 'dns.upstream'),
            ({'upstream': ['resolver.example']}, 'dns.upstream')]:
        path = tmp_path / 'bad.yaml'
        path.write_text(yaml.safe_dump({
            'hosts': ['localhost'], 'data_dir': str(tmp_path / 'data'),
            'listeners': [{'type': 'c2s', 'address': '127.0.0.1',
                           'port': 5222}],
            'dns': dns_conf}))
        res = subprocess.run([str(STANZAD_BIN), '-c', str(path)],
                             capture_output=True, text=True,
                             env=sanitizer_env(), timeout=30)
        assert res.returncode == 1, (dns_conf, res.stderr)
        assert message in res.stderr, (dns_conf, res.stderr)
        assert not sanitizer_reports(res.stderr), res.stderr
