#!/usr/bin/env bash
# `make bench`: the Go micro-benchmarks (with allocations), then short
# rewind-load runs (idle, dm, resume and guild) against a freshly started local server on
# SQLite and, when it answers, PostgreSQL. Writes every result to $BENCH_OUT
# (default bench-results/) as JSON and ends with a comparison table, whose
# dm rows also split delivery p99 into the first second of sending (warm-up)
# and the rest, count the rooms the server activated (cold rooms), and give
# CPU-s per 1,000 messages (PostgreSQL's too, sampled from /proc). The
# resume run (protocol v2) drops half of the pairs' receiving sides for 3 s
# while their peers send, edit and delete, then has them catch up with
# load changes: its rows give the catch-up p99, the messages/edits
# acknowledged but never seen (must be 0/0) and the views equal to the
# history of those checked. The guild run (protocol v2) has 2 guilds of
# 50 members send 200 msg/s in all into their general channels for 5 s
# (BENCH_GUILD_GUILDS, _MEMBERS, _RATE): its rows give the fan-out
# deliveries (delivered) and their latency, and the deliveries expected
# but not received (missing: must be 0).
# docs/benchmarks.md explains the figures and has the long runs.
set -euo pipefail
cd "$(dirname "$0")/.."

out=${BENCH_OUT:-bench-results}
idle_sessions=${BENCH_IDLE_SESSIONS:-5000}
dm_pairs=${BENCH_DM_PAIRS:-500}
dm_rate=${BENCH_DM_RATE:-2000}
resume_pairs=${BENCH_RESUME_PAIRS:-200}
resume_rate=${BENCH_RESUME_RATE:-1000}
guild_guilds=${BENCH_GUILD_GUILDS:-2}
guild_members=${BENCH_GUILD_MEMBERS:-50}
guild_rate=${BENCH_GUILD_RATE:-200}
mkdir -p "$out/bin"
rm -f "$out"/*.json

echo "== Go benchmarks"
go test -run '^$' -bench . -benchmem -benchtime 1s \
	./protocol ./net/gateway ./actors/room ./persistence/sqlite ./persistence/postgres | tee "$out/go-bench.txt"

go build -o "$out/bin/rewind" ./cmd/rewind
go build -o "$out/bin/rewind-load" ./cmd/rewind-load

# run_store NAME DATABASE_URL: a fresh server on that store, then the runs.
run_store() {
	local name=$1 url=$2 port=18089 pid
	echo "== $name: server on 127.0.0.1:$port"
	REWIND_ADDR=127.0.0.1:$port REWIND_DATABASE_URL=$url REWIND_AUTH_RATE=0 REWIND_WS_RATE=0 REWIND_WS_MAX_UNAUTHENTICATED_PER_IP=0 \
		REWIND_LOG_LEVEL=warn REWIND_LOG_FORMAT=json "$out/bin/rewind" serve 2> "$out/$name-server.log" &
	pid=$!
	for _ in $(seq 50); do
		curl -fs "http://127.0.0.1:$port/readyz" > /dev/null 2>&1 && break
		sleep 0.2
	done
	local common=(--url "ws://127.0.0.1:$port" --http "http://127.0.0.1:$port" --database-url "$url" --server-pid "$pid" --quiet)
	echo "== $name: idle, $idle_sessions sessions for 45 s"
	"$out/bin/rewind-load" --scenario idle --sessions "$idle_sessions" --duration 45s "${common[@]}" --json "$out/$name-idle.json"
	echo "== $name: dm, $dm_pairs pairs at $dm_rate msg/s for 20 s"
	"$out/bin/rewind-load" --scenario dm --pairs "$dm_pairs" --rate "$dm_rate" --duration 20s --warmup 1s "${common[@]}" --json "$out/$name-dm.json"
	echo "== $name: resume, $resume_pairs pairs at $resume_rate msg/s for 12 s, half the receiving sides away from 4 s to 7 s"
	"$out/bin/rewind-load" --scenario resume --pairs "$resume_pairs" --rate "$resume_rate" --duration 12s --drop-at 4s --down 3s \
		"${common[@]}" --json "$out/$name-resume.json"
	echo "== $name: guild, $guild_guilds guilds of $guild_members members at $guild_rate msg/s for 5 s"
	"$out/bin/rewind-load" --scenario guild --guilds "$guild_guilds" --members "$guild_members" --rate "$guild_rate" --duration 5s --warmup 1s \
		"${common[@]}" --json "$out/$name-guild.json"
	kill -TERM "$pid"
	wait "$pid" || true
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
run_store sqlite "sqlite:$tmp/bench.db"

pg=${REWIND_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test?sslmode=disable}
schema=rewind_bench_$$
if command -v psql > /dev/null && psql "$pg" -qc "CREATE SCHEMA $schema" 2> /dev/null; then
	sep='&'
	[[ $pg == *\?* ]] || sep='?'
	run_store postgres "$pg${sep}search_path=$schema"
	psql "$pg" -qc "SET client_min_messages = warning; DROP SCHEMA $schema CASCADE"
else
	echo "== postgres: SKIPPED ($pg does not answer, or psql is missing)"
fi

echo "== comparison ($out/*.json)"
"$out/bin/rewind-load" compare "$out"/*.json
