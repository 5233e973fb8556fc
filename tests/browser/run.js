// Drives Debian's chromium (headless) through the sandbox page, for
// tests/integration/test_browser.py. Talks to the test over stdin/stdout:
//   prints "ready" once signed in, waits for the message with SG_SUBJECT to
//   appear live (EventSource, no reload), opens it, checks the HTML part is
//   in an iframe with an empty sandbox attribute and that its script did not
//   run, visits the auth log, prints one "result {json}" line.
// Environment: SG_URL, SG_LOGIN, SG_PASSWORD, SG_SUBJECT, SG_MARKER, SG_OUT (screenshot dir),
//              SG_CHROMIUM (default /usr/bin/chromium).
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');
const { chromium } = require('playwright-core');

async function main() {
  const out = process.env.SG_OUT;
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'sg-chromium-'));
  // a fresh profile (--user-data-dir) per run: playwright passes it for a persistent context
  const browser = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.SG_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    viewport: { width: 1400, height: 900 },
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  // requests: every request the page started; finished: those that got a
  // response; failed: those the browser stopped (CSP blocks show up here).
  const result = { console: [], requests: [], finished: [], failed: [] };
  try {
    const page = await browser.newPage();
    page.on('console', (m) => result.console.push(m.type() + ': ' + m.text()));
    page.on('request', (r) => result.requests.push(r.url()));
    page.on('requestfinished', (r) => result.finished.push(r.url()));
    page.on('requestfailed', (r) => result.failed.push(r.url() + ' ' + ((r.failure() || {}).errorText || '')));
    await page.goto(process.env.SG_URL);
    await page.fill('#login-user', process.env.SG_LOGIN);
    await page.fill('#login-pass', process.env.SG_PASSWORD);
    await page.click('#login-submit');
    await page.waitForSelector('#inboxes li', { timeout: 15000 });
    await page.waitForSelector('#live.on', { timeout: 15000 });
    await page.screenshot({ path: path.join(out, 'browser-1-signed-in.png') });
    process.stdout.write('ready\n');

    const item = page.locator('#messages li', { hasText: process.env.SG_SUBJECT });
    await item.waitFor({ timeout: 20000 });
    result.appeared_live = true;
    await page.screenshot({ path: path.join(out, 'browser-2-live.png') });

    await item.click();
    await page.waitForSelector('#view:not([hidden])', { timeout: 10000 });
    const frame = page.locator('#v-frame');
    result.sandbox = await frame.getAttribute('sandbox');
    result.srcdoc_has_marker = (await frame.getAttribute('srcdoc') || '').includes(process.env.SG_MARKER);
    const inner = page.frameLocator('#v-frame');
    await inner.locator('h1').waitFor({ timeout: 10000 });
    result.frame_h1 = await inner.locator('h1').textContent();
    result.script_ran = (await inner.locator('body[data-pwned]').count()) > 0;
    result.subject = await page.locator('#v-subject').textContent();
    await page.waitForTimeout(500);
    await page.screenshot({ path: path.join(out, 'browser-3-message.png') });

    await page.click('#view .toolbar button[data-view="raw"]');
    // (no waitForFunction: the page's CSP forbids the eval it relies on)
    await page.waitForSelector('#v-raw[data-loaded="1"]', { state: 'attached', timeout: 10000 });
    result.raw_has_envelope = (await page.locator('#v-raw').textContent()).includes('X-Smtpgate-Envelope');

    await page.click('#tabs button[data-tab="auth"]');
    await page.waitForSelector('#authlog tbody tr', { timeout: 10000 });
    result.auth_rows = await page.locator('#authlog tbody tr').count();
    result.auth_fail_rows = await page.locator('#authlog tbody tr.fail').count();
    result.chart_bars = await page.locator('#chart rect').count();
    await page.screenshot({ path: path.join(out, 'browser-4-authlog.png') });
  } catch (e) {
    const pages = browser.pages();
    if (pages.length) await pages[pages.length - 1].screenshot({ path: path.join(out, 'browser-error.png') }).catch(() => {});
    e.message += '\nbrowser console: ' + JSON.stringify(result.console.slice(-10));
    throw e;
  } finally {
    await browser.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
  process.stdout.write('result ' + JSON.stringify(result) + '\n');
}

main().catch((e) => {
  process.stdout.write('error ' + (e && e.stack || e) + '\n');
  process.exit(1);
});
