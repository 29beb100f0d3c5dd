// cnitool drives a CNI network configuration list through libcni, the library container
// runtimes use, so plugins are exercised exactly as a runtime calls them.
//
//	cnitool add|check|del <net> <netns-path>
//
// Environment, as upstream cnitool takes it: NETCONFPATH (directory of *.conflist files,
// default /etc/cni/net.d), CNI_PATH (colon-separated plugin directories), CNI_ARGS
// ("K=V;K=V"), CAP_ARGS (JSON object of capability arguments, e.g. {"ips": ["10.1.0.5"]}),
// CNI_IFNAME (default eth0), CNI_CONTAINERID (default: derived from the netns path, as
// upstream does). The ADD result is printed as JSON on stdout.
package main

import (
	"context"
	"crypto/sha512"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/containernetworking/cni/libcni"
)

func usage() {
	fmt.Fprintf(os.Stderr, "usage: %s add|check|del <net> <netns-path>\n", filepath.Base(os.Args[0]))
	os.Exit(2)
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "cnitool: %v\n", err)
	os.Exit(1)
}

func main() {
	if len(os.Args) < 4 {
		usage()
	}
	verb, netName, netns := os.Args[1], os.Args[2], os.Args[3]

	confDir := os.Getenv("NETCONFPATH")
	if confDir == "" {
		confDir = "/etc/cni/net.d"
	}
	list, err := libcni.LoadConfList(confDir, netName)
	if err != nil {
		fail(fmt.Errorf("load network %q from %s: %w", netName, confDir, err))
	}

	var cniArgs [][2]string
	if args := os.Getenv("CNI_ARGS"); args != "" {
		for _, pair := range strings.Split(args, ";") {
			kv := strings.SplitN(pair, "=", 2)
			if len(kv) != 2 {
				fail(fmt.Errorf("invalid CNI_ARGS pair %q", pair))
			}
			cniArgs = append(cniArgs, [2]string{kv[0], kv[1]})
		}
	}
	var capArgs map[string]interface{}
	if caps := os.Getenv("CAP_ARGS"); caps != "" {
		if err := json.Unmarshal([]byte(caps), &capArgs); err != nil {
			fail(fmt.Errorf("invalid CAP_ARGS: %w", err))
		}
	}
	ifName := os.Getenv("CNI_IFNAME")
	if ifName == "" {
		ifName = "eth0"
	}
	netns, err = filepath.Abs(netns)
	if err != nil {
		fail(err)
	}
	containerID := os.Getenv("CNI_CONTAINERID")
	if containerID == "" {
		containerID = fmt.Sprintf("cnitool-%x", sha512.Sum512([]byte(netns)))[:20]
	}

	cninet := libcni.NewCNIConfig(filepath.SplitList(os.Getenv("CNI_PATH")), nil)
	rt := &libcni.RuntimeConf{
		ContainerID:    containerID,
		NetNS:          netns,
		IfName:         ifName,
		Args:           cniArgs,
		CapabilityArgs: capArgs,
	}
	ctx := context.TODO()

	// CNITOOL_TIMING: report how long the libcni call took, the chain's latency as the
	// runtime sees it (without this program's own start).
	if os.Getenv("CNITOOL_TIMING") != "" {
		start := time.Now()
		defer func() { fmt.Fprintf(os.Stderr, "libcni_us %d\n", time.Since(start).Microseconds()) }()
	}

	switch verb {
	case "add":
		result, err := cninet.AddNetworkList(ctx, list, rt)
		if err != nil {
			fail(fmt.Errorf("ADD %s: %w", netName, err))
		}
		if err := result.Print(); err != nil {
			fail(err)
		}
	case "check":
		if err := cninet.CheckNetworkList(ctx, list, rt); err != nil {
			fail(fmt.Errorf("CHECK %s: %w", netName, err))
		}
	case "del":
		if err := cninet.DelNetworkList(ctx, list, rt); err != nil {
			fail(fmt.Errorf("DEL %s: %w", netName, err))
		}
	default:
		usage()
	}
}
