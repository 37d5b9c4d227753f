#!/usr/bin/env bash
# What a coordinator kill costs, on the tiny job (2 hosts x 2 ranks).
#
# Runs examples/tiny.yaml once with KILLS (default 21) kill-vigild faults
# spread over its 300 steps: each SIGKILLs vigild once its intervention is
# committed; `vigil run` starts another, which takes the run over from the
# logbook while the agents' ranks train on. From the logbook:
#   takeover  = the new vigild's start (its coordinator epoch) -> every
#               agent registered again and the generation adopted (its
#               coordinator_restart event; the job is running again)
#   downtime  = the kill (its inject_fault intervention) -> that adoption
#   steps lost (steps never recorded) and rank restarts (rank processes
#               started beyond the first world), both targeted at 0
# beside the baseline measured in the same run:
#   cold start = the first vigild's start -> its agents registered and
#                generation 0 launched
# Usage: bench/coordinator_restart.sh [KILLS]   (after scripts/build.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
kills=${1:-21}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# The demo job, allowed as many vigild restarts as the bench asks for.
sed "s/^limits:/limits:\n  coordinator_restarts: $((kills + 1))/" examples/tiny.yaml >"$out/job.yaml"
chaos=()
for k in $(seq 1 "$kills"); do chaos+=(--chaos "kill-vigild@$((k * 280 / (kills + 1) + 10))"); done
build/bin/vigil run "$out/job.yaml" --workdir "$out/w" -o json "${chaos[@]}" >"$out/run.json" \
  2>"$out/run.err" || { echo "the run failed:"; tail -20 "$out/run.err"; exit 1; }
db="$out/w/logbook.sqlite"
# Each coordinator_restart was written by the vigild of the newest epoch started before it.
sqlite3 "$db" "SELECT (e.time_us - (SELECT MAX(c.started_at_us) FROM coordinator_epochs c
                                      WHERE c.started_at_us <= e.time_us)) / 1000.0
                 FROM events e WHERE e.kind = 'coordinator_restart'" >"$out/takeover"
sqlite3 "$db" "SELECT (e.time_us - (SELECT MAX(i.time_us) FROM interventions i
                                      WHERE i.action = 'inject_fault' AND i.time_us <= e.time_us)) / 1000.0
                 FROM events e WHERE e.kind = 'coordinator_restart'" >"$out/downtime"
sqlite3 "$db" "SELECT (g.started_at_us - c.started_at_us) / 1000.0 FROM generations g, coordinator_epochs c
                 WHERE g.number = 0 AND c.epoch = (SELECT MIN(epoch) FROM coordinator_epochs)" >"$out/cold"
taken=$(wc -l <"$out/takeover")
recorded=$(sqlite3 "$db" "SELECT COUNT(DISTINCT step) FROM steps")
total=$(sqlite3 "$db" "SELECT MAX(step) FROM steps")
started=$(cat "$out"/w/logs/agent-*.log | grep -c "started rank")
world=$(sqlite3 "$db" "SELECT world_size FROM generations WHERE number = 0")
digest=$(sed -n 's/.*"params_digest":"\([0-9a-f]*\)".*/\1/p' "$out/run.json")

stats() {  # p50, p99 and max of a column of numbers
  sort -g "$1" | awk '{v[NR]=$1} END {
    i = int(0.99 * NR + 0.999); if (i < 1) i = 1; if (i > NR) i = NR;
    printf "p50 %7.1f ms   p99 %7.1f ms   max %7.1f ms   (n=%d)", v[int((NR+1)/2)], v[i], v[NR], NR}'
}
echo "tiny job, $kills vigild SIGKILLs ($taken taken over), $(nproc) cores; params_digest $digest"
echo "new vigild start -> all agents back, running   $(stats "$out/takeover")"
echo "kill -> running again (downtime)               $(stats "$out/downtime")"
echo "baseline: cold start -> generation 0 launched  $(stats "$out/cold")"
echo "steps lost: $((total - recorded)) of $total   rank restarts: $((started - world)) (world $world)"
