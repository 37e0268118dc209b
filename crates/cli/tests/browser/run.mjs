// A visitor in a real browser: Debian's headless Chromium, driven by
// playwright-core, runs the "common" test of `harbormaster serve` and reports
// what the page showed. Run by crates/cli/tests/browser.rs inside the visitor's
// network namespace:
//
//   node run.mjs URL OUTDIR
//
// URL is the landing page. On success prints one JSON line on stdout:
//   {"visitor":"198.18.0.2","counts":{"open":4,...,"pending":0},
//    "ports":{"0":"stealth",...},"ports_text":["0","21",...],
//    "verdict":"4 ports accept connections from the internet",
//    "verdict_class":"fail","verdict_top":230,"live":true,"filled_by":"live-grid",
//    "scan_loads":1,"axe":{"common_running":[...],"common_done":[],...},
//    "overflow":{"320":0,"390":0},"service":{...},"nojs":{...},"elapsed_ms":1234}
// ("live": the scan page first showed a running test; "filled_by": whether
// live.js completed the results before the verdict appeared, or the verdict
// came first; "scan_loads": page loads of the scan page, 1 when live.js
// finished it in place; "axe": violations per page state, each a list of
// "rule: nodes"; "overflow": horizontal overflow in px at those widths;
// "nojs": the same test in a context without JavaScript, reaching its verdict
// by the page's own refresh) and saves OUTDIR/scan.png. On any failure prints
// "run.mjs: FAIL: ..." on stderr (plus OUTDIR/failure.png when a page was
// open) and exits non-zero. The whole run is bounded by TOTAL_MS.

import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { axeViolations } from './axe.mjs';

const TOTAL_MS = 150_000;
const STEP_MS = 30_000;
const CHROMIUM = '/usr/bin/chromium';
// No traffic but the page's own: no update checks, sync, first-run pings or QUIC.
const FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  // Small /dev/shm (containers) must not crash the renderer.
  '--disable-dev-shm-usage',
];
const STATES = ['open', 'closed', 'filtered', 'stealth', 'pending'];

function fail(msg) {
  process.stderr.write(`run.mjs: FAIL: ${msg}\n`);
  process.exit(1);
}

/** `p`, or nothing after `ms`: cleanup after a failure must not hang. */
function bounded(p, ms = 5000) {
  return Promise.race([p.catch(() => {}), new Promise((r) => setTimeout(r, ms).unref())]);
}

/** A failed expectation: reported by its message alone (no stack). */
class Failure extends Error {}
function check(ok, msg) {
  if (!ok) throw new Failure(msg);
}

/** Picks `kind` on the landing page shown in `p`, consents, and waits for the scan page. */
async function startTest(p, kind) {
  await p.check(`input[type=radio][name=kind][value=${kind}]`);
  const button = p.getByRole('button', { name: 'Probe my connection' });
  const [posted] = await Promise.all([
    p.waitForResponse((r) => r.request().method() === 'POST' && new URL(r.url()).pathname === '/scan'),
    button.click(),
  ]);
  if (posted.status() !== 303) {
    const text = await bounded(posted.text());
    throw new Failure(`POST /scan (${kind}) answered ${posted.status()}, not 303: ${String(text ?? '').slice(0, 500)}`);
  }
  await p.waitForURL(/\/scan\/[^/]+$/, { waitUntil: 'load' });
  return p.url();
}

const [url, outdir] = process.argv.slice(2);
if (!url || !outdir) fail('usage: node run.mjs URL OUTDIR');
const origin = new URL(url).origin;

const started = Date.now();
let context = null;
let page = null;
const profile = mkdtempSync(join(outdir, 'chromium-profile-'));

// Hard stop: whatever hangs, the run ends within TOTAL_MS (+ a little to close).
const watchdog = setTimeout(async () => {
  process.stderr.write(`run.mjs: FAIL: timed out after ${TOTAL_MS} ms (at ${page ? page.url() : 'startup'})\n`);
  if (page) await bounded(page.screenshot({ path: join(outdir, 'failure.png'), timeout: 5000 }));
  if (context) await bounded(context.close());
  process.exit(3);
}, TOTAL_MS);

try {
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: FLAGS,
    timeout: STEP_MS,
    viewport: { width: 1366, height: 768 },
  });
  page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(STEP_MS);

  // Everything the page does must stay on the server under test, and run cleanly.
  const foreign = [];
  const errors = [];
  context.on('request', (r) => {
    const u = r.url();
    if (!u.startsWith(origin + '/') && u !== origin && !u.startsWith('data:')) foreign.push(u);
  });
  page.on('pageerror', (e) => errors.push(String(e)));
  // Content-Security-Policy violations, as the page reports them (the init
  // script and binding come from the browser, so the policy does not block them).
  const csp = [];
  await context.exposeBinding('__hmCsp', (_source, v) => csp.push(v));
  await context.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      window.__hmCsp(`${e.violatedDirective} blocked ${e.blockedURI || 'inline'} on ${location.pathname}`);
    });
  });
  page.on('console', (m) => {
    if (/Content Security Policy/i.test(m.text())) csp.push(m.text());
  });

  // The landing page shows the visitor's address.
  const resp = await page.goto(url, { waitUntil: 'load' });
  check(resp && resp.ok(), `GET ${url}: ${resp ? resp.status() : 'no response'}`);
  const visitor = (await page.locator('#visitor-ip').textContent())?.trim() ?? '';
  check(visitor, 'the landing page does not show the visitor address (#visitor-ip)');
  const policy = resp.headers()['content-security-policy'] ?? '';
  check(policy.includes("frame-ancestors 'none'") && policy.includes("script-src 'self'"), `landing page CSP: ${policy || 'missing'}`);
  // The listener works: an inline script added now must be reported (and blocked).
  await page.evaluate(() => {
    const s = document.createElement('script');
    s.textContent = 'window.__hmInlineRan = true;';
    document.head.appendChild(s);
  });
  await page.waitForFunction(() => true, null, { timeout: 1000 }).catch(() => {});
  for (let i = 0; i < 20 && !csp.length; i++) await new Promise((r) => setTimeout(r, 50));
  check(csp.length > 0, 'an injected inline script raised no CSP violation: the policy or the listener is not working');
  check(!(await page.evaluate(() => window.__hmInlineRan === true)), 'an injected inline script ran despite the CSP');
  csp.length = 0;

  const axe = {};
  const brief = (v) => v.map((x) => `${x.id}: ${x.nodes.join(', ')}`);

  const scanUrl = await startTest(page, 'common');
  let scanLoads = 1;
  page.on('load', () => (scanLoads += 1));

  // Live or already finished: record what the first view was.
  const live = (await page.locator('#grid').getAttribute('data-running')) === 'true';
  // A keyboard user on a port link while it runs keeps focus there when the
  // finished results settle in place.
  const focusTried = live && (await page.evaluate(() => {
    const a = document.querySelector('#p22 a');
    if (!a || document.getElementById('verdict')) return false;
    a.focus();
    return document.activeElement === a;
  }));
  if (live) axe.common_running = brief(await axeViolations(page));

  // Wait until every port has a result, or the verdict is shown.
  // `filled_by` tells which came first.
  const filledBy = await (
    await page.waitForFunction(
      () => {
        if (document.getElementById('verdict') !== null) return 'verdict';
        const cells = [...document.querySelectorAll('#grid [id^="p"]')];
        return cells.length > 0 && !cells.some((c) => c.classList.contains('sp')) ? 'live-grid' : false;
      },
      null,
      { timeout: STEP_MS, polling: 100 },
    )
  )
    .jsonValue()
    .catch(() => 'verdict'); // the page reloaded under the handle
  // live.js puts the finished page's verdict in place on the `done` event.
  await page.locator('#verdict').waitFor({ state: 'visible', timeout: STEP_MS });
  await page.waitForLoadState('load');
  await page.evaluate(() => window.scrollTo(0, 0));

  const result = await page.evaluate((states) => {
    const classes = { so: 'open', sc: 'closed', sf: 'filtered', ss: 'stealth', sp: 'pending' };
    const counts = Object.fromEntries(states.map((s) => [s, 0]));
    const ports = {};
    const odd = [];
    for (const cell of document.querySelectorAll('#grid [id^="p"]')) {
      const state = classes[cell.className];
      if (!state) {
        odd.push(cell.outerHTML);
        continue;
      }
      counts[state] += 1;
      ports[cell.id.replace(/^p/, '')] = state;
    }
    const v = document.getElementById('verdict');
    const h = v?.querySelector('h2');
    return {
      counts,
      ports,
      odd,
      // The port numbers as the table shows them, as text.
      ports_text: [...document.querySelectorAll('#grid tbody th')].map((th) => th.innerText.trim()),
      running: document.getElementById('grid')?.dataset.running ?? null,
      verdict: h?.textContent?.trim() ?? null,
      verdict_top: h ? Math.round(h.getBoundingClientRect().top + window.scrollY) : null,
      verdict_bottom: h ? Math.round(h.getBoundingClientRect().bottom + window.scrollY) : null,
      verdict_class: v ? ['pass', 'fail'].find((c) => v.classList.contains(c)) ?? null : null,
    };
  }, STATES);
  const focusKept = await page.evaluate(() => document.activeElement?.closest('[id]')?.id === 'p22' && document.activeElement.tagName === 'A');
  axe.common_done = brief(await axeViolations(page));
  const commonLoads = scanLoads;
  await page.screenshot({ path: join(outdir, 'scan.png'), fullPage: true });

  // Reflow: no horizontal scroll on narrow phones.
  const overflow = {};
  for (const width of [320, 390]) {
    await page.setViewportSize({ width, height: 800 });
    overflow[width] = await page.evaluate(() => {
      const w = document.documentElement.clientWidth;
      const over = document.documentElement.scrollWidth - w;
      // Name the widest culprits, for the failure message.
      const wide = [...document.querySelectorAll('body *')]
        .filter((e) => e.getBoundingClientRect().right > w + 1)
        .slice(0, 3)
        .map((e) => `${e.tagName.toLowerCase()}${e.id ? '#' + e.id : ''}${e.className ? '.' + e.className : ''}`);
      return over > 0 ? `${over} px: ${wide.join(' ')}` : 0;
    });
    await page.screenshot({ path: join(outdir, `scan-${width}.png`), fullPage: false });
  }
  await page.setViewportSize({ width: 1366, height: 768 });

  // The Service test: the grid, running (when caught running) and finished.
  await page.goto(url, { waitUntil: 'load' });
  await startTest(page, 'service');
  const serviceLive = (await page.locator('#grid').getAttribute('data-running')) === 'true';
  if (serviceLive) axe.service_running = brief(await axeViolations(page));
  await page.locator('#verdict').waitFor({ state: 'visible', timeout: STEP_MS });
  axe.service_done = brief(await axeViolations(page));
  const service = await page.evaluate(() => ({
    cells: document.querySelectorAll('#grid a[id^="p"]').length,
    labelled: document.querySelectorAll('#grid a[aria-label]').length,
    pending: document.querySelectorAll('#grid .sp').length,
    verdict: document.querySelector('#verdict h2')?.textContent?.trim() ?? null,
    overflow: document.documentElement.scrollWidth - document.documentElement.clientWidth,
  }));
  service.live = serviceLive;
  // Page weight, as served (plain) and gzipped (zlib level 6, near what the server sends).
  const served = await (await context.request.get(page.url())).body();
  service.bytes = served.length;
  service.gzip = (await import('node:zlib')).gzipSync(served).length;
  await page.screenshot({ path: join(outdir, 'service.png'), fullPage: true });

  // Without JavaScript: the page refreshes itself until the verdict.
  const nojsProfile = mkdtempSync(join(outdir, 'chromium-nojs-'));
  const nojsContext = await chromium.launchPersistentContext(nojsProfile, {
    executablePath: CHROMIUM,
    headless: true,
    args: FLAGS,
    timeout: STEP_MS,
    javaScriptEnabled: false,
    viewport: { width: 390, height: 800 },
  });
  let nojs;
  try {
    const np = nojsContext.pages()[0] ?? (await nojsContext.newPage());
    np.setDefaultTimeout(STEP_MS);
    await np.goto(url, { waitUntil: 'load' });
    await startTest(np, 'common');
    let loads = 1;
    np.on('load', () => (loads += 1));
    const first = await np.locator('#grid').getAttribute('data-running');
    const rows = await np.locator('#grid tbody tr').count();
    await np.locator('#verdict').waitFor({ state: 'attached', timeout: STEP_MS });
    nojs = {
      first_running: first === 'true',
      rows,
      loads,
      verdict: (await np.locator('#verdict h2').textContent())?.trim() ?? null,
      pending: await np.locator('#grid .sp').count(),
      overflow: await np.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth),
    };
  } finally {
    await bounded(nojsContext.close());
    rmSync(nojsProfile, { recursive: true, force: true });
  }



  if (result.odd.length) {
    // The usual cause: markup with two class attributes (`class="cell" ... class="s-open"`),
    // of which every browser keeps only the first.
    const html = await (await context.request.get(page.url())).text().catch(() => '');
    const dup = /<(a|tr) class="[^"]*"[^>]*\sclass="/.test(html) ? ' (the served HTML has two class attributes on the cells; browsers keep only the first)' : '';
    throw new Failure(`${result.odd.length} of ${result.odd.length + STATES.reduce((n, s) => n + result.counts[s], 0)} grid cell(s) have no s-STATE class in the browser${dup}; first: ${result.odd[0]}`);
  }
  check(result.running === 'false', `the finished page still says data-running=${result.running}`);
  check(!result.counts.pending, `${result.counts.pending} cell(s) still pending with the verdict shown`);
  check(result.verdict, 'the verdict block has no heading');
  check(!errors.length, `JavaScript errors on the page: ${errors.join(' | ')}`);
  check(!csp.length, `Content-Security-Policy violations: ${csp.join(' | ')}`);
  check(!foreign.length, `requests left ${origin}: ${foreign.join(' ')}`);

  clearTimeout(watchdog);
  await context.close();
  rmSync(profile, { recursive: true, force: true });
  process.stdout.write(
    JSON.stringify({
      visitor,
      scan_url: scanUrl,
      live,
      filled_by: filledBy,
      counts: result.counts,
      ports: result.ports,
      ports_text: result.ports_text,
      verdict: result.verdict,
      verdict_class: result.verdict_class,
      verdict_top: result.verdict_top,
      verdict_bottom: result.verdict_bottom,
      scan_loads: commonLoads,
      focus_tried: focusTried,
      focus_kept: focusKept,
      axe,
      overflow,
      service,
      nojs,
      csp_violations: csp.length,
      elapsed_ms: Date.now() - started,
    }) + '\n',
  );
  process.exit(0);
} catch (e) {
  if (page) await bounded(page.screenshot({ path: join(outdir, 'failure.png'), timeout: 5000 }));
  if (context) await bounded(context.close());
  fail(e instanceof Failure ? e.message : e && e.stack ? e.stack : String(e));
}
