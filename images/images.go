// Package images holds the appliance definitions shipped with outpost: the
// connector's image spec, embedded so `outpost image build` and the demo work
// without a checkout. It holds data only; builder parses it.
package images

import _ "embed"

// ConnectorPath is the spec's path in the repository, used in messages.
const ConnectorPath = "images/connector/image.yaml"

// Connector is the connector appliance's image spec (images/connector/image.yaml).
//
//go:embed connector/image.yaml
var Connector []byte
