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

die() { echo "prosody.sh: $*" >&2; exit 1; }

usage() {
	echo "usage: prosody.sh start DIR PORT DOMAIN | stop DIR | pid DIR" >&2
	exit 2
}

# absolute path of DIR (the config holds absolute paths, and prosodyctl
# changes directory)
abs_dir() { mkdir -p "$1" && (cd "$1" && pwd -P); }

# same for stop and pid, which must not create DIR
existing_dir() {
	(cd "$1" 2>/dev/null && pwd -P) || die "no such directory: $1"
}

# Self-signed P-256 certificate, the same key type stanzad generates for
# itself, so TLS handshakes cost the same on every server.
make_cert() {
	local dir=$1 domain=$2
	local crt="$dir/certs/$domain.crt" key="$dir/certs/$domain.key"
	[ -s "$crt" ] && [ -s "$key" ] && return 0
	mkdir -p "$dir/certs"
	openssl req -x509 -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
		-keyout "$key" -out "$crt" -days 365 -subj "/CN=$domain" \
		-addext "subjectAltName=DNS:$domain" >/dev/null 2>&1 ||
		die "openssl could not make a certificate in $dir/certs"
}

write_config() {
	local dir=$1 port=$2 domain=$3
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

-- SCRAM: passwords stored as salted SCRAM-SHA-1 keys, 10000 iterations
-- (stanzad's scram_iterations default).
authentication = "internal_hashed"
default_iteration_count = 10000
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
		ss -Hltn "sport = :$port" | grep -q . && return 0
		sleep 0.1
	done
	return 1
}

cmd_start() {
	[ $# -eq 3 ] || usage
	local dir pid port=$2 domain=$3
	[[ "$port" =~ ^[0-9]+$ ]] || die "bad port: $port"
	# both go into config files verbatim
	[[ "$domain" =~ ^[A-Za-z0-9.-]+$ ]] || die "bad domain: $domain"
	[[ "$1" =~ ^[A-Za-z0-9._/+-]+$ ]] || die "unsupported characters in $1"
	if [ -d "$1" ] && pid=$(server_pid "$(existing_dir "$1")"); then
		die "already running in $1 (pid $pid)"
	fi
	# checked first: else a busy port would look like a successful start
	if ss -Hltn "sport = :$port" | grep -q .; then
		die "port $port is already in use"
	fi
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
	local dir pid i
	# nothing to stop without a state directory
	[ -d "$1" ] || return 0
	dir=$(existing_dir "$1")
	pid=$(server_pid "$dir") || { rm -f "$dir/prosody.pid"; return 0; }
	ctl "$dir" stop || true
	for i in $(seq 1 100); do
		[ -d "/proc/$pid" ] || break
		[ "$i" -eq 50 ] && kill -TERM "$pid" 2>/dev/null
		sleep 0.1
	done
	if [ -d "/proc/$pid" ]; then
		kill -KILL "$pid" 2>/dev/null || true
		sleep 0.2
	fi
	rm -f "$dir/prosody.pid"
}

cmd_pid() {
	[ $# -eq 1 ] || usage
	server_pid "$(existing_dir "$1")" || die "not running"
}

[ $# -ge 1 ] || usage
sub=$1
shift
case $sub in
start) cmd_start "$@" ;;
stop) cmd_stop "$@" ;;
pid) cmd_pid "$@" ;;
*) usage ;;
esac
