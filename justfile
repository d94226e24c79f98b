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

# benchmarks: the sandboxed route against the same handler served natively
bench:
    go test -run '^$' -bench . -benchmem ./runtime/server/ ./runtime/database/

# the scheduler: 1000 one-second tasks on three replicas (needs PostgreSQL: DATABASE_URL)
bench-scheduler:
    GREENROOM_SCHED_BENCH=30s go test -run TestBenchmarkThousandTasks -v ./runtime/scheduler/

# formatting, vet and a tidy go.mod; fails on a dirty diff
lint:
    gofmt -l . | tee /dev/stderr | (! read)
    go vet ./...
    go mod tidy && git diff --exit-code go.mod go.sum
