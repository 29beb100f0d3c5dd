# The installer on a node (issue: from release to a node in one command, and back), in the
# VM: a node with a reference ipvlan + host-local network, `tombstone-install`, pods through
# the patched conflist with the libcni client, a second install (nothing changes), then
# `--uninstall` (everything back as it was). Needs RELEASE (our binaries) and REFERENCE (the
# reference plugins) from the job's header; uses lib.sh.

# sums DIR...: one "sha256 path" line per file, sorted, for "nothing changed".
sums() { find "$@" -type f -exec sha256sum {} + 2>/dev/null | sort -k2; }

install_e2e() {
    VARIANT=install
    NET=pods
    export NETCONFPATH=/etc/cni/net.d
    node_up l2
    rm -rf /opt/cni/bin "$NETCONFPATH" /etc/iproute2/rt_protos.d/tombstone.conf
    mkdir -p "$NETCONFPATH" /opt/cni/bin
    cat > "$NETCONFPATH/10-pods.conflist" <<'CONF'
{
  "cniVersion": "1.0.0",
  "name": "pods",
  "plugins": [
    {
      "type": "ipvlan",
      "master": "eth0",
      "mode": "l2",
      "ipam": {
        "type": "host-local",
        "ranges": [[{ "subnet": "10.10.0.0/24", "gateway": "10.10.0.1", "rangeStart": "10.10.0.5" }]],
        "routes": [{ "dst": "0.0.0.0/0" }]
      }
    }
  ]
}
CONF
    cat > "$NETCONFPATH/20-other.conflist" <<'CONF'
{"cniVersion":"1.0.0","name":"other","plugins":[{"type":"bridge","bridge":"br9","ipam":{"type":"host-local","subnet":"10.99.0.0/24"}}]}
CONF
    before_conf=$(sums "$NETCONFPATH")

    "$RELEASE/tombstone-install" --root / --from "$RELEASE" --hold-seconds 30 > /tmp/install1.txt 2>&1
    say install_rc $?
    sed 's/^/#   /' /tmp/install1.txt
    say patched "$(grep -c '"type": "tombstone"' "$NETCONFPATH/10-pods.conflist")"
    say other_untouched "$(yes_no [ "$(sums "$NETCONFPATH/20-other.conflist")" = "$(echo "$before_conf" | grep 20-other)" ])"
    say binaries "$(ls /opt/cni/bin | tr '\n' ' ')"
    say proto_name "$(yes_no ip route show proto tombstone)"

    # Pods through the patched conflist, the reference plugins beside ours in CNI_PATH.
    export CNI_PATH="/opt/cni/bin:$REFERENCE"
    pod_add a || fail "ADD a through the patched conflist"
    pod_add b || fail "ADD b"
    a=$(pod_addr a 4)
    say reach_a_from_b "$(yes_no reach b "$a")"
    pod_del a || fail "DEL a"
    say route_after_del "$(route_kind "$a")"
    say listed_by_name "$(ip route show proto tombstone | grep -c "^unreachable $a")"

    # A second install changes nothing: same bytes in the conf dir and the bin dir.
    after_conf=$(sums "$NETCONFPATH")
    after_bins=$(sums /opt/cni/bin; ls -l --time-style=+%s /opt/cni/bin)
    "$RELEASE/tombstone-install" --root / --from "$RELEASE" --hold-seconds 30 > /tmp/install2.txt 2>&1
    say install_again_rc $?
    again_conf=$(sums "$NETCONFPATH")
    again_bins=$(sums /opt/cni/bin; ls -l --time-style=+%s /opt/cni/bin)
    say install_again_same "$(yes_no [ "$after_conf$after_bins" = "$again_conf$again_bins" ])"

    pod_del b || fail "DEL b"
    "$RELEASE/tombstone-install" --root / --uninstall > /tmp/uninstall.txt 2>&1
    say uninstall_rc $?
    sed 's/^/#   /' /tmp/uninstall.txt
    say conf_restored "$(yes_no [ "$before_conf" = "$(sums "$NETCONFPATH")" ])"
    say bins_left "$(ls /opt/cni/bin | tr '\n' ' ')"
    say proto_name_after "$(yes_no [ ! -e /etc/iproute2/rt_protos.d/tombstone.conf ])"
}
