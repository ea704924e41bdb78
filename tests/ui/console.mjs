// Drives the flagd console in headless Debian Chromium and reports what it saw as one
// JSON object on stdout; the Rust test (tests/tests/e2e/ui.rs) decides pass or fail.
//
// Input (stdin, JSON): { url, adminToken, readToken, evaluateToken, flag, otherFlag,
//   companies: [ids], pilot, reason, rollout, outDir, otherFlag, segment: { key, companies, description } }.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const input = JSON.parse(await new Promise((resolve) => {
  let text = '';
  process.stdin.setEncoding('utf8');
  process.stdin.on('data', (chunk) => { text += chunk; });
  process.stdin.on('end', () => resolve(text));
}));

const TIMEOUT = 15000;
const report = { consoleErrors: [], screenshots: [] };

/** OFREP values for each company, as an application with the evaluate token sees them. */
async function evaluate() {
  const values = {};
  for (const company of input.companies) values[company] = await ofrep(company);
  return values;
}

/** Replaces a segment's companies through the API, as another admin would. */
async function changeSegmentBehindThePage(env, key, companies) {
  const url = `${input.url}/api/v1/environments/${env}/segments/${key}`;
  const auth = { Authorization: `Bearer ${input.adminToken}` };
  const current = await fetch(url, { headers: auth });
  const body = { key, companies };
  const res = await fetch(url, {
    method: 'PUT',
    headers: { ...auth, 'Content-Type': 'application/json', 'If-Match': current.headers.get('etag') },
    body: JSON.stringify(body),
  });
  if (!res.ok) throw new Error(`changing segment ${key} answered ${res.status}`);
}

async function ofrep(company) {
  const res = await fetch(`${input.url}/ofrep/v1/evaluate/flags/${input.flag}`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${input.evaluateToken}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ context: { companyId: company } }),
  });
  const body = await res.json();
  return { value: body.value, variant: body.variant, reason: body.reason };
}

const configPath = (env) => `/api/v1/flags/${input.flag}/environments/${env}`;

/** The admin API as someone else than the page: a script with the admin token. */
async function adminApi(method, path, body) {
  const res = await fetch(`${input.url}${path}`, {
    method,
    headers: { Authorization: `Bearer ${input.adminToken}`, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${await res.text()}`);
  return res.json();
}

async function signIn(page, token) {
  await page.goto(`${input.url}/ui`);
  await page.locator('main[data-page="sign-in"]').waitFor();
  await page.getByLabel('Token (read or admin)').fill(token);
  await page.getByLabel('Token (read or admin)').press('Enter');
  await page.locator('main[data-page="flags"]').waitFor();
}

async function screenshot(page, name) {
  const path = join(input.outDir, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  report.screenshots.push(path);
}

function watch(page, who) {
  page.on('console', (msg) => { if (msg.type() === 'error') report.consoleErrors.push(`${who}: ${msg.text()}`); });
  page.on('pageerror', (err) => report.consoleErrors.push(`${who}: ${err.message}`));
}

const profile = mkdtempSync(join(tmpdir(), 'flagd-console-chromium-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
context.setDefaultTimeout(TIMEOUT);
try {
  // --- admin ---------------------------------------------------------------------------
  const admin = await context.newPage();
  watch(admin, 'admin');
  await signIn(admin, input.adminToken);
  report.adminWho = await admin.locator('#who-name').textContent();
  const rows = admin.locator('main tbody tr:visible');
  report.flagsListed = await rows.count();
  report.productionCell = await admin.locator(`tr[data-flag="${input.flag}"] td[data-env="production"]`).textContent();
  await admin.getByLabel('Search by key or tag').fill(input.searchTag);
  await admin.waitForFunction((n) => document.querySelectorAll('main tbody tr:not([hidden])').length === n, 1);
  report.searchShows = await admin.locator('main tbody tr:not([hidden]) th').allTextContents();
  await admin.getByLabel('Search by key or tag').fill('');
  await screenshot(admin, 'flags');

  // The Flag page, reached by keyboard from the list.
  await admin.getByRole('link', { name: input.flag, exact: true }).focus();
  await admin.keyboard.press('Enter');
  await admin.locator('main[data-page="flag"]').waitFor();
  const production = admin.locator('section[data-env="production"]');

  // Rollout to 12.5 % in production.
  report.evaluatedBeforeRollout = await evaluate();
  await admin.getByLabel('Rollout % in production').fill(String(input.rollout));
  await admin.getByRole('button', { name: 'Set rollout in production' }).click();
  await admin.getByRole('status').filter({ hasText: `${input.rollout} % in production` }).waitFor();
  report.rolloutShown = await production.locator('p', { hasText: 'Rollout:' }).textContent();
  report.evaluatedAfterRollout = await evaluate();
  report.storedAfterRollout = await adminApi('GET', configPath('production'));

  // A pilot company on the allow list gets the on value; a second one is added and removed.
  await admin.getByLabel('Companies to allow in production').fill(`${input.pilot}, 5555`);
  await admin.getByRole('button', { name: 'Allow in production' }).click();
  await admin.getByRole('status').filter({ hasText: `${input.pilot}, 5555 allowed in production` }).waitFor();
  await admin.getByRole('button', { name: 'Remove 5555 from allow list in production' }).click();
  await admin.getByRole('status').filter({ hasText: '5555 removed from the allow list in production' }).waitFor();
  report.allowShown = await production.locator('[data-list="allow"] li').evaluateAll(
    (items) => items.map((li) => li.dataset.company));
  report.pilotOfrep = await ofrep(input.pilot);

  // The console's own evaluation for the pilot, typed by keyboard.
  await admin.getByLabel('Company id').fill(input.pilot);
  await admin.getByLabel('Other attributes (key=value, one per line)').fill('plan=pro\nregion=eu');
  await admin.getByLabel('Company id').press('Enter');
  await admin.locator('#evaluation dd[data-field="reason"]').waitFor();
  report.pilotConsole = {
    value: await admin.locator('#evaluation dd[data-field="value"]').textContent(),
    variant: await admin.locator('#evaluation dd[data-field="variant"]').textContent(),
    reason: await admin.locator('#evaluation dd[data-field="reason"]').textContent(),
  };

  // Someone else changes the flag behind the page's back: the kill switch refuses to act on the
  // stale view, says so, and shows the new state.
  await adminApi('POST', `${configPath('production')}/allow`, { companies: ['9999'] });
  await admin.getByRole('button', { name: 'Disable in production' }).click();
  report.conflictMessage = await admin.getByRole('alert').filter({ hasText: 'since you opened it' }).textContent();
  await production.locator('li[data-company="9999"]').waitFor();
  report.conflictDialogOpened = await admin.getByRole('dialog').isVisible();
  report.stateAfterConflict = (await adminApi('GET', configPath('production'))).state;

  // Kill switch in production: a reason is required, and cancelling changes nothing.
  await admin.getByRole('button', { name: 'Disable in production' }).click();
  const dialog = admin.getByRole('dialog');
  await dialog.waitFor();
  report.dialogTitle = await dialog.getByRole('heading').textContent();
  await dialog.getByRole('button', { name: 'Cancel' }).click();
  await dialog.waitFor({ state: 'hidden' });
  report.evaluatedAfterCancel = await evaluate();
  await admin.getByRole('button', { name: 'Disable in production' }).click();
  await dialog.getByRole('button', { name: 'Disable in production' }).click();
  report.emptyReasonKeptDialogOpen = await dialog.isVisible();
  await dialog.getByLabel('Reason').fill('   ');
  await dialog.getByRole('button', { name: 'Disable in production' }).click();
  report.blankReasonKeptDialogOpen = await dialog.isVisible();
  await dialog.getByLabel('Reason').fill(input.reason);
  await dialog.getByRole('button', { name: 'Disable in production' }).click();
  await admin.getByRole('status').filter({ hasText: 'is disabled in production' }).waitFor();
  report.stateShown = await production.locator('p', { hasText: 'State:' }).textContent();
  report.evaluatedAfterDisable = await evaluate();
  await screenshot(admin, 'flag');

  // Promotion: the diff first (opened by keyboard), then the confirmation.
  await admin.getByRole('button', { name: 'Compare staging with production' }).focus();
  await admin.keyboard.press('Enter');
  await admin.locator('#promote-diff').waitFor();
  report.promoteChanged = await admin.locator('#promote-diff pre').first().locator('mark').evaluateAll(
    (marks) => marks.map((m) => m.dataset.key));
  await admin.getByRole('button', { name: 'Promote staging to production' }).click();
  await admin.getByRole('status').filter({ hasText: 'staging promoted to production' }).waitFor();

  // A phone-width Flag page needs no sideways scrolling.
  await admin.setViewportSize({ width: 390, height: 844 });
  report.narrowOverflow = await admin.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  await screenshot(admin, 'flag-narrow');
  await admin.setViewportSize({ width: 1280, height: 720 });

  // The Flags page again: production's list sizes and who changed it last, after all of the above.
  await admin.getByRole('link', { name: 'Flags', exact: true }).click();
  await admin.locator('main[data-page="flags"]').waitFor();
  const cell = admin.locator(`tr[data-flag="${input.flag}"] td[data-env="production"]`);
  report.productionLists = await cell.locator('[data-field="lists"]').textContent();
  report.productionChanged = await cell.locator('[data-field="changed"]').textContent();

  // The other flag's production rules, in their order.
  await admin.getByRole('link', { name: input.otherFlag, exact: true }).click();
  await admin.locator(`main[data-route="#/flags/${input.otherFlag}"]`).waitFor();
  report.rulesShown = await admin.locator('section[data-env="production"] [data-list="rules"] li').allTextContents();

  // Segments: a pilot cohort created in staging from the page, by keyboard.
  await admin.getByRole('link', { name: 'Segments', exact: true }).click();
  await admin.locator('main[data-page="segments"]').waitFor();
  await admin.getByLabel('Environment', { exact: true }).selectOption('staging');
  await admin.locator('main[data-route="#/segments?env=staging"]').waitFor();
  await admin.getByLabel('Segment key').fill(input.segment.key);
  await admin.getByLabel('Companies (comma or space separated)').fill(input.segment.companies.join(', '));
  await admin.getByLabel('Description').fill(input.segment.description);
  await admin.getByLabel('Description').press('Enter');
  await admin.getByRole('status').filter({ hasText: `Segment ${input.segment.key} created in staging` }).waitFor();
  const segmentRow = admin.locator(`tr[data-segment="${input.segment.key}"]`);
  report.segmentCompaniesShown = await segmentRow.locator('td[data-field="companies"]').textContent();
  report.segmentRowShown = await segmentRow.textContent();
  await screenshot(admin, 'segments');

  // A second segment, replaced (same key again) and then deleted from the page.
  await admin.getByLabel('Segment key').fill('trial');
  await admin.getByLabel('Companies (comma or space separated)').fill('401');
  await admin.getByRole('button', { name: 'Save segment in staging' }).click();
  await admin.getByRole('status').filter({ hasText: 'Segment trial created in staging' }).waitFor();
  await admin.getByLabel('Segment key').fill('trial');
  await admin.getByLabel('Companies (comma or space separated)').fill('401 402 403');
  await admin.getByRole('button', { name: 'Save segment in staging' }).click();
  await admin.getByRole('status').filter({ hasText: 'Segment trial replaced in staging' }).waitFor();
  report.replacedCompaniesShown = await admin.locator('tr[data-segment="trial"] td[data-field="companies"]').textContent();
  // Someone else changes it after the page showed it: deleting what the page shows is
  // refused, and after a reload it goes.
  await changeSegmentBehindThePage('staging', 'trial', ['401', '402', '403', '404']);
  await admin.getByRole('button', { name: 'Delete segment trial in staging' }).click();
  report.staleSegmentDelete = await admin.getByRole('alert').filter({ hasText: 'Segment trial was not deleted' }).textContent();
  // The browser logs the refused request as an error; that one is expected, no other.
  const refused = report.consoleErrors.findIndex((e) => e.includes('status of 412'));
  if (refused >= 0) report.consoleErrors.splice(refused, 1);
  await admin.reload();
  await admin.locator('main[data-route="#/segments?env=staging"] tr[data-segment="trial"]').waitFor();
  await admin.getByRole('button', { name: 'Delete segment trial in staging' }).click();
  await admin.getByRole('status').filter({ hasText: 'Segment trial deleted from staging' }).waitFor();
  report.segmentsAfterDelete = await admin.locator('main tbody tr').evaluateAll((rows) => rows.map((r) => r.dataset.segment));

  // The audit log, filtered on all three fields; the kill switch's reason and its before/after.
  await admin.getByRole('link', { name: 'Audit', exact: true }).click();
  await admin.locator('main[data-page="audit"]').waitFor();
  const actor = report.adminWho.replace(/ \((admin|read)\)$/, '');
  await admin.getByLabel('Flag', { exact: true }).fill(input.flag);
  await admin.getByLabel('Environment', { exact: true }).fill('production');
  await admin.getByLabel('Actor', { exact: true }).fill(actor);
  await admin.getByLabel('Actor', { exact: true }).press('Enter');
  const filtered = new URLSearchParams({ flag: input.flag, environment: 'production', actor });
  await admin.locator(`main[data-route="#/audit?${filtered}"]`).waitFor();
  report.auditFlags = await admin.locator('main tbody tr td:nth-child(4)').allTextContents();
  const disableRow = admin.locator('main tbody tr[data-action="config.disable"]');
  report.auditReason = await disableRow.locator('td[data-field="reason"]').textContent();
  await disableRow.getByText('Before / after').click();
  report.auditBeforeAfter = await disableRow.locator('pre').allTextContents();
  await screenshot(admin, 'audit');

  // A browser whose clock is an hour ahead still reads "last seen" on the server's clock.
  await admin.evaluate(() => { const real = Date.now; Date.now = () => real() + 3_600_000; });
  await admin.getByRole('link', { name: 'Cluster', exact: true }).click();
  await admin.locator('main[data-page="cluster"]').waitFor();
  report.clusterReplicas = await admin.locator('main tbody tr').count();
  report.clusterLag = await admin.locator('main tbody td[data-field="lag"]').allTextContents();
  report.clusterLastSeen = await admin.locator('main tbody td[data-field="lastSeen"]').allTextContents();

  // Signing out ends the session: the sign-in form comes back.
  await admin.getByRole('button', { name: 'Sign out' }).click();
  await admin.locator('main[data-page="sign-in"]').waitFor();
  report.signedOut = true;
  await admin.close();

  // --- read-only -----------------------------------------------------------------------
  const reader = await context.newPage();
  watch(reader, 'read');
  await signIn(reader, input.readToken);
  report.readWho = await reader.locator('#who-name').textContent();
  await reader.goto(`${input.url}/ui#/flags/${input.flag}`);
  await reader.locator('main[data-page="flag"]').waitFor();
  report.readWriteControls = await reader.locator(
    'main :is(button, input, form, textarea, select):not(#evaluate-form, #evaluate-form *)').count();
  report.readSections = await reader.locator('section.env').count();
  await screenshot(reader, 'flag-read-only');
  await reader.getByRole('link', { name: 'Segments', exact: true }).click();
  await reader.locator('main[data-page="segments"]').waitFor();
  await reader.getByLabel('Environment', { exact: true }).selectOption('staging');
  await reader.locator(`main[data-route="#/segments?env=staging"] tr[data-segment="${input.segment.key}"]`).waitFor();
  report.readSegmentWriteControls = await reader.locator('main :is(button, input, form, textarea)').count();
  await reader.close();

  // A forged write from a page of the read session, with that session's own CSRF token: refused.
  // An unwatched page, since the browser logs the expected 403 as an error.
  const forger = await context.newPage();
  await forger.goto(`${input.url}/ui/console.css`);
  report.forgedStatus = await forger.evaluate(async (path) => {
    const session = await (await fetch('/ui/session')).json();
    const res = await fetch(path, { method: 'POST', headers: { 'Content-Type': 'application/json',
      'X-CSRF-Token': session.csrf }, body: '{}' });
    return { role: session.role, status: res.status };
  }, `${configPath('production')}/enable`);
  await forger.close();
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
process.stdout.write(`${JSON.stringify(report)}\n`);
