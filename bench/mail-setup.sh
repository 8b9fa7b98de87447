#!/bin/sh
# Installs what `cargo bench --bench mail` compares against: Postfix and Dovecot (core + LMTP)
# from Debian. Run once as root before the benchmark; the benchmark itself installs nothing.
# Idempotent: a second run installs nothing and changes nothing.
#
# Neither package's own service is used: the benchmark runs a private Postfix (`postfix -c DIR`)
# and a private Dovecot (`dovecot -c FILE`) from configuration files in a temporary folder, on
# 127.0.201.2:2525 and 127.0.201.3:2424. Debian's own instances are stopped if an init system
# started them on install (a container's policy-rc.d usually prevents that); their packaged
# configuration (/etc/postfix, /etc/dovecot) is left as it is.
set -eu

export DEBIAN_FRONTEND=noninteractive
if [ ! -x /usr/sbin/postfix ] || [ ! -x /usr/sbin/dovecot ] || [ ! -x /usr/lib/dovecot/lmtp ]; then
    apt-get update
    # "No configuration": the package writes no main.cf of its own and starts nothing.
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    apt-get install -y postfix dovecot-core dovecot-lmtpd
fi

# The benchmark wants no instance but its own.
if command -v service >/dev/null 2>&1; then
    service postfix stop >/dev/null 2>&1 || true
    service dovecot stop >/dev/null 2>&1 || true
fi
if [ -r /var/spool/postfix/pid/master.pid ]; then
    kill "$(tr -d ' ' </var/spool/postfix/pid/master.pid)" 2>/dev/null || true
fi
if [ -r /run/dovecot/master.pid ]; then
    kill "$(cat /run/dovecot/master.pid)" 2>/dev/null || true
fi

# The accounts the private instances run as (created by the packages).
id postfix >/dev/null
id dovecot >/dev/null
id dovenull >/dev/null

/usr/sbin/postconf -d mail_version 2>/dev/null
/usr/sbin/dovecot --version
