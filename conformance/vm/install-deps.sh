#!/usr/bin/env bash
# Installs what the real-kernel scenarios need, only what is missing (idempotent):
#   qemu-system-x86              the emulator (software emulation, no KVM needed)
#   linux-image-amd64            a kernel with IPvlan, 9p and overlayfs as modules
#   busybox-static               the initramfs's shell
#   containernetworking-plugins  the reference plugins (ipvlan, host-local, ...)
#   golang-go, golang-github-appc-cni-dev   Go and libcni's source, to build cnitool offline
#   iproute2                     `ip`, used by the jobs inside the guest
#   strace                       the fault-injection tests (plugin/tests/faults.rs, ipam/tests/faults.rs)
#   valgrind                     instruction counts in `make bench` (callgrind)
#   containerd, runc             the CRI tests' runtime (conformance/tests/cri_root.rs, and
#                                inside the VM conformance/tests/vm_root_cri.rs)
#   podman                       the podman test's runtime (conformance/tests/podman_root.rs;
#                                its conmon comes with it). The package drops a default
#                                network in /etc/cni/net.d, which the test's podman never
#                                reads (it has a config dir of its own)
#   jq                           the README's podman GC, which the podman test runs as written
#   protobuf-compiler            protoc, which the CRI client's bindings (k8s-cri) are built with
#   conntrack, nftables          the Service test (plugin/tests/service.rs): an observer of the
#                                conntrack table, and kube-proxy-like DNAT rules
#   prometheus                   promtool and a real server scraping the node agent
#                                (install/tests/agent.rs)
#   buildah                      `make image`: the DaemonSet's image as an OCI archive, no
#                                engine, vfs storage (install/image.sh); the image test runs
#                                it under podman (install/tests/image_root.rs)
# Debian/Ubuntu only (apt-get); needs root to install anything.
set -euo pipefail

packages=(
    qemu-system-x86
    linux-image-amd64
    busybox-static
    containernetworking-plugins
    golang-go
    golang-github-appc-cni-dev
    iproute2
    strace
    valgrind
    containerd
    runc
    podman
    jq
    protobuf-compiler
    conntrack
    nftables
    prometheus
    buildah
)

missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
        missing+=("$p")
    fi
done

if [ ${#missing[@]} -eq 0 ]; then
    echo "install-deps: all VM packages present"
    exit 0
fi

echo "install-deps: installing ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: must run as root to install ${missing[*]}" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
