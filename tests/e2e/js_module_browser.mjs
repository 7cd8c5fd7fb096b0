/**
 * Loads generated model.js modules in a real headless Chromium (Debian's `chromium`, driven by
 * playwright-core; no browser download), as a web page with an import map would:
 *
 *   node tests/e2e/js_module_browser.mjs PAGE_URL RESULT.json
 *
 * The page (written by the test) sets window.result when it is done; that object is written to
 * RESULT.json with the page's errors. Chromium comes from CONVERTKIT_CHROMIUM, else /usr/bin/chromium;
 * playwright-core from CONVERTKIT_NODE_MODULES, else converter/formats/tfjs/node/node_modules.
 */
import { createRequire } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const modules = process.env.CONVERTKIT_NODE_MODULES
  ? path.resolve(process.env.CONVERTKIT_NODE_MODULES)
  : path.join(here, '..', '..', 'converter', 'formats', 'tfjs', 'node', 'node_modules');
const { chromium } = createRequire(path.join(modules, '_resolve_from_here.cjs'))('playwright-core');
const [url, resultPath] = process.argv.slice(2);

const browser = await chromium.launch({
  executablePath: process.env.CONVERTKIT_CHROMIUM || '/usr/bin/chromium', headless: true, timeout: 60000,
  args: ['--no-sandbox', '--use-angle=swiftshader', '--enable-unsafe-swiftshader', '--disable-background-networking'],
});
const pageErrors = [];
try {
  const page = await browser.newPage();
  page.on('pageerror', (err) => pageErrors.push(err.message));
  await page.goto(url);
  await page.waitForFunction(() => window.result !== undefined, null, { timeout: 120000 });
  const result = await page.evaluate(() => window.result);
  fs.writeFileSync(resultPath, JSON.stringify({ ...result, pageErrors }));
} finally {
  await browser.close();
}
