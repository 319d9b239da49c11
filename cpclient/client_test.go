package cpclient

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/outpost-appliance/outpost/cpapi"
)

// TestRequests checks what each method sends (method, path, query, body,
// token) against an in-process TLS server, and how answers come back.
func TestRequests(t *testing.T) {
	var got []string
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got = append(got, r.Method+" "+r.URL.RequestURI()+" "+string(b))
		if r.Header.Get("Authorization") != "Bearer tok" {
			t.Errorf("%s %s: Authorization %q", r.Method, r.URL, r.Header.Get("Authorization"))
		}
		switch {
		case strings.HasSuffix(r.URL.Path, "/reveal"):
			w.WriteHeader(http.StatusConflict)
			json.NewEncoder(w).Encode(&cpapi.Error{Code: cpapi.CodeKeyExhausted, Message: "used up"})
		case r.URL.Path == cpapi.PathHealthz:
			w.WriteHeader(http.StatusBadGateway)
			io.WriteString(w, "<html>proxy error</html>")
		default:
			io.WriteString(w, "{}")
		}
	}))
	defer srv.Close()
	ca := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}))
	c, err := New(Config{Server: srv.URL + "/", Token: "tok", CA: ca})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	loc := "DC 1"
	c.CreateGroup(ctx, cpapi.GroupSpec{Name: "melb", Location: &loc})
	c.EditGroup(ctx, cpapi.GroupSpec{Name: "a b"})
	c.DeleteGroup(ctx, "melb", true)
	c.DeleteGroup(ctx, "melb", false)
	c.Keys(ctx, cpapi.KeyFilter{})
	c.Keys(ctx, cpapi.KeyFilter{Group: "melb", Name: "K"})
	c.SetMaxUses(ctx, "K", 4)
	c.RegenerateKey(ctx, "K/1")
	c.Connectors(ctx, "melb")
	c.RevokeConnector(ctx, "K-1")
	want := []string{
		`POST /api/v1/groups {"name":"melb","location":"DC 1"}`,
		`PATCH /api/v1/groups/a%20b {"name":"a b"}`,
		`DELETE /api/v1/groups/melb?force=true `,
		`DELETE /api/v1/groups/melb `,
		`GET /api/v1/keys `,
		`GET /api/v1/keys?group=melb&name=K `,
		`PATCH /api/v1/keys/K {"max_uses":4}`,
		`POST /api/v1/keys/K%2F1/regenerate `,
		`GET /api/v1/connectors?group=melb `,
		`POST /api/v1/connectors/K-1/revoke `,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("requests:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	_, err = c.RevealKey(ctx, "K")
	var e *cpapi.Error
	if !errors.As(err, &e) || e.Code != cpapi.CodeKeyExhausted || e.Message != "used up" {
		t.Errorf("refusal: %#v", err)
	}
	_, err = c.Health(ctx)
	if err == nil || errors.As(err, &e) || !strings.Contains(err.Error(), "502 Bad Gateway") {
		t.Errorf("an answer that is not the API's: %v", err)
	}
}
