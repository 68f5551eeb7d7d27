package session

import (
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/switchboard-io/switchboard/actors/session/sessionpb"
)

// Bounds of the limits a session may be opened with (Open rejects anything
// outside them with bad_request). Zero fields of Open.limits take
// DefaultLimits first, so a zero can never be asked for explicitly, except
// for expires_at_unix_ms whose default is 0 (no hard expiry).
const (
	MinParticipants    = 2
	MaxParticipants    = 100
	MaxFrameBytes      = 512 * 1024 // 524288
	MaxFramesPerSecond = 10000
	MaxBurst           = 2 * MaxFramesPerSecond // burst is 1..20000, independent of frames_per_second
	MinIdleTimeoutS    = 60
	MaxIdleTimeoutS    = 7 * 24 * 3600 // 604800, one week
)

// DefaultLimits returns the limits a session gets for every field Open leaves
// at zero: 10 participants, 64 KiB frames, 200 frames per second with a burst
// of 400, 30 minutes idle timeout, no hard expiry.
func DefaultLimits() *sessionpb.Limits {
	return &sessionpb.Limits{
		MaxParticipants: 10,
		MaxFrameBytes:   65536,
		FramesPerSecond: 200,
		Burst:           400,
		IdleTimeoutS:    1800,
	}
}

// withDefaults returns a copy of l with zero fields taken from DefaultLimits.
func withDefaults(l *sessionpb.Limits) *sessionpb.Limits {
	d := DefaultLimits()
	if l == nil {
		return d
	}
	out := proto.Clone(l).(*sessionpb.Limits)
	if out.MaxParticipants == 0 {
		out.MaxParticipants = d.MaxParticipants
	}
	if out.MaxFrameBytes == 0 {
		out.MaxFrameBytes = d.MaxFrameBytes
	}
	if out.FramesPerSecond == 0 {
		out.FramesPerSecond = d.FramesPerSecond
	}
	if out.Burst == 0 {
		out.Burst = d.Burst
	}
	if out.IdleTimeoutS == 0 {
		out.IdleTimeoutS = d.IdleTimeoutS
	}
	return out
}

// checkLimits reports every field of l (defaults filled in) outside its
// bounds.
func checkLimits(l *sessionpb.Limits, now time.Time) []string {
	var bad []string
	if v := l.GetMaxParticipants(); v < MinParticipants || v > MaxParticipants {
		bad = append(bad, fmt.Sprintf("limits.max_participants %d is not in %d..%d", v, MinParticipants, MaxParticipants))
	}
	if v := l.GetMaxFrameBytes(); v < 1 || v > MaxFrameBytes {
		bad = append(bad, fmt.Sprintf("limits.max_frame_bytes %d is not in 1..%d", v, MaxFrameBytes))
	}
	if v := l.GetFramesPerSecond(); v < 1 || v > MaxFramesPerSecond {
		bad = append(bad, fmt.Sprintf("limits.frames_per_second %d is not in 1..%d", v, MaxFramesPerSecond))
	}
	if v := l.GetBurst(); v < 1 || v > MaxBurst {
		bad = append(bad, fmt.Sprintf("limits.burst %d is not in 1..%d", v, MaxBurst))
	}
	if v := l.GetIdleTimeoutS(); v != 0 && (v < MinIdleTimeoutS || v > MaxIdleTimeoutS) {
		bad = append(bad, fmt.Sprintf("limits.idle_timeout_s %d is not in %d..%d", v, MinIdleTimeoutS, MaxIdleTimeoutS))
	}
	if v := l.GetExpiresAtUnixMs(); v != 0 && v <= now.UnixMilli() {
		bad = append(bad, fmt.Sprintf("limits.expires_at_unix_ms %d is not in the future (now %d)", v, now.UnixMilli()))
	}
	return bad
}
