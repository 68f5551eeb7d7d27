// Command switchboard runs a Switchboard node and its tools.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/switchboard-io/switchboard/cluster/membership"
	"github.com/switchboard-io/switchboard/internal/bench"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `switchboard: a self-hosted, clustered edge for enterprise communications.

Usage:
  switchboard serve [flags]        run a node (switchboard serve --help lists every key)
  switchboard session open|join    open or join a relayed session, relaying stdin/stdout (--help for flags)
  switchboard admin COMMAND        the admin API: login, cluster, sessions, audit, accounts (switchboard admin help)
  switchboard bench log [flags]    benchmark the replicated event log (3 local nodes)
  switchboard bench cluster        node ready, log replay and grain activation times (-tags testkinds binary)
  switchboard bench session        relayed session throughput and latency (3 local nodes; --peer nginx compares)
  switchboard bench failover       session resume time when nodes are killed (3 local nodes)
  switchboard bench gateway        admin view latency with 1M events and 10k sessions in the log (1 node)
  switchboard tls ca|cert create   create the cluster CA or a node certificate (node-to-node mutual TLS)
  switchboard gossip-key           print a new random gossip encryption key (gossip.key)
  switchboard init-cluster         create a cluster's CA, node certificates, gossip key, host token and NODE.toml files (containers)
  switchboard healthcheck [URL]    exit 0 if URL (default http://127.0.0.1:7402/readyz) answers 200 (container health checks)
  switchboard chaos run [flags]    break a local cluster on a seeded schedule and check nothing acknowledged was lost
  switchboard version              print the version
`

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, usage)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch args[0] {
	case "serve":
		err = serve(ctx, args[1:], os.Environ(), os.Stdout)
	case "admin":
		return adminCLI(ctx, args[1:], os.Stdin, os.Stdout, os.Stderr, os.Environ())
	case "session":
		err = sessionCmd(ctx, args[1:], os.Stdin, os.Stdout, os.Stderr, os.Environ())
	case "bench":
		switch {
		case len(args) >= 2 && args[1] == "log":
			err = bench.RunLog(ctx, args[2:], os.Stdout)
		case len(args) >= 2 && args[1] == "cluster":
			err = bench.RunCluster(ctx, args[2:], os.Stdout)
		case len(args) >= 2 && args[1] == "session":
			err = bench.RunSession(ctx, args[2:], os.Stdout)
		case len(args) >= 2 && args[1] == "failover":
			err = bench.RunFailover(ctx, args[2:], os.Stdout)
		case len(args) >= 2 && args[1] == "gateway":
			err = bench.RunGateway(ctx, args[2:], os.Stdout)
		default:
			fmt.Fprint(os.Stderr, "usage: switchboard bench log|cluster|session|failover|gateway [flags]\n")
			return 2
		}
	case "tls":
		err = tlsCmd(args[1:], os.Stdout)
	case "gossip-key":
		fmt.Println(membership.GenerateSecretKey())
	case "init-cluster":
		err = initCluster(args[1:], os.Stdout)
	case "healthcheck":
		err = healthcheck(ctx, args[1:], os.Stdout)
	case "chaos":
		err = chaosCmd(ctx, args[1:], os.Stdout, os.Stderr)
	case "version":
		fmt.Println(version)
	case "help", "-h", "--help":
		fmt.Print(usage)
	default:
		fmt.Fprintf(os.Stderr, "switchboard: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(os.Stderr, "switchboard: %v\n", err)
		return 1
	}
	return 0
}
