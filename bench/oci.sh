#!/usr/bin/env bash
# Image pulls with skopeo through docker-registry in proxy: mode and through Hoard, against the same upstream
# (docker-registry behind nginx, whose access log counts the bytes that cross the "WAN"). Appends to bench/RESULTS.md.
# Needs docker-registry, skopeo, nginx-light, python3.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
work="$here/work-oci"
layers=${BENCH_OCI_LAYERS:-4}
layer_mb=${BENCH_OCI_LAYER_MB:-25}
rate=${BENCH_OCI_RATE:-40m}
rm -rf "$work"; mkdir -p "$work"/{logs,up-storage,proxy-storage,hoard-data}
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
wait_port() { for _ in $(seq 1 200); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; return 1; }
registry_conf() { # file port storage [proxy-url]
  { echo "version: 0.1"; echo "log: {level: error}"; echo "storage: {filesystem: {rootdirectory: $3}, delete: {enabled: true}}"; echo "http: {addr: 127.0.0.1:$2}";
    if [ -n "${4:-}" ]; then echo "proxy: {remoteurl: $4}"; fi; } > "$1"; }

REG=$(free_port); WAN=$(free_port); PROXY=$(free_port); HOARD=$(free_port)
registry_conf "$work/up.yml" "$REG" "$work/up-storage"
docker-registry serve "$work/up.yml" > "$work/logs/up.log" 2>&1 & pids+=($!)
cat > "$work/wan.conf" <<CONF
daemon off; master_process off; user root; pid $work/wan.pid; error_log $work/logs/wan.error.log warn;
events { worker_connections 1024; }
http {
  log_format counted '\$request_method \$request_uri \$status \$body_bytes_sent';
  access_log $work/logs/wan.access.log counted;
  client_body_temp_path $work/wan-body; proxy_temp_path $work/wan-proxy; fastcgi_temp_path $work/wan-f; uwsgi_temp_path $work/wan-u; scgi_temp_path $work/wan-s;
  server { listen 127.0.0.1:$WAN; client_max_body_size 0; location / { proxy_pass http://127.0.0.1:$REG; proxy_buffering off; limit_rate $rate; proxy_set_header Host \$http_host; } }
}
CONF
nginx -p "$work" -c "$work/wan.conf" -e "$work/logs/wan.error.log" & pids+=($!)
registry_conf "$work/proxy.yml" "$PROXY" "$work/proxy-storage" "http://127.0.0.1:$WAN"
docker-registry serve "$work/proxy.yml" > "$work/logs/proxy.log" 2>&1 & pids+=($!)
dotnet publish "$repo/src/Hoard" -c Release -o "$work/hoard-bin" --nologo -v quiet >/dev/null
"$work/hoard-bin/hoard" serve --listen "http://127.0.0.1:$HOARD" --data "$work/hoard-data" --access-log off \
  --registry "up=http://127.0.0.1:$WAN/" --default-registry up > "$work/logs/hoard.log" 2>&1 & pids+=($!)
wait_port "$REG"; wait_port "$WAN"; wait_port "$PROXY"; wait_port "$HOARD"

echo "== images ($layers layers of $layer_mb MB)"
for img in one eight; do
  python3 "$here/make_oci_layout.py" "$work/layout-$img" v1 "$layers" "$layer_mb"
  skopeo copy --preserve-digests --dest-tls-verify=false "oci:$work/layout-$img:v1" "docker://127.0.0.1:$REG/bench/$img:v1" >/dev/null
done
image_bytes=$(find "$work/layout-one/blobs" -type f -printf '%s\n' | awk '{s+=$1} END {print s}')
image_mb=$(( image_bytes / 1048576 ))

wan_bytes() { awk '{s+=$4} END {print s+0}' "$work/logs/wan.access.log"; }
pull() { skopeo copy --src-tls-verify=false --retry-times 0 "docker://127.0.0.1:$1/bench/$2:v1" "dir:$3" >/dev/null; }
timed() { local s e; s=$(date +%s.%N); "$@"; e=$(date +%s.%N); awk -v s="$s" -v e="$e" 'BEGIN { printf "%.2f", e - s }'; }
run() { # label port image clients
  local before after t i
  before=$(wan_bytes)
  t=$(timed bash -c "for i in \$(seq 1 $4); do skopeo copy --src-tls-verify=false --retry-times 0 docker://127.0.0.1:$2/bench/$3:v1 dir:$work/out-$1-\$i >/dev/null & done; wait")
  after=$(wan_bytes)
  for i in $(seq 1 "$4"); do
    for f in "$work/out-$1-$i"/*; do n=$(basename "$f"); [ ${#n} -eq 64 ] && [ "$(sha256sum < "$f" | cut -d' ' -f1)" != "$n" ] && { echo "corrupt $f" >&2; exit 1; }; done
  done
  echo "$t $(( after - before ))"
}
echo "== pulls"
read -r pc_t pc_mb < <(run proxy-cold "$PROXY" one 1)
read -r hc_t hc_mb < <(run hoard-cold "$HOARD" one 1)
read -r pw_t pw_mb < <(run proxy-warm "$PROXY" one 1)
read -r hw_t hw_mb < <(run hoard-warm "$HOARD" one 1)
read -r p8_t p8_mb < <(run proxy-8 "$PROXY" eight 8)
read -r h8_t h8_mb < <(run hoard-8 "$HOARD" eight 8)
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
mb() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }

cat >> "$here/RESULTS.md" <<MD

# Benchmark: image pulls, Hoard against docker-registry's proxy mode

Produced by \`bench/oci.sh\` on $(date -u +%Y-%m-%d). One upstream (Debian's docker-registry behind nginx with
\`limit_rate $rate\` per connection, nginx's access log counting the bytes), one image of $layers random layers
($(mb "$image_bytes") MB), pulled with \`skopeo copy\` into a directory through docker-registry in \`proxy:\` mode and through Hoard.

| run | docker-registry proxy | Hoard | Hoard / proxy (time) |
| --- | ---: | ---: | ---: |
| cold pull, 1 client | ${pc_t} s, $(mb "$pc_mb") MB upstream | ${hc_t} s, $(mb "$hc_mb") MB upstream | $(ratio "$hc_t" "$pc_t")× |
| warm pull, 1 client | ${pw_t} s, $(mb "$pw_mb") MB upstream | ${hw_t} s, $(mb "$hw_mb") MB upstream | **$(ratio "$hw_t" "$pw_t")×** (target ≤ 1.0×) |
| 8 concurrent cold pulls | ${p8_t} s, $(mb "$p8_mb") MB upstream | ${h8_t} s, $(mb "$h8_mb") MB upstream | $(ratio "$h8_t" "$p8_t")× |

Upstream bytes for the 8 concurrent cold pulls: docker-registry's proxy $(ratio "$p8_mb" "$image_bytes")× the image, Hoard **$(ratio "$h8_mb" "$image_bytes")×** (target 1×).
MD
tail -n 12 "$here/RESULTS.md"
