// smtpgate sandbox page. No external assets, no innerHTML with data: every
// value from a message or the auth log goes through textContent, and a
// message's HTML only ever goes into a sandboxed iframe (no allow-scripts, no
// allow-same-origin: scripts never run and the frame has a unique origin)
// whose document carries its own CSP; the page's CSP (img-src data:) is
// inherited too, so remote content never loads. Links in it open in a new tab
// (allow-popups allow-popups-to-escape-sandbox, rel="noopener noreferrer").
'use strict';

const $ = (id) => document.getElementById(id);

// Everything that belongs to one signed-in session. Sign-out (or a 401)
// replaces it whole and clears every element it filled: nothing of one
// account may be left on the screen for the next (issue 14 item 2).
function freshState() {
  return {
    me: null,
    inbox: null,
    message: null,
    detail: null,
    next: null,
    tag: '',
    events: [],
    es: null,
    esTimer: null,
    faultTimer: null,
    faultReload: null,
    inboxes: [],
  };
}
let state = freshState();
let auth = sessionStorage.getItem('sg-auth') || '';
// bumped on every sign-in and sign-out: a response that arrives for an
// older session is dropped instead of drawn
let generation = 0;

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

class Stale extends Error {}

async function api(path, opts = {}) {
  const gen = generation;
  const headers = Object.assign({ 'X-Requested-With': 'smtpgate' }, opts.headers || {});
  if (auth) headers.Authorization = auth;
  const r = await fetch(path, Object.assign({}, opts, { headers, cache: 'no-store' }));
  if (gen !== generation) throw new Stale('signed out meanwhile');
  if (r.status === 401) {
    signOut('Sign in again (' + r.status + ').');
    throw new Stale('unauthorized');
  }
  return r;
}

async function apiJson(path, opts) {
  const gen = generation;
  const r = await api(path, opts);
  const body = await r.json().catch(() => ({}));
  if (gen !== generation) throw new Stale('signed out meanwhile');
  if (!r.ok) throw new Error(body.error || ('HTTP ' + r.status));
  return body;
}

// unhandled rejections from a stale response are expected, not errors
window.addEventListener('unhandledrejection', (ev) => {
  if (ev.reason instanceof Stale) ev.preventDefault();
});

// ---- sign in / sign out ----

function clearSessionView() {
  for (const id of ['inboxes', 'messages', 'v-meta', 'v-headers', 'v-atts', 'v-tags', 'v-linklist',
    'v-checklist', 'chart', 'whoami', 'count', 'login-error', 'fault-error', 'v-subject', 'v-text',
    'v-raw', 'v-source', 'v-check-summary', 'retention', 'banner', 'tag-filter'])
    $(id).textContent = '';
  for (const tb of [$('authlog').tBodies[0], $('faults').tBodies[0]]) tb.textContent = '';
  for (const id of ['search', 'af-login', 'fault-spec', 'tag-input', 'login-user', 'login-pass', 'login-token'])
    $(id).value = '';
  $('af-result').value = '';
  delete $('v-raw').dataset.loaded;
  const frame = $('v-frame');
  frame.removeAttribute('srcdoc');
  frame.src = 'about:blank';
  $('view').hidden = true;
  $('view-empty').hidden = false;
  $('more').hidden = true;
  $('banner').hidden = true;
  $('retention').hidden = true;
  $('tag-filter').hidden = true;
  $('notify').hidden = true;
  for (const id of ['queue-total', 'queue-error', 'v-release-status']) if ($(id)) $(id).textContent = '';
  if ($('queue')) $('queue').tBodies[0].textContent = '';
  if ($('tab-queue')) $('tab-queue').hidden = true;
  if ($('tabbtn-queue')) $('tabbtn-queue').hidden = true;
  if ($('v-release')) $('v-release').hidden = true;
  if (typeof relayUi !== 'undefined') { clearInterval(relayUi.timer); relayUi.timer = null; relayUi.enabled = false; }
  selectTab('mail', true);
  setPane('inboxes');
  setWidth('');
}

function stopSession() {
  if (state.es) state.es.close();
  clearTimeout(state.esTimer);
  clearInterval(state.faultTimer);
  clearTimeout(state.faultReload);
  clearTimeout(searchTimer);
  $('live').classList.remove('on');
}

function showLogin(msg) {
  $('app').hidden = true;
  $('tabs').hidden = true;
  $('logout').hidden = true;
  $('login').hidden = false;
  $('login-error').textContent = msg || '';
}

function signOut(msg) {
  generation++;
  stopSession();
  state = freshState();
  auth = '';
  sessionStorage.removeItem('sg-auth');
  localStorage.removeItem('sg-notify');
  clearSessionView();
  showLogin(msg);
}

async function tryStart() {
  const gen = generation;
  let me;
  try {
    const r = await fetch('/api/v1/me', { headers: Object.assign({ 'X-Requested-With': 'smtpgate' },
      auth ? { Authorization: auth } : {}), cache: 'no-store' });
    if (gen !== generation) return;
    if (!r.ok) { showLogin(auth ? 'Those credentials were refused.' : ''); return; }
    me = await r.json();
  } catch (e) {
    showLogin('Cannot reach the server.');
    return;
  }
  if (gen !== generation) return;
  state.me = me;
  $('login').hidden = true;
  $('app').hidden = false;
  $('tabs').hidden = false;
  $('logout').hidden = !auth;
  $('notify').hidden = !('Notification' in window);
  notifyButton();
  $('whoami').textContent = me.admin ? 'admin' : me.login;
  showBanner(me);
  try {
    await loadInboxes(true);
  } catch (e) {
    if (!(e instanceof Stale)) $('count').textContent = e.message;
  }
  connectEvents();
}

function fmtAge(sec) {
  const units = [[86400, 'day'], [3600, 'hour'], [60, 'minute'], [1, 'second']];
  for (const [n, name] of units)
    if (sec >= n && sec % n === 0) return sec / n + ' ' + name + (sec / n === 1 ? '' : 's');
  return sec + ' seconds';
}

// What /api/v1/me says about the server: accept-any mode (a banner) and the
// retention limits (under the inboxes); 0 means no limit.
function showBanner(me) {
  const b = $('banner');
  if (me.accept_any) {
    b.textContent = 'Accept-any mode is on: any login and password is accepted with PLAIN, LOGIN ' +
      'and CRAM-MD5 and gets an inbox of its own; real accounts are still checked.';
    b.hidden = false;
  } else {
    b.hidden = true;
  }
  const ret = me.retention || {};
  const parts = [];
  if (ret.max_messages_per_inbox > 0) parts.push('the newest ' + ret.max_messages_per_inbox + ' messages per inbox are kept');
  if (ret.max_message_age > 0) parts.push('messages older than ' + fmtAge(ret.max_message_age) + ' are removed');
  $('retention').textContent = parts.length ? 'Retention: ' + parts.join('; ') + '.' : 'Retention: messages are kept until deleted.';
  $('retention').hidden = false;
}

$('login-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const token = $('login-token').value.trim();
  const user = $('login-user').value;
  const pass = $('login-pass').value;
  // a new sign-in starts from nothing, whatever was on the screen
  signOut('');
  if (token) auth = 'Bearer ' + token;
  else if (user) auth = 'Basic ' + btoa(unescape(encodeURIComponent(user + ':' + pass)));
  else auth = '';
  sessionStorage.setItem('sg-auth', auth);
  tryStart();
});

$('logout').addEventListener('click', () => signOut(''));

// ---- notifications (opt-in: permission is asked only from the button) ----

function notifyOn() {
  return localStorage.getItem('sg-notify') === '1' && 'Notification' in window &&
    Notification.permission === 'granted';
}

function notifyButton() {
  const b = $('notify');
  b.textContent = notifyOn() ? 'Notifications on' : 'Notify me';
  b.setAttribute('aria-pressed', notifyOn() ? 'true' : 'false');
}

$('notify').addEventListener('click', async () => {
  if (notifyOn()) {
    localStorage.removeItem('sg-notify');
  } else {
    const p = await Notification.requestPermission();
    if (p === 'granted') localStorage.setItem('sg-notify', '1');
  }
  notifyButton();
});

function notifyMail(m) {
  if (!notifyOn()) return;
  try {
    new Notification('New mail for ' + m.login, { body: fmtSize(m.size || 0), tag: 'sg-' + m.id });
  } catch (e) { /* some browsers allow notifications only from a service worker */ }
}

// ---- tabs and panes ----

function selectTab(tab, quiet) {
  for (const o of document.querySelectorAll('#tabs button')) o.classList.toggle('on', o.dataset.tab === tab);
  for (const t of ['mail', 'auth', 'faults']) $('tab-' + t).hidden = t !== tab;
  clearInterval(state.faultTimer);
  if (quiet) return;
  if (tab === 'auth') loadAuth();
  if (tab === 'faults') {
    loadFaults();
    // counters move with traffic the stream does not describe (MAIL, RCPT,
    // DATA stages): poll while the tab is shown
    state.faultTimer = setInterval(() => { if (!$('tab-faults').hidden) loadFaults(); }, 2000);
  }
}

for (const b of document.querySelectorAll('#tabs button'))
  b.addEventListener('click', () => selectTab(b.dataset.tab));

// On a narrow screen one pane shows at a time (CSS reads data-pane).
function setPane(p) {
  $('tab-mail').dataset.pane = p;
}
$('back-inboxes').addEventListener('click', () => { setPane('inboxes'); focusRow($('inboxes')); });
$('back-list').addEventListener('click', () => { setPane('list'); focusRow($('messages')); });

// ---- inboxes and messages ----

function fmtTime(ms) {
  if (!ms) return '';
  return new Date(ms).toLocaleString();
}

function fmtSize(n) {
  if (n < 1024) return n + ' B';
  if (n < 1048576) return (n / 1024).toFixed(1) + ' KB';
  return (n / 1048576).toFixed(1) + ' MB';
}

// rows of a listbox: one tab stop per list (the current row), arrows and j/k move
function rows(ul) {
  return [...ul.children].filter((li) => li.getAttribute('role') === 'option');
}

function setTabStop(ul, li) {
  for (const r of rows(ul)) r.tabIndex = r === li ? 0 : -1;
}

function focusRow(ul, li) {
  const rs = rows(ul);
  const target = li || rs.find((r) => r.classList.contains('on')) || rs[0];
  if (!target) return;
  setTabStop(ul, target);
  target.focus();
}

function makeRow(ul, li, open) {
  li.setAttribute('role', 'option');
  li.setAttribute('aria-selected', li.classList.contains('on') ? 'true' : 'false');
  li.tabIndex = -1;
  li.addEventListener('click', () => { setTabStop(ul, li); open(); });
  li.addEventListener('focus', () => setTabStop(ul, li));
  li.addEventListener('keydown', (ev) => {
    if (ev.altKey || ev.ctrlKey || ev.metaKey) return;
    const rs = rows(ul);
    const i = rs.indexOf(li);
    let to = null;
    if (ev.key === 'ArrowDown' || ev.key === 'j') to = rs[Math.min(i + 1, rs.length - 1)];
    else if (ev.key === 'ArrowUp' || ev.key === 'k') to = rs[Math.max(i - 1, 0)];
    else if (ev.key === 'Home') to = rs[0];
    else if (ev.key === 'End') to = rs[rs.length - 1];
    else if (ev.key === 'Enter' || ev.key === ' ') { ev.preventDefault(); open(true); return; }
    else if (ev.key === 'Delete' && ul.id === 'messages') { ev.preventDefault(); deleteMessage(li.dataset.id, li); return; }
    if (to) { ev.preventDefault(); focusRow(ul, to); }
  });
}

const ALL = '*';

async function loadInboxes(first) {
  const data = await apiJson('/api/v1/inboxes');
  state.inboxes = data.inboxes;
  const ul = $('inboxes');
  const hadFocus = ul.contains(document.activeElement) ? document.activeElement.dataset.login : null;
  ul.textContent = '';
  for (const ib of data.inboxes) {
    const li = el('li');
    li.dataset.login = ib.login;
    li.appendChild(el('span', 'name', ib.login));
    const c = el('span', 'count', ib.messages);
    if (typeof ib.unread === 'number' && ib.unread > 0) {
      c.textContent = '';
      c.appendChild(el('span', 'unread-n', ib.unread));
      c.appendChild(document.createTextNode(' / ' + ib.messages));
    }
    li.appendChild(c);
    if (ib.login === state.inbox) li.classList.add('on');
    makeRow(ul, li, (kb) => selectInbox(ib.login, kb));
    ul.appendChild(li);
  }
  if (state.me && state.me.admin && data.inboxes.length > 1) {
    // the admin searches every inbox at once through /api/v1/search
    const li = el('li', 'all');
    li.dataset.login = ALL;
    li.appendChild(el('span', 'name', 'All inboxes'));
    li.appendChild(el('span', 'count', data.inboxes.reduce((n, ib) => n + ib.messages, 0)));
    if (state.inbox === ALL) li.classList.add('on');
    makeRow(ul, li, (kb) => selectInbox(ALL, kb));
    ul.insertBefore(li, ul.firstChild);
  }
  if (!ul.children.length) ul.appendChild(el('li', 'empty muted', 'No inbox yet.'));
  const cur = rows(ul).find((r) => r.dataset.login === (hadFocus || state.inbox)) || rows(ul)[0];
  if (cur) setTabStop(ul, cur);
  if (hadFocus && cur) cur.focus();
  if (first && !state.inbox && data.inboxes.length) {
    // one inbox (an account): straight to its list; several (admin): pick one
    await selectInbox(data.inboxes[0].login, false, data.inboxes.length > 1);
  }
}

async function selectInbox(login, keyboard, stay) {
  if (state.inbox !== login) {
    state.inbox = login;
    state.next = null;
    closeMessage();
  }
  for (const li of rows($('inboxes'))) {
    li.classList.toggle('on', li.dataset.login === login);
    li.setAttribute('aria-selected', li.dataset.login === login ? 'true' : 'false');
  }
  $('delete-all').disabled = login === ALL;
  if (!stay) setPane('list');
  await loadMessages(false);
  if (keyboard) focusRow($('messages'));
}

function tagChip(t, onRemove, onClick) {
  const c = el('span', 'chip');
  if (onClick) {
    const b = el('button', 'tname', t);
    b.type = 'button';
    b.title = 'Show only messages tagged ' + t;
    b.addEventListener('click', (ev) => { ev.stopPropagation(); onClick(t); });
    c.appendChild(b);
  } else {
    c.appendChild(el('span', 'tname', t));
  }
  if (onRemove) {
    const x = el('button', 'rm', '\u00d7');
    x.type = 'button';
    x.title = 'Remove the tag ' + t;
    x.setAttribute('aria-label', 'Remove the tag ' + t);
    x.addEventListener('click', (ev) => { ev.stopPropagation(); onRemove(t); });
    c.appendChild(x);
  }
  return c;
}

function messageItem(m, fresh) {
  const li = el('li', fresh ? 'new' : '');
  li.dataset.id = m.id;
  if (m.read === false) li.classList.add('unread');
  li.appendChild(el('div', 'subj', m.subject || '(no subject)'));
  li.appendChild(el('div', 'from', (state.inbox === ALL && m.inbox ? m.inbox + ' \u00b7 ' : '') + (m.from || m.envelope_from || '')));
  const when = el('div', 'when', fmtTime(m.received_ms) + ' · ' + fmtSize(m.size) +
    (m.auth ? ' · ' + m.auth.mechanism : '') + (m.tls ? ' · ' + m.tls.version : ''));
  li.appendChild(when);
  if (m.tags && m.tags.length) {
    const t = el('div', 'tags');
    for (const tag of m.tags) t.appendChild(tagChip(tag, null, filterTag));
    li.appendChild(t);
  }
  if (state.message === m.id) li.classList.add('on');
  li.setAttribute('aria-label', (m.read === false ? 'unread: ' : '') + (m.subject || '(no subject)'));
  makeRow($('messages'), li, () => openMessage(m.id));
  return li;
}

function filterTag(t) {
  state.tag = t;
  showTagFilter();
  loadMessages(false);
}

function showTagFilter() {
  const f = $('tag-filter');
  f.textContent = '';
  f.hidden = !state.tag;
  if (!state.tag) return;
  f.appendChild(document.createTextNode('tagged '));
  f.appendChild(tagChip(state.tag, () => { state.tag = ''; showTagFilter(); loadMessages(false); }));
}

async function loadMessages(append, freshId) {
  if (!state.inbox) return;
  const q = $('search').value.trim();
  let url = state.inbox === ALL ? '/api/v1/search?limit=50'
    : '/api/v1/inboxes/' + encodeURIComponent(state.inbox) + '/messages?limit=50';
  if (q) url += '&q=' + encodeURIComponent(q);
  if (state.tag) url += '&tag=' + encodeURIComponent(state.tag);
  if (append && state.next) url += '&before=' + encodeURIComponent(state.next);
  const ul = $('messages');
  let data;
  try {
    data = await apiJson(url);
  } catch (e) {
    if (e instanceof Stale) throw e;
    ul.textContent = '';
    ul.appendChild(el('li', 'empty error', e.message));
    $('count').textContent = '';
    return;
  }
  const hadFocus = ul.contains(document.activeElement) ? document.activeElement.dataset.id : null;
  if (!append) ul.textContent = '';
  for (const m of data.messages) ul.appendChild(messageItem(m, m.id === freshId));
  state.next = data.next_before;
  $('more').hidden = !state.next;
  const total = typeof data.total === 'number' ? data.total : data.messages.length;
  const filtered = q || state.tag;
  $('count').textContent = filtered ? total + (total === 1 ? ' match' : ' matches')
    : total + (total === 1 ? ' message' : ' messages');
  if (!rows(ul).length) {
    ul.appendChild(el('li', 'empty', filtered
      ? 'No message matches ' + (q ? '\u201c' + q + '\u201d' : '') + (q && state.tag ? ' ' : '') +
        (state.tag ? 'tagged ' + state.tag : '') + '.'
      : state.inbox === ALL ? 'No message in any inbox yet.'
        : 'This inbox is empty: mail sent to ' + state.inbox + ' shows up here as it arrives.'));
    return;
  }
  const cur = rows(ul).find((r) => r.dataset.id === (hadFocus || state.message)) || rows(ul)[0];
  setTabStop(ul, cur);
  if (hadFocus) cur.focus();
}

$('more').addEventListener('click', () => loadMessages(true));
let searchTimer = null;
$('search').addEventListener('input', () => {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(() => loadMessages(false), 250);
});
$('search').addEventListener('keydown', (ev) => {
  if (ev.key === 'Enter') { clearTimeout(searchTimer); loadMessages(false); }
  if (ev.key === 'ArrowDown') { ev.preventDefault(); focusRow($('messages')); }
  if (ev.key === 'Escape') { $('search').value = ''; loadMessages(false); }
});
$('delete-all').addEventListener('click', async () => {
  if (!state.inbox || state.inbox === ALL || !confirm('Delete every message of ' + state.inbox + '?')) return;
  await apiJson('/api/v1/inboxes/' + encodeURIComponent(state.inbox) + '/messages', { method: 'DELETE' });
  closeMessage();
  loadMessages(false);
  loadInboxes();
});

// keys anywhere outside a text field: / search, j/k the message list
document.addEventListener('keydown', (ev) => {
  if (ev.defaultPrevented || ev.altKey || ev.ctrlKey || ev.metaKey || $('app').hidden) return;
  const t = ev.target;
  if (t && (t.tagName === 'INPUT' || t.tagName === 'SELECT' || t.tagName === 'TEXTAREA')) return;
  if (ev.key === '/' && !$('tab-mail').hidden) {
    ev.preventDefault();
    setPane('list');
    $('search').focus();
    $('search').select();
  } else if ((ev.key === 'j' || ev.key === 'k') && !$('tab-mail').hidden && !(t && t.getAttribute('role') === 'option')) {
    ev.preventDefault();
    focusRow($('messages'));
  } else if (ev.key === 'Delete' && state.message && $('view').contains(t)) {
    ev.preventDefault();
    deleteMessage(state.message);
  }
});

function closeMessage() {
  state.message = null;
  state.detail = null;
  $('view').hidden = true;
  $('view-empty').hidden = false;
  const frame = $('v-frame');
  frame.removeAttribute('srcdoc');
  for (const id of ['v-subject', 'v-meta', 'v-text', 'v-source', 'v-raw', 'v-headers', 'v-atts', 'v-tags',
    'v-linklist', 'v-checklist', 'v-check-summary'])
    $(id).textContent = '';
  delete $('v-linklist').dataset.for;
  delete $('v-checklist').dataset.for;
  if ($('tab-mail').dataset.pane === 'view') setPane('list');
}

// The message HTML goes into a document with its own CSP: nothing may load
// except data: images and inline styles. It is parsed with DOMParser first
// (an inert document: no script runs, nothing loads) to give every link
// target=_blank and rel="noopener noreferrer" and to drop links that are not
// http(s)/mailto, then serialised into srcdoc.
const FRAME_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; font-src data:";
const LINK_OK = /^(https?:|mailto:)/i;

function parseHtml(html) {
  return new DOMParser().parseFromString(html, 'text/html');
}

function messageLinks(doc) {
  const out = [];
  for (const a of doc.querySelectorAll('a[href], area[href]')) {
    const href = a.getAttribute('href').trim();
    out.push({ href, text: (a.textContent || a.getAttribute('alt') || '').trim().replace(/\s+/g, ' '), ok: LINK_OK.test(href) });
  }
  return out;
}

function frameDoc(html) {
  const doc = parseHtml(html);
  for (const s of doc.querySelectorAll('script, base, meta[http-equiv]')) s.remove();
  for (const a of doc.querySelectorAll('a[href], area[href]')) {
    if (!LINK_OK.test(a.getAttribute('href').trim())) {
      a.removeAttribute('href');
      continue;
    }
    a.setAttribute('target', '_blank');
    a.setAttribute('rel', 'noopener noreferrer');
  }
  for (const f of doc.querySelectorAll('form')) f.removeAttribute('action');
  const meta = doc.createElement('meta');
  meta.setAttribute('http-equiv', 'Content-Security-Policy');
  meta.setAttribute('content', FRAME_CSP);
  const cs = doc.createElement('meta');
  cs.setAttribute('charset', 'utf-8');
  doc.head.prepend(cs, meta);
  return '<!doctype html>' + doc.documentElement.outerHTML;
}

const PARTS = ['html', 'source', 'text', 'links', 'check', 'headers', 'raw'];

function showPart(which) {
  for (const b of document.querySelectorAll('#v-views button[data-view]'))
    b.classList.toggle('on', b.dataset.view === which);
  for (const p of PARTS) $(p === 'headers' ? 'v-headers-box' : 'v-' + p).hidden = p !== which;
  if (which === 'raw' && state.message && !$('v-raw').dataset.loaded) loadRaw(state.message);
  if (which === 'check' && state.message) loadCheck(state.message);
  if (which === 'links' && state.message) loadLinks(state.message);
}

for (const b of document.querySelectorAll('#v-views button[data-view]'))
  b.addEventListener('click', () => showPart(b.dataset.view));

function setWidth(w) {
  const f = $('v-frame');
  for (const b of document.querySelectorAll('#v-widths button'))
    b.classList.toggle('on', b.dataset.width === w);
  f.classList.toggle('fixed', !!w);
  f.style.width = w ? w + 'px' : '';
}
for (const b of document.querySelectorAll('#v-widths button'))
  b.addEventListener('click', () => setWidth(b.dataset.width));

async function loadRaw(id) {
  const r = await api('/api/v1/messages/' + encodeURIComponent(id) + '/raw');
  const text = await r.text();
  if (state.message !== id) return;
  $('v-raw').textContent = text;
  $('v-raw').dataset.loaded = '1';
}

// GET one of a message's analyses (links, html-check): the JSON, or null
// (with the reason in why.text) when the server has no such endpoint.
async function analysis(id, what, why) {
  const r = await api('/api/v1/messages/' + encodeURIComponent(id) + '/' + what);
  const body = await r.json().catch(() => ({}));
  if (r.ok) return body;
  why.text = r.status === 404 && body.error !== 'no such message' ? 'not offered by this server'
    : (body.error || ('HTTP ' + r.status));
  return null;
}

// The HTML check: the message's HTML and CSS features that common mail
// clients lack, from the data file shipped with the server.
async function loadCheck(id) {
  const list = $('v-checklist');
  const sum = $('v-check-summary');
  if (list.dataset.for === id) return;
  list.textContent = '';
  sum.textContent = 'Checking\u2026';
  const why = {};
  let data;
  try {
    data = await analysis(id, 'html-check', why);
  } catch (e) {
    if (!(e instanceof Stale)) sum.textContent = e.message;
    return;
  }
  if (state.message !== id) return;
  if (!data) { sum.textContent = 'No HTML check: ' + why.text + '.'; return; }
  list.dataset.for = id;
  const items = data.features || [];
  const hasHtml = state.detail && state.detail.html !== null && state.detail.html !== undefined;
  sum.textContent = !hasHtml ? 'The message has no HTML part.'
    : items.length ? items.length + ' feature' + (items.length === 1 ? '' : 's') +
      ' of this message that some mail clients do not support:'
      : 'Nothing found that common mail clients lack.';
  if (data.note) sum.textContent += ' (' + data.note + ')';
  for (const f of items) {
    const li = el('li');
    li.dataset.feature = f.id || '';
    li.appendChild(el('strong', '', f.title || f.id || '?'));
    if (typeof f.count === 'number') li.appendChild(el('span', 'muted', ' \u00d7' + f.count));
    if (f.unsupported && f.unsupported.length) li.appendChild(el('div', '', 'not supported: ' + f.unsupported.join(', ')));
    if (f.partial && f.partial.length) li.appendChild(el('div', 'muted', 'partly supported: ' + f.partial.join(', ')));
    list.appendChild(li);
  }
}

// The link list: every link of the message with its target, from the
// server (HTML and text parts), or from the HTML here when the server does
// not offer it. Nothing is fetched.
async function loadLinks(id) {
  const ll = $('v-linklist');
  if (ll.dataset.for === id) return;
  const why = {};
  let links = null;
  try {
    const data = await analysis(id, 'links', why);
    if (data) links = data.links.map((l) => ({ href: l.url, text: l.text, source: l.source }));
  } catch (e) {
    if (e instanceof Stale) return;
  }
  if (state.message !== id) return;
  if (!links) {
    const d = state.detail;
    links = d && d.html !== null && d.html !== undefined ? messageLinks(parseHtml(d.html)) : [];
  }
  ll.dataset.for = id;
  ll.textContent = '';
  if (!links.length) ll.appendChild(el('li', 'muted', 'No links.'));
  for (const l of links) {
    const li = el('li');
    li.appendChild(el('div', 'href', l.href));
    if (l.text && l.text !== l.href) li.appendChild(el('div', 'muted', '\u201c' + l.text + '\u201d'));
    if (l.source === 'text') li.appendChild(el('div', 'muted small', 'in the text part'));
    if (!LINK_OK.test(l.href.trim())) li.appendChild(el('div', 'error', 'not http(s) or mailto: not clickable in the preview'));
    ll.appendChild(li);
  }
}

// HTML source, escaped (textContent only) and lightly coloured: tags,
// attribute names, attribute values and comments.
function highlight(pre, html) {
  pre.textContent = '';
  const re = /<!--[\s\S]*?(?:-->|$)|<\/?[A-Za-z][^\s/>]*|\/?>|([A-Za-z_:][-A-Za-z0-9_:.]*)(\s*=\s*)("[^"]*"|'[^']*'|[^\s>]+)?/g;
  let last = 0;
  let inTag = false;
  const add = (cls, s) => {
    if (!s) return;
    if (!cls) { pre.appendChild(document.createTextNode(s)); return; }
    pre.appendChild(el('span', cls, s));
  };
  let m;
  while ((m = re.exec(html)) !== null) {
    const s = m[0];
    const isAttr = m[1] !== undefined;
    if (isAttr && !inTag) continue;
    add('', html.slice(last, m.index));
    if (s.startsWith('<!--')) add('c', s);
    else if (s.startsWith('<')) { add('t', s); inTag = true; }
    else if (s.endsWith('>') && !isAttr) { add('t', s); inTag = false; }
    else { add('a', m[1]); add('', m[2]); add('v', m[3] || ''); }
    last = m.index + s.length;
  }
  add('', html.slice(last));
}

function metaRow(table, k, v) {
  const tr = el('tr');
  tr.appendChild(el('td', '', k));
  tr.appendChild(el('td', '', v));
  table.appendChild(tr);
}

function showTags(m) {
  const box = $('v-tags');
  box.textContent = '';
  for (const t of m.tags || []) box.appendChild(tagChip(t, (x) => setTags(m.id, (m.tags || []).filter((y) => y !== x)), filterTag));
}

async function setTags(id, tags) {
  const r = await apiJson('/api/v1/messages/' + encodeURIComponent(id) + '/tags', {
    method: 'PUT', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ tags }),
  });
  if (state.detail && state.detail.id === id) {
    state.detail.tags = r.tags;
    showTags(state.detail);
  }
  await loadMessages(false);
}

$('tag-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const d = state.detail;
  const t = $('tag-input').value.trim();
  if (!d || !t) return;
  try {
    await setTags(d.id, [...new Set([...(d.tags || []), t])]);
    $('tag-input').value = '';
  } catch (e) {
    if (!(e instanceof Stale)) alert(e.message);
  }
});

$('v-unread').addEventListener('click', async () => {
  if (!state.message) return;
  await apiJson('/api/v1/messages/' + encodeURIComponent(state.message) + '/read', {
    method: 'PUT', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ read: false }),
  });
  await loadMessages(false);
  loadInboxes();
});

async function openMessage(id) {
  const m = await apiJson('/api/v1/messages/' + encodeURIComponent(id));
  state.message = id;
  state.detail = m;
  for (const li of rows($('messages'))) {
    li.classList.toggle('on', li.dataset.id === id);
    li.setAttribute('aria-selected', li.dataset.id === id ? 'true' : 'false');
    // the server marks a message read when it is opened
    if (li.dataset.id === id) li.classList.remove('unread');
  }
  setPane('view');
  $('view-empty').hidden = true;
  $('view').hidden = false;
  $('v-subject').textContent = m.subject || '(no subject)';
  const meta = $('v-meta');
  meta.textContent = '';
  metaRow(meta, 'From', m.from || '');
  metaRow(meta, 'Envelope', (m.envelope_from || '<>') + ' \u2192 ' + (m.to || []).join(', '));
  metaRow(meta, 'Date', m.date || fmtTime(m.received_ms));
  metaRow(meta, 'Received', fmtTime(m.received_ms) + ' on ' + (m.listener || '?') + ' from ' + (m.client_ip || '?'));
  metaRow(meta, 'AUTH', m.auth ? m.auth.mechanism + ' as ' + m.auth.login : 'none');
  metaRow(meta, 'TLS', m.tls ? m.tls.version + ' ' + m.tls.cipher : 'none');
  metaRow(meta, 'Size', fmtSize(m.size));
  if (m.degraded && m.notes && m.notes.length) metaRow(meta, 'Note', m.notes.join('; '));
  loadSpam(id);
  showTags(m);
  const hasHtml = m.html !== null && m.html !== undefined;
  const frame = $('v-frame');
  frame.setAttribute('sandbox', 'allow-popups allow-popups-to-escape-sandbox');
  frame.srcdoc = frameDoc(hasHtml ? m.html : '<p style="color:#778">(no HTML part)</p>');
  if (hasHtml) highlight($('v-source'), m.html);
  else $('v-source').textContent = '(no HTML part)';
  $('v-linklist').textContent = '';
  delete $('v-linklist').dataset.for;
  delete $('v-checklist').dataset.for;
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
    const b = el('button', 'att', (a.name || '(unnamed)') + ' \u2014 ' + a.type + ', ' + fmtSize(a.size));
    b.addEventListener('click', () => download(id, a));
    li.appendChild(b);
    atts.appendChild(li);
  }
  showPart(hasHtml ? 'html' : 'text');
  // one pane at a time (narrow screen): the row that had the focus is gone
  const a = document.activeElement;
  if (a && $('messages').contains(a) && getComputedStyle($('list-pane')).display === 'none') $('view').focus();
  loadInboxes();
}

// SpamAssassin's score when the server has spamd_address (a row in the
// meta table; nothing when it is off).
async function loadSpam(id) {
  let data;
  try {
    const r = await api('/api/v1/messages/' + encodeURIComponent(id) + '/spam');
    data = await r.json().catch(() => ({}));
    if (!r.ok) data = r.status === 502 ? { enabled: true, note: data.error || 'spamd failed' } : null;
  } catch (e) {
    return;
  }
  if (!data || !data.enabled || state.message !== id) return;
  metaRow($('v-meta'), 'Spam score', typeof data.score === 'number'
    ? data.score.toFixed(1) + ' (threshold ' + Number(data.threshold).toFixed(1) + ': ' + (data.spam ? 'spam' : 'not spam') + ')'
    : 'not scored: ' + (data.note || '?'));
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

async function deleteMessage(id, row) {
  if (!id) return;
  const li = row || rows($('messages')).find((r) => r.dataset.id === id);
  const subj = li ? li.querySelector('.subj').textContent : (state.detail ? state.detail.subject : id);
  if (!confirm('Delete the message \u201c' + subj + '\u201d?')) {
    if (li) li.focus();
    return;
  }
  const rs = rows($('messages'));
  const i = li ? rs.indexOf(li) : -1;
  await apiJson('/api/v1/messages/' + encodeURIComponent(id), { method: 'DELETE' });
  if (state.message === id) closeMessage();
  await loadMessages(false);
  const after = rows($('messages'));
  if (after.length && i >= 0) focusRow($('messages'), after[Math.min(i, after.length - 1)]);
  loadInboxes();
}

$('v-delete').addEventListener('click', () => deleteMessage(state.message));

// ---- auth log and chart ----

function authRow(e) {
  const tr = el('tr', e.result === 'ok' || e.result === 'accepted_any' ? 'ok' : 'fail');
  if (e.injected) tr.classList.add('injected');
  tr.appendChild(el('td', '', new Date(e.time_ms).toLocaleTimeString()));
  tr.appendChild(el('td', '', e.client_ip));
  tr.appendChild(el('td', '', e.listener));
  tr.appendChild(el('td', '', e.tls ? (e.tls_version || 'yes') : 'no'));
  tr.appendChild(el('td', '', e.mechanism || '-'));
  tr.appendChild(el('td', '', e.login || '-'));
  tr.appendChild(el('td', 'result', e.result));
  const reason = el('td', 'reason');
  // an injected reply says so once, whatever reason the server logged
  if (e.injected) {
    reason.appendChild(el('span', 'injected', 'injected by a fault rule'));
  } else {
    reason.textContent = e.reason || '';
  }
  tr.appendChild(reason);
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
  if (!data.events.length) {
    const tr = el('tr');
    const td = el('td', 'muted', 'No AUTH attempt' + (login || result ? ' matches the filter.' : ' yet.'));
    td.colSpan = 8;
    tr.appendChild(td);
    tb.appendChild(tr);
  }
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
  const size = (h) => { c.setAttribute('height', h); c.setAttribute('viewBox', '0 0 720 ' + h); };
  if (!ev.length) {
    size(40);
    c.appendChild(svg('text', { x: 10, y: 24, fill: '#778' }, 'no AUTH attempts yet'));
    return;
  }
  const rowH = 36, left = 130, width = 720, buckets = 24;
  size(mechs.length * rowH + 24);
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
    counts[k][e.result === 'ok' || e.result === 'accepted_any' ? 'ok' : 'fail']++;
    max = Math.max(max, counts[k].ok, counts[k].fail);
  }
  mechs.forEach((m, i) => {
    const mid = i * rowH + rowH / 2 + 4;
    c.appendChild(svg('text', { x: 4, y: mid + 4, 'font-size': 12, fill: 'currentColor' }, m));
    c.appendChild(svg('line', { x1: left, x2: width - 10, y1: mid, y2: mid, stroke: '#889' }));
    for (let b = 0; b < buckets; b++) {
      const v = counts[m + '|' + b];
      if (!v) continue;
      const x = left + b * bw + 1;
      const hOk = v.ok / max * (rowH / 2 - 3), hFail = v.fail / max * (rowH / 2 - 3);
      if (v.ok) c.appendChild(svg('rect', { x, y: mid - hOk, width: bw - 2, height: hOk, fill: '#2e9d49', class: 'bar-ok' }));
      if (v.fail) c.appendChild(svg('rect', { x, y: mid, width: bw - 2, height: hFail, fill: '#d03040', class: 'bar-fail' }));
    }
  });
  const y = mechs.length * rowH + 18;
  c.appendChild(svg('text', { x: left, y, 'font-size': 11, fill: '#889' }, new Date(t1 - span).toLocaleTimeString()));
  c.appendChild(svg('text', { x: width - 80, y, 'font-size': 11, fill: '#889' }, new Date(t1).toLocaleTimeString()));
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
    tr.dataset.id = f.id;
    tr.appendChild(el('td', '', f.id));
    tr.appendChild(el('td', '', f.stage));
    tr.appendChild(el('td', '', [f.listener && 'listener ' + f.listener, f.login && 'login ' + f.login].filter(Boolean).join(', ') || 'global'));
    tr.appendChild(el('td', '', describeFault(f)));
    let when = f.mode;
    if (f.mode === 'times') when = 'next ' + f.n + ' (' + f.remaining + ' left)';
    if (f.mode === 'every') when = 'every ' + f.n + 'th';
    if (f.mode === 'probability') when = 'p = ' + f.probability;
    tr.appendChild(el('td', 'when', when));
    tr.appendChild(el('td', 'matched', f.matched));
    tr.appendChild(el('td', 'fired', f.fired));
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
  if (!data.faults.length) {
    const tr = el('tr');
    const td = el('td', 'muted', 'No fault rule.');
    td.colSpan = 8;
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
    if (e instanceof Stale) return;
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
  const gen = generation;
  if (state.es) { state.es.close(); state.es = null; }
  let url = '/api/v1/events';
  try {
    if (auth) {
      const t = await apiJson('/api/v1/events/ticket', { method: 'POST' });
      url += '?ticket=' + encodeURIComponent(t.ticket);
    }
  } catch (e) {
    if (gen === generation && !(e instanceof Stale)) state.esTimer = setTimeout(connectEvents, 5000);
    return;
  }
  if (gen !== generation) return;
  const es = new EventSource(url);
  state.es = es;
  es.onopen = () => $('live').classList.add('on');
  es.onerror = () => {
    $('live').classList.remove('on');
    es.close();
    if (state.es === es) { state.es = null; state.esTimer = setTimeout(connectEvents, 3000); }
  };
  es.addEventListener('message', (ev) => {
    if (state.es !== es) return;
    const m = JSON.parse(ev.data);
    loadInboxes();
    if (m.login === state.inbox || state.inbox === ALL) loadMessages(false, m.id);
    notifyMail(m);
  });
  es.addEventListener('auth', (ev) => {
    if (state.es !== es) return;
    const e = JSON.parse(ev.data);
    state.events.unshift(e);
    if (state.events.length > 500) state.events.pop();
    if (!$('tab-auth').hidden) {
      const tb = $('authlog').tBodies[0];
      if (tb.rows.length === 1 && tb.rows[0].cells.length === 1) tb.textContent = '';
      tb.insertBefore(authRow(e), tb.firstChild);
      drawChart();
    }
    // an AUTH attempt may have moved a rule's counters
    if (!$('tab-faults').hidden) {
      clearTimeout(state.faultReload);
      state.faultReload = setTimeout(loadFaults, 150);
    }
  });
}

tryStart();
