// The flagd console: renders the Flags and Flag pages from the admin API, signed in by
// a session cookie. Plain DOM building (never innerHTML) so flag data cannot inject markup.
'use strict';

const PRODUCTION = 'production';
let session = null;

const $ = (id) => document.getElementById(id);

/** An element with attributes (`on…` functions become listeners) and children. */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith('on')) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? '' : value);
  }
  node.append(...children.flat().filter((c) => c !== null && c !== undefined));
  return node;
}

async function api(method, path, body, extra = {}) {
  const headers = { Accept: 'application/json', ...extra };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET' && session) headers['X-CSRF-Token'] = session.csrf;
  const res = await fetch(path, {
    method, headers, credentials: 'same-origin',
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  const data = text ? JSON.parse(text) : null;
  if (!res.ok) {
    const err = new Error(data && data.error ? data.error.message : `the server answered ${res.status}`);
    err.status = res.status;
    throw err;
  }
  return data;
}

function say(message) { $('status').textContent = message; $('problem').textContent = ''; }
function complain(message) { $('problem').textContent = message; $('status').textContent = ''; }
const canWrite = () => session && session.role === 'admin';
const count = (n, noun) => `${n} ${noun}${n === 1 ? '' : 's'}`;
const flagPath = (key, env) => `/api/v1/flags/${encodeURIComponent(key)}/environments/${encodeURIComponent(env)}`;

/** A flag's variant in `role` (on or off) as the server picks it: explicit, else the
 * variant named after the role (a flag without variants is a boolean with both). */
function roleVariant(flag, role) {
  const explicit = role === 'on' ? flag.onVariant : flag.offVariant;
  if (explicit) return explicit;
  const variants = flag.variants || {};
  return Object.keys(variants).length === 0 || role in variants ? role : null;
}

/** The percentage of the on variant in a configuration's fallthrough rollout, if it has one. */
function rolloutOf(config, flag) {
  const rollout = config && config.fallthrough && config.fallthrough.rollout;
  if (!rollout) return null;
  const on = rollout.variants.find((v) => v.variant === roleVariant(flag, 'on'));
  return on ? on.weight : null;
}

function stateBadge(state) {
  const on = state === 'ENABLED';
  return el('span', { class: on ? 'state-on' : 'state-off' }, on ? 'On' : 'Off');
}

async function environments() {
  const data = await api('GET', '/api/v1/environments');
  return data.environments.map((e) => e.name);
}

async function configsOf(flag, envs) {
  const entries = await Promise.all(envs.map(async (env) => [env, await api('GET', flagPath(flag.key, env))]));
  return Object.fromEntries(entries);
}

// ---------------------------------------------------------------------------- pages

function signInPage() {
  const token = el('input', { id: 'token', type: 'password', autocomplete: 'off', required: true });
  const form = el('form', { class: 'signin', onsubmit: async (event) => {
    event.preventDefault();
    try {
      await api('POST', '/ui/session', { token: token.value });
      token.value = '';
      await start();
    } catch (e) {
      complain(`Sign-in failed: ${e.message}`);
    }
  } },
  el('h2', {}, 'Sign in'),
  el('label', { for: 'token' }, 'Token (read or admin)'),
  token,
  el('button', { type: 'submit', class: 'primary' }, 'Sign in'));
  return [form];
}

async function flagsPage() {
  const [data, envs] = await Promise.all([api('GET', '/api/v1/flags'), environments()]);
  const configs = await Promise.all(data.flags.map((f) => configsOf(f, envs)));
  const rows = data.flags.map((flag, i) => {
    const cells = envs.map((env) => {
      const summary = flag.environments[env];
      const config = configs[i][env];
      const pct = rolloutOf(config, flag);
      return el('td', { 'data-env': env }, summary ? stateBadge(summary.state) : '—', pct === null ? null : ` · ${pct} %`,
        el('div', { class: 'counts', 'data-field': 'lists' },
          `${(config.allow || []).length} allowed · ${(config.deny || []).length} denied`),
        el('div', { class: 'changed', 'data-field': 'changed' }, `${config.updatedBy || '—'} · ${when(config.updatedAt)}`));
    });
    const tr = el('tr', { 'data-flag': flag.key },
      el('th', { scope: 'row' }, el('a', { href: `#/flags/${encodeURIComponent(flag.key)}` }, flag.key)),
      el('td', {}, (flag.tags || []).map((t) => el('span', { class: 'tag' }, t))),
      cells);
    tr.dataset.search = [flag.key, ...(flag.tags || [])].join(' ').toLowerCase();
    return tr;
  });
  const body = el('tbody', {}, rows);
  const search = el('input', { id: 'search', type: 'search', oninput: () => {
    const words = search.value.toLowerCase().split(/\s+/).filter(Boolean);
    for (const row of rows) row.hidden = !words.every((w) => row.dataset.search.includes(w));
  } });
  return [
    el('h2', {}, 'Flags'),
    el('div', { class: 'search' }, el('label', { for: 'search' }, 'Search by key or tag'), search),
    el('table', {},
      el('caption', {}, `${count(data.flags.length, 'flag')}; per environment: state · rollout % of the on variant, allowed · denied companies, last change (who · when, UTC)`),
      el('thead', {}, el('tr', {}, el('th', { scope: 'col' }, 'Flag'), el('th', { scope: 'col' }, 'Tags'),
        envs.map((env) => el('th', { scope: 'col' }, env)))),
      body),
  ];
}

/** Asks for a reason (required in production); resolves to it, or null when cancelled. */
function askReason(key, env) {
  const dialog = $('disable-dialog');
  const reason = $('disable-reason');
  $('disable-title').textContent = `Disable ${key} in ${env}`;
  $('disable-warning').textContent = env === PRODUCTION
    ? 'Every company in production gets the off variant. Say why: it goes to the audit log.'
    : 'Every company in this environment gets the off variant.';
  $('disable-confirm').textContent = `Disable in ${env}`;
  reason.value = '';
  reason.required = env === PRODUCTION;
  // A refusal of a blank reason holds until the text changes, or the form never submits.
  reason.oninput = () => reason.setCustomValidity('');
  return new Promise((resolve) => {
    const done = (value) => { dialog.close(); cleanup(); resolve(value); };
    const onSubmit = (event) => {
      event.preventDefault();
      // `required` takes spaces for a reason; the audit log would get none.
      reason.setCustomValidity(reason.required && !reason.value.trim() ? 'Say why the flag is disabled.' : '');
      if ($('disable-form').reportValidity()) done(reason.value.trim());
    };
    const onCancel = () => done(null);
    const onClose = () => { cleanup(); resolve(null); };
    function cleanup() {
      $('disable-form').removeEventListener('submit', onSubmit);
      $('disable-cancel').removeEventListener('click', onCancel);
      dialog.removeEventListener('close', onClose);
    }
    $('disable-form').addEventListener('submit', onSubmit);
    $('disable-cancel').addEventListener('click', onCancel);
    dialog.addEventListener('close', onClose);
    dialog.showModal();
    reason.focus();
  });
}

/** Whether the configuration is still the one the page shows. If someone else changed it, the
 * page shows the new state and says so instead of acting on what the user did not see. */
async function unchanged(flag, env, version) {
  const current = await api('GET', flagPath(flag.key, env));
  if (current.version === version) return true;
  await render();
  complain(`${flag.key} in ${env} was changed by ${current.updatedBy} since you opened it; nothing was applied. `
    + 'The page now shows its current state: check it and try again.');
  return false;
}

/** One quick operation on a shown configuration: refused if it changed meanwhile (checked first,
 * and enforced by the server through `If-Match`), then the page is redrawn and `done`
 * announced, so what is said is what is seen. */
async function quickWrite(flag, env, config, method, suffix, body, done) {
  try {
    if (!await unchanged(flag, env, config.version)) return;
    await api(method, `${flagPath(flag.key, env)}${suffix}`, body, { 'If-Match': `"${config.version}"` });
    await render();
    say(done);
  } catch (e) {
    if (e.status === 412) {
      await unchanged(flag, env, config.version);
    } else {
      complain(e.message);
    }
  }
}

/** Company ids typed into a field: separated by commas or spaces. */
const companyIds = (text) => text.split(/[\s,]+/).filter(Boolean);

const LISTS = {
  allow: { title: 'Allowed (always on)', verb: 'Allow', done: 'allowed' },
  deny: { title: 'Denied (always off)', verb: 'Deny', done: 'denied' },
};

/** A company list (allow or deny) of one environment, with add and remove for admins. */
function companyList(flag, env, config, list) {
  const { title, verb, done } = LISTS[list];
  const companies = config[list] || [];
  const items = companies.map((company) => el('li', { 'data-company': company }, company,
    canWrite() ? el('button', { type: 'button', class: 'small', 'aria-label': `Remove ${company} from ${list} list in ${env}`,
      onclick: () => quickWrite(flag, env, config, 'DELETE', `/${list}`, { companies: [company] },
        `${company} removed from the ${list} list in ${env}.`) }, 'Remove') : null));
  const id = `${list}-${env}`;
  const input = el('input', { id, type: 'text', inputmode: 'numeric', required: true, autocomplete: 'off' });
  const form = canWrite() ? el('form', { onsubmit: (event) => {
    event.preventDefault();
    const ids = companyIds(input.value);
    quickWrite(flag, env, config, 'POST', `/${list}`, { companies: ids }, `${ids.join(', ')} ${done} in ${env}.`);
  } },
  el('label', { for: id }, `Companies to ${list} in ${env}`), input,
  el('button', { type: 'submit' }, `${verb} in ${env}`)) : null;
  return el('div', { class: 'companies', 'data-list': list },
    el('h4', {}, title),
    companies.length ? el('ul', {}, items) : el('p', {}, 'None'),
    form);
}

function writeControls(flag, env, config) {
  const enabled = config.state === 'ENABLED';
  const toggle = el('button', { type: 'button', class: enabled ? 'danger' : 'primary', onclick: async () => {
    try {
      if (!enabled) {
        await quickWrite(flag, env, config, 'POST', '/enable', {}, `${flag.key} is enabled in ${env}.`);
        return;
      }
      // Checked before asking for a reason too, so nobody explains a change they would not make.
      if (!await unchanged(flag, env, config.version)) return;
      const reason = await askReason(flag.key, env);
      if (reason === null) return;
      await quickWrite(flag, env, config, 'POST', '/disable', reason ? { reason } : {},
        `${flag.key} is disabled in ${env}.`);
    } catch (e) { complain(e.message); }
  } }, `${enabled ? 'Disable' : 'Enable'} in ${env}`);
  const id = `rollout-${env}`;
  const pct = el('input', { id, type: 'number', min: '0', max: '100', step: '0.001', required: true,
    value: rolloutOf(config, flag) ?? '' });
  const form = el('form', { onsubmit: (event) => {
    event.preventDefault();
    const percentage = Number(pct.value);
    quickWrite(flag, env, config, 'PUT', '/rollout', { percentage },
      `${flag.key} rolls out to ${percentage} % in ${env}.`);
  } },
  el('label', { for: id }, `Rollout % in ${env}`), pct,
  el('button', { type: 'submit' }, `Set rollout in ${env}`));
  const hasOnOff = roleVariant(flag, 'on') && roleVariant(flag, 'off');
  return [el('div', {}, toggle), hasOnOff ? form : null];
}

/** `k=v` lines into context attributes; an error names the line to fix. */
function attributes(text) {
  const context = {};
  text.split('\n').forEach((line, i) => {
    if (!line.trim()) return;
    const at = line.indexOf('=');
    if (at < 1) throw new Error(`Attributes line ${i + 1} ("${line.trim()}") is not key=value: write one key=value per line.`);
    context[line.slice(0, at).trim()] = line.slice(at + 1).trim();
  });
  return context;
}

/** Evaluates the flag for a company as an application would, and shows the answer. */
function evaluateForm(flag, envs) {
  const env = el('select', { id: 'evaluate-env' }, envs.map((e) => el('option', { value: e, selected: e === PRODUCTION }, e)));
  const company = el('input', { id: 'evaluate-company', type: 'text', required: true, autocomplete: 'off' });
  const attrs = el('textarea', { id: 'evaluate-attributes', rows: '2', placeholder: 'plan=pro' });
  const result = el('dl', { id: 'evaluation', 'aria-live': 'polite' });
  const form = el('form', { id: 'evaluate-form', onsubmit: async (event) => {
    event.preventDefault();
    try {
      const context = { ...attributes(attrs.value), companyId: company.value.trim() };
      const answer = await api('POST', `${flagPath(flag.key, env.value)}/evaluate`, { context });
      const shown = [['Value', JSON.stringify(answer.value)], ['Variant', answer.variant ?? '—'], ['Reason', answer.reason]];
      if (answer.errorCode) shown.push(['Error', `${answer.errorCode}: ${answer.errorMessage || ''}`]);
      result.replaceChildren(...shown.flatMap(([name, value]) => [el('dt', {}, name), el('dd', { 'data-field': name.toLowerCase() }, value)]));
    } catch (e) { complain(e.message); }
  } },
  el('label', { for: 'evaluate-env' }, 'Environment'), env,
  el('label', { for: 'evaluate-company' }, 'Company id'), company,
  el('label', { for: 'evaluate-attributes' }, 'Other attributes (key=value, one per line)'), attrs,
  el('button', { type: 'submit' }, 'Evaluate'));
  return el('section', { class: 'panel', 'aria-labelledby': 'evaluate-title' },
    el('h3', { id: 'evaluate-title' }, 'Evaluate for a company'), form, result);
}

/** What promotion copies; the target keeps its state. */
const PROMOTED = ['allow', 'deny', 'rules', 'fallthrough'];

/** One side of the promotion diff: the copied keys, the changed ones marked. */
function diffSide(config, changed) {
  return el('pre', {}, PROMOTED.map((key) => {
    const line = `${key}: ${JSON.stringify(config[key] ?? null, null, 2)}\n`;
    return changed.includes(key) ? el('mark', { 'data-key': key }, `± ${line}`) : line;
  }));
}

/** Staging next to production, then a confirmation that copies staging's rules over. */
function promoteSection(flag, configs) {
  const [from, to] = ['staging', PRODUCTION];
  const changed = PROMOTED.filter((k) => JSON.stringify(configs[from][k] ?? null) !== JSON.stringify(configs[to][k] ?? null));
  const diff = el('div', { class: 'diff', id: 'promote-diff', hidden: true },
    el('div', {}, el('h4', {}, `${from} (copied)`), diffSide(configs[from], changed)),
    el('div', {}, el('h4', {}, `${to} now (keeps its state: ${configs[to].state})`), diffSide(configs[to], changed)),
    el('p', {}, changed.length ? `Changes in ${to}: ${changed.join(', ')} (marked ±).` : 'Nothing differs.'),
    el('button', { type: 'button', class: 'primary', onclick: async () => {
      try {
        if (!await unchanged(flag, from, configs[from].version) || !await unchanged(flag, to, configs[to].version)) return;
        // If-Match closes the gap between that check and the copy.
        await api('POST', `/api/v1/flags/${encodeURIComponent(flag.key)}/promote`, { from, to },
          { 'If-Match': `"${configs[to].version}"` });
        await render();
        say(`${flag.key}: ${from} promoted to ${to}.`);
      } catch (e) { complain(e.message); }
    } }, `Promote ${from} to ${to}`));
  const show = el('button', { type: 'button', 'aria-expanded': 'false', 'aria-controls': 'promote-diff', onclick: () => {
    diff.hidden = !diff.hidden;
    show.setAttribute('aria-expanded', String(!diff.hidden));
  } }, `Compare ${from} with ${to}`);
  return el('section', { class: 'panel', 'aria-labelledby': 'promote-title' },
    el('h3', { id: 'promote-title' }, `Promote ${from} → ${to}`), show, diff);
}

/** A condition as people read it: `plan in pro, team`. */
function conditionText(c) {
  const value = Array.isArray(c.value) ? c.value.join(', ') : String(c.value);
  return `${c.attribute} ${c.op} ${value}`;
}

/** What a rule matches; every clause given must hold, so they are joined by "and". */
function matchText(rule) {
  const clauses = [
    rule.companies && rule.companies.length ? `companies ${rule.companies.join(', ')}` : null,
    rule.segments && rule.segments.length ? `segments ${rule.segments.join(', ')}` : null,
    ...(rule.conditions || []).map(conditionText),
    rule.logic !== undefined && rule.logic !== null ? 'JSON Logic' : null,
  ].filter(Boolean);
  return clauses.length ? clauses.join(' and ') : 'everyone';
}

/** What a rule (or the fallthrough) serves. */
function serveText(serve) {
  if (!serve) return 'the off variant';
  if (serve.variant !== undefined) return `variant ${serve.variant}`;
  if (serve.rollout) return `rollout ${serve.rollout.variants.map((v) => `${v.variant} ${v.weight} %`).join(' / ')}`;
  return 'JSON Logic targeting';
}

/** The configuration's rules in evaluation order: the first that matches decides. */
function rulesList(config) {
  const rules = config.rules || [];
  const items = rules.map((rule, i) => el('li', { 'data-rule': String(i) },
    rule.name ? el('strong', {}, `${rule.name}: `) : null,
    el('span', { 'data-field': 'match' }, matchText(rule)), ' → ',
    el('span', { 'data-field': 'serve' }, serveText(rule.serve))));
  return el('div', { class: 'rules', 'data-list': 'rules' },
    el('h4', {}, 'Rules, in order (the first match decides)'),
    rules.length ? el('ol', {}, items) : el('p', {}, 'None'),
    el('p', {}, `Everyone else: ${serveText(config.fallthrough)}`));
}

async function flagPage(key) {
  const [flag, envs] = await Promise.all([api('GET', `/api/v1/flags/${encodeURIComponent(key)}`), environments()]);
  const configs = await configsOf(flag, envs);
  const sections = envs.map((env) => {
    const config = configs[env];
    const pct = rolloutOf(config, flag);
    return el('section', { class: 'env', 'aria-labelledby': `env-${env}`, 'data-env': env },
      el('h3', { id: `env-${env}` }, env),
      el('p', {}, 'State: ', stateBadge(config.state)),
      el('p', {}, 'Rollout: ', pct === null ? 'none' : `${pct} % get ${roleVariant(flag, 'on')}`),
      el('p', {}, `Changed by ${config.updatedBy || '—'} · version ${config.version}`),
      canWrite() ? writeControls(flag, env, config) : null,
      companyList(flag, env, config, 'allow'),
      companyList(flag, env, config, 'deny'),
      rulesList(config));
  });
  return [
    el('p', {}, el('a', { href: '#/flags' }, '← All flags')),
    el('h2', {}, flag.key),
    flag.description ? el('p', {}, flag.description) : null,
    el('p', {}, (flag.tags || []).map((t) => el('span', { class: 'tag' }, t))),
    el('div', { class: 'envs' }, sections),
    evaluateForm(flag, envs),
    canWrite() && configs.staging && configs[PRODUCTION] ? promoteSection(flag, configs) : null,
  ];
}

const when = (ms) => new Date(ms).toISOString().replace('T', ' ').slice(0, 19);

/** A before/after JSON pair, folded so the table stays readable. */
function change(event) {
  if (event.before === undefined && event.after === undefined) return '—';
  const side = (name, value) => el('div', {}, el('h4', {}, name), el('pre', {}, value === undefined || value === null ? '—' : JSON.stringify(value, null, 2)));
  return el('details', {}, el('summary', {}, 'Before / after'), el('div', { class: 'diff' }, side('Before', event.before), side('After', event.after)));
}

const AUDIT_FILTERS = [['flag', 'Flag'], ['environment', 'Environment'], ['actor', 'Actor']];

async function auditPage(query) {
  const params = new URLSearchParams(query);
  if (!params.has('limit')) params.set('limit', '50');
  const data = await api('GET', `/api/v1/audit?${params}`);
  const inputs = AUDIT_FILTERS.map(([name]) => el('input', { id: `audit-${name}`, type: 'text', value: params.get(name) || '' }));
  const form = el('form', { class: 'filters', onsubmit: (event) => {
    event.preventDefault();
    const next = new URLSearchParams();
    AUDIT_FILTERS.forEach(([name], i) => { if (inputs[i].value.trim()) next.set(name, inputs[i].value.trim()); });
    const target = `#/audit?${next}`;
    // The same filters again do not change the hash, so no hashchange would redraw.
    if (location.hash === target) render(); else location.hash = target;
  } },
  AUDIT_FILTERS.map(([name, label], i) => el('div', {}, el('label', { for: `audit-${name}` }, label), inputs[i])),
  el('button', { type: 'submit' }, 'Filter'));
  const rows = data.events.map((e) => el('tr', { 'data-action': e.action },
    el('td', {}, when(e.at)), el('td', { title: e.actorToken && `token ${e.actorToken}` }, e.actor), el('td', {}, e.action), el('td', {}, e.flag || e.segment || '—'),
    el('td', {}, e.environment || '—'), el('td', { 'data-field': 'reason' }, e.reason || '—'), el('td', {}, change(e))));
  const older = new URLSearchParams(params);
  if (data.nextCursor !== null && data.nextCursor !== undefined) older.set('cursor', data.nextCursor);
  return [
    el('h2', {}, 'Audit log'),
    form,
    el('div', { class: 'scroll' }, el('table', {},
      el('caption', {}, `${data.events.length} events, newest first`),
      el('thead', {}, el('tr', {}, ['When (UTC)', 'Actor', 'Action', 'Flag or segment', 'Environment', 'Reason', 'Change']
        .map((h) => el('th', { scope: 'col' }, h)))),
      el('tbody', {}, rows))),
    older.has('cursor') ? el('p', {}, el('a', { href: `#/audit?${older}` }, 'Older events')) : null,
  ];
}

/** Segment fields typed into the form, as the API takes them. */
function segmentBody(key, companies, description) {
  return { key, companies: companyIds(companies), description };
}

/** Creates or replaces a segment: replacing checks it is still the version listed. */
async function saveSegment(env, existing, body) {
  const base = `/api/v1/environments/${encodeURIComponent(env)}/segments`;
  if (!existing) return api('POST', base, body);
  const kept = { ...body, conditions: existing.conditions };
  return api('PUT', `${base}/${encodeURIComponent(body.key)}`, kept, { 'If-Match': `"${existing.version}"` });
}

function segmentForm(env, segments) {
  const key = el('input', { id: 'segment-key', type: 'text', required: true, autocomplete: 'off' });
  const companies = el('input', { id: 'segment-companies', type: 'text', autocomplete: 'off' });
  const description = el('input', { id: 'segment-description', type: 'text', autocomplete: 'off' });
  const form = el('form', { id: 'segment-form', onsubmit: async (event) => {
    event.preventDefault();
    const body = segmentBody(key.value.trim(), companies.value, description.value.trim());
    const existing = segments.find((s) => s.key === body.key);
    try {
      await saveSegment(env, existing, body);
      await render();
      say(`Segment ${body.key} ${existing ? 'replaced' : 'created'} in ${env}.`);
    } catch (e) { complain(`Segment ${body.key} was not saved: ${e.message}`); }
  } },
  el('label', { for: 'segment-key' }, 'Segment key'), key,
  el('label', { for: 'segment-companies' }, 'Companies (comma or space separated)'), companies,
  el('label', { for: 'segment-description' }, 'Description'), description,
  el('button', { type: 'submit', class: 'primary' }, `Save segment in ${env}`));
  return el('section', { class: 'panel', 'aria-labelledby': 'segment-form-title' },
    el('h3', { id: 'segment-form-title' }, `Create or replace a segment in ${env}`),
    el('p', {}, 'Saving an existing key replaces its companies and description; its conditions are kept.'), form);
}

async function deleteSegment(env, segment) {
  try {
    // The version shown: a segment someone changed since is not deleted unseen.
    await api('DELETE', `/api/v1/environments/${encodeURIComponent(env)}/segments/${encodeURIComponent(segment.key)}`,
      undefined, { 'If-Match': `"${segment.version}"` });
    await render();
    say(`Segment ${segment.key} deleted from ${env}.`);
  } catch (e) { complain(`Segment ${segment.key} was not deleted: ${e.message}`); }
}

async function segmentsPage(query) {
  const envs = await environments();
  const wanted = new URLSearchParams(query).get('env');
  const env = envs.includes(wanted) ? wanted : envs[0];
  const data = await api('GET', `/api/v1/environments/${encodeURIComponent(env)}/segments`);
  const picker = el('select', { id: 'segments-env', onchange: () => { location.hash = `#/segments?env=${encodeURIComponent(picker.value)}`; } },
    envs.map((e) => el('option', { value: e, selected: e === env }, e)));
  const rows = data.segments.map((s) => el('tr', { 'data-segment': s.key },
    el('th', { scope: 'row' }, s.key), el('td', {}, s.description || '—'),
    el('td', { 'data-field': 'companies', title: (s.companies || []).join(', ') }, String((s.companies || []).length)),
    el('td', {}, (s.conditions || []).length ? (s.conditions || []).map(conditionText).join(' and ') : '—'),
    canWrite() ? el('td', {}, el('button', { type: 'button', class: 'small danger', 'aria-label': `Delete segment ${s.key} in ${env}`,
      onclick: () => deleteSegment(env, s) }, 'Delete')) : null));
  const heads = ['Segment', 'Description', 'Companies', 'Conditions', ...(canWrite() ? ['Actions'] : [])];
  return [
    el('h2', {}, 'Segments'),
    el('div', { class: 'search' }, el('label', { for: 'segments-env' }, 'Environment'), picker),
    el('div', { class: 'scroll' }, el('table', {},
      el('caption', {}, `${count(data.segments.length, 'segment')} in ${env}`),
      el('thead', {}, el('tr', {}, heads.map((h) => el('th', { scope: 'col' }, h)))),
      el('tbody', {}, rows))),
    canWrite() ? segmentForm(env, data.segments) : null,
  ];
}

async function clusterPage() {
  const data = await api('GET', '/api/v1/cluster');
  // Heartbeats are stamped on the database's clock, which the browser's may be far from:
  // the answer says what time it is on that clock.
  const rows = data.replicas.map((r) => el('tr', { 'data-replica': r.id },
    el('td', {}, r.id, r.this ? ' (answered this page)' : ''), el('td', {}, r.address),
    el('td', { 'data-field': 'appliedSeq' }, String(r.appliedSeq)), el('td', { 'data-field': 'lag' }, String(r.lag)),
    el('td', {}, when(r.startedAt)),
    el('td', { 'data-field': 'lastSeen' }, `${Math.max(0, Math.round((data.now - r.lastSeen) / 1000))} s ago`)));
  return [
    el('h2', {}, 'Cluster'),
    el('div', { class: 'scroll' }, el('table', {},
      el('caption', {}, `${data.replicas.length} replicas in the cluster view (heard from within the server's --replica-memory); last committed change ${data.currentSeq}`),
      el('thead', {}, el('tr', {}, ['Replica', 'Address', 'Applied change', 'Lag (changes)', 'Started (UTC)', 'Last seen']
        .map((h) => el('th', { scope: 'col' }, h)))),
      el('tbody', {}, rows))),
  ];
}

// ---------------------------------------------------------------------------- shell

/** Hash routes: the first pattern that matches draws the page. */
const ROUTES = [
  [/^#\/flags\/(.+)$/, 'flag', (m) => flagPage(decodeURIComponent(m[1]))],
  [/^#\/audit(?:\?(.*))?$/, 'audit', (m) => auditPage(m[1] || '')],
  [/^#\/cluster$/, 'cluster', () => clusterPage()],
  [/^#\/segments(?:\?(.*))?$/, 'segments', (m) => segmentsPage(m[1] || '')],
  [/^/, 'flags', () => flagsPage()],
];

async function render() {
  const main = $('main');
  try {
    const [pattern, name, page] = ROUTES.find(([p]) => p.test(location.hash));
    const content = await page(location.hash.match(pattern));
    main.replaceChildren(...content.filter((node) => node !== null));
    main.dataset.page = name;
    // Lets a reader (or a test) tell the page drawn for this address from the one before it.
    main.dataset.route = location.hash;
  } catch (e) {
    if (e.status === 401) { await start(); return; }
    complain(e.message);
  }
}

async function start() {
  const current = await api('GET', '/ui/session');
  session = current.signedIn ? current : null;
  $('nav').hidden = !session;
  $('who').hidden = !session;
  if (!session) {
    $('main').replaceChildren(...signInPage());
    $('main').dataset.page = 'sign-in';
    return;
  }
  $('who-name').textContent = `${session.name} (${session.role})`;
  await render();
}

$('sign-out').addEventListener('click', async () => {
  await api('DELETE', '/ui/session');
  session = null;
  say('Signed out.');
  await start();
});
window.addEventListener('hashchange', () => { if (session) render(); });
start().catch((e) => complain(e.message));
