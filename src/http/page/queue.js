// smtpgate page: the relay queue (admin) and "release" of a captured message
// through the smarthost. Kept apart from app.js, whose helpers ($, el, api,
// apiJson, state) it uses; shown only when the server has a relay queue.
'use strict';

const relayUi = { enabled: false, timer: null };

function relayShow(on) {
  relayUi.enabled = on;
  $('tabbtn-queue').hidden = !on;
  $('v-release').hidden = !on;
}

async function relayProbe() {
  if (!state.me || !state.me.admin) { relayShow(false); return; }
  try {
    const r = await api('/api/v1/queue');
    relayShow(r.ok);
  } catch (e) { relayShow(false); }
}

function relayAge(s) {
  const a = Math.max(0, Math.floor(Date.now() / 1000) - s);
  if (a < 120) return a + 's';
  if (a < 7200) return Math.floor(a / 60) + 'm';
  if (a < 172800) return Math.floor(a / 3600) + 'h';
  return Math.floor(a / 86400) + 'd';
}

async function relayAction(id, what) {
  const path = '/api/v1/queue/' + encodeURIComponent(id) + (what === 'delete' ? '' : '/' + what);
  try {
    await apiJson(path, { method: what === 'delete' ? 'DELETE' : 'POST' });
    $('queue-error').textContent = '';
  } catch (e) { $('queue-error').textContent = what + ': ' + e.message; }
  loadQueue();
}

async function loadQueue() {
  let q;
  try { q = await apiJson('/api/v1/queue'); } catch (e) {
    $('queue-error').textContent = e.message;
    return;
  }
  $('queue-total').textContent = q.total + (q.total === 1 ? ' message' : ' messages');
  const tb = $('queue').querySelector('tbody');
  tb.textContent = '';
  for (const m of q.messages) {
    const tr = el('tr');
    tr.append(el('td', 'mono', m.id), el('td', null, relayAge(m.arrival)),
      el('td', null, m.from || '<>'), el('td', null, m.recipients.join(', ')),
      el('td', null, m.attempts), el('td', null, m.active ? 'now' : relayAge(2 * Math.floor(Date.now() / 1000) - m.next_try)),
      el('td', 'muted', m.last_error || ''));
    const td = el('td');
    for (const what of ['retry', 'bounce', 'delete']) {
      const b = el('button', null, what);
      b.addEventListener('click', () => relayAction(m.id, what));
      td.append(b);
    }
    tr.append(td);
    tb.append(tr);
  }
}

async function relayRelease() {
  if (!state.message) return;
  const to = window.prompt('Release this message through the smarthost to (comma-separated):');
  if (!to) return;
  const rcpts = to.split(',').map((s) => s.trim()).filter((s) => s);
  try {
    const r = await apiJson('/api/v1/messages/' + encodeURIComponent(state.message) + '/release', {
      method: 'POST', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ to: rcpts }) });
    $('v-release-status').textContent = 'queued as ' + r.queue_id;
  } catch (e) { $('v-release-status').textContent = 'release failed: ' + e.message; }
}

// The tabs of app.js hide every other section; the queue section is hidden
// and shown here.
for (const b of document.querySelectorAll('#tabs button')) {
  b.addEventListener('click', () => {
    const mine = b.dataset.tab === 'queue';
    $('tab-queue').hidden = !mine;
    clearInterval(relayUi.timer);
    relayUi.timer = null;
    if (mine) { loadQueue(); relayUi.timer = setInterval(loadQueue, 5000); }
  });
}
$('v-release').addEventListener('click', relayRelease);
$('queue-retry-all').addEventListener('click', async () => {
  try { await apiJson('/api/v1/queue/retry', { method: 'POST' }); } catch (e) {
    $('queue-error').textContent = e.message;
  }
  loadQueue();
});
new MutationObserver(() => { if (!$('tabs').hidden) relayProbe(); })
  .observe($('tabs'), { attributes: true, attributeFilter: ['hidden'] });
if (!$('tabs').hidden) relayProbe();
