# The CRI job (tests/vm_root_cri.rs): sourced after lib.sh. The header sets CRI_SCENARIO (this
# crate's cni-cri-scenario, which starts containerd and drives it with our CRI client) and
# CRI_ROUNDS (its timing rounds).
#
# The node: eth0 (a dummy) with the node's address and default route, the IPvlan master of
# every chain; gw0, the reference plugins' gateway port (10.20.0.1/24), while
# tombstone-ipvlan makes its own for 10.10.0.0/24; cgroup2 mounted for runc.

cri_node_up() {
    mountpoint -q /sys/fs/cgroup || mount -t cgroup2 cgroup2 /sys/fs/cgroup || fail "mount cgroup2"
    ip link set lo up &&
        ip link add eth0 type dummy && ip link set eth0 up &&
        ip addr add 192.168.100.2/24 dev eth0 &&
        ip route add default via 192.168.100.1 dev eth0 &&
        ip link add gw0 link eth0 type ipvlan mode l2 &&
        ip addr add 10.20.0.1/24 dev gw0 && ip link set gw0 up || fail "node topology"
    echo 1 > /proc/sys/net/ipv4/ip_forward
    for f in /proc/sys/net/ipv4/conf/*/rp_filter; do echo 0 > "$f"; done
    rm -rf /var/lib/cni /run/cni
}

cri_run() {
    VARIANT=cri
    cri_node_up
    note "containerd $(containerd --version | awk '{ print $3 }'), runc $(runc --version | awk 'NR == 1 { print $3 }')"
    "$CRI_SCENARIO" "$CRI_ROUNDS" 2>&1 || fail "cni-cri-scenario exited $?"
    say stray_links "$(ip -o link show | awk -F': ' '{ split($2, n, "@"); print n[1] }' | grep -vx 'lo\|eth0\|gw0' | grep -v '^gw_' | tr '\n' ' ' | sed 's/ $//')"
}
