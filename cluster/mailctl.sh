#!/usr/bin/env bash
# mailctl against the local cluster: runs the image's mailctl in the first running node's
# container, with that node's admin API, token and CA. Example: cluster/mailctl.sh status
set -euo pipefail
# shellcheck source=cluster/lib.sh
. "$(dirname "$0")/lib.sh"
ctl "$@"
