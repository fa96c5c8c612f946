#!/bin/bash
# install.sh - install Debian's Prosody and ejabberd for the benchmark
# peers, and keep their system services stopped and disabled.
#
# Usage (as root): bench/peers/install.sh
#
# Idempotent. The packages start their services on ports 5222/5269/5280
# when installed; the benchmark must only ever talk to the private
# instances that prosody.sh / ejabberd.sh start, so service starts are
# refused during the install (policy-rc.d, exit 101, the Debian way), and
# afterwards both services are stopped and disabled for SysV init and,
# where present, systemd. Nothing else in /etc is changed.
set -euo pipefail

# lua-unbound is only recommended by prosody, but the federation tests
# configure Prosody's resolver through it (net.unbound)
PACKAGES=(prosody ejabberd lua-unbound openssl iproute2 procps util-linux
	python3-slixmpp)
SERVICES=(prosody ejabberd)
POLICY=/usr/sbin/policy-rc.d

if [ "$(id -u)" -ne 0 ]; then
	echo "install.sh: must be run as root" >&2
	exit 1
fi

missing=()
for p in "${PACKAGES[@]}"; do
	dpkg-query -W -f '${Status}' "$p" 2>/dev/null |
		grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
	made_policy=
	if [ ! -e "$POLICY" ]; then
		printf '#!/bin/sh\nexit 101\n' >"$POLICY"
		chmod 755 "$POLICY"
		made_policy=1
	fi
	# a failed install must not leave our policy file behind
	trap '[ -n "$made_policy" ] && rm -f "$POLICY"' EXIT
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi

# Is the packaged instance running? Asked through its pid file only:
# the init script's stop would itself run ejabberdctl, which starts an
# epmd (on all interfaces) as a side effect.
system_running() {
	local pidfile=/run/$1/$1.pid pid
	[ -s "$pidfile" ] || return 1
	pid=$(tr -dc 0-9 <"$pidfile")
	[ -n "$pid" ] && [ -d "/proc/$pid" ]
}

for s in "${SERVICES[@]}"; do
	if system_running "$s" && command -v service >/dev/null; then
		service "$s" stop >/dev/null 2>&1 || true
	fi
	update-rc.d "$s" disable >/dev/null 2>&1 || true
	if command -v systemctl >/dev/null; then
		systemctl disable "$s" >/dev/null 2>&1 || true
	fi
done

dpkg-query -W -f '${Package} ${Version}\n' prosody ejabberd
