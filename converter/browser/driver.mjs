#!/usr/bin/env node
/**
 * Opens convertkit's runner page in headless Chromium (Debian's `chromium`, driven by playwright-core;
 * no browser download) and keeps it open until stdin closes:
 *
 *   node driver.mjs URL
 *
 * The page talks to Python's HTTP server itself (server.py: frames over /ck/next and /ck/reply);
 * this process only launches the browser, blocks every request that is not to the page's own origin
 * (127.0.0.1), and logs to stderr what Python needs when something goes wrong: "ready", the page's
 * errors and console errors, "crashed" when the page dies (exit 1).
 *
 * Chromium: CONVERTKIT_CHROMIUM; playwright-core: CONVERTKIT_NODE_MODULES, else the node_modules of
 * converter/formats/tfjs/node (pinned in its package.json). SwiftShader (software WebGL) stands in
 * for a GPU: headless Chromium has none here.
 */
import { createRequire } from 'node:module';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const modules = process.env.CONVERTKIT_NODE_MODULES
  ? path.resolve(process.env.CONVERTKIT_NODE_MODULES)
  : path.join(here, '..', 'formats', 'tfjs', 'node', 'node_modules');
// the HTML report test's flags, with SwiftShader's WebGL instead of --disable-gpu
const FLAGS = ['--headless', '--no-sandbox', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--use-angle=swiftshader', '--enable-unsafe-swiftshader',
  '--ignore-gpu-blocklist'];

const log = (text) => process.stderr.write(`${text.replace(/\s+/g, ' ').trim()}\n`);

async function main(url) {
  const { chromium } = createRequire(path.join(modules, '_resolve_from_here.cjs'))('playwright-core');
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'convertkit-chromium-'));  // a fresh --user-data-dir
  let context;
  const cleanup = async () => {
    try { await context?.close(); } catch { /* already gone */ }
    fs.rmSync(profile, { recursive: true, force: true });
  };
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: process.env.CONVERTKIT_CHROMIUM || '/usr/bin/chromium', headless: true, args: FLAGS,
      timeout: 60000,
    });
    const page = context.pages()[0] || await context.newPage();
    const origin = new URL(url).origin;
    await page.route('**/*', (route) => (new URL(route.request().url()).origin === origin ? route.continue()
      : (log(`blocked request ${route.request().url()}`), route.abort())));
    page.on('pageerror', (err) => log(`page error: ${err.message}`));
    page.on('console', (m) => { if (m.type() === 'error') log(`console error: ${m.text()}`); });
    page.on('crash', () => { log('crashed: the page died'); process.exit(1); });
    context.on('close', () => { log('crashed: the browser closed'); process.exit(1); });
    await page.goto(url, { waitUntil: 'load', timeout: 60000 });
    log(`ready ${context.browser()?.version() ?? ''}`);
    process.stdin.resume();
    await new Promise((resolve) => process.stdin.on('end', resolve).on('close', resolve));
  } finally {
    context?.removeAllListeners?.('close');
    await cleanup();
  }
}

main(process.argv[2]).then(() => process.exit(0), (err) => {
  log(`driver error: ${String(err && err.message || err).split('\n')[0]}`);
  process.exit(1);
});
