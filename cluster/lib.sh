# Shared by cluster/up.sh, down.sh, mailctl.sh and nemesis.sh (sourced, not run).
#
# Settings (environment; up.sh saves them in the state folder, the other scripts read them back):
#   MAILNODE_CLUSTER_DIR  state: PKI, configs, node data, the volume file (/var/tmp/mailnode-cluster)
#   MAILNODE_IMAGE        the node image (mailnode:latest, built by images/build.sh)
#   MAILNODE_NET          the private network's first three octets (10.97.0): nodes .11-.13, VIP .100
#   MAILNODE_VOLUME_SIZE  the shared volume's size (1G; sparse)
#   MAILNODE_FENCE        docker (the fence agent kills the previous holder's container) or none

cluster_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_dir="$(cd "$cluster_dir/.." && pwd)"
export MAILNODE_CLUSTER_DIR="${MAILNODE_CLUSTER_DIR:-/var/tmp/mailnode-cluster}"
state="$MAILNODE_CLUSTER_DIR"
if [ -f "$state/settings.env" ]; then
    # shellcheck source=/dev/null
    . "$state/settings.env"
fi
export MAILNODE_IMAGE="${MAILNODE_IMAGE:-mailnode:latest}"
export MAILNODE_NET="${MAILNODE_NET:-10.97.0}"
export MAILNODE_VOLUME_SIZE="${MAILNODE_VOLUME_SIZE:-1G}"
export MAILNODE_FENCE="${MAILNODE_FENCE:-docker}"
vip="$MAILNODE_NET.100"
nodes=(n1 n2 n3)

step() { printf '\n==> %s\n' "$*"; }
die() {
    printf '%s: error: %s\n' "$(basename "$0")" "$*" >&2
    exit 1
}

# n1 -> 10.97.0.11
node_ip() { echo "$MAILNODE_NET.1${1#n}"; }

compose() {
    [ -f "$state/loop-device" ] || die "no cluster state in $state: run cluster/up.sh"
    MAILNODE_LOOP="$(cat "$state/loop-device")" \
        docker-compose --project-name mailnode --file "$cluster_dir/docker-compose.yml" "$@"
}

# mailctl inside node $1's container, against its own admin API.
ctl_on() {
    local node="$1"
    shift
    docker exec -i "mailnode-$node" mailctl --server "$(node_ip "$node"):443" \
        --token-file /etc/mailnode/admin.token --ca-file /etc/mailnode/tls/ca.pem "$@"
}

running() { [ "$(docker inspect -f '{{.State.Running}}' "mailnode-$1" 2>/dev/null)" = true ]; }

# mailctl on the first running node.
ctl() {
    local n
    for n in "${nodes[@]}"; do
        if running "$n"; then
            ctl_on "$n" "$@"
            return
        fi
    done
    echo "no node of the cluster is running (cluster/up.sh starts them)" >&2
    return 3
}

require() {
    [ "$(id -u)" = 0 ] || die "run as root (loop devices, containers with CAP_SYS_ADMIN)"
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null || die "$tool is not installed"
    done
    docker info >/dev/null 2>&1 || die "the docker daemon does not answer (\`docker info\`)"
}
