#!/usr/bin/env bash
# Stops and removes the local cluster: the containers and their network, the loop device, and
# the state folder (PKI, configs, node data, the volume file). Safe to run twice.
set -euo pipefail
# shellcheck source=cluster/lib.sh
. "$(dirname "$0")/lib.sh"
require docker docker-compose losetup

if [ -f "$state/loop-device" ]; then
    step "removing the containers and the network"
    compose down --remove-orphans --timeout 30
fi
# Containers left by an interrupted up.sh (no state, or a compose run that did not finish).
for n in "${nodes[@]}"; do
    if docker inspect "mailnode-$n" >/dev/null 2>&1; then
        docker rm -f "mailnode-$n" >/dev/null
    fi
done
if [ -f "$state/volume.img" ]; then
    for loop in $(losetup -j "$state/volume.img" | cut -d: -f1); do
        step "detaching $loop"
        losetup -d "$loop"
    done
fi
if [ -d "$state" ]; then
    # Only a folder up.sh made (it holds the marker), never whatever the variable points at.
    [ -f "$state/.mailnode-cluster" ] || [ -z "$(ls -A "$state")" ] ||
        die "$state does not look like a cluster state folder (no .mailnode-cluster): not removing it"
    step "removing $state"
    rm -rf --one-file-system "$state"
fi
echo "the local cluster is gone"
