# greenroom tasks. Everything here is also a plain go command (see README.md).

# Recipe arguments reach the commands as they were given ("$@"), quotes
# and all: just bench -scenarios 'ping|echo' -out ''
set positional-arguments

default: test

# build plugins from source and serve ./config.toml
run:
    go run ./cmd/greenroom dev

# go vet and the whole test suite (.ci/run also starts PostgreSQL and vets the wasm packages)
test:
    go vet ./...
    go test ./...

# the greenroom binary
build:
    go build -o greenroom ./cmd/greenroom

# every example plugin to plugins/<name>/<name>.wasm; fails when one fails
plugins:
    go build -o .greenroom/greenroom ./cmd/greenroom
    for d in plugins/*/; do .greenroom/greenroom plugin build "$d" || exit 1; done

# The harness prints the report and rewrites the generated part of
# docs/benchmarks.md; flags pass through: just bench -duration 2s -scenarios ping
# the benchmark harness (issue 8): plugin routes against native Go, start-up, memory
bench *ARGS:
    go run ./bench/... "$@"

# (envelopes, the pool, host-function round trips, routes in-process: docs/benchmarks.md)
# Go micro-benchmarks beside the code they measure
bench-go:
    go test -run '^$' -bench . -benchmem ./hostfuncs/ ./runtime/server/ ./runtime/database/ ./runtime/plugin/ ./runtime/logging/ ./runtime/urlreader/ ./bench/floor/

# the scheduler: 1000 one-second tasks on three replicas (needs PostgreSQL: DATABASE_URL)
bench-scheduler:
    GREENROOM_SCHED_BENCH=30s go test -run TestBenchmarkThousandTasks -v ./runtime/scheduler/

# formatting, vet and a tidy go.mod; fails on a dirty diff
lint:
    out="$(gofmt -l .)"; if [ -n "$out" ]; then echo "gofmt -l:" >&2; echo "$out" >&2; exit 1; fi
    go vet ./...
    GOOS=wasip1 GOARCH=wasm go vet ./bench/plugins/... ./bench/floor/guest ./guest-sdk/... ./plugins/...
    go mod tidy && git diff --exit-code go.mod go.sum
