package sessionclient_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"

	"github.com/switchboard-io/switchboard/gateway/sessionclient"
)

// A host opens a session, sends a durable frame and prints what arrives
// until the session ends; node failures in between are invisible here.
func Example() {
	ctx := context.Background()
	cfg := sessionclient.Config{
		Nodes: []string{"n1.example.com:7405", "n2.example.com:7405", "n3.example.com:7405"},
		TLS:   &tls.Config{ /* RootCAs: the cluster CA */ },
	}
	s, err := sessionclient.Open(ctx, cfg, sessionclient.OpenParams{Token: "host-token", Name: "Alice"})
	if err != nil {
		fmt.Println("open:", err) // e.g. errors.Is(err, sessionclient.ErrUnauthorized)
		return
	}
	defer s.Close()
	fmt.Println("give the guest:", s.Code(), s.JoinSecret())
	if err := s.Send(ctx, []byte("hello")); err != nil {
		return
	}
	for {
		m, err := s.Recv(ctx)
		var ended *sessionclient.EndedError
		if errors.As(err, &ended) {
			fmt.Println("ended:", ended.Reason)
			return
		}
		if err != nil {
			fmt.Println("recv:", err)
			return
		}
		switch m.Kind {
		case sessionclient.Durable:
			fmt.Printf("%s: %s\n", m.From, m.Payload)
		case sessionclient.Notice:
			fmt.Printf("%s %s\n", m.Name, m.Event)
		}
	}
}
