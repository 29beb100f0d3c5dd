#!/usr/bin/env bash
# Builds the DaemonSet's image (install/Containerfile) as an OCI archive, offline and with no
# container engine: Debian's buildah with vfs storage in a private --root/--runroot under the
# target dir (the machine's container storage and configuration are not read or written; the
# storage is removed when done), FROM scratch plus the static release binaries, built here
# first (a no-op when they are fresh). The build context is a staged directory holding only
# those binaries.
#
#   bash install/image.sh [ARCHIVE]     default: <target dir>/image/tombstone-cni.oci.tar
#
# The image is tombstone-cni:<workspace version>; its timestamps are the last commit's
# (SOURCE_DATE_EPOCH overrides), so the same binaries give the same image id. Prints the
# archive's size and how long each step took.
set -euo pipefail
cd "$(dirname "$0")/.."

die() {
    echo "image: $*" >&2
    exit 1
}
command -v buildah >/dev/null ||
    die "buildah is missing: run \`bash conformance/vm/install-deps.sh\` (make deps)"

target=${CARGO_TARGET_DIR:-target}
host=$(rustc -vV | sed -n 's/^host: //p')
[ -n "$host" ] || die "cannot tell the host tuple from \`rustc -vV\`"
release=$target/$host/release
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml)
[ -n "$version" ] || die "no workspace version in Cargo.toml"
name=tombstone-cni:$version
archive=${1:-$target/image/tombstone-cni.oci.tar}
epoch=${SOURCE_DATE_EPOCH:-}
if [ -z "$epoch" ]; then
    epoch=$(git log -1 --format=%ct) || die "not a git checkout: set SOURCE_DATE_EPOCH"
fi
bins=(tombstone tombstone-ipam tombstone-ipvlan tombstone-install)

ms() { echo $(($(date +%s%N) / 1000000)); }
seconds() { awk -v ms="$1" 'BEGIN { printf "%.1f", ms / 1000 }'; }

t0=$(ms)
"${CARGO:-cargo}" build --release -p tombstone -p tombstone-ipam -p tombstone-install --bins
t1=$(ms)

mkdir -p "$target/image" "$(dirname "$archive")"
work=$(mktemp -d "$target/image/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir "$work/context"
for b in "${bins[@]}"; do
    # FROM scratch has no C library: a dynamically linked binary would not start.
    if ldd "$release/$b" 2>/dev/null | grep -q '=>'; then
        die "$release/$b is linked dynamically: build with the workspace's .cargo/config.toml"
    fi
    cp "$release/$b" "$work/context/$b"
done

# Only these files configure buildah: nothing of the machine's storage.conf, containers.conf
# or registries (no registry is ever asked: the base is scratch).
cat >"$work/storage.conf" <<EOF
[storage]
driver = "vfs"
graphroot = "$work/root"
runroot = "$work/runroot"
EOF
: >"$work/containers.conf"
: >"$work/registries.conf"
export CONTAINERS_STORAGE_CONF=$work/storage.conf CONTAINERS_CONF=$work/containers.conf \
    CONTAINERS_REGISTRIES_CONF=$work/registries.conf
buildah=(buildah --storage-driver vfs --root "$work/root" --runroot "$work/runroot")
"${buildah[@]}" build --timestamp "$epoch" --iidfile "$work/iid" -t "$name" \
    -f install/Containerfile "$work/context"
"${buildah[@]}" push --quiet "$name" "oci-archive:$work/image.oci.tar:$name"
mv -f "$work/image.oci.tar" "$archive"
t2=$(ms)

mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
size=$(stat -c %s "$archive")
binaries=$(cat "$work"/context/* | wc -c)
echo "image: $archive ($name, id $(cut -c8-19 "$work/iid")): $size bytes ($(mib "$size") MiB;" \
    "the binaries, uncompressed: $binaries bytes, $(mib "$binaries") MiB)"
echo "image: cargo build $(seconds $((t1 - t0))) s, image build and archive $(seconds $((t2 - t1))) s"
