// Validates Kubernetes objects offline, in two passes.
//
//   node validate.mjs LABEL=FILE [LABEL=FILE ...]
//
// 1. schema: every document of every multi-document YAML file is built as
//    the kubernetes-models class for its apiVersion and kind, and that
//    class's validate() checks it against the Kubernetes OpenAPI schema
//    (types, enums, required fields). An apiVersion or kind the models do not
//    know is an error, not something to skip: it is either a typo or an
//    object this validator cannot vouch for.
// 2. fields: the schemas accept properties they do not know, so a
//    misspelled field ("runAsNonroot") would pass. Each object is therefore
//    also written out as a TypeScript literal typed with the models'
//    interface, and the TypeScript compiler's excess-property check rejects
//    any field the Kubernetes API does not have.
//
// Prints one line per file and pass ("PASS schema LABEL ..." or
// "FAIL schema LABEL: reason"), and exits non-zero if any failed.

import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseAllDocuments } from "yaml";
import ts from "typescript";

const here = path.dirname(fileURLToPath(import.meta.url));

// Where the model classes of each API group live. Built-in groups come from
// kubernetes-models; custom resources need their own package.
const modelPackages = [
  { prefix: "monitoring.coreos.com/", pkg: "@kubernetes-models/prometheus-operator" },
  { prefix: "", pkg: "kubernetes-models" },
];

function packageFor(apiVersion) {
  return modelPackages.find((p) => apiVersion.startsWith(p.prefix)).pkg;
}

async function modelClass(apiVersion, kind) {
  const specifier = `${packageFor(apiVersion)}/${apiVersion}`;
  let mod;
  try {
    mod = await import(specifier);
  } catch {
    throw new Error(`unknown apiVersion ${apiVersion} (no module ${specifier})`);
  }
  const Model = mod[kind];
  if (typeof Model !== "function" || Model.kind !== kind || Model.apiVersion !== apiVersion) {
    throw new Error(`unknown kind ${kind} in ${apiVersion}`);
  }
  return { Model, specifier };
}

function describe(obj) {
  return `${obj?.kind ?? "?"}/${obj?.metadata?.name ?? "?"}`;
}

// Returns the file's objects, or throws on a YAML error or an empty file.
function loadObjects(file) {
  const docs = parseAllDocuments(readFileSync(file, "utf8"));
  const objects = [];
  for (const doc of docs) {
    if (doc.errors.length > 0) {
      throw new Error(`YAML error: ${doc.errors[0].message}`);
    }
    const obj = doc.toJS();
    if (obj === null || obj === undefined) continue; // an empty document
    if (typeof obj !== "object" || Array.isArray(obj)) {
      throw new Error("a document is not a mapping");
    }
    objects.push(obj);
  }
  if (objects.length === 0) throw new Error("no objects in file");
  return objects;
}

// Pass 1. Returns the error messages (empty when all is well) and, for
// pass 2, the type each object is to be checked against.
async function checkSchemas(objects) {
  const errors = [];
  const typed = [];
  for (const obj of objects) {
    const { apiVersion, kind } = obj;
    if (typeof apiVersion !== "string" || typeof kind !== "string") {
      errors.push(`${describe(obj)}: apiVersion and kind are required`);
      continue;
    }
    if (!obj.metadata?.name) errors.push(`${describe(obj)}: metadata.name is required`);
    try {
      const { Model, specifier } = await modelClass(apiVersion, kind);
      new Model(obj).validate();
      typed.push({ obj, specifier, iface: `I${kind}` });
    } catch (e) {
      errors.push(`${describe(obj)}: ${e.message}`);
    }
  }
  return { errors, typed };
}

// Pass 2 for all files at once (one compiler run). Returns a map from label
// to error messages.
function checkFields(entries) {
  // Inside node_modules (ignored by git) so that the compiler resolves the
  // model packages from here.
  const cache = path.join(here, "node_modules", ".cache");
  mkdirSync(cache, { recursive: true });
  const dir = mkdtempSync(path.join(cache, "fields-"));
  try {
    const imports = new Map(); // specifier -> set of interface names
    const lines = [];
    const lineOwner = []; // 0-based line of each declaration -> [label, obj]
    for (const { label, typed } of entries) {
      for (const { obj, specifier, iface } of typed) {
        if (!imports.has(specifier)) imports.set(specifier, new Set());
        imports.get(specifier).add(iface);
        lineOwner.push([label, obj]);
      }
    }
    const header = [...imports].map(
      ([spec, names]) => `import type { ${[...names].join(", ")} } from "${spec}";`,
    );
    let i = 0;
    for (const { typed } of entries) {
      for (const { obj, iface } of typed) {
        lines.push(`export const o${i++}: ${iface} = ${JSON.stringify(obj)};`);
      }
    }
    const file = path.join(dir, "objects.ts");
    writeFileSync(file, [...header, ...lines].join("\n") + "\n");

    const program = ts.createProgram([file], {
      noEmit: true,
      strict: true,
      skipLibCheck: true,
      module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext,
      target: ts.ScriptTarget.ES2022,
    });
    const result = new Map(entries.map((e) => [e.label, []]));
    for (const d of ts.getPreEmitDiagnostics(program)) {
      const text = ts.flattenDiagnosticMessageText(d.messageText, " ");
      if (!d.file || d.file.fileName !== file) {
        // A problem with the setup itself (missing types): blame every file.
        for (const errs of result.values()) errs.push(text);
        continue;
      }
      const line = d.file.getLineAndCharacterOfPosition(d.start).line - header.length;
      const [label, obj] = lineOwner[line] ?? [entries[0].label, null];
      result.get(label).push(`${describe(obj)}: ${text}`);
    }
    return result;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main(args) {
  if (args.length === 0) {
    console.error("usage: node validate.mjs LABEL=FILE [LABEL=FILE ...]");
    return 2;
  }
  let failed = 0;
  const report = (ok, what, label, detail) => {
    if (!ok) failed++;
    console.log(ok ? `PASS ${what} ${label} ${detail}` : `FAIL ${what} ${label}: ${detail}`);
  };

  const entries = [];
  for (const arg of args) {
    const eq = arg.indexOf("=");
    const label = eq > 0 ? arg.slice(0, eq) : arg;
    const file = eq > 0 ? arg.slice(eq + 1) : arg;
    let objects;
    try {
      objects = loadObjects(file);
    } catch (e) {
      report(false, "schema", label, e.message);
      continue;
    }
    const { errors, typed } = await checkSchemas(objects);
    report(
      errors.length === 0,
      "schema",
      label,
      errors.length === 0 ? `(${objects.length} objects)` : errors.join("; "),
    );
    if (typed.length === objects.length) entries.push({ label, typed });
    else report(false, "fields", label, "skipped: the schema pass failed");
  }

  if (entries.length > 0) {
    for (const [label, errors] of checkFields(entries)) {
      report(
        errors.length === 0,
        "fields",
        label,
        errors.length === 0 ? "(no unknown fields)" : errors.join("; "),
      );
    }
  }
  return failed === 0 ? 0 : 1;
}

process.exitCode = await main(process.argv.slice(2));
