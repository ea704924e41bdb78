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

async function api(method, path, body) {
  const headers = { Accept: 'application/json' };
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
      const pct = rolloutOf(configs[i][env], flag);
      return el('td', { 'data-env': env }, summary ? stateBadge(summary.state) : '—', pct === null ? null : ` · ${pct} %`);
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
      el('caption', {}, `${data.flags.length} flags; per environment: state · rollout % of the on variant`),
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
  return new Promise((resolve) => {
    const done = (value) => { dialog.close(); cleanup(); resolve(value); };
    const onSubmit = (event) => { event.preventDefault(); if ($('disable-form').reportValidity()) done(reason.value.trim()); };
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

function writeControls(flag, env, config) {
  const enabled = config.state === 'ENABLED';
  const toggle = el('button', { type: 'button', class: enabled ? 'danger' : 'primary', onclick: async () => {
    try {
      if (enabled) {
        const reason = await askReason(flag.key, env);
        if (reason === null) return;
        await api('POST', `${flagPath(flag.key, env)}/disable`, reason ? { reason } : {});
      } else {
        await api('POST', `${flagPath(flag.key, env)}/enable`, {});
      }
      // Announced once the page shows the new state, so what is said is what is seen.
      await render();
      say(`${flag.key} is ${enabled ? 'disabled' : 'enabled'} in ${env}.`);
    } catch (e) { complain(e.message); }
  } }, `${enabled ? 'Disable' : 'Enable'} in ${env}`);
  const id = `rollout-${env}`;
  const pct = el('input', { id, type: 'number', min: '0', max: '100', step: '0.001', required: true,
    value: rolloutOf(config, flag) ?? '' });
  const form = el('form', { onsubmit: async (event) => {
    event.preventDefault();
    try {
      const percentage = Number(pct.value);
      await api('PUT', `${flagPath(flag.key, env)}/rollout`, { percentage });
      await render();
      say(`${flag.key} rolls out to ${percentage} % in ${env}.`);
    } catch (e) { complain(e.message); }
  } },
  el('label', { for: id }, `Rollout % in ${env}`), pct,
  el('button', { type: 'submit' }, `Set rollout in ${env}`));
  const hasOnOff = roleVariant(flag, 'on') && roleVariant(flag, 'off');
  return [el('div', {}, toggle), hasOnOff ? form : null];
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
      el('p', {}, `Changed by ${config.updatedBy || '—'}`),
      canWrite() ? writeControls(flag, env, config) : null);
  });
  return [
    el('p', {}, el('a', { href: '#/flags' }, '← All flags')),
    el('h2', {}, flag.key),
    flag.description ? el('p', {}, flag.description) : null,
    el('p', {}, (flag.tags || []).map((t) => el('span', { class: 'tag' }, t))),
    el('div', { class: 'envs' }, sections),
  ];
}

// ---------------------------------------------------------------------------- shell

async function render() {
  const main = $('main');
  try {
    const match = location.hash.match(/^#\/flags\/(.+)$/);
    const content = match ? await flagPage(decodeURIComponent(match[1])) : await flagsPage();
    main.replaceChildren(...content.filter((node) => node !== null));
    main.dataset.page = match ? 'flag' : 'flags';
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
