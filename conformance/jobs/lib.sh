# Shell library of the guest jobs: sourced (textually prepended) by every scenario job the
# harness writes. Runs with /bin/sh inside the VM, chrooted into the copy-on-write view of the
# host. The job's header sets CNITOOL, CNI_PATH, NETCONFPATH, NET, VARIANT, HOLD.
#
# Output protocol, read by the harness:
#   RESULT <variant> <key> <value...>   one measurement
#   FAIL <variant> <message>            a step that must not fail did (the job exits 1)
#   # ...                               commentary

set -u
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

say() { key=$1; shift; echo "RESULT $VARIANT $key $*"; }
note() { echo "# [$VARIANT] $*"; }
fail() { echo "FAIL $VARIANT $*"; exit 1; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

# Datagrams the host forwarded so far, per family.
forwarded() {
    if [ "$1" = 4 ]; then
        awk '$1 == "Ip:" { if (!h) { for (i = 2; i <= NF; i++) if ($i == "ForwDatagrams") c = i; h = 1 }
                           else { print $c; exit } }' /proc/net/snmp
    else
        awk '$1 == "Ip6OutForwDatagrams" { print $2 }' /proc/net/snmp6
    fi
}

family_of() { case $1 in *:*) echo 6 ;; *) echo 4 ;; esac; }
host_prefix() { if [ "$(family_of "$1")" = 6 ]; then echo "$1/128"; else echo "$1/32"; fi; }

# The node: dummy eth0 as the master, the gateway port gw0 (an IPvlan slave in the host netns)
# holding the subnet gateways, forwarding on, reverse-path filtering off.
node_up() {
    mode=$1
    ip link add eth0 type dummy && ip link set eth0 up &&
        ip link add gw0 link eth0 type ipvlan mode "$mode" &&
        ip addr add 10.10.0.1/24 dev gw0 &&
        ip -6 addr add fd00:10::1/64 dev gw0 nodad &&
        ip link set gw0 up || fail "node topology (mode $mode)"
    echo 1 > /proc/sys/net/ipv4/ip_forward
    echo 1 > /proc/sys/net/ipv6/conf/all/forwarding
    for f in /proc/sys/net/ipv4/conf/*/rp_filter; do echo 0 > "$f"; done
    mkdir -p "$NETCONFPATH"
    rm -rf /var/lib/cni /run/cni
}

# Back to a bare node: pods, links, CNI state and unreachable routes gone.
node_down() {
    for ns in $(ip netns list | awk '{ print $1 }'); do ip netns del "$ns"; done
    ip link del eth0 2>/dev/null
    ip route flush table all type unreachable 2>/dev/null
    ip -6 route flush table all type unreachable 2>/dev/null
    rm -rf /var/lib/cni /run/cni "$NETCONFPATH"
    true
}

# pod_add NAME [ADDR...]: a netns and an ADD through libcni; ADDRs are requested from IPAM
# (the "ips" capability).
pod_add() {
    name=$1
    shift
    caps=""
    if [ $# -gt 0 ]; then
        list=""
        for a in "$@"; do list="$list${list:+,}\"$a\""; done
        caps="{\"ips\":[$list]}"
    fi
    ip netns add "$name" || return 1
    CAP_ARGS="$caps" CNI_CONTAINERID="pod-$name" "$CNITOOL" add "$NET" "/run/netns/$name" \
        > "/tmp/result-$name.json"
}

# pod_add_ip NAME ADDR: an ADD asking for one address the way upstream cnitool users do,
# with CNI_ARGS "IP=<addr>" (host-local reads one address there).
pod_add_ip() {
    ip netns add "$1" || return 1
    CNI_ARGS="IP=$2" CNI_CONTAINERID="pod-$1" "$CNITOOL" add "$NET" "/run/netns/$1" \
        > "/tmp/result-$1.json"
}

pod_check() { CNI_CONTAINERID="pod-$1" "$CNITOOL" check "$NET" "/run/netns/$1"; }

pod_del() {
    CNI_CONTAINERID="pod-$1" "$CNITOOL" del "$NET" "/run/netns/$1" || return 1
    ip netns del "$1"
}

# pod_addr NAME FAMILY: the pod's global address of that family.
pod_addr() {
    ip -n "$1" -"$2" -o addr show dev eth0 scope global | awk '{ split($4, a, "/"); print a[1]; exit }'
}

# reach FROM ADDR: one ping answered within 2 s; FROM is "host" or a pod name.
reach() {
    if [ "$1" = host ]; then
        busybox ping -"$(family_of "$2")" -c 1 -W 2 "$2" > /dev/null 2>&1
    else
        ip netns exec "$1" busybox ping -"$(family_of "$2")" -c 1 -W 2 "$2" > /dev/null 2>&1
    fi
}
yes_no() { if "$@"; then echo yes; else echo no; fi; }

# What the host's main table has for exactly ADDR's host prefix: "none", "unicast" or the
# route type ("unreachable", "blackhole", "prohibit", ...).
route_kind() {
    line=$(ip -"$(family_of "$1")" route show table main exact "$(host_prefix "$1")" 2>/dev/null | head -1)
    case $line in
    "") echo none ;;
    "$1 "* | "$(host_prefix "$1") "*) echo unicast ;;
    *) echo "$line" | awk '{ print $1 }' ;;
    esac
}

# Host neighbour entries for ADDR that could still carry traffic (not FAILED/INCOMPLETE).
neigh_count() {
    ip -"$(family_of "$1")" neigh show to "$1" | grep -cv 'FAILED\|INCOMPLETE'
}

# How long a host-side sender takes to give up on ADDR, and why (busybox ping, 5 s at most).
host_sender() {
    t0=$(now_ms)
    out=$(busybox ping -"$(family_of "$1")" -c 1 -W 5 "$1" 2>&1)
    t1=$(now_ms)
    why=$(echo "$out" | sed -n 's/^ping: //p' | head -1)
    [ -n "$why" ] || why="no reply (timeout)"
    echo "$((t1 - t0)) $why"
}

# Host links other than lo, eth0 and gw0 (leaks), one per line.
stray_links() {
    ip -o link show | awk -F': ' '{ split($2, n, "@"); print n[1] }' | grep -vx 'lo\|eth0\|gw0'
}

# Addresses host-local still holds for the network (leaks once every pod is gone).
ipam_held() {
    ls "/var/lib/cni/networks/$NET" 2>/dev/null | grep -v '^last_reserved_ip\|^lock$'
}
