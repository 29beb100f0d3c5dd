# Jobs of the tombstone-ipvlan tests: sourced after lib.sh. The header sets CNITOOL,
# CNI_PATH (reference plugins plus ours), NETCONFPATH, HOLD.
#
# The node here has no hand-made gateway port: `tombstone-ipvlan` makes its own (gw_<hex>).
# eth0 (a dummy) carries the node's address and the default route, so the plugin finds its
# master from the default route (no "master" key in the configs below).

iv_node_up() {
    ip link add eth0 type dummy && ip link set eth0 up &&
        ip addr add 192.168.100.2/24 dev eth0 &&
        ip route add default via 192.168.100.1 dev eth0 || fail "node topology"
    echo 1 > /proc/sys/net/ipv4/ip_forward
    for f in /proc/sys/net/ipv4/conf/*/rp_filter; do echo 0 > "$f"; done
    rm -rf /var/lib/cni /run/cni
    mkdir -p "$NETCONFPATH"
}

iv_node_down() {
    for ns in $(ip netns list | awk '{ print $1 }'); do ip netns del "$ns"; done
    ip link del eth0 2>/dev/null
    ip route flush table all type unreachable 2>/dev/null
    rm -rf /var/lib/cni /run/cni "$NETCONFPATH"
    true
}

# iv_conflist NET MODE IPAM_TYPE RANGE_EXTRA DATADIR WITH_TOMBSTONE [PLUGIN_EXTRA]
# PLUGIN_EXTRA: more keys of the tombstone-ipvlan object (', "mtu": 1400').
iv_conflist() {
    tomb=""
    [ "$6" = 1 ] && tomb=",
    { \"type\": \"tombstone\", \"holdSeconds\": ${IV_HOLD:-$HOLD} }"
    mkdir -p "$NETCONFPATH"
    cat > "$NETCONFPATH/$1.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "$1",
  "plugins": [
    { "type": "tombstone-ipvlan", "mode": "$2"${7:-}, "capabilities": { "ips": true },
      "ipam": { "type": "$3", "dataDir": "$5", "reuseAfterSeconds": 60,
                "ranges": [[{ "subnet": "10.10.0.0/24", "gateway": "10.10.0.1"$4 }]],
                "routes": [{ "dst": "0.0.0.0/0" }] } }$tomb
  ]
}
EOF
}

# The reference chain, for the benchmark: ipvlan + host-local.
iv_reference_conflist() {
    mkdir -p "$NETCONFPATH"
    cat > "$NETCONFPATH/$1.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "$1",
  "plugins": [
    { "type": "ipvlan", "master": "eth0", "mode": "l2",
      "ipam": { "type": "host-local", "ranges": [[{ "subnet": "10.20.0.0/16", "gateway": "10.20.0.1" }]],
                "routes": [{ "dst": "0.0.0.0/0" }] } }
  ]
}
EOF
}

gw_port() { ip -o link show | awk -F': ' '{ split($2, n, "@"); print n[1] }' | grep '^gw_' | tr '\n' ' ' | sed 's/ $//'; }
# Links in a pod's netns other than lo, one line.
ns_links() { ip -n "$1" -o link show 2>/dev/null | awk -F': ' '{ split($2, n, "@"); print n[1] }' | grep -vx lo | tr '\n' ' ' | sed 's/ $//'; }
# Host links other than lo, eth0 and the gateway port.
iv_stray_links() { ip -o link show | awk -F': ' '{ split($2, n, "@"); print n[1] }' | grep -vx 'lo\|eth0' | grep -v '^gw_' | tr '\n' ' ' | sed 's/ $//'; }
# Allocations tombstone-ipam holds for network $1 in data dir $2 (default /var/lib/cni/networks).
# (one file per address in tombstone-ipam.d/: `["a",...]` allocated, `["r",...]` released).
allocations() {
    d="${2:-/var/lib/cni/networks}/$1/tombstone-ipam.d"
    if [ -d "$d" ]; then cat "$d"/ip-* 2>/dev/null | grep -c '^\["a"'; else echo 0; fi
}
# The pod's IPvlan mode as the kernel reports it.
pod_mode() { ip -n "$1" -d link show eth0 | sed -n 's/.*ipvlan *mode \([a-z0-9]*\).*/\1/p' | head -1; }
# The plugin's stdout error code from a cnitool failure log.
err_code() { sed -n 's/.*"code": *\([0-9]*\).*/\1/p; s/.*code \([0-9]*\).*/\1/p' "$1" | head -1; }

# ---- ADD/CHECK/DEL in one mode, host<->pod through the gateway port, pod<->pod
iv_mode() {
    MODE=$1
    VARIANT=$MODE
    NET=ivnet-$MODE
    iv_node_up
    iv_conflist "$NET" "$MODE" tombstone-ipam "" /var/lib/cni/networks 0
    pod_add a > /tmp/add-a.log 2>&1 || { cat /tmp/add-a.log; fail "ADD of pod a"; }
    pod_add b > /tmp/add-b.log 2>&1 || { cat /tmp/add-b.log; fail "ADD of pod b"; }
    a=$(pod_addr a 4)
    b=$(pod_addr b 4)
    say addr_a "$a"
    say addr_b "$b"
    say mode_a "$(pod_mode a)"
    # Its IPv4 address is announced when the link comes up (gratuitous ARP).
    say announce_a "$(ip netns exec a cat /proc/sys/net/ipv4/conf/eth0/arp_notify)"
    say gw_port "$(gw_port)"
    say gw_addr "$(ip -4 -o addr show dev "$(gw_port)" | awk '{ print $4 }' | tr '\n' ' ')"
    say gw_up "$(ip -o link show dev "$(gw_port)" | grep -c '[<,]UP[,>]')"
    say host_route "$(ip route show 10.10.0.0/24 | head -1)"
    say pod_route "$(ip -n a route show default | head -1)"
    say result_iface "$(grep -c '"sandbox": *"/run/netns/a"' /tmp/result-a.json)"
    say a_to_b "$(yes_no reach a "$b")"
    say b_to_a "$(yes_no reach b "$a")"
    say host_to_a "$(yes_no reach host "$a")"
    say host_to_b "$(yes_no reach host "$b")"
    say a_to_gw "$(yes_no reach a 10.10.0.1)"
    say a_to_node "$(yes_no reach a 192.168.100.2)"
    if pod_check a > /tmp/check-a.log 2>&1; then say check ok; else say check failed; cat /tmp/check-a.log; fi
    # CHECK notices a removed address.
    ip -n a addr del "$a/24" dev eth0
    if pod_check a > /tmp/check-a2.log 2>&1; then say check_tampered ok; else say check_tampered failed; fi
    pod_del a || fail "DEL of pod a"
    # A repeated DEL, with the netns gone, succeeds (cnitool's cache is gone: no prevResult).
    if CNI_CONTAINERID=pod-a "$CNITOOL" del "$NET" /run/netns/a > /tmp/del2.log 2>&1; then say del_again ok; else say del_again failed; cat /tmp/del2.log; fi
    say allocations_after_del_a "$(allocations "$NET")"
    pod_del b || fail "DEL of pod b"
    say allocations_end "$(allocations "$NET")"
    say stray_links "$(iv_stray_links)"
    say gw_port_after "$(gw_port)"
    iv_node_down
}

# ---- failure injection: every failed ADD leaves no link and no allocation
iv_failures() {
    VARIANT=fail
    NET=ivfail
    iv_node_up
    # IPAM error: tombstone-ipam's data dir is a file.
    echo x > /tmp/not-a-dir
    iv_conflist "$NET" l2 tombstone-ipam "" /tmp/not-a-dir/sub 0
    ip netns add f1
    if CNI_CONTAINERID=pod-f1 "$CNITOOL" add "$NET" /run/netns/f1 > /tmp/f1.log 2>&1; then say ipam_error_add succeeded; else say ipam_error_add failed; fi
    say ipam_error_msg "$(head -c 300 /tmp/f1.log | tr '\n' ' ')"
    say ipam_error_links "$(ns_links f1)"

    # IPAM exhausted: a range of one address; the second pod gets none.
    iv_conflist "$NET" l2 tombstone-ipam ', "rangeStart": "10.10.0.50", "rangeEnd": "10.10.0.50"' /var/lib/cni/networks 0
    pod_add x1 > /tmp/x1.log 2>&1 || { cat /tmp/x1.log; fail "ADD of pod x1"; }
    ip netns add x2
    if CNI_CONTAINERID=pod-x2 "$CNITOOL" add "$NET" /run/netns/x2 > /tmp/x2.log 2>&1; then say exhausted_add succeeded; else say exhausted_add failed; fi
    say exhausted_msg "$(head -c 300 /tmp/x2.log | tr '\n' ' ')"
    say exhausted_links "$(ns_links x2)"
    say exhausted_allocations "$(allocations "$NET")"
    pod_del x1 || fail "DEL of pod x1"

    # Bad netns: a missing path and a file that is not a netns.
    iv_conflist "$NET" l2 tombstone-ipam "" /var/lib/cni/networks 0
    if CNI_CONTAINERID=pod-n1 "$CNITOOL" add "$NET" /run/netns/absent > /tmp/n1.log 2>&1; then say badns_add succeeded; else say badns_add failed; fi
    say badns_msg "$(head -c 300 /tmp/n1.log | tr '\n' ' ')"
    : > /tmp/plain-file
    if CNI_CONTAINERID=pod-n2 "$CNITOOL" add "$NET" /tmp/plain-file > /tmp/n2.log 2>&1; then say notns_add succeeded; else say notns_add failed; fi
    say notns_msg "$(head -c 300 /tmp/n2.log | tr '\n' ' ')"

    # Name collision: the pod already has an eth0 (a dummy); it must survive ADD and DEL.
    ip netns add c1
    ip -n c1 link add eth0 type dummy
    if CNI_CONTAINERID=pod-c1 "$CNITOOL" add "$NET" /run/netns/c1 > /tmp/c1.log 2>&1; then say collision_add succeeded; else say collision_add failed; fi
    say collision_msg "$(head -c 300 /tmp/c1.log | tr '\n' ' ')"
    CNI_CONTAINERID=pod-c1 "$CNITOOL" del "$NET" /run/netns/c1 > /dev/null 2>&1 || say collision_del failed
    say collision_links "$(ns_links c1)"
    say collision_kind "$(ip -n c1 -d link show eth0 | grep -o 'dummy' | head -1)"
    say failures_allocations "$(allocations "$NET")"

    # Killed mid-ADD: IPAM is a wrapper that allocates with tombstone-ipam, then stalls; the
    # plugin is killed with SIGKILL while it waits. The link exists (temporary name) and so
    # does the allocation. k1 is retried (ADD again), k2 only deleted, as a runtime would.
    mkdir -p /tmp/slowbin
    cat > /tmp/slowbin/slow-ipam <<EOF
#!/bin/sh
out=\$("$OURS/tombstone-ipam")
rc=\$?
if [ "\$CNI_COMMAND" = ADD ] && [ ! -e /tmp/slow-off ]; then
    sleep 60 &
    echo \$! > /tmp/slow-sleep.pid
    touch /tmp/ipam-allocated
    wait
fi
echo "\$out"
exit \$rc
EOF
    chmod +x /tmp/slowbin/slow-ipam
    iv_conflist "$NET" l2 slow-ipam "" /var/lib/cni/networks 0
    for k in k1 k2; do
        ip netns add $k
        rm -f /tmp/ipam-allocated
        CNI_PATH="/tmp/slowbin:$CNI_PATH" CNI_CONTAINERID=pod-$k "$CNITOOL" add "$NET" /run/netns/$k > /tmp/$k.log 2>&1 &
        i=0
        while [ ! -e /tmp/ipam-allocated ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
        for p in /proc/[0-9]*; do
            case $(readlink "$p/exe" 2>/dev/null) in *tombstone-ipvlan) kill -9 "${p#/proc/}" ;; esac
        done
        wait
        kill "$(cat /tmp/slow-sleep.pid)" 2>/dev/null
        say killed_links_$k "$(ns_links $k)"
    done
    say killed_allocations "$(allocations "$NET")"
    touch /tmp/slow-off
    if CNI_PATH="/tmp/slowbin:$CNI_PATH" CNI_CONTAINERID=pod-k1 "$CNITOOL" add "$NET" /run/netns/k1 > /tmp/k1b.log 2>&1; then say killed_retry_add ok; else say killed_retry_add failed; cat /tmp/k1b.log; fi
    say killed_retry_links "$(ns_links k1)"
    CNI_PATH="/tmp/slowbin:$CNI_PATH" CNI_CONTAINERID=pod-k1 "$CNITOOL" del "$NET" /run/netns/k1 > /dev/null 2>&1 || say killed_del_k1 failed
    CNI_PATH="/tmp/slowbin:$CNI_PATH" CNI_CONTAINERID=pod-k2 "$CNITOOL" del "$NET" /run/netns/k2 > /dev/null 2>&1 || say killed_del_k2 failed
    say killed_links_after_del "$(ns_links k1)|$(ns_links k2)"
    say killed_allocations_after_del "$(allocations "$NET")"

    # DEL when the master is gone: pod m1 up, then eth0 deleted, then DEL.
    iv_conflist "$NET" l2 tombstone-ipam "" /var/lib/cni/networks 0
    pod_add m1 > /tmp/m1.log 2>&1 || { cat /tmp/m1.log; fail "ADD of pod m1"; }
    ip link del eth0
    if CNI_CONTAINERID=pod-m1 "$CNITOOL" del "$NET" /run/netns/m1 > /tmp/m1d.log 2>&1; then say master_gone_del ok; else say master_gone_del failed; cat /tmp/m1d.log; fi
    say master_gone_allocations "$(allocations "$NET")"
    say stray_links "$(iv_stray_links)"
    iv_node_down
}

# ---- 20 concurrent ADDs, then 20 concurrent DELs
iv_concurrent() {
    VARIANT=concurrent
    NET=ivconc
    iv_node_up
    iv_conflist "$NET" l2 tombstone-ipam "" /var/lib/cni/networks 0
    n=20
    i=1
    while [ $i -le $n ]; do ip netns add "q$i"; i=$((i + 1)); done
    i=1
    while [ $i -le $n ]; do
        (CNI_CONTAINERID=pod-q$i "$CNITOOL" add "$NET" /run/netns/q$i > /tmp/q$i.json 2> /tmp/q$i.err; echo $? > /tmp/q$i.rc) &
        i=$((i + 1))
    done
    wait
    ok=0
    i=1
    while [ $i -le $n ]; do
        [ "$(cat /tmp/q$i.rc)" = 0 ] && ok=$((ok + 1)) || cat /tmp/q$i.err
        pod_addr "q$i" 4 >> /tmp/q-addrs
        i=$((i + 1))
    done
    say adds_ok "$ok"
    say distinct_addrs "$(sort -u /tmp/q-addrs | grep -c .)"
    say gw_ports "$(gw_port | wc -w)"
    say gw_addrs "$(ip -4 -o addr show dev "$(gw_port)" | grep -c 'inet ')"
    say allocations "$(allocations "$NET")"
    reach_ok=0
    for addr in $(cat /tmp/q-addrs); do reach host "$addr" && reach_ok=$((reach_ok + 1)); done
    say host_reaches "$reach_ok"
    i=1
    while [ $i -le $n ]; do
        (CNI_CONTAINERID=pod-q$i "$CNITOOL" del "$NET" /run/netns/q$i > /dev/null 2>&1; echo $? > /tmp/qd$i.rc) &
        i=$((i + 1))
    done
    wait
    ok=0
    i=1
    while [ $i -le $n ]; do [ "$(cat /tmp/qd$i.rc)" = 0 ] && ok=$((ok + 1)); i=$((i + 1)); done
    say dels_ok "$ok"
    left=0
    i=1
    while [ $i -le $n ]; do [ -n "$(ns_links q$i)" ] && left=$((left + 1)); i=$((i + 1)); done
    say pods_with_links "$left"
    say allocations_end "$(allocations "$NET")"
    iv_node_down
}

# ---- the seed scenario on our three plugins: tombstone-ipvlan + tombstone-ipam + tombstone
iv_seed() {
    VARIANT=chain
    NET=ivchain
    # A hold longer than the measurements below: the tombstone plugin ends tombstones at
    # their hold on its own.
    IV_HOLD=30
    iv_node_up
    iv_conflist "$NET" l2 tombstone-ipam "" /var/lib/cni/networks 1
    pod_add a > /tmp/sa.log 2>&1 || { cat /tmp/sa.log; fail "ADD of pod a"; }
    pod_add b > /tmp/sb.log 2>&1 || { cat /tmp/sb.log; fail "ADD of pod b"; }
    addr=$(pod_addr a 4)
    say released_4 "$addr"
    say b_to_a "$(yes_no reach b "$addr")"
    say host_to_a "$(yes_no reach host "$addr")"
    say a_to_host "$(yes_no reach a 10.10.0.1)"
    pod_del a || fail "DEL of pod a"
    say route_at_del_4 "$(route_kind "$addr")"
    n0=$(forwarded 4)
    ip netns exec b busybox ping -4 -c "$PINGS" -i 0.2 -W 1 "$addr" > /dev/null 2>&1
    n1=$(forwarded 4)
    say forwarded_4 "$((n1 - n0))"
    sleep 2
    say host_sender_4 "$(host_sender "$addr")"
    # IPAM's cool-down keeps the released address from the next pod...
    pod_add d > /tmp/sd.log 2>&1 || { cat /tmp/sd.log; fail "ADD of pod d"; }
    say next_addr_4 "$(pod_addr d 4)"
    # ...and an explicit request gets it back, reachable at once (tombstone removed).
    if pod_add c "$addr" > /tmp/sc.log 2>&1; then say reuse_add ok; else say reuse_add failed; cat /tmp/sc.log; fi
    say reuse_addr_4 "$(pod_addr c 4)"
    say reuse_from_pod_4 "$(yes_no reach b "$addr")"
    say reuse_from_host_4 "$(yes_no reach host "$addr")"
    if pod_check c > /tmp/check-c.log 2>&1; then say reuse_check ok; else say reuse_check failed; cat /tmp/check-c.log; fi
    for p in b c d; do pod_del $p || fail "DEL of pod $p"; done
    say stray_links "$(iv_stray_links)"
    say allocations_end "$(allocations "$NET")"
    iv_node_down
}

# ---- STATUS, GC, mtu, linkInContainer and a dual-stack gateway port

# iv_plugin_conf NET VERSION [EXTRA]: the config a runtime gives the first plugin of
# $NETCONFPATH/NET.conflist: the plugin's object with the list's name and the given
# cniVersion, plus EXTRA keys (e.g. cni.dev/valid-attachments). iv_conflist writes the
# plugin object between the '"plugins": [' line and the line that closes the list.
iv_plugin_conf() {
    sed -n '/"plugins": \[/,/^  \]/p' "$NETCONFPATH/$1.conflist" | sed '1d;$d' |
        sed "1s|{|{ \"cniVersion\": \"$2\", \"name\": \"$1\"${3:-},|"
}

# iv_direct COMMAND CONFIG_FILE: runs tombstone-ipvlan itself (no libcni), as a 1.1 runtime
# does for GC and STATUS; stdout in /tmp/direct.out; prints the exit status.
iv_direct() {
    CNI_COMMAND=$1 "$OURS/tombstone-ipvlan" < "$2" > /tmp/direct.out 2> /tmp/direct.err
    echo $?
}
direct_code() { sed -n 's/.*"code": *\([0-9]*\).*/\1/p' /tmp/direct.out | head -1; }
direct_msg() { sed 's/\\"//g' /tmp/direct.out | sed -n 's/.*"msg": *"\([^"]*\)".*/\1/p' | head -1; }

iv_status_gc_options() {
    # STATUS: ok with the master up; 50 with it down or missing (configured master, and the
    # default route's link, which goes with the link when it goes down).
    VARIANT=status
    NET=ivstatus
    iv_node_up
    iv_conflist "$NET" l2 tombstone-ipam "" /var/lib/cni/networks 0
    iv_plugin_conf "$NET" 1.1.0 > /tmp/status-default.json
    iv_conflist "$NET" l2 tombstone-ipam "" /var/lib/cni/networks 0 ', "master": "eth0"'
    iv_plugin_conf "$NET" 1.1.0 > /tmp/status-eth0.json
    say up_default_rc "$(iv_direct STATUS /tmp/status-default.json)"
    say up_default_stdout "$(wc -c < /tmp/direct.out)"
    say up_master_rc "$(iv_direct STATUS /tmp/status-eth0.json)"
    ip link set eth0 down
    say down_master_rc "$(iv_direct STATUS /tmp/status-eth0.json)"
    say down_master_code "$(direct_code)"
    say down_master_msg "$(direct_msg)"
    say down_default_rc "$(iv_direct STATUS /tmp/status-default.json)"
    say down_default_code "$(direct_code)"
    say down_default_msg "$(direct_msg)"
    ip link set eth0 up
    ip route add default via 192.168.100.1 dev eth0
    say up_again_rc "$(iv_direct STATUS /tmp/status-eth0.json)"
    ip link del eth0
    say missing_master_rc "$(iv_direct STATUS /tmp/status-eth0.json)"
    say missing_master_code "$(direct_code)"
    say missing_master_msg "$(direct_msg)"
    say missing_default_rc "$(iv_direct STATUS /tmp/status-default.json)"
    say missing_default_code "$(direct_code)"
    iv_node_down

    # GC: pods g1 and g2 through libcni (1.0.0), then GC (1.1.0) listing g1 only.
    VARIANT=gc
    NET=ivgc
    iv_node_up
    iv_conflist "$NET" l2 tombstone-ipam "" /var/lib/cni/networks 0
    pod_add g1 > /tmp/g1.log 2>&1 || { cat /tmp/g1.log; fail "ADD of pod g1"; }
    pod_add g2 > /tmp/g2.log 2>&1 || { cat /tmp/g2.log; fail "ADD of pod g2"; }
    g1=$(pod_addr g1 4)
    g2=$(pod_addr g2 4)
    state=/var/lib/cni/networks/$NET/tombstone-ipam.d
    say allocations_before "$(allocations "$NET")"
    iv_plugin_conf "$NET" 1.1.0 ', "cni.dev/valid-attachments": [{ "containerID": "pod-g1", "ifname": "eth0" }]' > /tmp/gc.json
    echo "# [gc] config:"; sed 's/^/#   /' /tmp/gc.json
    say gc_rc "$(iv_direct GC /tmp/gc.json)"
    say gc_stdout "$(wc -c < /tmp/direct.out)"
    [ -s /tmp/direct.out ] && cat /tmp/direct.out
    say allocations_after "$(allocations "$NET")"
    say kept_g1 "$(cat "$state/ip-$g1" 2>/dev/null | grep -c "^\[\"a\",\"$g1\",\"pod-g1\",\"eth0\"\]")"
    say kept_g2 "$(cat "$state/ip-$g2" 2>/dev/null | grep -c "^\[\"a\",\"$g2\",")"
    say released_g2 "$(cat "$state/ip-$g2" 2>/dev/null | grep -c "^\[\"r\",\"$g2\",")"
    say g1_reachable "$(yes_no reach host "$g1")"
    if pod_check g1 > /tmp/gc-check.log 2>&1; then say g1_check ok; else say g1_check failed; cat /tmp/gc-check.log; fi
    # The address GC released is not handed out again (cool-down) to the next pod.
    pod_add g3 > /tmp/g3.log 2>&1 || { cat /tmp/g3.log; fail "ADD of pod g3"; }
    say g3_got_g2 "$([ "$(pod_addr g3 4)" = "$g2" ] && echo yes || echo no)"
    for p in g1 g2 g3; do pod_del $p || fail "DEL of pod $p"; done
    say allocations_end "$(allocations "$NET")"
    say stray_links "$(iv_stray_links)"
    iv_node_down

    # mtu: the pod link gets the configured MTU (the master has 1500).
    VARIANT=mtu
    NET=ivmtu
    iv_node_up
    iv_conflist "$NET" l2 tombstone-ipam "" /var/lib/cni/networks 0 ', "mtu": 1400'
    pod_add u > /tmp/u.log 2>&1 || { cat /tmp/u.log; fail "ADD of pod u"; }
    say pod_mtu "$(ip -n u -o link show eth0 | sed -n 's/.* mtu \([0-9]*\) .*/\1/p')"
    say master_mtu "$(ip -o link show eth0 | sed -n 's/.* mtu \([0-9]*\) .*/\1/p')"
    say host_to_pod "$(yes_no reach host "$(pod_addr u 4)")"
    if pod_check u > /tmp/u-check.log 2>&1; then say check ok; else say check failed; cat /tmp/u-check.log; fi
    pod_del u || fail "DEL of pod u"
    say allocations_end "$(allocations "$NET")"
    iv_node_down

    # linkInContainer: the master (a dummy m0) lives in the pod's netns; no gateway port.
    VARIANT=lic
    NET=ivlic
    iv_node_up
    iv_conflist "$NET" l2 tombstone-ipam "" /var/lib/cni/networks 0 ', "master": "m0", "linkInContainer": true'
    ip netns add lc
    ip -n lc link add m0 type dummy && ip -n lc link set m0 up || fail "m0 in the pod"
    if CNI_CONTAINERID=pod-lc "$CNITOOL" add "$NET" /run/netns/lc > /tmp/result-lc.json 2> /tmp/lc.log; then say add ok; else say add failed; cat /tmp/result-lc.json /tmp/lc.log; fi
    say pod_links "$(ns_links lc)"
    say pod_parent "$(ip -n lc -o link show eth0 | awk -F': ' '{ print $2 }')"
    say pod_kind "$(ip -n lc -d link show eth0 | grep -o 'ipvlan' | head -1)"
    say pod_addr "$(pod_addr lc 4)"
    say pod_route "$(ip -n lc route show default | head -1)"
    say gw_port "$(gw_port)"
    say host_links "$(iv_stray_links)"
    iv_plugin_conf "$NET" 1.1.0 > /tmp/status-lic.json
    say status_rc "$(iv_direct STATUS /tmp/status-lic.json)"
    if CNI_CONTAINERID=pod-lc "$CNITOOL" check "$NET" /run/netns/lc > /tmp/lc-check.log 2>&1; then say check ok; else say check failed; cat /tmp/lc-check.log; fi
    if CNI_CONTAINERID=pod-lc "$CNITOOL" del "$NET" /run/netns/lc > /tmp/lc-del.log 2>&1; then say del ok; else say del failed; cat /tmp/lc-del.log; fi
    say pod_links_after_del "$(ns_links lc)"
    say allocations_end "$(allocations "$NET")"
    iv_node_down

    # Dual stack: the gateway port holds both gateways; the pod reaches the host over IPv6.
    VARIANT=dual
    NET=ivdual
    iv_node_up
    echo 1 > /proc/sys/net/ipv6/conf/all/forwarding
    cat > "$NETCONFPATH/$NET.conflist" <<CONF
{
  "cniVersion": "1.0.0",
  "name": "$NET",
  "plugins": [
    { "type": "tombstone-ipvlan", "mode": "l2",
      "ipam": { "type": "tombstone-ipam", "dataDir": "/var/lib/cni/networks", "reuseAfterSeconds": 60,
                "ranges": [[{ "subnet": "10.10.0.0/24", "gateway": "10.10.0.1" }],
                           [{ "subnet": "fd00:10::/64", "gateway": "fd00:10::1" }]],
                "routes": [{ "dst": "0.0.0.0/0" }, { "dst": "::/0" }] } }
  ]
}
CONF
    pod_add a > /tmp/da.log 2>&1 || { cat /tmp/da.log; fail "ADD of pod a"; }
    pod_add b > /tmp/db.log 2>&1 || { cat /tmp/db.log; fail "ADD of pod b"; }
    a6=$(pod_addr a 6)
    b6=$(pod_addr b 6)
    say addr_a6 "$a6"
    say gw_ports "$(gw_port | wc -w)"
    say gw_addrs "$(ip -o addr show dev "$(gw_port)" scope global | awk '{ print $4 }' | sort | tr '\n' ' ' | sed 's/ $//')"
    say pod_route6 "$(ip -n a -6 route show default | head -1)"
    say host_route6 "$(ip -6 route show fd00:10::/64 | head -1)"
    say a_to_gw6 "$(yes_no reach a fd00:10::1)"
    say host_to_a6 "$(yes_no reach host "$a6")"
    say a_to_b6 "$(yes_no reach a "$b6")"
    say a_to_gw4 "$(yes_no reach a 10.10.0.1)"
    if pod_check a > /tmp/da-check.log 2>&1; then say check ok; else say check failed; cat /tmp/da-check.log; fi
    pod_del a || fail "DEL of pod a"
    pod_del b || fail "DEL of pod b"
    say allocations_end "$(allocations "$NET")"
    say stray_links "$(iv_stray_links)"
    iv_node_down
}

# ---- benchmark: ADD and DEL latency through cnitool, the chains interleaved in one VM
# iv_bench RUNS
iv_bench() {
    VARIANT=bench
    iv_node_up
    iv_conflist ours l2 tombstone-ipam "" /var/lib/cni/networks 0
    iv_conflist ourchain l2 tombstone-ipam "" /var/lib/cni/networks 1
    sed -i 's/10\.10\./10.30./g' "$NETCONFPATH/ourchain.conflist"
    iv_reference_conflist reference
    : > /tmp/bench.txt
    export CNITOOL_TIMING=1
    i=1
    while [ "$i" -le "$1" ]; do
        for net in reference ours ourchain; do
            ns=bn-$net
            ip netns add "$ns"
            t0=$(date +%s%N)
            CNI_CONTAINERID=bench-$net-$i "$CNITOOL" add "$net" "/run/netns/$ns" > /dev/null 2> /tmp/bench.err || { cat /tmp/bench.err; echo "FAIL bench ADD $net"; }
            t1=$(date +%s%N)
            echo "$net addlib $(awk '$1 == "libcni_us" { print $2 }' /tmp/bench.err)" >> /tmp/bench.txt
            CNI_CONTAINERID=bench-$net-$i "$CNITOOL" del "$net" "/run/netns/$ns" > /dev/null 2> /tmp/bench.err || { cat /tmp/bench.err; echo "FAIL bench DEL $net"; }
            t2=$(date +%s%N)
            echo "$net dellib $(awk '$1 == "libcni_us" { print $2 }' /tmp/bench.err)" >> /tmp/bench.txt
            # The pod's ADD+DEL inside libcni, this run's two calls summed.
            tail -2 /tmp/bench.txt | awk -v n="$net" '{ s += $3 } END { print n, "podlib", s }' >> /tmp/bench.txt
            ip netns del "$ns"
            echo "$net add $(((t1 - t0) / 1000))" >> /tmp/bench.txt
            echo "$net del $(((t2 - t1) / 1000))" >> /tmp/bench.txt
        done
        i=$((i + 1))
    done
    unset CNITOOL_TIMING
    for net in reference ours ourchain; do
        for op in add del addlib dellib podlib; do
            # median and mean, microseconds
            awk -v n="$net" -v o="$op" '$1 == n && $2 == o { print $3 }' /tmp/bench.txt | sort -n > /tmp/b.sorted
            say "${net}_${op}_median_us" "$(awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }' /tmp/b.sorted)"
            say "${net}_${op}_mean_us" "$(awk '{ s += $1 } END { printf "%d", s / NR }' /tmp/b.sorted)"
        done
    done
    say stray_links "$(iv_stray_links)"
    say allocations_end "$(allocations ours) $(allocations ourchain)"
    iv_node_down
}

# ---- what one process start costs here: VERSION of each plugin binary, RUNS times
# iv_exec_cost RUNS
iv_exec_cost() {
    VARIANT=bench
    dir=${CNI_PATH%%:*}
    for bin in ipvlan host-local tombstone-ipvlan tombstone-ipam tombstone; do
        : > /tmp/exec.txt
        i=1
        while [ "$i" -le "$1" ]; do
            t0=$(date +%s%N)
            echo '{"cniVersion":"1.0.0"}' | CNI_COMMAND=VERSION "$dir/$bin" > /dev/null 2>&1
            t1=$(date +%s%N)
            echo $(((t1 - t0) / 1000)) >> /tmp/exec.txt
            i=$((i + 1))
        done
        say "exec_${bin}_median_us" "$(sort -n /tmp/exec.txt | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')"
    done
}

# ---- instructions: every process of a chain's ADD and DEL under callgrind
# iv_callgrind: after one unmeasured ADD+DEL of each chain (the gateway port, the data and
# state directories made, as on a node that already runs pods), one ADD and one DEL of a fresh
# netns through cnitool with CNI_PATH on a wrapper directory: each plugin name there execs
# valgrind's callgrind on the real binary (GODEBUG=asyncpreemptoff=1, as plugin/bench/startup.sh
# counts the Go plugins), so a plugin's delegated IPAM runs under it too. Says per chain and
# verb the sum of user-space instructions over its processes, and how many there were.
# The background sweeper a burying DEL starts (one per state directory, shared by every pod
# of the node, not run per pod) is started by the unmeasured DEL and not counted.
iv_callgrind() {
    VARIANT=bench
    command -v valgrind > /dev/null || fail "valgrind is missing in the guest (conformance/vm/install-deps.sh)"
    iv_node_up
    iv_conflist ourchain l2 tombstone-ipam "" /var/lib/cni/networks 1
    iv_reference_conflist reference
    real=${CNI_PATH%%:*}
    wrap=/tmp/cg-bin
    mkdir -p "$wrap"
    for bin in ipvlan host-local tombstone-ipvlan tombstone-ipam tombstone; do
        cat > "$wrap/$bin" <<WRAP
#!/bin/sh
exec env GODEBUG=asyncpreemptoff=1 valgrind --tool=callgrind --callgrind-out-file=/dev/null \
    --log-file="\$CG_DIR/$bin.\$\$.log" "$real/$bin" "\$@"
WRAP
        chmod +x "$wrap/$bin"
    done
    for net in reference ourchain; do
        ip netns add "cw-$net"
        CNI_CONTAINERID=cgwarm-$net "$CNITOOL" add "$net" "/run/netns/cw-$net" > /dev/null 2> /tmp/cg.err || { cat /tmp/cg.err; fail "warm-up ADD $net"; }
        CNI_CONTAINERID=cgwarm-$net "$CNITOOL" del "$net" "/run/netns/cw-$net" > /dev/null 2> /tmp/cg.err || { cat /tmp/cg.err; fail "warm-up DEL $net"; }
        ip netns del "cw-$net"
        ip netns add "cg-$net"
        for op in add del; do
            export CG_DIR=/tmp/cg-$net-$op
            rm -rf "$CG_DIR"
            mkdir -p "$CG_DIR"
            CNI_PATH=$wrap CNI_CONTAINERID=cg-$net "$CNITOOL" "$op" "$net" "/run/netns/cg-$net" > /dev/null 2> /tmp/cg.err || { cat /tmp/cg.err; fail "$op $net under callgrind"; }
            total=0
            n=0
            for log in "$CG_DIR"/*.log; do
                [ -e "$log" ] || fail "$op $net: no valgrind log"
                c=$(sed -n 's/^==[0-9]*== Collected : \([0-9]*\).*/\1/p' "$log" | head -1)
                [ -n "$c" ] || { cat "$log"; fail "$op $net: no 'Collected' line in $log"; }
                note "$op $net: $(basename "$log" .log) $c"
                total=$((total + c))
                n=$((n + 1))
            done
            say "${net}_${op}_instr" "$total"
            say "${net}_${op}_procs" "$n"
        done
        unset CG_DIR
        ip netns del "cg-$net"
    done
    say cg_stray_links "$(iv_stray_links)"
    iv_node_down
}
