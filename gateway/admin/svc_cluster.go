package admin

import (
	"context"
	"encoding/hex"
	"errors"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/switchboard-io/switchboard/gateway/admin/adminpb"
	"github.com/switchboard-io/switchboard/projections"
)

// GetCluster implements adminpb.ClusterServer.
func (s *Server) GetCluster(ctx context.Context, _ *adminpb.GetClusterRequest) (*adminpb.ClusterView, error) {
	v, err := s.b.Cluster(ctx)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "cluster view: %v", err)
	}
	v.Projections = projectionStatuses(s.b.Views().Status())
	return v, nil
}

func projectionStatuses(sts []projections.Status) []*adminpb.ProjectionStatus {
	out := make([]*adminpb.ProjectionStatus, len(sts))
	for i, st := range sts {
		out[i] = &adminpb.ProjectionStatus{Name: st.Name, Version: st.Version, Generation: st.Generation, Position: st.Position,
			Lag: st.Lag, Rebuilding: st.Rebuilding, RebuildPosition: st.RebuildPosition, Skipped: st.Skipped, LastError: st.LastError}
	}
	return out
}

// ListProjections implements adminpb.ClusterServer.
func (s *Server) ListProjections(context.Context, *adminpb.ListProjectionsRequest) (*adminpb.ListProjectionsResponse, error) {
	return &adminpb.ListProjectionsResponse{Projections: projectionStatuses(s.b.Views().Status())}, nil
}

// RebuildProjection implements adminpb.ClusterServer.
func (s *Server) RebuildProjection(ctx context.Context, req *adminpb.RebuildProjectionRequest) (*adminpb.ProjectionStatus, error) {
	views := s.b.Views()
	if err := views.Rebuild(req.GetName()); err != nil {
		if errors.Is(err, projections.ErrUnknown) {
			return nil, invalidField("name", "%q is not a projection of this node (%v)", req.GetName(), views.Names())
		}
		return nil, status.Errorf(codes.Unavailable, "%v", err)
	}
	c, _ := callerFrom(ctx)
	s.log.InfoContext(ctx, "projection rebuild requested", "projection", req.GetName(), "by", c.Subject)
	if req.GetWait() {
		if err := views.WaitRebuilt(ctx, req.GetName()); err != nil {
			return nil, status.FromContextError(err).Err()
		}
	}
	for _, st := range projectionStatuses(views.Status()) {
		if st.Name == req.GetName() {
			return st, nil
		}
	}
	return nil, status.Errorf(codes.Internal, "projection %q vanished", req.GetName())
}

// GetRates implements adminpb.ClusterServer.
func (s *Server) GetRates(_ context.Context, req *adminpb.GetRatesRequest) (*adminpb.GetRatesResponse, error) {
	to := s.now()
	if req.GetToUnixMs() > 0 {
		to = time.UnixMilli(req.GetToUnixMs())
	}
	from := to.Add(-time.Hour)
	if req.GetFromUnixMs() > 0 {
		from = time.UnixMilli(req.GetFromUnixMs())
	}
	if !from.Before(to) || to.Sub(from) > 24*time.Hour {
		return nil, invalidField("from_unix_ms", "the range must cover 1 minute to 24 hours")
	}
	views := s.b.Views()
	sess, err := views.SessionsOpenedPerMinute(from, to)
	if err != nil {
		return nil, viewError(err)
	}
	evs, err := views.EventsPerMinute(from, to)
	if err != nil {
		return nil, viewError(err)
	}
	return &adminpb.GetRatesResponse{SessionsOpened: buckets(sess), EventsAppended: buckets(evs)}, nil
}

func buckets(bs []projections.Bucket) []*adminpb.Bucket {
	out := make([]*adminpb.Bucket, len(bs))
	for i, b := range bs {
		out[i] = &adminpb.Bucket{StartUnixMs: b.Start.UnixMilli(), Count: b.Count}
	}
	return out
}

// viewError maps a projection error to a status.
func viewError(err error) error {
	if errors.Is(err, projections.ErrBadQuery) {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return status.FromContextError(err).Err()
	}
	return status.Errorf(codes.Unavailable, "view: %v", err)
}

// consistent waits for a projection when the request asks for it.
func (s *Server) consistent(ctx context.Context, want bool, name string) error {
	if !want {
		return nil
	}
	if err := s.b.Views().Consistent(ctx, name); err != nil {
		return status.Errorf(codes.Unavailable, "consistent read: %v", err)
	}
	return nil
}

// GetProjectionDigests implements adminpb.ClusterServer.
func (s *Server) GetProjectionDigests(ctx context.Context, req *adminpb.GetProjectionDigestsRequest) (*adminpb.GetProjectionDigestsResponse, error) {
	views := s.b.Views()
	if req.GetConsistent() {
		for _, name := range views.Names() {
			if err := s.consistent(ctx, true, name); err != nil {
				return nil, err
			}
		}
	}
	ds, err := views.Digests()
	if err != nil {
		return nil, viewError(err)
	}
	out := &adminpb.GetProjectionDigestsResponse{Node: s.b.NodeID()}
	for _, d := range ds {
		out.Digests = append(out.Digests, &adminpb.ProjectionDigest{Name: d.Name, Position: d.Position, Rows: d.Rows, Sha256: hex.EncodeToString(d.SHA256[:])})
	}
	return out, nil
}
