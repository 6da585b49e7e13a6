// The browser test (run by `cargo xtask integration` / `cargo xtask browser`, which start the
// harness in interactive mode and the patient-viewer example): headless Chromium, driven by
// playwright-core over the DevTools protocol, through
//
//   1. an EHR launch from the harness's "EHR" page (`iss` + `launch`), oidc-provider's own
//      login and consent pages filled in and submitted, the app's page with the patient's name;
//   2. a standalone launch from the app's own sign-in link;
//   3. a sign-out, after which the app's page asks to launch again;
//
// checking the session cookie's attributes and that no token (the ones the app stored, and
// anything shaped like a JWT) appears in any URL, page or cookie the browser saw. Nothing is
// downloaded: the browser is Debian's `chromium`, and requests leaving 127.0.0.1 are aborted
// (and make the test fail, but for the web font oidc-provider's development pages import).

import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';

import { chromium } from 'playwright-core';

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set (run through cargo xtask browser)`);
  return v;
};

const FLAGS = [
  '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];
const JWT = /eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\./;
const TOKEN_KEY = /token/i;

/** Every string stored under a key naming a token, anywhere in the app's session file. */
function storedTokens(path) {
  const out = new Set();
  const walk = (v, key) => {
    if (typeof v === 'string') {
      if (key && TOKEN_KEY.test(key) && v.length >= 16) out.add(v);
      // Values stored as JSON text.
      if (v.startsWith('{')) {
        try { walk(JSON.parse(v), key); } catch { /* not JSON */ }
      }
    } else if (Array.isArray(v)) {
      v.forEach((x) => walk(x, key));
    } else if (v && typeof v === 'object') {
      for (const [k, x] of Object.entries(v)) walk(x, k);
    }
  };
  walk(JSON.parse(readFileSync(path, 'utf8')), undefined);
  return out;
}

test('SC-4.26 P5: EHR launch, standalone launch and sign-out in headless Chromium', async () => {
  const started = performance.now();
  const ehr = env('BROWSER_EHR');
  const app = env('BROWSER_APP');
  const user = env('BROWSER_USER');
  const patientIds = JSON.parse(env('BROWSER_PATIENT_IDS'));
  const sessionsFile = env('BROWSER_SESSIONS_FILE');
  const shots = env('BROWSER_SCREENSHOT_DIR');
  const profile = mkdtempSync(join(tmpdir(), 'smart-fhir-chromium-'));

  const context = await chromium.launchPersistentContext(profile, {
    executablePath: env('BROWSER_CHROMIUM'),
    headless: true,
    args: FLAGS,
  });
  const urls = [];
  const documents = [];
  const setCookies = [];
  const offsite = [];
  try {
    await context.route('**/*', (route) => {
      const { hostname } = new URL(route.request().url());
      if (hostname === '127.0.0.1') return route.continue();
      offsite.push(route.request().url());
      return route.abort();
    });
    context.on('request', (r) => urls.push(r.url()));
    context.on('response', async (r) => {
      const location = r.headers().location;
      if (location) urls.push(location);
      if (r.url().startsWith(app)) {
        const sc = await r.headerValue('set-cookie').catch(() => null);
        if (sc) setCookies.push(...sc.split('\n'));
      }
      if (r.request().resourceType() === 'document' && r.status() < 300) {
        documents.push(await r.text().catch(() => ''));
      }
    });
    const page = context.pages()[0] ?? await context.newPage();
    const tokens = new Set();

    /** oidc-provider's login page (when it asks) and consent page, then the app's page. */
    async function authorize() {
      await page.waitForURL((u) => u.pathname.includes('/oidc/interaction/') || u.href.startsWith(`${app}/`));
      if (await page.locator('input[name="login"]').count() > 0) {
        await page.fill('input[name="login"]', user);
        await page.fill('input[name="password"]', 'any password');
        await Promise.all([page.waitForNavigation(), page.click('button[type="submit"]')]);
      }
      if (page.url().includes('/oidc/interaction/')) {
        assert.match(await page.content(), /Authorize|consent|Continue/i, 'the consent page');
        await page.click('button[type="submit"]');
      }
      await page.waitForURL(`${app}/`);
      for (const t of storedTokens(sessionsFile)) tokens.add(t);
    }

    /** The patient's name as the EHR shows it. */
    async function ehrName(id) {
      await page.goto(`${ehr}?app=${encodeURIComponent(`${app}/smart/launch`)}&patient=${id}`);
      return (await page.textContent('#ehr-patient')).trim();
    }

    // 1. EHR launch, for the second seeded patient.
    const standaloneName = await ehrName(patientIds[0]);
    const ehrPatient = await ehrName(patientIds[1]);
    assert.notEqual(ehrPatient, standaloneName);
    await page.click('#launch');
    await authorize();
    assert.equal((await page.textContent('#patient-name')).trim(), ehrPatient, 'EHR launch: the patient in context');
    assert.match((await page.textContent('#birth-date')).trim(), /^\d{4}-\d{2}-\d{2}$/);
    assert.ok(await page.locator('#observations tr').count() >= 2, 'latest observations listed');
    await page.screenshot({ path: join(shots, 'patient-page.png'), fullPage: true });

    // The session cookie: an opaque id, HttpOnly, SameSite=Lax, Path=/, not Secure on loopback
    // HTTP (development); no other cookie from the app.
    const appCookies = (await context.cookies(app)).filter((c) => c.domain === '127.0.0.1' && c.name.startsWith('smart_'));
    assert.equal(appCookies.length, 1, JSON.stringify(appCookies.map((c) => c.name)));
    const [sid] = appCookies;
    assert.equal(sid.name, 'smart_session');
    assert.match(sid.value, /^[0-9a-f]{64}$/);
    assert.equal(sid.httpOnly, true);
    assert.equal(sid.sameSite, 'Lax');
    assert.equal(sid.path, '/');
    assert.equal(sid.secure, false);
    assert.ok(setCookies.some((c) => /HttpOnly/.test(c) && /SameSite=Lax/.test(c) && /Path=\//.test(c)), setCookies.join(' | '));

    // 2. Standalone launch from the app's own pages (the default patient).
    await page.goto(`${app}/smart/start`);
    await page.click('#sign-in');
    await authorize();
    assert.equal((await page.textContent('#patient-name')).trim(), standaloneName, 'standalone launch: the default patient');

    // 3. Sign-out; then the app's page asks to launch again.
    await page.click('#sign-out');
    await page.waitForLoadState();
    assert.match(await page.textContent('h1'), /Signed out/);
    assert.match(await page.content(), /revoked/);
    await page.goto(`${app}/`);
    assert.equal(new URL(page.url()).pathname, '/smart/start', 'no session: redirected to the start page');
    assert.match(await page.textContent('h1'), /Launch the app/);

    // No token anywhere the browser saw it.
    assert.ok(tokens.size >= 2, `tokens read from the app's session file: ${tokens.size}`);
    const cookies = (await context.cookies()).map((c) => `${c.name}=${c.value}`);
    const seen = [...urls, ...documents, ...cookies, ...setCookies];
    for (const item of seen) {
      assert.doesNotMatch(item, JWT, 'a JWT in a URL, page or cookie');
      for (const t of tokens) assert.ok(!item.includes(t), 'a stored token in a URL, page or cookie');
    }
    // oidc-provider's development login and consent pages import a web font; that request
    // was aborted like any other leaving 127.0.0.1, and nothing else tried to leave.
    assert.deepEqual(offsite.filter((u) => !u.startsWith('https://fonts.googleapis.com/')), [],
      'requests that left 127.0.0.1');
    process.stderr.write(`browser test: ${urls.length} URLs, ${documents.length} pages, ${cookies.length} cookies checked; `
      + `${((performance.now() - started) / 1000).toFixed(1)} s\n`);
  } catch (err) {
    // Where the browser was: its URL and the visible text (pages carry no token).
    const page = context.pages()[0];
    if (page) {
      const text = await page.evaluate(() => document.body?.innerText ?? '').catch(() => '');
      process.stderr.write(`browser test failed at ${page.url()}:\n${text.slice(0, 1500)}\n`);
      await page.screenshot({ path: join(shots, 'failure.png'), fullPage: true }).catch(() => {});
    }
    throw err;
  } finally {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  }
});
