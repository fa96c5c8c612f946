"""limits.max_output: output queued for a client that does not read is
bounded (the client is dropped with a stream error), but a client that
reads is never dropped because others sent it a burst faster than one
loop iteration of the server hands output to the socket."""

import time

import rawstream

# Input is not rate-limited here: these tests are about output.
LIMITS = {'max_output': '64KiB', 'c2s_rate': 0}
BODY = 'x' * 1000


def burst(to, n, tag):
    return ''.join(f"<message to='{to}' type='chat' id='{tag}{i}'>"
                   f"<body>{tag}{i} {BODY}</body></message>"
                   for i in range(n))


def test_reading_recipient_survives_a_burst(server_factory):
    srv = server_factory(limits=LIMITS)
    srv.add_user('fast', 'pw-fast')
    srv.add_user('reader', 'pw-reader')
    n = 600  # ~600 KiB in one write: many times the limit
    with rawstream.logged_in(srv, 'reader') as r, \
            rawstream.logged_in(srv, 'fast') as f:
        _, got = rawstream.burst_to_reader(f, r, n, BODY)
        assert got == [f'm{i}' for i in range(n)]
        # The sender is fine too.
        assert f.iq('get', "<ping xmlns='urn:xmpp:ping'/>",
                    to='localhost').get('type') == 'result'


def c2s_sessions(srv):
    for line in srv.ctl('status').stdout.splitlines():
        if line.startswith('c2s_sessions '):
            return int(line.split()[1])
    raise AssertionError('no c2s_sessions in stanzactl status')


def test_recipient_that_does_not_read_is_dropped(server_factory):
    srv = server_factory(limits=LIMITS)
    srv.add_user('fast', 'pw-fast')
    srv.add_user('stuck', 'pw-stuck')
    with rawstream.logged_in(srv, 'stuck') as s, \
            rawstream.logged_in(srv, 'fast') as f:
        assert c2s_sessions(srv) == 2
        # Bursts until the kernel's socket buffers and then the server's
        # queue (64 KiB) are full: the session that reads nothing goes.
        deadline = time.monotonic() + 30
        sent = 0
        while c2s_sessions(srv) == 2:
            assert time.monotonic() < deadline, \
                f'{sent} messages sent, the stuck session is still there'
            f.send(burst(s.jid, 256, f'b{sent}-'))
            sent += 256
        # The sender is not affected.
        assert f.iq('get', "<ping xmlns='urn:xmpp:ping'/>",
                    to='localhost').get('type') == 'result'
        assert c2s_sessions(srv) == 1
