// Asserts the properties the pvc-evictor manifests promise, on one rendered
// multi-document YAML file.
//
//   node assert.mjs LABEL MODE FILE [EXPECT_JSON]
//
// MODE is "restricted" or "privileged". EXPECT_JSON, for the output of
// scripts/deploy.sh, names the values its arguments should have put in:
//   {"namespace": "...", "claimName": "...", "fsGroup": 1, "seLinuxLevel":
//    "...", "runAsUser": 1, "image": "...", "config": {"KEY": "value"},
//    "vllmSelector": {"k": "v"}, "colocate": true, "openshift": true}
//
// Prints "PASS LABEL: what" or "FAIL LABEL: what: why" per property and
// exits non-zero if any failed.

import { readFileSync } from "node:fs";
import { parseAllDocuments } from "yaml";

const [label, mode, file, expectJson] = process.argv.slice(2);
if (!label || !["restricted", "privileged"].includes(mode) || !file) {
  console.error("usage: node assert.mjs LABEL restricted|privileged FILE [EXPECT_JSON]");
  process.exit(2);
}
const expect = expectJson ? JSON.parse(expectJson) : {};

const objects = parseAllDocuments(readFileSync(file, "utf8"))
  .map((d) => d.toJS())
  .filter((o) => o && typeof o === "object");

let failed = 0;
// Runs one named check; fn returns nothing when it holds, or the reason it
// does not. An exception (say, a missing object) counts as a failure.
function check(what, fn) {
  let why;
  try {
    why = fn();
  } catch (e) {
    why = `threw ${e.message}`;
  }
  if (why) {
    failed++;
    console.log(`FAIL ${label}: ${what}: ${why}`);
  } else {
    console.log(`PASS ${label}: ${what}`);
  }
}

const find = (kind, name) => objects.find((o) => o.kind === kind && o.metadata?.name === name);
const deployment = find("Deployment", "pvc-evictor");
const configMap = find("ConfigMap", "pvc-evictor-config");
const service = find("Service", "pvc-evictor");
const pod = deployment?.spec?.template?.spec ?? {};
const podSc = pod.securityContext ?? {};
const containers = pod.containers ?? [];
const initContainers = pod.initContainers ?? [];
const allContainers = [...initContainers, ...containers];
const evictor = containers.find((c) => c.name === "evictor");
const probe = initContainers.find((c) => c.name === "probe");
const config = configMap?.data ?? {};

// The container's value wins over the pod's, as in Kubernetes.
const effective = (c, key) => c.securityContext?.[key] ?? podSc[key];
const mountOf = (c, path) => (c.volumeMounts ?? []).find((m) => m.mountPath === path);
const volume = (name) => (pod.volumes ?? []).find((v) => v.name === name);
const bad = (list) => (list.length ? list.join(", ") : undefined);
const eq = (a, b) => JSON.stringify(a) === JSON.stringify(b);

// Every setting of the daemon. FILE_QUEUE_MAXSIZE and FILE_QUEUE_MIN_SIZE
// are accepted by the daemon but unused, and deliberately left out.
const settings = [
  "PVC_MOUNT_PATH",
  "CACHE_DIRECTORY",
  "CLEANUP_THRESHOLD",
  "TARGET_THRESHOLD",
  "INODE_CLEANUP_THRESHOLD",
  "INODE_TARGET_THRESHOLD",
  "EMERGENCY_THRESHOLD",
  "FILE_ACCESS_TIME_THRESHOLD_MINUTES",
  "NUM_CRAWLER_PROCESSES",
  "LOGGER_INTERVAL_SECONDS",
  "DELETION_BATCH_SIZE",
  "HEX_BUCKET_LEN",
  "ENABLE_DIR_CLEANUP",
  "DIR_CLEANUP_TTL_SECONDS",
  "TEMP_FILE_MAX_AGE_MINUTES",
  "RESCAN_INTERVAL_SECONDS",
  "MAX_CACHE_BYTES",
  "DRY_RUN",
  "LOG_LEVEL",
  "LOG_FILE_PATH",
  "EVICTOR_MODE",
  "METRICS_ADDRESS",
  "STORAGE_EVENTS_ENDPOINT",
  "PROBE_REPORT",
];

// ---------------------------------------------------------------------------
// Both modes.

check("one Deployment pvc-evictor with one replica", () => {
  const n = objects.filter((o) => o.kind === "Deployment").length;
  if (n !== 1) return `${n} Deployments`;
  if (deployment.spec.replicas !== 1) return `replicas ${deployment.spec.replicas}`;
});
check("strategy Recreate", () =>
  deployment.spec.strategy?.type === "Recreate"
    ? undefined
    : `strategy ${JSON.stringify(deployment.spec.strategy)}`,
);
check("selector matches the pod template's labels", () => {
  const sel = deployment.spec.selector.matchLabels;
  const labels = deployment.spec.template.metadata.labels;
  return bad(
    Object.entries(sel)
      .filter(([k, v]) => labels[k] !== v)
      .map(([k]) => k),
  );
});
check("container port metrics is 9100", () => {
  const p = (evictor.ports ?? []).find((x) => x.name === "metrics");
  return p?.containerPort === 9100 ? undefined : `ports ${JSON.stringify(evictor.ports)}`;
});
check("liveness is httpGet /healthz on port metrics", () => {
  const g = evictor.livenessProbe?.httpGet;
  return g?.path === "/healthz" && g?.port === "metrics"
    ? undefined
    : JSON.stringify(evictor.livenessProbe);
});
check("readiness is httpGet /readyz on port metrics", () => {
  const g = evictor.readinessProbe?.httpGet;
  return g?.path === "/readyz" && g?.port === "metrics"
    ? undefined
    : JSON.stringify(evictor.readinessProbe);
});
check("Service pvc-evictor exposes 9100 as metrics to the pod", () => {
  const p = (service.spec.ports ?? []).find((x) => x.name === "metrics");
  if (!p || p.port !== 9100 || p.targetPort !== "metrics")
    return JSON.stringify(service.spec.ports);
  const labels = deployment.spec.template.metadata.labels;
  return bad(
    Object.entries(service.spec.selector)
      .filter(([k, v]) => labels[k] !== v)
      .map(([k]) => k),
  );
});
check("ConfigMap pvc-evictor-config holds every setting", () =>
  bad(settings.filter((k) => !(k in config))),
);
check("the daemon takes its settings from the ConfigMap", () =>
  (evictor.envFrom ?? []).some((e) => e.configMapRef?.name === "pvc-evictor-config")
    ? undefined
    : "no envFrom configMapRef pvc-evictor-config",
);
check("the PVC is mounted at /kv-cache in both containers", () => {
  const errs = [];
  for (const c of [probe, evictor]) {
    const m = mountOf(c, "/kv-cache");
    if (!m || !volume(m.name)?.persistentVolumeClaim) errs.push(c.name);
    else if (m.readOnly) errs.push(`${c.name} (read-only)`);
  }
  return bad(errs);
});
check("every container has requests and limits", () =>
  bad(
    allContainers.filter((c) => !c.resources?.requests || !c.resources?.limits).map((c) => c.name),
  ),
);
check("the probe init container shares /probe with the daemon", () => {
  if (!probe) return "no init container named probe";
  const a = mountOf(probe, "/probe");
  const b = mountOf(evictor, "/probe");
  if (!a || !b || a.name !== b.name) return "not the same volume at /probe";
  if (!volume(a.name)?.emptyDir) return "/probe is not an emptyDir";
  if (probe.args?.[0] !== "probe") return `probe args ${JSON.stringify(probe.args)}`;
  if (!(probe.args ?? []).some((x) => x === "--output=/probe/report.json"))
    return "no --output into /probe";
  if (config.PROBE_REPORT !== "/probe/report.json") return `PROBE_REPORT ${config.PROBE_REPORT}`;
});
check("no host namespaces, hostPath or host ports", () => {
  const errs = ["hostPID", "hostNetwork", "hostIPC"].filter((k) => pod[k]);
  for (const v of pod.volumes ?? []) if (v.hostPath) errs.push(`hostPath ${v.name}`);
  for (const c of allContainers) {
    for (const p of c.ports ?? []) if (p.hostPort) errs.push(`hostPort in ${c.name}`);
  }
  return bad(errs);
});
check("every object carries app.kubernetes.io/name", () =>
  bad(objects.filter((o) => !o.metadata?.labels?.["app.kubernetes.io/name"]).map((o) => o.kind)),
);

// ---------------------------------------------------------------------------
// Restricted: the Pod Security Standard "restricted" and OpenShift
// restricted-v2.

if (mode === "restricted") {
  check("EVICTOR_MODE is crawl", () =>
    config.EVICTOR_MODE === "crawl" ? undefined : config.EVICTOR_MODE,
  );
  check("runAsNonRoot is true for every container", () =>
    bad(allContainers.filter((c) => effective(c, "runAsNonRoot") !== true).map((c) => c.name)),
  );
  check("no container runs as user 0", () =>
    bad(allContainers.filter((c) => effective(c, "runAsUser") === 0).map((c) => c.name)),
  );
  check("allowPrivilegeEscalation is false for every container", () =>
    bad(
      allContainers
        .filter((c) => c.securityContext?.allowPrivilegeEscalation !== false)
        .map((c) => c.name),
    ),
  );
  check("capabilities: drop ALL, add none", () =>
    bad(
      allContainers
        .filter((c) => {
          const caps = c.securityContext?.capabilities ?? {};
          return !(caps.drop ?? []).includes("ALL") || (caps.add ?? []).length > 0;
        })
        .map((c) => c.name),
    ),
  );
  check("seccomp profile RuntimeDefault", () =>
    bad(
      allContainers
        .filter((c) => effective(c, "seccompProfile")?.type !== "RuntimeDefault")
        .map((c) => c.name),
    ),
  );
  check("no container is privileged", () =>
    bad(allContainers.filter((c) => c.securityContext?.privileged === true).map((c) => c.name)),
  );
  check("only volume types the restricted standard allows", () => {
    const allowed = [
      "configMap",
      "csi",
      "downwardAPI",
      "emptyDir",
      "ephemeral",
      "persistentVolumeClaim",
      "projected",
      "secret",
    ];
    return bad(
      (pod.volumes ?? []).flatMap((v) =>
        Object.keys(v)
          .filter((k) => k !== "name" && !allowed.includes(k))
          .map((k) => `${v.name}: ${k}`),
      ),
    );
  });
  check("the probe asks for nothing privileged", () =>
    bad((probe?.args ?? []).filter((a) => /^--(raise-queue|try-strictatime)/.test(a))),
  );
}

// ---------------------------------------------------------------------------
// Privileged: watch mode.

if (mode === "privileged") {
  check("EVICTOR_MODE is watch", () =>
    config.EVICTOR_MODE === "watch" ? undefined : config.EVICTOR_MODE,
  );
  check("the daemon and the probe are privileged", () =>
    bad(
      [evictor, probe].filter((c) => c?.securityContext?.privileged !== true).map((c) => c?.name),
    ),
  );
  check("the daemon and the probe run as user 0", () =>
    bad([evictor, probe].filter((c) => effective(c, "runAsUser") !== 0).map((c) => c?.name)),
  );
  check("no hostPID", () => (pod.hostPID ? "hostPID is set" : undefined));
}

// Pod affinity: always in privileged mode, in restricted mode when asked.
if (mode === "privileged" || expect.colocate) {
  check("required pod affinity to the vLLM pods on the same node", () => {
    const terms = pod.affinity?.podAffinity?.requiredDuringSchedulingIgnoredDuringExecution ?? [];
    if (terms.length !== 1) return `${terms.length} required terms`;
    const [t] = terms;
    if (t.topologyKey !== "kubernetes.io/hostname") return `topologyKey ${t.topologyKey}`;
    const want = expect.vllmSelector ?? { app: "vllm" };
    return eq(t.labelSelector, { matchLabels: want }) ? undefined : JSON.stringify(t.labelSelector);
  });
} else {
  check("no pod affinity unless asked for", () =>
    pod.affinity ? JSON.stringify(pod.affinity) : undefined,
  );
}

// ---------------------------------------------------------------------------
// What scripts/deploy.sh was told to set.

if (expect.namespace) {
  check(`every object is in namespace ${expect.namespace}`, () =>
    bad(objects.filter((o) => o.metadata?.namespace !== expect.namespace).map((o) => o.kind)),
  );
}
if (expect.claimName) {
  check(`the volume is PVC ${expect.claimName}`, () => {
    const m = mountOf(evictor, "/kv-cache");
    const got = volume(m.name).persistentVolumeClaim.claimName;
    return got === expect.claimName ? undefined : got;
  });
}
for (const [key, want] of [
  ["fsGroup", expect.fsGroup],
  ["runAsUser", expect.runAsUser],
]) {
  if (want !== undefined) {
    check(`pod ${key} is ${want}`, () => (podSc[key] === want ? undefined : `${podSc[key]}`));
  }
}
if (expect.seLinuxLevel) {
  check(`SELinux level is ${expect.seLinuxLevel}`, () =>
    podSc.seLinuxOptions?.level === expect.seLinuxLevel
      ? undefined
      : JSON.stringify(podSc.seLinuxOptions),
  );
}
if (expect.image) {
  check(`every container runs ${expect.image}`, () =>
    bad(allContainers.filter((c) => c.image !== expect.image).map((c) => `${c.name}: ${c.image}`)),
  );
}
for (const [key, want] of Object.entries(expect.config ?? {})) {
  check(`${key} is ${want}`, () => (config[key] === want ? undefined : `${config[key]}`));
}
if (expect.openshift !== undefined) {
  check(expect.openshift ? "the ServiceAccount may use the privileged SCC" : "no SCC grant", () => {
    const role = find("Role", "pvc-evictor-privileged-scc");
    const binding = find("RoleBinding", "pvc-evictor-privileged-scc");
    if (!expect.openshift) return role || binding ? "Role or RoleBinding present" : undefined;
    if (!role || !binding) return "Role or RoleBinding missing";
    const rule = role.rules?.[0] ?? {};
    if (!eq(rule.resourceNames, ["privileged"]) || !eq(rule.verbs, ["use"]))
      return JSON.stringify(rule);
    const s = binding.subjects?.[0] ?? {};
    if (s.kind !== "ServiceAccount" || s.name !== pod.serviceAccountName) return JSON.stringify(s);
    if (expect.namespace && s.namespace !== expect.namespace)
      return `subject namespace ${s.namespace}`;
  });
}

process.exitCode = failed === 0 ? 0 : 1;
