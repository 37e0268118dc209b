// The visitor's pages besides the scan page, in Debian's headless Chromium
// (playwright-core): the start page, port pages, search and error pages.
// Run by crates/cli/tests/browser.rs (`a_visitor_reads_the_start_port_search_and_error_pages`)
// inside the visitor's network namespace:
//
//   node pages.mjs URL OUTDIR [PATH,PATH...]
//
// URL is the server's origin. Checks, per page: axe-core violations in the light
// and the dark colour scheme, no horizontal scroll at 320 and 390 px, no CSP
// violations or script errors; on the start page, that the consent button is
// within a phone's first screen and that typing in the Custom field ticks
// Custom, so the POST asks for a custom test; that /favicon.ico is an image;
// and that a printed port page drops navigation and forms and shows link targets.
// Prints one JSON line with everything measured (browser.rs asserts on it);
// on an error it prints "pages.mjs: FAIL: ..." on stderr and exits non-zero.

import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { axeViolations, describe } from './axe.mjs';

const TOTAL_MS = 90_000;
const STEP_MS = 20_000;
const CHROMIUM = '/usr/bin/chromium';
const FLAGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--disable-dev-shm-usage',
];
// Path and expected status.
const PAGES = [
  ['/', 200],
  ['/port/22', 200],
  ['/port/40000', 200],
  ['/port/4', 200],
  ['/search?q=remote+desktop', 200],
  ['/search?tag=remote-access', 200],
  ['/no/such/page', 404],
  ['/port/abc', 400],
];
const WIDTHS = [320, 390];

function fail(msg) {
  process.stderr.write(`pages.mjs: FAIL: ${msg}\n`);
  process.exit(1);
}

const [origin, outdir, extra] = process.argv.slice(2);
if (!origin || !outdir) fail('usage: node pages.mjs URL OUTDIR [PATH,PATH...]');
// Further pages to check (finished test results), each expected 200.
for (const p of (extra ?? '').split(',').filter(Boolean)) PAGES.push([p, 200]);
const profile = mkdtempSync(join(outdir, 'chromium-profile-'));
let context = null;
const watchdog = setTimeout(() => {
  process.stderr.write(`pages.mjs: FAIL: timed out after ${TOTAL_MS} ms\n`);
  process.exit(3);
}, TOTAL_MS);

try {
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM, headless: true, args: FLAGS, timeout: STEP_MS,
    viewport: { width: 1280, height: 800 },
  });
  const page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(STEP_MS);
  const csp = [];
  const errors = [];
  const foreign = [];
  context.on('request', (r) => {
    const u = r.url();
    if (!u.startsWith(origin + '/') && u !== origin && !u.startsWith('data:')) foreign.push(u);
  });
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('console', (m) => {
    if (/Content Security Policy/i.test(m.text())) csp.push(m.text());
  });
  await context.exposeBinding('__hmCsp', (_s, v) => csp.push(v));
  await context.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      window.__hmCsp(`${e.violatedDirective} blocked ${e.blockedURI || 'inline'} on ${location.pathname}`);
    });
  });

  const out = { status: {}, axe: {}, scroll: {}, headings: {} };
  for (const [path, status] of PAGES) {
    for (const scheme of ['light', 'dark']) {
      await page.setViewportSize({ width: 1280, height: 800 });
      await page.emulateMedia({ colorScheme: scheme });
      const resp = await page.goto(origin + path, { waitUntil: 'load' });
      out.status[path] = resp ? resp.status() : 0;
      out.headings[path] = (await page.locator('h1').first().textContent())?.trim() ?? null;
      const v = await axeViolations(page);
      out.axe[`${scheme} ${path}`] = v.map((x) => x.id);
      if (v.length) process.stderr.write(`axe ${scheme} ${path}:\n${describe(v)}\n`);
    }
    if (out.status[path] !== status) process.stderr.write(`${path}: status ${out.status[path]}, expected ${status}\n`);
    await page.emulateMedia({ colorScheme: 'light' });
    for (const w of WIDTHS) {
      await page.setViewportSize({ width: w, height: 740 });
      await page.goto(origin + path, { waitUntil: 'load' });
      const [sw, iw] = await page.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
      out.scroll[`${w} ${path}`] = [sw, iw];
    }
  }

  // Print: no navigation or forms; references show where they lead.
  await page.setViewportSize({ width: 1280, height: 800 });
  await page.emulateMedia({ media: 'print', colorScheme: 'light' });
  await page.goto(origin + '/port/3389', { waitUntil: 'load' });
  out.print = await page.evaluate(() => {
    const shown = (sel) => [...document.querySelectorAll(sel)].some((e) => getComputedStyle(e).display !== 'none');
    const ref = document.querySelector('a.ref');
    return {
      nav_shown: shown('nav') || shown('header.site'),
      forms_shown: shown('form'),
      ref_after: ref ? getComputedStyle(ref, '::after').content : null,
      ref_href: ref ? ref.getAttribute('href') : null,
    };
  });
  await page.emulateMedia({ media: 'screen' });

  // A phone's first screen holds the consent button.
  await page.setViewportSize({ width: 390, height: 844 });
  await page.goto(origin + '/', { waitUntil: 'load' });
  const box = await page.getByRole('button', { name: 'Probe my connection' }).boundingBox();
  out.button_bottom_390x844 = box ? Math.ceil(box.y + box.height) : null;

  // Typing in Custom ticks Custom: the POST asks for a custom test.
  await page.setViewportSize({ width: 1280, height: 800 });
  await page.goto(origin + '/', { waitUntil: 'load' });
  out.common_checked_first = await page.isChecked('#kind-common');
  await page.fill('#custom-ports', '');
  await page.locator('#custom-ports').pressSequentially('22,80');
  out.custom_checked_after_typing = await page.isChecked('#kind-custom');
  const [posted] = await Promise.all([
    page.waitForRequest((r) => r.method() === 'POST' && new URL(r.url()).pathname === '/scan'),
    page.getByRole('button', { name: 'Probe my connection' }).click(),
  ]);
  const form = new URLSearchParams(posted.postData() ?? '');
  out.posted_kind = form.get('kind');
  out.posted_ports = form.get('ports');
  await page.waitForURL(/\/scan\/[0-9a-f]{32}$/, { waitUntil: 'load' });
  out.scan_url = page.url();

  const icon = await context.request.get(origin + '/favicon.ico');
  out.favicon = { status: icon.status(), type: icon.headers()['content-type'] ?? '' };

  out.csp = csp;
  out.errors = errors;
  out.foreign = foreign;
  clearTimeout(watchdog);
  await context.close();
  rmSync(profile, { recursive: true, force: true });
  process.stdout.write(JSON.stringify(out) + '\n');
  process.exit(0);
} catch (e) {
  if (context) await Promise.race([context.close().catch(() => {}), new Promise((r) => setTimeout(r, 5000))]);
  fail(e && e.stack ? e.stack : String(e));
}
