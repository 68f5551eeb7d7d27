//go:build !race

package cluster

import (
	"log/slog"
	"net"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/remote"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func freeLoopbackPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startEchoSystem starts an actor system listening on port with an actor
// named "echo" that answers every StringValue with itself.
func startEchoSystem(t *testing.T, port int, patience time.Duration) (*actor.ActorSystem, *remote.Remote) {
	t.Helper()
	quiet := slog.New(slog.DiscardHandler)
	system := actor.NewActorSystemWithConfig(actor.Configure(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return quiet })))
	dial := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	if patience > 0 {
		dial = append(endpointDialOptions(patience), dial...)
	}
	rc := remote.Configure("127.0.0.1", port, remote.WithDialOptions(dial...))
	rc.MaxRetryCount = 1 // as StartActors
	r := remote.NewRemote(system, rc)
	r.Start()
	_, err := system.Root.SpawnNamed(actor.PropsFromFunc(func(c actor.Context) {
		if m, ok := c.Message().(*wrapperspb.StringValue); ok {
			c.Respond(wrapperspb.String("echo " + m.Value))
		}
	}), "echo")
	if err != nil {
		t.Fatal(err)
	}
	return system, r
}

// A node that comes back at the same address with a new actor system (a
// node declared dead rejoins so) gets the messages its peers send while it
// is coming back: the peer's endpoint writer, started while nothing listened
// there, waits for the address instead of failing at once and dropping what
// was queued for it two seconds later (protoactor's fixed sleep).
func TestNoRacePatientEndpointReachesASystemRestartedAtTheSameAddress(t *testing.T) {
	for _, tc := range []struct {
		name     string
		patience time.Duration
		wantOK   bool
	}{
		{"patient", DefaultEndpointPatience, true},
		{"protoactor's own behaviour", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			port := freeLoopbackPort(t)
			peer, peerRemote := startEchoSystem(t, freeLoopbackPort(t), tc.patience)
			defer func() { peerRemote.Shutdown(false); peer.Shutdown() }()
			var terminated atomic.Int32
			addr := "127.0.0.1:" + strconv.Itoa(port)
			peer.EventStream.Subscribe(func(ev any) {
				if e, ok := ev.(*remote.EndpointTerminatedEvent); ok && e.Address == addr {
					terminated.Add(1)
				}
			})
			echo := actor.NewPID(addr, "echo")

			old, oldRemote := startEchoSystem(t, port, tc.patience)
			res, err := peer.Root.RequestFuture(echo, wrapperspb.String("1"), 5*time.Second).Result()
			if err != nil || res.(*wrapperspb.StringValue).GetValue() != "echo 1" {
				t.Fatalf("first request: %v, %v", res, err)
			}
			oldRemote.Shutdown(false)
			old.Shutdown()
			// The peer's connection breaks; it drops that endpoint.
			deadline := time.Now().Add(10 * time.Second)
			for terminated.Load() == 0 {
				if time.Now().After(deadline) {
					t.Fatal("the peer never noticed the old system had gone")
				}
				time.Sleep(5 * time.Millisecond)
			}
			// A request while the address is not an actor system (a
			// listener that closes what it accepts, as a closing server
			// does) starts a new endpoint writer, whose first connection
			// fails; the new system comes up right after that.
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			accepted := make(chan struct{}, 1)
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					_ = c.Close()
					select {
					case accepted <- struct{}{}:
					default:
					}
				}
			}()
			fut := peer.Root.RequestFuture(echo, wrapperspb.String("2"), 8*time.Second)
			select {
			case <-accepted:
			case <-time.After(10 * time.Second):
				t.Fatal("the peer never tried the address")
			}
			_ = ln.Close()
			restarted, restartedRemote := startEchoSystem(t, port, tc.patience)
			defer func() { restartedRemote.Shutdown(false); restarted.Shutdown() }()
			res, err = fut.Result()
			ok := err == nil && res.(*wrapperspb.StringValue).GetValue() == "echo 2"
			if ok != tc.wantOK {
				t.Fatalf("request sent while the address was coming back: %v, %v (want delivered: %v)", res, err, tc.wantOK)
			}
		})
	}
}
