#!/usr/bin/env bash
# N = 1, 4 and 8 Hoard nodes all fetching the same cold 200 MB file at once through an upstream limited to
# 40 MB/s per connection: clustered (one Redis) against N independent nodes. Upstream bytes from nginx's log;
# time until the last node's client has the whole file. Writes its section of bench/RESULTS.md (replacing an
# earlier one). Needs redis-server, nginx-light, openssl. Partial runs: BENCH_CLUSTER_NS="8" BENCH_CLUSTER_MODES=cluster.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
work="$here/work-cluster"
mb=${BENCH_CLUSTER_MB:-200}
rate=${BENCH_CLUSTER_RATE:-40m}
warmups=${BENCH_CLUSTER_WARMUPS:-3}
rm -rf "$work"; mkdir -p "$work"/{logs,up/simple/big,up/packages}
# The clients' copies go to memory when /dev/shm exists and are hashed after the clock stops: here the clients
# share the CPU and the disk with the nodes they are measuring, and a real fleet's clients do not.
sink=$(mktemp -d /dev/shm/hoard-bench.XXXXXX 2>/dev/null || { mkdir -p "$work/sink"; echo "$work/sink"; })
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; [ "$sink" = "$work/sink" ] || rm -rf "$sink"; }
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

cpu_of() { # pids...: CPU seconds (user + system) the processes used so far
  local hz; hz=$(getconf CLK_TCK)
  cat $(printf '/proc/%s/stat ' "$@") | awk -v hz="$hz" '{ c += ($14 + $15) / hz } END { printf "%.2f", c }'
}

fetch_all() { # file sha ports...: every node asked for the file at the same moment; every copy's sha256 checked
  local file=$1 sha=$2 p curls=() got; shift 2
  # nginx's limit_rate counts whole seconds (it allows rate × (elapsed seconds + 1)), so one download of 200 MB
  # at 40 MB/s takes between 4 and 5 s depending on where in a second it starts. Every timed fetch starts half-way
  # through a wall-clock second, so runs compare like with like.
  sleep "$(awk -v t="$(date +%s.%N)" 'BEGIN { d = 1.5 - (t - int(t)); if (d > 1) d -= 1; printf "%.3f", d }')"
  date +%s.%N > "$work/start"
  for p in "$@"; do
    ( curl -sf -o "$sink/out-$p" "http://127.0.0.1:$p/simple/big/$file"; date +%s.%N > "$work/end-$p" ) & curls+=($!)
  done
  wait "${curls[@]}"
  for p in "$@"; do got=$(openssl dgst -sha256 -r < "$sink/out-$p" | cut -d' ' -f1); rm -f "$sink/out-$p"; [ "$got" = "$sha" ] || { echo "node $p got wrong bytes ($got)" >&2; exit 1; }; done
  cat "$work"/end-* | sort -n | tail -1 > "$work/done"
  for p in "$@"; do awk -v s="$(cat "$work/start")" '{ printf "%.2f ", $1 - s }' "$work/end-$p"; done > "$work/times"
  rm -f "$work"/end-*
}

run() { # mode n rep: every run has its own file names, data dirs and log lines
  local mode=$1 n=$2 tag="$1-$2-$3" ports=() node_pids=() i p s e c0 f
  local file="big-$tag-1.0-py3-none-any.whl" warm=() wsha=()
  for i in $(seq 1 "$warmups"); do warm+=("warm$i-$tag-1.0-py3-none-any.whl"); done
  : > "$work/up/simple/big/index.html"
  for f in "$file" "${warm[@]}"; do
    if [ "$f" = "$file" ]; then head -c $((mb * 1048576)) /dev/urandom > "$work/up/packages/$f"; else head -c $((16 * 1048576)) /dev/urandom > "$work/up/packages/$f"; fi
    printf '<a href="../../packages/%s#sha256=%s">%s</a>\n' "$f" "$(sha256sum "$work/up/packages/$f" | cut -d' ' -f1)" "$f" >> "$work/up/simple/big/index.html"
  done
  local sha; sha=$(sha256sum "$work/up/packages/$file" | cut -d' ' -f1)
  for f in "${warm[@]}"; do wsha+=("$(sha256sum "$work/up/packages/$f" | cut -d' ' -f1)"); done
  for i in $(seq 1 "$n"); do
    p=$(free_port); ports+=("$p")
    local cluster=()
    [ "$mode" = cluster ] && cluster=(--cluster-redis "redis://127.0.0.1:$REDIS" --advertise "http://127.0.0.1:$p" --cluster-secret bench-cluster-secret-0123)
    rm -rf "$work/data-$tag-$i"
    "$work/hoard-bin/hoard" serve --listen "http://127.0.0.1:$p" --data "$work/data-$tag-$i" --access-log off --index-ttl 0 \
      --pypi "http://127.0.0.1:$UP/simple/" "${cluster[@]}" > "$work/logs/node-$tag-$i.log" 2>&1 &
    node_pids+=($!)
  done
  for p in "${ports[@]}"; do wait_port "$p"; curl -sf -o /dev/null "http://127.0.0.1:$p/simple/big/"; done
  [ "$mode" = cluster ] && sleep 4 # heartbeats
  # Warm-up: a few 16 MB files through the same path, so the figures are those of nodes that have been running
  # (the JIT done with its tiers), not of processes started a moment ago.
  for i in "${!warm[@]}"; do fetch_all "${warm[$i]}" "${wsha[$i]}" "${ports[@]}"; sleep 1; done
  c0=$(cpu_of "${node_pids[@]}")
  [ -n "${BENCH_CLUSTER_DEBUG:-}" ] && for i in "${node_pids[@]}"; do cat /proc/$i/task/*/status | awk '/voluntary_ctxt/ {s+=$2} END {print s}'; done > "$work/ctx0"
  fetch_all "$file" "$sha" "${ports[@]}"
  s=$(cat "$work/start"); e=$(cat "$work/done")
  [ -n "${BENCH_CLUSTER_DEBUG:-}" ] && for i in "${node_pids[@]}"; do cat /proc/$i/task/*/status | awk '/voluntary_ctxt/ {s+=$2} END {print s}'; done | paste -d' ' "$work/ctx0" - | awk '{printf "%d ", $2-$1} END {print " context switches per node"}' >&2
  local cpu; cpu=$(awk -v a="$(cpu_of "${node_pids[@]}")" -v b="$c0" 'BEGIN { printf "%.2f", a - b }')
  echo "$mode N=$n: each node's client done after (s): $(cat "$work/times"); CPU seconds of all nodes: $cpu" >&2
  kill "${node_pids[@]}" 2>/dev/null || true; wait "${node_pids[@]}" 2>/dev/null || true
  rm -rf "$work"/data-"$tag"-*
  rm -f "$work/up/packages/$file" "${warm[@]/#/$work/up/packages/}"
  local bytes; bytes=$(grep " /packages/$file " "$work/logs/access.log" | awk '{s+=$4} END {print s+0}')
  awk -v s="$s" -v e="$e" -v b="$bytes" -v m="$mb" -v c="$cpu" 'BEGIN { printf "%.2f %.2f %s\n", e - s, b / (m * 1048576), c }'
}
median() { tr ' ' '\n' | grep . | sort -n | awk '{ v[NR] = $1 } END { printf "%.2f", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
range() { tr ' ' '\n' | grep . | sort -n | awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%.2f–%.2f", lo, hi }'; }
reps=${BENCH_CLUSTER_REPS:-3}
declare -A t x c r
for n in ${BENCH_CLUSTER_NS:-1 4 8}; do
  for mode in ${BENCH_CLUSTER_MODES:-independent cluster}; do
    times="" ups="" cpus=""
    for rep in $(seq 1 "$reps"); do
      read -r time up cpu < <(run "$mode" "$n" "$rep")
      times+="$time "; ups+="$up "; cpus+="$cpu "
      echo "$mode N=$n: $time s, upstream ${up}x, node CPU $cpu s"
    done
    t[$mode$n]=$(median <<< "$times"); r[$mode$n]=$(range <<< "$times"); c[$mode$n]=$(median <<< "$cpus")
    x[$mode$n]=$(tr ' ' '\n' <<< "$ups" | grep . | sort -n | tail -1) # the worst run
  done
done
[ -n "${BENCH_CLUSTER_NS:-}${BENCH_CLUSTER_MODES:-}" ] && exit 0 # a partial run: figures printed above, RESULTS.md untouched
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
row() { # n
  echo "| $1 | ${t[independent$1]} s (${r[independent$1]}), ${x[independent$1]}×, ${c[independent$1]} s | ${t[cluster$1]} s (${r[cluster$1]}), **${x[cluster$1]}×**, ${c[cluster$1]} s | **$(ratio "${t[cluster$1]}" "${t[independent1]}")×** |"
}
# This section replaces the one an earlier run wrote; the other benchmarks' sections stay.
results="$here/RESULTS.md"
touch "$results"
awk '/^# Benchmark: cluster/ { skip = 1; next } /^# Benchmark/ { skip = 0 } !skip' "$results" > "$results.tmp"
mv "$results.tmp" "$results"
cat >> "$results" <<MD
# Benchmark: cluster, N nodes fetching one cold ${mb} MB file at once

Produced by \`bench/cluster.sh\` on $(date -u +%Y-%m-%d). N Hoard processes on one machine (loopback), every one
asked for the same uncached ${mb} MB wheel at the same moment, upstream nginx with \`limit_rate $rate\` per connection.
"cluster": the nodes share one redis-server; "independent": no cluster settings. Time from the requests until the
last node's client has the whole file (every copy's sha256 checked), median of $reps runs with the range in
brackets; upstream bytes as a multiple of the file (the worst run); CPU seconds used by all the nodes together.
Each node first served three 16 MB files the same way, so these are running nodes, not freshly started ones.

| N | independent: time, upstream bytes, node CPU | cluster: time, upstream bytes, node CPU | cluster time / one download |
| ---: | ---: | ---: | ---: |
$(row 1)
$(row 4)
$(row 8)

Targets: upstream bytes 1× the file for every N; the last node done within 1.2× the time of one download.
All N nodes and their clients share this machine's 2 cores: N = 8 moves 1.6 GB through 8 processes that hash,
write and serve it, beside 8 clients, in the time one 40 MB/s download takes.
MD
tail -n 16 "$results"
