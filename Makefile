# REWIND: `make run` serves on :8080 with SQLite; `make test` runs every test.
GO ?= go
SHELL := bash
# Tests that need PostgreSQL use this URL; unreachable, they are skipped
# (and fail instead when REWIND_REQUIRE_POSTGRES=1, as in CI). Cluster tests need
# Debian's etcd-server (/usr/bin/etcd): without it they are skipped and say so
# (CI installs it and requires them: REWIND_REQUIRE_ETCD=1). The web client's
# browser tests need Debian's chromium (/usr/bin/chromium): `make test`
# installs it when it is missing and it can (root with apt-get); otherwise
# they are skipped and say so (CI requires them: REWIND_REQUIRE_BROWSER=1).
export REWIND_TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/test?sslmode=disable

# Fuzz targets, each with a short budget for `make test`. Budgets are
# counts, not durations: go1.26's fuzz coordinator can fail a clean run with
# "context deadline exceeded" when a -fuzztime duration ends (golang/go#75804).
# `make fuzz FUZZTIME=5m` runs every target longer.
FUZZ := ./protocol:FuzzDecodeRequest:100000x ./protocol:FuzzParseDatetime:100000x \
	./protocol:FuzzAppendString:100000x ./protocol:FuzzPayloadFieldsMatchesEncodingJSON:30000x \
	./net/gateway:FuzzReadMessage:3000x ./net/gateway:FuzzCheckUTF8:30000x ./auth:FuzzName:50000x
FUZZTIME ?=

.PHONY: run build test lint browser bench bench-cluster fuzz proto

run: build
	bin/rewind serve

build:
	$(GO) build -o bin/rewind ./cmd/rewind

lint:
	$(GO) vet ./...
	$(GO) tool staticcheck ./...

test: lint browser
	@$(GO) test -count=1 -run '^TestPostgresAvailable$$' -v ./persistence/postgres | grep -E '^(PostgreSQL|FAIL|---)' ; \
	  exit $${PIPESTATUS[0]}
	@$(GO) test -count=1 -run '^TestEtcdAvailable$$' -v ./cluster/etcdtest | grep -E '^(etcd|FAIL|---)' ; \
	  exit $${PIPESTATUS[0]}
	@$(GO) test -count=1 -run '^TestBrowserAvailable$$' -v ./web/webtest | grep -E '^(Chromium|FAIL|---)' ; \
	  exit $${PIPESTATUS[0]}
	$(GO) test -race -shuffle=on -count=1 -timeout 8m ./...
	@$(MAKE) --no-print-directory fuzz

# Debian's chromium for the browser tests (web/webtest), when it is missing
# and this user can install it; a failed install is reported, and the
# tests then skip (or fail when required).
browser:
	@if [ -z "$${REWIND_CHROMIUM:-}" ] && [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "Chromium is missing: installing Debian's chromium for the browser tests"; \
	    { DEBIAN_FRONTEND=noninteractive apt-get install -y chromium </dev/null \
	      || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium </dev/null; }; \
	    } > /tmp/rewind-chromium.log 2>&1 \
	      || echo "Chromium: apt-get install chromium failed (see /tmp/rewind-chromium.log)"; \
	  else \
	    echo "Chromium is missing and this user cannot install it (needs root and apt-get): the browser tests will be skipped"; \
	  fi; \
	fi

fuzz:
	@for f in $(FUZZ); do \
	  pkg=$${f%%:*}; rest=$${f#*:}; name=$${rest%%:*}; budget=$(if $(FUZZTIME),$(FUZZTIME),$${rest#*:}); \
	  echo "fuzz $$name ($$budget)"; \
	  $(GO) test -run '^$$' -fuzz "^$$name$$" -fuzztime $$budget $$pkg > /tmp/rewind-fuzz.log 2>&1 \
	    || { cat /tmp/rewind-fuzz.log; exit 1; }; \
	done

# Benchmarks: Go micro-benchmarks, then short rewind-load runs on a fresh
# local server (bench/run.sh; results in bench-results/).
bench:
	bash bench/run.sh

# rewind-load against a local cluster: etcd, a fresh PostgreSQL database and
# NODES nodes (default 5); idle, cross-node dm and dm with a node killed
# (bench/cluster.sh; scale by NODES, SESSIONS_PER_NODE, PAIRS, RATE, DURATION;
# results in bench-results/cluster/; docs/benchmarks.md §8).
bench-cluster:
	bash bench/cluster.sh

# Regenerates messages/messages.pb.go, committed, from messages.proto:
# protoc from Debian's protobuf-compiler, protoc-gen-go the tool pinned in
# go.mod (the version of google.golang.org/protobuf the code runs with), and
# protoactor's actor.proto (actor.PID) from the module go.mod requires.
proto:
	protoc --plugin=protoc-gen-go="$$($(GO) tool -n protoc-gen-go)" \
	  -I . -I "$$($(GO) list -m -f '{{.Dir}}' github.com/asynkron/protoactor-go)/actor" \
	  --go_out=. --go_opt=paths=source_relative messages/messages.proto
