#!/usr/bin/env bash
# Deploys pvc-evictor for one PVC in one namespace.
#
# It keeps the positional arguments of the reference evictor's deploy.sh, so
# existing command lines keep working, and renders the Kustomize manifests in
# manifests/ instead of editing YAML with sed: the chosen overlay is copied to
# a temporary directory, a kustomization layer holding this invocation's
# values is put on top, and the result is rendered with "kubectl kustomize"
# and applied (or printed, with --dry-run).
set -euo pipefail

readonly prog=${0##*/}
script_dir=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
readonly manifests_dir="$script_dir/../manifests"

usage() {
  cat <<EOF
Usage: $prog [options] <namespace> <pvc-name> [fsgroup] [selinux-level]
       [runasuser] [num-crawlers] [cleanup-threshold] [target-threshold]

Deploys the pvc-evictor daemon next to the PVC that vLLM offloads its KV
cache to. Optional positional arguments can be skipped with "" or "-".

Arguments:
  namespace          namespace of the PVC (DNS-1123 label)
  pvc-name           the PVC to keep below the thresholds (DNS-1123 subdomain)
  fsgroup            pod fsGroup, a non-negative integer
  selinux-level      SELinux MCS level of the pod, e.g. s0:c31,c15
  runasuser          user id to run as (restricted mode only), e.g. the uid
                     vLLM writes as; must be non-zero
  num-crawlers       crawler threads: 1, 2, 4, 8 or 16 (default 8)
  cleanup-threshold  usage % at which deletion starts, 0..100 (default 85)
  target-threshold   usage % at which deletion stops, below cleanup (default 70)

Options:
  --mode MODE            restricted (default): crawl mode, no privileges;
                         privileged: watch mode with fanotify, runs as root
  --image IMAGE          image reference, e.g. registry.example/pvc-evictor:1.0
  --vllm-selector K=V    label of the vLLM pods using the PVC (default
                         app=vllm); repeat for several labels. The evictor is
                         scheduled on their node. Implies --colocate.
  --colocate             restricted mode: also run on the vLLM pods' node
                         (needed for ReadWriteOnce volumes; detected
                         automatically unless --dry-run)
  --openshift            privileged mode: also grant the ServiceAccount the
                         privileged SCC (detected automatically unless
                         --dry-run)
  --kubectl PATH         client to use (default: oc if present, else kubectl)
  --dry-run              print the rendered manifests instead of applying
                         them; the cluster is not contacted
  -h, --help             show this help

Examples:
  $prog llm-d kv-cache-pvc
  $prog --mode privileged --vllm-selector app=vllm-decode llm-d kv-cache-pvc
  $prog e5 test 1000960000 s0:c31,c15 1000960000 16 25.0 15.0
EOF
}

# Usage errors exit with 2, failures while deploying with 1. Each takes its
# message in one or more words, joined with spaces.
die_usage() {
  printf '%s: error: %s\n' "$prog" "$*" >&2
  printf "Run '%s --help' for usage.\n" "$prog" >&2
  exit 2
}
die() {
  printf '%s: error: %s\n' "$prog" "$*" >&2
  exit 1
}
warn() { printf '%s: warning: %s\n' "$prog" "$*" >&2; }
# Progress goes to stderr so that --dry-run leaves clean YAML on stdout.
note() { printf '%s: %s\n' "$prog" "$*" >&2; }

# ---------------------------------------------------------------------------
# Validation helpers. Each returns non-zero instead of exiting so that the
# caller can name the argument in its message.

is_dns1123_label() {
  [[ ${#1} -le 63 && $1 =~ ^[a-z0-9]([-a-z0-9]*[a-z0-9])?$ ]]
}

is_dns1123_subdomain() {
  local part='[a-z0-9]([-a-z0-9]*[a-z0-9])?'
  [[ ${#1} -le 253 && $1 =~ ^$part(\.$part)*$ ]]
}

# Kubernetes accepts user and group ids from 0 to 2^31-1.
is_id() {
  [[ $1 =~ ^[0-9]+$ && ${#1} -le 10 ]] && ((10#$1 <= 2147483647))
}

# An MCS level: a sensitivity (or range) and an optional category set, as in
# s0, s0:c31,c15, s0:c0.c1023 or s0-s0:c0.c1023.
is_selinux_level() {
  [[ $1 =~ ^s[0-9]+(-s[0-9]+)?(:c[0-9]+([.,]c[0-9]+)*)?$ ]]
}

is_percent() {
  [[ $1 =~ ^[0-9]+(\.[0-9]+)?$ ]] && awk -v v="$1" 'BEGIN { exit !(v <= 100) }'
}

# True when $1 < $2, both decimal numbers.
less_than() {
  awk -v a="$1" -v b="$2" 'BEGIN { exit !(a < b) }'
}

# A label key (optional DNS prefix, then a name) and value, as Kubernetes
# defines them. Checking them here also keeps them safe to write into YAML.
is_label_pair() {
  local key=${1%%=*} value=${1#*=}
  local name='[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?'
  local prefix='[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*'
  [[ $1 == *=* ]] || return 1
  [[ $key =~ ^($prefix/)?$name$ ]] || return 1
  [[ ${key##*/} =~ ^.{1,63}$ ]] || return 1
  [[ -z $value || ($value =~ ^$name$ && ${#value} -le 63) ]]
}

# Registry host, path, then a tag and/or a digest. Quotes, spaces and other
# characters that could break the generated YAML are refused.
is_image() {
  [[ $1 =~ ^[A-Za-z0-9][A-Za-z0-9._/:-]*(@sha256:[a-f0-9]{64})?$ ]]
}

# Reads a default from the base ConfigMap, so that the default thresholds are
# written down in one place only.
base_default() {
  local value
  value=$(sed -n "s/^  $1: \"\\(.*\\)\"\$/\\1/p" "$manifests_dir/base/configmap.yaml")
  [[ -n $value ]] || die "cannot read the default of $1 from manifests/base/configmap.yaml"
  printf '%s' "$value"
}

# ---------------------------------------------------------------------------
# Arguments.

mode=restricted
image=
kubectl=
dry_run=false
colocate=false
openshift=false
selectors=()
positional=()

need_value() {
  [[ $# -ge 2 && -n ${2:-} ]] || die_usage "option $1 needs a value"
}

while [[ $# -gt 0 ]]; do
  case $1 in
    -h | --help)
      usage
      exit 0
      ;;
    --mode) need_value "$@"; mode=$2; shift 2 ;;
    --mode=*) mode=${1#*=}; shift ;;
    --image) need_value "$@"; image=$2; shift 2 ;;
    --image=*) image=${1#*=}; shift ;;
    --kubectl) need_value "$@"; kubectl=$2; shift 2 ;;
    --kubectl=*) kubectl=${1#*=}; shift ;;
    --vllm-selector) need_value "$@"; selectors+=("$2"); shift 2 ;;
    --vllm-selector=*) selectors+=("${1#*=}"); shift ;;
    --colocate) colocate=true; shift ;;
    --openshift) openshift=true; shift ;;
    --dry-run) dry_run=true; shift ;;
    --)
      shift
      positional+=("$@")
      break
      ;;
    # Only "--word" and "-letter" are options, so that a value such as -5
    # reaches the validation that names its argument.
    --?* | -[A-Za-z]*) die_usage "unknown option: $1" ;;
    *) positional+=("$1"); shift ;;
  esac
done

[[ ${#positional[@]} -ge 2 ]] || die_usage "namespace and pvc-name are required"
[[ ${#positional[@]} -le 8 ]] || die_usage "too many arguments (at most 8 positional arguments)"

# "" and "-" both mean "not given", so later arguments can be set alone.
arg() {
  local v=${positional[$1]:-}
  [[ $v == - ]] && v=
  printf '%s' "$v"
}
namespace=$(arg 0)
pvc=$(arg 1)
fsgroup=$(arg 2)
selinux_level=$(arg 3)
runasuser=$(arg 4)
crawlers=$(arg 5)
cleanup=$(arg 6)
target=$(arg 7)
emergency=""

case $mode in
  restricted | privileged) ;;
  *) die_usage "--mode: '$mode' is not allowed; use restricted or privileged" ;;
esac

is_dns1123_label "$namespace" ||
  die_usage "namespace: '$namespace' is not a valid name (lower-case letters, digits" \
    "and '-', starting and ending with a letter or digit, at most 63 characters)"
is_dns1123_subdomain "$pvc" ||
  die_usage "pvc-name: '$pvc' is not a valid name (lower-case letters, digits, '-' and" \
    "'.', starting and ending with a letter or digit, at most 253 characters)"
if [[ -n $fsgroup ]] && ! is_id "$fsgroup"; then
  die_usage "fsgroup: '$fsgroup' must be a non-negative integer up to 2147483647"
fi
if [[ -n $selinux_level ]] && ! is_selinux_level "$selinux_level"; then
  die_usage "selinux-level: '$selinux_level' is not an SELinux MCS level such as s0:c31,c15"
fi
if [[ -n $runasuser ]]; then
  is_id "$runasuser" ||
    die_usage "runasuser: '$runasuser' must be a non-negative integer up to 2147483647"
  if [[ $mode == privileged ]]; then
    # Watch mode needs user 0: added capabilities reach only a root process.
    ((10#$runasuser == 0)) ||
      die_usage "runasuser: privileged mode always runs as user 0; omit runasuser" \
        "(or pass \"\" or 0) instead of '$runasuser'"
    runasuser=
  elif ((10#$runasuser == 0)); then
    die_usage "runasuser: 0 (root) is not allowed in restricted mode, which runs as" \
      "non-root; use --mode privileged for root"
  fi
fi
case $crawlers in
  '' | 1 | 2 | 4 | 8 | 16) ;;
  *) die_usage "num-crawlers: '$crawlers' is not allowed; use 1, 2, 4, 8 or 16" ;;
esac
if [[ -n $cleanup ]] && ! is_percent "$cleanup"; then
  die_usage "cleanup-threshold: '$cleanup' must be a number from 0 to 100"
fi
if [[ -n $target ]] && ! is_percent "$target"; then
  die_usage "target-threshold: '$target' must be a number from 0 to 100"
fi
if [[ -n $cleanup || -n $target ]]; then
  effective_cleanup=${cleanup:-$(base_default CLEANUP_THRESHOLD)}
  effective_target=${target:-$(base_default TARGET_THRESHOLD)}
  [[ -n $cleanup ]] || effective_cleanup+=" (the default)"
  [[ -n $target ]] || effective_target+=" (the default)"
  less_than "${effective_target%% *}" "${effective_cleanup%% *}" ||
    die_usage "target-threshold: $effective_target must be lower than" \
      "cleanup-threshold $effective_cleanup"
  # The daemon requires EMERGENCY_THRESHOLD >= CLEANUP_THRESHOLD. A cleanup
  # at or above the default emergency moves the emergency halfway to 100,
  # so hot files stay protected until the volume is nearly full.
  default_emergency=$(base_default EMERGENCY_THRESHOLD)
  if ! less_than "${effective_cleanup%% *}" "$default_emergency"; then
    emergency=$(awk -v c="${effective_cleanup%% *}" \
      'BEGIN { printf "%g", (c + 100) / 2 }')
    warn "cleanup-threshold ${effective_cleanup%% *} is not below the default" \
      "EMERGENCY_THRESHOLD $default_emergency; setting EMERGENCY_THRESHOLD to" \
      "$emergency: above it recently used files may be deleted too"
  fi
fi
if [[ -n $image ]] && ! is_image "$image"; then
  die_usage "--image: '$image' is not an image reference such as registry.example/pvc-evictor:1.0"
fi
for pair in "${selectors[@]}"; do
  is_label_pair "$pair" ||
    die_usage "--vllm-selector: '$pair' is not KEY=VALUE with a valid label key and value"
done
if [[ ${#selectors[@]} -gt 0 ]]; then
  colocate=true
fi
if [[ $mode == privileged ]]; then
  # The privileged overlay always carries the pod affinity.
  colocate=false
elif [[ $openshift == true ]]; then
  warn "--openshift only matters in privileged mode; ignored"
  openshift=false
fi

if [[ -n $kubectl ]]; then
  command -v -- "$kubectl" >/dev/null ||
    die_usage "--kubectl: '$kubectl' is not an executable"
elif command -v oc >/dev/null; then
  kubectl=oc
elif command -v kubectl >/dev/null; then
  kubectl=kubectl
else
  die "neither oc nor kubectl was found in PATH; install one or pass --kubectl PATH"
fi
[[ -d $manifests_dir/overlays/$mode ]] ||
  die "manifests not found at $manifests_dir; run the script from its place in the repository"

# ---------------------------------------------------------------------------
# What the cluster says, when we may ask it. A dry run stays offline so that
# it can be used without a cluster (and in tests).

if [[ $dry_run == false ]]; then
  if access_modes=$("$kubectl" get pvc "$pvc" -n "$namespace" \
    -o 'jsonpath={.spec.accessModes}' 2>/dev/null); then
    if [[ $access_modes == *ReadWriteOncePod* ]]; then
      die "PVC $pvc is ReadWriteOncePod: only vLLM's pod can mount it, so the" \
        "evictor cannot share it"
    fi
    if [[ $mode == restricted && $access_modes == *ReadWriteOnce* &&
      $access_modes != *ReadWriteMany* && $colocate == false ]]; then
      note "PVC $pvc is ReadWriteOnce: scheduling the evictor on the vLLM pods' node" \
        "(as with --colocate)"
      colocate=true
    fi
  else
    warn "cannot read PVC $pvc in namespace $namespace; the evictor will stay Pending" \
      "until it exists"
  fi

  if [[ $mode == privileged ]]; then
    if [[ $openshift == false ]] &&
      "$kubectl" api-resources --api-group=security.openshift.io -o name 2>/dev/null |
      grep -q '^securitycontextconstraints'; then
      note "OpenShift detected: granting the pvc-evictor ServiceAccount the privileged SCC"
      openshift=true
    fi
    enforce=$("$kubectl" get namespace "$namespace" \
      -o 'jsonpath={.metadata.labels.pod-security\.kubernetes\.io/enforce}' 2>/dev/null || true)
    case $enforce in
      baseline | restricted)
        die "namespace $namespace enforces the '$enforce' Pod Security level, which" \
          "refuses privileged pods; use --mode restricted or label the namespace" \
          "pod-security.kubernetes.io/enforce=privileged"
        ;;
    esac
  fi
else
  note "dry run: the cluster is not consulted, so --colocate and --openshift are not inferred"
fi

# ---------------------------------------------------------------------------
# Render.

work=$(mktemp -d "${TMPDIR:-/tmp}/pvc-evictor-deploy.XXXXXX")
trap 'rm -rf -- "$work"' EXIT
cp -R -- "$manifests_dir" "$work/manifests"
layer="$work/layer"
mkdir -- "$layer"

# The PVC: the base mounts a placeholder claim "kv-cache".
cat >"$layer/claim.yaml" <<EOF
apiVersion: apps/v1
kind: Deployment
metadata:
  name: pvc-evictor
spec:
  template:
    spec:
      volumes:
        - name: kv-cache
          persistentVolumeClaim:
            claimName: "$pvc"
EOF
patches=(claim.yaml)

# Pod-level security settings that vary per namespace (on OpenShift they must
# match the namespace's ranges, as vLLM's pods do).
if [[ -n $fsgroup || -n $selinux_level || -n $runasuser ]]; then
  {
    cat <<EOF
apiVersion: apps/v1
kind: Deployment
metadata:
  name: pvc-evictor
spec:
  template:
    spec:
      securityContext:
EOF
    [[ -z $fsgroup ]] || printf '        fsGroup: %d\n' "$((10#$fsgroup))"
    [[ -z $runasuser ]] || printf '        runAsUser: %d\n' "$((10#$runasuser))"
    [[ -z $selinux_level ]] ||
      printf '        seLinuxOptions:\n          level: "%s"\n' "$selinux_level"
  } >"$layer/security-context.yaml"
  patches+=(security-context.yaml)
fi

# The vLLM pods' labels replace the affinity component's default selector.
if [[ ${#selectors[@]} -gt 0 ]]; then
  {
    cat <<EOF
- op: replace
  path: /spec/template/spec/affinity/podAffinity/requiredDuringSchedulingIgnoredDuringExecution/0/labelSelector
  value:
    matchLabels:
EOF
    for pair in "${selectors[@]}"; do
      printf '      "%s": "%s"\n' "${pair%%=*}" "${pair#*=}"
    done
  } >"$layer/vllm-selector.yaml"
fi

literals=()
[[ -z $crawlers ]] || literals+=("NUM_CRAWLER_PROCESSES=$crawlers")
[[ -z $cleanup ]] || literals+=("CLEANUP_THRESHOLD=$cleanup")
[[ -z $target ]] || literals+=("TARGET_THRESHOLD=$target")
[[ -z $emergency ]] || literals+=("EMERGENCY_THRESHOLD=$emergency")

{
  cat <<EOF
# Generated by scripts/deploy.sh for PVC $pvc in namespace $namespace.
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: "$namespace"
resources:
  - ../manifests/overlays/$mode
EOF
  if [[ $colocate == true || $openshift == true ]]; then
    echo "components:"
    [[ $colocate == false ]] || echo "  - ../manifests/components/vllm-pod-affinity"
    [[ $openshift == false ]] || echo "  - ../manifests/components/openshift-privileged-scc"
  fi
  echo "patches:"
  for p in "${patches[@]}"; do
    echo "  - path: $p"
  done
  if [[ ${#selectors[@]} -gt 0 ]]; then
    cat <<EOF
  - path: vllm-selector.yaml
    target:
      kind: Deployment
      name: pvc-evictor
EOF
  fi
  if [[ -n $image ]]; then
    # Split registry/path[:tag][@digest]; a ':' before the last '/' belongs
    # to the registry's port, not to a tag.
    ref=${image%%@*} digest=
    [[ $image != *@* ]] || digest=${image#*@}
    name=$ref tag=
    if [[ ${ref##*/} == *:* ]]; then
      name=${ref%:*}
      tag=${ref##*:}
    fi
    echo "images:"
    echo "  - name: pvc-evictor"
    echo "    newName: \"$name\""
    [[ -z $tag ]] || echo "    newTag: \"$tag\""
    [[ -z $digest ]] || echo "    digest: \"$digest\""
  fi
  if [[ ${#literals[@]} -gt 0 ]]; then
    cat <<EOF
configMapGenerator:
  - name: pvc-evictor-config
    behavior: merge
    literals:
EOF
    for l in "${literals[@]}"; do
      echo "      - \"$l\""
    done
    # Keep the name pvc-evictor-config that the Deployment refers to.
    cat <<EOF
generatorOptions:
  disableNameSuffixHash: true
EOF
  fi
} >"$layer/kustomization.yaml"

rendered="$work/rendered.yaml"
if ! "$kubectl" kustomize "$layer" >"$rendered" 2>"$work/kustomize.err"; then
  cat "$work/kustomize.err" >&2
  die "rendering the manifests failed"
fi

if [[ $dry_run == true ]]; then
  cat "$rendered"
  exit 0
fi

# ---------------------------------------------------------------------------
# Apply.

note "applying $mode mode for PVC $pvc in namespace $namespace with $kubectl"
if ! applied=$("$kubectl" apply -f "$rendered" 2>&1); then
  printf '%s\n' "$applied" >&2
  die "applying the manifests failed"
fi
printf '%s\n' "$applied"

# The ConfigMap is read only at start. If it changed but the Deployment did
# not, nothing would restart the pod and the new settings would wait for the
# next rollout.
if grep -q '^configmap/pvc-evictor-config configured' <<<"$applied" &&
  grep -q '^deployment.apps/pvc-evictor unchanged' <<<"$applied"; then
  note "settings changed: restarting the evictor"
  "$kubectl" rollout restart deployment/pvc-evictor -n "$namespace"
fi

cat >&2 <<EOF
$prog: done. To follow the evictor:
  $kubectl -n $namespace rollout status deployment/pvc-evictor
  $kubectl -n $namespace logs deployment/pvc-evictor -c probe     # the volume report
  $kubectl -n $namespace logs -f deployment/pvc-evictor
EOF
