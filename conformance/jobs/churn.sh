# The churn run: reads operations on file descriptor 3 (`add <pod>`, `add <pod> reuse`, `del <pod>`),
# applies them through libcni, then checks reachability, tombstone expiry and leaks.
# `reuse` asks IPAM for the most recently released address that is free again.

churn_run() {
    node_up "$MODE"
    st=/tmp/churn
    rm -rf "$st"
    mkdir -p "$st/addr"
    : > "$st/released"
    : > "$st/seen"
    adds=0 dels=0 reuse_requested=0 reused=0 op_failures=0 unreachable_after_add=0
    del_without_tombstone=0
    while read -r op pod flag <&3; do
        case $op in
        add)
            want=""
            if [ "${flag:-}" = reuse ]; then
                for a in $(tac "$st/released"); do
                    if [ ! -e "/var/lib/cni/networks/$NET/$a" ]; then want=$a; break; fi
                done
                [ -n "$want" ] && reuse_requested=$((reuse_requested + 1))
            fi
            if [ -n "$want" ]; then
                pod_add_ip "$pod" "$want"
            else
                pod_add "$pod"
            fi
            if [ $? != 0 ]; then
                note "ADD $pod ${want:+($want)} failed"
                op_failures=$((op_failures + 1))
                ip netns del "$pod" 2>/dev/null
                continue
            fi
            adds=$((adds + 1))
            addr=$(pod_addr "$pod" 4)
            echo "$addr" > "$st/addr/$pod"
            if grep -qx "$addr" "$st/seen"; then reused=$((reused + 1)); fi
            echo "$addr" >> "$st/seen"
            if ! reach host "$addr"; then
                note "$pod ($addr) not reachable from the host right after ADD"
                unreachable_after_add=$((unreachable_after_add + 1))
            fi
            ;;
        del)
            addr=$(cat "$st/addr/$pod")
            if ! pod_del "$pod"; then
                note "DEL $pod failed"
                op_failures=$((op_failures + 1))
                continue
            fi
            dels=$((dels + 1))
            rm -f "$st/addr/$pod"
            echo "$addr" >> "$st/released"
            [ "$(route_kind "$addr")" = unreachable ] || del_without_tombstone=$((del_without_tombstone + 1))
            ;;
        esac
    done
    say adds "$adds"
    say dels "$dels"
    say reuse_requested "$reuse_requested"
    say reused "$reused"
    say op_failures "$op_failures"
    say unreachable_after_add "$unreachable_after_add"
    say del_without_tombstone "$del_without_tombstone"

    live=$(ls "$st/addr")
    say live "$(echo "$live" | grep -c .)"
    unreachable=0 check_failures=0
    peer=""
    for pod in $live; do
        addr=$(cat "$st/addr/$pod")
        reach host "$addr" || { note "live $pod ($addr) unreachable from the host"; unreachable=$((unreachable + 1)); }
        if [ -n "$peer" ]; then
            reach "$peer" "$addr" || { note "live $pod ($addr) unreachable from $peer"; unreachable=$((unreachable + 1)); }
        fi
        peer=$pod
        pod_check "$pod" > /dev/null 2>&1 || { note "CHECK of $pod failed"; check_failures=$((check_failures + 1)); }
    done
    say live_unreachable "$unreachable"
    say check_failures "$check_failures"

    # Past the hold, one ADD (any plugin invocation sweeps its network) and no tombstone is left.
    sleep $((HOLD + 1))
    pod_add sweeper || fail "ADD of the sweeper pod"
    echo "$(pod_addr sweeper 4)" > "$st/addr/sweeper"
    left=$(ip -4 route show table all type unreachable | wc -l)
    [ "$left" = 0 ] || ip -4 route show table all type unreachable | sed 's/^/# left: /'
    say tombstones_after_hold "$left"

    # Delete everything: nothing may be left but the tombstones of these last DELs.
    last=""
    for pod in $(ls "$st/addr"); do
        last="$last $(cat "$st/addr/$pod")"
        pod_del "$pod" || note "final DEL of $pod failed"
    done
    say stray_links "$(stray_links | tr '\n' ' ')"
    say ipam_held "$(ipam_held | tr '\n' ' ')"
    say cached_results "$(ls /var/lib/cni/results 2>/dev/null | tr '\n' ' ')"
    stray=""
    while read -r line; do
        case $line in
        "unreachable "*)
            dst=$(echo "$line" | awk '{ print $2 }')
            case " $last " in *" $dst "*) continue ;; esac
            ;;
        "10.10.0.0/24 dev gw0 "*) continue ;;
        esac
        stray="$stray[$line] "
    done <<EOF
$(ip -4 route show table main)
EOF
    say stray_routes "$stray"
    node_down
}
