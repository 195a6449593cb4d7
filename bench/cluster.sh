#!/usr/bin/env bash
# N = 1, 4 and 8 Hoard nodes all fetching the same cold 200 MB file at once through an upstream limited to
# 40 MB/s per connection: clustered (one Redis) against N independent nodes. Upstream bytes from nginx's log;
# time until the last node has the whole file. Appends to bench/RESULTS.md. Needs redis-server, nginx-light.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
work="$here/work-cluster"
mb=${BENCH_CLUSTER_MB:-200}
rate=${BENCH_CLUSTER_RATE:-40m}
rm -rf "$work"; mkdir -p "$work"/{logs,up/simple/big,up/packages}
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
wait_port() { for _ in $(seq 1 300); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; return 1; }

UP=$(free_port); REDIS=$(free_port)
cat > "$work/nginx.conf" <<CONF
daemon off; master_process off; user root; pid $work/nginx.pid; error_log $work/logs/nginx.error.log warn;
events { worker_connections 1024; }
http { log_format counted '\$request_method \$request_uri \$status \$body_bytes_sent'; access_log $work/logs/access.log counted;
  client_body_temp_path $work/b; proxy_temp_path $work/p; fastcgi_temp_path $work/f; uwsgi_temp_path $work/u; scgi_temp_path $work/s;
  server { listen 127.0.0.1:$UP; root $work/up; index index.html; location /packages/ { limit_rate $rate; } } }
CONF
nginx -p "$work" -c "$work/nginx.conf" -e "$work/logs/nginx.error.log" & pids+=($!)
redis-server --port "$REDIS" --bind 127.0.0.1 --save "" --appendonly no > "$work/logs/redis.log" 2>&1 & pids+=($!)
dotnet publish "$repo/src/Hoard" -c Release -o "$work/hoard-bin" --nologo -v quiet >/dev/null
wait_port "$UP"; wait_port "$REDIS"

run() { # mode n
  local mode=$1 n=$2 file="big-$1-$2-1.0-py3-none-any.whl" ports=() node_pids=() i p s e
  head -c $((mb * 1048576)) /dev/urandom > "$work/up/packages/$file"
  local sha; sha=$(sha256sum "$work/up/packages/$file" | cut -d' ' -f1)
  echo "<a href=\"../../packages/$file#sha256=$sha\">$file</a>" > "$work/up/simple/big/index.html"
  for i in $(seq 1 "$n"); do
    p=$(free_port); ports+=("$p")
    local cluster=()
    [ "$mode" = cluster ] && cluster=(--cluster-redis "redis://127.0.0.1:$REDIS" --advertise "http://127.0.0.1:$p" --cluster-secret bench-cluster-secret-0123)
    "$work/hoard-bin/hoard" serve --listen "http://127.0.0.1:$p" --data "$work/data-$mode-$n-$i" --access-log off --index-ttl 0 \
      --pypi "http://127.0.0.1:$UP/simple/" "${cluster[@]}" > "$work/logs/node-$mode-$n-$i.log" 2>&1 &
    node_pids+=($!)
  done
  for p in "${ports[@]}"; do wait_port "$p"; curl -sf -o /dev/null "http://127.0.0.1:$p/simple/big/"; done
  [ "$mode" = cluster ] && sleep 4 # heartbeats
  s=$(date +%s.%N)
  for p in "${ports[@]}"; do curl -sf -o "$work/out-$p" "http://127.0.0.1:$p/simple/big/$file" & done
  wait $(jobs -p | grep -v -w -e "${pids[0]}" -e "${pids[1]}" $(printf -- '-e %s ' "${node_pids[@]}")) 2>/dev/null || true
  e=$(date +%s.%N)
  for p in "${ports[@]}"; do [ "$(sha256sum < "$work/out-$p" | cut -d' ' -f1)" = "$sha" ] || { echo "node $p got wrong bytes" >&2; exit 1; }; rm -f "$work/out-$p"; done
  kill "${node_pids[@]}" 2>/dev/null || true; wait "${node_pids[@]}" 2>/dev/null || true
  rm -f "$work/up/packages/$file"
  local bytes; bytes=$(grep " /packages/$file " "$work/logs/access.log" | awk '{s+=$4} END {print s+0}')
  awk -v s="$s" -v e="$e" -v b="$bytes" -v m="$mb" 'BEGIN { printf "%.2f %.2f\n", e - s, b / (m * 1048576) }'
}
declare -A t x
for n in 1 4 8; do
  for mode in independent cluster; do
    read -r t[$mode$n] x[$mode$n] < <(run "$mode" "$n")
    echo "$mode N=$n: ${t[$mode$n]} s, upstream ${x[$mode$n]}x"
  done
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
cat >> "$here/RESULTS.md" <<MD

# Benchmark: cluster, N nodes fetching one cold ${mb} MB file at once

Produced by \`bench/cluster.sh\` on $(date -u +%Y-%m-%d). N Hoard processes on one machine (loopback), every one
asked for the same uncached ${mb} MB wheel at the same moment, upstream nginx with \`limit_rate $rate\` per connection.
"cluster": the nodes share one redis-server; "independent": no cluster settings. Time until the last node has the
whole file (every copy's sha256 checked); upstream bytes as a multiple of the file.

| N | independent: time, upstream bytes | cluster: time, upstream bytes | cluster time / one download |
| ---: | ---: | ---: | ---: |
| 1 | ${t[independent1]} s, ${x[independent1]}× | ${t[cluster1]} s, ${x[cluster1]}× | $(ratio "${t[cluster1]}" "${t[independent1]}")× |
| 4 | ${t[independent4]} s, ${x[independent4]}× | ${t[cluster4]} s, **${x[cluster4]}×** | **$(ratio "${t[cluster4]}" "${t[independent1]}")×** |
| 8 | ${t[independent8]} s, ${x[independent8]}× | ${t[cluster8]} s, **${x[cluster8]}×** | **$(ratio "${t[cluster8]}" "${t[independent1]}")×** |

Targets: upstream bytes 1× the file for every N; the last node done within 1.2× the time of one download.
All N nodes share this machine's 2 cores, so the cluster's fan-out (one node streaming to the others while it
downloads) competes with the download itself for CPU.
MD
tail -n 12 "$here/RESULTS.md"
