package timesync

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/beevik/ntp"
)

func TestSyncStepsOnlyBeyondThreshold(t *testing.T) {
	base := time.Date(2026, 11, 22, 22, 0, 0, 0, time.UTC)
	cases := []struct {
		name    string
		skew    time.Duration // server minus local
		stepped bool
	}{
		{"in sync", 200 * time.Millisecond, false},
		{"3 years behind", 3 * 365 * 24 * time.Hour, true},
		{"2 s ahead", -2 * time.Second, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var set time.Time
			s := Syncer{
				Servers: []string{"down.example", "ntp.example"},
				Now:     func() time.Time { return base },
				Set:     func(x time.Time) error { set = x; return nil },
				Query: func(host string, _ ntp.QueryOptions) (*ntp.Response, error) {
					if host == "down.example" {
						return nil, errors.New("i/o timeout")
					}
					srv := base.Add(c.skew)
					return &ntp.Response{Time: srv, ReferenceTime: srv, Stratum: 3, Version: 4}, nil
				},
			}
			r, err := s.Sync(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if r.Server != "ntp.example" || r.Offset != c.skew || r.Stepped != c.stepped {
				t.Errorf("result = %+v", r)
			}
			if c.stepped && !set.Equal(base.Add(c.skew)) {
				t.Errorf("clock set to %v, want %v", set, base.Add(c.skew))
			}
			if !c.stepped && !set.IsZero() {
				t.Errorf("clock set although in sync")
			}
		})
	}
}

func TestSyncNoServerSaysWhatToDo(t *testing.T) {
	s := Syncer{Servers: []string{"192.0.2.123"}, Now: func() time.Time { return time.Date(2023, 1, 1, 0, 0, 0, 0, time.UTC) },
		Query: func(string, ntp.QueryOptions) (*ntp.Response, error) { return nil, errors.New("i/o timeout") }}
	_, err := s.Sync(context.Background())
	if !errors.Is(err, ErrNoServer) {
		t.Fatalf("err = %v", err)
	}
	for _, want := range []string{"192.0.2.123: i/o timeout", "the clock reads 2023-01-01T00:00:00Z", "certificate checks may fail", "UDP port 123"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	if _, err := (Syncer{}).Sync(context.Background()); err == nil || !strings.Contains(err.Error(), "outpost.ntp.servers") {
		t.Errorf("no servers: %v", err)
	}
}

func TestChronyConf(t *testing.T) {
	got := string(ChronyConf([]string{"192.0.2.123", "ntp.corp.example"}))
	want := "# Written by outpost-firstboot.\nserver 192.0.2.123 iburst\nserver ntp.corp.example iburst\ndriftfile /var/lib/chrony/chrony.drift\nmakestep 1 3\nrtcsync\n"
	if got != want {
		t.Errorf("chrony.conf:\n%s\nwant:\n%s", got, want)
	}
}
