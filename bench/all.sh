#!/usr/bin/env bash
# Every benchmark, in order: run.sh writes bench/RESULTS.md afresh, oci.sh, git.sh, git-refs.sh, cluster.sh, scale.sh and nodes.sh add theirs.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
"$here/run.sh"
"$here/oci.sh"
"$here/git.sh"
"$here/git-refs.sh"
"$here/cluster.sh"
"$here/scale.sh"
"$here/nodes.sh"
