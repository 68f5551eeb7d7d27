package admin

import (
	_ "embed"
	"net/http"
)

//go:embed adminpb/admin.swagger.json
var openAPI []byte

// serveOpenAPI serves the OpenAPI (Swagger 2.0) document of the REST API,
// generated from adminpb/admin.proto and admin_http.yaml by make proto.
func serveOpenAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(openAPI)
}
