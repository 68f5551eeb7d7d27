//go:build testkinds

// Test-only grain kinds and routes, linked in only with `-tags testkinds`
// (the process tests build the binary that way). The product binary has
// neither the kinds nor the routes.

package main

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	pcluster "github.com/asynkron/protoactor-go/cluster"
	"google.golang.org/protobuf/proto"

	"github.com/switchboard-io/switchboard/actors/entity"
	"github.com/switchboard-io/switchboard/actors/entity/counter"
	"github.com/switchboard-io/switchboard/cluster"
)

func init() {
	extraKinds = func(node string, o entity.Options) ([]*pcluster.Kind, error) {
		k, err := entity.NewKind(counter.Spec(node), o)
		if err != nil {
			return nil, err
		}
		return []*pcluster.Kind{k}, nil
	}
	extraRoutes = func(mux *http.ServeMux, n *cluster.Node) {
		// POST /test/counter/{id}?delta=N adds; GET reads. Reply: JSON Value,
		// or the error text with 503 (unavailable / outcome unknown), 409
		// (rejected) or 500.
		handle := func(w http.ResponseWriter, r *http.Request, cmd proto.Message, opts ...entity.CallOption) {
			if n.Cluster() == nil {
				http.Error(w, "actor system not running", http.StatusServiceUnavailable)
				return
			}
			ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
			defer cancel()
			res, err := entity.CallOn(ctx, n, counter.Kind, r.PathValue("id"), cmd, opts...)
			switch {
			case errors.Is(err, entity.ErrUnavailable):
				http.Error(w, err.Error(), http.StatusServiceUnavailable)
				return
			case errors.Is(err, entity.ErrRejected):
				http.Error(w, err.Error(), http.StatusConflict)
				return
			case err != nil:
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			v := res.(*counter.Value)
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(map[string]any{"value": v.Value, "version": v.Version, "epoch": v.Epoch, "node": v.Node})
		}
		mux.HandleFunc("POST /test/counter/{id}", func(w http.ResponseWriter, r *http.Request) {
			d, err := strconv.ParseInt(r.URL.Query().Get("delta"), 10, 64)
			if err != nil {
				http.Error(w, "delta: "+err.Error(), http.StatusBadRequest)
				return
			}
			handle(w, r, &counter.Add{Delta: d})
		})
		mux.HandleFunc("GET /test/counter/{id}", func(w http.ResponseWriter, r *http.Request) {
			handle(w, r, &counter.Get{}, entity.Idempotent(2*time.Second))
		})
	}
}
