module github.com/outpost-appliance/outpost

go 1.26

require (
	github.com/klauspost/compress v1.18.5
	github.com/spf13/pflag v1.1.0 // indirect
	golang.org/x/sys v0.43.0
)
