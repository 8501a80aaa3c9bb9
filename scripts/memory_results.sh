#!/usr/bin/env bash
# Train every memory-network recipe and write docs/results/ntm.md, act.md and dmn.md.
#
# About 3 hours on 2 cores: every recipe uses one torch thread, and the runs
# go two at a time. Each run stops at its config's max_minutes budget and
# then leaves runs/NAME/.done; a rerun skips those and resumes any other run
# where it stopped, so the script can be started again after a kill.
# Progress goes to runs/NAME.out.
#
#   scripts/memory_results.sh            # everything, then the three reports
#   scripts/memory_results.sh ntm        # one family: ntm, act or dmn
set -euo pipefail
cd "$(dirname "$0")/.."
SEQLAB=${SEQLAB:-.venv/bin/seqlab}
mkdir -p runs

run() {  # run NAME RECIPE ARGS...: one training run into runs/NAME, its output in runs/NAME.out
  local name=$1
  shift
  if [ -e "runs/$name/.done" ]; then
    echo "$(date -u +%H:%M) skip  $name (finished before)" >&2
    return
  fi
  echo "$(date -u +%H:%M) start $name" >&2
  "$SEQLAB" train "$@" --run-dir "runs/$name" >"runs/$name.out" 2>&1
  mkdir -p "runs/$name"  # a sweep writes runs/NAME-*, not runs/NAME
  touch "runs/$name/.done"
  echo "$(date -u +%H:%M) done  $name" >&2
}

pair() {  # pair "NAME RECIPE ARGS..." "NAME RECIPE ARGS...": two one-thread runs side by side
  # shellcheck disable=SC2086
  run $1 &
  local first=$!
  # shellcheck disable=SC2086
  run $2
  wait "$first"
}

COPY="ntm-copy ntm-copy --config configs/ntm-copy.yaml"
COPY_LSTM="ntm-copy-lstm ntm-copy --config configs/ntm-copy.yaml model=lstm lr=0.001"
REPEAT="ntm-repeat-copy ntm-repeat-copy --config configs/ntm-repeat-copy.yaml"
RECALL="ntm-recall ntm-recall --config configs/ntm-recall.yaml"
RECALL_LSTM="ntm-recall-lstm ntm-recall --config configs/ntm-recall.yaml model=lstm lr=0.001"
PARITY="act-parity act-parity --config configs/act-parity.yaml"
ADDITION="act-addition act-addition --config configs/act-addition.yaml"
PARITY16_NOACT="act-parity16-noact act-parity --config configs/act-parity16.yaml sweep=null act=false"
PARITY16_ACT="act-parity16-tau0.001 act-parity --config configs/act-parity16.yaml sweep=null tau=0.001"
DMN="dmn dmn --config configs/dmn.yaml"

# shellcheck disable=SC2086
case "${1:-all}" in
  ntm) pair "$COPY" "$COPY_LSTM"; pair "$REPEAT" "$RECALL"; run $RECALL_LSTM; "$SEQLAB" report ntm ;;
  act) pair "$PARITY" "$ADDITION"; pair "$PARITY16_NOACT" "$PARITY16_ACT"; "$SEQLAB" report act ;;
  dmn) run $DMN; "$SEQLAB" report dmn ;;
  all)
    pair "$COPY" "$COPY_LSTM"
    pair "$REPEAT" "$RECALL"
    pair "$RECALL_LSTM" "$PARITY"  # one-thread runs pair across families
    "$SEQLAB" report ntm
    pair "$ADDITION" "$DMN"
    pair "$PARITY16_NOACT" "$PARITY16_ACT"
    "$SEQLAB" report act
    "$SEQLAB" report dmn
    ;;
  *) echo "usage: $0 [ntm|act|dmn]" >&2; exit 2 ;;
esac
