// validate.mjs <openapi.json>: checks SalesPad's API description (docs/openapi.json) with real
// validators, the npm packages pinned in package-lock.json (installed by
// tests/interop/npm_install.sh; CTest's test `openapi_document`):
//
// 1. @seriousme/openapi-schema-validator: the document against the official OpenAPI 3.1 JSON
//    Schema, every local $ref resolved.
// 2. Ajv (JSON Schema 2020-12, the dialect of OpenAPI 3.1) in strict mode (less its stylistic
//    strictTypes and strictRequired) with ajv-formats: every Schema Object of the document
//    compiles, so an unknown keyword (a typo such as "requried"), a wrong type name or an
//    unknown format is an error. The official schema leaves Schema Objects unchecked.
// 3. Every example (a media type's `example`, a schema's `examples`, a parameter's `example`)
//    validates against its schema.
// 4. What OpenAPI states in prose only: each path template's {names} are exactly its `in: path`
//    parameters (declared required), operationIds are unique, security requirements name
//    declared schemes, and every component is used.
//
// Prints one line per problem and exits 1 when there is any; "openapi: ok ..." and 0 otherwise.
import { readFileSync } from "node:fs";
import { Validator } from "@seriousme/openapi-schema-validator";
import Ajv2020 from "ajv/dist/2020.js";
import addFormatsModule from "ajv-formats";

const addFormats = addFormatsModule.default || addFormatsModule;
const file = process.argv[2];
if (!file) {
  console.error("usage: node validate.mjs <openapi.json>");
  process.exit(2);
}
const problems = [];
const fail = (where, what) => problems.push(`${where}: ${what}`);

// Strict JSON first: the validator's own loader is a YAML parser, which takes more than JSON.
const text = readFileSync(file, "utf-8");
let doc;
try {
  doc = JSON.parse(text);
} catch (e) {
  console.error(`${file}: not JSON: ${e.message}`);
  process.exit(1);
}

// ---- 1. the official OpenAPI 3.1 schema ------------------------------------------------------
const validator = new Validator();
const res = await validator.validate(structuredClone(doc));
if (!res.valid) {
  for (const e of [].concat(res.errors))
    fail("OpenAPI schema", typeof e === "string" ? e : `${e.instancePath} ${e.message}`);
} else if (validator.version !== "3.1") {
  fail("openapi", `version ${validator.version}, expected 3.1`);
}

// ---- 2. every Schema Object compiles in strict mode ------------------------------------------
// Component schemas are registered under their own ids; the document's local refs to them are
// rewritten to those ids so that each schema compiles on its own.
const SCHEMA_REF = "#/components/schemas/";
const schemaId = (name) => `urn:salespad:schemas:${name}`;
const ajv = new Ajv2020({ strict: true, strictTypes: false, strictRequired: false, allErrors: true });
addFormats(ajv);
// OpenAPI's own Schema Object keywords (annotations for validation).
for (const keyword of ["discriminator", "xml", "externalDocs", "example"])
  ajv.addKeyword({ keyword });

function rewriteRefs(node) {
  if (Array.isArray(node)) return node.map(rewriteRefs);
  if (node === null || typeof node !== "object") return node;
  const out = {};
  for (const [k, v] of Object.entries(node)) {
    if (k === "$ref" && typeof v === "string" && v.startsWith(SCHEMA_REF))
      out[k] = schemaId(v.slice(SCHEMA_REF.length));
    else out[k] = rewriteRefs(v);
  }
  return out;
}

const components = doc.components || {};
for (const [name, schema] of Object.entries(components.schemas || {})) {
  try {
    ajv.addSchema(rewriteRefs(schema), schemaId(name));
  } catch (e) {
    fail(`components.schemas.${name}`, `not a JSON Schema: ${e.message}`);
  }
}

// Every place the document holds a Schema Object (and examples to check against it).
const schemaSites = []; // {where, schema, examples: [[where, value]]}
function mediaSites(where, content) {
  for (const [type, media] of Object.entries(content || {})) {
    if (!media.schema) continue;
    const examples = [];
    if ("example" in media) examples.push([`${where} ${type} example`, media.example]);
    for (const [k, ex] of Object.entries(media.examples || {}))
      if ("value" in ex) examples.push([`${where} ${type} examples.${k}`, ex.value]);
    schemaSites.push({ where: `${where} ${type}`, schema: media.schema, examples });
  }
}
function paramSite(where, p) {
  if (p.$ref || !p.schema) return;
  const examples = "example" in p ? [[`${where} example`, p.example]] : [];
  schemaSites.push({ where, schema: p.schema, examples });
}
function responseSites(where, r) {
  if (r.$ref) return;
  mediaSites(where, r.content);
  for (const [h, hdr] of Object.entries(r.headers || {})) paramSite(`${where} header ${h}`, hdr);
}
const METHODS = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];
for (const [path, item] of Object.entries(doc.paths || {})) {
  for (const m of METHODS) {
    const o = item[m];
    if (!o) continue;
    const where = `${m.toUpperCase()} ${path}`;
    for (const p of o.parameters || []) paramSite(`${where} parameter ${p.name || p.$ref}`, p);
    if (o.requestBody && !o.requestBody.$ref)
      mediaSites(`${where} requestBody`, o.requestBody.content);
    for (const [status, r] of Object.entries(o.responses || {}))
      responseSites(`${where} ${status}`, r);
  }
}
for (const [n, p] of Object.entries(components.parameters || {}))
  paramSite(`components.parameters.${n}`, p);
for (const [n, h] of Object.entries(components.headers || {}))
  paramSite(`components.headers.${n}`, h);
for (const [n, r] of Object.entries(components.responses || {}))
  responseSites(`components.responses.${n}`, r);

function check(where, schema, examples) {
  let validate;
  try {
    validate = ajv.compile(rewriteRefs(schema));
  } catch (e) {
    fail(where, `schema does not compile: ${e.message}`);
    return;
  }
  for (const [exWhere, value] of examples) {
    if (!validate(value))
      fail(exWhere, ajv.errorsText(validate.errors, { dataVar: "example" }));
  }
}
for (const [name, schema] of Object.entries(components.schemas || {})) {
  const examples = (schema.examples || []).map((v, i) => [`schemas.${name} examples[${i}]`, v]);
  check(`components.schemas.${name}`, { $ref: `${SCHEMA_REF}${name}` }, examples);
}
for (const s of schemaSites) {
  const own = (s.schema.examples || []).map((v, i) => [`${s.where} schema examples[${i}]`, v]);
  check(s.where, s.schema, [...s.examples, ...own]);
}

// ---- 4. path parameters, operationIds, unused components -------------------------------------
const resolveParam = (p) =>
  p.$ref ? components.parameters?.[p.$ref.replace("#/components/parameters/", "")] : p;
const operationIds = new Map();
for (const [path, item] of Object.entries(doc.paths || {})) {
  const templated = [...path.matchAll(/\{([^}]+)\}/g)].map((x) => x[1]).sort();
  for (const m of METHODS) {
    const o = item[m];
    if (!o) continue;
    const where = `${m.toUpperCase()} ${path}`;
    const params = [...(item.parameters || []), ...(o.parameters || [])].map(resolveParam);
    const inPath = params.filter((p) => p && p.in === "path");
    const declared = inPath.map((p) => p.name).sort();
    if (JSON.stringify(declared) !== JSON.stringify(templated))
      fail(where, `path parameters [${declared}] but the template has [${templated}]`);
    for (const p of inPath) if (p.required !== true) fail(where, `path parameter ${p.name} not required`);
    if (!o.operationId) fail(where, "no operationId");
    else if (operationIds.has(o.operationId))
      fail(where, `operationId ${o.operationId} also on ${operationIds.get(o.operationId)}`);
    else operationIds.set(o.operationId, where);
  }
}
const used = new Set(text.match(/"#\/components\/[A-Za-z]+\/[^"]+"/g) || []);
for (const section of ["schemas", "parameters", "headers", "responses", "requestBodies"]) {
  for (const name of Object.keys(components[section] || {}))
    if (!used.has(`"#/components/${section}/${name}"`))
      fail(`components.${section}.${name}`, "never referenced");
}
// Security requirements name declared schemes, and every declared scheme is required somewhere.
const requirements = [...(doc.security || [])];
for (const item of Object.values(doc.paths || {}))
  for (const m of METHODS) if (item[m]) requirements.push(...(item[m].security || []));
for (const req of requirements)
  for (const name of Object.keys(req))
    if (!(name in (components.securitySchemes || {})))
      fail("security", `requirement names ${name}, which is not a declared security scheme`);
for (const name of Object.keys(components.securitySchemes || {}))
  if (!requirements.some((req) => name in req))
    fail(`components.securitySchemes.${name}`, "never required");

if (problems.length) {
  for (const p of problems) console.log(`FAIL ${p}`);
  console.log(`openapi: ${problems.length} problem(s) in ${file}`);
  process.exit(1);
}
const nops = operationIds.size;
console.log(
  `openapi: ok (${file}: OpenAPI ${doc.openapi}, ${Object.keys(doc.paths).length} paths, ` +
    `${nops} operations, ${schemaSites.length + Object.keys(components.schemas || {}).length} ` +
    "schemas compiled in strict mode)",
);
