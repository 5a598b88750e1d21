// The proof that an instance works for a person: Debian's chromium, driven headless by
// puppeteer-core, opens the web app through the nginx vhost the way a user's browser does.
//
//   node browser.mjs <url>
//
// Stages, each printed as `ok <stage>: <detail>` on stdout when it passes; the first one
// that fails prints `FAIL <stage>: <reason>` and the script exits 1:
//   isolated  the page loads over HTTPS and is cross-origin isolated
//             (`self.crossOriginIsolated === true`, SharedArrayBuffer exists): without the
//             server's COOP/COEP headers the web app cannot start its backend
//   refused   a wrong password (random) is refused on Actual's login page: the login
//             check below can fail (done in the same page: see "rate limit" below)
//   login     the password from BROWSER_PASSWORD_FILE signs in
//   budget    the budget BROWSER_BUDGET is listed and opens
//   balance   the sidebar link of account BROWSER_ACCOUNT_ID shows the balance
//             BROWSER_BALANCE_CENTS (integer cents, formatted the way Actual formats it by
//             default: 1,234.56)
// BROWSER_STAGES (comma list) runs only the stages named, in order (e.g. `isolated`).
//
// Rate limit: the sync server answers at most 500 requests a minute per client address,
// and one load of the web app makes a few hundred (its backend fetches every migration
// file). Several loads in a minute from the same address get 429s and the app falls back
// to its "Welcome / connect to a sync server" page; so the controls share one load where
// they can, and every failure says how many 429s the page got.
//
// The browser: BROWSER_CHROMIUM (default /usr/bin/chromium) with a throw-away profile;
// BROWSER_RESOLVE `host=ip,...` maps names to addresses (--host-resolver-rules, no DNS or
// /etc/hosts needed); BROWSER_SPKI is the base64 sha256 of the server certificate's public
// key, the one certificate chromium then accepts (--ignore-certificate-errors-spki-list:
// the connection counts as valid, not as a clicked-through error). The driver is found in
// BROWSER_DRIVER_DIR/node_modules.
//
// BROWSER_OUT (a directory): on a failure the script leaves <tag>-failure.png (a
// screenshot), <tag>-dom.html and <tag>-console.log (the page's console and failed
// requests) there, on success <tag>.png (the last page); BROWSER_TAG names them (default
// `browser`). BROWSER_TIMEOUT_MS (default 90000) bounds each wait.

import { createRequire } from 'node:module';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

function need(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
}

const url = process.argv[2];
if (!url || process.argv.length !== 3) {
  process.stderr.write('usage: browser.mjs <url>\n');
  process.exit(2);
}
const out = process.env.BROWSER_OUT || '.';
const tag = process.env.BROWSER_TAG || 'browser';
const stages = (process.env.BROWSER_STAGES || 'isolated,refused,login,budget,balance').split(',');
const timeout = Number(process.env.BROWSER_TIMEOUT_MS || 90000);
const require = createRequire(join(need('BROWSER_DRIVER_DIR'), 'package.json'));
const puppeteer = require('puppeteer-core');

const consoleLines = [];
const counts = { requests: 0, tooMany: 0 };
const note = (line) => consoleLines.push(`${new Date().toISOString()} ${line}`);

const args = ['--no-sandbox', '--disable-dev-shm-usage', '--no-proxy-server', '--no-first-run'];
if (process.env.BROWSER_RESOLVE) {
  const rules = process.env.BROWSER_RESOLVE.split(',').map((m) => {
    const [host, ip] = m.split('=');
    return `MAP ${host} ${ip}`;
  });
  args.push(`--host-resolver-rules=${rules.join(',')}`);
}
if (process.env.BROWSER_SPKI) args.push(`--ignore-certificate-errors-spki-list=${process.env.BROWSER_SPKI}`);

const browser = await puppeteer.launch({
  executablePath: process.env.BROWSER_CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args,
  // A self-signed certificate must be accepted through the SPKI pin above, not by
  // ignoring every certificate error.
  acceptInsecureCerts: false,
});
const page = await browser.newPage();
await page.setViewport({ width: 1280, height: 900 });
page.setDefaultTimeout(timeout);
page.on('console', (m) => note(`console.${m.type()}: ${m.text()}`));
page.on('pageerror', (e) => note(`pageerror: ${e.message}`));
page.on('requestfailed', (r) => note(`requestfailed: ${r.url()} ${r.failure()?.errorText}`));
page.on('request', () => counts.requests++);
page.on('response', (r) => {
  if (r.status() === 429) counts.tooMany++;
  if (r.status() >= 400) note(`http ${r.status()}: ${r.url()}`);
});

class StageError extends Error {}
let current = 'start';
const ok = (detail) => process.stdout.write(`ok ${current}: ${detail}\n`);
const fail = (reason) => {
  throw new StageError(reason);
};
// The visible text of the page, for failure messages.
const pageText = async () =>
  (await page.evaluate(() => document.body?.innerText || '')).replace(/\s+/g, ' ').slice(0, 400);

// Actual's default number format (comma-dot): 1,234.56; a minus for negative amounts.
function money(cents) {
  return new Intl.NumberFormat('en-US', { minimumFractionDigits: 2, maximumFractionDigits: 2 }).format(cents / 100);
}

// signIn(password): type it into Actual's login page; 'in' once the app has left the
// login page, 'refused' when it shows its "Invalid password" line.
async function signIn(password) {
  const field = await page
    .waitForSelector('input[type=password]', { visible: true })
    .catch(async () => fail(`no password field at ${page.url()}: ${await pageText()}`));
  const refusedText = () => /invalid password/i.test(document.body?.innerText || '');
  const again = await page.evaluate(refusedText);
  await field.click({ count: 3 }); // select what an earlier attempt left in the field
  await field.type(password);
  await field.press('Enter');
  // After an earlier refusal its error line is still there: the submit clears it first.
  if (again) {
    await page
      .waitForFunction(`!(${refusedText})()`, { polling: 'mutation', timeout: 10000 })
      .catch(() => fail('the error line of the earlier attempt did not go away on submit'));
  }
  // A refusal shows Actual's error line: no need to wait for the timeout then.
  return page
    .waitForFunction(() => {
      if (/invalid password/i.test(document.body?.innerText || '')) return 'refused';
      return !document.querySelector('input[type=password]') && !location.pathname.startsWith('/login') && 'in';
    })
    .then((h) => h.jsonValue())
    .catch(async () => fail(`still on the login page (${page.url()}): ${await pageText()}`));
}

const run = {
  async isolated() {
    const resp = await page.goto(url, { waitUntil: 'domcontentloaded' });
    if (!resp) fail(`no response for ${url}`);
    if (resp.status() !== 200) fail(`GET ${url} answered ${resp.status()}`);
    if (!resp.securityDetails()) fail(`${url} was not loaded over TLS`);
    const h = resp.headers();
    const got = await page.evaluate(() => ({
      isolated: self.crossOriginIsolated,
      secure: self.isSecureContext,
      sab: typeof SharedArrayBuffer === 'function',
    }));
    const why = `COOP=${h['cross-origin-opener-policy'] || '(none)'} COEP=${h['cross-origin-embedder-policy'] || '(none)'}`;
    if (got.isolated !== true) fail(`crossOriginIsolated is ${got.isolated} (secure context: ${got.secure}; ${why})`);
    if (!got.sab) fail(`SharedArrayBuffer is missing although crossOriginIsolated is true`);
    ok(`${url} over ${resp.securityDetails().protocol()}, crossOriginIsolated, SharedArrayBuffer (${why})`);
  },

  async refused() {
    const wrong = `wrong-${Math.random().toString(36).slice(2)}`;
    if ((await signIn(wrong)) !== 'refused') fail(`a wrong password was not refused (now at ${page.url()})`);
    ok(`a wrong password is refused: "Invalid password"`);
  },

  async login() {
    const password = readFileSync(need('BROWSER_PASSWORD_FILE'), 'utf8').trim();
    const outcome = await signIn(password);
    if (outcome === 'refused') fail(`the password was refused: ${await pageText()}`);
    ok(`signed in with the password, now at ${new URL(page.url()).pathname}`);
  },


  async budget() {
    const name = need('BROWSER_BUDGET');
    // The file list shows the budgets on the server; the smallest element with the name is
    // the entry to click.
    const entry = await page
      .waitForSelector(`::-p-text(${JSON.stringify(name)})`, { visible: true })
      .catch(async () => fail(`budget ${name} is not listed: ${await pageText()}`));
    await entry.click();
    // Opened: the budget's accounts appear in the sidebar (links to /accounts/<id>).
    await page
      .waitForSelector('a[href*="/accounts/"]', { visible: true })
      .catch(async () => fail(`budget ${name} did not open (${page.url()}): ${await pageText()}`));
    ok(`budget ${name} downloaded and opened`);
  },

  async balance() {
    const id = need('BROWSER_ACCOUNT_ID');
    const want = money(Number(need('BROWSER_BALANCE_CENTS')));
    const sel = `a[href$="/accounts/${id}"]`;
    const link = await page.waitForSelector(sel, { visible: true }).catch(async () =>
      fail(`no sidebar link to account ${id}: ${await pageText()}`),
    );
    // The balance is computed by the app's backend (in the browser, from the downloaded
    // budget): wait for a figure to appear, then up to BROWSER_SETTLE_MS more for it to
    // become the expected one rather than judging the first render.
    const shown = () =>
      link.evaluate((a) => a.innerText.replace(/\u2212/g, '-').replace(/\s+/g, ' ').trim());
    const figure = /(^| )-?[0-9][0-9,]*\.[0-9]{2}( |$)/;
    const sleep = () => new Promise((r) => setTimeout(r, 250));
    let text = await shown();
    for (const until = Date.now() + timeout; !figure.test(text) && Date.now() < until; text = await shown()) await sleep();
    if (!figure.test(text)) fail(`account link shows no balance: "${text}"`);
    const settle = Number(process.env.BROWSER_SETTLE_MS || 10000);
    for (const until = Date.now() + settle; !text.split(' ').includes(want) && Date.now() < until; text = await shown()) await sleep();
    if (!text.split(' ').includes(want)) fail(`account link shows "${text}", expected the balance ${want}`);
    ok(`account "${text}" shows the balance ${want}`);
  },
};

let rc = 0;
try {
  for (current of stages) {
    if (!run[current]) fail(`unknown stage ${current}`);
    await run[current]();
  }
  process.stdout.write(`(${counts.requests} requests)\n`);
  // What the person would see at the end (kept with the run dir when the scenario fails).
  mkdirSync(out, { recursive: true });
  await page.screenshot({ path: join(out, `${tag}.png`) });
} catch (e) {
  rc = 1;
  const reason = e instanceof StageError ? e.message : `${e && e.stack ? e.stack : e}`;
  const limited = counts.tooMany ? ` [the server answered 429 Too Many Requests ${counts.tooMany} times: its rate limit]` : '';
  process.stdout.write(`FAIL ${current}: ${reason.split('\n')[0]}${limited}\n`);
  try {
    mkdirSync(out, { recursive: true });
    await page.screenshot({ path: join(out, `${tag}-failure.png`), fullPage: true });
    writeFileSync(join(out, `${tag}-dom.html`), await page.content());
    process.stdout.write(`     (screenshot, DOM and console log: ${join(out, tag)}-*)\n`);
  } catch (e2) {
    note(`saving the failure artifacts: ${e2.message}`);
  }
  writeFileSync(join(out, `${tag}-console.log`), `${reason}\n\n${consoleLines.join('\n')}\n`);
} finally {
  await browser.close();
}
process.exit(rc);
