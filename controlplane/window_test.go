package controlplane

import (
	"testing"
	"time"
)

// at is a time in the week of Sunday 2026-11-29 … Saturday 2026-12-05,
// UTC; day 0 is that Sunday, 7 the next.
func at(day, hour, minute int) time.Time {
	return time.Date(2026, 11, 29+day, hour, minute, 0, 0, time.UTC)
}

// TestWindow: the clock is the argument; windows inside one day, across
// midnight and across the week's end, and the edges of each.
func TestWindow(t *testing.T) {
	melbourne := time.FixedZone("AEDT", 11*3600)
	tests := []struct {
		name  string
		day   time.Weekday
		hour  int
		now   time.Time
		in    bool
		opens time.Time // NextWindow's
	}{
		{"inside", time.Wednesday, 1, at(3, 2, 30), true, at(3, 1, 0)},
		{"at the start", time.Wednesday, 1, at(3, 1, 0), true, at(3, 1, 0)},
		{"last second", time.Wednesday, 1, at(3, 4, 59).Add(59 * time.Second), true, at(3, 1, 0)},
		{"at the end", time.Wednesday, 1, at(3, 5, 0), false, at(10, 1, 0)},
		{"an hour before", time.Wednesday, 1, at(3, 0, 0), false, at(3, 1, 0)},
		{"other day, same hour", time.Wednesday, 1, at(4, 2, 0), false, at(10, 1, 0)},
		{"day before", time.Wednesday, 1, at(2, 2, 0), false, at(3, 1, 0)},

		// Saturday 22:00 to Sunday 02:00.
		{"midnight: before it", time.Saturday, 22, at(6, 23, 30), true, at(6, 22, 0)},
		{"midnight: after it", time.Saturday, 22, at(7, 1, 30), true, at(6, 22, 0)},
		{"midnight: after it, previous week", time.Saturday, 22, at(0, 1, 59), true, at(-1, 22, 0)},
		{"midnight: closed", time.Saturday, 22, at(7, 2, 0), false, at(13, 22, 0)},
		{"midnight: not yet", time.Saturday, 22, at(6, 21, 59), false, at(6, 22, 0)},

		// Tuesday 22:00 to Wednesday 02:00, mid-week.
		{"midnight mid-week", time.Tuesday, 22, at(3, 1, 0), true, at(2, 22, 0)},
		{"midnight mid-week: closed", time.Tuesday, 22, at(3, 2, 0), false, at(9, 22, 0)},

		// Saturday 23:00 to Sunday 03:00: the week's end.
		{"week's end: Saturday", time.Saturday, 23, at(6, 23, 0), true, at(6, 23, 0)},
		{"week's end: Sunday", time.Saturday, 23, at(7, 2, 59), true, at(6, 23, 0)},
		{"week's end: Sunday of this week", time.Saturday, 23, at(0, 0, 0), true, at(-1, 23, 0)},
		{"week's end: closed", time.Saturday, 23, at(0, 3, 0), false, at(6, 23, 0)},
		{"week's end: Friday", time.Saturday, 23, at(5, 23, 30), false, at(6, 23, 0)},

		// Sunday 00:00, the first hour of the week.
		{"Sunday 00:00", time.Sunday, 0, at(0, 0, 0), true, at(0, 0, 0)},
		{"Sunday 00:00: Saturday night", time.Sunday, 0, at(6, 23, 59), false, at(7, 0, 0)},

		// The window is in UTC, whatever the zone of the clock.
		{"another zone, inside", time.Wednesday, 1, at(3, 2, 0).In(melbourne), true, at(3, 1, 0)},
		{"another zone, its local hour", time.Wednesday, 1, time.Date(2026, 12, 2, 2, 0, 0, 0, melbourne), false, at(3, 1, 0)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := InWindow(tc.day, tc.hour, tc.now); got != tc.in {
				t.Errorf("InWindow(%v, %d, %v) = %v, want %v", tc.day, tc.hour, tc.now, got, tc.in)
			}
			opens, closes := NextWindow(tc.day, tc.hour, tc.now)
			if !opens.Equal(tc.opens) || !closes.Equal(tc.opens.Add(WindowLength)) {
				t.Errorf("NextWindow(%v, %d, %v) = %v, %v; want %v, %v", tc.day, tc.hour, tc.now, opens, closes, tc.opens, tc.opens.Add(WindowLength))
			}
			if inside := !opens.After(tc.now) && tc.now.Before(closes); inside != tc.in {
				t.Errorf("NextWindow disagrees with InWindow: %v–%v around %v", opens, closes, tc.now)
			}
		})
	}
}

// TestWindowEveryHour: over two weeks at every hour, each window is open
// exactly 4 hours a week, and NextWindow always opens on the window's day
// and hour.
func TestWindowEveryHour(t *testing.T) {
	for day := time.Sunday; day <= time.Saturday; day++ {
		for hour := 0; hour < 24; hour++ {
			open := 0
			for now := at(0, 0, 0); now.Before(at(14, 0, 0)); now = now.Add(15 * time.Minute) {
				if InWindow(day, hour, now) {
					open++
				}
				opens, _ := NextWindow(day, hour, now)
				if opens.Weekday() != day || opens.Hour() != hour || opens.Minute() != 0 {
					t.Fatalf("NextWindow(%v, %d, %v) opens %v", day, hour, now, opens)
				}
				if opens.After(now.Add(7 * 24 * time.Hour)) {
					t.Fatalf("NextWindow(%v, %d, %v) opens %v, more than a week later", day, hour, now, opens)
				}
			}
			if open != 2*4*4 {
				t.Errorf("%v %02d:00: open %d quarter hours in two weeks, want %d", day, hour, open, 2*4*4)
			}
		}
	}
}
