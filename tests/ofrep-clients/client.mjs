// Evaluates a batch of flags through the real OpenFeature server SDK for Node.js and its
// OFREP provider, as an application would, and prints what the SDK reported.
//
// Input (stdin, JSON):
//   {"url": "http://127.0.0.1:PORT", "headers": {"Authorization": "Bearer …"},
//    "evaluations": [{"id": "…", "flag": "…", "type": "boolean|string|integer|float|object",
//                     "default": …, "context": {…}}]}
// Output (stdout, JSON):
//   {"client": "…", "results": [{"id", "value", "variant", "reason", "errorCode", "errorMessage"}]}

import { readFileSync } from 'node:fs';
import { OpenFeature } from '@openfeature/server-sdk';
import { OFREPProvider } from '@openfeature/ofrep-provider';

// Read from disk: not every package exports its package.json.
const version = (name) =>
  JSON.parse(readFileSync(new URL(`./node_modules/${name}/package.json`, import.meta.url), 'utf8')).version;

const input = JSON.parse(readFileSync(0, 'utf8'));

// The server provider resolves every call with one HTTP request (no cache to defeat).
await OpenFeature.setProviderAndWait(new OFREPProvider({ baseUrl: input.url, headers: input.headers ?? {} }));
const client = OpenFeature.getClient();

const methods = {
  boolean: client.getBooleanDetails,
  string: client.getStringDetails,
  integer: client.getNumberDetails,
  float: client.getNumberDetails,
  object: client.getObjectDetails,
};

const results = [];
for (const e of input.evaluations) {
  const method = methods[e.type];
  if (!method) {
    throw new Error(`unknown flag type ${JSON.stringify(e.type)} in evaluation ${e.id}`);
  }
  const d = await method.call(client, e.flag, e.default, e.context ?? {});
  results.push({
    id: e.id,
    value: d.value ?? null,
    variant: d.variant ?? null,
    reason: d.reason ?? null,
    errorCode: d.errorCode ?? null,
    errorMessage: d.errorMessage ?? null,
  });
}

await OpenFeature.close();
const names = ['@openfeature/server-sdk', '@openfeature/ofrep-provider', '@openfeature/ofrep-core'];
process.stdout.write(
  JSON.stringify({ client: names.map((n) => `${n}@${version(n)}`).join(' '), results }) + '\n',
);
