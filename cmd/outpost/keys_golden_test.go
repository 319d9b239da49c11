package main

import (
	"bytes"
	"testing"
	"time"

	"github.com/outpost-appliance/outpost/cpapi"
)

func TestKeyOutputGolden(t *testing.T) {
	exp := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	created := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	keys := []cpapi.KeyInfo{
		{Key: cpapi.Key{ID: "16ae02bf1ad591a2", Name: "Melbourne", Group: "melb", SigningCA: "Connector", Host: "cp.example.com", Pin: "sha256:17392…", MaxUses: 2, UseCount: 2, ExpiresAt: exp, State: "active", Generation: 1, CreatedAt: created}, Redacted: "1|cp.example.com|ARauAr…(redacted, id 16ae02bf1ad591a2)"},
		{Key: cpapi.Key{ID: "0011223344556677", Name: "Sydney", Group: "syd", SigningCA: "Connector", Host: "cp.example.com", MaxUses: 10, UseCount: 3, State: "active", Generation: 2, CreatedAt: created}, Redacted: "1|cp.example.com|AQARIj…(redacted, id 0011223344556677)"},
		{Key: cpapi.Key{ID: "8899aabbccddeeff", Name: "Old", Group: "syd", SigningCA: "Connector", MaxUses: 1, ExpiresAt: exp, State: "revoked", Generation: 1, CreatedAt: created}, Redacted: "1|cp.example.com|AYiZqr…(redacted, id 8899aabbccddeeff)"},
	}
	var b bytes.Buffer
	if err := printKeyTable(&b, keys); err != nil {
		t.Fatal(err)
	}
	golden(t, "keys-list.txt", b.String())
	b.Reset()
	printKeyDetail(&b, keys[0])
	golden(t, "keys-show.txt", b.String())
}
