#!/bin/sh
# Installs what `cargo bench --bench directory` compares against: OpenLDAP's slapd and the
# ldap-utils clients (ldapadd, ldapsearch), from Debian. Run once as root before the benchmark;
# the benchmark itself installs nothing.
#
# The package's own slapd service is stopped (and the Debian sample database left alone): the
# benchmark runs two slapd instances of its own, from slapd.conf files in a temporary folder,
# on 127.0.200.11 and 127.0.200.12.
set -eu

export DEBIAN_FRONTEND=noninteractive
if [ ! -x /usr/sbin/slapd ] || ! command -v ldapadd >/dev/null 2>&1; then
    apt-get update
    apt-get install -y slapd ldap-utils
fi

# Debian starts slapd on install where an init system runs; the benchmark wants none but its own.
if command -v service >/dev/null 2>&1; then
    service slapd stop >/dev/null 2>&1 || true
fi
if [ -r /var/run/slapd/slapd.pid ]; then
    kill "$(cat /var/run/slapd/slapd.pid)" 2>/dev/null || true
fi

/usr/sbin/slapd -VV 2>&1 | head -n 1
ldapadd -VV 2>&1 | head -n 1
