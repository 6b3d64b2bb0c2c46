#!/usr/bin/env bash
# Installs the Debian packages that building and testing pvc-evictor need,
# skipping the apt calls entirely when everything is already present.
# Usage: scripts/deps.sh [build|test]   (test is a superset of build)
set -euo pipefail

build_packages=(
  build-essential cmake pkg-config
  libspdlog-dev libfmt-dev robin-map-dev libcap-ng-dev libcli11-dev
  nlohmann-json3-dev libcpp-httplib-dev libssl-dev
  cppzmq-dev libzmq3-dev libmsgpack-cxx-dev
  libgtest-dev libgmock-dev libbenchmark-dev
)
test_packages=(
  python3 e2fsprogs util-linux mount libcap2-bin
  python3-prometheus-client python3-zmq python3-msgpack
  shellcheck yamllint clang libclang-rt-14-dev faketime
)

wanted=("${build_packages[@]}")
if [[ "${1:-test}" == test ]]; then
  wanted+=("${test_packages[@]}")
fi

missing=()
for pkg in "${wanted[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null |
      grep -q 'install ok installed'; then
    missing+=("$pkg")
  fi
done
if ((${#missing[@]} == 0)); then
  exit 0
fi

echo "installing: ${missing[*]}"
sudo=()
if ((EUID != 0)); then
  sudo=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
