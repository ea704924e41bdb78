// Drives the flagd console in headless Debian Chromium and reports what it saw as one
// JSON object on stdout; the Rust test (tests/tests/e2e/ui.rs) decides pass or fail.
//
// Input (stdin, JSON): { url, adminToken, readToken, evaluateToken, flag, otherFlag,
//   companies: [ids], reason, rollout, outDir }.
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
  for (const company of input.companies) {
    const res = await fetch(`${input.url}/ofrep/v1/evaluate/flags/${input.flag}`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${input.evaluateToken}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ context: { companyId: company } }),
    });
    const body = await res.json();
    values[company] = { value: body.value, reason: body.reason };
  }
  return values;
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
  await dialog.getByLabel('Reason').fill(input.reason);
  await dialog.getByRole('button', { name: 'Disable in production' }).click();
  await admin.getByRole('status').filter({ hasText: 'is disabled in production' }).waitFor();
  report.stateShown = await production.locator('p', { hasText: 'State:' }).textContent();
  report.evaluatedAfterDisable = await evaluate();
  await screenshot(admin, 'flag');

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
  report.readWriteControls = await reader.locator('main button, main input, main form').count();
  report.readSections = await reader.locator('section.env').count();
  await screenshot(reader, 'flag-read-only');
  await reader.close();
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
process.stdout.write(`${JSON.stringify(report)}\n`);
