#!/usr/bin/env bash
# Hoard against the nginx recipe it replaces, on loopback, in one run on one machine.
#   upstream  : nginx serving a static PEP 503 index and its files (the "internet")
#   recipe    : nginx forwarding /simple/ and keeping /packages/ forever with proxy_store
#   hoard     : the Release build, default settings, access log on (nginx logs every request too)
# Writes bench/RESULTS.md. Needs nginx-light, wrk and curl (apt-get install nginx-light wrk curl).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
work="$here/work"
duration=${BENCH_DURATION:-10}
connections=${BENCH_CONNECTIONS:-64}
big_mb=${BENCH_BIG_MB:-200}
rate=${BENCH_RATE:-40m}
rm -rf "$work"; mkdir -p "$work"/{up/simple/bench,up/packages,recipe-cache/tmp,hoard-data,logs}
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
wait_port() { for _ in $(seq 1 200); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; return 1; }

echo "== files"
head -c 3072 /dev/urandom > "$work/up/packages/small-1.0-py3-none-any.whl"
head -c 1048576 /dev/urandom > "$work/up/packages/medium-1.0-py3-none-any.whl"
head -c $((big_mb * 1048576)) /dev/urandom > "$work/up/packages/big1-1.0-py3-none-any.whl"
head -c $((big_mb * 1048576)) /dev/urandom > "$work/up/packages/big2-1.0-py3-none-any.whl"
head -c $((big_mb * 1048576)) /dev/urandom > "$work/up/packages/big3-1.0-py3-none-any.whl"
head -c $((big_mb * 1048576)) /dev/urandom > "$work/up/packages/big4-1.0-py3-none-any.whl"
{
  echo '<!DOCTYPE html><html><body>'
  for f in "$work"/up/packages/*.whl; do
    n=$(basename "$f"); s=$(sha256sum "$f" | cut -d' ' -f1)
    echo "<a href=\"../../packages/$n#sha256=$s\">$n</a><br/>"
  done
  echo '</body></html>'
} > "$work/up/simple/bench/index.html"

UP=$(free_port); RECIPE=$(free_port); HOARD=$(free_port)
nginx_conf() { # name port body
  cat > "$work/$1.conf" <<CONF
daemon off; master_process off; user root; worker_rlimit_nofile 4096;
pid $work/$1.pid; error_log $work/logs/$1.error.log warn;
events { worker_connections 2048; }
http {
  log_format counted '\$request_method \$request_uri \$status \$body_bytes_sent';
  access_log $work/logs/$1.access.log counted;
  sendfile on; tcp_nopush on; keepalive_requests 100000;
  default_type application/octet-stream;
  client_body_temp_path $work/$1-body; proxy_temp_path $work/$1-proxy;
  fastcgi_temp_path $work/$1-fcgi; uwsgi_temp_path $work/$1-uwsgi; scgi_temp_path $work/$1-scgi;
  server { listen 127.0.0.1:$2; $3 }
}
CONF
}
nginx_conf upstream "$UP" "root $work/up; index index.html; limit_rate $rate;"
nginx_conf recipe "$RECIPE" "
  location /simple/ { proxy_pass http://127.0.0.1:$UP; }
  location /packages/ { root $work/recipe-cache; try_files \$uri @fetch; }
  location @fetch { proxy_pass http://127.0.0.1:$UP; proxy_store on; proxy_store_access user:rw group:rw all:r;
                    proxy_temp_path $work/recipe-cache/tmp; root $work/recipe-cache; proxy_buffering on; }"
nginx -p "$work" -c "$work/upstream.conf" -e "$work/logs/upstream.error.log" & pids+=($!)
nginx -p "$work" -c "$work/recipe.conf" -e "$work/logs/recipe.error.log" & pids+=($!)

echo "== build"
dotnet publish "$repo/src/Hoard" -c Release -o "$work/hoard-bin" --nologo -v quiet >/dev/null
"$work/hoard-bin/hoard" serve --listen "http://127.0.0.1:$HOARD" --data "$work/hoard-data" \
  --pypi "up=http://127.0.0.1:$UP/simple/" > "$work/logs/hoard.log" 2>&1 & hoard_pid=$!; pids+=($hoard_pid)
wait_port "$UP"; wait_port "$RECIPE"; wait_port "$HOARD"

recipe_url() { echo "http://127.0.0.1:$RECIPE/packages/$1"; }
hoard_url() { echo "http://127.0.0.1:$HOARD/simple/bench/$1"; }
curl -sf "http://127.0.0.1:$HOARD/simple/bench/" >/dev/null

rps() { wrk -t2 -c"$connections" -d"${duration}s" --latency "$1" > "$work/logs/wrk.$2.txt"; awk '/Requests\/sec/ {print $2}' "$work/logs/wrk.$2.txt"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

echo "== cache hits (wrk, $connections connections, ${duration}s each)"
for f in small medium; do
  n="$f-1.0-py3-none-any.whl"
  curl -sf -o /dev/null "$(recipe_url "$n")"; curl -sf -o /dev/null "$(hoard_url "$n")"
  curl -sf -o /dev/null "$(recipe_url "$n")"; curl -sf -o /dev/null "$(hoard_url "$n")"
done
small_nginx=$(rps "$(recipe_url small-1.0-py3-none-any.whl)" small-nginx)
small_hoard=$(rps "$(hoard_url small-1.0-py3-none-any.whl)" small-hoard)
medium_nginx=$(rps "$(recipe_url medium-1.0-py3-none-any.whl)" medium-nginx)
medium_hoard=$(rps "$(hoard_url medium-1.0-py3-none-any.whl)" medium-hoard)
gbps() { awk -v r="$1" 'BEGIN { printf "%.2f", r * 1048576 / 1e9 }'; }

echo "== cold ${big_mb} MB file through an upstream limited to $rate per connection"
cold() { # url-prefix-fn file clients label
  local fn=$1 file=$2 clients=$3 label=$4 before_req before_bytes start
  before_req=$(grep -c " /packages/$file " "$work/logs/upstream.access.log" || true)
  start=$(date +%s.%N)
  for i in $(seq 1 "$clients"); do
    curl -s -o /dev/null -w '%{time_starttransfer} %{time_total} %{size_download}\n' "$($fn "$file")" > "$work/logs/cold.$label.$i.txt" &
  done
  wait $(jobs -p | grep -v -w -e "${pids[0]}" -e "${pids[1]}" -e "$hoard_pid") 2>/dev/null || true
  local end; end=$(date +%s.%N)
  local reqs bytes ttfb total
  reqs=$(grep " /packages/$file " "$work/logs/upstream.access.log" | wc -l)
  bytes=$(grep " /packages/$file " "$work/logs/upstream.access.log" | awk '{s+=$4} END {print s+0}')
  ttfb=$(cat "$work"/logs/cold."$label".*.txt | awk '{ if (max == "" || $1 > max) max = $1 } END { printf "%.2f", max }')
  total=$(awk -v s="$start" -v e="$end" 'BEGIN { printf "%.2f", e - s }')
  sizes=$(cat "$work"/logs/cold."$label".*.txt | awk '{print $3}' | sort -u | tr '\n' ' ')
  echo "$((reqs - before_req)) $bytes $ttfb $total $sizes"
}
read -r n1_req n1_bytes n1_ttfb n1_total _ < <(cold recipe_url big1-1.0-py3-none-any.whl 1 nginx1)
read -r h1_req h1_bytes h1_ttfb h1_total _ < <(cold hoard_url big2-1.0-py3-none-any.whl 1 hoard1)
read -r n8_req n8_bytes n8_ttfb n8_total n8_sizes < <(cold recipe_url big3-1.0-py3-none-any.whl 8 nginx8)
read -r h8_req h8_bytes h8_ttfb h8_total h8_sizes < <(cold hoard_url big4-1.0-py3-none-any.whl 8 hoard8)
# Every client must have received the whole file.
big_bytes=$((big_mb * 1048576))
for s in $n8_sizes $h8_sizes; do [ "$s" = "$big_bytes" ] || { echo "a client got $s bytes, expected $big_bytes" >&2; exit 1; }; done
[ "$(sha256sum < "$work/hoard-data/blobs/sha256/$(sha256sum "$work/up/packages/big4-1.0-py3-none-any.whl" | cut -c1-2)/$(sha256sum "$work/up/packages/big4-1.0-py3-none-any.whl" | cut -d' ' -f1)" | cut -d' ' -f1)" = "$(sha256sum "$work/up/packages/big4-1.0-py3-none-any.whl" | cut -d' ' -f1)" ]

rss_mb=$(awk '/VmHWM/ {printf "%.0f", $2 / 1024}' "/proc/$hoard_pid/status")
cores=$(nproc); cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')
mb() { awk -v b="$1" 'BEGIN { printf "%.0f", b / 1048576 }'; }

cat > "$here/RESULTS.md" <<MD
# Benchmark: Hoard against the nginx recipe

Produced by \`bench/run.sh\` on $(date -u +%Y-%m-%d) ($cores cores, $cpu). Everything on loopback in one run:
an upstream nginx serving a static PEP 503 index, the nginx recipe (\`proxy_pass\` for \`/simple/\`,
\`proxy_store\` + \`try_files\` for \`/packages/\`, \`sendfile on\`) and Hoard's Release build with default settings.
Both proxies write an access-log line per request. wrk shares the machine's $cores cores with the server it measures.

## Cache hits (wrk -t2 -c$connections -d${duration}s)

| file | nginx recipe | Hoard | Hoard / nginx | target |
| --- | ---: | ---: | ---: | ---: |
| 3 KB wheel | $small_nginx req/s | $small_hoard req/s | **$(ratio "$small_hoard" "$small_nginx")×** | ≥ 1.0× |
| 1 MB wheel | $(gbps "$medium_nginx") GB/s ($medium_nginx req/s) | $(gbps "$medium_hoard") GB/s ($medium_hoard req/s) | **$(ratio "$medium_hoard" "$medium_nginx")×** | ≥ 0.9× |

## A cold ${big_mb} MB file, upstream limited to $rate per connection (nginx \`limit_rate\`)

| run | upstream GETs | upstream MB | slowest time to first byte | time until the last client is done |
| --- | ---: | ---: | ---: | ---: |
| nginx recipe, 1 client | $n1_req | $(mb "$n1_bytes") | ${n1_ttfb} s | ${n1_total} s |
| Hoard, 1 client | $h1_req | $(mb "$h1_bytes") | ${h1_ttfb} s | ${h1_total} s |
| nginx recipe, 8 clients at once | $n8_req | $(mb "$n8_bytes") | ${n8_ttfb} s | ${n8_total} s |
| Hoard, 8 clients at once | $h8_req | $(mb "$h8_bytes") | ${h8_ttfb} s | ${h8_total} s |

Hoard, 8 clients against 1 client: **$(ratio "$h8_total" "$h1_total")×** the time (target ≤ 1.1×), $h8_req upstream download (target 1).
The limit is per connection, so each of the recipe's eight downloads got $rate of its own: the recipe is not held back by
sharing, it simply fetches the file $n8_req times ($(mb "$n8_bytes") MB from upstream instead of $(mb "$h8_bytes") MB).

## Memory

Hoard's peak RSS over the whole run (VmHWM): **$rss_mb MB** (target < 300 MB).
MD
cat "$here/RESULTS.md"
