#!/bin/sh
# Installs what `cargo bench --bench imap` compares against: Dovecot's IMAP, POP3 and LMTP
# servers from Debian. Run once as root before the benchmark; the benchmark itself installs
# nothing. Idempotent: a second run installs nothing and changes nothing.
#
# Debian's own Dovecot is not used and not started: the benchmark runs a private instance
# (`dovecot -F -c FILE`) from a configuration file in a temporary folder, on 127.0.202.2
# (IMAP :2143, POP3 :2110, LMTP :2424). If an init system started Debian's instance on
# install (a container's policy-rc.d usually prevents that), it is stopped; the packaged
# configuration (/etc/dovecot) is left as it is.
set -eu

export DEBIAN_FRONTEND=noninteractive
if [ ! -x /usr/sbin/dovecot ] || [ ! -x /usr/lib/dovecot/imap ] || [ ! -x /usr/lib/dovecot/pop3 ] \
    || [ ! -x /usr/lib/dovecot/lmtp ]; then
    apt-get update
    apt-get install -y dovecot-core dovecot-imapd dovecot-pop3d dovecot-lmtpd
fi

# The benchmark wants no instance but its own.
if command -v service >/dev/null 2>&1; then
    service dovecot stop >/dev/null 2>&1 || true
fi
if [ -r /run/dovecot/master.pid ]; then
    kill "$(cat /run/dovecot/master.pid)" 2>/dev/null || true
fi

# The accounts the private instance runs its processes as (created by dovecot-core).
id dovecot >/dev/null
id dovenull >/dev/null

/usr/sbin/dovecot --version
