# common.sh - what prosody.sh and ejabberd.sh share; sourced by both,
# which set PEER (their name, for messages) and define server_pid DIR.

die() { echo "$PEER.sh: $*" >&2; exit 1; }

usage() {
	echo "usage: $PEER.sh start DIR PORT DOMAIN | stop DIR | pid DIR" >&2
	exit 2
}

# absolute path of DIR (the configs hold absolute paths, and the servers'
# control programs change directory)
abs_dir() { mkdir -p "$1" && (cd "$1" && pwd -P); }

# same for stop and pid, which must not create DIR
existing_dir() {
	(cd "$1" 2>/dev/null && pwd -P) || die "no such directory: $1"
}

port_in_use() { ss -Hltn "sport = :$1" | grep -q .; }

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

# The checks of `start DIR PORT DOMAIN` before anything is written.
check_start_args() {
	[ $# -eq 3 ] || usage
	local pid port=$2 domain=$3
	[[ "$port" =~ ^[0-9]+$ ]] || die "bad port: $port"
	# both go into config files verbatim
	[[ "$domain" =~ ^[A-Za-z0-9.-]+$ ]] || die "bad domain: $domain"
	[[ "$1" =~ ^[A-Za-z0-9._/+-]+$ ]] || die "unsupported characters in $1"
	if [ -d "$1" ] && pid=$(server_pid "$(existing_dir "$1")"); then
		die "already running in $1 (pid $pid)"
	fi
	# checked first: else a busy port would look like a successful start
	if port_in_use "$port"; then
		die "port $port is already in use"
	fi
}

# Waits up to 10 s for PID to exit (TERM after 5 s), then KILLs it.
wait_gone() {
	local pid=$1 i
	for i in $(seq 1 100); do
		[ -d "/proc/$pid" ] || return 0
		[ "$i" -eq 50 ] && kill -TERM "$pid" 2>/dev/null
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	sleep 0.2
}

cmd_pid() {
	[ $# -eq 1 ] || usage
	server_pid "$(existing_dir "$1")" || die "not running"
}

# The command line: start, stop (cmd_start, cmd_stop of the script) or pid.
peer_main() {
	[ $# -ge 1 ] || usage
	local sub=$1
	shift
	case $sub in
	start) cmd_start "$@" ;;
	stop) cmd_stop "$@" ;;
	pid) cmd_pid "$@" ;;
	*) usage ;;
	esac
}
