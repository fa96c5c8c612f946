#!/bin/bash
# ejabberd.sh - run Debian's ejabberd 23.01 as a private benchmark peer.
#
# Usage: ejabberd.sh start DIR PORT DOMAIN | stop DIR | pid DIR
#
# Everything the instance uses (ejabberd.yml, ejabberdctl.cfg, certificate,
# Mnesia spool, logs, pid file, Erlang cookie) lives in DIR; nothing under
# /etc is read or written and the packaged system service is never
# touched. c2s listens on 127.0.0.1:PORT only, s2s and HTTP are off, TLS
# is required, passwords are stored as SCRAM-SHA-256, in-band
# registration is open and unthrottled, and no shaper applies.
# bench/peers/README.md explains each setting.
#
# ejabberdctl run by root would `su` to the ejabberd user, which resets
# the open-files limit to 1024; it is run as that user with setpriv
# instead, after the limit is raised, and with a clean environment so no
# EJABBERD_* / CONFIG_DIR variable of the caller can point it elsewhere.
# The Erlang node name and cookie are random per DIR (kept in DIR, since
# the Mnesia schema is bound to the node name), so the instance never
# talks to another Erlang node.
set -euo pipefail

EJ_USER=ejabberd
NOFILE=20000

PEER=ejabberd
# shellcheck source=bench/peers/common.sh
. "$(dirname "$0")/common.sh"

rand_hex() { od -An -N"$1" -tx1 /dev/urandom | tr -d ' \n'; }

# Node name and cookie: made once per DIR and kept.
make_identity() {
	local dir=$1
	[ -s "$dir/node" ] ||
		echo "benchpeer-$(rand_hex 4)@localhost" >"$dir/node"
	# HOME is DIR for every VM and ctl client, so Erlang reads the
	# cookie from here (and it never shows in a command line)
	if [ ! -s "$dir/.erlang.cookie" ]; then
		(umask 077 && rand_hex 16 >"$dir/.erlang.cookie")
	fi
}

# Sourced by ejabberdctl (--config-dir DIR makes it DIR/ejabberdctl.cfg).
write_ctl_config() {
	local dir=$1
	cat >"$dir/ejabberdctl.cfg" <<EOF
# Written by bench/peers/ejabberd.sh; rewritten on every start.
ERLANG_NODE=$(cat "$dir/node")
ERL_OPTIONS="-env ERL_CRASH_DUMP_BYTES 0"
# Erlang distribution and epmd on loopback only.
INET_DIST_INTERFACE=127.0.0.1
ERL_EPMD_ADDRESS=127.0.0.1
# More Erlang ports (sockets) than the benchmark's 20,000 connections.
ERL_MAX_PORTS=65536
EJABBERD_PID_PATH=$dir/ejabberd.pid
EJABBERD_BYPASS_WARNINGS=true
EOF
	chmod 600 "$dir/ejabberdctl.cfg"
}

write_config() {
	local dir=$1 port=$2 domain=$3
	cat >"$dir/ejabberd.yml" <<EOF
# Written by bench/peers/ejabberd.sh; rewritten on every start.
# Private benchmark instance: all state in $dir.
hosts:
  - "$domain"
loglevel: warning
log_rotate_count: 0
certfiles:
  - "$dir/certs/$domain.crt"
  - "$dir/certs/$domain.key"

# c2s on loopback only, TLS required; no s2s, no HTTP listener.
listen:
  -
    port: $port
    ip: "127.0.0.1"
    module: ejabberd_c2s
    starttls_required: true
    # stanzad's max_stanza_size default (256 KiB)
    max_stanza_size: 262144
    shaper: none
    access: c2s
    max_fsm_queue: 100000
    # stanzad listens with a backlog of 1024
    backlog: 1024
max_fsm_queue: 100000
s2s_access: none

# SCRAM with SHA-256 keys in storage (no plaintext passwords).
auth_method: internal
auth_password_format: scram
auth_scram_hash: sha256
disable_sasl_mechanisms:
  - "digest-md5"
  - "X-OAUTH2"

default_db: mnesia

# In-band registration without the per-IP timeout between registrations.
registration_timeout: infinity

acl:
  local:
    user_regexp: ""
access_rules:
  c2s:
    allow: all
  register:
    allow: all
api_permissions:
  "console commands":
    from:
      - ejabberd_ctl
    who: all
    what: "*"

# No traffic shaping anywhere. Sessions per account and offline messages
# per account capped like stanzad (64 resources, max_offline_messages).
shaper: {}
shaper_rules:
  c2s_shaper: none
  s2s_shaper: none
  max_user_sessions: 64
  max_user_offline_messages: 1000

# The feature set stanzad has: roster, presence, offline storage, disco,
# carbons, blocking, ping, private XML, vCard, time, version, last
# activity. No MAM, no stream management, no PEP, no fail2ban.
modules:
  mod_roster:
    versioning: false
  mod_offline:
    access_max_user_messages: max_user_offline_messages
  mod_register:
    access: register
    ip_access: all
    captcha_protected: false
    password_strength: 0
    welcome_message:
      subject: ""
      body: ""
  mod_disco: {}
  mod_carboncopy: {}
  mod_privacy: {}
  mod_blocking: {}
  mod_ping: {}
  mod_private: {}
  mod_vcard:
    search: false
  mod_time: {}
  mod_version:
    show_os: false
  mod_last: {}
  # Group chat (XEP-0045) on conference.DOMAIN, like stanzad's muc
  # section: anyone may create a room; a new room takes 1000 occupants
  # and no room more than 5000 (stanzad's room default and its
  # max_occupants; ejabberd's default is 200 for both);
  # presence is broadcast however full the room (max_users_presence,
  # default 1000, would stop it past that and make joins cheaper); 50
  # messages kept for joiners (stanzad's max_history; default 20); no
  # shapers and no minimum interval between messages or presences; no
  # MAM.
  mod_muc:
    host: "conference.$domain"
    access: all
    access_create: all
    access_persistent: all
    max_users: 5000
    max_users_admin_threshold: 5
    max_users_presence: 100000
    max_user_conferences: 100000
    min_message_interval: 0
    min_presence_interval: 0
    room_shaper: none
    user_message_shaper: none
    user_presence_shaper: none
    history_size: 50
    default_room_options:
      max_users: 1000
      public: true
      persistent: false
      mam: false
EOF
}

# ejabberdctl as the ejabberd user, in a clean environment, pointed at DIR.
ctl() {
	local dir=$1
	shift
	env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME="$dir" LANG=C.UTF-8 \
		setpriv --reuid="$EJ_USER" --regid="$EJ_USER" --init-groups \
		ejabberdctl --config-dir "$dir" --config "$dir/ejabberd.yml" \
		--ctl-config "$dir/ejabberdctl.cfg" --spool "$dir/db" \
		--logs "$dir/logs" "$@"
}

# PID of the running beam.smp, or nothing (and status 1).
server_pid() {
	local dir=$1 pid
	[ -s "$dir/ejabberd.pid" ] && [ -s "$dir/node" ] || return 1
	pid=$(tr -dc 0-9 <"$dir/ejabberd.pid")
	[ -n "$pid" ] && [ -d "/proc/$pid" ] || return 1
	# a recycled pid must not be mistaken for the server: it must be
	# the beam of this DIR's node
	tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$(cat "$dir/node")" ||
		return 1
	echo "$pid"
}

# Up to 60 s for the listener; fails early if the node's VM is gone (a
# bad config makes ejabberd halt within a few seconds).
wait_listening() {
	local dir=$1 port=$2 node i
	node=$(cat "$dir/node")
	for i in $(seq 1 300); do
		port_in_use "$port" && return 0
		# the VM's command line holds "-sname NODE"
		if [ "$i" -gt 10 ] &&
			! pgrep -f -- "name $node" >/dev/null; then
			return 1
		fi
		sleep 0.2
	done
	return 1
}

cmd_start() {
	check_start_args "$@"
	local dir port=$2 domain=$3
	dir=$(abs_dir "$1")
	[ "$(id -u)" -eq 0 ] || die "must be run as root (to become $EJ_USER)"
	command -v ejabberdctl >/dev/null || die "ejabberd is not installed"
	rm -f "$dir/ejabberd.pid"
	mkdir -p "$dir/db" "$dir/logs"
	make_cert "$dir" "$domain"
	make_identity "$dir"
	write_ctl_config "$dir"
	write_config "$dir" "$port" "$domain"
	# resolver config for the VM (ERL_INETRC is CONFIG_DIR/inetrc)
	echo '{lookup, [file, native]}.' >"$dir/inetrc"
	chown -R "$EJ_USER:$EJ_USER" "$dir"
	chmod 750 "$dir"
	chmod 400 "$dir/.erlang.cookie"
	ulimit -n "$NOFILE"
	ctl "$dir" start >>"$dir/logs/ejabberdctl.out" 2>&1 ||
		die "ejabberdctl start failed; see $dir/logs"
	if ! wait_listening "$dir" "$port"; then
		cmd_stop "$dir" # a VM that came up half-way must not linger
		die "not listening on $port; see $dir/logs"
	fi
	server_pid "$dir" >/dev/null || die "no pid after start"
}

cmd_stop() {
	[ $# -eq 1 ] || usage
	local dir pid
	# nothing to stop without a state directory
	[ -d "$1" ] || return 0
	dir=$(existing_dir "$1")
	pid=$(server_pid "$dir") || { rm -f "$dir/ejabberd.pid"; return 0; }
	ctl "$dir" stop >>"$dir/logs/ejabberdctl.out" 2>&1 || true
	# waits for the node to go, then stops epmd if no node is left
	ctl "$dir" stopped >>"$dir/logs/ejabberdctl.out" 2>&1 || true
	wait_gone "$pid"
	rm -f "$dir/ejabberd.pid"
}

peer_main "$@"
