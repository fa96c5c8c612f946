"""A small SCRAM client (RFC 5802, RFC 7677) with channel binding.

Channel-binding data comes from a pyOpenSSL connection:
  tls-exporter          RFC 9266: 32 bytes of keying material exported with
                        the label "EXPORTER-Channel-Binding" and an empty
                        context (TLS 1.3 only);
  tls-server-end-point  RFC 5929 §4.1: hash of the server certificate (DER),
                        with SHA-256 if the certificate's signature hash is
                        MD5 or SHA-1, else with that hash;
  tls-unique            RFC 5929 §3.1: the first Finished message of the
                        handshake, the client's in a full one (TLS 1.2 only).
The client exposes its gs2 flag and channel-binding data so that tests can
send wrong ones on purpose.
"""

import base64
import hashlib
import hmac
import os

from OpenSSL import SSL, crypto

HASHES = {'SCRAM-SHA-1': 'sha1', 'SCRAM-SHA-256': 'sha256'}
MECHANISMS = ('SCRAM-SHA-1', 'SCRAM-SHA-256',
              'SCRAM-SHA-1-PLUS', 'SCRAM-SHA-256-PLUS')
CB_TYPES = ('tls-exporter', 'tls-server-end-point', 'tls-unique')


class ScramError(Exception):
    pass


def tls_exporter(conn: SSL.Connection) -> bytes:
    return conn.export_keying_material(b'EXPORTER-Channel-Binding', 32)


def tls_server_end_point(conn: SSL.Connection) -> bytes:
    cert = conn.get_peer_certificate()
    der = crypto.dump_certificate(crypto.FILETYPE_ASN1, cert)
    algo = cert.to_cryptography().signature_hash_algorithm.name
    if algo in ('md5', 'sha1'):
        algo = 'sha256'
    return hashlib.new(algo, der).digest()


def channel_binding(conn: SSL.Connection, cb_type: str) -> bytes:
    if cb_type == 'tls-exporter':
        return tls_exporter(conn)
    if cb_type == 'tls-server-end-point':
        return tls_server_end_point(conn)
    if cb_type == 'tls-unique':
        return conn.get_finished()
    raise ValueError(f'unknown channel-binding type {cb_type}')


def saslname(name: str) -> str:
    return name.replace('=', '=3D').replace(',', '=2C')


def _parse(message: bytes) -> dict:
    attrs = {}
    for part in message.decode().split(','):
        key, sep, value = part.partition('=')
        if not sep or len(key) != 1:
            raise ScramError(f'malformed SCRAM message {message!r}')
        attrs[key] = value
    return attrs


class ScramClient:
    """One SCRAM exchange: client_first() -> client_final(server_first)
    -> verify_server_final(server_final)."""

    def __init__(self, mechanism, username, password, *, cb_type=None,
                 cb_data=b'', gs2_flag=None):
        plus = mechanism.endswith('-PLUS')
        self.hash_name = HASHES[mechanism.removesuffix('-PLUS')]
        if gs2_flag is None:
            gs2_flag = f'p={cb_type}' if plus else 'n'
        self.gs2_header = f'{gs2_flag},,'.encode()
        # RFC 5802 §7: cbind-input is the gs2 header plus, with "p=", the
        # channel-binding data.
        self.cb_data = cb_data if gs2_flag.startswith('p=') else b''
        self.password = password.encode()
        self.cnonce = base64.b64encode(os.urandom(18)).decode()
        self.client_first_bare = f'n={saslname(username)},r={self.cnonce}'
        self.server_signature = None

    def client_first(self) -> bytes:
        return self.gs2_header + self.client_first_bare.encode()

    def _hmac(self, key, msg):
        return hmac.new(key, msg, self.hash_name).digest()

    def client_final(self, server_first: bytes) -> bytes:
        attrs = _parse(server_first)
        if 'm' in attrs:
            raise ScramError('server sent a mandatory extension')
        nonce, salt, iters = attrs['r'], attrs['s'], int(attrs['i'])
        if not nonce.startswith(self.cnonce) or nonce == self.cnonce:
            raise ScramError(f'bad server nonce {nonce!r}')
        salted = hashlib.pbkdf2_hmac(self.hash_name, self.password,
                                     base64.b64decode(salt), iters)
        client_key = self._hmac(salted, b'Client Key')
        stored_key = hashlib.new(self.hash_name, client_key).digest()
        cbind = base64.b64encode(self.gs2_header + self.cb_data).decode()
        without_proof = f'c={cbind},r={nonce}'
        auth_message = ','.join((self.client_first_bare,
                                 server_first.decode(),
                                 without_proof)).encode()
        signature = self._hmac(stored_key, auth_message)
        proof = bytes(a ^ b for a, b in zip(client_key, signature))
        server_key = self._hmac(salted, b'Server Key')
        self.server_signature = self._hmac(server_key, auth_message)
        return f'{without_proof},p={base64.b64encode(proof).decode()}'.encode()

    def verify_server_final(self, server_final: bytes) -> None:
        attrs = _parse(server_final)
        if 'e' in attrs:
            raise ScramError(f'server-error {attrs["e"]}')
        if base64.b64decode(attrs.get('v', '')) != self.server_signature:
            raise ScramError('wrong server signature (mutual auth failed)')
