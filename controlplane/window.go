package controlplane

import "time"

// WindowLength is how long a group's weekly upgrade window lasts.
const WindowLength = 4 * time.Hour

// week is the period of upgrade windows.
const week = 7 * 24 * time.Hour

// windowStart returns the start of the window (day, hour in UTC) that is
// the latest at or before now.
func windowStart(day time.Weekday, hour int, now time.Time) time.Time {
	now = now.UTC()
	y, m, d := now.Date()
	start := time.Date(y, m, d, hour, 0, 0, 0, time.UTC).AddDate(0, 0, int(day)-int(now.Weekday()))
	if start.After(now) {
		start = start.AddDate(0, 0, -7)
	}
	return start
}

// InWindow reports whether now falls in the weekly upgrade window that
// starts on day at hour:00 UTC and lasts WindowLength: from the start,
// inclusive, to its end, exclusive. A window may run past midnight and
// past the week's end (Saturday 23:00 to Sunday 03:00). day is 0 (Sunday)
// to 6 and hour 0 to 23, as groups store them.
func InWindow(day time.Weekday, hour int, now time.Time) bool {
	return now.UTC().Sub(windowStart(day, hour, now)) < WindowLength
}

// NextWindow returns when the window opens next, at or after now, and when
// it closes; when now is inside a window, that window: it opened before
// now.
func NextWindow(day time.Weekday, hour int, now time.Time) (opens, closes time.Time) {
	start := windowStart(day, hour, now)
	if now.UTC().Sub(start) >= WindowLength {
		start = start.Add(week)
	}
	return start, start.Add(WindowLength)
}
