# outpost — see README.md. `make test` is the test command CI runs (set-up,
# lint, the whole suite); `make demo` builds the appliance from the embedded
# default and boots it.
GO      ?= go
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
BIN     := bin
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: all build test gotest lint bench check demo setup clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/...

lint:
	@fmt=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$fmt" ]; then echo "gofmt would change: $$fmt"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

test: setup lint gotest

# gotest runs only the test suite, for a machine already set up.
gotest:
	$(GO) test -count=1 -timeout 25m ./...

bench:
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 30m ./...

# setup installs the Debian packages the tests and the demo use (idempotent).
setup:
	scripts/setup.sh

check: test

demo: setup build
	scripts/demo.sh

clean:
	rm -rf $(BIN)
