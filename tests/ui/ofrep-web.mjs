// A web app's page in headless Debian Chromium evaluating flags over OFREP with the real
// OpenFeature web SDK and OFREP web provider from npm, loaded as the browser loads them
// (native ES modules and an import map, no bundler), from origins the server does and does
// not allow. Reports what the browser saw as one JSON object on stdout; the Rust test
// (tests/tests/e2e/browser_ofrep.rs) decides pass or fail.
//
// Input (stdin, JSON):
//   { serverUrl: "http://127.0.0.1:S", token: evaluate token,
//     pageOrigins: { allowed: "http://127.0.0.1:P1", blocked: "http://127.0.0.1:P2" },
//     flags: [{ key, type: "boolean" | "string" | "number" | "object", default }],
//     contexts: [{ targetingKey, companyId, ...attributes }] }   (at least two)
// Output (stdout, JSON):
//   { evaluations: [{ providerStatus, flags: { KEY: { value, variant, reason, errorCode } } }]
//       (one per context, in order), sdkError: null | message,
//     consoleErrors: [the SDK page's console errors],
//     etag: { first, again, otherContext },   each a fetch outcome (below)
//     blockedOrigin, adminFromAllowedOrigin }  fetch outcomes
// A fetch outcome: { refused, error, status, etag, browserSaid }: `refused` when fetch threw
// the TypeError a browser throws for a request CORS does not allow, `browserSaid` the
// console's CORS message that names why.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const TIMEOUT = 15000;
const PACKAGES = ['@openfeature/core', '@openfeature/web-sdk', '@openfeature/ofrep-core', '@openfeature/ofrep-web-provider'];

const input = JSON.parse(await new Promise((resolve) => {
  let text = '';
  process.stdin.setEncoding('utf8');
  process.stdin.on('data', (chunk) => { text += chunk; });
  process.stdin.on('end', () => resolve(text));
}));

/** The ES module a browser can load: `module` (what bundlers take), else the `import` export. */
function esmEntry(name) {
  const dir = join(import.meta.dirname, 'node_modules', name);
  const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
  const entry = pkg.module ?? pkg.exports?.import ?? pkg.exports?.['.']?.import;
  if (!entry) throw new Error(`${name} names no ES module entry`);
  return join(dir, entry);
}

/** URL path → file, the only files the page servers hand out. */
const modules = new Map(PACKAGES.map((name) => [`/modules/${name}.js`, readFileSync(esmEntry(name))]));
const importMap = { imports: Object.fromEntries(PACKAGES.map((name) => [name, `/modules/${name}.js`])) };

// The page exposes the SDK to the driver and marks itself loaded once every module resolved.
const page = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>OFREP web app</title>
<link rel="icon" href="data:,">
<script type="importmap">${JSON.stringify(importMap)}</script>
<script type="module">
import { OpenFeature } from '@openfeature/web-sdk';
import { OFREPWebProvider } from '@openfeature/ofrep-web-provider';
window.sdk = { OpenFeature, OFREPWebProvider };
document.documentElement.dataset.sdk = 'loaded';
</script></head><body><main>OFREP web app</main></body></html>`;

function serve(req, res) {
  const path = new URL(req.url, 'http://page').pathname;
  const module = modules.get(path);
  if (path === '/') {
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' }).end(page);
  } else if (module) {
    res.writeHead(200, { 'Content-Type': 'text/javascript; charset=utf-8' }).end(module);
  } else {
    res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found');
  }
}

/** A page server on the origin's port, started once it listens. */
function startPageServer(origin) {
  const { hostname, port } = new URL(origin);
  const server = createServer(serve);
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(Number(port), hostname, () => resolve(server));
  });
}

function stopPageServer(server) {
  server.closeAllConnections();
  return new Promise((resolve) => server.close(() => resolve()));
}

/** Rejects if `promise` has not settled within `ms`: page code has no timeout of its own. */
async function deadline(promise, ms, what) {
  let timer;
  const late = new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms); });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

// --- code run inside the page ------------------------------------------------------------

/** Sets up the OFREP web provider and reads every flag for each context in turn. */
async function evaluateWithSdk({ serverUrl, token, flags, contexts }) {
  const { OpenFeature, OFREPWebProvider } = window.sdk;
  const details = { boolean: 'getBooleanDetails', string: 'getStringDetails', number: 'getNumberDetails',
    object: 'getObjectDetails' };
  const provider = new OFREPWebProvider({ baseUrl: serverUrl, headers: [['Authorization', `Bearer ${token}`]] });
  const client = OpenFeature.getClient();
  const evaluations = [];
  try {
    await OpenFeature.setProviderAndWait(provider, contexts[0]);
    for (const [i, context] of contexts.entries()) {
      if (i > 0) await OpenFeature.setContext(context);
      const seen = {};
      for (const flag of flags) {
        const d = client[details[flag.type]](flag.key, flag.default);
        seen[flag.key] = { value: d.value, variant: d.variant ?? null, reason: d.reason ?? null,
          errorCode: d.errorCode ?? null };
      }
      evaluations.push({ providerStatus: client.providerStatus, flags: seen });
    }
    return { evaluations, sdkError: null };
  } catch (e) {
    return { evaluations, sdkError: `${e?.name}: ${e?.message}` };
  } finally {
    await OpenFeature.close();
  }
}

/** A plain `fetch`, as any script of the page could send it. */
async function plainFetch({ url, method, headers, body }) {
  try {
    const res = await fetch(url, { method, headers, body });
    return { refused: false, error: null, status: res.status, etag: res.headers.get('etag') };
  } catch (e) {
    return { refused: e instanceof TypeError, error: `${e.name}: ${e.message}`, status: null, etag: null };
  }
}

// --- the driver --------------------------------------------------------------------------

function bulkRequest(context, etag) {
  const headers = { 'Content-Type': 'application/json', Authorization: `Bearer ${input.token}` };
  if (etag) headers['If-None-Match'] = etag;
  const url = `${input.serverUrl}/ofrep/v1/evaluate/flags`;
  return { url, method: 'POST', headers, body: JSON.stringify({ context }) };
}

/** Opens the app's page on `origin` and waits until its modules have loaded. */
async function openApp(context, origin, consoleErrors) {
  const page = await context.newPage();
  page.on('console', (msg) => { if (msg.type() === 'error') consoleErrors.push(msg.text()); });
  page.on('pageerror', (err) => consoleErrors.push(err.message));
  await page.goto(`${origin}/`);
  await page.locator('html[data-sdk="loaded"]').waitFor({ state: 'attached' });
  return page;
}

/** A fetch from a page of its own; when refused, the console's CORS message is its evidence. */
async function refusalProbe(context, origin, request) {
  const page = await openApp(context, origin, []);
  const cors = page.waitForEvent('console', { predicate: (m) => m.text().includes('CORS'), timeout: 5000 })
    .then((m) => m.text(), () => null);
  const outcome = await deadline(page.evaluate(plainFetch, request), TIMEOUT, `fetch ${request.url}`);
  outcome.browserSaid = outcome.refused ? await cors : null;
  await page.close();
  return outcome;
}

/** From the allowed origin: the ETag is readable, and sending it back revalidates. */
async function etagProbe(page) {
  const [mine, other] = input.contexts;
  const fetchIn = (request) => deadline(page.evaluate(plainFetch, request), TIMEOUT, `fetch ${request.url}`);
  const first = await fetchIn(bulkRequest(mine));
  const again = await fetchIn(bulkRequest(mine, first.etag));
  // The tag names one context's answer: another context's differs, so it is answered in full.
  const otherContext = await fetchIn(bulkRequest(other, first.etag));
  return { first, again, otherContext };
}

const report = { consoleErrors: [] };
const servers = [];
const profile = mkdtempSync(join(tmpdir(), 'flagd-ofrep-web-chromium-'));
let browser;
try {
  servers.push(await startPageServer(input.pageOrigins.allowed));
  servers.push(await startPageServer(input.pageOrigins.blocked));
  browser = await chromium.launchPersistentContext(profile, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  browser.setDefaultTimeout(TIMEOUT);

  const app = await openApp(browser, input.pageOrigins.allowed, report.consoleErrors);
  const sdk = { serverUrl: input.serverUrl, token: input.token, flags: input.flags, contexts: input.contexts };
  Object.assign(report, await deadline(app.evaluate(evaluateWithSdk, sdk), 4 * TIMEOUT, 'the OpenFeature web SDK'));
  report.etag = await etagProbe(app);
  await app.close();

  report.blockedOrigin = await refusalProbe(browser, input.pageOrigins.blocked, bulkRequest(input.contexts[0]));
  report.adminFromAllowedOrigin = await refusalProbe(browser, input.pageOrigins.allowed, {
    url: `${input.serverUrl}/api/v1/flags`, method: 'GET', headers: { Authorization: `Bearer ${input.token}` },
  });
} finally {
  await browser?.close();
  await Promise.all(servers.map(stopPageServer));
  rmSync(profile, { recursive: true, force: true });
}
process.stdout.write(`${JSON.stringify(report)}\n`);
