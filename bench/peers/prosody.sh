#!/bin/bash
# prosody.sh - run Debian's Prosody 0.12 as a private benchmark peer.
#
# Usage: prosody.sh start DIR PORT DOMAIN | stop DIR | pid DIR
#
# Everything the instance uses (config, certificate, data, log, pid file)
# lives in DIR; nothing under /etc is read or written and the packaged
# system service is never touched. c2s listens on 127.0.0.1:PORT only,
# s2s and HTTP are off, TLS is required, passwords are stored hashed
# (SCRAM), in-band registration is open and unthrottled, and no rate
# limit applies. bench/peers/README.md explains each setting.
#
# Prosody refuses to run as root, so it is started through prosodyctl,
# which drops to the prosody user; DIR is therefore owned by that user.
set -euo pipefail

PROSODY_USER=prosody
NOFILE=20000

PEER=prosody
# shellcheck source=bench/peers/common.sh
. "$(dirname "$0")/common.sh"

write_config() {
	local dir=$1 port=$2 domain=$3
	local ITERATIONS=${SCRAM_ITERATIONS:-10000}
	[[ "$ITERATIONS" =~ ^[0-9]+$ ]] ||
		die "bad SCRAM_ITERATIONS: $ITERATIONS"
	cat >"$dir/prosody.cfg.lua" <<EOF
-- Written by bench/peers/prosody.sh; rewritten on every start.
-- Private benchmark instance: all state in $dir.
pidfile = "$dir/prosody.pid"
data_path = "$dir/data"
daemonize = true
prosody_user = "$PROSODY_USER"
prosody_group = "$PROSODY_USER"
prosodyctl_service_warnings = false
admins = { }

-- Logging: warnings and errors only, into the state directory.
log = { warn = "$dir/prosody.log" }

-- Network: c2s on loopback only; no s2s, no direct TLS, no HTTP.
network_backend = "epoll"
-- stanzad listens with a backlog of 1024
network_settings = { tcp_backlog = 1024 }
interfaces = { "127.0.0.1" }
c2s_interfaces = { "127.0.0.1" }
c2s_ports = { $port }
c2s_direct_tls_ports = { }
legacy_ssl_ports = { }
s2s_ports = { }
modules_disabled = { "s2s", "s2s_auth_certs", "http" }

-- TLS is mandatory before authentication.
c2s_require_encryption = true
s2s_require_encryption = true
ssl = {
	certificate = "$dir/certs/$domain.crt";
	key = "$dir/certs/$domain.key";
}

-- SCRAM: passwords stored as salted SCRAM-SHA-1 keys, SCRAM_ITERATIONS
-- iterations from the environment of prosody.sh start (default 10000,
-- stanzad's scram_iterations default).
authentication = "internal_hashed"
default_iteration_count = $ITERATIONS
storage = "internal"

-- In-band registration (XEP-0077), open and not throttled: no
-- registration_throttle_max / min_seconds_between_registrations is set,
-- which disables the throttle, and all of loopback (the load generator
-- spreads its source addresses over 127/8) is allow-listed anyway.
allow_registration = true
registration_allowlist = { "127.0.0.0/8", "::1" }

-- No rate limits: mod_limits is not loaded. Stanza size limit equal to
-- stanzad's max_stanza_size default (256 KiB).
c2s_stanza_size_limit = 256 * 1024

-- The feature set stanzad has: roster, presence, offline storage,
-- disco, carbons, blocking, ping, private XML, vCard, time, version,
-- last activity. No MAM, no stream management, no PEP.
modules_enabled = {
	"roster"; "saslauth"; "tls"; "disco"; "carbons"; "blocklist";
	"ping"; "private"; "vcard"; "time"; "version"; "lastactivity";
	"offline"; "register"; "posix";
}

VirtualHost "$domain"
	ssl = {
		certificate = "$dir/certs/$domain.crt";
		key = "$dir/certs/$domain.key";
	}

-- Group chat (XEP-0045) on conference.DOMAIN, like stanzad's muc
-- section: anyone may create a room; a room keeps 50 messages for
-- joiners (stanzad's max_history; Prosody's default is 20); 0.12 has no
-- occupant limit. Rooms made by a join with <x xmlns=muc> stay locked
-- until configured (XEP-0045 10.1.1) and groupchat 1.0 joins make
-- instant rooms, the same rule as stanzad's. No MAM, no rate limits
-- (mod_muc_limits is not shipped).
Component "conference.$domain" "muc"
	restrict_room_creation = false
	muc_room_default_public = true
	muc_room_default_history_length = 50
	max_history_messages = 50
EOF
}

# prosodyctl with this instance's config, its output kept in DIR
ctl() {
	local dir=$1
	shift
	prosodyctl --config "$dir/prosody.cfg.lua" "$@" \
		>>"$dir/prosodyctl.out" 2>&1
}

# PID of the running server, or nothing (and status 1) if it is not up.
server_pid() {
	local dir=$1 pid
	[ -s "$dir/prosody.pid" ] || return 1
	pid=$(tr -dc 0-9 <"$dir/prosody.pid")
	[ -n "$pid" ] && [ -d "/proc/$pid" ] || return 1
	# a recycled pid must not be mistaken for the server
	tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q prosody || return 1
	echo "$pid"
}

wait_listening() {
	local port=$1 i
	for i in $(seq 1 100); do
		port_in_use "$port" && return 0
		sleep 0.1
	done
	return 1
}

cmd_start() {
	check_start_args "$@"
	local dir port=$2 domain=$3
	dir=$(abs_dir "$1")
	[ "$(id -u)" -eq 0 ] ||
		die "must be run as root (prosodyctl drops to $PROSODY_USER)"
	command -v prosodyctl >/dev/null || die "prosody is not installed"
	rm -f "$dir/prosody.pid"
	mkdir -p "$dir/data"
	make_cert "$dir" "$domain"
	write_config "$dir" "$port" "$domain"
	chown -R "$PROSODY_USER:$PROSODY_USER" "$dir"
	chmod 750 "$dir"
	# the limit is inherited across prosodyctl's fork and setuid
	ulimit -n "$NOFILE"
	ctl "$dir" start ||
		die "prosodyctl start failed; see $dir/prosody*"
	if ! wait_listening "$port"; then
		cmd_stop "$dir" # a server that came up half-way must not linger
		die "not listening on $port; see $dir/prosody.log"
	fi
	server_pid "$dir" >/dev/null || die "no pid after start"
}

cmd_stop() {
	[ $# -eq 1 ] || usage
	local dir pid
	# nothing to stop without a state directory
	[ -d "$1" ] || return 0
	dir=$(existing_dir "$1")
	pid=$(server_pid "$dir") || { rm -f "$dir/prosody.pid"; return 0; }
	ctl "$dir" stop || true
	wait_gone "$pid"
	rm -f "$dir/prosody.pid"
}

peer_main "$@"
