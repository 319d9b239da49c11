// Package images holds the appliance definitions shipped with outpost: the
// connector's image spec and the files it adds to the root filesystem
// (units, settings), embedded so `outpost image build` and the demo work
// without a checkout. It holds data only; builder parses it.
package images

import (
	"embed"
	"io/fs"
)

// ConnectorPath is the spec's path in the repository, used in messages.
const ConnectorPath = "images/connector/image.yaml"

// Connector is the connector appliance's image spec (images/connector/image.yaml).
//
//go:embed connector/image.yaml
var Connector []byte

//go:embed connector
var all embed.FS

// ConnectorFS is images/connector: the directory the spec's relative file
// paths are resolved in.
func ConnectorFS() fs.FS {
	sub, err := fs.Sub(all, "connector")
	if err != nil {
		panic(err) // the embedded directory is known to exist
	}
	return sub
}
