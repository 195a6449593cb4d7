#!/usr/bin/env bash
# Builds Hoard's container image (see README.md beside this file):
#   1. dotnet publish: a self-contained single-file `hoard` for Linux (glibc) into a fresh build context;
#   2. docker build / podman build / buildah bud of the Containerfile beside this script on that context.
#
#   deploy/container/build.sh [-t TAG] [--base IMAGE] [--rid RID] [-- EXTRA ARGUMENTS FOR THE BUILDER]
#
#   -t, --tag TAG     image name (default hoard:latest)
#   --base IMAGE      base image with glibc, libstdc++, libgcc_s and OpenSSL 3 (default: the Containerfile's,
#                     mcr.microsoft.com/dotnet/runtime-deps:10.0-noble-chiseled)
#   --rid RID         .NET runtime identifier, linux-x64 or linux-arm64 (default: this machine's); the base must be
#                     of the same architecture
#   -- ARGS           passed to the builder as they are (--platform, --no-cache, buildah's --storage-driver, ...)
#
# Environment: CONTAINER_BUILDER=docker|podman|buildah (default: the first one found), VERSION (default: the
# project's), REVISION (default: git rev-parse HEAD), SOURCE (default: the https:// URL of git's origin, if any).
# Nothing is written into the repository: bin/ and obj/ of this build go to a temporary directory.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)

tag=hoard:latest
base=
case "$(uname -m)" in
  x86_64) rid=linux-x64 ;;
  aarch64 | arm64) rid=linux-arm64 ;;
  *) rid= ;;
esac
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    -t | --tag) tag=$2; shift 2 ;;
    --base) base=$2; shift 2 ;;
    --rid) rid=$2; shift 2 ;;
    --) shift; extra=("$@"); break ;;
    -h | --help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "build.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
if [ -z "$rid" ]; then
  echo "build.sh: no .NET runtime identifier for $(uname -m): give --rid" >&2
  exit 2
fi

builder=${CONTAINER_BUILDER:-}
if [ -z "$builder" ]; then
  for b in docker podman buildah; do
    if command -v "$b" >/dev/null 2>&1; then builder=$b; break; fi
  done
fi
case "$builder" in
  # HEALTHCHECK exists only in Docker's image format: podman and buildah write OCI unless told otherwise.
  docker) build=(docker build) ;;
  podman) build=(podman build --format docker) ;;
  buildah) build=(buildah bud --format docker) ;;
  "") echo "build.sh: none of docker, podman or buildah is installed" >&2; exit 2 ;;
  *) echo "build.sh: CONTAINER_BUILDER '$builder': expected docker, podman or buildah" >&2; exit 2 ;;
esac

version=${VERSION:-$(dotnet msbuild "$repo/src/Hoard/Hoard.csproj" -getProperty:Version -nologo)}
revision=${REVISION:-$(git -C "$repo" rev-parse HEAD 2>/dev/null || echo unknown)}
if [ -z "${SOURCE+set}" ]; then
  # Only a public https:// URL, and never credentials that may sit in it.
  SOURCE=$({ git -C "$repo" config --get remote.origin.url 2>/dev/null || true; } | sed -n 's#^https://\([^@/]*@\)\{0,1\}#https://#p')
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/hoard-image.XXXXXX")
trap 'rm -rf "$work"' EXIT
context="$work/context"
mkdir -p "$context/data"

echo "== dotnet publish ($rid, self-contained, single file, version $version)"
# Native libraries stay beside the executable (IncludeNativeLibrariesForSelfExtract=false): nothing is extracted at
# start, so the image runs with a read-only root filesystem.
dotnet publish "$repo/src/Hoard/Hoard.csproj" -c Release -r "$rid" --self-contained true \
  -p:PublishSingleFile=true -p:IncludeNativeLibrariesForSelfExtract=false -p:DebugType=none \
  -p:Version="$version" --artifacts-path "$work/artifacts" -o "$context/app" --nologo
cp "$here/Containerfile" "$context/Containerfile"

args=(--build-arg "VERSION=$version" --build-arg "REVISION=$revision" --build-arg "SOURCE=$SOURCE")
if [ -n "$base" ]; then
  args+=(--build-arg "BASE=$base")
fi
echo "== ${build[*]} -t $tag"
"${build[@]}" "${args[@]}" -f "$context/Containerfile" -t "$tag" "${extra[@]}" "$context"
echo "== built $tag"
