// The proof that an instance serves users: the official Actual API client, the same
// version as the server, talking to https://<domain>/ through the nginx vhost.
//
//   node client.mjs write <label>   create a budget, upload it, add an account and
//                                   transactions, sync; prints {"syncId","accountId","count",
//                                   "label","budgetName","balance"} (balance: cents)
//   node client.mjs read <syncId> <accountId> <count>
//                                   a FRESH client (empty data dir) downloads the budget and
//                                   checks the transactions are all there
//   node client.mjs loop <syncId> <accountId> <seconds> <label>
//                                   for <seconds>: add ONE transaction (notes "<label> #i",
//                                   i = 1, 2, ...) and sync, again and again, 250 ms apart
//                                   (the server allows 500 requests a minute per client
//                                   address; a tight loop gets 429 within a minute); prints
//                                   {"count","syncs":[{"i","start","end","ms"}]} (epoch ms)
//   node client.mjs notes <syncId> <accountId>
//                                   a fresh client prints {"count","notes":[...]} of the account
//
// Environment: ACTUAL_URL (https://budget.example.org/), ACTUAL_PASSWORD (or
// ACTUAL_PASSWORD_FILE), ACTUAL_API_DIR (directory whose node_modules holds the pinned
// client), ACTUAL_API_PKG (the package name to load there: an npm alias such as
// `api-26.9.0` of `@actual-app/api@26.9.0`, so that several client versions share one
// install and one native build; default `@actual-app/api`), NODE_EXTRA_CA_CERTS (the vhost's self-signed certificate).
// Exit 0 on success; any failure prints one line and exits 1.

import { createRequire } from 'node:module';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

function need(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
}

const serverURL = need('ACTUAL_URL').replace(/\/+$/, '');
const password = process.env.ACTUAL_PASSWORD_FILE
  ? readFileSync(process.env.ACTUAL_PASSWORD_FILE, 'utf8').trim()
  : need('ACTUAL_PASSWORD');
const apiDir = need('ACTUAL_API_DIR');
const require = createRequire(join(apiDir, 'package.json'));
const api = await import(pathToFileURL(require.resolve(process.env.ACTUAL_API_PKG || '@actual-app/api')).href);

const [mode, ...args] = process.argv.slice(2);
const dataDir = mkdtempSync(join(tmpdir(), 'actual-client-'));

// The API prints progress chatter on stdout; keep stdout for our one JSON line.
const say = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');
const quiet = console.log;
console.log = (...a) => console.error(...a);

function transactions(label) {
  // Amounts are integer cents; the notes carry the label so a stale budget cannot pass.
  return [1, 2, 3, 4, 5].map((i) => ({
    date: `2026-01-0${i}`,
    amount: -1000 * i - 7,
    payee_name: `Shop ${i}`,
    notes: `${label} #${i}`,
  }));
}

async function write(label) {
  const actual = await api.init({ dataDir, serverURL, password });
  const budgetName = `abssctl-e2e-${label}`;
  await actual.send('create-budget', { budgetName, avoidUpload: true });
  const up = await actual.send('upload-budget', {});
  if (up && up.error) throw new Error(`upload-budget failed: ${JSON.stringify(up.error)}`);
  const accountId = await api.createAccount({ name: 'Checking', offbudget: false }, 0);
  const txns = transactions(label);
  await api.addTransactions(accountId, txns);
  await api.sync();
  const budgets = await api.getBudgets();
  const mine = budgets.find((b) => b.name === budgetName && b.groupId);
  if (!mine) throw new Error(`the server does not list budget ${budgetName} after sync`);
  await api.shutdown();
  const balance = txns.reduce((sum, t) => sum + t.amount, 0); // integer cents
  say({ syncId: mine.groupId, accountId, count: txns.length, label, budgetName, balance });
}

async function read(syncId, accountId, count, label) {
  await api.init({ dataDir, serverURL, password });
  await api.downloadBudget(syncId);
  const got = await api.getTransactions(accountId, '2000-01-01', '2100-12-31');
  const notes = got.map((t) => t.notes).filter(Boolean).sort();
  await api.shutdown();
  if (got.length !== Number(count)) {
    throw new Error(`expected ${count} transactions, the fresh client downloaded ${got.length}`);
  }
  if (label && !notes.every((n) => n.startsWith(`${label} #`))) {
    throw new Error(`unexpected transactions: ${JSON.stringify(notes)}`);
  }
  say({ syncId, count: got.length, notes });
}

async function loop(syncId, accountId, seconds, label) {
  await api.init({ dataDir, serverURL, password });
  await api.downloadBudget(syncId);
  const until = Date.now() + Number(seconds) * 1000;
  const syncs = [];
  for (let i = 1; Date.now() < until; i++) {
    const start = Date.now();
    await api.addTransactions(accountId, [
      { date: '2026-02-01', amount: -100 - i, payee_name: 'Loop', notes: `${label} #${i}` },
    ]);
    await api.sync();
    const end = Date.now();
    syncs.push({ i, start, end, ms: end - start });
    await new Promise((r) => setTimeout(r, 250));
  }
  await api.shutdown();
  say({ count: syncs.length, syncs });
}

async function notes(syncId, accountId) {
  await api.init({ dataDir, serverURL, password });
  await api.downloadBudget(syncId);
  const got = await api.getTransactions(accountId, '2000-01-01', '2100-12-31');
  await api.shutdown();
  say({ count: got.length, notes: got.map((t) => t.notes || '') });
}

try {
  if (mode === 'write' && args.length === 1) await write(args[0]);
  else if (mode === 'loop' && args.length === 4) await loop(args[0], args[1], args[2], args[3]);
  else if (mode === 'notes' && args.length === 2) await notes(args[0], args[1]);
  else if (mode === 'read' && args.length >= 3) await read(args[0], args[1], args[2], args[3]);
  else throw new Error('usage: client.mjs write <label> | read <syncId> <accountId> <count> [label] | loop <syncId> <accountId> <seconds> <label> | notes <syncId> <accountId>');
  console.log = quiet;
  rmSync(dataDir, { recursive: true, force: true });
  process.exit(0);
} catch (e) {
  process.stderr.write(`client: ${e && e.message ? e.message : e}\n`);
  process.exit(1);
}
