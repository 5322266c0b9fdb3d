// harness.mjs - what the browser tests (dashboard.mjs, admin.mjs) share: the
// environment (QC_URL, QC_CTL, QC_BUILD, QC_CHROMIUM), TAP output, the API
// and quotacachectl as the test sees them, test users.
import { execFileSync } from 'node:child_process';
import path from 'node:path';

export const BASE = (process.env.QC_URL || 'http://127.0.0.1:8080').replace(/\/+$/, '');
export const CTL = process.env.QC_CTL || 'quotacachectl';
export const SHOTS = process.env.QC_BUILD
  ? path.join(process.env.QC_BUILD, 'tests', 'out', 'screenshots')
  : path.resolve('screenshots');
export const CHROMIUM = process.env.QC_CHROMIUM || '/usr/bin/chromium';

/* ---- TAP: one "ok N - [label] name" line a check; tap.n and tap.failed count */
export function makeTap(label) {
  const tap = { n: 0, failed: 0 };
  tap.diag = (msg) => {
    for (const line of String(msg).split('\n')) console.log(`# ${line}`);
  };
  tap.check = (cond, name, detail) => {
    tap.n++;
    if (cond) {
      console.log(`ok ${tap.n} - [${label}] ${name}`);
    } else {
      tap.failed++;
      console.log(`not ok ${tap.n} - [${label}] ${name}`);
      if (detail !== undefined) tap.diag(typeof detail === 'string' ? detail : JSON.stringify(detail));
    }
    return !!cond;
  };
  return tap;
}

/* ---- the API and the CLI, seen from the test ------------------------------- */

export async function api(method, p, key, body) {
  const headers = { Accept: 'application/json' };
  if (key) headers.Authorization = `Bearer ${key}`;
  const init = { method, headers, signal: AbortSignal.timeout(20000) };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const r = await fetch(BASE + p, init);
  const text = await r.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch { json = null; }
  return { status: r.status, json, text };
}

export async function get(p, key) {
  const r = await api('GET', p, key);
  if (r.status !== 200) throw new Error(`GET ${p} -> ${r.status} ${r.text.slice(0, 200)}`);
  return r.json;
}

export function ctl(...args) {
  return execFileSync(CTL, args, { encoding: 'utf8', timeout: 30000, stdio: ['ignore', 'pipe', 'pipe'] }).trim();
}

export function userIdOf(email) {
  for (const line of ctl('user', 'list').split('\n')) {
    const f = line.split('\t');
    if (f[1] === email) return Number(f[0]);
  }
  throw new Error(`user ${email} not in user list`);
}

/* a user made with quotacachectl: {email, key, id}; email `${prefix}-${tag}-${stamp}@browser.test` */
export function addUser(prefix, stamp, tag, plan, admin) {
  const email = `${prefix}-${tag}-${stamp}@browser.test`;
  const key = ctl('user', 'add', '--email', email, '--plan', plan, ...(admin ? ['--admin'] : []))
    .split('\n').pop().trim();
  if (!/^qck_\S+$/.test(key)) throw new Error(`user add printed no key for ${email}`);
  return { email, key, id: userIdOf(email) };
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
