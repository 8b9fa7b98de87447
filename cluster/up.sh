#!/usr/bin/env bash
# Starts the local three-node Mailnode cluster and waits until it has formed and one node is the
# active mailstore (volume mounted, VIP claimed, IMAP/LMTP/POP3 served on it).
#
# First run: builds the node image if it is missing (images/build.sh), creates the cluster PKI
# and admin token, one config per node (cluster/node.toml.in), a sparse file formatted with XFS
# on a loop device (the shared "SAN" volume, passed into every container), starts the
# containers (cluster/docker-compose.yml), and adds n2 and n3 to the cluster n1 bootstraps.
# Later runs reuse the state (re-attaching the loop device after a reboot) and start what is
# stopped. cluster/down.sh removes everything.
#
# Settings: see cluster/lib.sh (MAILNODE_CLUSTER_DIR, MAILNODE_NET, MAILNODE_FENCE, ...);
# MAILNODE_BUILD=1 rebuilds the image first.
set -euo pipefail
# shellcheck source=cluster/lib.sh
. "$(dirname "$0")/lib.sh"
require docker docker-compose losetup truncate python3
started=$(date +%s)

if [ -n "${MAILNODE_BUILD:-}" ] || ! docker image inspect "$MAILNODE_IMAGE" >/dev/null 2>&1; then
    step "building the node image $MAILNODE_IMAGE (images/build.sh)"
    bash "$repo_dir/images/build.sh"
fi
case "$MAILNODE_FENCE" in
docker | none) ;;
*) die "MAILNODE_FENCE must be docker or none, not $MAILNODE_FENCE" ;;
esac

if [ -f "$state/.mailnode-cluster" ] && [ ! -f "$state/.complete" ]; then
    die "an earlier cluster/up.sh stopped half-way in $state: run cluster/down.sh, then up.sh again"
fi
if [ ! -f "$state/.mailnode-cluster" ]; then
    if [ -e "$state" ] && [ -n "$(ls -A "$state")" ]; then
        die "$state exists but holds no cluster state: remove it or set MAILNODE_CLUSTER_DIR"
    fi
    step "new cluster state in $state"
    mkdir -p "$state"
    chmod 0700 "$state"
    # From here down.sh may remove the folder, whatever happens next.
    touch "$state/.mailnode-cluster"
    cat >"$state/settings.env" <<EOF
MAILNODE_IMAGE=$MAILNODE_IMAGE
MAILNODE_NET=$MAILNODE_NET
MAILNODE_VOLUME_SIZE=$MAILNODE_VOLUME_SIZE
MAILNODE_FENCE=$MAILNODE_FENCE
EOF
    step "cluster PKI (mailctl cluster init; every certificate also names the VIP $vip)"
    specs=()
    for n in "${nodes[@]}"; do
        specs+=(--node "$n=$(node_ip "$n"),$vip")
    done
    docker run --rm -v "$state/pki:/pki" --entrypoint /usr/local/bin/mailctl "$MAILNODE_IMAGE" \
        cluster init --out /pki "${specs[@]}" >/dev/null ||
        die "mailctl cluster init failed"
    head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$state/admin.token"
    chmod 0600 "$state/admin.token"
    # One SRS secret for the whole cluster: a node verifies the bounce addresses another signed.
    head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$state/srs.secret"
    chmod 0600 "$state/srs.secret"
    for n in "${nodes[@]}"; do
        mkdir -p "$state/$n/etc/tls" "$state/$n/data"
        cp "$state/pki/ca.pem" "$state/pki/$n.pem" "$state/pki/$n.key" "$state/$n/etc/tls/"
        cp "$state/admin.token" "$state/srs.secret" "$state/$n/etc/"
    done
    step "shared volume: a $MAILNODE_VOLUME_SIZE sparse file on a loop device, XFS"
    truncate -s "$MAILNODE_VOLUME_SIZE" "$state/volume.img"
    loop="$(losetup --find --show "$state/volume.img")" || die "losetup failed (is the loop module loaded?)"
    echo "$loop" >"$state/loop-device"
    docker run --rm --device "$loop" --cap-add SYS_ADMIN --entrypoint /sbin/mkfs.xfs "$MAILNODE_IMAGE" -q -L mailstore "$loop" ||
        die "mkfs.xfs on $loop failed"
    touch "$state/.complete"
else
    step "reusing the cluster state in $state"
    loop="$(losetup -j "$state/volume.img" | cut -d: -f1 | head -n1)"
    if [ -z "$loop" ]; then
        loop="$(losetup --find --show "$state/volume.img")" || die "cannot attach $state/volume.img"
        echo "re-attached the volume as $loop"
    fi
    echo "$loop" >"$state/loop-device"
fi
echo "volume: $state/volume.img on $loop"

# The configs follow the template and the loop device's current name.
fence=""
[ "$MAILNODE_FENCE" = docker ] && fence='fence_command = ["/usr/local/sbin/fence-docker", "{name}"]'
for n in "${nodes[@]}"; do
    bootstrap=false
    [ "$n" = n1 ] && bootstrap=true
    sed -e "s|@ID@|${n#n}|g" -e "s|@NAME@|$n|g" -e "s|@IP@|$(node_ip "$n")|g" \
        -e "s|@VIP@|$vip|g" -e "s|@BOOTSTRAP@|$bootstrap|g" -e "s|@DEVICE@|$loop|g" \
        -e "s|@FENCE@|$fence|g" "$cluster_dir/node.toml.in" >"$state/$n/etc/mailnode.toml"
done

step "starting the containers (docker-compose, project mailnode)"
compose up -d

step "waiting for n1's admin API"
deadline=$(($(date +%s) + 90))
until ctl_on n1 status >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$deadline" ] || {
        docker logs --tail 30 mailnode-n1 >&2
        die "n1 did not answer within 90 s (its log is above)"
    }
    sleep 0.5
done

members() { ctl_on n1 node list --json | python3 -c 'import json,sys; print(" ".join(str(n["id"]) for n in json.load(sys.stdin)))'; }
for n in n2 n3; do
    id="${n#n}"
    if [[ " $(members) " == *" $id "* ]]; then
        echo "$n is already a member"
        continue
    fi
    step "adding $n (mailctl node add $id)"
    deadline=$(($(date +%s) + 90))
    until out="$(ctl_on n1 node add "$id" --name "$n" --raft "$(node_ip "$n"):7400" --api "$(node_ip "$n"):443" 2>&1)"; do
        # The node may still be starting: retry until it answers.
        [ "$(date +%s)" -lt "$deadline" ] || die "cannot add $n: $out"
        sleep 1
    done
    echo "$out"
done

step "waiting for the active mailstore (lease, mount, VIP $vip, services)"
deadline=$(($(date +%s) + 90))
holder=""
while :; do
    holder="$(ctl_on n1 status --json 2>/dev/null | python3 -c '
import json, sys
m = json.load(sys.stdin).get("mailstore") or {}
h, e = m.get("holder"), m.get("epoch")
print(h if h is not None and m.get("active_epoch") == e else "")' 2>/dev/null || true)"
    [ -n "$holder" ] && break
    [ "$(date +%s)" -lt "$deadline" ] || {
        ctl_on n1 status >&2 || true
        die "no node became the active mailstore within 90 s"
    }
    sleep 0.5
done
ctl_on n1 status
cat <<EOF

The cluster is up in $(($(date +%s) - started)) s: node n$holder is the active mailstore.
  nodes:     n1 $(node_ip n1), n2 $(node_ip n2), n3 $(node_ip n3) (SMTP MX on :25, admin API on :443)
  mailstore: $vip (IMAP :143, POP3 :110, LMTP :24; STARTTLS, certificates from $state/pki/ca.pem)
  mailctl:   cluster/mailctl.sh status | failover --to n2 | domain add example.org | ...
  logs:      docker logs -f mailnode-n1
  stop:      cluster/down.sh
EOF
