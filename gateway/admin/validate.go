package admin

import (
	"context"
	"fmt"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/switchboard-io/switchboard/gateway/admin/adminpb"
)

type validator interface {
	Violations() adminpb.FieldViolations
}

// validate refuses a request with bad fields: INVALID_ARGUMENT whose message
// lists every field and whose google.rpc.BadRequest detail has one
// violation per problem (grpc-gateway renders it in the JSON error's
// "details").
func (s *Server) validate(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	v, ok := req.(validator)
	if !ok {
		return nil, status.Errorf(codes.Internal, "request %T has no validation", req)
	}
	if vs := v.Violations(); len(vs) > 0 {
		return nil, invalid(vs)
	}
	return handler(ctx, req)
}

// invalid builds the INVALID_ARGUMENT status of field violations.
func invalid(vs adminpb.FieldViolations) error {
	parts := make([]string, len(vs))
	for i, f := range vs {
		parts[i] = f.GetField() + ": " + f.GetDescription()
	}
	st := status.New(codes.InvalidArgument, "invalid request: "+strings.Join(parts, "; "))
	if d, err := st.WithDetails(&errdetails.BadRequest{FieldViolations: vs}); err == nil {
		st = d
	}
	return st.Err()
}

// invalidField is invalid for one field.
func invalidField(field, format string, args ...any) error {
	return invalid(adminpb.FieldViolations{{Field: field, Description: fmt.Sprintf(format, args...)}})
}
