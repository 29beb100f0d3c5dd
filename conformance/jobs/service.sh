# The Service scenario, one variant: sourced after lib.sh. The header sets VARIANT, NET, MODE,
# CNI_PATH, PROBE (cni-svc-probe), OWN_PORT (1: tombstone-ipvlan makes its own gateway port,
# 0: the hand-made gw0 of node_up) and writes the conflist, then calls svc_variant.
#
# The host reaches pod a through a ClusterIP (DNAT in nat output, kube-proxy's iptables-mode
# chains written in nftables: KUBE-SERVICES -> KUBE-SVC -> KUBE-SEP) and through a NodePort
# on the node's address (KUBE-NODEPORTS -> KUBE-EXT: KUBE-MARK-MASQ, then the same KUBE-SVC;
# masquerade in postrouting, so a sees the gateway port's address as the source). A steady UDP
# flow on each, one from pod c to the ClusterIP (DNAT in prerouting: the host forwards it), and
# one TCP connection from the host to the ClusterIP. The host reaches b first (as kubelet's
# readiness probes would), so its neighbour entry for b is there. c gets no replies: a answers
# c directly on the pod subnet (no masquerade for a cluster source: the hairpin kube-proxy
# leaves alone), which c's connected socket drops; c's flow is there for what the host forwards. a is deleted; SVC_WATCH_DEL_MS later
# the Service is switched to pod b (what kube-proxy does once the endpoint is gone), then
# SVC_WATCH_SWITCH_MS more are watched.

SVC_IP=10.96.0.10
NODE_IP=192.168.100.2
GW_IP=10.10.0.1
NODEPORT=30053
POD_PORT=5353
SVC_INTERVAL_MS=${SVC_INTERVAL_MS:-20}
SVC_WATCH_DEL_MS=${SVC_WATCH_DEL_MS:-2000}
SVC_WATCH_SWITCH_MS=${SVC_WATCH_SWITCH_MS:-3000}

# The netfilter modules, loaded with the chroot's modprobe (the host's /lib/modules holds the
# guest kernel's tree): the guest kernel's own module autoloading calls /sbin/modprobe in the
# initramfs, which has none.
svc_modules() {
    for m in nf_conntrack_netlink nf_tables nft_chain_nat nft_nat nft_masq nft_objref; do
        modprobe "$m" || fail "modprobe $m"
    done
}

# The node: eth0 (a dummy) with the node's address and the default route (the ClusterIP is
# routed there before DNAT); the gateway port is gw0 (reference chain) or the plugin's own.
svc_node_up() {
    if [ "$OWN_PORT" = 1 ]; then
        ip link add eth0 type dummy && ip link set eth0 up || fail "node topology"
        echo 1 > /proc/sys/net/ipv4/ip_forward
        for f in /proc/sys/net/ipv4/conf/*/rp_filter; do echo 0 > "$f"; done
        rm -rf /var/lib/cni /run/cni
        mkdir -p "$NETCONFPATH"
    else
        node_up "$MODE"
    fi
    ip addr add "$NODE_IP/24" dev eth0 && ip route add default via 192.168.100.1 dev eth0 ||
        fail "node address"
}

# svc_rules A B C: the kube-proxy-like rules, Service endpoint A; counters of what the host
# forwards to A per flow (C: the client pod).
svc_rules() {
    cat > /tmp/svc.nft <<EOF
table ip kube-proxy {
    counter fwd_clusterip_udp { }
    counter fwd_nodeport_udp { }
    counter fwd_clusterip_tcp { }
    counter fwd_pod_udp { }
    chain nat-output { type nat hook output priority -100; policy accept; jump KUBE-SERVICES; }
    chain nat-prerouting { type nat hook prerouting priority dstnat; policy accept; jump KUBE-SERVICES; }
    chain nat-postrouting { type nat hook postrouting priority srcnat; policy accept; jump KUBE-POSTROUTING; }
    chain KUBE-SERVICES {
        ip daddr $SVC_IP udp dport 53 goto KUBE-SVC-UDP
        ip daddr $SVC_IP tcp dport 80 goto KUBE-SVC-TCP
        ip daddr $NODE_IP jump KUBE-NODEPORTS
    }
    chain KUBE-NODEPORTS { udp dport $NODEPORT goto KUBE-EXT-UDP; }
    chain KUBE-EXT-UDP { jump KUBE-MARK-MASQ; goto KUBE-SVC-UDP; }
    chain KUBE-MARK-MASQ { meta mark set meta mark | 0x4000; }
    chain KUBE-POSTROUTING {
        meta mark & 0x4000 == 0 return
        meta mark set meta mark ^ 0x4000
        masquerade
    }
    chain KUBE-SVC-UDP { goto KUBE-SEP-A-UDP; }
    chain KUBE-SVC-TCP { goto KUBE-SEP-A-TCP; }
    chain KUBE-SEP-A-UDP { meta l4proto udp dnat to $1:$POD_PORT; }
    chain KUBE-SEP-A-TCP { meta l4proto tcp dnat to $1:$POD_PORT; }
    chain KUBE-SEP-B-UDP { meta l4proto udp dnat to $2:$POD_PORT; }
    chain KUBE-SEP-B-TCP { meta l4proto tcp dnat to $2:$POD_PORT; }
    chain forward-count {
        type filter hook forward priority 0; policy accept;
        ip daddr $1 ip saddr $NODE_IP meta l4proto udp counter name fwd_clusterip_udp
        ip daddr $1 ip saddr $GW_IP meta l4proto udp counter name fwd_nodeport_udp
        ip daddr $1 ip saddr $3 meta l4proto udp counter name fwd_pod_udp
        ip daddr $1 meta l4proto tcp counter name fwd_clusterip_tcp
    }
}
EOF
    nft -f /tmp/svc.nft
}

# The Service's endpoint is now b: both Service chains jump to b's KUBE-SEP.
svc_switch() {
    nft -f - <<EOF
flush chain ip kube-proxy KUBE-SVC-UDP
add rule ip kube-proxy KUBE-SVC-UDP goto KUBE-SEP-B-UDP
flush chain ip kube-proxy KUBE-SVC-TCP
add rule ip kube-proxy KUBE-SVC-TCP goto KUBE-SEP-B-TCP
EOF
}

svc_counter() { nft list counter ip kube-proxy "$1" | awk '$1 == "packets" { print $2; exit }'; }
# Conntrack entries with ADDR anywhere (either direction).
ct_count() { conntrack -L 2>/dev/null | grep -cF "=$1 "; }

# first_seen LOG SRC: the time of the first datagram from source address SRC in a server log.
first_seen() { awk -v s="$2" '$2 == "udp" && index($3, s ":") == 1 { print $1; exit }' "$1"; }
# src_of LOG SPORT: the source address of the first datagram from source port SPORT.
src_of() { awk -v p="$2" '$2 == "udp" && $3 ~ (":" p "$") { split($3, a, ":"); print a[1]; exit }' "$1"; }
# seen_count LOG SRC KIND
seen_count() { awk -v s="$2" -v k="$3" '$2 == k && index($3, s ":") == 1 { n++ } END { print n + 0 }' "$1"; }

# client_sees LOG T0: what a UDP client met first from T0 on: "<ms after T0> <errno>" or
# "none"; then its error count and the replies it got from T0 to T1.
client_sees() {
    awk -v t="$2" '$1 >= t && $2 == "err" { print $1 - t, $4; f = 1; exit } END { if (!f) print "none" }' "$1"
}
client_errors() { awk -v t="$2" '$1 >= t && $2 == "err" { n++ } END { print n + 0 }' "$1"; }
client_replies() { awk -v t="$2" -v u="$3" '$1 >= t && $1 < u && $2 == "reply" { n++ } END { print n + 0 }' "$1"; }

svc_variant() {
    svc_modules
    svc_node_up
    pod_add a > /tmp/svc-add-a.log 2>&1 || { cat /tmp/svc-add-a.log; fail "ADD of pod a"; }
    pod_add b > /tmp/svc-add-b.log 2>&1 || { cat /tmp/svc-add-b.log; fail "ADD of pod b"; }
    pod_add c > /tmp/svc-add-c.log 2>&1 || { cat /tmp/svc-add-c.log; fail "ADD of pod c"; }
    a=$(pod_addr a 4)
    b=$(pod_addr b 4)
    c=$(pod_addr c 4)
    [ -n "$a" ] && [ -n "$b" ] && [ -n "$c" ] || fail "pods without addresses"
    say addr_a "$a"
    say addr_b "$b"
    say addr_c "$c"
    reach host "$b" || fail "the host cannot reach pod b"
    ip netns exec a "$PROBE" serve "$POD_PORT" > /tmp/srv-a.log 2>&1 &
    srv_a=$!
    ip netns exec b "$PROBE" serve "$POD_PORT" > /tmp/srv-b.log 2>&1 &
    srv_b=$!
    nft delete table ip kube-proxy 2>/dev/null
    svc_rules "$a" "$b" "$c" || fail "the Service's nftables rules"
    rm -f /tmp/svc-stop
    "$PROBE" udp "$SVC_IP:53" 40053 "$SVC_INTERVAL_MS" /tmp/svc-stop > /tmp/cli-clusterip.log 2>&1 &
    cli1=$!
    "$PROBE" udp "$NODE_IP:$NODEPORT" 40054 "$SVC_INTERVAL_MS" /tmp/svc-stop > /tmp/cli-nodeport.log 2>&1 &
    cli2=$!
    "$PROBE" tcp "$SVC_IP:80" "$SVC_INTERVAL_MS" /tmp/svc-stop > /tmp/cli-tcp.log 2>&1 &
    cli3=$!
    ip netns exec c "$PROBE" udp "$SVC_IP:53" 40055 "$SVC_INTERVAL_MS" /tmp/svc-stop > /tmp/cli-pod.log 2>&1 &
    cli4=$!
    # Every flow reaches a before the DEL (10 s at most).
    i=0
    until [ "$(seen_count /tmp/srv-a.log "$NODE_IP" udp)" -ge 5 ] &&
        [ "$(seen_count /tmp/srv-a.log "$GW_IP" udp)" -ge 5 ] &&
        [ "$(seen_count /tmp/srv-a.log "$NODE_IP" tcp)" -ge 5 ] &&
        [ "$(seen_count /tmp/srv-a.log "$c" udp)" -ge 5 ] &&
        grep -q ' reply ' /tmp/cli-clusterip.log && grep -q ' reply ' /tmp/cli-nodeport.log; do
        i=$((i + 1))
        if [ $i -gt 100 ]; then
            touch /tmp/svc-stop
            sed 's/^/#   a: /' /tmp/srv-a.log | tail -5
            sed 's/^/#   clusterip: /' /tmp/cli-clusterip.log | tail -5
            sed 's/^/#   nodeport: /' /tmp/cli-nodeport.log | tail -5
            sed 's/^/#   tcp: /' /tmp/cli-tcp.log | tail -5
            sed 's/^/#   pod: /' /tmp/cli-pod.log | tail -5
            nft list ruleset | sed 's/^/#   /'
            fail "the Service does not reach pod a"
        fi
        sleep 0.1
    done
    say clusterip_src_at_a "$(src_of /tmp/srv-a.log 40053)"
    say nodeport_src_at_a "$(src_of /tmp/srv-a.log 40054)"
    say pod_src_at_a "$(src_of /tmp/srv-a.log 40055)"
    say conntrack_a_before "$(ct_count "$a")"
    conntrack -L 2>/dev/null | grep -F "=$a " | sed 's/^/#   before: /'

    nd=$(forwarded 4)
    t_del=$(now_ms)
    pod_del a > /tmp/svc-del-a.log 2>&1 || { cat /tmp/svc-del-a.log; fail "DEL of pod a"; }
    t_del_end=$(now_ms)
    # Counted from the DEL's end: during it a still answers (pod c's flow is forwarded to it).
    nft reset counters table ip kube-proxy > /dev/null || fail "nft reset counters"
    n0=$(forwarded 4)
    say forwarded_during_del "$((n0 - nd))"
    say del_ms "$((t_del_end - t_del))"
    say conntrack_a_after_del "$(ct_count "$a")"
    say route_at_del "$(route_kind "$a")"
    sleep "$(awk -v ms="$SVC_WATCH_DEL_MS" 'BEGIN { printf "%.3f", ms / 1000 }')"
    n1=$(forwarded 4)
    say conntrack_a_at_switch "$(ct_count "$a")"
    t_sw=$(now_ms)
    svc_switch || fail "switching the Service to pod b"
    t_sw_end=$(now_ms)
    say switch_ms "$((t_sw_end - t_sw))"
    note "neighbour entry for b at the switch: $(ip neigh show to "$b" | tr '\n' ' ')"
    sleep "$(awk -v ms="$SVC_WATCH_SWITCH_MS" 'BEGIN { printf "%.3f", ms / 1000 }')"
    n2=$(forwarded 4)
    touch /tmp/svc-stop
    sleep 0.5
    say forwarded_4 "$((n1 - n0))"
    say forwarded_total_4 "$((n2 - n0))"
    say forwarded_clusterip_udp "$(svc_counter fwd_clusterip_udp)"
    say forwarded_nodeport_udp "$(svc_counter fwd_nodeport_udp)"
    say forwarded_clusterip_tcp "$(svc_counter fwd_clusterip_tcp)"
    say forwarded_pod_udp "$(svc_counter fwd_pod_udp)"
    say conntrack_a_end "$(ct_count "$a")"
    conntrack -L 2>/dev/null | grep -F "=$a " | sed 's/^/#   end: /'

    for p in clusterip nodeport pod; do
        say "${p}_sees" "$(client_sees "/tmp/cli-$p.log" "$t_del")"
        say "${p}_errors" "$(client_errors "/tmp/cli-$p.log" "$t_del")"
        say "${p}_replies_del_to_switch" "$(client_replies "/tmp/cli-$p.log" "$t_del" "$t_sw")"
        say "${p}_replies_after_switch" "$(client_replies "/tmp/cli-$p.log" "$t_sw" 99999999999999)"
    done
    for p in clusterip:$NODE_IP nodeport:$GW_IP pod:$c; do
        t=$(first_seen /tmp/srv-b.log "${p#*:}")
        if [ -n "$t" ]; then say "${p%%:*}_to_b_ms" "$((t - t_sw))"; else say "${p%%:*}_to_b_ms" none; fi
    done
    say tcp_before "$(grep -c ' connected$' /tmp/cli-tcp.log)"
    say tcp_connect_retries "$(grep -c ' retry ' /tmp/cli-tcp.log)"
    say tcp_sees "$(awk -v t="$t_del" '$2 == "err" { print $1 - t, $3; f = 1; exit } END { if (!f) print "none" }' /tmp/cli-tcp.log)"
    say tcp_at_b "$(seen_count /tmp/srv-b.log "$NODE_IP" tcp)"

    # The client logs around the switch (commentary).
    for p in clusterip pod; do
        awk -v t="$t_sw" -v p="$p" '$1 >= t - 60 && n < 8 { print "#   " p ": " $0; n++ }' "/tmp/cli-$p.log"
    done
    for pid in $cli1 $cli2 $cli3 $cli4; do wait "$pid"; done
    kill "$srv_a" "$srv_b" 2>/dev/null
    wait "$srv_a" "$srv_b" 2>/dev/null
    pod_del b > /tmp/svc-del-b.log 2>&1 || { cat /tmp/svc-del-b.log; fail "DEL of pod b"; }
    pod_del c > /tmp/svc-del-c.log 2>&1 || { cat /tmp/svc-del-c.log; fail "DEL of pod c"; }
    nft delete table ip kube-proxy
    conntrack -F > /dev/null 2>&1
    node_down
}
