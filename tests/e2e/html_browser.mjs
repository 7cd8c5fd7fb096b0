/**
 * Opens convertkit's HTML report in a real headless Chromium (Debian's `chromium`, driven by
 * playwright-core; no browser download) and prints what a reader would see, as one JSON line:
 *
 *   node tests/e2e/html_browser.mjs PAGE.html SHOT.png
 *
 * {"title", "consoleErrors": [...], "pageErrors": [...], "requests": [non-file URLs the page asked
 *  for], "sections": [{"id", "heading", "verdict", "visible", "svgs", "tables"}], "hiddenWhenFiltered":
 *  [section ids hidden after ticking "show only what did not pass"], "width", "height"}
 *
 * Every request that is not the page's own file is aborted and listed: the page must need none.
 * Chromium comes from CONVERTKIT_CHROMIUM, else /usr/bin/chromium; playwright-core from
 * CONVERTKIT_NODE_MODULES, else converter/formats/tfjs/node/node_modules (pinned in its package.json).
 * Errors: {"error": "..."} and exit status 1.
 */
import { createRequire } from 'node:module';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const modules = process.env.CONVERTKIT_NODE_MODULES
  ? path.resolve(process.env.CONVERTKIT_NODE_MODULES)
  : path.join(here, '..', '..', 'converter', 'formats', 'tfjs', 'node', 'node_modules');
const require = createRequire(path.join(modules, '_resolve_from_here.cjs'));
const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

async function main(page, shot) {
  const { chromium } = require('playwright-core');
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'convertkit-chromium-'));  // a fresh --user-data-dir
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CONVERTKIT_CHROMIUM || '/usr/bin/chromium',
    headless: true, args: FLAGS, timeout: 60000, viewport: { width: 1200, height: 900 },
  });
  try {
    const tab = context.pages()[0] || await context.newPage();
    const out = { consoleErrors: [], pageErrors: [], requests: [] };
    tab.on('console', (m) => { if (m.type() === 'error') out.consoleErrors.push(m.text()); });
    tab.on('pageerror', (e) => out.pageErrors.push(String(e)));
    const own = pathToFileURL(path.resolve(page)).href;
    await tab.route('**/*', (route) => {
      const url = route.request().url();
      if (url === own) return route.continue();
      out.requests.push(url);
      return route.abort();
    });
    await tab.goto(own, { waitUntil: 'load', timeout: 30000 });
    out.title = await tab.title();
    out.sections = await sections(tab);
    await tab.screenshot({ path: shot, fullPage: true });
    await tab.check('#only-bad');
    out.hiddenWhenFiltered = (await sections(tab)).filter((s) => !s.visible).map((s) => s.id);
    Object.assign(out, await tab.evaluate(() => ({ width: document.documentElement.scrollWidth,
      height: document.documentElement.scrollHeight })));
    return out;
  } finally {
    await context.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
}

function sections(tab) {
  return tab.$$eval('section.artifact', (els) => els.map((el) => {
    const box = el.getBoundingClientRect();
    return { id: el.id, heading: el.querySelector('h2')?.innerText ?? '', verdict: el.dataset.verdict,
      visible: box.width > 0 && box.height > 0, svgs: el.querySelectorAll('svg').length,
      tables: el.querySelectorAll('table').length };
  }));
}

const [page, shot] = process.argv.slice(2);
main(page, shot).then(
  (out) => { process.stdout.write(JSON.stringify(out) + '\n'); },
  (err) => { process.stdout.write(JSON.stringify({ error: String(err && err.message || err).split('\n')[0] }) + '\n');
    process.exitCode = 1; },
);
