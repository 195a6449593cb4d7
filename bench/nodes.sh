#!/usr/bin/env bash
# The node-local deployment on one machine: three containerd daemons (each its own root, state and socket) pull one
# image at once, first straight from the registry, then each through its own Hoard (the certs.d that
# `hoard config containerd --apply` writes, as the DaemonSet's init step does), the three Hoards sharing one
# redis-server. The registry sits behind nginx ("the WAN"), whose access log counts the bytes that cross it, in a
# network namespace of its own reached over a veth pair whose egress is shaped (tc tbf) to BENCH_NODES_UPLINK: one
# uplink all nodes share, as a site's link to a registry is. Needs root, iproute2, containerd, docker-registry,
# skopeo, nginx-light, redis-server, python3. Appends to bench/RESULTS.md.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
work="$here/work-nodes"
nodes=3
layers=${BENCH_NODES_LAYERS:-4}
layer_mb=${BENCH_NODES_LAYER_MB:-25}
uplink=${BENCH_NODES_UPLINK:-320mbit}
ns=hoard-bench-wan
rm -rf "$work"; mkdir -p "$work"/{logs,up-storage}
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; ip link del hbn-host 2>/dev/null || true; ip netns del "$ns" 2>/dev/null || true; }
trap cleanup EXIT
. "$here/git-lib.sh"   # free_port, wait_port

# The WAN: a namespace with the registry and nginx, 10.231.0.2 seen from here, its egress shaped to the uplink rate.
ip netns del "$ns" 2>/dev/null || true; ip link del hbn-host 2>/dev/null || true
ip netns add "$ns"
ip link add hbn-host type veth peer name hbn-wan
ip link set hbn-wan netns "$ns"
ip addr add 10.231.0.1/30 dev hbn-host; ip link set hbn-host up
ip netns exec "$ns" ip addr add 10.231.0.2/30 dev hbn-wan
ip netns exec "$ns" ip link set hbn-wan up; ip netns exec "$ns" ip link set lo up
ip netns exec "$ns" tc qdisc add dev hbn-wan root tbf rate "$uplink" burst 256kb latency 100ms
wan_wait() { for _ in $(seq 1 200); do ip netns exec "$ns" bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null && return 0; sleep 0.05; done; echo "port $2 never opened" >&2; return 1; }

REG=$(free_port); WAN=$(free_port); REDIS=$(free_port)
printf 'version: 0.1\nlog: {level: error}\nstorage: {filesystem: {rootdirectory: %s}}\nhttp: {addr: 127.0.0.1:%s}\n' "$work/up-storage" "$REG" > "$work/up.yml"
ip netns exec "$ns" docker-registry serve "$work/up.yml" > "$work/logs/up.log" 2>&1 & pids+=($!)
cat > "$work/wan.conf" <<CONF
daemon off; master_process off; user root; pid $work/wan.pid; error_log $work/logs/wan.error.log warn;
events { worker_connections 1024; }
http {
  log_format counted '\$request_method \$request_uri \$status \$body_bytes_sent';
  access_log $work/logs/wan.access.log counted;
  client_body_temp_path $work/wan-body; proxy_temp_path $work/wan-proxy; fastcgi_temp_path $work/wan-f; uwsgi_temp_path $work/wan-u; scgi_temp_path $work/wan-s;
  server { listen 10.231.0.2:$WAN; client_max_body_size 0; location / { proxy_pass http://127.0.0.1:$REG; proxy_buffering off; proxy_set_header Host \$http_host; } }
}
CONF
ip netns exec "$ns" nginx -p "$work" -c "$work/wan.conf" -e "$work/logs/wan.error.log" & pids+=($!)
redis-server --port "$REDIS" --bind 127.0.0.1 --save '' --appendonly no > "$work/logs/redis.log" 2>&1 & pids+=($!)
dotnet publish "$repo/src/Hoard" -c Release -o "$work/hoard-bin" --nologo -v quiet >/dev/null
wan_wait 127.0.0.1 "$REG"; wan_wait 10.231.0.2 "$WAN"; wait_port "$REDIS"
registry="10.231.0.2:$WAN"

echo "== images ($layers layers of $layer_mb MB)"
for img in direct hoard; do
  python3 "$here/make_oci_layout.py" "$work/layout-$img" v1 "$layers" "$layer_mb"
  ip netns exec "$ns" skopeo copy --preserve-digests --dest-tls-verify=false "oci:$work/layout-$img:v1" "docker://127.0.0.1:$REG/bench/$img:v1" >/dev/null
done
image_mb=$(( $(find "$work/layout-direct/blobs" -type f -printf '%s\n' | awk '{s+=$1} END {print s}') / 1048576 ))

echo "== $nodes nodes: containerd each, and a Hoard each in one cluster"
for i in $(seq 1 "$nodes"); do
  d="$work/node$i"; mkdir -p "$d"/{certs-direct/$registry,data}
  printf 'version = 2\nroot = "%s/root"\nstate = "%s/state"\n[grpc]\n  address = "%s/containerd.sock"\n' "$d" "$d" "$d" > "$d/containerd.toml"
  containerd --config "$d/containerd.toml" > "$work/logs/containerd$i.log" 2>&1 & pids+=($!)
  printf 'server = "http://%s"\n\n[host."http://%s"]\n  capabilities = ["pull", "resolve"]\n' "$registry" "$registry" > "$d/certs-direct/$registry/hosts.toml"
  port=$(free_port); echo "$port" > "$d/port"
  "$work/hoard-bin/hoard" serve --listen "http://127.0.0.1:$port" --data "$d/data" --access-log off \
    --registry "$registry=http://$registry/" --cluster-redis "redis://127.0.0.1:$REDIS" --advertise "http://127.0.0.1:$port" \
    --cluster-secret bench-secret-0123456789 > "$work/logs/hoard$i.log" 2>&1 & pids+=($!)
  wait_port "$port"
  "$work/hoard-bin/hoard" config containerd --url "http://127.0.0.1:$port" --registry "$registry=http://$registry/" --apply --path "$d/certs-hoard" >/dev/null
done
for i in $(seq 1 "$nodes"); do until [ -S "$work/node$i/containerd.sock" ]; do sleep 0.1; done; done
sleep 3 # the Hoards' first cluster heartbeat

wan_bytes() { awk '{s+=$4} END {print s+0}' "$work/logs/wan.access.log"; }
run() { # label certs-dir image
  local before s e pulls=()
  before=$(wan_bytes); s=$(date +%s.%N)
  for i in $(seq 1 "$nodes"); do
    ctr --address "$work/node$i/containerd.sock" -n bench content fetch --hosts-dir "$work/node$i/$2" "$registry/bench/$3:v1" > "$work/logs/pull-$1-$i.log" 2>&1 &
    pulls+=($!)
  done
  for p in "${pulls[@]}"; do wait "$p" || { echo "a pull failed: see $work/logs/pull-$1-*.log" >&2; exit 1; }; done
  e=$(date +%s.%N)
  for i in $(seq 1 "$nodes"); do
    ctr --address "$work/node$i/containerd.sock" -n bench content ls -q | grep -c sha256 > /dev/null || { echo "node $i has nothing" >&2; exit 1; }
  done
  echo "$(awk -v s="$s" -v e="$e" 'BEGIN { printf "%.2f", e - s }') $(( ($(wan_bytes) - before) / 1048576 ))"
}
read -r direct_s direct_mb < <(run direct certs-direct direct)
read -r hoard_s hoard_mb < <(run hoard certs-hoard hoard)
echo "direct: ${direct_s}s ${direct_mb} MB; through Hoard: ${hoard_s}s ${hoard_mb} MB"

cat >> "$here/RESULTS.md" <<MD

# Benchmark: node-local mirrors, $nodes containerd nodes pulling one image at once

Produced by \`bench/nodes.sh\` on $(date -u +%Y-%m-%d). $nodes containerd daemons (own root, state and socket) each run
\`ctr content fetch --hosts-dir\` of one $image_mb MB image ($layers layers) at the same moment. The registry
(docker-registry) sits behind nginx in a network namespace whose one link out is shaped to $uplink (tc tbf): the
uplink every node shares. nginx's log counts the bytes that cross it.
Direct: each node's hosts.toml names only the registry. Through Hoard: the hosts.toml \`hoard config containerd --apply\`
writes (the node's Hoard first, the registry as fallback), one Hoard per node, the three in one cluster on one Redis.

| | time for all $nodes | bytes from the registry |
| --- | ---: | ---: |
| direct | ${direct_s} s | ${direct_mb} MB |
| through Hoard (node-local, clustered) | ${hoard_s} s | ${hoard_mb} MB |
MD
tail -n 12 "$here/RESULTS.md"
