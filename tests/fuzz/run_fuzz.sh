#!/bin/sh
# Runs a fuzz target over the seed corpus. New inputs go to WORK/corpus
# and crash reproducers to WORK/, never into the seed corpus.
# Usage: run_fuzz.sh FUZZER WORK SEEDS DICT [libFuzzer options...]
set -eu
fuzzer=$1
work=$2
seeds=$3
dict=$4
shift 4
mkdir -p "$work/corpus"
exec "$fuzzer" -dict="$dict" -artifact_prefix="$work/" -rss_limit_mb=2048 \
  -print_final_stats=1 "$@" "$work/corpus" "$seeds"
