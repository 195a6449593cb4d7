#!/usr/bin/env bash
# Cache hits of this checkout against another revision of Hoard, in one run, alternating so that both see the same
# machine: a 3 KB wheel through /simple/ (PyPI's hit by key alone) and a 3 KB file through /files/, with nginx serving
# the same file straight from disk as the reference. Both Hoards run their Release build with default settings.
# Prints req/s per round and the medians' ratio; writes nothing to RESULTS.md (quote it where a change claims
# "no slower"). Needs nginx-light, wrk, curl, git.
#   bench/compare-hits.sh REV [ROUNDS]     e.g. bench/compare-hits.sh main~5 3
set -euo pipefail
rev=${1:?usage: compare-hits.sh REV [ROUNDS]}
rounds=${2:-3}
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
work="$here/work-compare"
duration=${BENCH_DURATION:-10}
connections=${BENCH_CONNECTIONS:-64}
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; git -C "$repo" worktree remove --force "$work/rev-src" 2>/dev/null || true; }
trap cleanup EXIT
rm -rf "$work"; mkdir -p "$work"/{up/simple/bench,up/packages,up/f,logs,data-new,data-old}
. "$here/git-lib.sh"   # free_port, wait_port

head -c 3072 /dev/urandom > "$work/up/packages/small-1.0-py3-none-any.whl"
cp "$work/up/packages/small-1.0-py3-none-any.whl" "$work/up/f/small.bin"
sha=$(sha256sum "$work/up/packages/small-1.0-py3-none-any.whl" | cut -d' ' -f1)
echo "<a href=\"../../packages/small-1.0-py3-none-any.whl#sha256=$sha\">small-1.0-py3-none-any.whl</a>" > "$work/up/simple/bench/index.html"

UP=$(free_port); NEW=$(free_port); OLD=$(free_port)
cat > "$work/nginx.conf" <<CONF
daemon off; master_process off; user root; worker_rlimit_nofile 4096; pid $work/nginx.pid; error_log $work/logs/nginx.error.log warn;
events { worker_connections 2048; }
http { access_log off; sendfile on; keepalive_requests 100000; default_type application/octet-stream;
  client_body_temp_path $work/b; proxy_temp_path $work/p; fastcgi_temp_path $work/fc; uwsgi_temp_path $work/u; scgi_temp_path $work/s;
  server { listen 127.0.0.1:$UP; root $work/up; index index.html; } }
CONF
nginx -p "$work" -c "$work/nginx.conf" -e "$work/logs/nginx.error.log" & pids+=($!)

echo "== building this checkout and $rev"
git -C "$repo" worktree add --detach "$work/rev-src" "$rev" >/dev/null 2>&1
dotnet publish "$repo/src/Hoard" -c Release -o "$work/new-bin" --nologo -v quiet >/dev/null
dotnet publish "$work/rev-src/src/Hoard" -c Release -o "$work/old-bin" --nologo -v quiet >/dev/null
for side in new old; do
  port=$NEW; [ "$side" = old ] && port=$OLD
  "$work/$side-bin/hoard" serve --listen "http://127.0.0.1:$port" --data "$work/data-$side" \
    --pypi "up=http://127.0.0.1:$UP/simple/" --files "up=http://127.0.0.1:$UP/f/" > "$work/logs/hoard-$side.log" 2>&1 & pids+=($!)
done
wait_port "$UP"; wait_port "$NEW"; wait_port "$OLD"
for port in $NEW $OLD; do
  for i in 1 2; do
    curl -sf -o /dev/null "http://127.0.0.1:$port/simple/bench/"
    curl -sf -o /dev/null "http://127.0.0.1:$port/simple/bench/small-1.0-py3-none-any.whl"
    curl -sf -o /dev/null "http://127.0.0.1:$port/files/up/small.bin"
  done
done

rps() { wrk -t2 -c"$connections" -d"${duration}s" "$1" > "$work/logs/wrk.txt"; awk '/Requests\/sec/ {printf "%.0f", $2}' "$work/logs/wrk.txt"; }
median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
declare -A runs
for r in $(seq 1 "$rounds"); do
  for case in nginx pypi-new pypi-old files-new files-old; do
    case $case in
      nginx) url="http://127.0.0.1:$UP/packages/small-1.0-py3-none-any.whl" ;;
      pypi-new) url="http://127.0.0.1:$NEW/simple/bench/small-1.0-py3-none-any.whl" ;;
      pypi-old) url="http://127.0.0.1:$OLD/simple/bench/small-1.0-py3-none-any.whl" ;;
      files-new) url="http://127.0.0.1:$NEW/files/up/small.bin" ;;
      files-old) url="http://127.0.0.1:$OLD/files/up/small.bin" ;;
    esac
    runs[$case]="${runs[$case]:-} $(rps "$url")"
  done
  echo "round $r: nginx ${runs[nginx]##* }, pypi new ${runs[pypi-new]##* } old ${runs[pypi-old]##* }, files new ${runs[files-new]##* } old ${runs[files-old]##* } req/s"
done
m() { median <<<"${runs[$1]}"; }
echo
echo "3 KB hits, median of $rounds rounds of ${duration}s (wrk -t2 -c$connections), this checkout against $rev:"
echo "| path | nginx | new | old ($rev) | new / old |"
echo "| --- | ---: | ---: | ---: | ---: |"
for p in pypi files; do
  echo "| $p | $(m nginx) | $(m $p-new) | $(m $p-old) | $(awk -v a="$(m $p-new)" -v b="$(m $p-old)" 'BEGIN { printf "%.3f", a / b }') |"
done
