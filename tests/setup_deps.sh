# Shared by tests/run_all.sh and examples/run_demo.sh (sourced, not run):
# installs the Debian packages the build needs, and only those missing.
#
#   iso_setup_deps base       compiler, meson, ninja, pkg-config, liburcu, ck
#   iso_setup_deps sanitizers the same, plus clang and its sanitizer runtimes
#
# apt-get runs only when something is missing, so a machine that has
# everything is never touched (and needs neither root nor the network).

iso_pkg_installed() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

iso_setup_deps() {
  local want_sanitizers=0
  [ "${1:-}" = sanitizers ] && want_sanitizers=1

  local missing=()
  # Tools are looked up by command, so ones installed some other way count;
  # libraries only exist as far as dpkg knows about them.
  command -v cc >/dev/null 2>&1 || missing+=(gcc)
  command -v python3 >/dev/null 2>&1 || missing+=(python3)
  command -v meson >/dev/null 2>&1 || missing+=(meson)
  command -v ninja >/dev/null 2>&1 || missing+=(ninja-build)
  command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
  iso_pkg_installed liburcu-dev || missing+=(liburcu-dev)
  iso_pkg_installed libck-dev || missing+=(libck-dev)
  if [ "$want_sanitizers" = 1 ]; then
    command -v clang >/dev/null 2>&1 || missing+=(clang)
    iso_pkg_installed libclang-rt-14-dev || missing+=(libclang-rt-14-dev)
  fi

  if [ "${#missing[@]}" -eq 0 ]; then
    return 0
  fi
  echo "setup: installing missing packages: ${missing[*]}"
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "setup: apt-get not found; install these by hand: ${missing[*]}" >&2
    return 1
  fi
  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null 2>&1; then
      echo "setup: not root and no sudo; as root run:" >&2
      echo "  apt-get update && apt-get install -y ${missing[*]}" >&2
      return 1
    fi
    sudo=(sudo)
  fi
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q &&
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
      apt-get install -y -q "${missing[@]}"
}
