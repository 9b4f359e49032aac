#!/usr/bin/env bash
# Installs what is missing, builds libisolate (release, in build-demo) and
# runs the memory monitor: two isolates on two threads, GC tracing on,
# memory usage and heap statistics as Node reports them.
#
# Usage: bash examples/run_demo.sh [-v] [operations]
#   (arguments go to the demo: -v prints every GC trace line)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=tests/setup_deps.sh
. tests/setup_deps.sh
iso_setup_deps base

dir=build-demo
opts=(--buildtype=release -Dtests=false -Dbenchmarks=false -Dexamples=true)

# meson's own output is long; show it only when it fails.
quiet() {
  local out
  if ! out=$("$@" 2>&1); then
    printf '%s\n' "$out" >&2
    return 1
  fi
}

echo "configuring $dir (release)"
if [ -f "$dir/meson-private/coredata.dat" ]; then
  quiet meson setup --reconfigure "$dir" "${opts[@]}" ||
    { rm -rf "$dir"; quiet meson setup "$dir" "${opts[@]}"; }
else
  rm -rf "$dir"
  quiet meson setup "$dir" "${opts[@]}"
fi
ninja -C "$dir" examples/memory_monitor
echo
exec "$dir/examples/memory_monitor" "$@"
