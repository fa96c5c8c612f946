#!/usr/bin/python3
"""check.py - end-to-end check of a benchmark peer started by bench/peers.

Usage: /usr/bin/python3 bench/peers/check.py prosody|ejabberd
       [--dir DIR] [--port PORT] [--domain DOMAIN] [-v]

Starts the server with bench/peers/SERVER.sh in a fresh state directory,
then checks, printing PASS/FAIL per step: it listens on loopback only
with enough open files; STARTTLS is required before SASL (RFC 6120 5.3.1);
which SASL mechanisms are offered after TLS; in-band registration
(XEP-0077 3.1) over STARTTLS, done by hand on a raw stream (slixmpp 1.8
holds back stanzas sent before the session starts), and a taken name
refused; then, with slixmpp, SCRAM login (SCRAM-SHA-256 where offered,
else SCRAM-SHA-1); a wrong password is refused; a message
between two accounts; offline storage of a message; stop; and two more
start/stop cycles (no stale pid or lock, accounts survive a restart).
Every network wait is bounded; exit status 0 only if every step passed.
Needs root (the scripts drop privileges) and Debian's python3-slixmpp.
"""

import argparse
import asyncio
import base64
import logging
import os
import re
import secrets
import shutil
import socket
import ssl
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from xml.sax.saxutils import escape

from slixmpp import ClientXMPP

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_PORTS = {"prosody": 15222, "ejabberd": 25222}
# files that mark a directory as one of ours, safe to wipe
MARKERS = {"prosody": "prosody.cfg.lua", "ejabberd": "ejabberd.yml"}
NS_STREAM = "http://etherx.jabber.org/streams"
NS_TLS = "urn:ietf:params:xml:ns:xmpp-tls"
NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
NS_REGISTER_FEATURE = "http://jabber.org/features/iq-register"
NS_REGISTER = "jabber:iq:register"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
NET_TIMEOUT = 15.0
BURST = 30
SCRIPT_TIMEOUT = 120


class Report:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def step(self, name, ok, detail=""):
        tag = "PASS" if ok else "FAIL"
        print(f"{tag} {name}" + (f": {detail}" if detail else ""),
              flush=True)
        if ok:
            self.passed += 1
        else:
            self.failed += 1
        return ok


# ---- the scripts under test ----------------------------------------------

def script(server, *args):
    """Runs SERVER.sh with args; returns (exit status, combined output)."""
    path = os.path.join(HERE, server + ".sh")
    try:
        p = subprocess.run(["bash", path, *args], capture_output=True,
                           text=True, timeout=SCRIPT_TIMEOUT)
    except subprocess.TimeoutExpired:
        return 124, f"{server}.sh {args[0]} timed out"
    return p.returncode, (p.stdout + p.stderr).strip()


def pid_alive(pid):
    return pid is not None and os.path.isdir(f"/proc/{pid}")


def listening_sockets():
    """[(proto, local address, port, pids)] of every listening socket."""
    out = subprocess.run(["ss", "-Hlntup"], capture_output=True,
                         text=True, timeout=10).stdout
    socks = []
    for line in out.splitlines():
        f = line.split()
        if len(f) < 5:
            continue
        addr, _, port = f[4].rpartition(":")
        pids = {int(x) for x in re.findall(r"pid=(\d+)", line)}
        socks.append((f[0], addr.strip("[]"), int(port), pids))
    return socks


def port_open(port):
    return any(p == port and proto == "tcp"
               for proto, _, p, _ in listening_sockets())


def open_files_limit(pid):
    with open(f"/proc/{pid}/limits") as f:
        for line in f:
            if line.startswith("Max open files"):
                return int(line.split()[3])
    return 0


# ---- raw stream probe (features before and after STARTTLS) ---------------

class RawStream:
    """Reads top-level elements of an XMPP stream from a blocking socket."""

    def __init__(self, sock):
        self.sock = sock
        self.parser = ET.XMLPullParser(events=("start", "end"))
        self.depth = 0
        self.pending = []

    def send(self, text):
        self.sock.sendall(text.encode())

    def next_element(self, deadline):
        while True:
            for ev, el in self.parser.read_events():
                if ev == "start":
                    self.depth += 1
                else:
                    self.depth -= 1
                    if self.depth == 1:
                        self.pending.append(el)
            if self.pending:
                return self.pending.pop(0)
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no element from server")
            self.sock.settimeout(left)
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("server closed the stream")
            self.parser.feed(data)


def stream_header(domain):
    return ("<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
            f"xmlns:stream='{NS_STREAM}' to='{domain}' version='1.0'>")


def read_features(stream, deadline):
    el = stream.next_element(deadline)
    if el.tag != f"{{{NS_STREAM}}}features":
        raise ValueError(f"expected stream features, got {el.tag}")
    return el


def open_tls_stream(port, domain, cafile, source="127.0.0.1"):
    """STARTTLS by hand; returns (stream, features before/after, version).

    The caller closes stream.sock."""
    deadline = time.monotonic() + NET_TIMEOUT
    sock = socket.create_connection(("127.0.0.1", port), NET_TIMEOUT,
                                    source_address=(source, 0))
    try:
        raw = RawStream(sock)
        raw.send(stream_header(domain))
        before = read_features(raw, deadline)
        raw.send(f"<starttls xmlns='{NS_TLS}'/>")
        el = raw.next_element(deadline)
        if el.tag != f"{{{NS_TLS}}}proceed":
            raise ValueError(f"STARTTLS answered with {el.tag}")
        ctx = ssl.create_default_context(cafile=cafile)
        sock = ctx.wrap_socket(sock, server_hostname=domain)
        raw = RawStream(sock)
        raw.send(stream_header(domain))
        after = read_features(raw, deadline)
        return raw, before, after, sock.version()
    except BaseException:
        sock.close()
        raise


def probe(port, domain, cafile):
    """Returns (features before TLS, features after TLS, TLS version)."""
    raw, before, after, version = open_tls_stream(port, domain, cafile)
    raw.sock.close()
    return before, after, version


def iq_exchange(raw, iq_id, payload, deadline):
    """Sends an iq and returns the reply with the same id."""
    raw.send(payload)
    while True:
        el = raw.next_element(deadline)
        if el.tag == "{jabber:client}iq" and el.get("id") == iq_id:
            return el


def register_raw(port, domain, cafile, user, password, source="127.0.0.1"):
    """XEP-0077 3.1 over STARTTLS: returns (ok, error condition or '')."""
    try:
        return register_once(port, domain, cafile, user, password, source)
    except (OSError, ValueError, ET.ParseError) as e:
        return False, f"{type(e).__name__}: {e}"


def register_once(port, domain, cafile, user, password, source):
    deadline = time.monotonic() + NET_TIMEOUT
    raw, _, after, _ = open_tls_stream(port, domain, cafile, source)
    try:
        if after.find(f"{{{NS_REGISTER_FEATURE}}}register") is None:
            return False, "register feature not offered"
        form = iq_exchange(raw, "reg1", "<iq type='get' id='reg1'><query "
                           f"xmlns='{NS_REGISTER}'/></iq>", deadline)
        q = form.find(f"{{{NS_REGISTER}}}query")
        if (form.get("type") != "result" or q is None or
                q.find(f"{{{NS_REGISTER}}}username") is None or
                q.find(f"{{{NS_REGISTER}}}password") is None):
            return False, "no registration form: " + ET.tostring(
                form, encoding="unicode")
        reply = iq_exchange(
            raw, "reg2", f"<iq type='set' id='reg2'><query xmlns='"
            f"{NS_REGISTER}'><username>{escape(user)}</username><password>"
            f"{escape(password)}</password></query></iq>", deadline)
        if reply.get("type") == "result":
            return True, ""
        return False, error_condition(reply)
    finally:
        try:
            raw.send("</stream:stream>")
        except OSError:
            pass
        raw.sock.close()


def scram_iterations(port, domain, cafile, user, mech):
    """Sends a SCRAM client-first message (RFC 5802 5.1) for an existing
    account and returns the iteration count the server asks for."""
    deadline = time.monotonic() + NET_TIMEOUT
    raw, _, _, _ = open_tls_stream(port, domain, cafile)
    try:
        first = f"n,,n={user},r={secrets.token_hex(12)}".encode()
        raw.send(f"<auth xmlns='{NS_SASL}' mechanism='{mech}'>"
                 f"{base64.b64encode(first).decode()}</auth>")
        el = raw.next_element(deadline)
        if el.tag != f"{{{NS_SASL}}}challenge" or not el.text:
            raise ValueError(f"no SCRAM challenge but {el.tag}")
        attrs = dict(kv.split("=", 1) for kv in
                     base64.b64decode(el.text).decode().split(","))
        return int(attrs["i"])
    finally:
        raw.sock.close()


def error_condition(stanza):
    err = stanza.find("{jabber:client}error")
    if err is None:
        return "no error element"
    for child in err:
        if child.tag.startswith(f"{{{NS_STANZAS}}}") and \
                not child.tag.endswith("}text"):
            return child.tag.split("}")[1]
    return "unknown error"


def mechanisms(features):
    return [m.text.strip() for m in
            features.iter(f"{{{NS_SASL}}}mechanism") if m.text]


def check_features(rep, port, domain, cafile):
    """Returns the SCRAM mechanism to log in with, or None."""
    try:
        before, after, tls_version = probe(port, domain, cafile)
    except (OSError, ValueError, ET.ParseError) as e:
        rep.step("starttls", False, str(e))
        return None
    starttls = before.find(f"{{{NS_TLS}}}starttls")
    required = (starttls is not None and
                starttls.find(f"{{{NS_TLS}}}required") is not None)
    pre_mechs = mechanisms(before)
    rep.step("tls required before auth", required and not pre_mechs,
             f"starttls required={required}, mechanisms before TLS="
             f"{pre_mechs or 'none'}")
    rep.step("starttls", True, f"{tls_version}, certificate verified "
             f"against {os.path.basename(cafile)}")
    mechs = mechanisms(after)
    rep.step("mechanisms offered", bool(mechs), " ".join(mechs))
    rep.step("in-band registration offered",
             after.find(f"{{{NS_REGISTER_FEATURE}}}register") is not None)
    for m in ("SCRAM-SHA-256", "SCRAM-SHA-1"):
        if m in mechs:
            return m
    rep.step("scram offered", False, "neither SCRAM-SHA-256 nor -SHA-1")
    return None


# ---- slixmpp sessions ------------------------------------------------------

class Client(ClientXMPP):
    """One client session whose outcomes are futures, for bounded waits."""

    def __init__(self, jid, password, mech, cafile):
        super().__init__(jid, password, sasl_mech=mech)
        self.ssl_context = ssl.create_default_context(cafile=cafile)
        loop = asyncio.get_event_loop()
        self.started = loop.create_future()
        self.gone = loop.create_future()
        self.inbox = asyncio.Queue()
        self.add_event_handler("session_start", self._on_start)
        self.add_event_handler("failed_all_auth", self._on_auth_fail)
        self.add_event_handler("disconnected", self._on_gone)
        self.add_event_handler("message", self._on_message)
        self.register_plugin("xep_0199")  # ping, for roundtrip()

    @staticmethod
    def _settle(fut, value):
        if not fut.done():
            fut.set_result(value)

    def _on_start(self, _event):
        self._settle(self.started, (True, self["feature_mechanisms"]
                                    .mech.name))

    def _on_auth_fail(self, _event):
        self._settle(self.started, (False, "authentication failed"))

    def _on_gone(self, _event):
        self._settle(self.started, (False, "disconnected"))
        self._settle(self.gone, True)

    def _on_message(self, msg):
        if msg["type"] in ("chat", "normal"):
            self.inbox.put_nowait(msg)


async def bounded(fut, what):
    try:
        return await asyncio.wait_for(asyncio.shield(fut), NET_TIMEOUT)
    except asyncio.TimeoutError:
        return (False, f"timed out waiting for {what}")


async def login(port, jid, password, mech, cafile):
    """Connects; returns (client, ok, detail). ok means session started."""
    c = Client(jid, password, mech, cafile)
    c.connect(("127.0.0.1", port), force_starttls=True)
    ok, detail = await bounded(c.started, "session start")
    return c, ok, detail


async def close(c):
    if c.gone.done():
        return
    c.disconnect()
    try:
        await asyncio.wait_for(asyncio.shield(c.gone), NET_TIMEOUT)
    except asyncio.TimeoutError:
        c.abort()


async def expect_message(c, body):
    """Waits for a message with this body; returns it or None."""
    deadline = time.monotonic() + NET_TIMEOUT
    while (left := deadline - time.monotonic()) > 0:
        try:
            msg = await asyncio.wait_for(c.inbox.get(), left)
        except asyncio.TimeoutError:
            return None
        if msg["body"] == body:
            return msg
    return None


async def roundtrip(c):
    """A ping to the server: everything sent before it has been handled."""
    iq = c.Iq()
    iq["type"] = "get"
    iq["to"] = c.boundjid.domain
    iq.enable("ping")
    try:
        await iq.send(timeout=NET_TIMEOUT)
    except Exception:  # an error reply still proves the order
        pass


def check_burst(rep, port, domain, cafile, prefix):
    """Registrations back to back, as loadgen makes them: none may be
    throttled, from 127.0.0.1 nor from another loopback address (Prosody
    exempts 127.0.0.1 from its throttle by default, not the rest of
    127/8, which loadgen's source addresses come from)."""
    errors = []
    for n in range(BURST):
        # half from each address, so a per-address limit shows
        source = "127.0.0.1" if n < BURST // 2 else "127.0.1.7"
        ok, detail = register_raw(port, domain, cafile, f"{prefix}n{n}",
                                  secrets.token_urlsafe(8), source)
        if not ok:
            errors.append(f"#{n} from {source}: {detail}")
    rep.step(f"{BURST} registrations back to back (no throttle)",
             not errors, "; ".join(errors[:3]) or "all created")


async def check_accounts(rep, port, domain, mech, cafile, users):
    """Registration, login, bad password, message, offline message."""
    (ja, pa), (jb, pb) = users
    for jid, pw in users:
        ok, detail = register_raw(port, domain, cafile, jid.split("@")[0],
                                  pw)
        if not rep.step(f"register {jid} (XEP-0077 over STARTTLS)", ok,
                        detail):
            return
    ok, detail = register_raw(port, domain, cafile, ja.split("@")[0], "x1")
    rep.step("registering an existing name refused", not ok and
             detail == "conflict", detail or "accepted")
    check_burst(rep, port, domain, cafile, ja.split("@")[0])
    try:
        n = scram_iterations(port, domain, cafile, ja.split("@")[0], mech)
        rep.step("scram iteration count", n >= 4096, str(n))
    except (OSError, ValueError, KeyError, ET.ParseError) as e:
        rep.step("scram iteration count", False, repr(e))
    a, ok, detail = await login(port, ja, pa, mech, cafile)
    rep.step(f"login {ja} with {mech}", ok and detail == mech, detail)
    b, ok_b, detail = await login(port, jb, pb, mech, cafile)
    rep.step(f"login {jb} with {mech}", ok_b and detail == mech, detail)
    bad, ok_bad, detail = await login(port, ja, pa + "x", mech, cafile)
    await close(bad)
    rep.step("wrong password refused",
             not ok_bad and detail == "authentication failed", detail)
    if not (ok and ok_b):
        await close(a)
        await close(b)
        return
    await check_messages(rep, port, mech, cafile, a, b, (jb, pb))
    await close(a)


async def check_messages(rep, port, mech, cafile, a, b, cred_b):
    b.send_presence()
    await roundtrip(b)
    body = "online " + secrets.token_hex(8)
    a.send_message(mto=b.boundjid.full, mbody=body, mtype="chat")
    msg = await expect_message(b, body)
    rep.step("message between two accounts", msg is not None and
             msg["from"].bare == a.boundjid.bare,
             "delivered" if msg is not None else "not received")
    await close(b)
    body = "offline " + secrets.token_hex(8)
    a.send_message(mto=cred_b[0], mbody=body, mtype="chat")
    await roundtrip(a)
    b, ok, detail = await login(port, cred_b[0], cred_b[1], mech, cafile)
    if ok:
        b.send_presence()
        msg = await expect_message(b, body)
        ok = msg is not None
        detail = "delivered at login" if ok else "not delivered"
    rep.step("offline message stored and delivered", ok, detail)
    await close(b)


# ---- the whole run ---------------------------------------------------------

def fresh_dir(server, path):
    """Stops and wipes an earlier check directory of ours, then makes it."""
    if os.path.isdir(path) and not os.listdir(path):
        os.rmdir(path)
    if os.path.isdir(path):
        if not os.path.exists(os.path.join(path, MARKERS[server])):
            sys.exit(f"check.py: {path} exists and is not a {server} "
                     "state directory; refusing to wipe it")
        script(server, "stop", path)
        shutil.rmtree(path)
    os.makedirs(path)


def start(rep, server, d, port, domain, label):
    rc, out = script(server, "start", d, str(port), domain)
    if not rep.step(f"{label}: start", rc == 0, out):
        return None
    rc, out = script(server, "pid", d)
    pid = int(out) if rc == 0 and out.isdigit() else None
    rep.step(f"{label}: pid", pid_alive(pid), out)
    rep.step(f"{label}: listening on 127.0.0.1:{port}", any(
        p == port and a == "127.0.0.1" and proto == "tcp"
        for proto, a, p, _ in listening_sockets()))
    return pid


def stop(rep, server, d, port, pid, label):
    rc, out = script(server, "stop", d)
    time.sleep(0.2)
    rep.step(f"{label}: stop", rc == 0 and not pid_alive(pid) and
             not port_open(port), out or f"pid {pid} gone, port closed")
    rc, _ = script(server, "pid", d)
    rep.step(f"{label}: no pid after stop", rc != 0)


def check_process(rep, pid, port):
    """Loopback only, no s2s/HTTP ports, open-files limit."""
    mine = [(proto, a, p) for proto, a, p, pids in listening_sockets()
            if pid in pids]
    public = [f"{proto} {a}:{p}" for proto, a, p in mine
              if a not in ("127.0.0.1", "::1")]
    rep.step("listens on loopback only", not public,
             ", ".join(f"{proto} {a}:{p}" for proto, a, p in mine))
    others = [p for _, _, p in mine if p in (5222, 5269, 5280, 5443)]
    rep.step("no s2s/http listener", not others, str(others or "none"))
    n = open_files_limit(pid)
    rep.step("open files limit >= 20000", n >= 20000, str(n))


def check_system_services(rep):
    busy = sorted({p for _, _, p, _ in listening_sockets()
                   if p in (5222, 5269, 5280)})
    rep.step("no system XMPP service on 5222/5269/5280", not busy,
             str(busy or "none listening"))


async def relogin(rep, port, mech, cafile, jid, pw, label):
    c, ok, detail = await login(port, jid, pw, mech, cafile)
    await close(c)
    rep.step(f"{label}: account survives restart", ok, detail)


def shutdown_loop(loop):
    """Cancels slixmpp's leftover tasks so closing the loop is quiet."""
    tasks = asyncio.all_tasks(loop)
    for t in tasks:
        t.cancel()
    loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
    loop.close()


def run_cycles(rep, args, d, cafile, loop):
    """The first run with every check, then two bare restarts."""
    tag = secrets.token_hex(3)
    users = [(f"chk{tag}{n}@{args.domain}", secrets.token_urlsafe(12))
             for n in ("a", "b")]
    pid = start(rep, args.server, d, args.port, args.domain, "run 1")
    mech = None
    if pid:
        check_process(rep, pid, args.port)
        mech = check_features(rep, args.port, args.domain, cafile)
        if mech:
            loop.run_until_complete(check_accounts(
                rep, args.port, args.domain, mech, cafile, users))
        stop(rep, args.server, d, args.port, pid, "run 1")
    for n in (2, 3):
        label = f"restart {n - 1}"
        pid = start(rep, args.server, d, args.port, args.domain, label)
        if pid and mech:
            loop.run_until_complete(relogin(rep, args.port, mech, cafile,
                                            *users[0], label))
        if pid:
            stop(rep, args.server, d, args.port, pid, label)


def run(args):
    rep = Report()
    d = os.path.abspath(args.dir)
    cafile = os.path.join(d, "certs", args.domain + ".crt")
    check_system_services(rep)
    fresh_dir(args.server, d)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        run_cycles(rep, args, d, cafile, loop)
    finally:
        # whatever failed, leave no server behind
        script(args.server, "stop", d)
    shutdown_loop(loop)
    print(f"{rep.passed} passed, {rep.failed} failed")
    return 1 if rep.failed else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("server", choices=sorted(DEFAULT_PORTS))
    ap.add_argument("--dir", help="state directory (wiped first; default "
                    "/tmp/bench-peers/check-SERVER)")
    ap.add_argument("--port", type=int)
    ap.add_argument("--domain", default="bench.test")
    ap.add_argument("-v", "--verbose", action="store_true",
                    help="slixmpp debug log on stderr")
    args = ap.parse_args()
    args.dir = args.dir or f"/tmp/bench-peers/check-{args.server}"
    args.port = args.port or DEFAULT_PORTS[args.server]
    logging.basicConfig(level=logging.DEBUG if args.verbose
                        else logging.CRITICAL)
    if os.geteuid() != 0:
        sys.exit("check.py: must run as root (the scripts switch users)")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
