# statim's container image. It mirrors the build environment (scripts/env.sh) and `make build`:
# the same Debian suite, the same package list (scripts/packages.txt) installed the same way, the
# same cmake commands. scripts/check-dockerfile asserts they still agree.
#
#   scripts/build-image                                 # also: make image (docker, or buildah without a daemon)
#   docker build -t statim:latest .
#   docker run -p 5000:5000 -v statim-data:/var/lib/statim statim:latest
#   docker compose up -d                                # compose.yaml: the same, with a named volume
#   make test-image                                     # builds it and runs it for real (tests/image)
#
# Model weights. The repo's manifests (models/*.toml) are copied to /etc/statim/models; a manifest
# whose `file` points into the checkout's ../shared/models folder is rewritten to point into
# /opt/statim/models-files instead. The image bakes in whatever folder you pass as the build context
# named `models` (its contents land in /opt/statim/models-files); without one it bakes in nothing
# and such a model is listed as "failed" while the rest still serves:
#   docker build --build-context models=../shared/models -t statim:latest .
# Image models (stabilityai/sd-turbo, stabilityai/sdxl-turbo) are diffusers ONNX export folders:
# export them into that context before the build, where the internet is reachable (docs/models.md):
#   optimum-cli export onnx --model stabilityai/sdxl-turbo ../shared/models/diffusion/sdxl-turbo-onnx
#   optimum-cli export onnx --model stabilityai/sd-turbo ../shared/models/diffusion/sd-turbo-onnx
# Or mount weights at run time instead of baking them in:
#   docker run ... -v /path/to/weights:/opt/statim/models-files:ro statim:latest
# Your own manifests: mount a folder over /etc/statim/models (absolute `file` paths, or paths
# relative to the manifest).
#
# Build args:
#   DEBIAN_MIRROR  a Debian archive URI to install from instead of the base image's sources (as
#                  scripts/env.sh does with the host's mirror); a snapshot mirror is fine, the
#                  Valid-Until check is off as in the environment.
#   JOBS           parallel compile jobs (default: the builder's core count, like `make build`).
#
# No `# syntax=` line on purpose: everything here (RUN --mount included) is in the Dockerfile
# frontend built into Docker 23+, so the build needs no frontend image pulled.

# The default `models` context: empty. `--build-context models=DIR` replaces this stage.
FROM scratch AS models

FROM debian:forky-slim AS build
ARG DEBIAN_MIRROR=""
ARG JOBS=""
# The same apt setup and install as statim_env_build in scripts/env.sh.
COPY scripts/packages.txt /tmp/statim/packages.txt
RUN set -eu; \
    if [ -n "$DEBIAN_MIRROR" ]; then \
      rm -f /etc/apt/sources.list.d/*; echo "deb $DEBIAN_MIRROR forky main" >/etc/apt/sources.list; \
    fi; \
    echo 'Acquire::Check-Valid-Until "false";' >/etc/apt/apt.conf.d/99statim-valid-until; \
    echo 'APT::Install-Recommends "false";' >/etc/apt/apt.conf.d/99statim-no-recommends; \
    pkgs=$(grep -v '^\s*#' /tmp/statim/packages.txt | grep -v '^\s*$' | tr '\n' ' '); \
    apt-get -o Acquire::Check-Valid-Until=false update -qq; \
    DEBIAN_FRONTEND=noninteractive apt-get -o Acquire::Check-Valid-Until=false install -y -qq --no-install-recommends $pkgs; \
    apt-get clean; rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY . .
# `make build`, with the unit tests left out of the image. scripts/build-image lends the build
# environment's compiler cache at /ccache (buildah --volume); a plain `docker build` has none.
RUN if [ -d /ccache ]; then export CCACHE_DIR=/ccache CCACHE_BASEDIR=/src CCACHE_NOHASHDIR=true; fi; \
    cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSTATIM_BUILD_TESTS=OFF >/dev/null && \
    cmake --build build -j "${JOBS:-$(nproc)}"
# Manifests for the image: `file = "../../shared/models/X"` (relative to the checkout's models/)
# becomes `file = "/opt/statim/models-files/X"`. Label files (models/*.txt) go beside them.
RUN mkdir -p /out/models && \
    for m in models/*.toml; do \
      sed -E 's#^(file[[:space:]]*=[[:space:]]*")(\.\./)+shared/models/#\1/opt/statim/models-files/#' \
        "$m" >"/out/models/$(basename "$m")"; \
    done && \
    for f in models/*.txt; do if [ -e "$f" ]; then cp "$f" /out/models/; fi; done

FROM debian:forky-slim AS runtime
ARG DEBIAN_MIRROR=""
# Only the shared libraries the binary needs (scripts/runtime-packages.txt), installed the same way.
COPY scripts/runtime-packages.txt /tmp/statim/runtime-packages.txt
RUN set -eu; \
    if [ -n "$DEBIAN_MIRROR" ]; then \
      rm -f /etc/apt/sources.list.d/*; echo "deb $DEBIAN_MIRROR forky main" >/etc/apt/sources.list; \
    fi; \
    echo 'Acquire::Check-Valid-Until "false";' >/etc/apt/apt.conf.d/99statim-valid-until; \
    echo 'APT::Install-Recommends "false";' >/etc/apt/apt.conf.d/99statim-no-recommends; \
    pkgs=$(grep -v '^\s*#' /tmp/statim/runtime-packages.txt | grep -v '^\s*$' | tr '\n' ' '); \
    apt-get -o Acquire::Check-Valid-Until=false update -qq; \
    DEBIAN_FRONTEND=noninteractive apt-get -o Acquire::Check-Valid-Until=false install -y -qq --no-install-recommends $pkgs; \
    apt-get clean; rm -rf /var/lib/apt/lists/* /tmp/statim

RUN useradd --user-group --uid 10001 --home-dir /var/lib/statim --no-create-home \
      --shell /usr/sbin/nologin statim && \
    mkdir -p /var/lib/statim /opt/statim/models-files && chown statim:statim /var/lib/statim

COPY --from=build /src/build/statim /usr/local/bin/statim
COPY --from=build /out/models/ /etc/statim/models/
# Weights from the `models` build context (empty by default), readable by the statim user.
RUN --mount=type=bind,from=models,target=/mnt/models \
    cp -R /mnt/models/. /opt/statim/models-files/ && chmod -R a+rX /opt/statim/models-files

USER statim
WORKDIR /var/lib/statim
VOLUME /var/lib/statim
EXPOSE 5000
# Every route but /healthz, /readyz, /version and /docs needs an API key. Create the first one
# in the volume: docker compose run --rm statim statim keys create --name admin --scope admin
# Every subcommand (serve, keys) uses the same data dir and models dir: set once, here.
ENV STATIM_AUTH_MODE=required \
    STATIM_DATA_DIR=/var/lib/statim \
    STATIM_MODELS_DIR=/etc/statim/models
# /healthz reads through the job store, so it fails when the database does. An OCI-format image
# (buildah's and podman's default) drops HEALTHCHECK: scripts/build-image builds with
# --format docker, and compose.yaml states the same check.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD curl -fsS http://localhost:5000/healthz || exit 1
# statim waits up to jobs.shutdown_grace_seconds (30 s) for running jobs after SIGTERM: give
# `docker stop` a longer timeout (-t 35; compose.yaml sets stop_grace_period).
CMD ["statim", "serve", "--port", "5000"]
