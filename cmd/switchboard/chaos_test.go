package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func TestChaosCommandReportsBadFlagsAtOnce(t *testing.T) {
	var out, errOut bytes.Buffer
	err := chaosCmd(context.Background(), []string{"run", "--nodes", "2", "--driver", "vm", "--scenario", "nope", "--duration", "1s"}, &out, &errOut)
	for _, want := range []string{"--nodes 2", `--driver "vm"`, `scenario "nope"`, "--duration 1s", "--report"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v lacks %q", err, want)
		}
	}
	if err := chaosCmd(context.Background(), nil, &out, &errOut); err == nil || !strings.Contains(errOut.String(), "smoke") {
		t.Errorf("without run: %v; usage %q should list the scenarios", err, errOut.String())
	}
}
