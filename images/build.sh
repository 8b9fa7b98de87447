#!/usr/bin/env bash
# Builds the Mailnode node image without any container registry:
#
#   1. mailnode-base:bookworm — a minimal Debian 12 root made with debootstrap (minbase) plus
#      what a node needs at run time (xfsprogs for the XFS volume, iproute2, ca-certificates,
#      tini as PID 1), imported with `docker import`. Cached: skipped when the image exists
#      (MAILNODE_REBUILD_BASE=1 forces it).
#   2. the release binaries (`cargo build --release --bin mailnode --bin mailctl`; a no-op when
#      they are fresh).
#   3. mailnode:latest (and mailnode:<version>) — images/Dockerfile FROM the base, with the
#      binaries and the default configuration images/mailnode.toml.
#
# Needs root (debootstrap), docker, debootstrap (apt-get install debootstrap) and cargo.
# Environment: CARGO_TARGET_DIR (default ./target), DEBIAN_MIRROR (default
# http://deb.debian.org/debian), MAILNODE_IMAGE (default mailnode), MAILNODE_REBUILD_BASE,
# MAILNODE_SKIP_CARGO=1 (use $CARGO_TARGET_DIR/release/{mailnode,mailctl} as they are).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/.." && pwd)"
base_image="mailnode-base:bookworm"
image="${MAILNODE_IMAGE:-mailnode}"
image="${image%%:*}" # a tag given with it (mailnode:latest) is replaced by latest + the version
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
# Run-time packages on top of minbase: xfsprogs (xfs_repair, xfs_info on the volume), mount
# (findmnt, umount), iproute2 (`ip addr` to see the VIP), procps (ps), ca-certificates
# (outbound SMTP with tls = "verify"), tini (PID 1: forwards SIGTERM, reaps fence agents),
# python3-minimal (fence agents such as cluster/fence-docker; xfsprogs needs python3 anyway).
packages="xfsprogs,mount,iproute2,procps,ca-certificates,tini,python3-minimal"
# The recipe of the base image, kept as a label: a changed recipe rebuilds the base.
recipe="debootstrap --variant=minbase bookworm +$packages"

step() { printf '\n==> %s\n' "$*"; }
die() {
    printf 'images/build.sh: error: %s\n' "$*" >&2
    exit 1
}

[ "$(id -u)" = 0 ] || die "run as root (debootstrap and docker need it)"
command -v docker >/dev/null || die "docker is not installed"
docker info >/dev/null 2>&1 || die "the docker daemon does not answer (is it running? \`docker info\`)"
command -v cargo >/dev/null || die "cargo is not installed (the image is built from the release binaries)"

started=$(date +%s)

# Removes a replaced image once no tag names it (and no container uses it), so rebuilds do not
# pile up untagged images; only the image this script replaced, never others'.
drop_untagged() {
    local id="$1"
    [ -n "$id" ] || return 0
    if [ -z "$(docker image inspect -f '{{join .RepoTags " "}}' "$id" 2>/dev/null)" ]; then
        docker rmi "$id" >/dev/null 2>&1 || true
    fi
}

# 1. The base image.
have="$(docker image inspect -f '{{ index .Config.Labels "org.mailnode.base-recipe" }}' "$base_image" 2>/dev/null || true)"
if [ -z "${MAILNODE_REBUILD_BASE:-}" ] && [ "$have" = "$recipe" ]; then
    step "base image $base_image is up to date; skipping debootstrap (MAILNODE_REBUILD_BASE=1 rebuilds it)"
else
    command -v debootstrap >/dev/null || die "debootstrap is not installed: apt-get install debootstrap"
    root="$(mktemp -d /var/tmp/mailnode-rootfs.XXXXXX)"
    # The root holds device nodes and root-owned files: remove it whatever happens.
    trap 'rm -rf --one-file-system "$root"' EXIT
    step "debootstrap --variant=minbase bookworm ($mirror) with $packages into $root"
    # Only the retrieval lines: one per package, enough to see it progress.
    if ! debootstrap --variant=minbase --include="$packages" bookworm "$root" "$mirror" |
        grep --line-buffered -v -e '^I: Validating' -e '^I: Extracting' -e '^I: Unpacking' \
            -e '^I: Configuring'; then
        log="$root/debootstrap/debootstrap.log"
        [ -f "$log" ] && tail -n 30 "$log" >&2
        die "debootstrap failed (is $mirror reachable? set DEBIAN_MIRROR to another mirror)"
    fi
    step "trimming the root (apt caches and lists, documentation)"
    chroot "$root" apt-get clean
    rm -rf "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* "$root"/usr/share/man/* \
        "$root"/usr/share/info/* "$root"/var/log/*.log "$root"/var/cache/debconf/*-old
    # The container engine supplies these.
    : >"$root/etc/hostname"
    rm -f "$root/etc/resolv.conf"
    step "docker import -> $base_image"
    old_base="$(docker image inspect -f '{{.Id}}' "$base_image" 2>/dev/null || true)"
    tar --numeric-owner -C "$root" -c . | docker import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["/bin/bash"]' \
        --change "LABEL org.mailnode.base-recipe=\"$recipe\"" \
        --message "Debian 12 minbase + $packages (images/build.sh)" \
        - "$base_image" >/dev/null
    rm -rf --one-file-system "$root"
    trap - EXIT
    drop_untagged "$old_base"
fi

# 2. The release binaries.
target="${CARGO_TARGET_DIR:-$repo/target}"
if [ -n "${MAILNODE_SKIP_CARGO:-}" ]; then
    step "MAILNODE_SKIP_CARGO: using the binaries in $target/release as they are"
else
    step "cargo build --release --bin mailnode --bin mailctl (target: $target)"
    (cd "$repo" && cargo build --release --bin mailnode --bin mailctl) ||
        die "cargo build failed"
fi
for bin in mailnode mailctl; do
    [ -x "$target/release/$bin" ] || die "$target/release/$bin is missing after the build"
done
version="$("$target/release/mailnode" --version | awk '{print $2}')"
[ -n "$version" ] || die "cannot read the version of $target/release/mailnode"

# 3. The node image. The build context is a temporary folder with exactly what the image
# needs, so the repository and the target folder (gigabytes) are never sent to the engine.
ctx="$(mktemp -d /var/tmp/mailnode-image.XXXXXX)"
trap 'rm -rf "$ctx"' EXIT
cp "$here/Dockerfile" "$here/mailnode.toml" "$ctx/"
cp "$target/release/mailnode" "$target/release/mailctl" "$ctx/"
strip "$ctx/mailnode" "$ctx/mailctl" 2>/dev/null || true
step "docker build -> $image:latest, $image:$version"
# The engine here has no BuildKit (no buildx): the classic builder, which never pulls an image
# that exists locally.
old_image="$(docker image inspect -f '{{.Id}}' "$image:latest" 2>/dev/null || true)"
DOCKER_BUILDKIT=0 docker build --quiet --build-arg "VERSION=$version" \
    -t "$image:latest" -t "$image:$version" "$ctx" >/dev/null ||
    die "docker build failed"
[ "$old_image" = "$(docker image inspect -f '{{.Id}}' "$image:latest")" ] || drop_untagged "$old_image"

step "checking the image"
docker run --rm --entrypoint /usr/local/bin/mailnode "$image:latest" --version
docker run --rm --entrypoint /usr/local/bin/mailnode "$image:latest" \
    --config /etc/mailnode/mailnode.toml --check ||
    die "the image's default configuration does not validate"
docker run --rm --entrypoint /bin/sh "$image:latest" -c \
    'for b in mailnode mailctl; do if ldd /usr/local/bin/$b | grep -q "not found"; then ldd /usr/local/bin/$b; exit 1; fi; done; command -v mkfs.xfs xfs_repair ip tini >/dev/null' ||
    die "the image lacks a library or a tool the node needs"
docker image ls "$image"
echo "built $image:$version in $(($(date +%s) - started)) s"
