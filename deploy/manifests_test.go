package deploy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// There is no kubectl or cluster here: these tests parse every manifest and
// check what would otherwise only fail at deploy time — labels and selectors,
// service and port names, probes, the Secret and volumes — against each other
// and against the image (the Dockerfile's EXPOSE) and docs/deploy.md.

type obj = map[string]any

// loadYAML parses every document of path.
func loadYAML(t *testing.T, path string) []obj {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var docs []obj
	for {
		var d obj
		err := dec.Decode(&d)
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if d != nil {
			docs = append(docs, d)
		}
	}
}

// at walks a path of map keys and list indexes; nil if absent.
func at(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(obj)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func str(v any, path ...any) string {
	s, _ := at(v, path...).(string)
	return s
}

func list(v any, path ...any) []any {
	l, _ := at(v, path...).([]any)
	return l
}

func labels(v any, path ...any) map[string]string {
	out := map[string]string{}
	m, _ := at(v, path...).(obj)
	for k, x := range m {
		out[k] = fmt.Sprint(x)
	}
	return out
}

// subset reports whether every label of sel is in lbl (what a selector
// needs to match a pod).
func subset(sel, lbl map[string]string) bool {
	if len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if lbl[k] != v {
			return false
		}
	}
	return true
}

// exposed returns the Dockerfile's EXPOSE entries as "7400/tcp".
func exposed(t *testing.T) []string {
	t.Helper()
	f, err := os.Open("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) > 0 && fields[0] == "EXPOSE" {
			for _, p := range fields[1:] {
				if !strings.Contains(p, "/") {
					p += "/tcp"
				}
				out = append(out, strings.ToLower(p))
			}
		}
	}
	if len(out) == 0 {
		t.Fatal("Dockerfile exposes no port")
	}
	sort.Strings(out)
	return out
}

func TestKubernetesManifests(t *testing.T) {
	files, err := filepath.Glob("k8s/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests: %v", err)
	}
	byKind := map[string][]obj{}
	var kust obj
	for _, f := range files {
		for _, d := range loadYAML(t, f) {
			kind := str(d, "kind")
			if kind == "" || str(d, "apiVersion") == "" {
				t.Errorf("%s: a document without kind or apiVersion", f)
			}
			if kind == "Kustomization" {
				kust = d
				continue
			}
			if str(d, "metadata", "name") == "" {
				t.Errorf("%s: %s without metadata.name", f, kind)
			}
			byKind[kind] = append(byKind[kind], d)
		}
	}

	// kustomization.yaml lists every other manifest.
	var listed []string
	for _, r := range list(kust, "resources") {
		listed = append(listed, fmt.Sprint(r))
	}
	for _, f := range files {
		if b := filepath.Base(f); b != "kustomization.yaml" && !slices.Contains(listed, b) {
			t.Errorf("kustomization.yaml does not list %s", b)
		}
	}

	if len(byKind["StatefulSet"]) != 1 || len(byKind["PodDisruptionBudget"]) != 1 {
		t.Fatalf("want one StatefulSet and one PodDisruptionBudget, have %d and %d", len(byKind["StatefulSet"]), len(byKind["PodDisruptionBudget"]))
	}
	sts := byKind["StatefulSet"][0]
	stsName := str(sts, "metadata", "name")
	podLabels := labels(sts, "spec", "template", "metadata", "labels")
	if sel := labels(sts, "spec", "selector", "matchLabels"); !subset(sel, podLabels) {
		t.Errorf("StatefulSet selector %v does not match its pod labels %v", sel, podLabels)
	}
	replicas, _ := at(sts, "spec", "replicas").(int)
	if replicas != 3 {
		t.Errorf("replicas %d, want 3", replicas)
	}
	if p := str(sts, "spec", "podManagementPolicy"); p != "Parallel" {
		t.Errorf("podManagementPolicy %q: with bootstrap_expect no pod is ready before all started, so it must be Parallel", p)
	}

	containers := list(sts, "spec", "template", "spec", "containers")
	if len(containers) != 1 {
		t.Fatalf("%d containers, want 1", len(containers))
	}
	c := containers[0]
	// Container ports: named, and the same set as the image exposes.
	portByName := map[string]string{} // name → "7400/tcp"
	var cports []string
	for _, p := range list(c, "ports") {
		num, _ := at(p, "containerPort").(int)
		proto := strings.ToLower(str(p, "protocol"))
		if proto == "" {
			proto = "tcp"
		}
		spec := fmt.Sprintf("%d/%s", num, proto)
		portByName[str(p, "name")] = spec
		cports = append(cports, spec)
	}
	sort.Strings(cports)
	if want := exposed(t); !slices.Equal(cports, want) {
		t.Errorf("container ports %v, Dockerfile exposes %v", cports, want)
	}

	// Probes: readiness on /readyz, liveness (and startup) on /healthz, on
	// the container's http port.
	for probe, path := range map[string]string{"readinessProbe": "/readyz", "livenessProbe": "/healthz", "startupProbe": "/healthz"} {
		if got := str(c, probe, "httpGet", "path"); got != path {
			t.Errorf("%s path %q, want %s", probe, got, path)
		}
		if port := str(c, probe, "httpGet", "port"); portByName[port] != "7402/tcp" {
			t.Errorf("%s port %q is not the container's http port (7402)", probe, port)
		}
	}

	// Environment: every $(VAR) is defined before its use; POD_IP comes from
	// the downward API and is what gossip advertises; join names every pod
	// through the governing service; bootstrap_expect = replicas.
	env := map[string]string{}
	defined := map[string]bool{}
	ref := regexp.MustCompile(`\$\(([A-Z_]+)\)`)
	for _, e := range list(c, "env") {
		name, value := str(e, "name"), str(e, "value")
		for _, m := range ref.FindAllStringSubmatch(value, -1) {
			if !defined[m[1]] {
				t.Errorf("env %s uses $(%s) before it is defined", name, m[1])
			}
		}
		defined[name] = true
		env[name] = value
		if name == "POD_IP" && str(e, "valueFrom", "fieldRef", "fieldPath") != "status.podIP" {
			t.Errorf("POD_IP does not come from status.podIP")
		}
	}
	if env["SWITCHBOARD_GOSSIP_ADVERTISE"] != "$(POD_IP):7403" {
		t.Errorf("gossip advertise %q, want $(POD_IP):7403 (memberlist needs an IP)", env["SWITCHBOARD_GOSSIP_ADVERTISE"])
	}
	if env["SWITCHBOARD_BOOTSTRAP_EXPECT"] != strconv.Itoa(replicas) {
		t.Errorf("bootstrap_expect %q, replicas %d", env["SWITCHBOARD_BOOTSTRAP_EXPECT"], replicas)
	}
	governing := str(sts, "spec", "serviceName")
	var wantJoin []string
	for i := range replicas {
		wantJoin = append(wantJoin, fmt.Sprintf("%s-%d.%s.$(POD_NAMESPACE).svc:%s", stsName, i, governing, strings.TrimSuffix(portByName["gossip"], "/tcp")))
	}
	if got := env["SWITCHBOARD_JOIN"]; got != strings.Join(wantJoin, ",") {
		t.Errorf("join %q, want %q", got, strings.Join(wantJoin, ","))
	}
	for _, k := range []string{"RAFT", "API", "ACTOR"} {
		port := strings.TrimSuffix(portByName[strings.ToLower(k)], "/tcp")
		want := "$(POD_NAME)." + governing + ".$(POD_NAMESPACE).svc:" + port
		if got := env["SWITCHBOARD_"+k+"_ADVERTISE"]; got != want {
			t.Errorf("%s advertise %q, want %q", strings.ToLower(k), got, want)
		}
	}
	if got := env["SWITCHBOARD_CONFIG"]; got != "/etc/switchboard/$(POD_NAME).toml" {
		t.Errorf("SWITCHBOARD_CONFIG %q: init-cluster writes NODE.toml per node_id (the pod name)", got)
	}

	// Volumes: data from the claim template, /etc/switchboard from the
	// Secret the docs tell the operator to create.
	volumes := map[string]any{}
	for _, v := range list(sts, "spec", "template", "spec", "volumes") {
		volumes[str(v, "name")] = v
	}
	for _, v := range list(sts, "spec", "volumeClaimTemplates") {
		volumes[str(v, "metadata", "name")] = v
	}
	mounts := map[string]string{}
	for _, m := range list(c, "volumeMounts") {
		if _, ok := volumes[str(m, "name")]; !ok {
			t.Errorf("volumeMount %s names no volume or claim template", str(m, "name"))
		}
		mounts[str(m, "mountPath")] = str(m, "name")
	}
	if _, ok := volumes[mounts["/data"]].(obj)["spec"]; !ok {
		t.Errorf("/data is not a volumeClaimTemplate (mounted: %v)", mounts)
	}
	secret := str(volumes[mounts["/etc/switchboard"]], "secret", "secretName")
	docs, err := os.ReadFile("../docs/deploy.md")
	if err != nil {
		t.Fatal(err)
	}
	if secret == "" || !strings.Contains(string(docs), "kubectl create secret generic "+secret) {
		t.Errorf("/etc/switchboard comes from secret %q, which docs/deploy.md does not show how to create", secret)
	}
	if u, _ := at(sts, "spec", "template", "spec", "securityContext", "runAsUser").(int); u != 65532 {
		t.Errorf("runAsUser %d, the image's user is 65532", u)
	}

	// Services select the pods and target named container ports with the
	// same protocol; the governing one is headless and publishes pods
	// before they are ready.
	var haveGoverning bool
	for _, svc := range byKind["Service"] {
		name := str(svc, "metadata", "name")
		if sel := labels(svc, "spec", "selector"); !subset(sel, podLabels) {
			t.Errorf("service %s selector %v does not match the pods %v", name, sel, podLabels)
		}
		for _, p := range list(svc, "spec", "ports") {
			target := str(p, "targetPort")
			proto := strings.ToLower(str(p, "protocol"))
			if proto == "" {
				proto = "tcp"
			}
			spec, ok := portByName[target]
			port, _ := at(p, "port").(int)
			switch {
			case !ok:
				t.Errorf("service %s port %s targets %q, not a container port name", name, str(p, "name"), target)
			case !strings.HasSuffix(spec, "/"+proto):
				t.Errorf("service %s port %s is %s, container port %s is %s", name, str(p, "name"), proto, target, spec)
			case fmt.Sprintf("%d/%s", port, proto) != spec:
				t.Errorf("service %s port %d/%s differs from container port %s (%s): keep them equal", name, port, proto, target, spec)
			}
		}
		if name == governing {
			haveGoverning = true
			if str(svc, "spec", "clusterIP") != "None" {
				t.Errorf("governing service %s is not headless (clusterIP: None)", name)
			}
			if b, _ := at(svc, "spec", "publishNotReadyAddresses").(bool); !b {
				t.Errorf("governing service %s must publish not-ready pods (they join before they are ready)", name)
			}
		}
	}
	if !haveGoverning {
		t.Errorf("no Service named %q (the StatefulSet's serviceName)", governing)
	}

	pdb := byKind["PodDisruptionBudget"][0]
	if sel := labels(pdb, "spec", "selector", "matchLabels"); !subset(sel, podLabels) {
		t.Errorf("PodDisruptionBudget selector %v does not match the pods %v", sel, podLabels)
	}
	if mu, _ := at(pdb, "spec", "maxUnavailable").(int); mu != 1 {
		t.Errorf("PodDisruptionBudget maxUnavailable %v, want 1", at(pdb, "spec", "maxUnavailable"))
	}
}

// compose.yaml: the node services agree with each other, with the init
// service's node list and with the image.
func TestComposeFile(t *testing.T) {
	docs := loadYAML(t, "compose.yaml")
	if len(docs) != 1 {
		t.Fatalf("%d documents", len(docs))
	}
	svcs, _ := at(docs[0], "services").(obj)
	var initNodes []string
	for _, a := range list(svcs, "init", "command") {
		if v, ok := strings.CutPrefix(fmt.Sprint(a), "--nodes="); ok {
			initNodes = strings.Split(v, ",")
		}
	}
	ip := map[string]string{}
	for _, n := range composeNodes {
		ip[n] = str(svcs, n, "networks", "switchboard", "ipv4_address")
		if ip[n] == "" {
			t.Errorf("%s has no static address", n)
		}
		if !slices.Contains(initNodes, n+"="+ip[n]) {
			t.Errorf("init --nodes %v lacks %s=%s (its certificate must name its address)", initNodes, n, ip[n])
		}
	}
	exp := exposed(t)
	for _, n := range composeNodes {
		env, _ := at(svcs, n, "environment").(obj)
		get := func(k string) string { return fmt.Sprint(env[k]) }
		if get("SWITCHBOARD_CONFIG") != "/etc/switchboard/"+n+".toml" {
			t.Errorf("%s: SWITCHBOARD_CONFIG %q", n, get("SWITCHBOARD_CONFIG"))
		}
		for k, port := range map[string]string{"RAFT": "7400", "API": "7401", "GOSSIP": "7403", "ACTOR": "7404"} {
			if got := get("SWITCHBOARD_" + k + "_ADVERTISE"); got != ip[n]+":"+port {
				t.Errorf("%s: %s advertise %q, want %s:%s", n, strings.ToLower(k), got, ip[n], port)
			}
		}
		var wantJoin []string
		for _, o := range composeNodes {
			if o != n {
				wantJoin = append(wantJoin, ip[o]+":7403")
			}
		}
		if got := get("SWITCHBOARD_JOIN"); got != strings.Join(wantJoin, ",") {
			t.Errorf("%s: join %q, want %q", n, got, strings.Join(wantJoin, ","))
		}
		if got := get("SWITCHBOARD_BOOTSTRAP_EXPECT"); got != strconv.Itoa(len(composeNodes)) {
			t.Errorf("%s: bootstrap_expect %s", n, got)
		}
		if want := strings.TrimSuffix(ip[n], "."+lastOctet(ip[n])) + ".1/32"; !strings.Contains(get("SWITCHBOARD_ADMIN_TRUSTED_NETWORKS"), want) {
			t.Errorf("%s: admin.trusted_networks %q lacks the gateway %s (published ports arrive from it)", n, get("SWITCHBOARD_ADMIN_TRUSTED_NETWORKS"), want)
		}
		for _, p := range list(svcs, n, "ports") {
			parts := strings.Split(fmt.Sprint(p), ":")
			if container := parts[len(parts)-1] + "/tcp"; !slices.Contains(exp, container) {
				t.Errorf("%s publishes %s, which the image does not expose", n, container)
			}
		}
		vols := fmt.Sprint(list(svcs, n, "volumes"))
		if !strings.Contains(vols, n+"-data:/data") || !strings.Contains(vols, "pki:/etc/switchboard:ro") {
			t.Errorf("%s volumes %s: want its own data volume and the pki volume read-only", n, vols)
		}
	}
}

func lastOctet(ip string) string { return ip[strings.LastIndex(ip, ".")+1:] }
