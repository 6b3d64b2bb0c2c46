// Prints the data of the ConfigMap pvc-evictor-config found in a rendered
// multi-document YAML file as KEY=VALUE lines, one per setting, for running
// the daemon with the environment a pod would give it.
//
//   node configmap-env.mjs FILE
import { readFileSync } from "node:fs";
import { parseAllDocuments } from "yaml";

const objects = parseAllDocuments(readFileSync(process.argv[2], "utf8")).map((d) => d.toJS());
const cm = objects.find(
  (o) => o?.kind === "ConfigMap" && o.metadata?.name === "pvc-evictor-config",
);
if (!cm) {
  console.error("no ConfigMap pvc-evictor-config");
  process.exit(1);
}
for (const [key, value] of Object.entries(cm.data ?? {})) console.log(`${key}=${value}`);
