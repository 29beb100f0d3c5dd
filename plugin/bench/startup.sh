#!/usr/bin/env bash
# Start-up cost of every process of ours, beside the reference Go plugins (Debian's
# containernetworking-plugins), in one run: user-space instructions counted by callgrind
# (deterministic) for a VERSION call and for a minimal DEL (a DEL with nothing to undo: the
# whole skeleton, environment, config and state, no kernel change). Prints a markdown table.
#
# Usage (root: the DELs run in a throwaway network namespace):
#   plugin/bench/startup.sh [LABEL=DIR ...]
# Each DIR holds the three binaries (tombstone, tombstone-ipvlan, tombstone-ipam) and becomes
# one column pair (instructions, ratio to the reference); the default is the workspace's
# release build, `ours=target/<host tuple>/release` (under $CARGO_TARGET_DIR when set). The
# reference plugins are looked up in $CNI_REFERENCE_DIR (default /usr/lib/cni) and run with
# GODEBUG=asyncpreemptoff=1, without which Go's preemption signals make valgrind's count vary.
# Needs valgrind (Debian package `valgrind`).
set -euo pipefail

die() { echo "startup.sh: $*" >&2; exit 1; }

ws=$(cd "$(dirname "$0")/../.." && pwd)
ref=${CNI_REFERENCE_DIR:-/usr/lib/cni}
command -v valgrind >/dev/null || die "valgrind is missing"
command -v unshare >/dev/null || die "unshare is missing"
[ "$(id -u)" = 0 ] || die "needs root (the DELs run in a throwaway network namespace)"
for g in ipvlan host-local; do
    [ -x "$ref/$g" ] || die "reference plugin $ref/$g is missing (make deps installs it)"
done

# Every run happens in a fresh network namespace of its own, left when the script ends.
if [ -z "${STARTUP_SH_NETNS:-}" ]; then
    STARTUP_SH_NETNS=1 exec unshare --net -- "$0" "$@"
fi

if [ $# -eq 0 ]; then
    host=$(rustc -vV | sed -n 's/^host: //p')
    set -- "ours=${CARGO_TARGET_DIR:-$ws/target}/$host/release"
fi
labels=() dirs=()
for arg in "$@"; do
    case $arg in
        *=*) labels+=("${arg%%=*}"); dirs+=("$(realpath -- "${arg#*=}")") ;;
        *) die "argument $arg is not LABEL=DIR" ;;
    esac
done
for d in "${dirs[@]}"; do
    for b in tombstone tombstone-ipvlan tombstone-ipam; do
        [ -x "$d/$b" ] || die "$d/$b is missing (cargo build --release -p tombstone -p tombstone-ipam)"
    done
done

tmp=$(mktemp -d)
trap 'rm -rf -- "$tmp"' EXIT

# The configs of the minimal DELs. The pod's netns is gone (DEL must still succeed), the
# IPAM's container holds no address, the chained plugin's ledger holds no tombstone.
conf_ipvlan='{"cniVersion":"1.0.0","name":"startup","type":"ipvlan","master":"eth0"}'
conf_ipam() { # $1: plugin type
    printf '{"cniVersion":"1.0.0","name":"startup","type":"ipvlan","ipam":{"type":"%s","subnet":"10.99.0.0/24","dataDir":"%s"}}' \
        "$1" "$tmp/ipam-$1"
}
conf_tombstone() { # $1: a state dir of its own per column
    printf '{"cniVersion":"1.0.0","name":"startup","type":"tombstone","stateDir":"%s"}' "$tmp/ts-$1"
}

# count VERB BINARY CONFIG: instructions of one call, after one unmeasured call of the same
# (it creates the state directories, as the first call on a node does).
count() {
    local verb=$1 bin=$2 conf=$3 out err n
    local -a env=(env -i PATH="$PATH" GODEBUG=asyncpreemptoff=1 CNI_COMMAND="$verb"
        CNI_CONTAINERID=startup-bench CNI_NETNS="$tmp/gone-netns" CNI_IFNAME=eth0 CNI_PATH="$ref")
    out=$(printf '%s' "$conf" | "${env[@]}" "$bin" 2>&1) || die "$verb of $bin failed: $out"
    err=$(printf '%s' "$conf" | "${env[@]}" valgrind --tool=callgrind --callgrind-out-file=/dev/null \
        "$bin" 2>&1 >/dev/null) || die "$verb of $bin under valgrind failed: $err"
    n=$(printf '%s\n' "$err" | sed -nE 's/^==[0-9]+== Collected : ([0-9]+).*/\1/p' | head -n1)
    [ -n "$n" ] || die "no 'Collected' line from valgrind for $verb of $bin: $err"
    echo "$n"
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
kinstr() { awk -v a="$1" 'BEGIN { printf "%.1f k", a / 1000 }'; }

version='{"cniVersion":"1.0.0"}'
declare -A refcount
refcount[VERSION-ipvlan]=$(count VERSION "$ref/ipvlan" "$version")
refcount[VERSION-host-local]=$(count VERSION "$ref/host-local" "$version")
refcount[DEL-ipvlan]=$(count DEL "$ref/ipvlan" "$conf_ipvlan")
refcount[DEL-host-local]=$(count DEL "$ref/host-local" "$(conf_ipam host-local)")

header="| call | reference (Go) | reference instructions |"
rule="|---|---|---:|"
for l in "${labels[@]}"; do
    header+=" $l | $l / reference |"
    rule+="---:|---:|"
done
echo "$header"
echo "$rule"
for verb in VERSION DEL; do
    for b in tombstone-ipvlan tombstone-ipam tombstone; do
        case $b in
            tombstone-ipvlan) g=ipvlan ;;
            tombstone-ipam) g=host-local ;;
            tombstone) g= ;;
        esac
        if [ -n "$g" ]; then
            r=${refcount[$verb-$g]}
            row="| $b $verb | $g | $(kinstr "$r") |"
        else
            r=
            row="| $b $verb | (none) | |"
        fi
        for i in "${!dirs[@]}"; do
            case $verb-$b in
                VERSION-*) conf=$version ;;
                DEL-tombstone-ipvlan) conf=$conf_ipvlan ;;
                DEL-tombstone-ipam) conf=$(conf_ipam tombstone-ipam) ;;
                DEL-tombstone) conf=$(conf_tombstone "$i") ;;
            esac
            n=$(count "$verb" "${dirs[$i]}/$b" "$conf")
            if [ -n "$r" ]; then row+=" $(kinstr "$n") | $(ratio "$n" "$r") |"; else row+=" $(kinstr "$n") | |"; fi
        done
        echo "$row"
    done
done
row="| ELF type (readelf -h) | | |"
for d in "${dirs[@]}"; do
    row+=" $(readelf -h "$d/tombstone" | awk '/Type:/ { print $2 }') | |"
done
echo "$row"
