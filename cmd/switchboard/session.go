package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/switchboard-io/switchboard/cluster/tlsutil"
	"github.com/switchboard-io/switchboard/gateway/sessionclient"
)

const sessionUsage = `Usage:
  switchboard session open --nodes URL[,URL...] --token T [flags]     open a session as its host
  switchboard session join CODE --secret S --nodes URL[,URL...] [flags]  join a session as a guest

Both relay standard input to the session as durable frames (one per line, or
raw chunks with --stream) and print what arrives. At end of input they wait
until every frame is confirmed, then the host ends the session and a guest
leaves. A node failure is survived: the client resumes on another node.
Add --help to a command to list its flags.
`

// sessionCmd runs `switchboard session open|join ...`.
func sessionCmd(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, environ []string) error {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprint(stdout, sessionUsage)
		if len(args) == 0 {
			return fmt.Errorf("session: expected open or join\n%s", sessionUsage)
		}
		return flag.ErrHelp
	}
	o := sessionOptions{host: args[0] == "open"}
	switch args[0] {
	case "open", "join":
	default:
		return fmt.Errorf("session: unknown command %q: expected open or join\n%s", args[0], sessionUsage)
	}
	if err := o.parse(args[1:], stdout, environ); err != nil {
		return err
	}
	return runSession(ctx, o, stdin, stdout, &lockedWriter{w: stderr})
}

type sessionOptions struct {
	host       bool
	code       string
	nodes      string
	token      string
	secret     string
	name       string
	caFile     string
	insecure   bool
	waitGuests int
	waitEnd    bool
	stream     bool
	output     string
	logLevel   string
	reason     string
	limits     sessionclient.Limits
}

func (o *sessionOptions) parse(args []string, stdout io.Writer, environ []string) error {
	cmd := "session join"
	synopsis := "switchboard session join CODE --secret S --nodes URL[,URL...] [flags]"
	if o.host {
		cmd = "session open"
		synopsis = "switchboard session open --nodes URL[,URL...] --token T [flags]"
	}
	// The code may come before the flags: join CODE --secret S.
	if !o.host && len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		o.code, args = args[0], args[1:]
	}
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.StringVar(&o.nodes, "nodes", "", "comma-separated session endpoints of the cluster's nodes: wss://host:port/v1/session or host:port")
	fs.StringVar(&o.caFile, "ca", "", "PEM file of the CA to trust (the cluster CA); default: the system's roots")
	fs.BoolVar(&o.insecure, "insecure", false, "do not verify the nodes' certificates (testing only)")
	fs.BoolVar(&o.stream, "stream", false, "relay raw bytes: stdin in chunks, arriving payloads written to stdout unchanged")
	fs.BoolVar(&o.waitEnd, "wait-end", false, "at end of input keep relaying what arrives until the session ends (instead of ending or leaving)")
	fs.StringVar(&o.output, "output", "text", "text, or json: print the session's details as one JSON object on stdout first")
	fs.StringVar(&o.logLevel, "log-level", "warn", "debug, info (reconnects and resumes), warn or error; logs go to stderr")
	if o.host {
		fs.StringVar(&o.token, "token", "", "host token (session.host_tokens); default: $SWITCHBOARD_SESSION_TOKEN")
		fs.StringVar(&o.name, "name", "host", "display name")
		fs.IntVar(&o.waitGuests, "wait-guests", 0, "wait until this many guests joined before reading stdin")
		fs.StringVar(&o.reason, "reason", "", "reason given when ending the session at end of input")
		u32 := func(p *uint32, name, usage string) {
			fs.Func(name, usage, func(v string) error {
				var n uint32
				if _, err := fmt.Sscan(v, &n); err != nil {
					return fmt.Errorf("not a number: %q", v)
				}
				*p = n
				return nil
			})
		}
		u32(&o.limits.MaxParticipants, "max-participants", "participants at most, host included (server default 10)")
		u32(&o.limits.MaxFrameBytes, "max-frame-bytes", "largest frame payload (server default 65536)")
		u32(&o.limits.FramesPerSecond, "frames-per-second", "frame rate per participant (server default 200)")
		u32(&o.limits.IdleTimeoutS, "idle-timeout-s", "end the session after this many idle seconds (server default 1800)")
	} else {
		fs.StringVar(&o.secret, "secret", "", "the session's join secret")
		fs.StringVar(&o.name, "name", "guest", "display name")
		fs.IntVar(&o.waitGuests, "wait-guests", 0, "wait until this many guests (others than this one) joined before reading stdin")
	}
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprintf(stdout, "Usage: %s\n\nFlags:\n", synopsis)
		fs.SetOutput(stdout)
		fs.PrintDefaults()
		return flag.ErrHelp
	}
	if err != nil {
		return fmt.Errorf("%s: %w (see --help)", cmd, err)
	}
	rest := fs.Args()
	if !o.host && o.code == "" && len(rest) > 0 {
		o.code, rest = rest[0], rest[1:]
	}
	if len(rest) > 0 {
		return fmt.Errorf("%s: unexpected argument %q (see --help)", cmd, rest[0])
	}
	if o.host && o.token == "" {
		for _, kv := range environ {
			if v, ok := strings.CutPrefix(kv, "SWITCHBOARD_SESSION_TOKEN="); ok {
				o.token = v
			}
		}
	}
	var problems []string
	if o.nodes == "" {
		problems = append(problems, "--nodes is required")
	}
	if o.host && o.token == "" {
		problems = append(problems, "--token (or SWITCHBOARD_SESSION_TOKEN) is required")
	}
	if !o.host && o.code == "" {
		problems = append(problems, "the session code is required: join CODE")
	}
	if !o.host && o.secret == "" {
		problems = append(problems, "--secret is required")
	}
	if o.output != "text" && o.output != "json" {
		problems = append(problems, fmt.Sprintf("--output %q: must be text or json", o.output))
	}
	if o.waitGuests < 0 {
		problems = append(problems, "--wait-guests must not be negative")
	}
	if o.caFile != "" && o.insecure {
		problems = append(problems, "--ca and --insecure exclude each other")
	}
	if _, err := parseLevel(o.logLevel); err != nil {
		problems = append(problems, err.Error())
	}
	if len(problems) > 0 {
		return fmt.Errorf("%s: %s (see --help)", cmd, strings.Join(problems, "; "))
	}
	return nil
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("--log-level %q: must be debug, info, warn or error", s)
	}
	return l, nil
}

// clientTLS builds the TLS configuration of --ca / --insecure.
func (o *sessionOptions) clientTLS(stderr io.Writer) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	switch {
	case o.insecure:
		fmt.Fprintln(stderr, "warning: --insecure: the nodes' certificates are not verified; anyone on the path can read and change the session")
		cfg.InsecureSkipVerify = true
	case o.caFile != "":
		pool, err := tlsutil.LoadCAPool(o.caFile)
		if err != nil {
			return nil, fmt.Errorf("--ca: %w", err)
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}

// lockedWriter serializes writes of several goroutines (stderr).
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func runSession(ctx context.Context, o sessionOptions, stdin io.Reader, stdout, stderr io.Writer) error {
	tlsCfg, err := o.clientTLS(stderr)
	if err != nil {
		return err
	}
	level, _ := parseLevel(o.logLevel)
	cfg := sessionclient.Config{
		Nodes:  strings.Split(o.nodes, ","),
		TLS:    tlsCfg,
		Logger: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})),
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	var s *sessionclient.Session
	if o.host {
		s, err = sessionclient.Open(ctx, cfg, sessionclient.OpenParams{Token: o.token, Name: o.name, Limits: o.limits})
	} else {
		s, err = sessionclient.Join(ctx, cfg, sessionclient.JoinParams{Session: o.code, Secret: o.secret, Name: o.name})
	}
	if err != nil {
		return fmt.Errorf("session %s: %w", map[bool]string{true: "open", false: "join"}[o.host], err)
	}
	defer s.Close()

	if o.host {
		fmt.Fprintf(stderr, "code: %s\nsecret: %s\n", s.Code(), s.JoinSecret())
	} else {
		fmt.Fprintf(stderr, "joined session %s as %s\n", s.Code(), s.Participant())
	}
	if o.output == "json" {
		b, _ := json.Marshal(struct {
			Code         string                      `json:"code"`
			Secret       string                      `json:"secret,omitempty"`
			Participant  string                      `json:"participant"`
			Role         string                      `json:"role"`
			Limits       sessionclient.Limits        `json:"limits"`
			Participants []sessionclient.Participant `json:"participants"`
		}{s.Code(), s.JoinSecret(), s.Participant(), s.Role(), s.Limits(), s.Participants()})
		if _, err := fmt.Fprintf(stdout, "%s\n", b); err != nil {
			return fmt.Errorf("write stdout: %w", err)
		}
	}

	r := &relay{s: s, o: o, stdout: stdout, stderr: stderr, guestsReady: make(chan struct{})}
	r.countGuests()
	recvDone := make(chan error, 1)
	go func() { recvDone <- r.receive(ctx) }()
	inDone := make(chan error, 1)
	go func() {
		select {
		case <-r.guestsReady:
		case <-ctx.Done():
			inDone <- ctx.Err()
			return
		}
		inDone <- r.pump(ctx, stdin)
	}()

	select {
	case err := <-recvDone:
		return r.finish(err)
	case err := <-inDone:
		if err != nil {
			if ctx.Err() != nil {
				return r.abort(ctx.Err())
			}
			if errors.Is(err, sessionclient.ErrEnded) || errors.Is(err, sessionclient.ErrClosed) {
				return r.finish(<-recvDone)
			}
			return err
		}
	case <-ctx.Done():
		return r.abort(ctx.Err())
	}
	// End of input.
	if o.waitEnd {
		select {
		case err := <-recvDone:
			return r.finish(err)
		case <-ctx.Done():
			return r.abort(ctx.Err())
		}
	}
	if err := s.Flush(ctx); err != nil {
		if errors.Is(err, sessionclient.ErrEnded) {
			return r.finish(<-recvDone)
		}
		return fmt.Errorf("session: waiting for the last frames to be confirmed: %w", err)
	}
	if o.host {
		err = s.End(ctx, o.reason)
	} else {
		err = s.Leave(ctx)
	}
	if err != nil {
		return fmt.Errorf("session: %w", err)
	}
	return r.finish(<-recvDone)
}

// relay moves stdin to the session and the session to stdout.
type relay struct {
	s              *sessionclient.Session
	o              sessionOptions
	stdout, stderr io.Writer

	mu          sync.Mutex
	guests      map[string]bool
	guestsReady chan struct{}
	readyClosed bool
}

// countGuests notes the guests (other than us) and opens the gate of
// --wait-guests once enough have joined.
func (r *relay) countGuests() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.guests == nil {
		r.guests = map[string]bool{}
	}
	me := r.s.Participant()
	for _, p := range r.s.Participants() {
		if p.Role == "guest" && p.ID != me {
			r.guests[p.ID] = true
		}
	}
	if !r.readyClosed && len(r.guests) >= r.o.waitGuests {
		r.readyClosed = true
		close(r.guestsReady)
	}
}

func (r *relay) name(id string) string {
	for _, p := range r.s.Participants() {
		if p.ID == id {
			return p.Name
		}
	}
	return "?"
}

// receive prints what arrives until the session is over for this client.
func (r *relay) receive(ctx context.Context) error {
	for {
		m, err := r.s.Recv(ctx)
		if err != nil {
			return err
		}
		switch m.Kind {
		case sessionclient.Durable, sessionclient.Stream:
			if r.o.stream {
				_, err = r.stdout.Write(m.Payload)
			} else {
				_, err = fmt.Fprintf(r.stdout, "[%s %s] %s\n", m.From, r.name(m.From), m.Payload)
			}
			if err != nil {
				return fmt.Errorf("write stdout: %w", err)
			}
		case sessionclient.Notice:
			fmt.Fprintf(r.stderr, "%s (%s, %s) %s\n", m.Name, m.Participant, m.Role, m.Event)
			r.countGuests()
		case sessionclient.Gap:
			// Only stream frames can be lost; nothing to print.
		}
	}
}

// pump sends stdin: one frame per line, or chunks with --stream.
func (r *relay) pump(ctx context.Context, stdin io.Reader) error {
	max := int(r.s.Limits().MaxFrameBytes)
	if max <= 0 || max > 64<<10 {
		max = 64 << 10
	}
	if r.o.stream {
		buf := make([]byte, max)
		for {
			n, err := stdin.Read(buf)
			if n > 0 {
				if serr := r.s.Send(ctx, buf[:n]); serr != nil {
					return serr
				}
			}
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return fmt.Errorf("read stdin: %w", err)
			}
		}
	}
	br := bufio.NewReader(stdin)
	for {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 {
			line = []byte(strings.TrimSuffix(strings.TrimSuffix(string(line), "\n"), "\r"))
			// A line longer than a frame goes out in pieces.
			for first := true; first || len(line) > 0; first = false {
				n := min(len(line), max)
				if serr := r.s.Send(ctx, line[:n]); serr != nil {
					return serr
				}
				line = line[n:]
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read stdin: %w", err)
		}
	}
}

// finish turns how the session ended into the command's result.
func (r *relay) finish(err error) error {
	var ended *sessionclient.EndedError
	switch {
	case errors.As(err, &ended):
		fmt.Fprintf(r.stderr, "session ended: %s\n", ended.Reason)
		return nil
	case errors.Is(err, sessionclient.ErrEnded):
		fmt.Fprintln(r.stderr, "session ended")
		return nil
	case errors.Is(err, sessionclient.ErrClosed):
		return nil
	}
	return fmt.Errorf("session: %w", err)
}

// abort handles an interrupt: the host ends the session, a guest leaves,
// each within a few seconds.
func (r *relay) abort(cause error) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if r.o.host {
		_ = r.s.End(ctx, "interrupted")
	} else {
		_ = r.s.Leave(ctx)
	}
	return fmt.Errorf("session: %w", cause)
}
