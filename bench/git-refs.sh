#!/usr/bin/env bash
# A GitHub-style repository (thousands of refs/pull/*, a share at commits of their own) cloned straight from git
# http-backend and through Hoard: cold (mirror made), warm, with Hoard's clone bundle; upstream bytes for the mirror
# against what `git clone --mirror` (every ref) takes; Hoard's CPU per clone. Appends to bench/RESULTS.md.
# Needs git, fcgiwrap, nginx-light, python3.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
work="$here/work-git-refs"
commits=${BENCH_REFS_COMMITS:-2000}
pulls=${BENCH_REFS_PULLS:-3500}
unique=${BENCH_REFS_UNIQUE:-1000}
runs=${BENCH_REFS_RUNS:-5}
rm -rf "$work"; mkdir -p "$work"/{logs,repos,hoard-data}
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
. "$here/git-lib.sh"

echo "== repository: $commits commits on main, $pulls refs/pull/*, $unique of them at commits of their own"
git init -q --bare -b main "$work/repos/busy.git"
python3 "$here/make_pr_repo.py" "$commits" "$pulls" "$unique" | git -C "$work/repos/busy.git" fast-import --quiet --done
git -C "$work/repos/busy.git" gc -q
refs=$(git -C "$work/repos/busy.git" for-each-ref | wc -l)
repo_mb=$(du -sm "$work/repos/busy.git" | cut -f1)

D=$(free_port); HOARD=$(free_port)
git_server "$work" '$request_method $request_uri $status $body_bytes_sent' "$D"
dotnet publish "$repo/src/Hoard" -c Release -o "$work/hoard-bin" --nologo -v quiet >/dev/null
"$work/hoard-bin/hoard" serve --listen "http://127.0.0.1:$HOARD" --data "$work/hoard-data" --access-log off \
  --git "up=http://127.0.0.1:$D/" > "$work/logs/hoard.log" 2>&1 & pids+=($!)
hoard_pid=$!
wait_port "$D"; wait_port "$HOARD"

upbytes() { awk '{s+=$4} END {printf "%.0f", s}' "$work/logs/access.log"; }
mb() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
cpu() { awk '{print $14 + $15}' "/proc/$hoard_pid/stat"; }   # utime + stime, in clock ticks
ticks=$(getconf CLK_TCK)
head_sha=$(git -C "$work/repos/busy.git" rev-parse main)
clone() { # dir, args...: prints seconds
  local d=$1 s e; shift; s=$(date +%s.%N)
  git clone -q "$@" "$work/$d"
  e=$(date +%s.%N)
  [ "$(git -C "$work/$d" rev-parse HEAD)" = "$head_sha" ] || { echo "clone $d is wrong" >&2; exit 1; }
  rm -rf "${work:?}/$d"
  awk -v s="$s" -v e="$e" 'BEGIN { printf "%.2f", e - s }'
}
median() { tr ' ' '\n' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
url="http://127.0.0.1:$HOARD/git/up/busy.git"

echo "== clones"
direct=$(for i in $(seq 1 "$runs"); do clone direct "http://127.0.0.1:$D/busy.git"; echo -n " "; done | median)
b0=$(upbytes); mirror_everything=$(clone everything --mirror "http://127.0.0.1:$D/busy.git"); everything_bytes=$(( $(upbytes) - b0 ))
b0=$(upbytes); cold=$(clone cold "$url"); cold_bytes=$(( $(upbytes) - b0 ))
mirror_mb=$(du -sm "$work/hoard-data/git/up/busy.git" | cut -f1)
c0=$(cpu); warm=$(for i in $(seq 1 "$runs"); do clone warm "$url"; echo -n " "; done | median); warm_cpu=$(( $(cpu) - c0 ))
b0=$(upbytes); c0=$(cpu)
bundle=$(for i in $(seq 1 "$runs"); do clone bundle "--bundle-uri=$url/-/bundle" "$url"; echo -n " "; done | median)
bundle_cpu=$(( $(cpu) - c0 )); bundle_bytes=$(( $(upbytes) - b0 ))
# A pull request's head, by name, through Hoard: fetched into the mirror on demand.
git clone -q "$url" "$work/pr"
pr=$(( unique > 0 ? pulls / unique : 1 ))
s=$(date +%s.%N); git -C "$work/pr" fetch -q origin "refs/pull/$pr/head"; e=$(date +%s.%N)
[ "$(git -C "$work/pr" rev-parse FETCH_HEAD)" = "$(git -C "$work/repos/busy.git" rev-parse "refs/pull/$pr/head")" ] || { echo "pull request fetch is wrong" >&2; exit 1; }
pr_s=$(awk -v s="$s" -v e="$e" 'BEGIN { printf "%.2f", e - s }')
per() { awk -v t="$1" -v n="$runs" -v k="$ticks" 'BEGIN { printf "%.3f", t / k / n }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

cat >> "$here/RESULTS.md" <<MD

# Benchmark: a GitHub-style repository, thousands of pull-request refs

Produced by \`bench/git-refs.sh\` on $(date -u +%Y-%m-%d). The real pallets/flask is not reachable from this machine, so
the repository is made to its shape: $commits commits on main with tags, $pulls \`refs/pull/N/head\`, $unique of them at
commits of their own (a 20 KB random file each, reachable only from that ref); $refs refs, ${repo_mb} MB bare after gc.
Served by git http-backend behind nginx on loopback; git $(git --version | cut -d' ' -f3); medians of $runs clones.

| clone | time | Hoard / direct | upstream bytes |
| --- | ---: | ---: | ---: |
| direct from http-backend | ${direct} s | 1.00× | |
| \`git clone --mirror\` direct (every ref: what Hoard's mirror fetched before) | ${mirror_everything} s | | $(mb "$everything_bytes") MB |
| through Hoard, cold (mirror of heads and tags made) | ${cold} s | $(ratio "$cold" "$direct")× | **$(mb "$cold_bytes") MB** (mirror and the client's discovery) |
| through Hoard, warm (pack cache) | ${warm} s | **$(ratio "$warm" "$direct")×** | |
| through Hoard, warm, \`--bundle-uri\` (bundle from Hoard, then a fetch) | ${bundle} s | $(ratio "$bundle" "$direct")× | $(mb "$bundle_bytes") MB (discovery) |
| \`git fetch origin refs/pull/$pr/head\` after a clone (on-demand fetch into the mirror) | ${pr_s} s | | |

The mirror holds ${mirror_mb} MB. Hoard's CPU per clone: $(per "$warm_cpu") s warm from the pack cache,
$(per "$bundle_cpu") s with the bundle (the client's follow-up fetch has \`have\` lines, so Hoard runs upload-pack for it).
MD
tail -n 18 "$here/RESULTS.md"
