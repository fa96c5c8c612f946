"""limits.c2s_rate / c2s_burst: an authenticated client that sends faster
than its rate is slowed down (the server stops reading it until its
bucket refills), never cut off, and nothing it sent is lost."""

import re

import rawstream


def metric(srv, name):
    m = re.search(rf'^{name} (\d+)', srv.ctl('metrics').stdout, re.M)
    assert m, f'no {name} in stanzactl metrics'
    return int(m.group(1))


def burst(srv, n):
    """fast sends n ~1 KiB messages to reader in one write: the seconds
    until the last arrived, and the ids in arrival order."""
    srv.add_user('fast', 'pw-fast')
    srv.add_user('reader', 'pw-reader')
    with rawstream.logged_in(srv, 'reader') as r, \
            rawstream.logged_in(srv, 'fast') as f:
        elapsed, got = rawstream.burst_to_reader(f, r, n)
        # The sender was slowed down, not cut off.
        assert f.iq('get', "<ping xmlns='urn:xmpp:ping'/>",
                    to='localhost').get('type') == 'result'
        return elapsed, got


def test_fast_client_is_slowed_down_not_dropped(server_factory):
    srv = server_factory(limits={'c2s_rate': '128KiB',
                                 'c2s_burst': '32KiB'})
    n = 288  # ~300 KiB: the burst, then ~2 s at 128 KiB/s
    elapsed, got = burst(srv, n)
    assert got == [f'm{i}' for i in range(n)]
    assert elapsed >= 1.5, f'{elapsed:.2f} s: the rate was not applied'
    assert metric(srv, 'stanzad_rate_limited_total') > 0


def test_rate_zero_turns_the_limit_off(server_factory):
    srv = server_factory(limits={'c2s_rate': 0})
    n = 288
    elapsed, got = burst(srv, n)
    assert got == [f'm{i}' for i in range(n)]
    assert metric(srv, 'stanzad_rate_limited_total') == 0
