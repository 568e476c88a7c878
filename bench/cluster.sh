#!/usr/bin/env bash
# `make bench-cluster`: rewind-load against a REWIND cluster on this machine
# (docs/benchmarks.md §8). Builds bin/rewind and bin/rewind-load, starts one
# etcd (temporary directory, loopback ports) and a fresh PostgreSQL
# database, then for every run a fresh cluster of $NODES nodes (127.0.0.1:
# 18101…, cluster addresses 19101…, pprof 16101…; REWIND_NODE_ID 1…N; logs
# in the run's directory), waits for each /readyz, runs one scenario:
#
#   idle   NODES × SESSIONS_PER_NODE authenticated sessions heartbeat for
#          DURATION (one session per user, node i mod N); each node's RSS
#          and CPU time from /proc at steady state (5 s before the end)
#   dm     PAIRS pairs with their two sides on nodes p and p+1 (--cross-node)
#          at RATE msg/s for DM_DURATION, and at the same time, from a second
#          rewind-load, SAME_PAIRS pairs with both sides on one node at
#          SAME_RATE (the same-node reference of the same run); a CPU profile
#          of node 1 (PROFILE_SECONDS) during the first dm run
#   kill   PAIRS cross-node pairs at RATE msg/s for DM_DURATION with
#          --reconnect; node KILL_NODE gets SIGKILL DM_DURATION/2 into the
#          sending, its users move to the other nodes and catch up
#
# then stops every process (trap EXIT: nothing is left running) and drops
# the database. Each scenario runs RUNS times. Results: $OUT/<scenario>-<n>/
# (rewind-load's JSON and summary, node logs, /proc snapshots) and a
# summary table at the end ($OUT/summary.txt). A smoke run:
#   NODES=3 SESSIONS_PER_NODE=1000 PAIRS=100 RATE=500 DURATION=10s DM_DURATION=10s make bench-cluster
set -euo pipefail
cd "$(dirname "$0")/.."

NODES=${NODES:-5}
SESSIONS_PER_NODE=${SESSIONS_PER_NODE:-19000}
PAIRS=${PAIRS:-1000}
RATE=${RATE:-5000}
DURATION=${DURATION:-5m}
DM_DURATION=${DM_DURATION:-30s}
SAME_PAIRS=${SAME_PAIRS:-$((PAIRS / 5))}
SAME_RATE=${SAME_RATE:-$((RATE / 5))}
KILL_NODE=${KILL_NODE:-2}
RUNS=${RUNS:-1}
SCENARIOS=${SCENARIOS:-idle dm kill}
PROFILE_SECONDS=${PROFILE_SECONDS:-20}
QUIET_LOAD=${QUIET_LOAD:-} # e.g. 1.5: before each run, wait (up to QUIET_MAX s) for a quiet machine
QUIET_MAX=${QUIET_MAX:-900}
PG_POOL=${PG_POOL:-10} # per node: 5 nodes × 10 stay under max_connections 100
OUT=${OUT:-bench-results/cluster}
PG_ADMIN=${PG_ADMIN:-postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable}
ETCD=${REWIND_ETCD:-/usr/bin/etcd}
ETCD_PORT=${ETCD_PORT:-12379}

# seconds D: a duration (90, 90s, 5m, 1m30s) in whole seconds.
seconds() {
	local d=$1 s=0
	[[ $d =~ ^[0-9]+$ ]] && { echo "$d"; return; }
	[[ $d =~ ([0-9]+)h ]] && s=$((s + BASH_REMATCH[1] * 3600))
	[[ $d =~ ([0-9]+)m([^s]|$) ]] && s=$((s + BASH_REMATCH[1] * 60))
	[[ $d =~ ([0-9]+)s ]] && s=$((s + BASH_REMATCH[1]))
	echo "$s"
}
idle_s=$(seconds "$DURATION")
dm_s=$(seconds "$DM_DURATION")
((NODES >= 2)) || { echo "NODES must be at least 2" >&2; exit 2; }
((KILL_NODE >= 1 && KILL_NODE <= NODES)) || { echo "KILL_NODE must be 1..$NODES" >&2; exit 2; }

mkdir -p "$OUT" bin
go build -o bin/rewind ./cmd/rewind
go build -o bin/rewind-load ./cmd/rewind-load

tmp=$(mktemp -d /tmp/rewind-cluster.XXXXXX)
db=rewind_bench_$$
DB="postgres://postgres@127.0.0.1:5432/$db?sslmode=disable&pool_max_conns=$PG_POOL"
etcd_pid= db_made=
declare -a node_pid=()
declare -a bg_pids=()

cleanup() {
	local rc=$?
	set +e
	stop_nodes 2> /dev/null
	for p in "${bg_pids[@]}"; do kill -TERM "$p" 2> /dev/null && wait "$p" 2> /dev/null; done
	if [[ -n $etcd_pid ]]; then
		kill -TERM "$etcd_pid" 2> /dev/null
		for _ in $(seq 50); do kill -0 "$etcd_pid" 2> /dev/null || break; sleep 0.1; done
		kill -KILL "$etcd_pid" 2> /dev/null
		wait "$etcd_pid" 2> /dev/null
	fi
	[[ -n $db_made ]] && psql "$PG_ADMIN" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)"
	rm -rf "$tmp"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- etcd: one member on loopback, its data in $tmp.
echo "== etcd on 127.0.0.1:$ETCD_PORT"
"$ETCD" --name bench --data-dir "$tmp/etcd" \
	--listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
	--listen-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" --initial-advertise-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" \
	--initial-cluster "bench=http://127.0.0.1:$((ETCD_PORT + 1))" --initial-cluster-state new \
	--heartbeat-interval 50 --election-timeout 500 > "$OUT/etcd.log" 2>&1 &
etcd_pid=$!
for _ in $(seq 100); do
	curl -fs "http://127.0.0.1:$ETCD_PORT/health" 2> /dev/null | grep -q '"health":"true"' && break
	kill -0 "$etcd_pid" 2> /dev/null || { tail "$OUT/etcd.log"; exit 1; }
	sleep 0.1
done

# --- PostgreSQL: a fresh database, migrated once (not by five nodes at once).
echo "== database $db"
psql "$PG_ADMIN" -qc "CREATE DATABASE $db"
db_made=1
bin/rewind migrate --database-url "$DB" > /dev/null
# One secret for every node and the harness (else each node would race to
# create the one kept in the database).
secret=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')

# start_nodes DIR RUN: N fresh nodes, a cluster name of their own per run
# (a SIGKILLed node's claims and membership are not waited for).
start_nodes() {
	local dir=$1 run=$2 i
	node_pid=()
	for i in $(seq "$NODES"); do
		REWIND_ADDR=127.0.0.1:$((18100 + i)) REWIND_CLUSTER_ADDR=127.0.0.1:$((19100 + i)) \
			REWIND_DEBUG_ADDR=127.0.0.1:$((16100 + i)) REWIND_NODE_ID=$i \
			REWIND_CLUSTER_ETCD=http://127.0.0.1:$ETCD_PORT REWIND_CLUSTER_NAME=bench_$run \
			REWIND_DATABASE_URL=$DB REWIND_TOKEN_SECRET=$secret \
			REWIND_AUTH_RATE=0 REWIND_WS_RATE=0 REWIND_WS_MAX_UNAUTHENTICATED_PER_IP=0 REWIND_WS_MAX_SESSIONS=0 \
			REWIND_LOG_LEVEL=warn REWIND_LOG_FORMAT=json \
			bin/rewind serve > "$dir/node$i.log" 2>&1 &
		node_pid[i]=$!
	done
	local deadline=$((SECONDS + 60))
	for i in $(seq "$NODES"); do
		until curl -fs "http://127.0.0.1:$((18100 + i))/readyz" > /dev/null 2>&1; do
			if ! kill -0 "${node_pid[i]}" 2> /dev/null || ((SECONDS > deadline)); then
				echo "node $i did not become ready; its log:" >&2
				tail -20 "$dir/node$i.log" >&2
				exit 1
			fi
			sleep 0.2
		done
	done
}

# stop_nodes: SIGTERM every live node (graceful), SIGKILL after 20 s.
stop_nodes() {
	local i p
	for i in "${!node_pid[@]}"; do kill -TERM "${node_pid[i]}" 2> /dev/null || true; done
	for i in "${!node_pid[@]}"; do
		p=${node_pid[i]}
		for _ in $(seq 200); do kill -0 "$p" 2> /dev/null || break; sleep 0.1; done
		kill -KILL "$p" 2> /dev/null || true
		wait "$p" 2> /dev/null || true
	done
	node_pid=()
}

# snap FILE: each live node's RSS (KiB) and CPU time (user+system, ticks).
snap() {
	local f=$1 i p rss cpu
	: > "$f"
	for i in "${!node_pid[@]}"; do
		p=${node_pid[i]}
		[[ -r /proc/$p/status ]] || continue
		rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status")
		cpu=$(awk '{print $14 + $15}' "/proc/$p/stat")
		echo "$i $p $rss $cpu" >> "$f"
	done
}

# wait_phase LOG PHASE PID: until rewind-load's progress line says PHASE.
wait_phase() {
	until grep -q " $2 " "$1" 2> /dev/null; do
		kill -0 "$3" 2> /dev/null || return 1
		sleep 0.2
	done
}

# probe DIR: every 2 s, each node's /readyz answer (code and body) into
# DIR/readyz.txt, to tell a node that left the cluster (503 "not joined")
# from a slow database check, and the members it sees (DIR/members.txt).
probe() {
	local dir=$1 i
	while :; do
		for i in $(seq "$NODES"); do
			printf '%s node%d %s\n' "$(date +%T)" "$i" \
				"$(curl -s -m 2 -w ' %{http_code}' "http://127.0.0.1:$((18100 + i))/readyz" 2>&1 | tr -d '\n')"
			printf '%s node%d %s\n' "$(date +%T)" "$i" \
				"$(curl -s -m 2 "http://127.0.0.1:$((18100 + i))/metrics" 2> /dev/null | grep -E '^rewind_cluster_(members|joined) ' | tr '\n' ' ')" >> "$dir/members.txt"
		done >> "$dir/readyz.txt"
		sleep 2
	done
}

servers() {
	local i list=
	for i in $(seq "$NODES"); do list+=${list:+,}http://127.0.0.1:$((18100 + i)); done
	echo "$list"
}

# load DIR NAME ARGS…: rewind-load in the background, progress every 1 s.
load() {
	local dir=$1 name=$2
	shift 2
	name=${dir##*/}-$name
	echo "bin/rewind-load --server $(servers) --database-url \"\$DB\" --token-secret \"\$SECRET\" $*" >> "$dir/commands.txt"
	bin/rewind-load --server "$(servers)" --database-url "$DB" --token-secret "$secret" --server-pid "${node_pid[1]}" \
		--progress 1s --json "$dir/$name.json" "$@" > "$dir/$name.out" 2>&1 &
	load_pid=$!
	bg_pids+=("$load_pid")
}

tick=$(getconf CLK_TCK)

# report_nodes DIR SESSIONS: RSS and CPU time per node, from the
# snapshots (start: the nodes ready; steady: just before the end), and RSS
# per session when SESSIONS (per node) is not 0.
report_nodes() {
	local dir=$1
	[[ -f $dir/snap-start.txt && -f $dir/snap-steady.txt ]] || return 0
	echo "  node  RSS start MiB  RSS steady MiB  sessions  KiB/session  above start KiB/session  CPU s (start→steady)" | tee -a "$dir/nodes.txt"
	awk -v tick="$tick" -v per="$2" '
		FNR == NR { start[$1] = $3; c0[$1] = $4; next }
		{ printf "  %4d  %13.1f  %14.1f  %8d  %11s  %23s  %20.1f\n", $1, start[$1] / 1024, $3 / 1024, per,
			per ? sprintf("%.2f", $3 / per) : "-", per ? sprintf("%.2f", ($3 - start[$1]) / per) : "-", ($4 - c0[$1]) / tick }' \
		"$dir/snap-start.txt" "$dir/snap-steady.txt" | tee -a "$dir/nodes.txt"
}

# node_errors DIR: error and warn lines in the node logs.
node_errors() {
	local dir=$1 i
	for i in $(seq "$NODES"); do
		printf '  node %d log: %s error, %s warn lines\n' "$i" \
			"$(grep -c '"level":"error"' "$dir/node$i.log" || true)" "$(grep -c '"level":"warn"' "$dir/node$i.log" || true)"
	done | tee -a "$dir/nodes.txt"
}

run_idle() {
	local dir=$1 total=$((NODES * SESSIONS_PER_NODE))
	echo "== $dir: idle, $total sessions ($SESSIONS_PER_NODE per node) for $DURATION"
	snap "$dir/snap-start.txt"
	load "$dir" idle --scenario idle --sessions "$total" --duration "$DURATION" --connect-timeout 10m
	wait_phase "$dir/${dir##*/}-idle.out" holding "$load_pid" || true
	snap "$dir/snap-connected.txt"
	sleep $((idle_s > 10 ? idle_s - 5 : idle_s / 2))
	snap "$dir/snap-steady.txt"
	others > "$dir/others-steady.txt"
	ss -s > "$dir/ss.txt"
	wait "$load_pid" || echo "rewind-load exited $?"
	grep -v '^ *[0-9.]*s ' "$dir/${dir##*/}-idle.out" || true
	report_nodes "$dir" "$SESSIONS_PER_NODE"
	node_errors "$dir"
}

run_dm() {
	local dir=$1 n=$2 same_pid prof_pid=
	echo "== $dir: dm, $PAIRS cross-node pairs at $RATE msg/s + $SAME_PAIRS same-node pairs at $SAME_RATE msg/s, $DM_DURATION"
	snap "$dir/snap-start.txt"
	load "$dir" same --scenario dm --pairs "$SAME_PAIRS" --rate "$SAME_RATE" --duration "$DM_DURATION" --warmup 1s
	same_pid=$load_pid
	load "$dir" cross --scenario dm --cross-node --pairs "$PAIRS" --rate "$RATE" --duration "$DM_DURATION" --warmup 1s
	wait_phase "$dir/${dir##*/}-cross.out" sending "$load_pid" || true
	if ((n == 1 && PROFILE_SECONDS > 0 && dm_s >= PROFILE_SECONDS + 4)); then
		sleep 2
		curl -s -o "$dir/node1.cpu.pprof" "http://127.0.0.1:16101/debug/pprof/profile?seconds=$PROFILE_SECONDS" &
		prof_pid=$!
	fi
	sleep $((dm_s > 6 ? dm_s - 3 : dm_s / 2))
	snap "$dir/snap-steady.txt"
	wait "$load_pid" || echo "rewind-load (cross) exited $?"
	wait "$same_pid" || echo "rewind-load (same) exited $?"
	if [[ -n $prof_pid ]]; then
		wait "$prof_pid" || true
		go tool pprof -top -nodecount 40 bin/rewind "$dir/node1.cpu.pprof" > "$dir/node1.cpu.txt" 2>&1 || true
		go tool pprof -top -cum -nodecount 60 bin/rewind "$dir/node1.cpu.pprof" > "$dir/node1.cpu-cum.txt" 2>&1 || true
	fi
	echo "-- cross-node pairs"
	grep -v '^ *[0-9.]*s ' "$dir/${dir##*/}-cross.out" || true
	echo "-- same-node pairs (concurrent)"
	grep -v '^ *[0-9.]*s ' "$dir/${dir##*/}-same.out" || true
	report_nodes "$dir" 0
	node_errors "$dir"
}

run_kill() {
	local dir=$1 victim=${node_pid[KILL_NODE]}
	echo "== $dir: dm, $PAIRS cross-node pairs at $RATE msg/s for $DM_DURATION, --reconnect, kill -9 node $KILL_NODE at mid-run"
	snap "$dir/snap-start.txt"
	load "$dir" kill --scenario dm --cross-node --reconnect --pairs "$PAIRS" --rate "$RATE" --duration "$DM_DURATION" --warmup 1s
	wait_phase "$dir/${dir##*/}-kill.out" sending "$load_pid" || true
	sleep $((dm_s / 2))
	snap "$dir/snap-before-kill.txt"
	kill -KILL "$victim"
	echo "$(date +%T.%N) kill -9 node $KILL_NODE (pid $victim)" | tee "$dir/killed.txt"
	wait "$victim" 2> /dev/null || true
	unset "node_pid[$KILL_NODE]"
	wait "$load_pid" || echo "rewind-load exited $?"
	grep -v '^ *[0-9.]*s ' "$dir/${dir##*/}-kill.out" || true
	node_errors "$dir"
}

# quiet: with QUIET_LOAD, wait until the 1-minute load is below it and no
# test binary runs (other work on the machine), at most QUIET_MAX seconds.
quiet() {
	[[ -n $QUIET_LOAD ]] || return 0
	local deadline=$((SECONDS + QUIET_MAX))
	while ((SECONDS < deadline)); do
		if awk -v max="$QUIET_LOAD" '{exit !($1 < max)}' /proc/loadavg && ! pgrep -f "go test|\\.test( |$)" > /dev/null; then
			return 0
		fi
		sleep 5
	done
	echo "   (not quiet after ${QUIET_MAX}s: running anyway)"
}

# others: what else ran on the machine (test binaries, load), for the notes.
others() {
	echo "$(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg), test processes: $(pgrep -fc "go test|\\.test( |$)" || true)"
}

for scenario in $SCENARIOS; do
	for n in $(seq "$RUNS"); do
		dir=$OUT/$scenario-$n
		rm -rf "$dir"
		mkdir -p "$dir"
		quiet | tee -a "$OUT/summary.txt"
		echo "$(date -u +%FT%TZ) $scenario-$n start: $(others)" | tee -a "$OUT/summary.txt"
		start_nodes "$dir" "${scenario}_$n"
		probe "$dir" &
		probe_pid=$!
		bg_pids+=("$probe_pid")
		"run_$scenario" "$dir" "$n" > >(tee "$dir/report.txt") 2>&1
		kill "$probe_pid"
		wait "$probe_pid" 2> /dev/null || true
		echo "$(date -u +%FT%TZ) $scenario-$n end: $(others); /readyz not 200: $(grep -cv ' 200$' "$dir/readyz.txt" || true) of $(wc -l < "$dir/readyz.txt")" | tee -a "$OUT/summary.txt"
		stop_nodes
	done
done

echo "== comparison"
bin/rewind-load compare "$OUT"/*/*.json | tee -a "$OUT/summary.txt"
