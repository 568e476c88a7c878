# REWIND: `make run` serves on :8080 with SQLite; `make test` runs every test.
GO ?= go
SHELL := bash
# Tests that need PostgreSQL use this URL; unreachable, they are skipped
# (and fail instead when REWIND_REQUIRE_POSTGRES=1, as in CI).
export REWIND_TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/test?sslmode=disable

.PHONY: run build test lint bench

run: build
	bin/rewind serve

build:
	$(GO) build -o bin/rewind ./cmd/rewind

lint:
	$(GO) vet ./...
	$(GO) tool staticcheck ./...

test: lint
	@$(GO) test -count=1 -run '^TestPostgresAvailable$$' -v ./persistence/postgres | grep -E '^(PostgreSQL|FAIL|---)' ; \
	  exit $${PIPESTATUS[0]}
	$(GO) test -race -shuffle=on -count=1 -timeout 8m ./...

# Benchmarks: the Go micro-benchmarks, with allocations.
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...
