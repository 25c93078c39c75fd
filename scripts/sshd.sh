#!/bin/sh
# Installs Debian's openssh-server (the SSH daemon the multi-host tests run
# in a network namespace to play a remote server). Idempotent; the package's
# own service is not started.
set -eu
if command -v sshd >/dev/null 2>&1 || [ -x /usr/sbin/sshd ]; then
	exit 0
fi
export DEBIAN_FRONTEND=noninteractive
# Keep the package from starting its service on this machine.
if [ ! -e /usr/sbin/policy-rc.d ]; then
	printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
	chmod +x /usr/sbin/policy-rc.d
	trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
apt-get install -y --no-install-recommends openssh-server >/dev/null || {
	apt-get update >/dev/null
	apt-get install -y --no-install-recommends openssh-server >/dev/null
}
