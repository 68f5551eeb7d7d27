package console

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/switchboard-io/switchboard/gateway/admin/adminpb"
)

func (c *Console) clusterPage(q *request) error {
	v, err := c.cluster.GetCluster(q.ctx, &adminpb.GetClusterRequest{})
	if err != nil {
		return err
	}
	rates, err := c.cluster.GetRates(q.ctx, &adminpb.GetRatesRequest{})
	if err != nil {
		return err
	}
	lag := make([]bar, len(v.Projections))
	for i, p := range v.Projections {
		lag[i] = bar{Label: p.Name, Value: float64(p.Lag)}
	}
	c.render(q.w, http.StatusOK, "cluster", map[string]any{"Me": q.me, "Q": q, "View": v,
		"AppendChart": barChart("Events appended per minute (last hour)", "events", bucketBars(rates.EventsAppended)),
		"LagChart":    barChart("Projection lag on this node", "events behind", lag)})
	return nil
}

func (c *Console) sessionsPage(q *request) error {
	live, err := c.sess.ListLiveSessions(q.ctx, &adminpb.ListLiveSessionsRequest{Limit: 200, Cursor: q.r.URL.Query().Get("cursor")})
	if err != nil {
		return err
	}
	data := map[string]any{"Me": q.me, "Q": q, "Live": live, "Changed": q.r.URL.Query().Get("changed") != "",
		"Ended": q.r.URL.Query().Get("ended")}
	// Charts need the cluster-wide rates, which not every role may read.
	if rates, err := c.cluster.GetRates(q.ctx, &adminpb.GetRatesRequest{}); err == nil {
		data["OpenedChart"] = barChart("Sessions opened per minute (last hour)", "sessions", bucketBars(rates.SessionsOpened))
	}
	c.render(q.w, http.StatusOK, "sessions", data)
	return nil
}

// liveStream sends the live sessions table as server-sent events whenever
// it changes (checked every LiveInterval) until the browser goes away.
func (c *Console) liveStream(w http.ResponseWriter, r *http.Request) {
	ck, err := r.Cookie(CookieName)
	if err != nil {
		http.Error(w, "not logged in", http.StatusUnauthorized)
		return
	}
	fl, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	ctx := apiContext(r, ck.Value)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	q := &request{w: w, r: r, token: ck.Value, ctx: ctx}
	var last [32]byte
	t := time.NewTicker(c.cfg.LiveInterval)
	defer t.Stop()
	for {
		live, err := c.sess.ListLiveSessions(ctx, &adminpb.ListLiveSessionsRequest{Limit: 200})
		if err != nil {
			if status.Code(err) == codes.Unauthenticated || status.Code(err) == codes.PermissionDenied || r.Context().Err() != nil {
				fmt.Fprintf(w, "event: end\ndata: %s\n\n", status.Code(err))
				fl.Flush()
				return
			}
		} else {
			var buf bytes.Buffer
			if err := c.tmpl.ExecuteTemplate(&buf, "live-rows", map[string]any{"Live": live, "Q": q}); err == nil {
				if sum := sha256.Sum256(buf.Bytes()); sum != last {
					last = sum
					fmt.Fprint(w, "event: sessions\n")
					for _, line := range bytes.Split(bytes.TrimRight(buf.Bytes(), "\n"), []byte("\n")) {
						fmt.Fprintf(w, "data: %s\n", line)
					}
					fmt.Fprint(w, "\n")
					fl.Flush()
				}
			}
		}
		select {
		case <-r.Context().Done():
			return
		case <-t.C:
		}
	}
}

func (c *Console) sessionPage(q *request) error {
	code := q.r.PathValue("code")
	s, err := c.sess.GetSession(q.ctx, &adminpb.GetSessionRequest{Code: code})
	if err != nil {
		return err
	}
	c.render(q.w, http.StatusOK, "session", map[string]any{"Me": q.me, "Q": q, "S": s})
	return nil
}

func (c *Console) endSession(q *request) error {
	code := q.r.PathValue("code")
	if _, err := c.sess.EndSession(q.ctx, &adminpb.EndSessionRequest{Code: code, Reason: q.r.PostFormValue("reason")}); err != nil {
		return err
	}
	http.Redirect(q.w, q.r, "/sessions?ended="+code, http.StatusSeeOther)
	return nil
}

func (c *Console) historyPage(q *request) error {
	f := q.r.URL.Query()
	req := &adminpb.SearchSessionHistoryRequest{Code: f.Get("code"), User: f.Get("user"), Addr: f.Get("addr"), Cursor: f.Get("cursor"), Limit: 50}
	var bad []string
	req.FromUnixMs, bad = formTime(f.Get("from"), "from", bad)
	req.ToUnixMs, bad = formTime(f.Get("to"), "to", bad)
	data := map[string]any{"Me": q.me, "Q": q, "F": f}
	if len(bad) > 0 {
		data["Error"] = fmt.Sprintf("Not a date and time (YYYY-MM-DDTHH:MM, UTC): %v", bad)
		c.render(q.w, http.StatusBadRequest, "history", data)
		return nil
	}
	res, err := c.sess.SearchSessionHistory(q.ctx, req)
	if err != nil {
		if status.Code(err) == codes.InvalidArgument {
			data["Error"] = status.Convert(err).Message()
			c.render(q.w, http.StatusBadRequest, "history", data)
			return nil
		}
		return err
	}
	data["Res"] = res
	c.render(q.w, http.StatusOK, "history", data)
	return nil
}

func (c *Console) auditPage(q *request) error {
	f := q.r.URL.Query()
	req := &adminpb.SearchAuditRequest{Stream: f.Get("stream"), Type: f.Get("type"), Actor: f.Get("actor"), Limit: 100, Details: true}
	var bad []string
	req.FromUnixMs, bad = formTime(f.Get("from"), "from", bad)
	req.ToUnixMs, bad = formTime(f.Get("to"), "to", bad)
	if b := f.Get("before"); b != "" {
		n, err := strconv.ParseUint(b, 10, 64)
		if err != nil {
			bad = append(bad, "before")
		}
		req.Before = n
	}
	data := map[string]any{"Me": q.me, "Q": q, "F": f}
	if len(bad) > 0 {
		data["Error"] = fmt.Sprintf("Check these fields: %v", bad)
		c.render(q.w, http.StatusBadRequest, "audit", data)
		return nil
	}
	res, err := c.audit.SearchAudit(q.ctx, req)
	if err != nil {
		if status.Code(err) == codes.InvalidArgument {
			data["Error"] = status.Convert(err).Message()
			c.render(q.w, http.StatusBadRequest, "audit", data)
			return nil
		}
		return err
	}
	data["Res"] = res
	c.render(q.w, http.StatusOK, "audit", data)
	return nil
}

// formTime parses an HTML datetime-local value (UTC).
func formTime(v, field string, bad []string) (int64, []string) {
	if v == "" {
		return 0, bad
	}
	for _, layout := range []string{"2006-01-02T15:04", "2006-01-02T15:04:05", time.RFC3339, "2006-01-02"} {
		if t, err := time.Parse(layout, v); err == nil {
			return t.UnixMilli(), bad
		}
	}
	return 0, append(bad, field)
}

var funcs = map[string]any{
	"ms": func(ms int64) string {
		if ms == 0 {
			return "—"
		}
		return time.UnixMilli(ms).UTC().Format("2006-01-02 15:04:05")
	},
	"dur": func(ms int64) string { return (time.Duration(ms) * time.Millisecond).Round(time.Second).String() },
	"bytes": func(n uint64) string {
		switch {
		case n >= 1<<20:
			return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
		case n >= 1<<10:
			return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
		}
		return fmt.Sprintf("%d B", n)
	},
	"join": func(ss []string) string {
		var b bytes.Buffer
		for i, s := range ss {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(s)
		}
		return b.String()
	},
}
