// Validates Istio objects (a JSON array in the file named by argv[2]) against Istio's CRD
// schemas with @kubernetes-models/istio (its validate()), then checks what that package does
// not: no field the CRD does not define (walked against the package's TypeScript
// declarations, which are generated from the same CRD schemas, with the TypeScript compiler),
// and a WasmPlugin's selector and targetRefs not both set. Prints one line per valid object;
// exits 1 with the reasons otherwise.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";

const require = createRequire(import.meta.url);
const ts = require("typescript");
const pkgDir = path.dirname(require.resolve("@kubernetes-models/istio/package.json"));

const objects = JSON.parse(readFileSync(process.argv[2], "utf8"));
const errors = [];

function declarationFile(apiVersion, kind) {
  return path.join(pkgDir, apiVersion, `${kind}.d.ts`);
}

// The interface I<Kind> of the object's declaration file, as the type checker sees it.
function interfaceType(apiVersion, kind) {
  const file = declarationFile(apiVersion, kind);
  const program = ts.createProgram([file], { noEmit: true, skipLibCheck: true });
  const checker = program.getTypeChecker();
  const source = program.getSourceFile(file);
  let found;
  ts.forEachChild(source, (node) => {
    if (ts.isInterfaceDeclaration(node) && node.name.text === `I${kind}`) found = checker.getTypeAtLocation(node);
  });
  if (!found) throw new Error(`no interface I${kind} in ${file}`);
  return { checker, type: found };
}

// Every key of `value` must be a property of `type`; recurse into objects and arrays.
function unknownFields(checker, type, value, at, out) {
  if (value === null || typeof value !== "object") return;
  type = checker.getNonNullableType(type);
  if (Array.isArray(value)) {
    const element = checker.isArrayType(type) ? checker.getTypeArguments(type)[0] : undefined;
    if (element) value.forEach((v, i) => unknownFields(checker, element, v, `${at}[${i}]`, out));
    return;
  }
  const props = checker.getPropertiesOfType(type);
  // An open map ({[key: string]: T}) or free-form object ({}): anything goes below it.
  const index = checker.getIndexInfosOfType(type);
  if (index.length > 0) {
    for (const [k, v] of Object.entries(value)) unknownFields(checker, index[0].type, v, `${at}.${k}`, out);
    return;
  }
  if (props.length === 0) return;
  for (const [k, v] of Object.entries(value)) {
    const p = props.find((s) => s.name === k);
    if (!p) {
      out.push(`${at}.${k}: not a field of the CRD`);
      continue;
    }
    const decl = p.valueDeclaration ?? p.declarations?.[0];
    if (decl) unknownFields(checker, checker.getTypeOfSymbolAtLocation(p, decl), v, `${at}.${k}`, out);
  }
}

for (const obj of objects) {
  const { apiVersion, kind } = obj;
  const name = `${apiVersion} ${kind} ${obj.metadata?.namespace ?? ""}/${obj.metadata?.name ?? ""}`;
  let Model;
  try {
    Model = (await import(`@kubernetes-models/istio/${apiVersion}/${kind}`))[kind];
  } catch (e) {
    errors.push(`${name}: no such Istio kind (${e.message})`);
    continue;
  }
  const problems = [];
  try {
    new Model(obj).validate();
  } catch (e) {
    problems.push(`schema: ${e.message}`);
  }
  const { checker, type } = interfaceType(apiVersion, kind);
  // metadata is ObjectMeta (declared elsewhere): the apiserver checks it.
  const { metadata, ...rest } = obj;
  unknownFields(checker, type, rest, "", problems);
  if (kind === "WasmPlugin" && obj.spec?.selector && obj.spec?.targetRefs) {
    problems.push("spec: selector and targetRefs are mutually exclusive");
  }
  if (problems.length) errors.push(`${name}:\n  ${problems.join("\n  ")}`);
  else console.log(`valid ${name}`);
}
if (errors.length) {
  console.error(errors.join("\n"));
  process.exit(1);
}
