# shellcheck shell=bash
# Debian's daemonless container tools, as root, for scripts/build-image and tests/image: buildah
# (builds the Dockerfile), podman with runc (runs the image), podman-compose (runs compose.yaml).
# On a Debian host they are installed when missing.
#   statim_containers_ready    installs what is missing and exports CONTAINERS_CONF

statim_containers_ready() {
  local missing=()
  command -v buildah >/dev/null 2>&1 || missing+=(buildah)
  command -v podman >/dev/null 2>&1 || missing+=(podman)
  command -v runc >/dev/null 2>&1 || missing+=(runc)
  command -v podman-compose >/dev/null 2>&1 || missing+=(podman-compose)
  command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
  if [ ${#missing[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || { echo "containers: need root to install ${missing[*]}" >&2; return 1; }
    echo "containers: installing ${missing[*]}" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  # podman's default ulimits cannot be set inside this kind of sandbox (a container or VM that
  # limits them already): start containers with the limits they inherit.
  local conf; conf="$(statim_env_cache)/containers.conf"
  mkdir -p "$(dirname "$conf")"
  printf '[containers]\ndefault_ulimits = []\n\n[engine]\nruntime = "runc"\n' >"$conf"
  export CONTAINERS_CONF=$conf
}
