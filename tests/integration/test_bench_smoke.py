"""Smoke runs of the load generator (bench/loadgen) against stanzad: each
scenario tiny (a few users, about 2 s), its RESULT line checked for zero
failures and losses and for plausible numbers; plus negative controls
(wrong password, one source address under a per-address limit, the global
timeout) and a scripted hostile server, so that the checks can fail.

The binary is $LOADGEN_BIN, default build/bench/loadgen (relative to the
repository root); a missing binary fails the tests.
"""

import asyncio
import base64
import os
import re
import socket
import ssl
import subprocess
import threading
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import clients
import rawstream
from conftest import (DOMAIN, REPO_ROOT, STANZAD_BIN, free_ports,
                      proc_cpu_s, sanitizer_env, sanitizer_reports)

LOADGEN_BIN = Path(os.environ.get('LOADGEN_BIN') or 'build/bench/loadgen')
if not LOADGEN_BIN.is_absolute():
    LOADGEN_BIN = REPO_ROOT / LOADGEN_BIN

RUN_TIMEOUT = 90  # seconds, well above every --timeout below

NS_STREAMS = 'http://etherx.jabber.org/streams'


class Run:
    """One finished loadgen run: exit status, output, parsed RESULT."""

    def __init__(self, proc):
        self.status = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        lines = [ln for ln in self.stdout.splitlines()
                 if ln.startswith('RESULT ')]
        assert len(lines) == 1, f'want one RESULT line:\n{self.stdout}'
        self.result = dict(tok.split('=', 1) for tok in lines[0].split()[1:])

    def int(self, key):
        return int(self.result[key])

    def num(self, key):
        return float(self.result[key])

    def __repr__(self):
        return (f'loadgen exit {self.status}\nstdout:\n{self.stdout}\n'
                f'stderr:\n{self.stderr}')


def loadgen(port, scenario, *args, timeout=60):
    assert LOADGEN_BIN.exists(), f'{LOADGEN_BIN} not built'
    cmd = [str(LOADGEN_BIN), scenario, '--host', '127.0.0.1',
           '--port', str(port), '--domain', DOMAIN, '--tls-verify', 'off',
           '--timeout', str(timeout), *map(str, args)]
    proc = subprocess.run(cmd, capture_output=True, text=True,
                          env=sanitizer_env(), timeout=RUN_TIMEOUT)
    found = sanitizer_reports(proc.stderr)
    assert not found, f'{cmd}: {found}\n{proc.stderr}'
    assert proc.returncode >= 0, f'{cmd} killed by a signal\n{proc.stderr}'
    return Run(proc)


def assert_clean(run):
    assert run.status == 0, run
    assert run.int('conn_failures') == 0, run


def assert_latencies(run, name='lat'):
    p50 = run.num(f'{name}_p50_ms')
    p99 = run.num(f'{name}_p99_ms')
    top = run.num(f'{name}_max_ms')
    assert 0 < p50 <= p99 <= top < 10000, run


def bench_users(server, prefix, count, password='pw-%d'):
    """Accounts PREFIX1..PREFIXcount made with stanzactl."""
    for i in range(1, count + 1):
        server.add_user(f'{prefix}{i}', password.replace('%d', str(i)))


# -- scenarios --------------------------------------------------------------

def test_register_then_login(server_factory):
    srv = server_factory(registration=True)
    run = loadgen(srv.c2s_port, 'register', '--users', 'reg', '--count', 6,
                  '--password', 'pw-%d', '--concurrency', 3)
    assert_clean(run)
    assert run.int('created') == 6 and run.int('failed') == 0, run
    assert run.int('ok') == 6, run
    listed = srv.ctl('user', 'list', DOMAIN).stdout
    for i in range(1, 7):
        assert re.search(rf'\breg{i}\b', listed), listed
    # Again (from other addresses: the server limits registrations per
    # address): existing accounts count as ok.
    run = loadgen(srv.c2s_port, 'register', '--users', 'reg', '--count', 6,
                  '--password', 'pw-%d', '--src-range',
                  '127.0.9.1-127.0.9.254')
    assert_clean(run)
    assert run.int('existed') == 6 and run.int('created') == 0, run
    run = loadgen(srv.c2s_port, 'login', '--users', 'reg', '--count', 6,
                  '--password', 'pw-%d', '--duration', 1)
    assert_clean(run)
    assert run.int('ok') > 0 and run.int('failed') == 0, run


def test_register_disabled_reports_conditions(server_factory):
    srv = server_factory()  # registration off
    run = loadgen(srv.c2s_port, 'register', '--users', 'nreg', '--count', 3)
    assert run.status == 1, run
    assert run.int('failed') == 3 and run.int('ok') == 0, run
    assert run.int('err_service-unavailable') == 3, run


def test_login(server_factory):
    # One connection per source address is allowed: only the cycling
    # 127.x source addresses let 8 logins run side by side.
    srv = server_factory(limits={'max_conns_per_ip': 1})
    bench_users(srv, 'lg', 4)
    run = loadgen(srv.c2s_port, 'login', '--users', 'lg', '--count', 4,
                  '--password', 'pw-%d', '--duration', 2,
                  '--concurrency', 8)
    assert_clean(run)
    assert run.int('ok') >= 8 and run.int('failed') == 0, run
    assert run.int('ok') + run.int('failed') == run.int('started'), run
    assert run.num('logins_per_s') > 1, run
    assert_latencies(run)
    # The control: from a single address the limit bites.
    run = loadgen(srv.c2s_port, 'login', '--users', 'lg', '--count', 4,
                  '--password', 'pw-%d', '--duration', 1,
                  '--concurrency', 8, '--src-range', 'none')
    assert run.status == 1 and run.int('failed') > 0, run


def test_login_fixed_rate_scram_sha1(server):
    bench_users(server, 'sha', 2)
    run = loadgen(server.c2s_port, 'login', '--users', 'sha', '--count', 2,
                  '--password', 'pw-%d', '--duration', 2, '--rate', 20,
                  '--mechanism', 'SCRAM-SHA-1')
    assert_clean(run)
    # 20/s for 2 s: about 40 logins, never more than scheduled.
    assert 30 <= run.int('ok') <= 41, run
    assert_latencies(run)


def logins_ok(srv):
    """The server's count of successful logins (stanzactl metrics)."""
    out = srv.ctl('metrics').stdout
    m = re.search(r'^stanzad_logins_total\{result="ok"\} (\d+)', out, re.M)
    return int(m.group(1)) if m else 0


def test_login_warmup(server):
    bench_users(server, 'wu', 5)
    before = logins_ok(server)
    run = loadgen(server.c2s_port, 'login', '--users', 'wu', '--count', 5,
                  '--password', 'pw-%d', '--duration', 1,
                  '--concurrency', 2, '--threads', 2, '--warmup')
    assert_clean(run)
    assert run.int('warmup_failed') == 0, run
    assert run.int('ok') > 0, run
    # Every account once before the measured phase, not counted in it.
    assert logins_ok(server) - before == run.int('ok') + 5, run
    # An account that cannot log in fails the warm-up, and the run.
    run = loadgen(server.c2s_port, 'login', '--users', 'wu', '--count', 6,
                  '--password', 'pw-%d', '--duration', 1,
                  '--concurrency', 2, '--warmup')
    assert run.status == 1, run
    assert run.int('warmup_failed') == 1, run


def test_login_threads_and_cpu(server_factory):
    # One connection per source address: the threads walk their own
    # parts of the address range.
    srv = server_factory(limits={'max_conns_per_ip': 1})
    bench_users(srv, 'thr', 6)
    pid = srv.proc.pid
    before = proc_cpu_s(pid)
    run = loadgen(srv.c2s_port, 'login', '--users', 'thr', '--count', 6,
                  '--password', 'pw-%d', '--duration', 2,
                  '--concurrency', 6, '--threads', 3, '--server-pid', pid)
    after = proc_cpu_s(pid)
    assert_clean(run)
    assert run.int('threads') == 3, run
    ok = run.int('ok')
    per = [int(x) for x in run.result['ok_per_thread'].split(',')]
    assert len(per) == 3 and min(per) > 0 and sum(per) == ok, run
    assert ok + run.int('failed') == run.int('started'), run
    assert_latencies(run)
    # The server's CPU over the window is what the process used around
    # the run (less loadgen's start and end, when the server is idle).
    srv_cpu = run.num('server_cpu_s')
    assert 0 < srv_cpu <= after - before + 0.011, (before, after, run)
    assert srv_cpu >= (after - before) * 0.8 - 0.02, (before, after, run)
    assert abs(run.num('server_cpu_ms_per_login') - srv_cpu * 1e3 / ok) \
        <= 0.01 * srv_cpu * 1e3 / ok, run
    assert abs(run.num('logins_per_server_cpu_s') - ok / srv_cpu) <= \
        0.01 * ok / srv_cpu + 0.1, run
    assert run.num('gen_cpu_ms_per_login') > 0, run
    assert 1.5 < run.num('window_s') < 10, run


def test_login_threads_share_the_rate(server):
    bench_users(server, 'thrr', 4)
    run = loadgen(server.c2s_port, 'login', '--users', 'thrr', '--count', 4,
                  '--password', 'pw-%d', '--duration', 2, '--rate', 20,
                  '--threads', 2)
    assert_clean(run)
    # 10/s per thread for 2 s: about 40 in all, never more than scheduled.
    assert 30 <= run.int('ok') <= 42, run
    per = [int(x) for x in run.result['ok_per_thread'].split(',')]
    assert len(per) == 2 and all(15 <= p <= 21 for p in per), run


def test_login_cpu_without_a_server_process(server):
    bench_users(server, 'nop', 2)
    run = loadgen(server.c2s_port, 'login', '--users', 'nop', '--count', 2,
                  '--password', 'pw-%d', '--duration', 1,
                  '--server-pid', (1 << 30) - 1)
    assert_clean(run)
    assert 'server_cpu_s' not in run.result, run
    assert run.num('gen_cpu_s') > 0 and run.int('threads') == 1, run


@pytest.mark.parametrize('args', [
    ['msg', '--threads', '2', '--count', '4'],
    ['login', '--threads', '3', '--count', '2'],
    ['login', '--threads', '3', '--count', '9', '--concurrency', '2'],
    ['login', '--threads', '0'],
])
def test_threads_usage_errors(args):
    assert LOADGEN_BIN.exists(), f'{LOADGEN_BIN} not built'
    proc = subprocess.run([str(LOADGEN_BIN), *args, '--port', '1'],
                          capture_output=True, text=True,
                          env=sanitizer_env(), timeout=RUN_TIMEOUT)
    assert proc.returncode == 2, (args, proc.stderr)
    assert '--threads' in proc.stderr, proc.stderr
    assert 'RESULT' not in proc.stdout, proc.stdout


def test_login_wrong_password_fails(server):
    bench_users(server, 'bad', 2)
    run = loadgen(server.c2s_port, 'login', '--users', 'bad', '--count', 2,
                  '--password', 'wrong', '--duration', 1,
                  '--concurrency', 2)
    assert run.status == 1, run
    assert run.int('ok') == 0 and run.int('failed') > 0, run
    assert run.int('fail_sasl_not-authorized_sasl') == run.int('failed')


def test_idle(server):
    bench_users(server, 'idle', 4)
    run = loadgen(server.c2s_port, 'idle', '--users', 'idle', '--count', 4,
                  '--password', 'pw-%d', '--sessions', 8, '--hold', 1,
                  '--server-pid', server.proc.pid)
    assert_clean(run)
    lines = run.stdout.splitlines()
    ready = [i for i, ln in enumerate(lines) if ln == 'READY n=8']
    result = [i for i, ln in enumerate(lines) if ln.startswith('RESULT')]
    assert ready and ready[0] < result[0], run
    assert run.int('up') == 8 and run.int('dropped') == 0, run
    assert run.int('rss_ready_kb') > 0 and run.int('pss_ready_kb') > 0, run
    assert 'rss_per_session_kb' in run.result, run
    assert run.num('server_cpu_s') >= 0, run
    assert run.num('gen_cpu_ms_per_session') > 0, run


def test_roster_then_fanout(server):
    bench_users(server, 'ros', 6)
    common = ['--users', 'ros', '--count', 6, '--password', 'pw-%d']
    run = loadgen(server.c2s_port, 'roster', *common, '--contacts', 2,
                  '--duration', 5)
    assert_clean(run)
    assert run.int('expected') == 12 and run.int('both') == 12, run
    assert run.int('missing') == 0 and run.int('subscribes') > 0, run
    # Ring of 6 with 2 contacts each: ros1's are ros2 and ros6.
    lines = server.ctl('roster', 'list', f'ros1@{DOMAIN}').stdout
    items = {ln.split('\t')[0]: ln.split('\t')[1]
             for ln in lines.splitlines() if ln.strip()}
    assert items == {f'ros2@{DOMAIN}': 'both', f'ros6@{DOMAIN}': 'both'}
    # Every user has 2 contacts online: 2 broadcasts per toggle.
    run = loadgen(server.c2s_port, 'fanout', *common, '--contacts', 2,
                  '--togglers', 3, '--rate', 20, '--duration', 2,
                  '--settle', 0.5, '--server-pid', server.proc.pid)
    assert_clean(run)
    assert run.num('server_cpu_s') >= 0, run
    assert run.num('gen_cpu_ms_per_broadcast') >= 0, run
    assert 1.9 < run.num('window_s') < 3, run
    toggles = run.int('toggles')
    assert 30 <= toggles <= 41, run
    assert run.int('expected') == 2 * toggles, run
    assert run.int('received') == run.int('expected'), run
    assert run.int('lost') == 0 and run.int('unexpected') == 0, run
    assert run.num('broadcasts_per_s') > 10, run
    assert_latencies(run)


def test_msg_closed_loop(server):
    bench_users(server, 'msg', 4)
    run = loadgen(server.c2s_port, 'msg', '--users', 'msg', '--count', 4,
                  '--password', 'pw-%d', '--pairs', 2, '--window', 4,
                  '--duration', 2, '--server-pid', server.proc.pid)
    assert_clean(run)
    # CPU per message over the sending window (the grace is not in it).
    assert run.num('server_cpu_s') > 0, run
    assert run.num('server_cpu_ms_per_msg') > 0, run
    assert run.num('gen_cpu_ms_per_msg') > 0, run
    assert 1.9 < run.num('window_s') < 3, run
    sent = run.int('sent')
    assert sent > 100 and run.int('received') == sent, run
    for key in ('lost', 'duplicated', 'out_of_order', 'errors',
                'unexpected', 'bogus'):
        assert run.int(key) == 0, (key, run)
    assert run.num('msgs_per_s') > 50, run
    assert_latencies(run)


def test_msg_fixed_rate(server):
    bench_users(server, 'mr', 4)
    run = loadgen(server.c2s_port, 'msg', '--users', 'mr', '--count', 4,
                  '--password', 'pw-%d', '--pairs', 2, '--rate', 200,
                  '--size', 300, '--duration', 2)
    assert_clean(run)
    sent = run.int('sent')
    assert 380 <= sent <= 401 and run.int('received') == sent, run
    assert run.int('lost') == 0 and run.int('duplicated') == 0, run
    assert 150 < run.num('msgs_per_s') < 250, run
    assert_latencies(run)


BURST_CLEAN = ('lost', 'duplicated', 'out_of_order', 'errors',
               'unexpected', 'bogus', 'not_online', 'write_errors')


@pytest.mark.parametrize('shards', [1, 2])
def test_burst(server_factory, shards):
    """Pre-encrypted burst: every message delivered once and in order
    after being kept raw; 4 KiB chunks, so the kept input of each
    receiver spans several chunks and TLS records cross their edges."""
    srv = server_factory(shards=shards)
    bench_users(srv, 'bu', 8)
    run = loadgen(srv.c2s_port, 'burst', '--users', 'bu', '--count', 8,
                  '--password', 'pw-%d', '--pairs', 4, '--messages', 3000,
                  '--size', 100, '--chunk-kb', 4, '--quiet-ms', 300,
                  '--server-pid', srv.proc.pid)
    assert_clean(run)
    assert run.result['status'] == 'ok', run
    assert run.int('sent') == 12000 and run.int('delivered') == 12000, run
    for key in BURST_CLEAN:
        assert run.int(key) == 0, (key, run)
    assert run.num('msgs_per_s') > 0, run
    # 3,000 messages of over 100 bytes per receiver: many 4 KiB chunks
    assert run.int('bytes_in') > 4 * 3000 * 100, run
    assert run.int('bytes_out') > 4 * 3000 * 100, run
    # the window ends at the last byte, not after the quiet time
    assert 0 < run.num('window_s') < 5, run
    # the server's CPU time is read in clock ticks (10 ms): 300 messages
    # per pair took a window of one tick or less and could read 0
    assert run.num('server_cpu_s') > 0, run
    assert 'gen_cpu_s' in run.result and run.num('gen_cpu_s') >= 0, run
    assert run.num('gen_cpu_ms_per_msg') >= 0, run


def test_burst_loss_detected(server_factory):
    """The control: the receiver of pair 0 blocks its sender (XEP-0191),
    so the server bounces pair 0's messages instead of delivering them;
    the burst must count them lost and fail, and still see the others."""
    srv = server_factory()
    bench_users(srv, 'bl', 4)
    with rawstream.logged_in(srv, 'bl2', password='pw-2') as s:
        reply = s.iq('set', "<block xmlns='urn:xmpp:blocking'><item "
                     f"jid='bl1@{DOMAIN}'/></block>")
        assert reply.get('type') == 'result', ET.tostring(reply)
    run = loadgen(srv.c2s_port, 'burst', '--users', 'bl', '--count', 4,
                  '--password', 'pw-%d', '--pairs', 2, '--messages', 200,
                  '--quiet-ms', 300)
    assert run.status == 1, run
    assert run.result['status'] == 'failed', run
    assert run.int('sent') == 400, run
    assert run.int('lost') == 200 and run.int('delivered') == 200, run
    assert run.int('errors') == 200, run
    assert run.int('err_service-unavailable') == 200, run
    assert run.int('duplicated') == 0 and run.int('out_of_order') == 0


def test_burst_memory_bound():
    """A burst whose buffers would exceed --max-mem-mb is refused before
    connecting (usage error)."""
    run = subprocess.run(
        [str(LOADGEN_BIN), 'burst', '--port', '1', '--pairs', '1000',
         '--messages', '100000', '--max-mem-mb', '100'],
        capture_output=True, text=True, env=sanitizer_env(), timeout=30)
    assert run.returncode == 2, run.stderr
    assert 'over --max-mem-mb 100' in run.stderr, run.stderr


@pytest.mark.parametrize('shards', [1, 2])
def test_muc_fanout(server_factory, shards):
    srv = server_factory(shards=shards)
    bench_users(srv, 'room', 6)
    run = loadgen(srv.c2s_port, 'muc', '--users', 'room', '--count', 6,
                  '--password', 'pw-%d', '--rate', 50, '--duration', 2)
    assert_clean(run)
    assert run.int('joined') == 6, run
    sent = run.int('sent')
    assert 90 <= sent <= 101 and run.int('deliveries') == 6 * sent, run
    for key in ('lost', 'duplicated', 'errors', 'unexpected'):
        assert run.int(key) == 0, (key, run)
    assert_latencies(run)
    assert_latencies(run, 'join')
    # The control: with the service off every join fails.
    srv = server_factory(muc={'enabled': False})
    bench_users(srv, 'room', 2)
    run = loadgen(srv.c2s_port, 'muc', '--users', 'room', '--count', 2,
                  '--password', 'pw-%d', '--duration', 1, timeout=8)
    assert run.status != 0, run


def test_muc_cpu_windows_and_instant_room(server_factory):
    """The first join makes a room that stays locked until configured (a
    MUC client's join); loadgen takes the instant room, else every later
    join would get <item-not-found/>. With --server-pid the joins and the
    sending each have the server's CPU, and deliveries/s is the offered
    rate times the occupants."""
    # Enough deliveries (4,000) that the server's CPU over the sending is
    # several of the kernel's 10 ms ticks: with 400 it was once 0.
    srv = server_factory()
    bench_users(srv, 'cpu', 20)
    run = loadgen(srv.c2s_port, 'muc', '--users', 'cpu', '--count', 20,
                  '--password', 'pw-%d', '--rate', 100, '--duration', 2,
                  '--server-pid', srv.proc.pid)
    assert_clean(run)
    assert run.int('joined') == 20 and run.int('errors') == 0, run
    assert 0 < run.num('join_window_s') < 10, run
    assert run.num('join_server_cpu_s') >= 0, run
    assert 'server_cpu_ms_per_join' in run.result, run
    assert 0 < run.num('server_cpu_s') < 10, run
    assert run.num('deliveries_per_server_cpu_s') > 0, run
    assert run.num('server_cpu_ms_per_delivery') > 0, run
    assert 1500 < run.num('deliveries_per_s') < 2500, run  # 100/s x 20


def test_muc_refused_join_counted(server_factory):
    """A room full at 3 (muc.max_occupants: rooms start at that) refuses
    the 4th and 5th join with an error: each is counted and the next join
    goes, so the run ends (exit 1, not the global timeout)."""
    srv = server_factory(muc={'max_occupants': 3})
    bench_users(srv, 'full', 5)
    run = loadgen(srv.c2s_port, 'muc', '--users', 'full', '--count', 5,
                  '--password', 'pw-%d', '--rate', 10, '--duration', 1,
                  timeout=20)
    assert run.status == 1, run
    assert run.int('joined') == 3 and run.int('err_join') == 2, run
    # the two outside the room neither get the messages nor may send
    assert run.int('lost') > 0 and run.int('deliveries') > 0, run


def test_muc_join_larger_than_output_limit(server_factory):
    """Joining a room sends the joiner every occupant's presence in one
    go: 300 occupants are more than limits.max_output (64 KiB) at once,
    and the joiner's socket takes them in pieces instead of the stream
    ending with <policy-violation/>."""
    srv = server_factory(registration=True,
                         limits={'max_output': '64KiB'})
    run = loadgen(srv.c2s_port, 'register', '--users', 'big', '--count',
                  300, '--password', 'pw-%d')
    assert_clean(run)
    run = loadgen(srv.c2s_port, 'muc', '--users', 'big', '--count', 300,
                  '--password', 'pw-%d', '--rate', 2, '--duration', 1)
    assert_clean(run)
    assert run.int('joined') == 300 and run.int('lost') == 0, run
    assert run.int('deliveries') == 300 * run.int('sent') > 0, run


def test_mam_pages(server):
    """loadgen mam: the archive filled through the server, then pages of
    each kind; every page full, every message with an archive id."""
    bench_users(server, 'arch', 4)
    run = loadgen(server.c2s_port, 'mam', '--users', 'arch', '--count', 4,
                  '--password', 'pw-%d', '--fill', 300, '--window', 4,
                  '--queries', 5, '--page', 20)
    assert_clean(run)
    assert run.int('archived') == 300, run
    for key in ('errors', 'short_pages', 'stray', 'unexpected'):
        assert run.int(key) == 0, (key, run)
    for kind in ('first', 'last', 'middle', 'with', 'all'):
        assert_latencies(run, kind)


def test_mam_short_pages_fail(server):
    """Negative control: pages of 300 asked of a server that gives at most
    250 (XEP-0059 lets it) come back short though more matched (no
    complete='true'), and the run says so."""
    bench_users(server, 'arcs', 2)
    run = loadgen(server.c2s_port, 'mam', '--users', 'arcs', '--count', 2,
                  '--password', 'pw-%d', '--fill', 700, '--window', 8,
                  '--queries', 2, '--page', 300)
    assert run.status == 1, run
    assert run.int('short_pages') > 0 and run.int('errors') == 0, run


async def test_mam_stall_detected(server):
    """Negative control: the owner archives nothing (preferences: never),
    so no message carries an archive id; the run stops once nothing moves
    for --grace seconds and fails, instead of waiting for the timeout."""
    bench_users(server, 'arcn', 2)
    server.passwords['arcn1'] = 'pw-1'
    c = await clients.connect(server, 'arcn1', 'setup', password='pw-1')
    try:
        iq = c.make_iq_set()
        ET.SubElement(iq.xml, '{urn:xmpp:mam:2}prefs', default='never')
        await iq.send(timeout=5)
    finally:
        await clients.disconnect(c)
    run = await asyncio.to_thread(
        loadgen, server.c2s_port, 'mam', '--users', 'arcn', '--count', 2,
        '--password', 'pw-%d', '--fill', 50, '--queries', 2, '--grace', 2)
    assert run.status == 1, run
    assert run.int('stalled') == 1 and run.int('archived') == 0, run
    assert run.int('unexpected') == 50, run
    assert 'stalled while filling' in run.stderr, run


def test_global_timeout_aborts(server):
    bench_users(server, 'slow', 2)
    run = loadgen(server.c2s_port, 'msg', '--users', 'slow', '--count', 2,
                  '--password', 'pw-%d', '--duration', 30, timeout=2)
    assert run.status == 2, run
    assert run.result['status'] == 'timeout', run
    assert 'timeout' in run.stderr, run


# -- a hostile server -------------------------------------------------------

HEADER = (b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
          b"xmlns:stream='" + NS_STREAMS.encode() +
          b"' id='x' from='localhost' version='1.0'>")
# The end of loadgen's stream header.
HELLO = b"xml:lang='en'>"
PROCEED = b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
STARTTLS = (b"<stream:features><starttls xmlns='urn:ietf:params:xml:ns:"
            b"xmpp-tls'/></stream:features>")


START_TLS = object()  # a step's `send`: <proceed/>, then TLS


class ScriptedServer:
    """Answers every connection with canned replies: for each (wait_for,
    send) step it reads until `wait_for` was seen, then sends `send`
    (bytes, or a function of what was read, or START_TLS)."""

    def __init__(self, steps, tls=None):
        self.steps = steps
        self.tls = tls
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(('127.0.0.1', free_ports(1)[0]))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.stop = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        self.sock.settimeout(0.2)
        while not self.stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._talk, args=(conn,),
                             daemon=True).start()

    def _talk(self, conn):
        conn.settimeout(5)
        seen = b''
        try:
            for wait_for, send in self.steps:
                while wait_for not in seen:
                    data = conn.recv(4096)
                    if not data:
                        return
                    seen += data
                head, seen = seen.split(wait_for, 1)
                if send is START_TLS:
                    conn.sendall(PROCEED)
                    conn = self.tls.wrap_socket(conn, server_side=True)
                    continue
                if callable(send):
                    send = send(head + wait_for)
                conn.sendall(send)
            while conn.recv(4096):
                pass
        except OSError:
            pass
        finally:
            conn.close()

    def close(self):
        self.stop = True
        self.thread.join()
        self.sock.close()


HOSTILE = [
    ('no-starttls_features', [(HELLO,
                               HEADER + b'<stream:features/>')]),
    ('xml-doctype_features', [(HELLO,
                               b'<!DOCTYPE x [<!ENTITY a "aaaa">]>' +
                               HEADER)]),
    ('xml-too-deep_features', [(HELLO,
                                HEADER + b'<a>' * 100)]),
    ('xml-error_features', [(HELLO,
                             b'HTTP/1.1 400 Bad Request\r\n\r\n')]),
    ('bad-stream-header_features', [(HELLO, b'<foo>')]),
    ('stream-error_host-unknown_features', [
        (HELLO,
         HEADER + b"<stream:error><host-unknown xmlns='urn:ietf:params:"
         b"xml:ns:xmpp-streams'/></stream:error></stream:stream>")]),
    # Plaintext after <proceed/> would be injected into the TLS stream.
    ('data-after-restart_tls-handshake', [
        (HELLO, HEADER + STARTTLS),
        (b'<starttls', b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
                       b"<stream:features/>")]),
    ('starttls-refused_starttls', [
        (HELLO, HEADER + STARTTLS),
        (b'<starttls', b"<failure xmlns='urn:ietf:params:xml:ns:"
                       b"xmpp-tls'/>")]),
]


@pytest.mark.parametrize('reason,steps', HOSTILE,
                         ids=[h[0] for h in HOSTILE])
def test_hostile_server_fails_cleanly(reason, steps):
    fake = ScriptedServer(steps)
    try:
        run = loadgen(fake.port, 'login', '--count', 1, '--duration', 0.3,
                      '--concurrency', 1, '--src-range', 'none')
    finally:
        fake.close()
    assert run.status == 1, run
    assert run.int('ok') == 0 and run.int('failed') > 0, run
    assert run.int(f'fail_{reason}') == run.int('failed'), run


# -- a hostile server behind TLS: SCRAM and SASL ------------------------------

NS_SASL = 'urn:ietf:params:xml:ns:xmpp-sasl'
SCRAM_FEATURES = (b"<stream:features><mechanisms xmlns='" + NS_SASL.encode()
                  + b"'><mechanism>SCRAM-SHA-256</mechanism></mechanisms>"
                  b"</stream:features>")


@pytest.fixture(scope='module')
def tls_context(tmp_path_factory):
    """A server-side TLS context with a fresh self-signed certificate."""
    d = tmp_path_factory.mktemp('tls')
    cert, key = d / 'cert.pem', d / 'key.pem'
    subprocess.run(['openssl', 'req', '-x509', '-newkey', 'ec',
                    '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
                    '-keyout', str(key), '-out', str(cert), '-days', '1',
                    '-subj', '/CN=localhost'], check=True,
                   capture_output=True, timeout=30)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return ctx


def sasl(name, payload):
    return (f"<{name} xmlns='{NS_SASL}'>".encode() + payload +
            f'</{name}>'.encode())


def client_nonce(auth):
    """The r= of the client-first-message inside <auth>...</auth>."""
    b64 = auth.rsplit(b'>', 2)[-2].split(b'<')[0]
    first = base64.b64decode(b64).decode()
    return dict(kv.split('=', 1) for kv in first[3:].split(','))['r']


def challenge(fmt):
    """A server-first-message from a format with {r} (client nonce)."""
    return lambda auth: sasl('challenge', base64.b64encode(
        fmt.format(r=client_nonce(auth)).encode()))


SCRAM_CASES = [
    ('scram-malformed-challenge_sasl', challenge('x'), None, None),
    ('sasl-bad-base64_sasl', lambda a: sasl('challenge', b'!!!!'), None,
     None),
    ('scram-bad-nonce_sasl', challenge('r=someone-else,s=c2FsdA==,i=4096'),
     None, None),
    ('scram-bad-iteration-count_sasl', challenge('r={r}x,s=c2FsdA==,i=0'),
     None, None),
    ('scram-bad-iteration-count_sasl',
     challenge('r={r}x,s=c2FsdA==,i=99999999999'), None, None),
    ('scram-malformed-challenge_sasl', challenge('r={r}x,s=c2F*dA==,i=4096'),
     None, None),
    ('scram-malformed-challenge_sasl', challenge('r={r}x,i=4096'), None,
     None),
    ('scram-mandatory-extension_sasl',
     challenge('m=ext,r={r}x,s=c2FsdA==,i=4096'), None, None),
    # A proper challenge, then a forged server signature.
    ('scram-bad-server-signature_sasl',
     challenge('r={r}x,s=c2FsdA==,i=4096'), b'</response>',
     sasl('success', base64.b64encode(b'v=' + base64.b64encode(
         b'\0' * 32)))),
    ('sasl_not-authorized_sasl', lambda a: sasl(
        'failure', b'<not-authorized/>'), None, None),
]


@pytest.mark.parametrize('reason,first,wait2,second', SCRAM_CASES,
                         ids=[f'{c[0]}-{i}' for i, c in
                              enumerate(SCRAM_CASES)])
def test_hostile_scram_fails_cleanly(tls_context, reason, first, wait2,
                                     second):
    steps = [(HELLO, HEADER + STARTTLS), (b'<starttls', START_TLS),
             (HELLO, HEADER + SCRAM_FEATURES), (b'</auth>', first)]
    if wait2:
        steps.append((wait2, second))
    fake = ScriptedServer(steps, tls=tls_context)
    try:
        run = loadgen(fake.port, 'login', '--count', 1, '--duration', 0.3,
                      '--concurrency', 1, '--src-range', 'none')
    finally:
        fake.close()
    assert run.status == 1, run
    assert run.int('ok') == 0 and run.int('failed') > 0, run
    assert run.int(f'fail_{reason}') == run.int('failed'), run


# -- certificate checks (the server key is decoded as pubkey.c makes it) ----

def make_ca_and_leaf(d, name):
    """A P-256 CA and a leaf for CN=localhost signed by it, in d."""
    ca_key, ca = d / f'{name}-ca.key', d / f'{name}-ca.pem'
    key, csr, leaf = d / f'{name}.key', d / f'{name}.csr', d / f'{name}.pem'
    ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes']
    for cmd in (
            ['openssl', 'req', '-x509', *ec, '-keyout', ca_key, '-out', ca,
             '-days', '1', '-subj', f'/CN={name} CA'],
            ['openssl', 'req', *ec, '-keyout', key, '-out', csr,
             '-subj', '/CN=localhost'],
            ['openssl', 'x509', '-req', '-in', csr, '-CA', ca, '-CAkey',
             ca_key, '-CAcreateserial', '-out', leaf, '-days', '1']):
        subprocess.run([str(c) for c in cmd], check=True,
                       capture_output=True, timeout=30)
    return ca, leaf, key


def test_certificate_signatures_still_checked(tmp_path):
    """The server's certificate verifies against its CA and fails against
    another: the EC keys decoded for the handshake are the real ones."""
    ca, leaf, key = make_ca_and_leaf(tmp_path, 'good')
    other_ca, _, _ = make_ca_and_leaf(tmp_path, 'other')
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(leaf, key)
    steps = [(HELLO, HEADER + STARTTLS), (b'<starttls', START_TLS),
             (HELLO, HEADER + SCRAM_FEATURES),
             (b'</auth>', sasl('failure', b'<not-authorized/>'))]
    fake = ScriptedServer(steps, tls=ctx)
    try:
        runs = {c: loadgen(fake.port, 'login', '--count', 1, '--duration',
                           0.3, '--concurrency', 1, '--src-range', 'none',
                           '--tls-verify', 'on', '--ca-file', c)
                for c in (ca, other_ca)}
    finally:
        fake.close()
    good, bad = runs[ca], runs[other_ca]
    # Past TLS with the right CA: SASL is what fails.
    assert good.int('failed') > 0, good
    assert good.int('fail_sasl_not-authorized_sasl') == good.int('failed')
    assert bad.int('failed') > 0, bad
    assert bad.int('fail_tls-verify_tls-handshake') == bad.int('failed')


# -- bench/compare ----------------------------------------------------------

COMPARE = REPO_ROOT / 'bench' / 'compare'
SIZES_BIN = Path(os.environ.get('SIZES_BIN') or
                 LOADGEN_BIN.parent / 'sizes')
if not SIZES_BIN.is_absolute():
    SIZES_BIN = REPO_ROOT / SIZES_BIN


def md_tables(text):
    """{heading: rows} for every '### heading' followed by a table; each
    row a list of cells."""
    tables, heading, rows = {}, None, None
    for line in text.splitlines():
        if line.startswith('### '):
            heading, rows = line[4:], None
        elif line.startswith('|') and heading:
            if rows is None:
                rows = tables.setdefault(heading, [])
            assert line.endswith('|'), line
            rows.append([c.strip() for c in line.strip('|').split('|')])
        else:
            rows = None
    return tables


def cell(rows, label, column):
    head = rows[0]
    for r in rows[2:]:
        if r[0] == label:
            return r[head.index(column)]
    raise AssertionError(f'no row {label!r} in {rows}')


def test_compare_quick_stanzad_only(tmp_path):
    """bench/compare --quick --servers stanzad writes a well-formed report:
    every table rectangular with a separator row, the stanzad numbers
    positive, the targets listed, the sizes included, no machine path."""
    out = tmp_path / 'BENCH.md'
    out.write_text('# Benchmarks\n\nkept header\n')
    assert SIZES_BIN.exists(), f'{SIZES_BIN} not built'
    proc = subprocess.run(
        [str(COMPARE), '--quick', '--servers', 'stanzad', '--duration', '1',
         '--stanzad', str(STANZAD_BIN), '--loadgen', str(LOADGEN_BIN),
         '--sizes', str(SIZES_BIN), '--output', str(out),
         '--max-time', '80', '--login-threads', '2'],
        capture_output=True, text=True, timeout=RUN_TIMEOUT,
        env=sanitizer_env(), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    assert text.startswith('# Benchmarks\n\nkept header\n'), text[:200]
    assert text.count('<!-- bench/compare: begin -->') == 1, text
    assert '/tmp' not in text and str(REPO_ROOT) not in text, text
    # The peers keep no archive: neither does stanzad, and it says so.
    assert '- message archive (XEP-0313): off on every server' in text
    tables = md_tables(text)
    for heading in ('Targets (issue 5)', 'Idle authenticated TLS sessions',
                    '1:1 messages over TLS, closed loop (peak)',
                    'Logins', 'Presence fan-out', 'stanzad: 1 shard vs 2'):
        rows = tables.get(heading)
        assert rows and len(rows) >= 3, (heading, tables.keys())
        assert all(len(r) == len(rows[0]) for r in rows), rows
        assert all(re.fullmatch(r':?-{3,}:?', c) for c in rows[1]), rows
    num = lambda s: float(s.replace(',', '').rstrip('x'))  # noqa: E731
    for heading, label in (
            ('Idle authenticated TLS sessions',
             'RSS per session (KiB, lower is better)'),
            ('1:1 messages over TLS, closed loop (peak)',
             'messages/s, closed loop'),
            ('Logins', 'logins/s'),
            ('Presence fan-out', 'broadcasts/s delivered')):
        assert num(cell(tables[heading], label, 'stanzad')) > 0, heading
        # the whole table (lost, duplicated, errors) and what the run
        # printed say why, when the generator failed
        assert cell(tables[heading], 'loadgen exit status',
                    'stanzad') == '0', \
            '\n'.join(' | '.join(r) for r in tables[heading]) + \
            '\n' + proc.stdout[-3000:] + proc.stderr[-3000:]
    assert cell(tables['Idle authenticated TLS sessions'], 'sessions up',
                'stanzad') == '200'
    # the server's CPU per operation, from loadgen --server-pid
    for heading, label in (
            ('1:1 messages over TLS, closed loop (peak)',
             'server CPU per message (µs, lower is better)'),
            ('1:1 messages over TLS, closed loop (peak)',
             'messages per server CPU-second'),
            ('Logins', 'server CPU per login (ms, lower is better)'),
            ('Logins', 'logins per server CPU-second'),
            ('Logins', 'generator CPU per login (ms)'),
            ('Idle authenticated TLS sessions',
             'generator CPU per session set-up (ms)')):
        assert num(cell(tables[heading], label, 'stanzad')) > 0, \
            (heading, label, tables[heading])
    assert cell(tables['Logins'], 'generator threads', 'stanzad') == '2'
    assert re.search(r'^\[stanzad\] \S*loadgen login .*--threads 2 --warmup '
                     r'--server-pid \d+$', text, re.M), text
    assert not re.search(r'^\[stanzad\] \S*loadgen (register|roster) '
                         r'.*--server-pid', text, re.M), text
    shard = tables['stanzad: 1 shard vs 2']
    assert num(cell(shard, 'logins/s', '2 / 1')) > 0, shard
    assert num(cell(shard, 'server CPU per login (ms)', 'shards: 2')) > 0
    # the burst: one run per shard count with --quick, every message
    # delivered, its median the target's row
    for col in ('shards: 1', 'shards: 2'):
        assert num(cell(shard, 'burst messages/s, run 1', col)) > 0, shard
        assert cell(shard, 'burst runs with every message delivered',
                    col) == '1 of 1', shard
        assert num(cell(shard, 'burst: server CPU per message (µs, '
                        'median)', col)) > 0, shard
        cell(shard, 'burst: generator CPU in the window (ms, median)', col)
    assert num(cell(shard, 'burst messages/s, median', '2 / 1')) > 0
    target = cell(tables['Targets (issue 5)'],
                  'messages/s (burst, median): 2 shards ≥ 1.7x 1 shard',
                  'measured')
    assert num(target) > 0, target
    assert re.search(r'^\[stanzad-shards2\] \S*loadgen burst .*--pairs 20 '
                     r'--messages 500 .*--server-pid \d+$', text, re.M), text
    # a sanitizer build of sizes has no glibc heap statistics
    assert 'struct c2s' in text and ('OpenSSL server SSL object' in text or
                                     'heap: not measurable' in text), text
    assert re.search(r'^\[stanzad\] \S*loadgen msg .*--window 4', text,
                     re.M), text


def test_compare_muc_section(tmp_path):
    """bench/compare --scenarios muc writes its own marked section and
    leaves the issue-5 section (and the text around) alone: targets, one
    table per rate with stanzad's numbers, the commands; --append keeps
    the earlier run."""
    out = tmp_path / 'BENCH.md'
    main = ('# Benchmarks\n\nkept header\n\n<!-- bench/compare: begin -->'
            '\nissue 5 tables\n<!-- bench/compare: end -->\n\nkept tail\n')
    out.write_text(main)
    cmd = [str(COMPARE), '--quick', '--servers', 'stanzad', '--scenarios',
           'muc', '--occupants', '6', '--muc-rates', '20,40',
           '--duration', '1', '--stanzad', str(STANZAD_BIN), '--loadgen',
           str(LOADGEN_BIN), '--output', str(out), '--max-time', '80']
    for extra in ([], ['--append']):
        proc = subprocess.run(cmd + extra, capture_output=True, text=True,
                              timeout=RUN_TIMEOUT, env=sanitizer_env(),
                              cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    assert text.startswith(main), text[:300]
    assert text.count('<!-- bench/compare muc: begin -->') == 1, text
    assert text.count('<!-- bench/compare muc: end -->') == 1, text
    assert text.count('## Group chat (issue 8): run of') == 2, text
    assert '/tmp' not in text and str(REPO_ROOT) not in text, text
    assert 'load average at the start: ' in text, text
    tables = md_tables(text)
    tg = tables['Targets (issue 8)']
    assert len(tg) >= 5 and all(len(r) == 3 for r in tg), tg
    assert 'delivery p99 < 50 ms' in tg[2][0], tg
    num = lambda s: float(s.replace(',', '').split()[0])  # noqa: E731
    for rate in (20, 40):
        rows = tables[f'6 occupants, {rate} msgs/s to the room']
        assert all(len(r) == len(rows[0]) for r in rows), rows
        assert cell(rows, 'occupants joined', 'stanzad') == '6', rows
        assert cell(rows, 'loadgen exit status', 'stanzad') == '0', \
            proc.stdout[-2000:] + proc.stderr[-2000:]
        assert cell(rows, 'lost', 'stanzad') == '0', rows
        assert num(cell(rows, 'deliveries/s while sending',
                        'stanzad')) > rate * 6 * 0.6, rows
        assert num(cell(rows, 'delivery latency p99 (ms)', 'stanzad')) > 0
        assert re.search(rf'^\[stanzad\] \S*loadgen muc .*--count 6 '
                         rf'--rate {rate} .*--server-pid \d+$', text,
                         re.M), text
