//go:build !race

package cluster

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/remote"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/switchboard-io/switchboard/internal/frozen"
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
	var extra []grpc.DialOption
	if patience > 0 {
		extra = endpointDialOptions(patience)
	}
	return startEchoSystemWith(t, port, extra)
}

func startEchoSystemWith(t *testing.T, port int, extra []grpc.DialOption) (*actor.ActorSystem, *remote.Remote) {
	t.Helper()
	quiet := slog.New(slog.DiscardHandler)
	system := actor.NewActorSystemWithConfig(actor.Configure(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return quiet })))
	dial := append(append([]grpc.DialOption(nil), extra...), grpc.WithTransportCredentials(insecure.NewCredentials()))
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

// A writer's stream that ends because the writer closed its own connection
// (protoactor stops a writer whose endpoint was removed) ends cleanly, so
// that protoactor publishes no termination for the address; a stream that
// ends because the peer went away still reports the error.
func TestNoRacePatientStreamEnds(t *testing.T) {
	port := freeLoopbackPort(t)
	system, r := startEchoSystem(t, port, 0)
	defer system.Shutdown()
	addr := "127.0.0.1:" + strconv.Itoa(port)
	open := func() (*grpc.ClientConn, remote.Remoting_ReceiveClient) {
		t.Helper()
		cc, err := grpc.NewClient(addr, append(endpointDialOptions(DefaultEndpointPatience), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
		if err != nil {
			t.Fatal(err)
		}
		s, err := remote.NewRemotingClient(cc).Receive(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		err = s.Send(&remote.RemoteMessage{MessageType: &remote.RemoteMessage_ConnectRequest{ConnectRequest: &remote.ConnectRequest{
			ConnectionType: &remote.ConnectRequest_ServerConnection{ServerConnection: &remote.ServerConnection{SystemId: "test", Address: "127.0.0.1:1"}},
		}}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Recv(); err != nil {
			t.Fatalf("connect response: %v", err)
		}
		return cc, s
	}

	cc, s := open()
	_ = cc.Close()
	if _, err := s.Recv(); err != io.EOF {
		t.Errorf("stream of a connection closed by its writer ended with %v, want io.EOF", err)
	}

	cc, s = open()
	defer cc.Close()
	r.Shutdown(false)
	if _, err := s.Recv(); err == nil || err == io.EOF {
		t.Errorf("stream of a peer that went away ended with %v, want its error", err)
	}
}

// A peer whose kernel accepts connections that nobody answers (a frozen
// process) is waited for longer than one that refuses them: well past the
// patience, the writer still connects to the actor system that then comes
// up at the address, and the message sent meanwhile arrives.
func TestNoRacePatientEndpointWaitsForAFrozenPeer(t *testing.T) {
	dial := []grpc.DialOption{
		grpc.WithChainStreamInterceptor(patientEndpoints(200*time.Millisecond, 20*time.Second)),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, MaxDelay: time.Second}, MinConnectTimeout: 20 * time.Second}),
	}
	port := freeLoopbackPort(t)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	peer, peerRemote := startEchoSystemWith(t, freeLoopbackPort(t), dial)
	defer func() { peerRemote.Shutdown(false); peer.Shutdown() }()

	// The frozen peer: connections are accepted and held, never answered.
	fz, err := frozen.Listen(addr)
	if err != nil {
		t.Fatal(err)
	}
	fut := peer.Root.RequestFuture(actor.NewPID(addr, "echo"), wrapperspb.String("while frozen"), 15*time.Second)
	deadline := time.Now().Add(10 * time.Second)
	for fz.Accepted() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the peer never connected")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Frozen for five times the patience, from the first held connection.
	time.Sleep(time.Second) // the frozen time itself, not a wait for a condition
	_ = fz.Close()
	thawed, thawedRemote := startEchoSystemWith(t, port, dial)
	defer func() { thawedRemote.Shutdown(false); thawed.Shutdown() }()
	res, err := fut.Result()
	if err != nil || res.(*wrapperspb.StringValue).GetValue() != "echo while frozen" {
		t.Fatalf("request sent while the peer was frozen: %v, %v", res, err)
	}
}

// A peer address that refuses connections (nothing runs there) is given up
// after the patience, not the frozen bound: what was sent there comes back
// as a dead letter, as protoactor does on its own.
func TestNoRacePatientEndpointGivesUpARefusingPeer(t *testing.T) {
	dial := []grpc.DialOption{
		grpc.WithChainStreamInterceptor(patientEndpoints(200*time.Millisecond, time.Minute)),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, MaxDelay: time.Second}, MinConnectTimeout: time.Minute}),
	}
	peer, peerRemote := startEchoSystemWith(t, freeLoopbackPort(t), dial)
	defer func() { peerRemote.Shutdown(false); peer.Shutdown() }()
	addr := "127.0.0.1:" + strconv.Itoa(freeLoopbackPort(t)) // nothing listens
	_, err := peer.Root.RequestFuture(actor.NewPID(addr, "echo"), wrapperspb.String("x"), 30*time.Second).Result()
	if !errors.Is(err, actor.ErrDeadLetter) {
		t.Fatalf("request to a refusing address: %v, want a dead letter (given up after the patience)", err)
	}
}
