#!/usr/bin/env bash
# Detection and recovery latency of rank deaths on the tiny job.
#
# Runs examples/tiny.yaml RUNS times (default 5), each with two ranks
# SIGKILLed, and reads from each run's logbook:
#   detection  = kill signal sent -> detection event recorded by vigild
#   recovery   = kill signal sent -> first step of the next generation
# beside the baseline measured in the same runs:
#   cold start = generation 0 launched -> its first step (process start,
#                Gloo rendezvous and one step, with no checkpoint to load)
# Usage: bench/recovery_latency.sh [RUNS]   (after scripts/build.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

for i in $(seq 1 "$runs"); do
  build/bin/vigil run examples/tiny.yaml --workdir "$out/run$i" -o json \
    --chaos kill-rank:1@60 --chaos kill-rank:2@170 >"$out/run$i.json" 2>"$out/run$i.err" ||
    { echo "run $i failed:"; cat "$out/run$i.err"; exit 1; }
  db="$out/run$i/logbook.sqlite"
  sqlite3 "$db" "SELECT json_extract(detail, '\$.detection_latency_ms') FROM events WHERE kind = 'process_exit'" >>"$out/detection"
  sqlite3 "$db" "SELECT (g.first_step_at_us - json_extract(e.detail, '\$.fault_injected_at_us')) / 1000.0
                   FROM generations g JOIN interventions i ON i.id = g.cause_intervention_id
                   JOIN events e ON e.id = i.event_id" >>"$out/recovery"
  sqlite3 "$db" "SELECT (first_step_at_us - started_at_us) / 1000.0 FROM generations WHERE number = 0" >>"$out/cold"
done

stats() {  # p50 and max of a column of numbers
  sort -g "$1" | awk '{v[NR]=$1} END {printf "p50 %8.1f ms   max %8.1f ms   (n=%d)", v[int((NR+1)/2)], v[NR], NR}'
}
echo "tiny job, $runs runs x 2 SIGKILLed ranks, $(nproc) cores"
echo "kill -> detection event          $(stats "$out/detection")"
echo "kill -> first step of next gen   $(stats "$out/recovery")"
echo "baseline: cold start -> 1st step $(stats "$out/cold")"
