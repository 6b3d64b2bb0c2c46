#!/usr/bin/env bash
# Tests of the deployment side: manifests/, scripts/deploy.sh, Dockerfile.
#
#   tests/deploy/run.sh
#
# Everything runs offline except two installs done only when missing: the
# npm packages of tests/deploy (npm ci, from the committed lock file) and,
# as root, shellcheck and yamllint from Debian. No cluster is needed: the
# manifests are rendered with "kubectl kustomize", validated against the
# Kubernetes schemas with the kubernetes-models npm package, and checked for
# the security properties each overlay promises; deploy.sh's apply path runs
# against tests/deploy/fake-kubectl.
#
# Prints one line per check (details of a failure go to stderr, indented)
# and ends with "N passed, M failed"; exits non-zero if any check failed.
set -euo pipefail

here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
root=$(cd -- "$here/../.." && pwd)
deploy="$root/scripts/deploy.sh"
out=$(mktemp -d "${TMPDIR:-/tmp}/pvc-evictor-deploy-tests.XXXXXX")
trap 'rm -rf -- "$out"' EXIT

passed=0
failed=0
pass() {
  echo "PASS $1"
  passed=$((passed + 1))
}
fail() {
  echo "FAIL $1"
  failed=$((failed + 1))
}
skip() { echo "SKIP $1"; }
details() { sed 's/^/    /' "$1" >&2; }

# check NAME COMMAND...: passes when the command exits 0.
check() {
  local name=$1
  shift
  if "$@" >"$out/log" 2>&1; then
    pass "$name"
  else
    fail "$name"
    details "$out/log"
  fi
}

# check_rejects NAME WORD ARGS...: passes when deploy.sh exits non-zero and
# its error message names WORD (the argument at fault).
check_rejects() {
  local name=$1 word=$2 rc=0
  shift 2
  "$deploy" --dry-run "$@" >"$out/log" 2>&1 || rc=$?
  if [[ $rc -ne 0 ]] && grep -q -- "error: $word" "$out/log"; then
    pass "$name"
  else
    fail "$name (exit $rc, expected an error naming $word)"
    details "$out/log"
  fi
}

# collect NAME COMMAND...: for the node scripts, which print their own
# "PASS ..." and "FAIL ..." lines; each counts as a check. A crash, or a
# failure without a FAIL line, counts as one more failure.
collect() {
  local name=$1 rc=0 line
  shift
  "$@" >"$out/collect" 2>&1 || rc=$?
  while IFS= read -r line; do
    case $line in
      "PASS "*) pass "${line#PASS }" ;;
      "FAIL "*) fail "${line#FAIL }" ;;
      *) printf '    %s\n' "$line" >&2 ;;
    esac
  done <"$out/collect"
  if [[ $rc -ne 0 ]] && ! grep -q '^FAIL ' "$out/collect"; then
    fail "$name (exit $rc)"
  elif ! grep -q '^\(PASS\|FAIL\) ' "$out/collect"; then
    fail "$name (ran no checks)"
  fi
}

# ---------------------------------------------------------------------------
# Tools.

apt_updated=false
apt_install() {
  [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null || return 1
  if [[ $apt_updated == false ]]; then
    apt-get update -qq >/dev/null 2>&1 || return 1
    apt_updated=true
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null 2>&1
}

for tool in shellcheck yamllint; do
  command -v "$tool" >/dev/null || apt_install "$tool" || true
done
for tool in kubectl node npm shellcheck yamllint; do
  check "tool available: $tool" command -v "$tool"
done
if ! command -v kubectl >/dev/null || ! command -v node >/dev/null; then
  echo "$passed passed, $failed failed"
  exit 1
fi
real_kubectl=$(command -v kubectl)

# The lock file pins the validator's packages; reinstall when it changed.
if [[ ! -f $here/node_modules/.package-lock.json ||
  $here/package-lock.json -nt $here/node_modules/.package-lock.json ]]; then
  npm_ci() { (cd "$here" && npm ci --no-audit --no-fund); }
  check "npm ci in tests/deploy" npm_ci
fi

# ---------------------------------------------------------------------------
# Render.

render() {
  local name=$1 dest=$2
  shift 2
  if "$@" >"$dest" 2>"$out/log"; then
    pass "render $name"
  else
    fail "render $name"
    details "$out/log"
  fi
}

render "base" "$out/base.yaml" kubectl kustomize "$root/manifests/base"
render "overlay restricted" "$out/restricted.yaml" \
  kubectl kustomize "$root/manifests/overlays/restricted"
render "overlay privileged" "$out/privileged.yaml" \
  kubectl kustomize "$root/manifests/overlays/privileged"

# The reference evictor's documented example, plus an image with a registry
# port (the ':' must not be taken for a tag).
image=registry.example.com:5000/team/pvc-evictor:1.2.3
render "deploy.sh --dry-run restricted, all arguments" "$out/deploy-restricted.yaml" \
  "$deploy" --dry-run --image "$image" \
  e5 test 1000960000 s0:c31,c15 1000960000 16 25.0 15.0
render "deploy.sh --dry-run restricted, --colocate, defaults" "$out/deploy-colocate.yaml" \
  "$deploy" --dry-run --colocate --vllm-selector app=vllm-prefill team-a kv-cache
render "deploy.sh --dry-run privileged" "$out/deploy-privileged.yaml" \
  "$deploy" --dry-run --mode=privileged --openshift \
  --vllm-selector app=vllm-decode --vllm-selector llm-d.ai/role=decode \
  llm-d kv-cache.fast 2000 s0:c1,c2 0 4 90 80

# ---------------------------------------------------------------------------
# Schemas, offline. Each rendered file plus the examples shipped beside the
# overlays.

collect "validate.mjs" node "$here/validate.mjs" \
  "base=$out/base.yaml" \
  "overlay-restricted=$out/restricted.yaml" \
  "overlay-privileged=$out/privileged.yaml" \
  "deploy-restricted=$out/deploy-restricted.yaml" \
  "deploy-colocate=$out/deploy-colocate.yaml" \
  "deploy-privileged=$out/deploy-privileged.yaml" \
  "servicemonitor=$root/manifests/monitoring/servicemonitor.yaml" \
  "storageclass-example=$root/manifests/examples/storageclass-strictatime.yaml"

# ---------------------------------------------------------------------------
# Security and behaviour properties.

collect "assert overlay restricted" node "$here/assert.mjs" \
  overlay-restricted restricted "$out/restricted.yaml"
collect "assert overlay privileged" node "$here/assert.mjs" \
  overlay-privileged privileged "$out/privileged.yaml"
collect "assert deploy restricted" node "$here/assert.mjs" \
  deploy-restricted restricted "$out/deploy-restricted.yaml" \
  "{\"namespace\":\"e5\",\"claimName\":\"test\",\"fsGroup\":1000960000,
    \"seLinuxLevel\":\"s0:c31,c15\",\"runAsUser\":1000960000,
    \"image\":\"$image\",\"openshift\":false,
    \"config\":{\"NUM_CRAWLER_PROCESSES\":\"16\",\"CLEANUP_THRESHOLD\":\"25.0\",
                \"TARGET_THRESHOLD\":\"15.0\"}}"
collect "assert deploy colocate" node "$here/assert.mjs" \
  deploy-colocate restricted "$out/deploy-colocate.yaml" \
  '{"namespace":"team-a","claimName":"kv-cache","colocate":true,
    "vllmSelector":{"app":"vllm-prefill"},
    "config":{"NUM_CRAWLER_PROCESSES":"8","CLEANUP_THRESHOLD":"85",
              "TARGET_THRESHOLD":"70"}}'
collect "assert deploy privileged" node "$here/assert.mjs" \
  deploy-privileged privileged "$out/deploy-privileged.yaml" \
  '{"namespace":"llm-d","claimName":"kv-cache.fast","fsGroup":2000,
    "seLinuxLevel":"s0:c1,c2","runAsUser":0,"openshift":true,
    "vllmSelector":{"app":"vllm-decode","llm-d.ai/role":"decode"},
    "config":{"NUM_CRAWLER_PROCESSES":"4","CLEANUP_THRESHOLD":"90",
              "TARGET_THRESHOLD":"80"}}'

# ---------------------------------------------------------------------------
# Lint.

shell_scripts=()
while IFS= read -r -d '' f; do
  if [[ $f == *.sh ]] || head -n 1 "$f" | grep -qE '^#!.*\b(ba)?sh\b'; then
    shell_scripts+=("$f")
  fi
done < <(find "$root/scripts" "$here" -path '*/node_modules' -prune -o -type f -print0)
for f in "${shell_scripts[@]}"; do
  check "shellcheck ${f#"$root"/}" shellcheck "$f"
done
check "yamllint manifests/" \
  yamllint --strict -c "$here/yamllint.yaml" "$root/manifests"

# ---------------------------------------------------------------------------
# deploy.sh argument validation: each bad value is refused, naming the
# argument.

check_rejects "rejects a bad namespace" namespace Bad_Namespace kv-cache
check_rejects "rejects a bad pvc name" pvc-name ns kv_cache
check_rejects "rejects a non-numeric fsgroup" fsgroup ns kv-cache 12ab
check_rejects "rejects a bad SELinux level" selinux-level ns kv-cache 1000 c31,c15
check_rejects "rejects a non-numeric runasuser" runasuser ns kv-cache 1000 s0:c1,c2 -5
check_rejects "rejects runasuser 0 in restricted mode" runasuser ns kv-cache - - 0
check_rejects "rejects runasuser 1000 in privileged mode" runasuser \
  --mode privileged ns kv-cache - - 1000
check_rejects "rejects 3 crawlers" num-crawlers ns kv-cache - - - 3
check_rejects "rejects target equal to cleanup" target-threshold ns kv-cache - - - 8 80 80
check_rejects "rejects target above cleanup" target-threshold ns kv-cache - - - 8 60 70
check_rejects "rejects cleanup below the default target" target-threshold \
  ns kv-cache - - - 8 65
check_rejects "rejects a non-numeric cleanup threshold" cleanup-threshold \
  ns kv-cache - - - 8 high 70
check_rejects "rejects a non-numeric target threshold" target-threshold \
  ns kv-cache - - - 8 85 7O
check_rejects "rejects a threshold over 100" cleanup-threshold ns kv-cache - - - 8 101 70
check_rejects "rejects an unknown mode" --mode --mode=watch ns kv-cache
check_rejects "rejects an image with a space" --image --image 'a b' ns kv-cache
check_rejects "rejects a selector without a value" --vllm-selector \
  --vllm-selector app ns kv-cache
check_rejects "rejects a missing pvc name" "namespace and pvc-name" ns
check_rejects "rejects a ninth argument" "too many" ns kv-cache 1 s0 2 8 85 70 extra
check_rejects "rejects an unknown option" "unknown option" --force ns kv-cache

help_ok() {
  "$deploy" --help >"$out/help" && grep -q '^Usage: deploy.sh' "$out/help"
}
check "--help exits 0 and prints the usage" help_ok

# ---------------------------------------------------------------------------
# deploy.sh against a fake cluster: what it infers and what it applies.

fake="$out/fake"
mkdir -p "$fake/bin"
cp "$here/fake-kubectl" "$fake/bin/oc"
export REAL_KUBECTL=$real_kubectl FAKE_LOG="$fake/log" FAKE_APPLIED="$fake/applied.yaml"

# fake_shows TEST: runs the test function; on failure shows what deploy.sh
# printed and what the fake was asked.
fake_shows() {
  "$1" || {
    cat "$fake/out" "$FAKE_LOG"
    return 1
  }
}

# run_fake ENV... -- ARGS...: runs deploy.sh with --kubectl pointing at
# the fake, the given FAKE_* variables set; sets fake_rc.
run_fake() {
  local -a env=()
  while [[ $1 != -- ]]; do
    env+=("$1")
    shift
  done
  shift
  : >"$FAKE_LOG"
  rm -f -- "$FAKE_APPLIED"
  fake_rc=0
  env "${env[@]}" "$deploy" --kubectl "$here/fake-kubectl" "$@" \
    >"$fake/out" 2>&1 || fake_rc=$?
}

run_fake FAKE_PVC_MODES='["ReadWriteOnce"]' \
  FAKE_APPLY_OUTPUT=$'configmap/pvc-evictor-config configured\ndeployment.apps/pvc-evictor unchanged' \
  -- team-a kv-cache - - - 4
restricted_rwo_ok() {
  [[ $fake_rc -eq 0 ]] && grep -q 'ReadWriteOnce' "$fake/out" &&
    grep -q '^fake-kubectl rollout restart deployment/pvc-evictor -n team-a$' "$FAKE_LOG"
}
check "apply: RWO claim gets co-location, changed settings restart the pod" \
  fake_shows restricted_rwo_ok
collect "assert applied restricted" node "$here/assert.mjs" \
  applied-restricted-rwo restricted "$FAKE_APPLIED" \
  '{"namespace":"team-a","colocate":true,"config":{"NUM_CRAWLER_PROCESSES":"4"}}'

run_fake FAKE_PVC_MODES='["ReadWriteMany"]' FAKE_OPENSHIFT=1 \
  FAKE_APPLY_OUTPUT=$'configmap/pvc-evictor-config configured\ndeployment.apps/pvc-evictor configured' \
  -- --mode privileged llm-d kv-cache
privileged_openshift_ok() {
  [[ $fake_rc -eq 0 ]] && ! grep -q 'rollout restart' "$FAKE_LOG"
}
check "apply: privileged on OpenShift, no extra restart when the pod changes" \
  fake_shows privileged_openshift_ok
collect "assert applied privileged" node "$here/assert.mjs" \
  applied-privileged-openshift privileged "$FAKE_APPLIED" \
  '{"namespace":"llm-d","openshift":true}'

run_fake FAKE_PVC_MODES='["ReadWriteOncePod"]' -- team-a kv-cache
refused_rwop() {
  [[ $fake_rc -ne 0 ]] && grep -q 'ReadWriteOncePod' "$fake/out" &&
    ! grep -q '^fake-kubectl apply' "$FAKE_LOG"
}
check "apply: refuses a ReadWriteOncePod claim" fake_shows refused_rwop

run_fake FAKE_PVC_MODES='["ReadWriteMany"]' FAKE_NS_ENFORCE=restricted \
  -- --mode privileged team-a kv-cache
refused_pss() {
  [[ $fake_rc -ne 0 ]] && grep -q "enforces the 'restricted' Pod Security level" "$fake/out" &&
    ! grep -q '^fake-kubectl apply' "$FAKE_LOG"
}
check "apply: refuses privileged mode where Pod Security forbids it" \
  fake_shows refused_pss

# Without --kubectl the script prefers oc when it is on PATH.
oc_preferred() {
  : >"$FAKE_LOG"
  PATH="$fake/bin:$PATH" "$deploy" --dry-run team-a kv-cache >/dev/null 2>&1 &&
    grep -q '^oc kustomize' "$FAKE_LOG"
}
check "uses oc when it is on PATH" oc_preferred

# ---------------------------------------------------------------------------
# Dockerfile. Docker cannot run here, so it is checked by inspection.

dockerfile="$root/Dockerfile"

# Prints "STAGE PACKAGE" for each package of each "apt-get install", STAGE
# counting FROM lines from 1.
dockerfile_packages() {
  sed -e ':a' -e '/\\$/N; s/\\\n/ /; ta' "$dockerfile" | awk '
    /^FROM[ \t]/ { stage++ }
    /^RUN[ \t]/ {
      n = split($0, parts, "&&")
      for (i = 1; i <= n; i++) {
        if (parts[i] !~ /apt-get[ \t]+install/) continue
        m = split(parts[i], w, /[ \t]+/)
        for (j = 1; j <= m && w[j] != "install"; j++) {}
        for (j++; j <= m; j++) if (w[j] != "" && w[j] !~ /^-/) print stage, w[j]
      }
    }'
}

dockerfile_structure() {
  local errs=()
  grep -qE '^FROM \$\{DEBIAN_IMAGE\} AS build$' "$dockerfile" || errs+=("no build stage")
  grep -qE '^ARG DEBIAN_IMAGE=debian:bookworm-slim$' "$dockerfile" ||
    errs+=("base is not debian:bookworm-slim")
  [[ $(grep -c '^FROM ' "$dockerfile") -eq 2 ]] || errs+=("not two stages")
  grep -q -- '-DPVC_BUILD_TESTS=OFF' "$dockerfile" || errs+=("tests not off")
  grep -q -- '-DPVC_BUILD_BENCH=OFF' "$dockerfile" || errs+=("bench not off")
  grep -q -- '-DCMAKE_BUILD_TYPE=Release' "$dockerfile" || errs+=("not Release")
  grep -q 'COPY --from=build /usr/local/bin/pvc-evictor /usr/local/bin/pvc-evictor' "$dockerfile" ||
    errs+=("binary not copied from the build stage")
  [[ $(grep '^USER ' "$dockerfile" | tail -n 1) == 'USER 65532:65532' ]] ||
    errs+=("last USER is not 65532")
  grep -qxF 'ENTRYPOINT ["/usr/local/bin/pvc-evictor"]' "$dockerfile" ||
    errs+=("ENTRYPOINT is not the binary")
  [[ $(dockerfile_packages | awk '$1 == 2' | grep -c -- '-dev$') -eq 0 ]] ||
    errs+=("development packages in the run stage")
  for p in .git '**/node_modules' 'build*'; do
    grep -qxF -- "$p" "$root/.dockerignore" || errs+=(".dockerignore lacks $p")
  done
  [[ ${#errs[@]} -eq 0 ]] || {
    printf '%s\n' "${errs[@]}"
    return 1
  }
}
check "Dockerfile: two bookworm-slim stages, non-root, binary entrypoint" dockerfile_structure

apt_packages_exist() {
  local pkgs missing=()
  mapfile -t pkgs < <(dockerfile_packages | awk '{ print $2 }' | sort -u)
  [[ ${#pkgs[@]} -ge 10 ]] || {
    echo "found only ${#pkgs[@]} packages in the Dockerfile: ${pkgs[*]}"
    return 1
  }
  for p in "${pkgs[@]}"; do
    apt-cache show "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  [[ ${#missing[@]} -eq 0 ]] || {
    echo "not in apt: ${missing[*]}"
    return 1
  }
  echo "${#pkgs[@]} packages"
}
if ! grep -q '^VERSION_CODENAME=bookworm$' /etc/os-release 2>/dev/null; then
  skip "Dockerfile apt packages: this machine is not Debian bookworm"
else
  # An empty package list makes apt-cache find nothing; fetch it once.
  apt-cache show cmake >/dev/null 2>&1 || apt_install --version >/dev/null 2>&1 || true
  check "Dockerfile: every apt package exists in Debian bookworm" apt_packages_exist
fi

# With a built binary at hand (PVC_EVICTOR_BINARY, default build/pvc-evictor),
# check that the run stage's packages provide every shared library it links.

# Prints the packages owning a library. dpkg records the path a package
# shipped, which on a merged-/usr system may be /lib or /usr/lib, and the
# library may be a symlink, so several spellings are tried.
owners_of() {
  local real candidates p
  real=$(readlink -f -- "$1")
  candidates=("$1" "$real")
  for p in "$1" "$real"; do
    case $p in
      /usr/*) candidates+=("${p#/usr}") ;;
      *) candidates+=("/usr$p") ;;
    esac
  done
  for p in "${candidates[@]}"; do
    # "pkg1:arch, pkg2:arch: /path" -> one package per line
    dpkg -S "$p" 2>/dev/null | awk '{
      sub(/: \/.*/, ""); n = split($0, a, /, /)
      for (i = 1; i <= n; i++) { sub(/:.*/, "", a[i]); print a[i] }
    }' | grep . && return 0
  done
  return 1
}

runtime_libraries_covered() {
  local bin=$1 lib owners libs run_pkgs closure missing=()
  mapfile -t libs < <(ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// { print $3 }')
  mapfile -t run_pkgs < <(dockerfile_packages | awk '$1 == 2 { print $2 }')
  # The run stage's packages and everything they depend on.
  mapfile -t closure < <(apt-cache depends --recurse --no-recommends \
    --no-suggests --no-conflicts --no-breaks --no-replaces --no-enhances \
    "${run_pkgs[@]}" | grep -v '^ ' | sed 's/:.*//' | sort -u)
  for lib in "${libs[@]}"; do
    if ! owners=$(owners_of "$lib"); then
      missing+=("$lib (owned by no package)")
    elif ! grep -qxF -f <(printf '%s\n' "$owners") <(printf '%s\n' "${closure[@]}"); then
      missing+=("$lib ($(echo "$owners" | paste -sd, -))")
    fi
  done
  [[ ${#missing[@]} -eq 0 ]] || {
    echo "not provided by the run stage: ${missing[*]}"
    return 1
  }
  echo "${#libs[@]} libraries covered"
}
binary=${PVC_EVICTOR_BINARY:-$root/build/pvc-evictor}
if [[ -x $binary ]] && command -v dpkg >/dev/null; then
  check "Dockerfile: run stage provides every library of $(basename -- "$binary")" \
    runtime_libraries_covered "$binary"
else
  skip "Dockerfile runtime libraries: no built binary at $binary"
fi

# With a built binary, run the daemon briefly on an empty directory with
# the restricted overlay's ConfigMap as its environment: a value it rejects
# would stop it at once instead of leaving it running.
daemon_accepts_settings() {
  local bin=$1 rendered=$2 vol="$out/volume" rc=0
  local -a env=()
  mkdir -p "$vol/kv/model-cache/models"
  mapfile -t env < <(node "$here/configmap-env.mjs" "$rendered")
  [[ ${#env[@]} -gt 0 ]] || return 1
  # Only what must differ outside a pod: the volume, a loopback port, no
  # deletion, and no probe report (the init container writes it in a pod).
  env -i PATH="$PATH" "${env[@]}" \
    PVC_MOUNT_PATH="$vol" METRICS_ADDRESS="127.0.0.1:$((20000 + $$ % 20000))" \
    DRY_RUN=true PROBE_REPORT= \
    timeout -k 5 3 "$bin" || rc=$?
  # 124: still running when timeout stopped it, as a daemon should be.
  [[ $rc -eq 124 ]] || {
    echo "the daemon exited with $rc"
    return 1
  }
}
if [[ -x $binary ]]; then
  check "the built daemon runs with the ConfigMap's settings" \
    daemon_accepts_settings "$binary" "$out/restricted.yaml"
  # A cleanup threshold above the default emergency one: deploy.sh must
  # move the emergency threshold, or the pod would never start.
  "$deploy" --dry-run ns pvc - - - - 97 90 >"$out/high-cleanup.yaml" 2>/dev/null
  check "the built daemon runs with deploy.sh's settings for cleanup 97" \
    daemon_accepts_settings "$binary" "$out/high-cleanup.yaml"
  # Not counted: while the daemon is being written, some settings may not
  # exist yet; list them so that the gap stays visible.
  unknown=$(grep -oE '^  [A-Z_]+:' "$root/manifests/base/configmap.yaml" | tr -d ' :' |
    while read -r key; do
      "$binary" --help 2>&1 | grep -qF "[$key]" || printf '%s ' "$key"
    done)
  [[ -z $unknown ]] || echo "NOTE settings the built daemon does not list in --help: $unknown"
else
  skip "daemon settings: no built binary at $binary"
fi

echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
