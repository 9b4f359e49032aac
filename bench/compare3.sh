#!/usr/bin/env bash
# The concurrent-marking benchmarks: old_churn on one and two isolates
# beside its Node.js twin (one isolate), and binary_trees on one and two
# isolates. Runs each several times (alternating, so drift hits all
# alike), checks that binary_trees prints the same report on two isolates
# as on one, and prints the median of every figure, one line each, with
# the issue's target for it, met or missed. Each old_churn round also runs
# cpu_gaps (two threads that only read the clock, as long as the churn:
# the longest time the machine took a busy thread away, the floor under
# old_churn's worst block) and churn_floor (old_churn's memory traffic in
# plain C with no collector: the ceiling of its throughput here).
#
# Usage: bench/compare3.sh [options]
#   --runs N        runs of each program (default 3; env RUNS)
#   --seconds S     old_churn's churn time (default 10; env RUN_SECONDS)
#   --records R     old_churn's live set per isolate (default 4000000;
#                   env RECORDS)
#   --depth D       binary_trees depth (default 21; env DEPTH)
#   --quick         smoke run: 1 run, 2 s, 1000000 records, depth 18
#   --only NAME     one benchmark: old_churn or binary_trees
#   --build-dir DIR optimised build directory (default build-bench, relative
#                   to the project root; env BUILD_DIR); set up with
#                   --buildtype=release if it does not exist
#   --no-node       skip node's twin (its ratios are then not checked)
#   --keep DIR      keep every run's output in DIR
# Env NODE names the node binary (default: node on PATH).
#
# Exit status: 0 when every run succeeded and the reports matched, 1 when a
# program failed or binary_trees' reports differ, 2 on a usage error.
# Missed targets are reported, not an error.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
runs=${RUNS:-3}
seconds=${RUN_SECONDS:-10}
records=${RECORDS:-4000000}
depth=${DEPTH:-21}
build_dir=${BUILD_DIR:-build-bench}
node=${NODE:-node}
only=""
use_node=1
keep=""

bench_script=compare3.sh
# shellcheck source=bench/lib.sh
. "$root/bench/lib.sh"

while [[ $# -gt 0 ]]; do
  case $1 in
    --runs) need_arg "$@"; runs=$2; shift 2 ;;
    --seconds) need_arg "$@"; seconds=$2; shift 2 ;;
    --records) need_arg "$@"; records=$2; shift 2 ;;
    --depth) need_arg "$@"; depth=$2; shift 2 ;;
    --quick) runs=1; seconds=2; records=1000000; depth=18; shift ;;
    --only) need_arg "$@"; only=$2; shift 2 ;;
    --build-dir) need_arg "$@"; build_dir=$2; shift 2 ;;
    --no-node) use_node=0; shift ;;
    --keep) need_arg "$@"; keep=$2; shift 2 ;;
    -h|--help) usage ;;
    *) echo "compare3.sh: unknown option $1" >&2; usage ;;
  esac
done

for v in runs records depth; do
  [[ ${!v} =~ ^[0-9]+$ ]] || { echo "compare3.sh: bad $v '${!v}'" >&2; exit 2; }
done
[[ $seconds =~ ^[0-9]+(\.[0-9]+)?$ ]] ||
  { echo "compare3.sh: bad seconds '$seconds'" >&2; exit 2; }
((runs >= 1)) || { echo "compare3.sh: --runs must be at least 1" >&2; exit 2; }
case $only in
  ""|old_churn|binary_trees) ;;
  *) echo "compare3.sh: unknown benchmark '$only'" >&2; exit 2 ;;
esac
want() { [[ -z $only || $only = "$1" ]]; }
if ((use_node)) && want old_churn; then
  command -v "$node" >/dev/null ||
    { echo "compare3.sh: $node not found (or use --no-node)" >&2; exit 1; }
fi

[[ $build_dir = /* ]] || build_dir=$root/$build_dir

bench_out_dir "$keep"

bench_build bench/old_churn bench/binary_trees bench/cpu_gaps bench/churn_floor

status=0

# Runs one program; its output is kept as $out_dir/<name>.<run> and its
# JSON line appended to $out_dir/<name>.json.
run_one() {
  local name=$1 r=$2
  shift 2
  bench_run "$out_dir/$name.$r" "$out_dir/$name.json" "$name run $r" "$@" ||
    { status=1; return 0; }
  local last=$bench_last
  if [[ $name = gaps ]]; then
    printf '   %-16s run %d: longest gap %s ms\n' "$name" "$r" \
      "$(json_get "$last" max_gap_ms)"
    return 0
  fi
  if [[ $name = floor ]]; then
    printf '   %-16s run %d: bump %s holes %s replacements/s\n' "$name" "$r" \
      "$(json_get "$last" bump_replacements_per_s)" \
      "$(json_get "$last" holes_replacements_per_s)"
    return 0
  fi
  printf '   %-16s run %d: wall_s %s cpu_s %s\n' "$name" "$r" \
    "$(json_get "$last" wall_s)" "$(json_get "$last" cpu_s)"
}

med() { # name key
  local f=$out_dir/$1.json
  [[ -f $f ]] || { echo -; return; }
  while read -r l; do json_get "$l" "$2"; done <"$f" | median
}

node_version=""
((use_node)) && node_version=", node $("$node" --version)"
echo "== machine: $(nproc) cores$node_version, load average $(load_now)"

churn=("--records" "$records" "--seconds" "$seconds")
if want old_churn; then
  echo "== old_churn: $records records per isolate, $seconds s"
  for ((r = 1; r <= runs; r++)); do
    for n in 1 2; do
      run_one "churn.c$n" "$r" "$build_dir/bench/old_churn" --isolates "$n" \
        "${churn[@]}"
    done
    if ((use_node)); then
      run_one churn.node "$r" "$node" --max-old-space-size=4096 --trace-gc \
        "$root/bench/node/old_churn.js" "${churn[@]}"
    fi
    run_one gaps "$r" "$build_dir/bench/cpu_gaps" --threads 2 \
      --seconds "$seconds"
    run_one floor "$r" "$build_dir/bench/churn_floor" --records "$records"
  done
fi

if want binary_trees; then
  echo "== binary_trees $depth"
  for ((r = 1; r <= runs; r++)); do
    run_one trees.c1 "$r" "$build_dir/bench/binary_trees" "$depth" --isolates 1
    run_one trees.c2 "$r" "$build_dir/bench/binary_trees" "$depth" --isolates 2
  done
  # Every report (all lines but the JSON one) must equal the first
  # one-isolate run's.
  ref=$out_dir/trees.c1.1
  if [[ -f $ref ]]; then
    for f in "$out_dir"/trees.c[12].[0-9]*; do
      [[ $f = *.err ]] && continue
      if ! cmp -s <(sed '$d' "$ref") <(sed '$d' "$f"); then
        echo "compare3.sh: binary_trees report of ${f##*/} differs:" >&2
        diff <(sed '$d' "$ref") <(sed '$d' "$f") | head -20 >&2 || true
        status=1
      fi
    done
  fi
fi

((status == 0)) ||
  { echo "compare3.sh: some runs failed; no table" >&2; exit 1; }
echo "== done; load average $(load_now) (above $(nproc) means other work" \
  "competed for the cores)"

# One line per figure: the medians, then the target and its verdict.
# check VALUE OP LIMIT prints met / MISSED (or "-" without a value).
check() {
  awk -v v="$1" -v op="$2" -v lim="$3" 'BEGIN {
    if (v == "-" || lim == "-" || v == "") { print "-"; exit }
    ok = (op == ">=") ? (v + 0 >= lim + 0) : (v + 0 < lim + 0)
    print ok ? "met" : "MISSED"
  }'
}
ratio() { # a b: a / b
  awk -v a="$1" -v b="$2" 'BEGIN {
    if (a == "-" || b == "-" || b + 0 <= 0) print "-"; else printf "%.2f", a / b
  }'
}
times() { if [[ $1 = - ]]; then echo -; else echo "$1x"; fi; }
millions() {
  awk -v v="$1" 'BEGIN { if (v == "-") print v; else printf "%.2f", v / 1e6 }'
}
row() { # figure c1 c2 node target verdict
  printf '  %-26s %10s %10s %10s   %-30s %s\n' "$@"
}

if want old_churn; then
  c1=churn.c1 c2=churn.c2 nd=churn.node
  printf '\nold_churn (%s records per isolate, %s s; medians of %s runs)\n' \
    "$records" "$seconds" "$runs"
  row figure "C 1 iso" "C 2 iso" "node" "target" ""
  r1=$(med $c1 replacements_per_s)
  r2=$(med $c2 replacements_per_s)
  rn=$(med $nd replacements_per_s)
  row "M replacements/s" "$(millions "$r1")" "$(millions "$r2")" \
    "$(millions "$rn")" "1 iso >= 6 M/s" "$(check "$(millions "$r1")" ">=" 6)"
  vs_node=$(ratio "$r1" "$rn")
  row "  1 iso vs node" "$(times "$vs_node")" "" "" "1 iso >= 2x node" \
    "$(check "$vs_node" ">=" 2)"
  scale=$(ratio "$r2" "$r1")
  row "  2 iso vs 1 iso" "" "$(times "$scale")" "" "2 iso >= 1.7x 1 iso" \
    "$(check "$scale" ">=" 1.7)"
  fb=$(med floor bump_replacements_per_s) fh=$(med floor holes_replacements_per_s)
  row "  no collector: bump" "$(millions "$fb")" "" "" \
    "(churn_floor, plain C)" ""
  row "  no collector: holes" "$(millions "$fh")" "" "" \
    "(churn_floor, plain C)" ""
  row "  1 iso vs holes floor" "$(times "$(ratio "$r1" "$fh")")" "" "" "" ""
  for k in count p50 p99 max; do
    a=$(med $c1 "pause_ms.$k") b=$(med $c2 "pause_ms.$k")
    n=$(med $nd "pause_ms.$k")
    case $k in
      max)
        row "pause_ms $k" "$a" "$b" "$n" "< 1 ms (1 iso / 2 iso)" \
          "$(check "$a" "<" 1) / $(check "$b" "<" 1)" ;;
      p99)
        row "pause_ms $k" "$a" "$b" "$n" "< 0.5 ms (1 iso / 2 iso)" \
          "$(check "$a" "<" 0.5) / $(check "$b" "<" 0.5)" ;;
      *) row "pause_ms $k" "$a" "$b" "$n" "" "" ;;
    esac
  done
  for k in count p50 p99 max; do
    a=$(med $c1 "batch_ms.$k") b=$(med $c2 "batch_ms.$k")
    n=$(med $nd "batch_ms.$k")
    if [[ $k = max ]]; then
      row "batch_ms $k (worst block)" "$a" "$b" "$n" \
        "1 iso < 2 ms (2 iso: reported)" "$(check "$a" "<" 2)"
    else
      row "batch_ms $k" "$a" "$b" "$n" "" ""
    fi
  done
  row "  its CPU time" "$(med $c1 worst_block_cpu_ms)" \
    "$(med $c2 worst_block_cpu_ms)" "" "(the thread's, in that block)" ""
  row "  most CPU in a block" "$(med $c1 block_cpu_ms.max)" \
    "$(med $c2 block_cpu_ms.max)" "" "" ""
  g=$(med gaps max_gap_ms)
  gmax=$(while read -r l; do json_get "$l" max_gap_ms; done \
    <"$out_dir/gaps.json" | sort -g | tail -n 1)
  row "  machine gap, 2 threads" "$g" "" "" "(cpu_gaps; largest $gmax)" ""
  a=$(med $c1 peak_rss_mb)
  row "peak_rss_mb" "$a" "$(med $c2 peak_rss_mb)" "$(med $nd peak_rss_mb)" \
    "1 iso < 1536 MB (1.5 GB)" "$(check "$a" "<" 1536)"
  row "cpu_s" "$(med $c1 cpu_s)" "$(med $c2 cpu_s)" "$(med $nd cpu_s)" "" ""
  if ((use_node)) && [[ -f $out_dir/churn.node.1 ]]; then
    # V8's own account of its full pauses, from --trace-gc: the pause is
    # the first number after "MB, ".
    mc=$(grep -h 'Mark-Compact' "$out_dir"/churn.node.[0-9]* |
      sed -n 's/.*MB, \([0-9.]*\) .*/\1/p' | sort -g |
      awk '{ v[NR] = $1 } END {
        if (NR) printf "%d, %.1f to %.1f ms", NR, v[1], v[NR]
        else print "none"
      }')
    echo "  (node --trace-gc Mark-Compact pauses, all runs: $mc)"
  fi
  if [[ $records != 4000000 || $seconds != 10 ]]; then
    echo "  (targets set for 4000000 records and 10 s; these sizes differ)"
  fi
fi

if want binary_trees; then
  printf '\nbinary_trees depth %s (medians of %s runs; reports identical on' \
    "$depth" "$runs"
  printf ' 1 and 2 isolates: yes)\n'
  row figure "C 1 iso" "C 2 iso" "" "target" ""
  o1=$(med trees.c1 objects_per_s)
  o2=$(med trees.c2 objects_per_s)
  row "M objects/s" "$(millions "$o1")" "$(millions "$o2")" "" "" ""
  scale=$(ratio "$o2" "$o1")
  row "  2 iso vs 1 iso" "" "$(times "$scale")" "" "2 iso >= 1.8x 1 iso" \
    "$(check "$scale" ">=" 1.8)"
  for k in wall_s cpu_s peak_rss_mb scavenge_count scavenge_max_ms \
      full_gc_count full_gc_max_ms; do
    row "$k" "$(med trees.c1 $k)" "$(med trees.c2 $k)" "" "" ""
  done
  [[ $depth = 21 ]] || echo "  (target set for depth 21; this depth differs)"
fi
exit "$status"
