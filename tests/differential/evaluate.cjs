'use strict';
// Reference side of flagd-core's differential test: evaluates a batch of
// (flagd document, flag key, context) cases with @openfeature/flagd-core.
//
// stdin:  {"cases": [{"id", "config": <flagd document>, "flagKey", "type", "context"}]}
// stdout: [{"id", "value", "variant", "reason", "errorCode", "errorMessage", "metadata", "schemaValid", "loadError"}]
//
// `value` is exactly what the reference returns, so when it falls back it is the
// type's default below, which the Rust side recognises as "the caller's default".

const { FlagdCore, MemoryStorage } = require('@openfeature/flagd-core');

const silent = { error() {}, warn() {}, info() {}, debug() {} };

const DEFAULTS = { boolean: false, string: '', number: 0, object: {} };

const RESOLVERS = {
  boolean: 'resolveBooleanEvaluation',
  string: 'resolveStringEvaluation',
  number: 'resolveNumberEvaluation',
  object: 'resolveObjectEvaluation',
};

// Building a FlagdCore compiles every targeting rule, which dominates the run time,
// and the generator reuses each document for many cases.
const loaded = new Map();

function load(text) {
  let entry = loaded.get(text);
  if (entry) return entry;
  entry = { core: null, loadError: null, schemaValid: false };
  try {
    const core = new FlagdCore(undefined, silent);
    core.setConfigurations(text);
    entry.core = core;
  } catch (err) {
    entry.loadError = String(err && err.message ? err.message : err);
  }
  try {
    // Strict mode throws on anything the flagd JSON schema rejects; the Rust loader
    // is stricter than the reference's lenient default, so the harness wants to know.
    new MemoryStorage(silent).setConfigurations(text, true);
    entry.schemaValid = true;
  } catch {
    entry.schemaValid = false;
  }
  loaded.set(text, entry);
  return entry;
}

function orNull(v) {
  return v === undefined ? null : v;
}

function evaluate(c) {
  const { core, loadError, schemaValid } = load(JSON.stringify(c.config));
  const base = { id: c.id, schemaValid, loadError };
  if (!core) {
    return { ...base, value: null, variant: null, reason: 'ERROR', errorCode: 'PARSE_ERROR' };
  }
  const method = RESOLVERS[c.type];
  if (!method) throw new Error(`case ${c.id}: unknown type ${JSON.stringify(c.type)}`);
  const r = core[method](c.flagKey, DEFAULTS[c.type], c.context || {}, silent);
  return {
    ...base,
    value: orNull(r.value),
    variant: orNull(r.variant),
    reason: orNull(r.reason),
    errorCode: orNull(r.errorCode),
    errorMessage: orNull(r.errorMessage),
    metadata: orNull(r.flagMetadata),
  };
}

function main() {
  const chunks = [];
  process.stdin.on('data', (d) => chunks.push(d));
  process.stdin.on('end', () => {
    const batch = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    const out = batch.cases.map(evaluate);
    process.stdout.write(JSON.stringify(out));
  });
}

main();
