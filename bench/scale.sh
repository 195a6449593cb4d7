#!/usr/bin/env bash
# Hoard with many keys, through its public HTTP interface only: unique /files/ keys from a local nginx that answers
# any path with a small body of its own. At each size: RSS and RSS per key, SQLite bytes per key, miss and hit rates,
# restart time to the first HIT; at the largest size, the time the background evictor takes to evict half the store
# while hits run (their latency). Appends to bench/RESULTS.md. Needs nginx-light, wrk, curl.
#   BENCH_SCALE_SIZES="1000 100000 1000000" (default "1000 100000"; 1M takes about 15 minutes on 2 cores)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
work="$here/work-scale"
sizes=${BENCH_SCALE_SIZES:-"1000 100000"}
threads=2; conns=32
rm -rf "$work"; mkdir -p "$work"/{logs,hoard-data}
pids=()
hoard_pid=""
cleanup() { for p in "${pids[@]}" $hoard_pid; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
. "$here/git-lib.sh"   # free_port, wait_port

U=$(free_port); HOARD=$(free_port)
cat > "$work/nginx.conf" <<CONF
daemon off; master_process off; user root; pid $work/nginx.pid; error_log $work/logs/nginx.error.log warn;
events { worker_connections 4096; }
http { access_log off; client_body_temp_path $work/b; proxy_temp_path $work/p; fastcgi_temp_path $work/f; uwsgi_temp_path $work/u; scgi_temp_path $work/s;
  server { listen 127.0.0.1:$U; location / { default_type application/octet-stream; return 200 "content of \$uri, a file of its own: $(printf 'x%.0s' $(seq 1 500))\n"; } } }
CONF
nginx -p "$work" -c "$work/nginx.conf" -e "$work/logs/nginx.error.log" & pids+=($!)
dotnet publish "$repo/src/Hoard" -c Release -o "$work/hoard-bin" --nologo -v quiet >/dev/null
start_hoard() { # extra flags...
  "$work/hoard-bin/hoard" serve --listen "http://127.0.0.1:$HOARD" --data "$work/hoard-data" --access-log off \
    --files "up=http://127.0.0.1:$U/" "$@" >> "$work/logs/hoard.log" 2>&1 &
  hoard_pid=$!
}
stop_hoard() { kill -TERM "$hoard_pid"; wait "$hoard_pid" 2>/dev/null || true; }
start_hoard; wait_port "$U"; wait_port "$HOARD"

cat > "$work/grow.lua" <<'LUA'
local counter, ids = 0, 0
local per_thread = tonumber(os.getenv("PER_THREAD"))
local prefix = os.getenv("PREFIX")
setup = function(thread) thread:set("id", ids); ids = ids + 1 end
request = function()
  counter = counter + 1
  return wrk.format("GET", "/files/up/" .. prefix .. id .. "-" .. counter)
end
response = function()
  if counter >= per_thread then
    local f = io.open(os.getenv("DONE") .. id, "w"); f:close()
    wrk.thread:stop()
  end
end
LUA
cat > "$work/hits.lua" <<'LUA'
-- Known keys, at random: KEYS is "prefix:per_thread prefix:per_thread ..." of what grow.lua made.
local phases = {}
for p, n in string.gmatch(os.getenv("KEYS"), "(%w+):(%d+)") do phases[#phases + 1] = { p, tonumber(n) } end
local threads = tonumber(os.getenv("THREADS"))
request = function()
  local ph = phases[math.random(#phases)]
  return wrk.format("GET", "/files/up/" .. ph[1] .. math.random(0, threads - 1) .. "-" .. math.random(1, ph[2]))
end
LUA
metric() { curl -s "http://127.0.0.1:$HOARD/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$hoard_pid/status"; }
db_bytes() { du -cb "$work/hoard-data"/index.db* | tail -1 | cut -f1; }
now() { date +%s.%N; }
secs() { awk -v s="$1" -v e="$2" 'BEGIN { printf "%.2f", e - s }'; }

keys_spec=""; have=0; phase=0; rows=""; base_rss=""
for size in $sizes; do
  phase=$((phase + 1)); per=$(( (size - have + threads - 1) / threads ))
  echo "== growing to $size keys"
  s=$(now)
  # wrk's threads stop after their share, but wrk itself waits out -d: it is interrupted once the keys are in.
  rm -f "$work"/done-*
  DONE="$work/done-" PREFIX="p$phase" PER_THREAD=$per wrk -t$threads -c$conns -d3600s -s "$work/grow.lua" "http://127.0.0.1:$HOARD" > "$work/logs/grow-$size.txt" &
  wrk_pid=$!
  until [ "$(ls "$work"/done-* 2>/dev/null | wc -l)" -ge "$threads" ]; do sleep 0.2; done
  e=$(now); kill -INT "$wrk_pid"; wait "$wrk_pid" || true
  keys_spec="$keys_spec p$phase:$per"; entries=$(metric hoard_store_entries); have=$entries
  miss_rate=$(awk -v n="$((per * threads))" -v t="$(secs "$s" "$e")" 'BEGIN { printf "%.0f", n / t }')
  sleep 2; rss=$(rss_kb); base_rss=${base_rss:-$rss}
  KEYS="$keys_spec" THREADS=$threads wrk -t$threads -c$conns -d10s -s "$work/hits.lua" "http://127.0.0.1:$HOARD" > "$work/logs/hits-$size.txt"
  hit_rate=$(awk '/Requests\/sec/ {printf "%.0f", $2}' "$work/logs/hits-$size.txt")
  hit_misses=$(awk '/Non-2xx/ {print $5}' "$work/logs/hits-$size.txt"); hit_misses=${hit_misses:-0}
  echo "== restart with $entries keys"
  probe="/files/up/p1" ; probe="${probe}0-1"
  stop_hoard; s=$(now); start_hoard
  until [ "$(curl -s -o /dev/null -w '%header{x-hoard-cache}' "http://127.0.0.1:$HOARD$probe" 2>/dev/null)" = "HIT" ]; do sleep 0.02; done
  restart=$(secs "$s" "$(now)")
  per_key=$(awk -v r="$rss" -v b="$base_rss" -v n="$entries" -v n0="${first_entries:-0}" 'BEGIN { if (n > n0 && n0 > 0) printf "%.0f", (r - b) * 1024 / (n - n0); else print "—" }')
  first_entries=${first_entries:-$entries}
  rows="$rows| $entries | $((rss / 1024)) MB | $per_key B | $(( $(db_bytes) / entries )) B | $miss_rate/s | $hit_rate/s | ${restart} s |
"
done

echo "== evicting half the store with hits running"
bytes=$(metric hoard_store_bytes); half=$((bytes / 2)); [ "$half" -lt 1000000 ] && half=1000000
stop_hoard
s=$(now); start_hoard --max-size "$half"; wait_port "$HOARD"
# The evictor starts with the process; hits start as soon as the port is open.
KEYS="$keys_spec" THREADS=$threads wrk -t$threads -c$conns -d20s --latency -s "$work/hits.lua" "http://127.0.0.1:$HOARD" > "$work/logs/evict-hits.txt" &
wrk_pid=$!
until b=$(metric hoard_store_bytes) && [ -n "$b" ] && [ "$b" -le "$half" ]; do sleep 0.05; done
evict_s=$(secs "$s" "$(now)")
wait "$wrk_pid" || true
p99=$(awk '$1 == "99%" {print $2}' "$work/logs/evict-hits.txt"); max=$(awk '/Latency/ && !/Distribution/ {print $4; exit}' "$work/logs/evict-hits.txt")

cat >> "$here/RESULTS.md" <<MD

# Benchmark: scale, many keys on one node

Produced by \`bench/scale.sh\` on $(date -u +%Y-%m-%d). Unique \`/files/\` keys from a local nginx answering every path with a
body of its own (~550 bytes), grown through Hoard's HTTP interface with wrk ($threads threads, $conns connections);
Hoard's Release build, access log off. RSS per key is the growth from the smallest size; SQLite bytes include the WAL.
"Restart" is from starting the process to the first \`HIT\` of a known key. Hits: 10 s of random known keys.

| keys | RSS | RSS per key | SQLite per key | misses (grow) | hits | restart to first HIT |
| ---: | ---: | ---: | ---: | ---: | ---: | ---: |
${rows}
Evicting half the store ($entries keys, restarted with \`--max-size\` half its bytes): back under the limit
**${evict_s} s** after the process started, the background evictor working while the port was open. Meanwhile (20 s
from the port opening) wrk asked for random known keys, about half of them evicted by then (misses, fetched again
and evicted again as the store stays full, with the start-up file check running too): latency p99 ${p99}, max ${max}.
MD
tail -n 16 "$here/RESULTS.md"
