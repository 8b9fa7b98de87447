#!/usr/bin/env bash
# The container fault tests, in one command: builds the node image (images/build.sh), starts a
# fresh local cluster (cluster/down.sh, then cluster/up.sh: this replaces a cluster already
# running), runs cluster/nemesis.py against it, keeps the nodes' logs, and removes the cluster.
# Exit status: nemesis.py's (0 no violation, 1 violations, 2 the cluster could not be driven).
#
#   bash cluster/nemesis.sh                       # every scenario: a,b,e,f,c,d
#   bash cluster/nemesis.sh --scenarios a,e --switchovers 4
#
# Arguments go to nemesis.py (--help lists them). Environment: MAILNODE_SKIP_BUILD=1 uses the
# image as it is; MAILNODE_KEEP=1 leaves the cluster running afterwards; MAILNODE_NEMESIS_LOGS
# is where the logs go (default /var/tmp/mailnode-nemesis-<time>); the settings of cluster/lib.sh.
set -euo pipefail
# shellcheck source=cluster/lib.sh
. "$(dirname "$0")/lib.sh"
require docker docker-compose losetup python3 nsenter iptables
logs="${MAILNODE_NEMESIS_LOGS:-/var/tmp/mailnode-nemesis-$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$logs"
t_start=$(date +%s)

if [ -z "${MAILNODE_SKIP_BUILD:-}" ]; then
    step "node image (images/build.sh)"
    bash "$repo_dir/images/build.sh"
fi
t_image=$(date +%s)

step "a fresh cluster (cluster/down.sh, cluster/up.sh)"
bash "$cluster_dir/down.sh" >/dev/null
finish() {
    rc=$?
    for n in "${nodes[@]}"; do
        docker logs "mailnode-$n" >"$logs/$n.log" 2>&1 || true
    done
    echo "node logs: $logs"
    if [ -z "${MAILNODE_KEEP:-}" ]; then
        bash "$cluster_dir/down.sh" >/dev/null 2>&1 || echo "cluster/down.sh failed: clean up by hand" >&2
    fi
    exit "$rc"
}
trap finish EXIT
bash "$cluster_dir/up.sh"
t_up=$(date +%s)

step "nemesis"
set +e
python3 -u "$cluster_dir/nemesis.py" --state "$state" --net "$MAILNODE_NET" "$@" | tee "$logs/nemesis.txt"
rc=${PIPESTATUS[0]}
set -e
t_end=$(date +%s)
echo
echo "timings: image $((t_image - t_start)) s, cluster up $((t_up - t_image)) s, nemesis $((t_end - t_up)) s, total $((t_end - t_start)) s"
exit "$rc"
