# shellcheck shell=bash
# statim's build/run environment: a Debian forky root made with debootstrap, cached outside the
# checkout, with the packages of scripts/packages.txt and scripts/test-packages.txt (the tests' own,
# e.g. a PostgreSQL server; the image does not install them). Sourced by scripts/in-env and the Makefile.
#
#   statim_env_exec CMD...   run CMD inside the environment (or natively, see below), same cwd/env
#   statim_env_root          print the path of the (built) root
#
# Native mode: when the host already has the libraries (pkg-config finds llama and drogon is
# installed), or STATIM_NATIVE=1, commands run directly on the host. STATIM_NATIVE=0 forces the root.
# Knobs: STATIM_ENV_CACHE (where roots live), STATIM_DEBIAN_MIRROR (else taken from the host's apt
# configuration).

STATIM_PROJECT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATIM_PACKAGES_FILE="$STATIM_PROJECT_DIR/scripts/packages.txt"
STATIM_TEST_PACKAGES_FILE="$STATIM_PROJECT_DIR/scripts/test-packages.txt"  # the environment only, not the image
STATIM_SUITE=forky

statim_env_log() { echo "statim-env: $*" >&2; }

statim_env_packages() { cat "$STATIM_PACKAGES_FILE" "$STATIM_TEST_PACKAGES_FILE" | grep -v '^\s*#' | grep -v '^\s*$' | tr '\n' ' '; }

statim_env_is_native() {
  case "${STATIM_NATIVE:-}" in 1) return 0 ;; 0) return 1 ;; esac
  [ -n "${STATIM_IN_ENV:-}" ] && return 0
  command -v pkg-config >/dev/null 2>&1 && pkg-config --exists llama 2>/dev/null &&
    [ -f /usr/lib/x86_64-linux-gnu/cmake/Drogon/DrogonConfig.cmake -o -d /usr/lib/cmake/Drogon ] &&
    command -v cmake >/dev/null 2>&1
}

# The first plain Debian archive URI in the host's apt configuration (deb822 or one-line format).
statim_env_mirror() {
  if [ -n "${STATIM_DEBIAN_MIRROR:-}" ]; then echo "$STATIM_DEBIAN_MIRROR"; return; fi
  local uri
  uri=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '/^URIs:/ {print $2}' |
    grep -v -e security -e '^$' | grep '/debian/\?$' | head -n1)
  if [ -z "$uri" ]; then
    uri=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
      awk '$1 == "deb" {for (i = 2; i <= NF; i++) if ($i ~ /^(https?|file):/) {print $i; break}}' |
      grep -v security | grep '/debian/\?$' | head -n1)
  fi
  [ -n "$uri" ] || { statim_env_log "no Debian mirror in the host's apt configuration; set STATIM_DEBIAN_MIRROR"; return 1; }
  echo "$uri"
}

statim_env_cache() { echo "${STATIM_ENV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/statim-env}"; }

# The root's name carries a hash of the package lists and of this script: any changing rebuilds it.
statim_env_root() {
  local key
  key=$(cat "$STATIM_PACKAGES_FILE" "$STATIM_TEST_PACKAGES_FILE" "${BASH_SOURCE[0]}" | sha256sum | cut -c1-16)
  echo "$(statim_env_cache)/$STATIM_SUITE-$key"
}

statim_env_host_tools() {
  local missing=()
  command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
  command -v unshare >/dev/null 2>&1 || missing+=(util-linux)
  [ ${#missing[@]} -eq 0 ] && return 0
  statim_env_log "installing host tools: ${missing[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

# The environment's own system folders: a bind point there would hide its files, and a path there
# that the environment has is the environment's (e.g. /usr/bin/chromium), not the host's.
statim_env_system_path() {
  case "$1" in
    /|/var|/var/lib|/var/cache|/home|/srv|/opt|/mnt|/media) return 0 ;;
    /usr|/usr/*|/etc|/etc/*|/bin|/bin/*|/sbin|/sbin/*|/lib|/lib/*|/lib32*|/lib64*|/libx32*|/boot*) return 0 ;;
    /proc|/proc/*|/sys|/sys/*|/dev|/dev/*|/run|/run/*|/var/lib/dpkg*|/var/lib/apt*|/var/cache/*) return 0 ;;
  esac
  return 1
}

# A non-empty file or folder (an empty one is what an earlier bind left as its mount point).
statim_env_has_content() {
  if [ -d "$1" ]; then [ -n "$(ls -A "$1" 2>/dev/null)" ]; else [ -s "$1" ]; fi
}

# The host paths a command names, made visible inside the environment at the same paths: every
# absolute or ../ argument (also --opt=PATH) and STATIM_DATA_DIR, STATIM_MODELS_DIR, STATIM_CONFIG,
# STATIM_BIN. Prints one bind point per line: the path when it is a folder, else its folder, else
# (it does not exist yet: the command may create it) its nearest existing parent; the path itself
# where that point is a system folder. Fails, saying why, for a path that does not exist and could
# only be reached by covering a system folder.
statim_env_user_binds() {
  local root=$1; shift
  local arg path point
  for arg in "$@" "${STATIM_DATA_DIR:-}" "${STATIM_MODELS_DIR:-}" "${STATIM_CONFIG:-}" "${STATIM_BIN:-}"; do
    case "$arg" in --*=*) arg=${arg#*=} ;; esac
    case "$arg" in /*|../*) ;; *) continue ;; esac
    path=$(realpath -ms -- "$arg")  # -s: a symlink is shown where the command names it
    case "$path" in "$STATIM_PROJECT_DIR"|"$STATIM_PROJECT_DIR"/*) continue ;; esac
    # The environment's own file (not a placeholder an earlier bind left: those are empty).
    if statim_env_system_path "$path" && statim_env_has_content "$root$path"; then continue; fi
    if [ -d "$path" ]; then point=$path
    elif [ -e "$path" ]; then point=$(dirname "$path")
    else
      point=$(dirname "$path")
      while [ ! -d "$point" ]; do point=$(dirname "$point"); done
      [ "$point" = / ] && continue  # nothing of it exists: not a path (a route, a pattern)
    fi
    if statim_env_system_path "$point"; then
      if [ ! -e "$path" ]; then
        statim_env_log "cannot make $path visible inside the build environment without covering its own $point: create it first (mkdir -p $path), or use a path elsewhere"
        return 1
      fi
      point=$path
    fi
    echo "$point"
  done
}

# Runs CMD inside ROOT as root in a private mount namespace; the checkout, ../shared, the caller's
# cwd and the host paths the command names (statim_env_user_binds) appear at the same paths as on
# the host; the network is the host's, and so are its name resolution and its CA certificates.
statim_env_chroot() {
  local root=$1; shift
  local binds=("$STATIM_PROJECT_DIR") user_binds
  [ -d "$STATIM_PROJECT_DIR/../shared" ] && binds+=("$(cd "$STATIM_PROJECT_DIR/../shared" && pwd)")
  local cwd=$PWD cwd_bound=""
  case "$cwd" in "$STATIM_PROJECT_DIR"|"$STATIM_PROJECT_DIR"/*) ;; *) statim_env_system_path "$cwd" || { binds+=("$cwd"); cwd_bound=1; } ;; esac
  user_binds=$(statim_env_user_binds "$root" "$@") || return 2
  while IFS= read -r d; do [ -n "$d" ] && binds+=("$d"); done <<<"$user_binds"
  # A compiler cache shared by every checkout on this machine (CMake uses ccache when present);
  # paths below the checkout's parent are hashed relative, so sibling checkouts share hits.
  local ccache_dir; ccache_dir="$(statim_env_cache)/ccache"
  mkdir -p "$ccache_dir" && binds+=("$ccache_dir")
  export CCACHE_DIR="${CCACHE_DIR:-$ccache_dir}" CCACHE_BASEDIR="${CCACHE_BASEDIR:-$(dirname "$STATIM_PROJECT_DIR")}"
  export CCACHE_NOHASHDIR="${CCACHE_NOHASHDIR:-true}"
  [ -n "$cwd_bound" ] || [ -d "$root$cwd" ] || case "$cwd" in "$STATIM_PROJECT_DIR"|"$STATIM_PROJECT_DIR"/*) ;; *) cwd=/ ;; esac
  STATIM_ENV_ROOT_DIR=$root STATIM_ENV_BINDS="$(printf '%s\n' "${binds[@]}")" STATIM_ENV_CWD=$cwd \
  unshare --mount --propagation private --fork -- /bin/bash -c '
    set -e
    R=$STATIM_ENV_ROOT_DIR
    mount --rbind /dev "$R/dev"; mount --rbind /proc "$R/proc"; mount --rbind /sys "$R/sys"
    [ -f /etc/resolv.conf ] && mount --bind /etc/resolv.conf "$R/etc/resolv.conf" || true
    # The host'"'"'s trust store goes with its network (a proxy'"'"'s own CA: npm, curl, pip inside).
    C=/etc/ssl/certs/ca-certificates.crt
    [ -f "$C" ] && [ -f "$R$C" ] && mount --bind "$C" "$R$C" || true
    while IFS= read -r d; do
      [ -n "$d" ] || continue
      if [ -d "$d" ]; then mkdir -p "$R$d"; else mkdir -p "$(dirname "$R$d")"; touch "$R$d"; fi
      mount --rbind "$d" "$R$d"
    done <<<"$STATIM_ENV_BINDS"
    cd "$R"
    exec chroot "$R" /usr/bin/env -C "$STATIM_ENV_CWD" \
      PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin STATIM_IN_ENV=1 \
      HOME="${HOME:-/root}" "$@"' statim-env "$@"
}

# True when some process has its root directory inside $1.
statim_env_in_use() {
  local link target
  for link in /proc/[0-9]*/root; do
    target=$(readlink "$link" 2>/dev/null) || continue
    case "$target" in "$1"|"$1"/*) return 0 ;; esac
  done
  return 1
}

statim_env_build() {
  local root=$1
  [ "$(id -u)" = 0 ] || { statim_env_log "building the environment needs root (or set STATIM_NATIVE=1 on a host with the packages)"; return 1; }
  statim_env_host_tools || return 1
  local mirror tmp
  mirror=$(statim_env_mirror) || return 1
  tmp="$root.building"
  rm -rf "$tmp"; mkdir -p "$(dirname "$root")"
  statim_env_log "creating Debian $STATIM_SUITE root in $root (mirror from host apt config)"
  # bookworm's debootstrap has no forky script; sid's is the one that fits testing.
  debootstrap --variant=minbase "$STATIM_SUITE" "$tmp" "$mirror" /usr/share/debootstrap/scripts/sid \
    >"$tmp.log" 2>&1 || { statim_env_log "debootstrap failed, see $tmp.log"; tail -20 "$tmp.log" >&2; return 1; }
  # The mirror may be weeks old: its Release file can be past Valid-Until.
  echo 'Acquire::Check-Valid-Until "false";' >"$tmp/etc/apt/apt.conf.d/99statim-valid-until"
  echo 'APT::Install-Recommends "false";' >"$tmp/etc/apt/apt.conf.d/99statim-no-recommends"
  local pkgs; pkgs=$(statim_env_packages)
  statim_env_log "installing packages: $pkgs"
  statim_env_chroot "$tmp" /bin/sh -c "apt-get -o Acquire::Check-Valid-Until=false update -qq &&
    DEBIAN_FRONTEND=noninteractive apt-get -o Acquire::Check-Valid-Until=false install -y -qq --no-install-recommends $pkgs &&
    apt-get clean" >>"$tmp.log" 2>&1 || { statim_env_log "package install failed, see $tmp.log"; tail -20 "$tmp.log" >&2; return 1; }
  mv "$tmp.log" "$tmp/.statim-build.log"
  touch "$tmp/.statim-ready"
  mv "$tmp" "$root"
  # Roots for older package lists are dead weight, unless a process still runs in one (another
  # checkout's build or test run): removing it would pull its libraries from under it.
  local old
  for old in "$(dirname "$root")/$STATIM_SUITE-"*; do
    [ "$old" = "$root" ] && continue
    case "$old" in *.building|*.log) continue ;; esac
    statim_env_in_use "$old" || rm -rf "$old"
  done
  statim_env_log "environment ready"
}

statim_env_ensure() {
  local root; root=$(statim_env_root)
  [ -f "$root/.statim-ready" ] && return 0
  mkdir -p "$(statim_env_cache)"
  # One builder at a time; the others wait and then find it ready.
  (
    flock 9
    [ -f "$root/.statim-ready" ] || statim_env_build "$root"
  ) 9>"$(statim_env_cache)/.lock"
}

statim_env_exec() {
  if statim_env_is_native; then exec "$@"; fi
  statim_env_ensure || exit 1
  statim_env_chroot "$(statim_env_root)" "$@"
}
