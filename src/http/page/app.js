// smtpgate sandbox page. No external assets, no innerHTML with data: every
// value from a message or the auth log goes through textContent, and a
// message's HTML only ever goes into a sandboxed iframe (sandbox="", no
// scripts, unique origin) whose document carries its own CSP; the page's CSP
// (img-src data:) is inherited too, so remote content never loads.
'use strict';

const $ = (id) => document.getElementById(id);
const state = {
  auth: sessionStorage.getItem('sg-auth') || '',
  me: null,
  inbox: null,
  message: null,
  next: null,
  events: [],
  es: null,
};

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

async function api(path, opts = {}) {
  const headers = Object.assign({ 'X-Requested-With': 'smtpgate' }, opts.headers || {});
  if (state.auth) headers.Authorization = state.auth;
  const r = await fetch(path, Object.assign({}, opts, { headers, cache: 'no-store' }));
  if (r.status === 401) {
    showLogin('Sign in again (' + r.status + ').');
    throw new Error('unauthorized');
  }
  return r;
}

async function apiJson(path, opts) {
  const r = await api(path, opts);
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(body.error || ('HTTP ' + r.status));
  return body;
}

// ---- sign in ----

function showLogin(msg) {
  $('app').hidden = true;
  $('tabs').hidden = true;
  $('logout').hidden = true;
  $('login').hidden = false;
  $('login-error').textContent = msg || '';
  if (state.es) { state.es.close(); state.es = null; }
}

async function tryStart() {
  try {
    const r = await fetch('/api/v1/me', { headers: Object.assign({ 'X-Requested-With': 'smtpgate' },
      state.auth ? { Authorization: state.auth } : {}), cache: 'no-store' });
    if (!r.ok) { showLogin(state.auth ? 'Those credentials were refused.' : ''); return; }
    state.me = await r.json();
  } catch (e) {
    showLogin('Cannot reach the server.');
    return;
  }
  $('login').hidden = true;
  $('app').hidden = false;
  $('tabs').hidden = false;
  $('logout').hidden = !state.auth;
  $('whoami').textContent = state.me.admin ? 'admin' : state.me.login;
  await loadInboxes();
  connectEvents();
}

$('login-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const token = $('login-token').value.trim();
  const user = $('login-user').value;
  const pass = $('login-pass').value;
  if (token) state.auth = 'Bearer ' + token;
  else if (user) state.auth = 'Basic ' + btoa(unescape(encodeURIComponent(user + ':' + pass)));
  else state.auth = '';
  sessionStorage.setItem('sg-auth', state.auth);
  $('login-pass').value = '';
  $('login-token').value = '';
  tryStart();
});

$('logout').addEventListener('click', () => {
  state.auth = '';
  sessionStorage.removeItem('sg-auth');
  showLogin('');
});

// ---- tabs ----

for (const b of document.querySelectorAll('#tabs button')) {
  b.addEventListener('click', () => {
    for (const o of document.querySelectorAll('#tabs button')) o.classList.toggle('on', o === b);
    for (const t of ['mail', 'auth', 'faults']) $('tab-' + t).hidden = t !== b.dataset.tab;
    if (b.dataset.tab === 'auth') loadAuth();
    if (b.dataset.tab === 'faults') loadFaults();
  });
}

// ---- inboxes and messages ----

function fmtTime(ms) {
  if (!ms) return '';
  const d = new Date(ms);
  return d.toLocaleString();
}

function fmtSize(n) {
  if (n < 1024) return n + ' B';
  if (n < 1048576) return (n / 1024).toFixed(1) + ' KB';
  return (n / 1048576).toFixed(1) + ' MB';
}

async function loadInboxes() {
  const data = await apiJson('/api/v1/inboxes');
  const ul = $('inboxes');
  ul.textContent = '';
  for (const ib of data.inboxes) {
    const li = el('li');
    li.dataset.login = ib.login;
    li.appendChild(el('span', 'name', ib.login));
    li.appendChild(el('span', 'count', ib.messages));
    if (ib.login === state.inbox) li.classList.add('on');
    li.addEventListener('click', () => selectInbox(ib.login));
    ul.appendChild(li);
  }
  if (!state.inbox && data.inboxes.length) selectInbox(data.inboxes[0].login);
}

function selectInbox(login) {
  state.inbox = login;
  for (const li of $('inboxes').children) li.classList.toggle('on', li.dataset.login === login);
  loadMessages(false);
}

function messageItem(m, fresh) {
  const li = el('li', fresh ? 'new' : '');
  li.dataset.id = m.id;
  li.appendChild(el('div', 'subj', m.subject || '(no subject)'));
  li.appendChild(el('div', 'from', m.from || m.envelope_from || ''));
  const when = el('div', 'when', fmtTime(m.received_ms) + ' · ' + fmtSize(m.size) +
    (m.auth ? ' · ' + m.auth.mechanism : '') + (m.tls ? ' · ' + m.tls.version : ''));
  li.appendChild(when);
  if (state.message === m.id) li.classList.add('on');
  li.addEventListener('click', () => openMessage(m.id));
  return li;
}

async function loadMessages(append, freshId) {
  if (!state.inbox) return;
  const q = $('search').value.trim();
  let url = '/api/v1/inboxes/' + encodeURIComponent(state.inbox) + '/messages?limit=50';
  if (q) url += '&q=' + encodeURIComponent(q);
  if (append && state.next) url += '&before=' + encodeURIComponent(state.next);
  const data = await apiJson(url);
  const ul = $('messages');
  if (!append) ul.textContent = '';
  for (const m of data.messages) ul.appendChild(messageItem(m, m.id === freshId));
  state.next = data.next_before;
  $('more').hidden = !state.next;
}

$('more').addEventListener('click', () => loadMessages(true));
let searchTimer = null;
$('search').addEventListener('input', () => {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(() => loadMessages(false), 250);
});
$('delete-all').addEventListener('click', async () => {
  if (!state.inbox || !confirm('Delete every message of ' + state.inbox + '?')) return;
  await apiJson('/api/v1/inboxes/' + encodeURIComponent(state.inbox) + '/messages', { method: 'DELETE' });
  closeMessage();
  loadMessages(false);
  loadInboxes();
});

function closeMessage() {
  state.message = null;
  $('view').hidden = true;
  $('view-empty').hidden = false;
}

// The message HTML is wrapped in a document with its own CSP: nothing may
// load except data: images and inline styles; the iframe's empty sandbox
// attribute already blocks scripts, forms, popups and same-origin access.
const FRAME_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; font-src data:";

function frameDoc(html) {
  return '<!doctype html><html><head><meta charset="utf-8">' +
    '<meta http-equiv="Content-Security-Policy" content="' + FRAME_CSP + '">' +
    '<base target="_blank"></head><body>' + html + '</body></html>';
}

function showPart(which) {
  for (const b of document.querySelectorAll('#view .toolbar button[data-view]'))
    b.classList.toggle('on', b.dataset.view === which);
  $('v-html').hidden = which !== 'html';
  $('v-text').hidden = which !== 'text';
  $('v-headers').hidden = which !== 'headers';
  $('v-raw').hidden = which !== 'raw';
  if (which === 'raw' && state.message && !$('v-raw').dataset.loaded) loadRaw(state.message);
}

for (const b of document.querySelectorAll('#view .toolbar button[data-view]'))
  b.addEventListener('click', () => showPart(b.dataset.view));

async function loadRaw(id) {
  const r = await api('/api/v1/messages/' + encodeURIComponent(id) + '/raw');
  $('v-raw').textContent = await r.text();
  $('v-raw').dataset.loaded = '1';
}

function metaRow(table, k, v) {
  const tr = el('tr');
  tr.appendChild(el('td', '', k));
  tr.appendChild(el('td', '', v));
  table.appendChild(tr);
}

async function openMessage(id) {
  const m = await apiJson('/api/v1/messages/' + encodeURIComponent(id));
  state.message = id;
  for (const li of $('messages').children) li.classList.toggle('on', li.dataset.id === id);
  $('view-empty').hidden = true;
  $('view').hidden = false;
  $('v-subject').textContent = m.subject || '(no subject)';
  const meta = $('v-meta');
  meta.textContent = '';
  metaRow(meta, 'From', m.from || '');
  metaRow(meta, 'Envelope', (m.envelope_from || '<>') + ' → ' + (m.to || []).join(', '));
  metaRow(meta, 'Date', m.date || fmtTime(m.received_ms));
  metaRow(meta, 'Received', fmtTime(m.received_ms) + ' on ' + (m.listener || '?') + ' from ' + (m.client_ip || '?'));
  metaRow(meta, 'AUTH', m.auth ? m.auth.mechanism + ' as ' + m.auth.login : 'none');
  metaRow(meta, 'TLS', m.tls ? m.tls.version + ' ' + m.tls.cipher : 'none');
  metaRow(meta, 'Size', fmtSize(m.size));
  const frame = $('v-frame');
  frame.setAttribute('sandbox', '');
  if (m.html !== null && m.html !== undefined) {
    frame.srcdoc = frameDoc(m.html);
  } else {
    frame.srcdoc = frameDoc('<p style="color:#778">(no HTML part)</p>');
  }
  $('v-text').textContent = m.text !== null && m.text !== undefined ? m.text : '(no text part)';
  const hd = $('v-headers');
  hd.textContent = '';
  for (const h of m.headers || []) metaRow(hd, h.name, h.value);
  $('v-raw').textContent = '';
  delete $('v-raw').dataset.loaded;
  const atts = $('v-atts');
  atts.textContent = '';
  if (!m.attachments || !m.attachments.length) atts.appendChild(el('li', 'muted', 'none'));
  for (const a of m.attachments || []) {
    const li = el('li');
    const b = el('button', 'att', (a.name || '(unnamed)') + ' — ' + a.type + ', ' + fmtSize(a.size));
    b.addEventListener('click', () => download(id, a));
    li.appendChild(b);
    atts.appendChild(li);
  }
  showPart(m.html !== null && m.html !== undefined ? 'html' : 'text');
}

async function download(id, a) {
  const r = await api('/api/v1/messages/' + encodeURIComponent(id) + '/attachments/' + a.index);
  const blob = await r.blob();
  const url = URL.createObjectURL(blob);
  const link = el('a');
  link.href = url;
  link.download = a.name || 'attachment';
  document.body.appendChild(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 5000);
}

$('v-delete').addEventListener('click', async () => {
  if (!state.message) return;
  await apiJson('/api/v1/messages/' + encodeURIComponent(state.message), { method: 'DELETE' });
  closeMessage();
  loadMessages(false);
  loadInboxes();
});

// ---- auth log and chart ----

function authRow(e) {
  const tr = el('tr', e.result === 'ok' ? 'ok' : 'fail');
  if (e.injected) tr.classList.add('injected');
  tr.appendChild(el('td', '', new Date(e.time_ms).toLocaleTimeString()));
  tr.appendChild(el('td', '', e.client_ip));
  tr.appendChild(el('td', '', e.listener));
  tr.appendChild(el('td', '', e.tls ? (e.tls_version || 'yes') : 'no'));
  tr.appendChild(el('td', '', e.mechanism || '-'));
  tr.appendChild(el('td', '', e.login || '-'));
  tr.appendChild(el('td', 'result', e.result));
  tr.appendChild(el('td', 'reason', e.reason || ''));
  return tr;
}

async function loadAuth() {
  let url = '/api/v1/auth-events?limit=200';
  const login = $('af-login').value.trim();
  const result = $('af-result').value;
  if (login) url += '&login=' + encodeURIComponent(login);
  if (result) url += '&result=' + encodeURIComponent(result);
  const data = await apiJson(url);
  state.events = data.events;
  const tb = $('authlog').tBodies[0];
  tb.textContent = '';
  for (const e of data.events) tb.appendChild(authRow(e));
  drawChart();
}

$('af-apply').addEventListener('click', loadAuth);

const SVG = 'http://www.w3.org/2000/svg';
function svg(tag, attrs, text) {
  const e = document.createElementNS(SVG, tag);
  for (const k in attrs) e.setAttribute(k, attrs[k]);
  if (text !== undefined) e.textContent = text;
  return e;
}

// One row per mechanism, 24 time buckets across the events shown: a green
// bar for successes above the row's line, a red one for failures below.
function drawChart() {
  const c = $('chart');
  c.textContent = '';
  const ev = state.events.filter((e) => e.mechanism);
  const mechs = [...new Set(ev.map((e) => e.mechanism))].sort();
  if (!ev.length) {
    c.setAttribute('height', 40);
    c.appendChild(svg('text', { x: 10, y: 24, fill: '#778' }, 'no AUTH attempts yet'));
    return;
  }
  const rowH = 36, left = 130, width = 720, buckets = 24;
  c.setAttribute('height', mechs.length * rowH + 24);
  const t1 = Math.max(...ev.map((e) => e.time_ms)) + 1;
  const t0 = Math.min(...ev.map((e) => e.time_ms));
  const span = Math.max(t1 - t0, 60000);
  const bw = (width - left - 10) / buckets;
  let max = 1;
  const counts = {};
  for (const e of ev) {
    const b = Math.min(buckets - 1, Math.floor((e.time_ms - (t1 - span)) / span * buckets));
    const k = e.mechanism + '|' + b;
    counts[k] = counts[k] || { ok: 0, fail: 0 };
    counts[k][e.result === 'ok' ? 'ok' : 'fail']++;
    max = Math.max(max, counts[k].ok, counts[k].fail);
  }
  mechs.forEach((m, i) => {
    const mid = i * rowH + rowH / 2 + 4;
    c.appendChild(svg('text', { x: 4, y: mid + 4, 'font-size': 12, fill: '#1d2430' }, m));
    c.appendChild(svg('line', { x1: left, x2: width - 10, y1: mid, y2: mid, stroke: '#ccd' }));
    for (let b = 0; b < buckets; b++) {
      const v = counts[m + '|' + b];
      if (!v) continue;
      const x = left + b * bw + 1;
      const hOk = v.ok / max * (rowH / 2 - 3), hFail = v.fail / max * (rowH / 2 - 3);
      if (v.ok) c.appendChild(svg('rect', { x, y: mid - hOk, width: bw - 2, height: hOk, fill: '#2e9d49', class: 'bar-ok' },
      ));
      if (v.fail) c.appendChild(svg('rect', { x, y: mid, width: bw - 2, height: hFail, fill: '#d03040', class: 'bar-fail' }));
    }
  });
  const y = mechs.length * rowH + 18;
  c.appendChild(svg('text', { x: left, y, 'font-size': 11, fill: '#778' }, new Date(t1 - span).toLocaleTimeString()));
  c.appendChild(svg('text', { x: width - 80, y, 'font-size': 11, fill: '#778' }, new Date(t1).toLocaleTimeString()));
}

// ---- faults ----

function describeFault(f) {
  let a = f.action === 'drop' ? 'drop' : f.reply || f.action;
  if (f.close) a += ', then close';
  if (f.delay_ms) a = 'wait ' + f.delay_ms + ' ms' + (f.action === 'delay' ? '' : ', ' + a);
  return a;
}

async function loadFaults() {
  const data = await apiJson('/api/v1/faults');
  const tb = $('faults').tBodies[0];
  tb.textContent = '';
  for (const f of data.faults) {
    const tr = el('tr');
    tr.appendChild(el('td', '', f.id));
    tr.appendChild(el('td', '', f.stage));
    tr.appendChild(el('td', '', [f.listener && 'listener ' + f.listener, f.login && 'login ' + f.login].filter(Boolean).join(', ') || 'global'));
    tr.appendChild(el('td', '', describeFault(f)));
    let when = f.mode;
    if (f.mode === 'times') when = 'next ' + f.n + ' (' + f.remaining + ' left)';
    if (f.mode === 'every') when = 'every ' + f.n + 'th';
    if (f.mode === 'probability') when = 'p = ' + f.probability;
    tr.appendChild(el('td', '', when));
    tr.appendChild(el('td', '', f.matched));
    tr.appendChild(el('td', '', f.fired));
    const td = el('td');
    const b = el('button', '', 'Delete');
    b.addEventListener('click', async () => {
      await apiJson('/api/v1/faults/' + f.id, { method: 'DELETE' });
      loadFaults();
    });
    td.appendChild(b);
    tr.appendChild(td);
    tb.appendChild(tr);
  }
}

$('fault-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  $('fault-error').textContent = '';
  try {
    await apiJson('/api/v1/faults', {
      method: 'POST', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ spec: $('fault-spec').value }),
    });
    $('fault-spec').value = '';
  } catch (e) {
    $('fault-error').textContent = e.message;
  }
  loadFaults();
});

$('faults-clear').addEventListener('click', async () => {
  if (!confirm('Delete every fault rule?')) return;
  await apiJson('/api/v1/faults', { method: 'DELETE' });
  loadFaults();
});

// ---- live updates ----
// EventSource cannot send an Authorization header: trade the credentials
// for a single-use ticket first, and a new one on every reconnect.

async function connectEvents() {
  if (state.es) { state.es.close(); state.es = null; }
  let url = '/api/v1/events';
  try {
    if (state.auth) {
      const t = await apiJson('/api/v1/events/ticket', { method: 'POST' });
      url += '?ticket=' + encodeURIComponent(t.ticket);
    }
  } catch (e) {
    setTimeout(connectEvents, 5000);
    return;
  }
  const es = new EventSource(url);
  state.es = es;
  es.onopen = () => $('live').classList.add('on');
  es.onerror = () => {
    $('live').classList.remove('on');
    es.close();
    if (state.es === es) { state.es = null; setTimeout(connectEvents, 3000); }
  };
  es.addEventListener('message', (ev) => {
    const m = JSON.parse(ev.data);
    loadInboxes();
    if (m.login === state.inbox) loadMessages(false, m.id);
  });
  es.addEventListener('auth', (ev) => {
    const e = JSON.parse(ev.data);
    state.events.unshift(e);
    if (state.events.length > 500) state.events.pop();
    if (!$('tab-auth').hidden) {
      const tb = $('authlog').tBodies[0];
      tb.insertBefore(authRow(e), tb.firstChild);
      drawChart();
    }
  });
}

tryStart();
