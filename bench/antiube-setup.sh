#!/bin/sh
# Installs what `cargo bench --bench antiube` compares against: SpamAssassin's spamd (Debian
# `spamassassin`) and `sa-compile`, whose compiled body rules (Rule2XSBody) make spamd faster —
# the benchmark gives spamd its best configuration. Run once as root before the benchmark; the
# benchmark itself installs nothing. Idempotent: a second run installs nothing.
#
# Debian's own spamd service is not used (the benchmark starts a private one with one child on
# 127.0.204.1 and a site configuration in a temporary folder); it is stopped if an init system
# started it on install. No rule updates are fetched (sa-update needs the network): the rules
# are the ones the package ships.
set -eu

export DEBIAN_FRONTEND=noninteractive
if [ ! -x /usr/sbin/spamd ] || ! command -v sa-compile >/dev/null 2>&1; then
    apt-get update
    apt-get install -y spamassassin sa-compile
fi

# Compile the shipped body rules once if the package's install step did not (it runs
# sa-compile from its postinst; a container without the compiler at that point may skip it).
if [ -z "$(ls -A /var/lib/spamassassin/compiled 2>/dev/null)" ]; then
    sa-compile --quiet || echo "sa-compile failed: the benchmark runs spamd without compiled rules" >&2
fi

if command -v service >/dev/null 2>&1; then
    service spamd stop >/dev/null 2>&1 || service spamassassin stop >/dev/null 2>&1 || true
fi

id nobody >/dev/null
/usr/sbin/spamd --version | head -1
