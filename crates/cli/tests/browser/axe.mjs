// axe-core in a page driven by playwright-core, for the accessibility checks
// of the browser tests. The script is evaluated through the DevTools protocol,
// which the page's Content-Security-Policy (no inline script) does not govern,
// so pages are checked exactly as they are served.
//
//   import { axeViolations } from './axe.mjs';
//   const v = await axeViolations(page);   // [] when the page passes
//   // each: { id, impact, help, nodes: [css selector, ...] }

import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const AXE_SOURCE = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

/** Runs axe-core (WCAG 2.0/2.1/2.2 A and AA rules plus best practices) on the page. */
export async function axeViolations(page) {
  await page.evaluate(AXE_SOURCE);
  const result = await page.evaluate(async () => {
    // eslint-disable-next-line no-undef
    const r = await axe.run(document, {
      runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa', 'best-practice'] },
      resultTypes: ['violations'],
    });
    return r.violations.map((v) => ({
      id: v.id,
      impact: v.impact,
      help: v.help,
      nodes: v.nodes.slice(0, 5).map((n) => n.target.join(' ')),
    }));
  });
  return result;
}

/** One line per violation, for failure messages. */
export function describe(violations) {
  return violations.map((v) => `${v.id} (${v.impact}): ${v.help} — ${v.nodes.join(', ')}`).join('\n');
}
