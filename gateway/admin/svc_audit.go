package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/switchboard-io/switchboard/events"
	"github.com/switchboard-io/switchboard/gateway/admin/adminpb"
	"github.com/switchboard-io/switchboard/projections"
)

// SearchAudit implements adminpb.AuditServer.
func (s *Server) SearchAudit(ctx context.Context, req *adminpb.SearchAuditRequest) (*adminpb.SearchAuditResponse, error) {
	if err := s.consistent(ctx, req.GetConsistent(), projections.AuditName); err != nil {
		return nil, err
	}
	q := projections.AuditQuery{Stream: req.GetStream(), Type: req.GetType(), Actor: req.GetActor(), Limit: int(req.GetLimit()), Before: req.GetBefore()}
	if req.GetFromUnixMs() > 0 {
		q.From = time.UnixMilli(req.GetFromUnixMs())
	}
	if req.GetToUnixMs() > 0 {
		q.To = time.UnixMilli(req.GetToUnixMs())
	}
	page, err := s.b.Views().AuditLog(q)
	if err != nil {
		return nil, viewError(err)
	}
	out := &adminpb.SearchAuditResponse{NextBefore: page.Next}
	for _, r := range page.Rows {
		e := &adminpb.AuditEntry{Position: r.GetPosition(), Stream: r.GetStream(), Version: r.GetVersion(), Type: r.GetType(),
			TimeUnixMs: r.GetTimeUnixMs(), Actor: r.GetActor()}
		if req.GetDetails() {
			ev, found, err := s.b.ReadEvent(r.GetPosition())
			if err != nil {
				return nil, viewError(err)
			}
			if found {
				e.DetailsJson = eventDetails(ev)
			}
		}
		out.Entries = append(out.Entries, e)
	}
	return out, nil
}

// eventDetails renders an event's fields as JSON with every bytes field
// (frame payloads, hashes, keys) replaced by its length.
func eventDetails(ev events.RecordedEvent) string {
	mt, err := protoregistry.GlobalTypes.FindMessageByName(protoreflect.FullName(ev.Type))
	if err != nil {
		return fmt.Sprintf(`{"_bytes":%d}`, len(ev.Data))
	}
	m := mt.New().Interface()
	if err := proto.Unmarshal(ev.Data, m); err != nil {
		return fmt.Sprintf(`{"_undecodable":%q}`, err.Error())
	}
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false) // shown as text; the console's templates escape
	if err := enc.Encode(redacted(m.ProtoReflect())); err != nil {
		return fmt.Sprintf(`{"_error":%q}`, err.Error())
	}
	return strings.TrimSpace(b.String())
}

func redacted(m protoreflect.Message) map[string]any {
	out := map[string]any{}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		out[string(fd.Name())] = redactedValue(fd, v)
		return true
	})
	return out
}

func redactedValue(fd protoreflect.FieldDescriptor, v protoreflect.Value) any {
	switch {
	case fd.IsList():
		l := v.List()
		items := make([]any, l.Len())
		for i := range items {
			items[i] = redactedScalar(fd, l.Get(i))
		}
		return items
	case fd.IsMap():
		out := map[string]any{}
		v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
			out[k.String()] = redactedScalar(fd.MapValue(), mv)
			return true
		})
		return out
	}
	return redactedScalar(fd, v)
}

func redactedScalar(fd protoreflect.FieldDescriptor, v protoreflect.Value) any {
	switch fd.Kind() {
	case protoreflect.BytesKind:
		return fmt.Sprintf("<%d bytes>", len(v.Bytes()))
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return redacted(v.Message())
	case protoreflect.EnumKind:
		return int32(v.Enum())
	case protoreflect.StringKind:
		if fd.Name() == "password_hash" || fd.Name() == "hash" {
			return "<redacted>"
		}
		return v.String()
	}
	return v.Interface()
}
