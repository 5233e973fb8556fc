// Drives Debian's chromium (headless) through the sandbox page, for
// tests/integration/test_browser.py. One browser launch, one fresh context
// per scenario:
//   desktop  alice at 1440x900: live mail, the sandboxed preview and its links
//            (a popup), the message views, search operators, read/unread,
//            tags, keyboard-only use, notifications (opt-in), dark mode
//   phone    alice at 390x844 (touch): one pane at a time, no horizontal
//            overflow, a tap opens a message, back controls
//   admin    the admin token at 1440x900: fault counters live, the injected
//            AUTH row, then sign-out and bob signs in: nothing of before
// Every assertion is a named check in the result; the Python test asserts
// them by name (a check that never ran is missing, which fails too).
// Talks to the test over stdin/stdout: "need <action>" lines are answered
// with "ok"; the last line is "result {json}".
// The configuration (JSON, see test_browser.py) is the answer to "need config",
// asked once the browser runs. Environment: SG_OUT (screenshot
// dir), SG_CHROMIUM (default /usr/bin/chromium).
'use strict';
const path = require('path');
const readline = require('readline');
const { chromium } = require('playwright-core');

let cfg = null; // from the test once the browser is up ("need config")
const out = process.env.SG_OUT;
const result = { checks: {}, errors: {}, console: [], requests: [], finished: [], failed: [] };

let t0 = Date.now();
result.marks = [];
function mark(name) { result.marks.push(name + ' ' + (Date.now() - t0)); }
function check(name, ok, detail) {
  mark(name);
  result.checks[name] = { ok: !!ok, detail: detail === undefined ? null : detail };
}

const lines = [];
let lineWaiter = null;
readline.createInterface({ input: process.stdin }).on('line', (l) => {
  if (lineWaiter) { const w = lineWaiter; lineWaiter = null; w(l); } else lines.push(l);
});
function nextLine() {
  if (lines.length) return Promise.resolve(lines.shift());
  return new Promise((resolve) => { lineWaiter = resolve; });
}
async function need(what) {
  process.stdout.write('need ' + what + '\n');
  const l = await nextLine();
  if (!l.startsWith('ok')) throw new Error('the test could not ' + what + ': ' + l);
  return l.slice(2).trim();
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
// poll fn() until it returns a truthy value (page.waitForFunction needs an
// eval the page's CSP forbids)
async function until(fn, timeout = 10000, step = 100) {
  const end = Date.now() + timeout;
  let v;
  for (;;) {
    v = await fn().catch(() => undefined);
    if (v || Date.now() > end) return v;
    await sleep(step);
  }
}

function shot(page, name) {
  return page.screenshot({ path: path.join(out, name) });
}

async function newContext(browser, opts) {
  const ctx = await browser.newContext(Object.assign({ viewport: { width: 1440, height: 900 } }, opts));
  // records every permission request and notification, to prove the page asks
  // only after the button is clicked
  await ctx.addInitScript(() => {
    window.__sgPerm = [];
    window.__sgNotes = [];
    const N = window.Notification;
    if (!N) return;
    const orig = N.requestPermission.bind(N);
    N.requestPermission = (...a) => { window.__sgPerm.push(Date.now()); return orig(...a); };
    class Recorded extends N {
      constructor(title, o) { window.__sgNotes.push(title); super(title, o); }
    }
    window.Notification = Recorded;
  });
  ctx.setDefaultTimeout(10000);
  return ctx;
}

async function newPage(ctx) {
  mark('newpage');
  const page = await ctx.newPage();
  page.on('console', (m) => result.console.push(m.type() + ': ' + m.text()));
  page.on('pageerror', (e) => result.console.push('pageerror: ' + e.message));
  page.on('request', (r) => result.requests.push(r.url()));
  page.on('requestfinished', (r) => result.finished.push(r.url()));
  page.on('requestfailed', (r) => result.failed.push(r.url() + ' ' + ((r.failure() || {}).errorText || '')));
  page.sgDialogs = [];
  page.sgDialogAnswer = false;
  page.on('dialog', (d) => { page.sgDialogs.push(d.message()); (page.sgDialogAnswer ? d.accept() : d.dismiss()).catch(() => {}); });
  return { ctx, page };
}

async function signIn(page, who) {
  mark('signin-start');
  if (who.token) {
    await page.fill('#login-token', who.token);
  } else {
    await page.fill('#login-user', who.login);
    await page.fill('#login-pass', who.password);
  }
  await page.click('#login-submit');
  await page.waitForSelector('#app:not([hidden])', { timeout: 10000 });
  await page.waitForSelector('#inboxes li:not(.empty)', { state: 'attached', timeout: 10000 });
  mark('signed-in');
}

const rowSubjects = (page) => page.$$eval('#messages li:not(.empty) .subj', (l) => l.map((e) => e.textContent));
const docWidth = (page) => page.evaluate(() => Math.max(document.documentElement.scrollWidth, document.body.scrollWidth));
const active = (page) => page.evaluate(() => {
  const a = document.activeElement;
  return { id: a.id, role: a.getAttribute('role'), list: a.parentElement ? a.parentElement.id : '',
    msg: a.dataset.id || '', login: a.dataset.login || '', subj: (a.querySelector('.subj') || {}).textContent || '' };
});
const lum = (rgb) => {
  const m = rgb.match(/\d+(\.\d+)?/g).map(Number);
  return (0.2126 * m[0] + 0.7152 * m[1] + 0.0722 * m[2]) / 255;
};

// Run a search through the box and wait for its answer (the count is
// blanked first so the old one is not read).
async function search(page, q) {
  await page.evaluate(() => { document.getElementById('count').textContent = ''; });
  await page.fill('#search', q);
  await page.press('#search', 'Enter');
  await until(() => page.$eval('#count', (e) => e.textContent !== ''), 10000);
  return { count: await page.textContent('#count'), subjects: await rowSubjects(page),
    empty: await page.$$eval('#messages li.empty', (l) => l.map((e) => e.textContent).join(' ')) };
}

async function openBySubject(page, subj) {
  await page.click('#messages li:not(.empty):has-text("' + subj + '")');
  await until(async () => (await page.textContent('#v-subject')) === subj, 10000);
}

// ---------------------------------------------------------------- desktop

async function desktop(browser, ctx) {
  const { page } = await newPage(ctx);
  const S = cfg.subjects;
  try {
    await page.goto(cfg.url);
    await signIn(page, cfg.alice);
    await page.waitForSelector('#live.on', { timeout: 15000 });
    mark('live-on');

    // 1: the desktop layout is still three panes side by side
    const boxes = await Promise.all(['#inbox-pane', '#list-pane', '#view-pane'].map((s) => page.locator(s).boundingBox()));
    check('desktop.three_panes', boxes.every((b) => b && b.width > 150) && boxes[0].x < boxes[1].x &&
      boxes[1].x < boxes[2].x && Math.abs(boxes[0].y - boxes[2].y) < 2, boxes);
    check('desktop.no_back_controls', !(await page.isVisible('#back-list')) && !(await page.isVisible('#back-inboxes')));
    check('desktop.no_overflow', (await docWidth(page)) <= 1440, await docWidth(page));
    const banner = (await page.isVisible('#banner')) ? await page.textContent('#banner') : '';
    check('banner.accept_any', banner.startsWith('Accept-any mode is on'), banner);
    const ret = (await page.isVisible('#retention')) ? await page.textContent('#retention') : '';
    check('retention.shown', ret === 'Retention: the newest 500 messages per inbox are kept; messages older than 7 days are removed.', ret);

    // 5: nothing asks for notification permission before the button
    check('notify.no_request_on_load', (await page.evaluate(() => window.__sgPerm.length)) === 0);

    // live mail
    await need('send_live');
    const item = page.locator('#messages li', { hasText: S.live });
    await item.waitFor({ timeout: 20000 });
    check('live.appeared', true);

    // 7: unread rows are bold until opened
    const w = await item.locator('.subj').evaluate((e) => getComputedStyle(e).fontWeight);
    check('read.unread_bold', (await item.getAttribute('class')).includes('unread') && Number(w) >= 700, w);
    await item.click();
    await page.waitForSelector('#view:not([hidden])', { timeout: 10000 });
    const frame = page.locator('#v-frame');
    const sandbox = (await frame.getAttribute('sandbox') || '').split(/\s+/).filter(Boolean).sort();
    check('preview.sandbox_tokens', JSON.stringify(sandbox) === JSON.stringify(['allow-popups', 'allow-popups-to-escape-sandbox']), sandbox);
    check('preview.srcdoc_has_marker', (await frame.getAttribute('srcdoc') || '').includes(cfg.marker));
    const inner = page.frameLocator('#v-frame');
    await inner.locator('h1').waitFor({ timeout: 10000 });
    check('preview.h1', (await inner.locator('h1').textContent()) === 'Hello from the browser test');
    await page.waitForTimeout(300);
    check('preview.script_blocked', (await inner.locator('body[data-pwned]').count()) === 0);
    check('live.subject', (await page.textContent('#v-subject')) === S.live);
    check('read.marked_on_open', !(await item.getAttribute('class')).includes('unread'));
    await shot(page, 'browser-3-message.png');

    await page.click('#v-views button[data-view="raw"]');
    await page.waitForSelector('#v-raw[data-loaded="1"]', { state: 'attached', timeout: 10000 });
    check('views.raw', (await page.textContent('#v-raw')).includes('X-Smtpgate-Envelope'));

    // 6: HTML source, escaped and highlighted
    await page.click('#v-views button[data-view="source"]');
    const src = await page.$eval('#v-source', (p) => ({ text: p.textContent, tags: p.querySelectorAll('span.t').length,
      attrs: p.querySelectorAll('span.a').length, vals: p.querySelectorAll('span.v').length,
      elements: p.querySelectorAll('script, img, h1').length, visible: p.offsetParent !== null }));
    check('views.source', src.visible && src.text.includes('<script>document.body') && src.text.includes('<h1>') &&
      src.tags >= 4 && src.attrs >= 1 && src.vals >= 1 && src.elements === 0, src);

    // 6: preview widths
    await page.click('#v-views button[data-view="html"]');
    const widths = {};
    for (const [label, want] of [['Phone', 375], ['Tablet', 768]]) {
      await page.click('#v-widths button:has-text("' + label + '")');
      widths[label] = (await frame.boundingBox()).width;
      widths[label + '_inner'] = await inner.locator('html').evaluate(() => window.innerWidth);
      widths[label + '_ok'] = Math.abs(widths[label] - want) < 1.5 && Math.abs(widths[label + '_inner'] - (want - 2)) < 1.5;
    }
    await page.click('#v-widths button:has-text("Desktop")');
    widths.Desktop = (await frame.boundingBox()).width;
    widths.box = (await page.locator('#v-html .frame-box').boundingBox()).width;
    check('views.widths', widths.Phone_ok && widths.Tablet_ok && Math.abs(widths.Desktop - widths.box) < 1.5, widths);

    // 3 + 6: the links message: link list, and a click in the preview opens a popup
    await openBySubject(page, S.links);
    await page.click('#v-views button[data-view="links"]');
    await until(async () => (await page.$$('#v-linklist li')).length > 0, 10000);
    const links = await page.$$eval('#v-linklist li', (l) => l.map((e) => e.textContent));
    check('views.link_list', links.length === 2 && links[0].includes(cfg.target_url) && links[0].includes('the target page') &&
      links[1].includes('javascript:') && links[1].includes('not clickable'), links);
    await page.click('#v-views button[data-view="check"]');
    await until(async () => !(await page.textContent('#v-check-summary')).startsWith('Checking'), 10000);
    const plain = await page.textContent('#v-check-summary');
    await page.click('#v-views button[data-view="html"]');
    const go = inner.locator('#go');
    await go.waitFor({ timeout: 10000 });
    check('preview.link_attrs', (await go.getAttribute('target')) === '_blank' && (await go.getAttribute('rel')) === 'noopener noreferrer',
      [await go.getAttribute('target'), await go.getAttribute('rel')]);
    check('preview.js_link_inert', (await inner.locator('#js').getAttribute('href')) === null);
    const [popup] = await Promise.all([ctx.waitForEvent('page', { timeout: 10000 }), go.click()]);
    await popup.waitForLoadState('load', { timeout: 10000 }).catch(() => {});
    await until(async () => popup.url() === cfg.target_url, 10000);
    const ptitle = await popup.title().catch(() => '');
    const opener = await popup.evaluate(() => window.opener === null).catch((e) => String(e));
    check('preview.popup_opens_target', popup.url() === cfg.target_url && ptitle === 'Target page' && opener === true,
      { url: popup.url(), title: ptitle, opener_null: opener });
    await popup.close();

    // 7: search operators (the index is fed in the background: retried)
    const expect = async (name, q, want, empty) => {
      let r;
      await until(async () => {
        r = await search(page, q);
        return JSON.stringify(r.subjects.slice().sort()) === JSON.stringify(want.slice().sort());
      }, 10000, 300);
      const countOk = r.count.startsWith(String(want.length) + ' match');
      check(name, JSON.stringify(r.subjects.slice().sort()) === JSON.stringify(want.slice().sort()) && countOk &&
        (!empty || r.empty.includes(empty)), Object.assign({ q }, r));
    };
    const all = [S.live, S.links, S.invoice, S.weekly, S.del];
    await expect('search.subject', 'subject:invoice', [S.invoice]);
    await expect('search.has_attachment', 'has:attachment', [S.invoice]);
    await expect('search.phrase', '"blue harbour"', [S.weekly]);
    await expect('search.negation', 'harbour -invoice', [S.weekly]);
    await expect('search.from', 'from:' + cfg.alice.login, all);
    await expect('search.to', 'to:nobody-at-all.example', [], 'No message matches');
    await expect('search.before_after', 'after:2001-01-01 before:2199-01-01', all);
    await expect('search.before_none', 'before:2001-01-01', [], 'No message matches');
    // opened: the live and the links messages
    await expect('search.is_unread', 'is:unread', [S.invoice, S.weekly, S.del]);
    await expect('search.empty_sentence', 'zzqqxx-nothing-matches', [], 'No message matches \u201czzqqxx-nothing-matches\u201d');

    // 7: tags: add, shown on the row, filter by it, remove
    await search(page, '');
    await openBySubject(page, S.weekly);
    await page.click('#v-views button[data-view="check"]');
    await until(async () => (await page.$$('#v-checklist li')).length > 0, 10000);
    const feats = await page.$$eval('#v-checklist li', (l) => l.map((e) => [e.dataset.feature, e.textContent]));
    const flex = feats.find((f) => f[0] === 'css-display-flex');
    check('views.html_check', plain.startsWith('Nothing found') && flex && flex[1].includes('outlook-windows') &&
      feats.some((f) => f[0] === 'css-position') && (await page.textContent('#v-check-summary')).startsWith(feats.length + ' feature'),
    { plain, feats });
    await page.click('#v-views button[data-view="html"]');
    await page.fill('#tag-input', 'project-x');
    await page.press('#tag-input', 'Enter');
    const row = page.locator('#messages li:not(.empty)', { hasText: S.weekly });
    await until(async () => (await row.locator('.chip').count()) === 1, 10000);
    check('tags.add_show', (await page.locator('#v-tags .chip .tname').allTextContents()).join() === 'project-x' &&
      (await row.locator('.chip .tname').textContent()) === 'project-x');
    await page.evaluate(() => { document.getElementById('count').textContent = ''; });
    await row.locator('.chip .tname').click();
    await until(() => page.$eval('#count', (e) => e.textContent !== ''), 10000);
    check('tags.filter', JSON.stringify(await rowSubjects(page)) === JSON.stringify([S.weekly]) &&
      (await page.textContent('#count')).startsWith('1 match') && (await page.isVisible('#tag-filter')),
    { rows: await rowSubjects(page), count: await page.textContent('#count') });
    await page.click('#tag-filter .chip .rm');
    await until(async () => (await rowSubjects(page)).length === all.length, 10000);
    await page.click('#v-tags .chip .rm');
    await until(async () => (await row.locator('.chip').count()) === 0, 10000);
    check('tags.remove', (await page.locator('#v-tags .chip').count()) === 0 && (await row.locator('.chip').count()) === 0);
    await page.click('#v-unread');
    await until(async () => (await row.count()) === 1 && (await row.getAttribute('class')).includes('unread'), 10000);
    check('read.mark_unread', (await row.count()) === 1 && (await row.getAttribute('class')).includes('unread'));

    // 4: keyboard only
    await page.click('header h1');
    await page.keyboard.press('/');
    check('keys.slash_focuses_search', (await active(page)).id === 'search', await active(page));
    for (let i = 0; i < 4 && (await active(page)).list !== 'inboxes'; i++) await page.keyboard.press('Shift+Tab');
    const a1 = await active(page);
    check('keys.tab_reaches_inbox', a1.role === 'option' && a1.list === 'inboxes' && a1.login === cfg.alice.login, a1);
    await page.keyboard.press('Enter');
    await until(async () => (await active(page)).list === 'messages', 10000);
    const order = await rowSubjects(page);
    // the focus lands on the open message's row (or the first)
    const onRow = await page.$$eval('#messages li:not(.empty)', (l) => Math.max(0, l.findIndex((e) => e.classList.contains('on'))));
    const seen = [await active(page)];
    const keys = ['j', 'j', 'k', 'ArrowDown', 'ArrowUp', 'ArrowDown'];
    const want = [onRow];
    for (const k of keys) {
      await page.keyboard.press(k);
      seen.push(await active(page));
      const d = k === 'j' || k === 'ArrowDown' ? 1 : -1;
      want.push(Math.min(order.length - 1, Math.max(0, want[want.length - 1] + d)));
    }
    check('keys.enter_on_inbox_focuses_messages', seen[0].list === 'messages' && seen[0].subj === order[onRow], seen[0]);
    check('keys.jk_arrows', seen.map((s) => order.indexOf(s.subj)).join() === want.join(), { seen: seen.map((s) => s.subj), want });
    const target = order[want[want.length - 1]];
    await page.keyboard.press('Enter');
    await until(async () => (await page.textContent('#v-subject')) === target, 10000);
    check('keys.enter_opens', (await page.textContent('#v-subject')) === target, target);
    const sel = await page.$$eval('#messages li[aria-selected="true"] .subj', (l) => l.map((e) => e.textContent));
    check('keys.aria_selected', JSON.stringify(sel) === JSON.stringify([target]), sel);
    // to the message to delete, then Delete: asked first
    const di = order.indexOf(S.del);
    while ((await active(page)).subj !== S.del && order.indexOf((await active(page)).subj) < di) await page.keyboard.press('j');
    while ((await active(page)).subj !== S.del) await page.keyboard.press('k');
    page.sgDialogAnswer = false;
    await page.keyboard.press('Delete');
    await until(async () => page.sgDialogs.length === 1, 3000);
    await sleep(300);
    check('keys.delete_asks', page.sgDialogs.length === 1 && page.sgDialogs[0].includes(S.del) &&
      (await rowSubjects(page)).includes(S.del), page.sgDialogs);
    page.sgDialogAnswer = true;
    await page.keyboard.press('Delete');
    await until(async () => !(await rowSubjects(page)).includes(S.del), 10000);
    check('keys.delete_confirmed', page.sgDialogs.length === 2 && !(await rowSubjects(page)).includes(S.del) &&
      (await active(page)).list === 'messages', { dialogs: page.sgDialogs, rows: await rowSubjects(page) });

    // 5: notifications: nothing asked until the click; then a new mail shows one
    await ctx.grantPermissions(['notifications'], { origin: new URL(cfg.url).origin });
    check('notify.no_request_before_click', (await page.evaluate(() => window.__sgPerm.length)) === 0);
    await page.click('#notify');
    await until(async () => (await page.textContent('#notify')) === 'Notifications on', 10000);
    check('notify.request_on_click', (await page.evaluate(() => window.__sgPerm.length)) === 1);
    await need('send_notify');
    const notes = await until(async () => { const n = await page.evaluate(() => window.__sgNotes); return n.length ? n : null; }, 15000);
    check('notify.shown_for_new_mail', notes && notes.length === 1 && notes[0].includes(cfg.alice.login), notes);

    // 5: dark mode follows prefers-color-scheme
    await openBySubject(page, S.live);
    const colors = () => page.evaluate(() => {
      const b = getComputedStyle(document.body);
      const p = getComputedStyle(document.getElementById('list-pane'));
      return { bg: b.backgroundColor, fg: b.color, pane: p.backgroundColor };
    });
    const light = await colors();
    await page.emulateMedia({ colorScheme: 'dark' });
    await sleep(200);
    const dark = await colors();
    await shot(page, 'browser-desktop-dark.png');
    await page.emulateMedia({ colorScheme: 'light' });
    check('dark.follows_scheme', lum(light.bg) > 0.8 && lum(light.fg) < 0.3 && lum(dark.bg) < 0.2 &&
      lum(dark.fg) > 0.7 && lum(dark.pane) < 0.25, { light, dark });
    await shot(page, 'browser-desktop-light.png');

    await page.click('#tabs button[data-tab="auth"]');
    await page.waitForSelector('#authlog tbody tr.fail', { timeout: 10000 });
    result.auth_rows = await page.locator('#authlog tbody tr').count();
    result.auth_fail_rows = await page.locator('#authlog tbody tr.fail').count();
    result.chart_bars = await page.locator('#chart rect').count();
    await shot(page, 'browser-4-authlog.png');
  } catch (e) {
    await shot(page, 'browser-error-desktop.png').catch(() => {});
    throw e;
  } finally {
    await page.close();
  }
}

// ---------------------------------------------------------------- phone

async function phone(browser) {
  const ctx = await newContext(browser, { viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
  const { page } = await newPage(ctx);
  const S = cfg.subjects;
  try {
    await page.goto(cfg.url);
    await signIn(page, cfg.alice);
    await page.waitForSelector('#messages li:not(.empty)', { timeout: 10000 });
    const visible = () => page.evaluate(() => ['inbox-pane', 'list-pane', 'view-pane'].filter((id) => {
      const r = document.getElementById(id).getBoundingClientRect();
      return r.width > 0 && r.height > 0;
    }));
    const widths = {};
    widths.list = await docWidth(page);
    const v1 = await visible();
    check('phone.one_pane_list', JSON.stringify(v1) === '["list-pane"]', v1);
    await shot(page, 'browser-phone-list.png');
    const row = page.locator('#messages li:not(.empty)', { hasText: S.weekly });
    await row.tap();
    await until(async () => (await page.textContent('#v-subject')) === S.weekly, 10000);
    const v2 = await visible();
    const vb = await page.locator('#view-pane').boundingBox();
    check('phone.tap_opens', JSON.stringify(v2) === '["view-pane"]' && vb.width >= 350 && (await page.isVisible('#v-frame')),
      { panes: v2, view: vb });
    await page.waitForTimeout(200);
    widths.view = await docWidth(page);
    await shot(page, 'browser-phone-message.png');
    await page.emulateMedia({ colorScheme: 'dark' });
    await shot(page, 'browser-phone-dark.png');
    await page.emulateMedia({ colorScheme: 'light' });
    await page.tap('#back-list');
    const v3 = await visible();
    await page.tap('#back-inboxes');
    const v4 = await visible();
    widths.inboxes = await docWidth(page);
    check('phone.back', JSON.stringify(v3) === '["list-pane"]' && JSON.stringify(v4) === '["inbox-pane"]', [v3, v4]);
    await page.locator('#inboxes li:not(.empty)').first().tap();
    check('phone.inbox_tap_opens_list', JSON.stringify(await visible()) === '["list-pane"]');
    for (const tab of ['auth', 'faults']) {
      await page.tap('#tabs button[data-tab="' + tab + '"]');
      await page.waitForTimeout(400);
      widths[tab] = await docWidth(page);
    }
    await shot(page, 'browser-phone-authlog.png');
    check('phone.no_overflow', Object.values(widths).every((w) => w <= 390), widths);
  } catch (e) {
    await shot(page, 'browser-error-phone.png').catch(() => {});
    throw e;
  } finally {
    await ctx.close();
  }
}

// ---------------------------------------------------------------- admin, then bob

async function admin(browser, ctx) {
  const { page } = await newPage(ctx);
  const S = cfg.subjects;
  try {
    await page.goto(cfg.url);
    await signIn(page, { token: cfg.token });
    // 7: the admin searches every inbox at once
    await page.click('#inboxes li[data-login="*"]');
    const r1 = await search(page, 'login:' + cfg.alice.login + ' subject:invoice');
    const r2 = await search(page, 'login:' + cfg.bob.login);
    const froms = await page.$$eval('#messages li:not(.empty) .from', (l) => l.map((e) => e.textContent));
    check('search.admin_all_inboxes', JSON.stringify(r1.subjects) === JSON.stringify([S.invoice]) && r1.count === '1 match' &&
      r2.subjects.length === 0 && r2.empty.startsWith('No message matches') && (await page.isDisabled('#delete-all')), { r1, r2, froms });
    await search(page, '');
    check('search.admin_rows_name_inbox', (await page.$$eval('#messages li:not(.empty) .from', (l) => l.map((e) => e.textContent)))
      .every((f) => f.startsWith(cfg.alice.login + ' \u00b7 ')));
    await page.click('#inboxes li:not(.empty)[data-login="' + cfg.alice.login + '"]');
    await page.waitForSelector('#messages li:not(.empty)', { timeout: 10000 });
    await openBySubject(page, S.links);
    await page.click('#tabs button[data-tab="faults"]');
    const fired = (id) => page.textContent('#faults tr[data-id="' + id + '"] td.fired').catch(() => null);
    await until(async () => (await fired(cfg.rule_bob)) !== null, 10000);
    const before = await fired(cfg.rule_bob);
    check('faults.both_rules_shown', (await page.locator('#faults tr[data-id="' + cfg.rule_alice + '"]').count()) === 1);
    await need('fire_fault');
    const after = await until(async () => { const f = await fired(cfg.rule_bob); return f === '1' ? f : null; }, 10000);
    check('faults.live_counter', before === '0' && after === '1', { before, after });
    await shot(page, 'browser-admin-faults.png');

    await page.click('#tabs button[data-tab="auth"]');
    const inj = page.locator('#authlog tbody tr.injected', { hasText: cfg.bob.login });
    await inj.first().waitFor({ timeout: 10000 });
    const reason = inj.first().locator('td.reason');
    const rtext = await reason.textContent();
    const after_ = await reason.evaluate((td) => [td, ...td.querySelectorAll('*')].map((e) => getComputedStyle(e, '::after').content).filter((c) => c !== 'none' && c !== 'normal'));
    check('auth.injected_once', rtext === 'injected by a fault rule' && after_.length === 0, { text: rtext, after: after_ });

    // 2: sign out (from the faults tab with a message open), bob signs in
    await page.click('#tabs button[data-tab="faults"]');
    await page.click('#logout');
    await page.waitForSelector('#login:not([hidden])');
    await signIn(page, cfg.bob);
    await until(async () => (await page.textContent('#whoami')) === cfg.bob.login, 10000);
    await sleep(500);
    const dump = await page.evaluate(() => ({
      app: document.getElementById('app').textContent,
      messages: document.getElementById('messages').textContent,
      faults: document.getElementById('faults').textContent,
      view_hidden: document.getElementById('view').hidden,
      subject: document.getElementById('v-subject').textContent,
      srcdoc: document.getElementById('v-frame').getAttribute('srcdoc') || '',
      inboxes: [...document.querySelectorAll('#inboxes li:not(.empty)')].map((l) => l.dataset.login),
      mail_tab: !document.getElementById('tab-mail').hidden,
      empty: (document.querySelector('#messages li.empty') || {}).textContent || '',
    }));
    const alices = Object.values(S).filter((s) => dump.app.includes(s));
    check('signout.no_previous_list', alices.length === 0 && JSON.stringify(dump.inboxes) === JSON.stringify([cfg.bob.login]),
      { leaked: alices, inboxes: dump.inboxes });
    check('signout.no_open_message', dump.view_hidden && dump.subject === '' && !dump.srcdoc.includes('target page'), dump.subject);
    check('signout.no_admin_rules', !dump.faults.includes('Alice only rule') && !dump.app.includes('Alice only rule') && dump.mail_tab,
      dump.faults);
    check('empty.inbox_sentence', dump.empty.startsWith('This inbox is empty'), dump.empty);
    await page.click('#tabs button[data-tab="faults"]');
    await page.waitForTimeout(500);
    check('signout.bob_rules_only', !(await page.textContent('#faults')).includes('Alice only rule'));
    await shot(page, 'browser-signout-bob.png');
  } catch (e) {
    await shot(page, 'browser-error-admin.png').catch(() => {});
    throw e;
  } finally {
    await page.close();
  }
}

async function main() {
  const browser = await chromium.launch({
    executablePath: process.env.SG_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  try {
    // the test seeds the server while the browser starts
    cfg = JSON.parse(await need('config'));
    // desktop and admin share a context (each its own page, so its own
    // sessionStorage); the phone has its own (touch, mobile viewport)
    const desk = await newContext(browser);
    for (const [name, fn] of [['desktop', desktop], ['phone', phone], ['admin', admin]]) {
      t0 = Date.now();
      try {
        await fn(browser, desk);
      } catch (e) {
        result.errors[name] = String(e && e.stack || e) + '\nbrowser console: ' + JSON.stringify(result.console.slice(-10));
      }
      result['ms_' + name] = Date.now() - t0;
    }
  } finally {
    await browser.close();
  }
  process.stdout.write('result ' + JSON.stringify(result) + '\n');
  process.exit(0);
}

main().catch((e) => {
  process.stdout.write('error ' + (e && e.stack || e) + '\n');
  process.exit(1);
});
