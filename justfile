# greenroom tasks. Everything here is also a plain go command (see README.md).

# Recipe arguments reach the commands as they were given ("$@"), quotes
# and all: just bench -scenarios 'ping|echo' -out ''
set positional-arguments

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

# the benchmark harness (issue 8): plugin routes through greenroom against
# the same handlers served natively, start-up and memory; prints the report
# and rewrites the generated part of docs/benchmarks.md. Flags pass
# through, e.g. just bench -duration 2s -scenarios ping
bench *ARGS:
    go run ./bench/... "$@"

# Go micro-benchmarks beside the code they measure: envelopes, the pool,
# host-function round trips, routes in-process (docs/benchmarks.md)
bench-go:
    go test -run '^$' -bench . -benchmem ./hostfuncs/ ./runtime/server/ ./runtime/database/ ./runtime/plugin/ ./runtime/logging/ ./runtime/urlreader/ ./bench/floor/

# the scheduler: 1000 one-second tasks on three replicas (needs PostgreSQL: DATABASE_URL)
bench-scheduler:
    GREENROOM_SCHED_BENCH=30s go test -run TestBenchmarkThousandTasks -v ./runtime/scheduler/

# formatting, vet and a tidy go.mod; fails on a dirty diff
lint:
    gofmt -l . | tee /dev/stderr | (! read)
    go vet ./...
    GOOS=wasip1 GOARCH=wasm go vet ./bench/plugins/... ./bench/floor/guest
    go mod tidy && git diff --exit-code go.mod go.sum
