package nemesis

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// A seed replays: the same scenario, seed and duration give the same plan;
// another seed another one. Faults never overlap and stay inside the run.
func TestPlanIsReplayableAndFaultsDoNotOverlap(t *testing.T) {
	sc, err := Load("smoke")
	if err != nil {
		t.Fatal(err)
	}
	const d = 2 * time.Minute
	a, b, c := Plan(sc, 42, d), Plan(sc, 42, d), Plan(sc, 43, d)
	if len(a) < 10 {
		t.Fatalf("only %d faults in %v", len(a), d)
	}
	if !reflect.DeepEqual(a, b) {
		t.Fatal("same seed, different plans")
	}
	if reflect.DeepEqual(a, c) {
		t.Fatal("different seeds, same plan")
	}
	kinds := map[string]bool{}
	for i, f := range a {
		kinds[string(f.Kind)+"/"+string(f.Target)] = true
		if f.At < time.Duration(sc.Settle) || f.At+f.For > d-time.Duration(sc.Settle) {
			t.Errorf("fault %d (%v) outside the run's window", i, f)
		}
		if f.For < time.Duration(sc.MinDown) || f.For > time.Duration(sc.MaxDown) {
			t.Errorf("fault %d lasts %v, outside [%v, %v]", i, f.For, time.Duration(sc.MinDown), time.Duration(sc.MaxDown))
		}
		if i > 0 {
			prev := a[i-1]
			if gap := f.At - (prev.At + prev.For); gap < time.Duration(sc.MinGap) {
				t.Errorf("fault %d starts %v after fault %d healed (min gap %v)", i, gap, i-1, time.Duration(sc.MinGap))
			}
		}
	}
	if len(kinds) != len(sc.Faults) {
		t.Errorf("plan of %d faults drew %d of the %d choices: %v", len(a), len(kinds), len(sc.Faults), kinds)
	}
	if p := Plan(builtins["none"], 1, d); len(p) != 0 {
		t.Errorf("scenario none planned %v", p)
	}
}

func TestLoadScenarioFile(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "leader.json")
	if err := os.WriteFile(good, []byte(`{"name": "leader-kills", "faults": [{"kind": "kill", "target": "leader", "weight": 1}],
		"min_gap": "1s", "max_gap": "2s", "min_down": "500ms", "max_down": "1s", "settle": "2s"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	sc, err := Load(good)
	if err != nil {
		t.Fatal(err)
	}
	if sc.Name != "leader-kills" || time.Duration(sc.MinDown) != 500*time.Millisecond || len(sc.Faults) != 1 {
		t.Errorf("loaded %+v", sc)
	}
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte(`{"faults": [{"kind": "explode", "target": "moon", "weight": 0}],
		"min_gap": "2s", "max_gap": "1s", "min_down": "1s", "max_down": "1s"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Load(bad)
	for _, want := range []string{`kind "explode"`, `target "moon"`, "weight 0", "min_gap 2s, max_gap 1s"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("bad scenario: error %v lacks %q", err, want)
		}
	}
	if _, err := Load("no-such-scenario"); err == nil || !strings.Contains(err.Error(), "smoke") {
		t.Errorf("unknown scenario: %v (should list the built-ins)", err)
	}
}
