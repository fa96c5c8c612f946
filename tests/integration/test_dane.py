"""DANE for outgoing server-to-server streams (RFC 6698, RFC 7673).

Two stanzads on 127.0.0.1, each with an s2s listener on a free port that
its SRV record names: a.example (alice, the sender), in the unsigned zone
`example.`, and bob's server, b.secure.example in the DNSSEC-signed zone
`secure.example.` (b.example in the unsigned zone for the insecure case),
where its TLSA records are. Both resolve through the test's unbound
(dnsserver.py) with the trust anchor of secure.example.

a's certificate is signed by a test CA, the only authority in a's trust
store. That CA never signs b's certificate except where a test says so: a
can authenticate b only through b's TLSA records. b trusts the CA (it
authenticates a with SASL EXTERNAL) unless the test wants dialback.

- DANE-EE (3 1 1) for a self-signed certificate that names another
  domain (RFC 7671 §5.1: no name checks), dialback off: the message
  arrives, a's log says the peer was verified by DANE.
- DANE-TA (2 1 1) naming a second CA that a does not trust, which signed
  b's certificate (sent with its chain): the message arrives.
- A TLSA record that matches nothing, with a certificate a would accept
  by PKIX and dialback on: refused (RFC 6698 §4.1: no fallback), alice
  gets her message back as an error, bob gets nothing.
- A TLSA record whose signature is broken (bogus): refused, the same.
- The same non-matching TLSA record in an unsigned zone: DANE does not
  apply (RFC 7673 §3), the stream uses dialback and the message arrives.
"""

import asyncio
import hashlib
import subprocess
import uuid

import pytest

from clients import connect, disconnect, send_and_receive
from conftest import free_ports
from federation import TestCA

A_DOMAIN = 'a.example'
SIGNED = 'secure.example'
PASSWORD = 'secret-pw'
WAIT = 25  # s2s set-up is bounded by connect_timeout (10 s)


def spki_sha256(cert):
    """The TLSA association data of selector 1 (SubjectPublicKeyInfo),
    matching type 1 (SHA2-256) for a PEM certificate."""
    pub = subprocess.run(['openssl', 'x509', '-in', str(cert), '-noout',
                          '-pubkey'], check=True, capture_output=True)
    der = subprocess.run(['openssl', 'pkey', '-pubin', '-outform', 'DER'],
                         input=pub.stdout, check=True,
                         capture_output=True).stdout
    return hashlib.sha256(der).hexdigest()


class Pair:
    """a.example and bob's server, with the DNS between them."""

    def __init__(self, server_factory, dns_server, tmp_path, *, b_domain,
                 b_cert, tlsa, dialback=False, b_trusts_a=True,
                 tamper=False, ca=None):
        self.b_domain = b_domain
        self.ca = ca or TestCA(tmp_path / 'ca')
        a_cert = self.ca.issue(A_DOMAIN)
        other_ca = TestCA(tmp_path / 'other-ca')
        port_a, port_b = free_ports(2)
        b_label, b_zone = b_domain.split('.', 1)
        b_records = [
            f'_xmpp-server._tcp.{b_label} SRV 0 0 {port_b} '
            f'xmpp.{b_domain}.',
            f'xmpp.{b_label} A 127.0.0.1',
            f'_{port_b}._tcp.xmpp.{b_label} TLSA {tlsa}',
            # a record at the domain itself: unbound's auth-zone proves
            # no _xmpps-server name below it only then (see test_dns.py)
            f'{b_label} TXT "x"',
        ]
        a_records = [
            f'_xmpp-server._tcp.a SRV 0 0 {port_a} xmpp.a.example.',
            'xmpp.a A 127.0.0.1',
            'a TXT "x"',
        ]
        if b_zone == SIGNED:
            dns_server.zone('example', a_records)
            dns_server.zone(SIGNED, b_records, sign=True,
                            tamper=[f'_{port_b}._tcp.xmpp.{b_label} TLSA']
                            if tamper else [])
        else:
            dns_server.zone('example', a_records + b_records)
            # the trust anchor is there: DANE is on, this zone is not
            dns_server.zone(SIGNED, ['x TXT "x"'], sign=True)
        dns_server.start()
        dns_conf = dns_server.resolver_config(trust=[SIGNED])
        self.a = self._server(server_factory, A_DOMAIN, a_cert, port_a,
                              dns_conf, 'alice', ca=self.ca.cert,
                              dialback=dialback)
        self.b = self._server(server_factory, b_domain, b_cert, port_b,
                              dns_conf, 'bob',
                              ca=self.ca.cert if b_trusts_a
                              else other_ca.cert, dialback=dialback)

    @staticmethod
    def _server(server_factory, domain, cert, port, dns_conf, user, *, ca,
                dialback):
        srv = server_factory(
            users={}, s2s_port=port,
            hosts=[{'name': domain,
                    'tls': {'cert': str(cert[0]), 'key': str(cert[1])}}],
            dns=dns_conf,
            s2s={'ca_file': str(ca), 'dialback': dialback})
        srv.ctl('user', 'add', f'{user}@{domain}', stdin=PASSWORD + '\n')
        srv.passwords[user] = PASSWORD
        srv.jid = lambda u, resource=None: \
            f'{u}@{domain}' + (f'/{resource}' if resource else '')
        return srv

    async def clients(self):
        alice = await connect(self.a, 'alice', 'home')
        try:
            bob = await connect(self.b, 'bob', 'work')
        except BaseException:
            await disconnect(alice)
            raise
        alice.add_event_handler('message_error', alice.messages.put_nowait)
        return alice, bob

    def a_log(self):
        return self.a.log_text()


async def delivered(pair):
    alice, bob = await pair.clients()
    try:
        await send_and_receive(alice, bob, timeout=WAIT)
    finally:
        await disconnect(alice, bob)


async def bounced(pair):
    """alice's message comes back as an error; bob gets nothing."""
    alice, bob = await pair.clients()
    try:
        msg = alice.make_message(mto=bob.boundjid.full, mtype='chat',
                                 mbody='must not arrive')
        msg_id = msg['id'] = uuid.uuid4().hex

        async def back():
            while True:
                m = await alice.messages.get()
                if m['id'] == msg_id and m['type'] == 'error':
                    return m
        msg.send()
        err = await asyncio.wait_for(back(), WAIT)
        assert err['from'] == bob.boundjid.full, err
        assert err['error']['condition'] == 'remote-server-not-found', err
        await asyncio.sleep(0.5)
        assert bob.messages.empty(), bob.messages.get_nowait()
        return err
    finally:
        await disconnect(alice, bob)


@pytest.mark.deadline(90)
async def test_dane_ee_self_signed(server_factory, dns_server, tmp_path):
    b_domain = f'b.{SIGNED}'
    # self-signed, and for another name: only the key counts
    cert = TestCA(tmp_path / 'self').self_signed('elsewhere.example')
    pair = Pair(server_factory, dns_server, tmp_path, b_domain=b_domain,
                b_cert=cert, tlsa=f'3 1 1 {spki_sha256(cert[0])}')
    await delivered(pair)
    pair.a.wait_for_log(rf's2s out {A_DOMAIN} -> {b_domain}: certificate verified by DANE '
                        r'\(DANE-EE TLSA record\)')
    pair.a.wait_for_log(rf's2s out {A_DOMAIN} -> {b_domain} authenticated by SASL '
                        r'EXTERNAL, peer verified by DANE')
    pair.b.wait_for_log(rf's2s in {A_DOMAIN} -> {b_domain} authenticated by SASL '
                        r'EXTERNAL')


@pytest.mark.deadline(90)
async def test_dane_ta_untrusted_ca(server_factory, dns_server, tmp_path):
    b_domain = f'b.{SIGNED}'
    b_ca = TestCA(tmp_path / 'b-ca')  # in nobody's trust store
    crt, key = b_ca.issue(b_domain)
    chain = tmp_path / 'b-chain.crt'
    chain.write_text(crt.read_text() + b_ca.cert.read_text())
    pair = Pair(server_factory, dns_server, tmp_path, b_domain=b_domain,
                b_cert=(chain, key), tlsa=f'2 1 1 {spki_sha256(b_ca.cert)}')
    await delivered(pair)
    pair.a.wait_for_log(rf's2s out {A_DOMAIN} -> {b_domain}: certificate verified by DANE '
                        r'\(DANE-TA TLSA record\)')
    pair.a.wait_for_log(rf's2s out {A_DOMAIN} -> {b_domain} authenticated by SASL '
                        r'EXTERNAL, peer verified by DANE')


@pytest.mark.deadline(90)
async def test_dane_mismatch_refused(server_factory, dns_server, tmp_path):
    b_domain = f'b.{SIGNED}'
    # b's certificate is one a accepts by PKIX, and dialback is on: only
    # DANE can refuse it
    ca = TestCA(tmp_path / 'ca')
    other = TestCA(tmp_path / 'self').self_signed(b_domain)
    pair = Pair(server_factory, dns_server, tmp_path, b_domain=b_domain,
                b_cert=ca.issue(b_domain),
                tlsa=f'3 1 1 {spki_sha256(other[0])}', dialback=True,
                ca=ca)
    err = await bounced(pair)
    assert 'DANE' in (err['error']['text'] or ''), err
    pair.a.wait_for_log(rf's2s out {A_DOMAIN} -> {b_domain}: DANE: the certificate does '
                        r'not match the TLSA records')
    assert f's2s out {A_DOMAIN} -> {b_domain} authenticated' not in pair.a_log()
    assert f's2s in {A_DOMAIN} -> {b_domain} authenticated' not in pair.b.log_text()


@pytest.mark.deadline(90)
async def test_bogus_tlsa_refused(server_factory, dns_server, tmp_path):
    b_domain = f'b.{SIGNED}'
    ca = TestCA(tmp_path / 'ca')
    cert = ca.issue(b_domain)
    pair = Pair(server_factory, dns_server, tmp_path, b_domain=b_domain,
                b_cert=cert, tlsa=f'3 1 1 {spki_sha256(cert[0])}',
                dialback=True, ca=ca, tamper=True)
    err = await bounced(pair)
    assert 'DNSSEC' in (err['error']['text'] or ''), err
    pair.a.wait_for_log(rf's2s out {A_DOMAIN} -> {b_domain}: TLSA of _\d+\._tcp\.xmpp\.'
                        rf'{b_domain}: DNSSEC validation failed')
    # RFC 7673 §3.3: not even a TCP connection to that server
    assert f's2s connected to {b_domain}' not in pair.a_log()


@pytest.mark.deadline(90)
async def test_insecure_zone_no_dane(server_factory, dns_server, tmp_path):
    b_domain = 'b.example'
    cert = TestCA(tmp_path / 'self').self_signed(b_domain)
    other = TestCA(tmp_path / 'other').self_signed(b_domain)
    # a TLSA record that would refuse b if it were used; b does not
    # trust a's CA either, so both directions use dialback
    pair = Pair(server_factory, dns_server, tmp_path, b_domain=b_domain,
                b_cert=cert, tlsa=f'3 1 1 {spki_sha256(other[0])}',
                dialback=True, b_trusts_a=False)
    await delivered(pair)
    pair.a.wait_for_log(rf's2s out {A_DOMAIN} -> {b_domain}: xmpp\.{b_domain}:\d+ is not '
                        r'DNSSEC-secure, no DANE')
    pair.a.wait_for_log(rf's2s out {A_DOMAIN} -> {b_domain} authenticated by '
                        r'dialback')
    pair.b.wait_for_log(rf's2s in {A_DOMAIN} -> {b_domain} authenticated by '
                        r'dialback')
    assert 'verified by DANE' not in pair.a_log()
