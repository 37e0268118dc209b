// A visitor in a real browser: Debian's headless Chromium, driven by
// playwright-core, runs the "common" test of `harbormaster serve` and reports
// what the page showed. Run by crates/cli/tests/browser.rs inside the visitor's
// network namespace:
//
//   node run.mjs URL OUTDIR
//
// URL is the landing page. On success prints one JSON line on stdout:
//   {"visitor":"198.18.0.2","counts":{"open":4,...,"pending":0},
//    "ports":{"0":"stealth",...},"verdict":"Stealth: not passed",
//    "verdict_class":"fail","live":true,"filled_by":"live-grid","elapsed_ms":1234}
// ("live": the scan page first showed a running grid; "filled_by": whether
// live.js completed the grid before the reload, or the verdict page came first).
// and saves OUTDIR/scan.png. On any failure prints "run.mjs: FAIL: ..." on
// stderr (plus OUTDIR/failure.png when a page was open) and exits non-zero.
// The whole run is bounded by TOTAL_MS.

import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const TOTAL_MS = 60_000;
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
    viewport: { width: 1000, height: 800 },
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

  // Choose the common test and consent.
  await page.check('input[type=radio][name=kind][value=common]');
  const button = page.getByRole('button', { name: 'Probe my connection' });
  const [posted] = await Promise.all([
    page.waitForResponse((r) => r.request().method() === 'POST' && new URL(r.url()).pathname === '/scan'),
    button.click(),
  ]);
  if (posted.status() !== 303) {
    const text = await bounded(posted.text());
    throw new Failure(`POST /scan answered ${posted.status()}, not 303: ${String(text ?? '').slice(0, 500)}`);
  }
  await page.waitForURL(/\/scan\/[^/]+$/, { waitUntil: 'load' });
  const scanUrl = page.url();

  // Live or already finished: record what the first view was.
  const live = (await page.locator('#grid').getAttribute('data-running')) === 'true';

  // Wait until every cell has a result, or the page reloaded with the verdict.
  // `filled_by` tells which came first: the live grid complete, or the verdict page.
  const filledBy = await (
    await page.waitForFunction(
      () => {
        if (document.getElementById('verdict') !== null) return 'verdict';
        const cells = [...document.querySelectorAll('#grid .cell')];
        const pending = (c) => c.classList.contains('s-pending') || c.textContent.trim() === '\u00b7';
        return cells.length > 0 && !cells.some(pending) ? 'live-grid' : false;
      },
      null,
      { timeout: STEP_MS, polling: 100 },
    )
  )
    .jsonValue()
    .catch(() => 'verdict'); // the page reloaded under the handle
  // live.js reloads on the `done` event; the finished page carries the verdict.
  await page.locator('#verdict').waitFor({ state: 'visible', timeout: STEP_MS });
  await page.waitForLoadState('load');

  const result = await page.evaluate((states) => {
    const counts = Object.fromEntries(states.map((s) => [s, 0]));
    const ports = {};
    const odd = [];
    for (const cell of document.querySelectorAll('#grid a.cell')) {
      const state = states.find((s) => cell.classList.contains('s-' + s));
      if (!state) {
        odd.push(cell.outerHTML);
        continue;
      }
      counts[state] += 1;
      ports[cell.id.replace(/^p/, '')] = state;
    }
    const v = document.getElementById('verdict');
    return {
      counts,
      ports,
      odd,
      running: document.getElementById('grid')?.dataset.running ?? null,
      verdict: v?.querySelector('h2')?.textContent?.trim() ?? null,
      verdict_class: v ? ['pass', 'fail'].find((c) => v.classList.contains(c)) ?? null : null,
    };
  }, STATES);

  await page.screenshot({ path: join(outdir, 'scan.png'), fullPage: true });

  if (result.odd.length) {
    // The usual cause: markup with two class attributes (`class="cell" ... class="s-open"`),
    // of which every browser keeps only the first.
    const html = await (await context.request.get(page.url())).text().catch(() => '');
    const dup = /<a class="cell"[^>]*\sclass="/.test(html) ? ' (the served HTML has two class attributes on the cells; browsers keep only the first)' : '';
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
      verdict: result.verdict,
      verdict_class: result.verdict_class,
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
