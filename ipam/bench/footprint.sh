#!/usr/bin/env bash
# Footprint of a tombstone-ipam binary: file size, normal dependency tree, start-up instructions
# (callgrind) and start-up wall time of the CNI VERSION command. Prints a markdown table.
# Usage: ipam/bench/footprint.sh <path-to-tombstone-ipam-binary> [<workspace-dir>]
set -euo pipefail

die() { echo "footprint.sh: $*" >&2; exit 1; }

[ $# -ge 1 ] && [ $# -le 2 ] || die "usage: $0 <path-to-tombstone-ipam-binary> [<workspace-dir>]"
bin=$(realpath -- "$1") || die "no such binary: $1"
ws=${2:-$(cd "$(dirname "$0")/../.." && pwd)}
[ -f "$bin" ] && [ -x "$bin" ] || die "not an executable file: $bin"
[ -d "$ws" ] || die "not a directory: $ws"
command -v valgrind >/dev/null || die "valgrind is missing"
command -v python3 >/dev/null || die "python3 is missing"
command -v cargo >/dev/null || die "cargo is missing"

stdin='{"cniVersion":"1.0.0"}'
version_call() { printf '%s' "$stdin" | env -i PATH="$PATH" CNI_COMMAND=VERSION "$@"; }

# The binary must answer VERSION with exit 0 before anything is measured.
if ! out=$(version_call "$bin" 2>&1); then
    die "binary did not answer VERSION with exit 0: $out"
fi

# Size.
size=$(stat -c %s -- "$bin")
mib=$(awk -v b="$size" 'BEGIN { printf "%.2f", b / 1048576 }')

# Normal dependency tree, deduplicated by "name version", package itself excluded.
tree=$(cd "$ws" && cargo tree -p tombstone-ipam -e normal --prefix none --no-dedupe) \
    || die "cargo tree failed in $ws"
crates=$(printf '%s\n' "$tree" \
    | sed -E -e 's/ \(\*\)$//' -e 's/ \(proc-macro\)$//' -e 's/ \(\/[^)]*\)$//' \
    | awk 'NF >= 2 { print $1 " " $2 }' | sort -u | grep -v '^tombstone-ipam ' || true)
ncrates=$(printf '%s\n' "$crates" | grep -c . || true)
has() { if printf '%s\n' "$crates" | grep -q "^$1 "; then echo yes; else echo no; fi; }

# Start-up instructions of one VERSION call.
vg_err=$(version_call valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" 2>&1 >/dev/null) \
    || die "VERSION under valgrind failed: $vg_err"
instr=$(printf '%s\n' "$vg_err" | sed -nE 's/^==[0-9]+== Collected : ([0-9]+).*/\1/p' | head -n1)
[ -n "$instr" ] || die "no 'Collected' line in valgrind output: $vg_err"

# Start-up wall time: 300 sequential VERSION calls.
times=$(python3 - "$bin" "$stdin" <<'PY'
import os, statistics, subprocess, sys, time
binary, stdin = sys.argv[1], sys.argv[2].encode()
env = {"PATH": os.environ.get("PATH", ""), "CNI_COMMAND": "VERSION"}
samples = []
for _ in range(300):
    t0 = time.perf_counter_ns()
    r = subprocess.run([binary], input=stdin, env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t1 = time.perf_counter_ns()
    if r.returncode != 0:
        sys.exit(f"VERSION exited {r.returncode}")
    samples.append(t1 - t0)
samples.sort()
median = statistics.median(samples)
p90 = samples[min(len(samples) - 1, int(round(0.9 * len(samples))) - 1)]
print(f"{median / 1e6:.3f} {p90 / 1e6:.3f}")
PY
) || die "wall-time loop failed"
read -r median p90 <<<"$times"

echo "| metric | value |"
echo "|---|---|"
echo "| binary size | $size bytes ($mib MiB) |"
echo "| normal dependency crates (excl. tombstone-ipam) | $ncrates |"
for c in tokio futures rtnetlink netlink-sys netlink-packet-route nix; do
    echo "| depends on \`$c\` | $(has "$c") |"
done
echo "| VERSION instructions (callgrind) | $instr |"
echo "| VERSION wall time, median of 300 | $median ms |"
echo "| VERSION wall time, p90 of 300 | $p90 ms |"
