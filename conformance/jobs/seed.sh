# The seed scenario, one variant: set VARIANT, NET, MODE, FAMILIES ("4" or "4 6"), PINGS,
# HOLD, HANDMADE (1: no plugin, emulate the tombstone with ip commands: a control) and write
# the conflist, then call seed_variant.
#
# Pods a and b; both reach each other and the host (which fills the neighbour caches, as live
# traffic would); a is deleted; then b and the host keep sending to a's released addresses.

handmade_tombstone() {
    [ "$HANDMADE" = 1 ] || return 0
    for addr in "$@"; do
        ip -"$(family_of "$addr")" route replace unreachable "$(host_prefix "$addr")"
        ip -"$(family_of "$addr")" neigh flush to "$addr"
    done
}
handmade_release() {
    [ "$HANDMADE" = 1 ] || return 0
    for addr in "$@"; do
        ip -"$(family_of "$addr")" route del unreachable "$(host_prefix "$addr")" 2>/dev/null
    done
    true
}

# reuse_add NAME ADDR...: an ADD asking for the released addresses: CNI_ARGS IP= for one,
# the "ips" capability for several (CNI_ARGS IP= carries one address only).
reuse_add() {
    name=$1
    shift
    if [ $# = 1 ]; then pod_add_ip "$name" "$1"; else pod_add "$name" "$@"; fi
}

seed_variant() {
    node_up "$MODE"
    pod_add a || fail "ADD of pod a"
    pod_add b || fail "ADD of pod b"
    addrs=""
    for f in $FAMILIES; do
        addr=$(pod_addr a "$f")
        [ -n "$addr" ] || fail "pod a has no IPv$f address"
        addrs="$addrs $addr"
        say "released_$f" "$addr"
        reach b "$addr" || fail "pod b cannot reach pod a at $addr"
        reach host "$addr" || fail "the host cannot reach pod a at $addr"
    done

    pod_del a || fail "DEL of pod a"
    # shellcheck disable=SC2086
    handmade_tombstone $addrs
    for addr in $addrs; do
        f=$(family_of "$addr")
        say "route_at_del_$f" "$(route_kind "$addr")"
        say "neigh_at_del_$f" "$(neigh_count "$addr")"
        n0=$(forwarded "$f")
        ip netns exec b busybox ping -"$f" -c "$PINGS" -i 0.2 -W 1 "$addr" > /dev/null 2>&1
        n1=$(forwarded "$f")
        say "forwarded_$f" "$((n1 - n0))"
    done
    # Timed right after the pings, within the hold. It fails on the host's own route lookup or
    # waits for its timeout; no ICMP error is involved, so ICMP rate-limiting (a burst of 6 per
    # peer, then about one a second) does not skew it.
    for addr in $addrs; do
        say "host_sender_$(family_of "$addr")" "$(host_sender "$addr")"
    done

    # The released addresses go to a new pod (the ADD after the hold has passed).
    # shellcheck disable=SC2086
    handmade_release $addrs
    # shellcheck disable=SC2086
    if reuse_add c $addrs; then say reuse_add ok; else say reuse_add failed; fi
    for addr in $addrs; do
        f=$(family_of "$addr")
        say "reuse_addr_$f" "$(pod_addr c "$f")"
        say "reuse_from_pod_$f" "$(yes_no reach b "$addr")"
        say "reuse_from_host_$f" "$(yes_no reach host "$addr")"
    done
    if pod_check c > /tmp/check-c.log 2>&1; then say reuse_check ok; else say reuse_check failed; cat /tmp/check-c.log; fi

    # Again within the hold: delete c and hand its addresses to e at once.
    pod_del c || fail "DEL of pod c"
    t0=$(now_ms)
    # shellcheck disable=SC2086
    handmade_tombstone $addrs
    for addr in $addrs; do say "route_at_second_del_$(family_of "$addr")" "$(route_kind "$addr")"; done
    # shellcheck disable=SC2086
    handmade_release $addrs
    # shellcheck disable=SC2086
    if reuse_add e $addrs; then say rehold_add ok; else say rehold_add failed; fi
    say rehold_after_ms "$(($(now_ms) - t0))"
    for addr in $addrs; do
        f=$(family_of "$addr")
        say "rehold_from_pod_$f" "$(yes_no reach b "$addr")"
        say "rehold_from_host_$f" "$(yes_no reach host "$addr")"
    done

    # The tombstone is gone after its hold: delete e, wait the hold out, look (a plugin may end
    # tombstones by itself), let one plugin invocation (an ADD) sweep, look again.
    pod_del e || fail "DEL of pod e"
    # shellcheck disable=SC2086
    handmade_tombstone $addrs
    made=0
    for addr in $addrs; do
        kind=$(route_kind "$addr")
        say "route_at_third_del_$(family_of "$addr")" "$kind"
        [ "$kind" = none ] || made=1
    done
    [ "$made" = 0 ] || sleep $((HOLD + 1))
    for addr in $addrs; do say "route_after_hold_idle_$(family_of "$addr")" "$(route_kind "$addr")"; done
    # shellcheck disable=SC2086
    handmade_release $addrs
    pod_add d || fail "ADD of pod d"
    for addr in $addrs; do say "route_after_hold_$(family_of "$addr")" "$(route_kind "$addr")"; done

    pod_del d || fail "DEL of pod d"
    pod_del b || fail "DEL of pod b"
    say stray_links "$(stray_links | tr '\n' ' ')"
    say ipam_held "$(ipam_held | tr '\n' ' ')"
    node_down
}
