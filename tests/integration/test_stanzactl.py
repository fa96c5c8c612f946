"""stanzactl user management against a running (and a stopped) server:
add (password on stdin or as an argument), list, passwd, del; changes take
effect for logins at once."""

import xml.etree.ElementTree as ET

import pytest

import clients
from conftest import USERS
from rawstream import NS_SASL, RawStream, q

MECHS = ['PLAIN', 'SCRAM-SHA-1', 'SCRAM-SHA-256', 'SCRAM-SHA-256-PLUS']


def can_login(server, user, password, mech='PLAIN'):
    """True on SASL success, False on <not-authorized/>."""
    with RawStream(server.c2s_port) as stream:
        stream.secure()
        if mech == 'PLAIN':
            reply = stream.auth_plain(user, password)
        else:
            cb = 'tls-exporter' if mech.endswith('-PLUS') else None
            reply = stream.auth_scram(mech, user, password, cb_type=cb)
        if reply.tag == q(NS_SASL, 'success'):
            return True
        assert reply.tag == q(NS_SASL, 'failure'), ET.tostring(reply)
        assert reply.find(q(NS_SASL, 'not-authorized')) is not None, \
            ET.tostring(reply)
        return False


def list_output(server):
    out = server.ctl('user', 'list', 'localhost').stdout
    return [line.strip() for line in out.splitlines() if line.strip()]


def listed(server):
    """The usernames listed (tolerating full JIDs in the output, whose
    format test_list checks on its own)."""
    return sorted(line.removesuffix('@localhost')
                  for line in list_output(server))


def test_list(server):
    """One username (the local part, not the JID) per line."""
    assert sorted(list_output(server)) == sorted(USERS)


@pytest.mark.parametrize('mech', MECHS)
def test_add_on_stdin_logs_in_at_once(server, mech):
    password = 'p\u00e4ssw\u00f6rd with spaces'
    server.ctl('user', 'add', 'dave@localhost', stdin=password + '\n')
    assert 'dave' in listed(server)
    assert can_login(server, 'dave', password, mech)
    assert not can_login(server, 'dave', 'p\u00e4ssw\u00f6rd', mech)


async def test_add_as_argument_then_slixmpp(server):
    server.ctl('user', 'add', 'erin@localhost', 'erin-pw')
    server.passwords['erin'] = 'erin-pw'
    async with clients.connected(server, 'erin', 'alice') as (erin, alice):
        await clients.round_trip(erin, alice)


def test_add_existing_fails(server):
    res = server.ctl('user', 'add', 'alice@localhost', 'other',
                     check=False)
    assert res.returncode != 0
    assert can_login(server, 'alice', server.passwords['alice'])
    assert not can_login(server, 'alice', 'other')


@pytest.mark.parametrize('jid', ['frank@nosuch.example', 'a b@localhost',
                                 '@localhost'])
def test_add_invalid_fails(server, jid):
    res = server.ctl('user', 'add', jid, 'pw', check=False)
    assert res.returncode != 0
    assert listed(server) == sorted(USERS)


def test_add_normalises_username(server):
    server.ctl('user', 'add', 'Gina@LocalHost', 'gina-pw')
    assert 'gina' in listed(server)
    assert can_login(server, 'gina', 'gina-pw', 'SCRAM-SHA-256')


@pytest.mark.parametrize('mech', MECHS)
def test_delete(server, mech):
    assert can_login(server, 'bob', server.passwords['bob'], mech)
    server.ctl('user', 'del', 'bob@localhost')
    assert 'bob' not in listed(server)
    assert not can_login(server, 'bob', server.passwords['bob'], mech)
    res = server.ctl('user', 'del', 'bob@localhost', check=False)
    assert res.returncode != 0


@pytest.mark.parametrize('form', ['stdin', 'argument'])
@pytest.mark.parametrize('mech', MECHS)
def test_passwd(server, form, mech):
    if form == 'stdin':
        server.ctl('user', 'passwd', 'carol@localhost', stdin='new-pw\n')
    else:
        server.ctl('user', 'passwd', 'carol@localhost', 'new-pw')
    assert can_login(server, 'carol', 'new-pw', mech)
    assert not can_login(server, 'carol', server.passwords['carol'], mech)


def test_passwd_unknown_user_fails(server):
    res = server.ctl('user', 'passwd', 'nobody@localhost', 'pw', check=False)
    assert res.returncode != 0
    assert listed(server) == sorted(USERS)


def test_changes_while_stopped(server):
    server.stop()
    assert not server.problems, server.problems
    server.ctl('user', 'add', 'hank@localhost', 'hank-pw')
    server.ctl('user', 'del', 'alice@localhost')
    server.start()
    assert can_login(server, 'hank', 'hank-pw', 'SCRAM-SHA-1')
    assert not can_login(server, 'alice', server.passwords['alice'])
