// Screenshots of the visitor's key pages at 390 and 1280 px, for review (not a
// test: nothing is asserted). Run through `bench/screenshots.sh OUTDIR`, which
// starts a server and a visitor in network namespaces (browser.rs's
// `screenshots_of_the_key_pages`), or by hand against any server that will
// probe the machine you run it on:
//
//   node screenshots.mjs ORIGIN OUTDIR
//
// Writes OUTDIR/{start,start-dark,port-22,port-4,search,404,400,scan-running,
// scan-finished}-{390,1280}.png (whole page) and …-top.png (first screen:
// 390×844 or 1280×800), and prints their names.

import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const CHROMIUM = '/usr/bin/chromium';
const FLAGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--disable-dev-shm-usage',
];
const WIDTHS = [390, 1280];
const PAGES = [
  ['start', '/'],
  ['port-22', '/port/22'],
  ['port-4', '/port/4'],
  ['search', '/search?q=remote+desktop'],
  ['404', '/no/such/page'],
  ['400', '/port/abc'],
];

const [origin, outdir] = process.argv.slice(2);
if (!origin || !outdir) {
  process.stderr.write('usage: node screenshots.mjs ORIGIN OUTDIR\n');
  process.exit(2);
}
const watchdog = setTimeout(() => {
  process.stderr.write('screenshots.mjs: timed out after 110 s\n');
  process.exit(3);
}, 110_000);
const profile = mkdtempSync(join(outdir, 'chromium-profile-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: CHROMIUM, headless: true, args: FLAGS, timeout: 30_000,
  viewport: { width: 1280, height: 800 },
});
const page = context.pages()[0] ?? (await context.newPage());
page.setDefaultTimeout(30_000);
const written = [];
async function shot(name, width) {
  const path = join(outdir, `${name}-${width}.png`);
  await page.screenshot({ path, fullPage: true });
  // The first screen alone: what a visitor sees before scrolling.
  const top = join(outdir, `${name}-${width}-top.png`);
  await page.screenshot({ path: top });
  written.push(path, top);
}

for (const w of WIDTHS) {
  await page.setViewportSize({ width: w, height: w < 600 ? 844 : 800 });
  for (const [name, path] of PAGES) {
    await page.goto(origin + path, { waitUntil: 'load' });
    await shot(name, w);
  }
  await page.emulateMedia({ colorScheme: 'dark' });
  await page.goto(origin + '/', { waitUntil: 'load' });
  await shot('start-dark', w);
  await page.emulateMedia({ colorScheme: 'light' });
}

// A running and a finished scan: the service test (1,056 ports) runs long
// enough to be caught running. One running test per address: wait for each.
for (const w of WIDTHS) {
  await page.setViewportSize({ width: w, height: w < 600 ? 844 : 800 });
  await page.goto(origin + '/?test=service', { waitUntil: 'load' });
  await page.check('input[name=kind][value=service]');
  await Promise.all([
    page.waitForURL(/\/scan\/[0-9a-f]{32}$/, { waitUntil: 'load' }),
    page.getByRole('button', { name: 'Probe my connection' }).click(),
  ]);
  const scan = page.url();
  await page.waitForTimeout(700);
  await shot('scan-running', w);
  // Finished: the page no longer says it is running (reload to be sure).
  for (let i = 0; i < 120; i++) {
    const api = await context.request.get(scan.replace('/scan/', '/api/scans/'));
    const v = await api.json().catch(() => ({}));
    if (v.scan && v.scan.status !== 'running') break;
    await page.waitForTimeout(500);
  }
  await page.goto(scan, { waitUntil: 'load' });
  await shot('scan-finished', w);
}

clearTimeout(watchdog);
await context.close();
rmSync(profile, { recursive: true, force: true });
process.stdout.write(written.join('\n') + '\n');
