// Live views over the cap, in a real browser: Debian's headless Chromium,
// driven by playwright-core, opens one running test in five tabs, one after
// the other. The server allows four live event streams per test, so four tabs
// fill their grid over Server-Sent Events and the fifth is refused (429); its
// page must fall back to reloading itself, as it does without JavaScript.
// Run by crates/cli/tests/browser.rs inside the visitor's network namespace:
//
//   node streams.mjs SCAN_URL OUTDIR
//
// Prints one JSON line on stdout:
//   {"tabs":[{"events":[200],"loads":1,"filled":12,"errors":[]}, ...],
//    "axe_running":[], "running":true, "progress":"120 of 1056 ...", "live":"..."}
// ("events": HTTP statuses of the tab's /events requests; "loads": page loads
// during the run; "filled": cells with a result at the end). On failure prints
// "streams.mjs: FAIL: ..." on stderr and exits non-zero. Bounded by TOTAL_MS.

import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { axeViolations } from './axe.mjs';

const TOTAL_MS = 60_000;
const STEP_MS = 20_000;
// The page reloads 10 s after a refused stream; watch a little longer.
const WATCH_MS = 13_000;
const TABS = 5;
const CHROMIUM = '/usr/bin/chromium';
const FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-dev-shm-usage',
];

function fail(msg) {
  process.stderr.write(`streams.mjs: FAIL: ${msg}\n`);
  process.exit(1);
}

const [scanUrl, outdir] = process.argv.slice(2);
if (!scanUrl || !outdir) fail('usage: node streams.mjs SCAN_URL OUTDIR');
const profile = mkdtempSync(join(outdir, 'chromium-profile-'));
const watchdog = setTimeout(() => fail(`timed out after ${TOTAL_MS} ms`), TOTAL_MS);

let context = null;
try {
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: FLAGS,
    timeout: STEP_MS,
  });
  const tabs = [];
  for (let i = 0; i < TABS; i++) {
    const page = i === 0 && context.pages()[0] ? context.pages()[0] : await context.newPage();
    page.setDefaultTimeout(STEP_MS);
    const tab = { page, events: [], loads: 0, errors: [] };
    page.on('response', (r) => {
      if (new URL(r.url()).pathname.endsWith('/events')) tab.events.push(r.status());
    });
    page.on('load', () => (tab.loads += 1));
    page.on('pageerror', (e) => tab.errors.push(String(e)));
    // Open the tabs one by one: each tab's stream is answered before the next asks.
    const answered = page.waitForResponse((r) => new URL(r.url()).pathname.endsWith('/events'));
    const resp = await page.goto(scanUrl, { waitUntil: 'load' });
    if (!resp || !resp.ok()) fail(`GET ${scanUrl}: ${resp ? resp.status() : 'no response'}`);
    await answered;
    tabs.push(tab);
  }
  await new Promise((r) => setTimeout(r, WATCH_MS));
  // The first tab's running Service grid, checked by axe-core while it fills;
  // its progress count and polite live summary have moved on.
  const first = tabs[0].page;
  const running = (await first.locator('#grid').getAttribute('data-running')) === 'true';
  const axeRunning = (await axeViolations(first)).map((x) => `${x.id}: ${x.nodes.join(', ')}`);
  const progress = (await first.locator('#count').textContent().catch(() => null))?.trim() ?? null;
  const liveText = (await first.locator('#live').textContent().catch(() => null))?.trim() ?? null;
  const bar = await first.locator('#prog').evaluate((p) => p.value).catch(() => -1);
  // The summary's counts follow the grid.
  const tally = await first.evaluate(() => {
    const counted = [...document.querySelectorAll('#counts strong')].reduce((n, s) => n + parseInt(s.textContent, 10), 0);
    const settled = document.querySelectorAll('#grid [id^="p"]:not(.sp)').length;
    // Read in the same tick as the counts: both are set by one update.
    const prog = document.getElementById('prog');
    return { counted, settled, tested: prog ? prog.value : -1 };
  });
  const out = [];
  for (const t of tabs) {
    const filled = await t.page
      .evaluate(() => document.querySelectorAll('#grid [id^="p"]:not(.sp)').length)
      .catch(() => -1);
    out.push({ events: t.events, loads: t.loads, filled, errors: t.errors });
  }
  clearTimeout(watchdog);
  await context.close();
  rmSync(profile, { recursive: true, force: true });
  process.stdout.write(
    JSON.stringify({ tabs: out, running, axe_running: axeRunning, progress, live: liveText, bar, tally }) + '\n',
  );
  process.exit(0);
} catch (e) {
  if (context) await Promise.race([context.close().catch(() => {}), new Promise((r) => setTimeout(r, 5000))]);
  fail(e && e.stack ? e.stack : String(e));
}
