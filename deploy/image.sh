#!/usr/bin/env bash
# Builds prescale's container image (deploy/Containerfile) from a prescale binary and
# the C libraries it links, as the build host has them, so the image needs no base
# image and no registry.
# Usage: deploy/image.sh [--binary PATH] [--tag TAG] [--tool podman|docker|buildah]
#   --binary  a built prescale (default: cargo build --release --features tls, so it
#             reaches https API servers, stores and targets; then target/release/prescale,
#             or $CARGO_TARGET_DIR/release/prescale)
#   --tag     the image's name (default prescale:latest)
#   --tool    what builds it (default: the first of podman, docker, buildah found)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
binary= tag=prescale:latest tool=
while [ $# -gt 0 ]; do
  case $1 in
    --binary) binary=$2; shift 2 ;;
    --tag) tag=$2; shift 2 ;;
    --tool) tool=$2; shift 2 ;;
    *) echo "deploy/image.sh: unknown argument $1 (see the usage at the top of the script)" >&2; exit 2 ;;
  esac
done
if [ -z "$tool" ]; then
  for t in podman docker buildah; do
    if command -v "$t" >/dev/null; then tool=$t; break; fi
  done
  [ -n "$tool" ] || { echo "deploy/image.sh: no podman, docker or buildah found: install one (apt-get install podman)" >&2; exit 2; }
fi
if [ -z "$binary" ]; then
  (cd "$here/.." && cargo build --release -p prescale --features tls)
  binary=${CARGO_TARGET_DIR:-$here/../target}/release/prescale
fi
[ -x "$binary" ] || { echo "deploy/image.sh: $binary is not an executable prescale" >&2; exit 2; }

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
root=$ctx/root
mkdir -p "$root/usr/bin" "$root/etc/prescale" "$root/tmp" "$ctx/store"
cp "$binary" "$root/usr/bin/prescale"
# The shared libraries and the loader the binary names, at the paths it looks for them
# (none for a static binary).
if ldd_out=$(ldd "$binary" 2>&1); then
  libs=$(awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' <<<"$ldd_out")
else
  case $ldd_out in
    *"not a dynamic executable"* | *"statically linked"*) libs= ;;
    *) echo "deploy/image.sh: ldd $binary: $ldd_out" >&2; exit 2 ;;
  esac
fi
for l in $libs; do
  mkdir -p "$root$(dirname "$l")"
  cp -L "$l" "$root$l"
done
# The unprivileged user the image runs as, owning the store.
printf 'root:x:0:0:root:/:/sbin/nologin\nprescale:x:65532:65532:prescale:/var/lib/prescale:/sbin/nologin\n' >"$root/etc/passwd"
printf 'root:x:0:\nprescale:x:65532:\n' >"$root/etc/group"
chmod 1777 "$root/tmp"
cp "$here/Containerfile" "$ctx/Containerfile"
case $tool in
  buildah) buildah bud -t "$tag" -f "$ctx/Containerfile" "$ctx" ;;
  *) "$tool" build -t "$tag" -f "$ctx/Containerfile" "$ctx" ;;
esac
echo "built $tag with $tool from $binary"
