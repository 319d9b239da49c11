package appliance

import (
	"bufio"
	"bytes"
	"fmt"
	"strings"
)

// MarkerFile is written by the image builder into every root filesystem it
// builds. Its presence is what tells outpost-firstboot that the machine it
// runs on is an outpost appliance: without it (and without --root) first
// boot refuses to change the network, the clock or any file, so running it
// by mistake on an ordinary host does nothing.
const MarkerFile = "/etc/outpost/appliance"

// Marker returns the content of MarkerFile for an appliance: its name and
// version as KEY=value lines, in the style of os-release.
func Marker(name, version string) []byte {
	return fmt.Appendf(nil, "# Written by outpost image build: this machine is an outpost appliance.\nNAME=%s\nVERSION=%s\n", name, version)
}

// ParseMarker returns the name and version a marker holds, and an error
// when it names no appliance.
func ParseMarker(b []byte) (name, version string, err error) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), "=")
		switch {
		case !ok:
		case k == "NAME":
			name = v
		case k == "VERSION":
			version = v
		}
	}
	if name == "" {
		return "", "", fmt.Errorf("%s names no appliance (no NAME= line)", MarkerFile)
	}
	return name, version, nil
}
