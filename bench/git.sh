#!/usr/bin/env bash
# git clones straight from git http-backend and through Hoard, on loopback and through a 10 MB/s "WAN"
# (nginx limit_rate). Counts the packs upstream generated from nginx's log. Appends to bench/RESULTS.md.
# Needs git, fcgiwrap, nginx-light.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
work="$here/work-git"
commits=${BENCH_GIT_COMMITS:-60}
blob_kb=${BENCH_GIT_BLOB_KB:-500}
rate=${BENCH_GIT_RATE:-10m}
rm -rf "$work"; mkdir -p "$work"/{logs,repos,hoard-data}
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
. "$here/git-lib.sh"

echo "== repository ($commits commits, a ${blob_kb} KB random file and text edits in each)"
src="$work/src"; git init -q -b main "$src"
for i in $(seq 1 "$commits"); do
  head -c $((blob_kb * 1024)) /dev/urandom > "$src/blob$i.bin"
  seq 1 $((i * 50)) > "$src/notes.txt"
  git -C "$src" add . && git -C "$src" -c user.email=b@example.com -c user.name=bench commit -q -m "commit $i"
done
for name in cold1 cold10 wan; do git clone -q --bare "$src" "$work/repos/$name.git"; done
repo_mb=$(du -sm "$work/repos/cold1.git" | cut -f1)

D=$(free_port); W=$(free_port); HOARD=$(free_port)
git_server "$work" '$server_port $request_method $request_uri $status $body_bytes_sent' "$D" "$W:$rate"
dotnet publish "$repo/src/Hoard" -c Release -o "$work/hoard-bin" --nologo -v quiet >/dev/null
"$work/hoard-bin/hoard" serve --listen "http://127.0.0.1:$HOARD" --data "$work/hoard-data" --access-log off \
  --git "lan=http://127.0.0.1:$D/" --git "wan=http://127.0.0.1:$W/" > "$work/logs/hoard.log" 2>&1 & pids+=($!)
wait_port "$D"; wait_port "$W"; wait_port "$HOARD"

packs() { awk -v p="$1" -v r="$2" '$1 == p && $2 == "POST" && index($3, "/" r ".git/git-upload-pack") && $5 > 100000 {n++} END {print n+0}' "$work/logs/access.log"; }
packbytes() { awk -v p="$1" -v r="$2" '$1 == p && $2 == "POST" && index($3, "/" r ".git/git-upload-pack") {s+=$5} END {printf "%.0f", s / 1048576}' "$work/logs/access.log"; }
clones() { # label url n
  local s e; s=$(date +%s.%N)
  for i in $(seq 1 "$3"); do git clone -q "$2" "$work/out-$1-$i" & done; wait $(jobs -p | grep -v -w -e "${pids[0]}" -e "${pids[1]}" -e "${pids[2]}") 2>/dev/null || true
  e=$(date +%s.%N)
  for i in $(seq 1 "$3"); do [ "$(git -C "$work/out-$1-$i" rev-parse HEAD)" = "$(git -C "$src" rev-parse HEAD)" ] || { echo "clone $1-$i is wrong" >&2; exit 1; }; done
  rm -rf "$work"/out-"$1"-*
  awk -v s="$s" -v e="$e" 'BEGIN { printf "%.2f", e - s }'
}
echo "== clones"
direct1=$(clones direct1 "http://127.0.0.1:$D/cold1.git" 1)
direct10=$(clones direct10 "http://127.0.0.1:$D/cold1.git" 10)
direct_packs10=$(( $(packs "$D" cold1) - 1 ))
hcold1=$(clones hcold1 "http://127.0.0.1:$HOARD/git/lan/cold1.git" 1)
hwarm1=$(clones hwarm1 "http://127.0.0.1:$HOARD/git/lan/cold1.git" 1)
hwarm10=$(clones hwarm10 "http://127.0.0.1:$HOARD/git/lan/cold1.git" 10)
hcold10=$(clones hcold10 "http://127.0.0.1:$HOARD/git/lan/cold10.git" 10)
hcold10_packs=$(packs "$D" cold10)
wdirect1=$(clones wdirect1 "http://127.0.0.1:$W/wan.git" 1)
wpacks_before=$(packs "$W" wan)
whcold1=$(clones whcold1 "http://127.0.0.1:$HOARD/git/wan/wan.git" 1)
whwarm1=$(clones whwarm1 "http://127.0.0.1:$HOARD/git/wan/wan.git" 1)
whwarm10=$(clones whwarm10 "http://127.0.0.1:$HOARD/git/wan/wan.git" 10)
wpacks_hoard=$(( $(packs "$W" wan) - wpacks_before ))
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

cat >> "$here/RESULTS.md" <<MD

# Benchmark: git clones, Hoard against git http-backend

Produced by \`bench/git.sh\` on $(date -u +%Y-%m-%d). A repository of $commits commits, each adding a ${blob_kb} KB
random file and editing a text file (${repo_mb} MB bare), served by Debian's git http-backend behind nginx + fcgiwrap:
once on loopback, once through \`limit_rate $rate\` (a 10 MB/s WAN). Clones with the machine's git $(git --version | cut -d' ' -f3).

| clone | direct from http-backend | through Hoard | Hoard / direct |
| --- | ---: | ---: | ---: |
| loopback, 1 clone, Hoard cold (mirror made) | ${direct1} s | ${hcold1} s | $(ratio "$hcold1" "$direct1")× |
| loopback, 1 clone, Hoard warm | ${direct1} s | ${hwarm1} s | **$(ratio "$hwarm1" "$direct1")×** (target ≤ 1.2×) |
| loopback, 10 clones at once, Hoard warm | ${direct10} s | ${hwarm10} s | $(ratio "$hwarm10" "$direct10")× |
| loopback, 10 clones at once, Hoard cold | ${direct10} s | ${hcold10} s | $(ratio "$hcold10" "$direct10")× |
| 10 MB/s upstream, 1 clone, Hoard cold | ${wdirect1} s | ${whcold1} s | $(ratio "$whcold1" "$wdirect1")× |
| 10 MB/s upstream, 1 clone, Hoard warm | ${wdirect1} s | ${whwarm1} s | **$(ratio "$wdirect1" "$whwarm1")× faster** (target ≥ 3×) |
| 10 MB/s upstream, 10 clones at once, Hoard warm | — | ${whwarm10} s | |

Packs upstream generated: direct, 10 clones: ${direct_packs10}; through Hoard, 10 cold clones at once: **${hcold10_packs}**
(the mirror's clone; target 1); through Hoard over the WAN, 12 clones in all: ${wpacks_hoard}.
MD
tail -n 16 "$here/RESULTS.md"
