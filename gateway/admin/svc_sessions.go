package admin

import (
	"context"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/switchboard-io/switchboard/actors/session"
	"github.com/switchboard-io/switchboard/actors/session/sessionpb"
	"github.com/switchboard-io/switchboard/gateway/admin/adminpb"
	sbauth "github.com/switchboard-io/switchboard/gateway/auth"
	"github.com/switchboard-io/switchboard/projections"
	"github.com/switchboard-io/switchboard/projections/viewspb"
)

// sessionTenant is the tenant a session belongs to: its host account's.
// Sessions opened with host tokens from the configuration belong to no
// tenant: visible to principals of every tenant, and to the supporter that
// hosts it.
func sessionTenant(rec *viewspb.SessionRecord) string { return rec.GetTenant() }

// mayRead reports whether c may see rec.
func mayRead(c *caller, rec *viewspb.SessionRecord) bool {
	if c.Role == sbauth.Supporter && rec.GetHostUser() == c.Subject {
		return true
	}
	return allowTenant(c, readers, sessionTenant(rec)) == nil
}

func (s *Server) sessionOf(rec *viewspb.SessionRecord) *adminpb.Session {
	out := &adminpb.Session{Code: rec.GetCode(), Live: rec.GetLive(), HostUser: rec.GetHostUser(), HostName: rec.GetHostName(),
		HostAddr: rec.GetHostAddr(), OpenedAtUnixMs: rec.GetOpenedAtUnixMs(), EndedAtUnixMs: rec.GetEndedAtUnixMs(),
		EndedBy: rec.GetEndedBy(), EndReason: rec.GetEndReason(), Frames: rec.GetFrames(), Bytes: rec.GetBytes(),
		LastActivityUnixMs: rec.GetLastActivityUnixMs(), Tenant: sessionTenant(rec)}
	end := rec.GetEndedAtUnixMs()
	if end == 0 {
		end = s.now().UnixMilli()
	}
	out.DurationMs = max(0, end-rec.GetOpenedAtUnixMs())
	for _, p := range rec.GetParticipants() {
		out.Participants = append(out.Participants, participantOf(p))
	}
	return out
}

func participantOf(p *viewspb.ParticipantRecord) *adminpb.Participant {
	return &adminpb.Participant{Id: p.GetId(), Role: p.GetRole(), Name: p.GetName(), User: p.GetUser(), Addrs: p.GetAddrs(),
		JoinedAtUnixMs: p.GetJoinedAtUnixMs(), LeftAtUnixMs: p.GetLeftAtUnixMs(), Attached: p.GetAttached(), Node: p.GetNode(),
		LastAckSeq: p.GetLastAckSeq(), Resumes: p.GetResumes(), FramesSent: p.GetFramesSent()}
}

// ListLiveSessions implements adminpb.SessionsServer.
func (s *Server) ListLiveSessions(ctx context.Context, req *adminpb.ListLiveSessionsRequest) (*adminpb.ListLiveSessionsResponse, error) {
	if err := s.consistent(ctx, req.GetConsistent(), projections.SessionsName); err != nil {
		return nil, err
	}
	c, _ := callerFrom(ctx)
	recs, next, err := s.b.Views().LiveSessions(int(req.GetLimit()), req.GetCursor())
	if err != nil {
		return nil, viewError(err)
	}
	out := &adminpb.ListLiveSessionsResponse{NextCursor: next}
	for _, r := range recs {
		if mayRead(c, r) {
			out.Sessions = append(out.Sessions, s.sessionOf(r))
		}
	}
	return out, nil
}

// GetSession implements adminpb.SessionsServer.
func (s *Server) GetSession(ctx context.Context, req *adminpb.GetSessionRequest) (*adminpb.Session, error) {
	if err := s.consistent(ctx, req.GetConsistent(), projections.SessionsName); err != nil {
		return nil, err
	}
	rec, err := s.visibleSession(ctx, req.GetCode())
	if err != nil {
		return nil, err
	}
	return s.sessionOf(rec), nil
}

// visibleSession returns the record of a session the caller may see; an
// invisible one is reported as not found.
func (s *Server) visibleSession(ctx context.Context, code string) (*viewspb.SessionRecord, error) {
	c, _ := callerFrom(ctx)
	rec, found, err := s.b.Views().GetSession(code)
	if err != nil {
		return nil, viewError(err)
	}
	if !found || !mayRead(c, rec) {
		return nil, status.Errorf(codes.NotFound, "no session %s", code)
	}
	return rec, nil
}

// EndSession implements adminpb.SessionsServer.
func (s *Server) EndSession(ctx context.Context, req *adminpb.EndSessionRequest) (*adminpb.Session, error) {
	c, _ := callerFrom(ctx)
	if err := s.consistent(ctx, true, projections.SessionsName); err != nil {
		return nil, err
	}
	rec, err := s.visibleSession(ctx, req.GetCode())
	if err != nil {
		return nil, err
	}
	if c.Role == sbauth.Supporter && rec.GetHostUser() != c.Subject {
		return nil, status.Errorf(codes.PermissionDenied, "supporter %q may end only its own sessions", c.Subject)
	}
	if c.Role != sbauth.Supporter {
		if err := allowTenant(c, enders, sessionTenant(rec)); err != nil {
			return nil, err
		}
	}
	if !rec.GetLive() {
		return nil, status.Errorf(codes.FailedPrecondition, "session %s has already ended", req.GetCode())
	}
	if _, err := s.b.Call(ctx, session.Kind, req.GetCode(), &sessionpb.End{By: "admin:" + c.Subject, Reason: req.GetReason()}); err != nil {
		return nil, grainError(err)
	}
	s.log.InfoContext(ctx, "session ended by an administrator", "code", req.GetCode(), "by", c.Subject)
	if err := s.consistent(ctx, true, projections.SessionsName); err != nil {
		return nil, err
	}
	rec, err = s.visibleSession(ctx, req.GetCode())
	if err != nil {
		return nil, err
	}
	return s.sessionOf(rec), nil
}

// SearchSessionHistory implements adminpb.SessionsServer.
func (s *Server) SearchSessionHistory(ctx context.Context, req *adminpb.SearchSessionHistoryRequest) (*adminpb.SearchSessionHistoryResponse, error) {
	if err := s.consistent(ctx, req.GetConsistent(), projections.SessionsName); err != nil {
		return nil, err
	}
	c, _ := callerFrom(ctx)
	q := projections.HistoryQuery{Code: req.GetCode(), User: req.GetUser(), Addr: req.GetAddr(), Limit: int(req.GetLimit()), Cursor: req.GetCursor()}
	if req.GetFromUnixMs() > 0 {
		q.From = time.UnixMilli(req.GetFromUnixMs())
	}
	if req.GetToUnixMs() > 0 {
		q.To = time.UnixMilli(req.GetToUnixMs())
	}
	// A principal of one tenant sees that tenant's sessions only.
	if !c.Role.AllTenants(c.Tenant) {
		q.Tenant = c.Tenant
	}
	page, err := s.b.Views().SessionHistory(q)
	if err != nil {
		return nil, viewError(err)
	}
	out := &adminpb.SearchSessionHistoryResponse{NextCursor: page.Next, Total: page.Stats.Sessions, Live: page.Stats.Live,
		TotalDurationMs: page.Stats.TotalDuration.Milliseconds(), AvgDurationMs: page.Stats.AvgDuration().Milliseconds(),
		MaxDurationMs: page.Stats.MaxDuration.Milliseconds()}
	for _, r := range page.Records {
		out.Sessions = append(out.Sessions, s.sessionOf(r))
	}
	return out, nil
}

// GetFailoverState implements adminpb.SessionsServer.
func (s *Server) GetFailoverState(ctx context.Context, req *adminpb.GetFailoverStateRequest) (*adminpb.GetFailoverStateResponse, error) {
	if err := s.consistent(ctx, req.GetConsistent(), projections.SessionsName); err != nil {
		return nil, err
	}
	c, _ := callerFrom(ctx)
	pts, err := s.b.Views().FailoverState(req.GetCode(), int(req.GetLimit()))
	if err != nil {
		return nil, viewError(err)
	}
	out := &adminpb.GetFailoverStateResponse{}
	seen := map[string]bool{}
	for _, p := range pts {
		if _, ok := seen[p.Code]; !ok {
			rec, found, err := s.b.Views().GetSession(p.Code)
			seen[p.Code] = err == nil && found && mayRead(c, rec)
		}
		if seen[p.Code] {
			out.Points = append(out.Points, &adminpb.ResumePoint{Code: p.Code, Participant: participantOf(p.Participant)})
		}
	}
	return out, nil
}
