// Validates files against a JSON Schema with ajv in strict mode: the schema itself
// must compile strictly (valid under its meta-schema, no unknown keywords or
// formats), then each file (YAML or JSON) is checked. Prints one JSON line per file:
// {"file", "valid", "errors"}. Used by tests/editor_schema.rs and tests/sarif.rs.
//
//   node check.cjs [--published] SCHEMA FILE...
// --published: a schema we do not own (SARIF's): compiled without strict mode, which
// checks how a schema is written, not what it accepts.
// Modules: ajv, ajv-formats, ajv-draft-04, yaml (scripts/test-deps installs them under
// /var/lib/phased-test/node; NODE_PATH points there).
"use strict";
const fs = require("fs");
const YAML = require("yaml");
const addFormats = require("ajv-formats");

const args = process.argv.slice(2);
const published = args[0] === "--published";
if (published) args.shift();
const [schemaPath, ...files] = args;
const schema = JSON.parse(fs.readFileSync(schemaPath, "utf8"));
const draft = String(schema.$schema || "");
let Ajv;
if (draft.includes("2020-12")) Ajv = require("ajv/dist/2020");
else if (draft.includes("draft-04")) Ajv = require("ajv-draft-04");
else Ajv = require("ajv");
const ajv = new Ajv({ strict: !published, allErrors: true, unicodeRegExp: !published });
addFormats(ajv);
let validate;
try {
  validate = ajv.compile(schema);
} catch (e) {
  console.log(JSON.stringify({ schema: schemaPath, compiled: false, error: String(e.message || e) }));
  process.exit(3);
}
for (const file of files) {
  const text = fs.readFileSync(file, "utf8");
  let doc;
  try {
    doc = file.endsWith(".json") ? JSON.parse(text) : YAML.parse(text);
  } catch (e) {
    console.log(JSON.stringify({ file, valid: false, parsed: false, errors: [String(e.message || e)] }));
    continue;
  }
  const valid = validate(doc);
  const errors = (validate.errors || []).map((e) => `${e.instancePath} ${e.message}`);
  console.log(JSON.stringify({ file, valid, errors }));
}
