// Package deploy holds the container deployment files — compose.yaml, the
// Kubernetes manifests in k8s/ and the image skeleton in image/ — and the
// tests that check them: the manifests' cross-references always, and, where
// Docker is usable, a real three-node cluster started from compose.yaml.
// See docs/deploy.md.
package deploy
