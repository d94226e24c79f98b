# greenroom tasks. Everything here is also a plain go command (see README.md).

default: test

# build plugins from source and serve ./config.toml
run:
    go run ./cmd/greenroom dev

# the whole test suite (what CI runs, through .ci/run)
test:
    go vet ./...
    go test ./...

# the greenroom binary
build:
    go build -o greenroom ./cmd/greenroom

# every example plugin to plugins/<name>/<name>.wasm
plugins:
    for d in plugins/*/; do go run ./cmd/greenroom plugin build "$d"; done

# benchmarks: sandboxed routes against the same handlers served natively,
# and the log and URL reader host functions (docs/benchmarks.md)
bench:
    go test -run '^$' -bench . -benchmem ./runtime/server/ ./runtime/database/ ./runtime/plugin/ ./runtime/logging/ ./runtime/urlreader/

# formatting, vet and a tidy go.mod; fails on a dirty diff
lint:
    gofmt -l . | tee /dev/stderr | (! read)
    go vet ./...
    go mod tidy && git diff --exit-code go.mod go.sum
