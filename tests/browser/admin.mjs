// admin.mjs - browser test of the admin console (www/admin.html, issue 15)
// in headless Debian Chromium through playwright-core, against the real stack
// (lighttpd + the FastCGI workers + MariaDB), run by run.sh after
// dashboard.mjs. Every action is done through the page and its effect checked
// through the API: create a user (the key shown once, copied, then gone),
// search, plan, override set and cleared, key issued and revoked, cache purged,
// disable / enable (and an admin disabling themself: the 409 detail), system
// prompts (new, edited with a line diff, deleted), the audit view, the spend
// and refusal charts, users nearest their limits and overrides ending soon.
// Hostile text in an email, an override reason and a system prompt must show
// as text (window.__xss never set). At 1280 px and at 360 px (no horizontal
// page scroll), plus a keyboard-only run of create-user and disable / enable.
// Prints TAP ("ok N - [admin console] ..."); screenshots go to
// $QC_BUILD/tests/out/screenshots/admin-*.png.
import { chromium } from 'playwright-core';
import fs from 'node:fs';
import path from 'node:path';
import { BASE, CHROMIUM, SHOTS, addUser as makeUser, api, ctl, get, makeTap, sleep, userIdOf } from './harness.mjs';

const WAIT = 10000;
const TAG = `${process.pid.toString(36)}${Date.now().toString(36)}`;
const XSS = '<img src=x onerror="window.__xss=1">';

/* ---- TAP ------------------------------------------------------------------ */

const tap = makeTap('admin console');
const { check, diag } = tap;

/* ---- the API and the CLI, seen from the test ------------------------------- */

const addUser = (tag, plan, admin) => makeUser('console', TAG, tag, plan, admin);

/* poll the API until fn() is truthy (or the time is up); returns the last value */
async function until(fn, ms = 6000) {
  const end = Date.now() + ms;
  let v;
  for (;;) {
    try { v = await fn(); } catch (e) { v = undefined; }
    if (v || Date.now() > end) return v;
    await sleep(100);
  }
}
/* "2026-12-03T10:00" for a datetime-local input, read as UTC by the page */
const localUtc = (ms) => new Date(ms).toISOString().slice(0, 16);

let admin = null;
const auditOf = (q) => get(`/api/v1/admin/audit?per_page=100&${q}`, admin.key).then((r) => r.entries);
const userOf = (id) => get(`/api/v1/admin/users/${id}`, admin.key);
const authed = async (key) => (await api('GET', '/api/v1/me', key)).status === 200;

/* ---- the browser ------------------------------------------------------------ */

let browser = null;
const pageErrors = [];
const requests = [];
const keys = [];   /* every key the test saw: none may reach a URL or localStorage */

async function newPage(viewport) {
  const context = await browser.newContext({
    viewport, deviceScaleFactor: 1, locale: 'en-GB', timezoneId: 'UTC',
    permissions: ['clipboard-read', 'clipboard-write'],
  });
  context.setDefaultTimeout(WAIT);
  context.setDefaultNavigationTimeout(WAIT);
  const page = await context.newPage();
  page.on('pageerror', (e) => pageErrors.push(String(e && e.message || e)));
  page.on('dialog', (dlg) => { pageErrors.push(`a native dialog opened: ${dlg.message()}`); dlg.dismiss().catch(() => {}); });
  context.on('request', (r) => requests.push(r.url()));
  return { context, page };
}

async function login(page, key) {
  await page.goto(`${BASE}/admin.html`, { waitUntil: 'load' });
  await page.fill('#key-input', key);
  await page.click('#key-submit');
  await page.waitForSelector('body[data-state=ready], body[data-state=unauthorized], body[data-state=error]');
  return page.evaluate(() => document.body.getAttribute('data-state'));
}

async function shot(page, name) {
  const file = path.join(SHOTS, name);
  /* a key shown in the dialog is masked: no key in the test output */
  await page.screenshot({ path: file, fullPage: true, mask: [page.locator('#key-value')] });
  diag(`screenshot: ${file}`);
}

/* no markup ran and no <img> came from data */
const safe = (page) => page.evaluate(() => ({ xss: window.__xss === 1, imgs: document.querySelectorAll('img').length }));

async function noScroll(page, w, what) {
  if (w > 400) return;
  const sw = await page.evaluate(() => ({ doc: document.documentElement.scrollWidth, body: document.body.scrollWidth }));
  check(sw.doc <= w && sw.body <= w, `at ${w} px the ${what} has no horizontal page scroll`, sw);
}

/* confirm dialog: open it with the click, then answer */
async function confirmWith(page, clickSel, answer) {
  await page.click(clickSel);
  await page.waitForSelector('#confirm-dlg[open]');
  const title = await page.textContent('#confirm-title');
  if (answer === 'escape') await page.keyboard.press('Escape');
  else await page.click(answer === 'ok' ? '#confirm-ok' : '#confirm-cancel');
  await page.waitForSelector('#confirm-dlg:not([open])', { state: 'attached' });
  return title;
}

/* the page's key dialog: read the key, copy it, close it */
async function takeKey(page, how) {
  await page.waitForSelector('#key-dlg[open]');
  const key = await page.inputValue('#key-value');
  keys.push(key);
  await page.click('#key-copy');
  await page.waitForFunction(() => document.getElementById('key-copied').textContent !== '');
  const copiedHow = await page.getAttribute('#key-copied', 'data-copied');
  let clip = null;
  try { clip = await page.evaluate(() => navigator.clipboard.readText()); } catch { clip = null; }
  const shotName = how && how.shot;
  if (shotName) await shot(page, shotName);
  if (how && how.escape) await page.keyboard.press('Escape');
  else await page.click('#key-done');
  await page.waitForSelector('#key-dlg:not([open])', { state: 'attached' });
  /* the dialog's close event (which erases the key) runs a moment after it closes */
  const gone = await page.waitForFunction((k) => !document.documentElement.outerHTML.includes(k) &&
    ![...document.querySelectorAll('input, textarea')].some((i) => i.value.includes(k)) &&
    !JSON.stringify(Object.entries(sessionStorage)).includes(k) && localStorage.length === 0, key,
  { timeout: 3000 }).then(() => true, () => false);
  return { key, copied: clip === key || copiedHow === 'fallback', copiedHow, gone };
}

async function toastText(page, re) {
  await page.waitForFunction((src) => {
    const t = document.getElementById('toast');
    return !t.hidden && new RegExp(src).test(t.textContent);
  }, re.source).catch(() => {});
  return page.evaluate(() => {
    const t = document.getElementById('toast');
    return { text: t.textContent.trim(), kind: t.getAttribute('data-kind'), shown: !t.hidden };
  });
}

async function userReady(page) {
  await page.waitForSelector('body[data-user-state=ready]');
}

/* ---- the flows ----------------------------------------------------------------- */

async function usersFlow(w) {
  const { context, page } = await newPage({ width: w, height: w > 400 ? 900 : 780 });
  const W = `at ${w} px:`;
  check(await login(page, admin.key) === 'ready', `${W} an admin key opens the console`);
  const store = await page.evaluate(() => ({ s: sessionStorage.getItem('quotacache.apiKey'), l: localStorage.length }));
  check(store.s === admin.key && store.l === 0, `${W} the key is in sessionStorage only (localStorage empty)`, store.l);
  await page.waitForSelector('body[data-users=ready]');
  await noScroll(page, w, 'users list');

  /* create: hostile email, key once */
  const tag = `${w}${TAG}`;
  const email = `<img/src=x/onerror=window.__xss=1>${tag}x@example.com`;
  await page.fill('#new-email', email);
  await page.selectOption('#new-plan', 'payg');
  await page.click('#create-submit');
  const k1 = await takeKey(page, { shot: `admin-key-dialog-${w}.png` });
  check(/^qck_\S{20,}$/.test(k1.key), `${W} creating a user shows its key in a dialog`);
  const me = await api('GET', '/api/v1/me', k1.key);
  check(me.status === 200 && me.json.email === email && me.json.plan === 'payg', `${W} the shown key authenticates as the new user`, me.status);
  check(k1.copied, `${W} "Copy" puts the key on the clipboard`, k1.copiedHow);
  check(k1.gone, `${W} once the dialog closes the key is nowhere in the page or in storage`);
  const found = await get(`/api/v1/admin/users?q=${encodeURIComponent(`${tag}x@`)}`, admin.key);
  const uid = found.users.length === 1 ? found.users[0].id : 0;
  check(uid > 0 && found.users[0].email === email, `${W} GET /admin/users finds the created user with the hostile email`, found);
  const a1 = await auditOf(`user_id=${uid}&action=user.create`);
  check(a1.length === 1 && a1[0].actor === admin.email && a1[0].source === 'api', `${W} the audit log has user.create by the admin`, a1);

  /* search: the page now lists the new user; the email is text */
  await page.fill('#search-q', `${tag}x@`);
  await page.click('#search-submit');
  await page.waitForFunction((id) => document.body.getAttribute('data-users') === 'ready' &&
    document.querySelectorAll('#users-table tbody tr[data-user]').length === 1 &&
    !!document.querySelector(`#users-table tr[data-user="${id}"]`), String(uid));
  const row = await page.evaluate((id) => {
    const tr = document.querySelector(`#users-table tr[data-user="${id}"]`);
    return tr && { email: tr.querySelector('[data-col=email]').textContent, plan: tr.querySelector('[data-col=plan]').textContent,
      count: document.getElementById('users-count').textContent };
  }, String(uid));
  let s = await safe(page);
  check(row && row.email === email && /^1 user/.test(row.count) && !s.xss && s.imgs === 0,
    `${W} search by email shows the one user, the hostile email as text (no markup ran)`, { row, s });
  await shot(page, `admin-users-${w}.png`);

  /* drill-down */
  await page.click(`#users-table tr[data-user="${uid}"] button`);
  await userReady(page);
  const d = await page.evaluate(() => ({
    email: document.getElementById('u-email').textContent,
    windows: [...document.querySelectorAll('#uq-table tr[data-window]')].map((t) => t.getAttribute('data-window')),
    prefixes: [...document.querySelectorAll('#keys-table tr[data-prefix]')].map((t) => t.getAttribute('data-prefix')),
    hash: location.hash,
  }));
  const apiUser = await userOf(uid);
  check(d.email === email && d.windows.join() === 'daily,monthly,hourly_calls' &&
    d.prefixes.join() === apiUser.keys.map((k) => k.prefix).join() && d.hash === `#user-${uid}` && !d.hash.includes('qck_'),
    `${W} the user's page shows the email as text, the three quota windows and the keys by prefix`, d);
  await noScroll(page, w, "user's page");

  /* plan */
  await page.selectOption('#u-plan', 'pro_monthly');
  await page.click('#u-plan-save');
  const planOk = await until(async () => (await userOf(uid)).plan === 'pro_monthly');
  await userReady(page);
  const a2 = await auditOf(`user_id=${uid}&action=user.plan`);
  check(planOk && a2.length === 1 && a2[0].before.plan === 'payg' && a2[0].after.plan === 'pro_monthly',
    `${W} "Change plan" sets the plan (API and audit user.plan payg -> pro_monthly)`, a2);

  /* override with a hostile reason */
  const reason = `${XSS} loyal ${tag}`;
  const ovEnd = Date.now() + 3 * 86400e3;
  await page.fill('#ov-day', '12345');
  await page.fill('#ov-hour', 'unlimited');
  await page.fill('#ov-expires', localUtc(ovEnd));
  await page.fill('#ov-reason', reason);
  await page.click('#ov-save');
  await page.waitForSelector('#ov-current[data-override=yes]');
  const q1 = await get(`/api/v1/quota/users/${uid}`, admin.key);
  const o = q1.override || {};
  check(o.tokens_per_day === 12345 && o.calls_per_hour === null && !('tokens_per_month' in o) && o.reason === reason &&
    o.expires_at === `${localUtc(ovEnd)}:00Z`, `${W} "Set override" stores 12,345 a day, unlimited calls, the end and the reason`, o);
  const shownReason = await page.textContent('#ov-current [data-field=reason]');
  s = await safe(page);
  check(shownReason === reason && !s.xss && s.imgs === 0, `${W} the override reason is shown as text (no markup ran)`, { shownReason, s });
  const dailyLimit = await page.textContent('#uq-table tr[data-window=daily] [data-col=limit]');
  check(dailyLimit === '12,345', `${W} the quota windows show the override's daily limit`, dailyLimit);

  /* clear override: Escape cancels, Confirm clears */
  const t1 = await confirmWith(page, '#ov-clear', 'escape');
  const still = (await get(`/api/v1/quota/users/${uid}`, admin.key)).override;
  check(/override/i.test(t1) && still && still.tokens_per_day === 12345, `${W} "Clear override" asks first; Escape cancels (override kept)`, t1);
  await confirmWith(page, '#ov-clear', 'ok');
  await page.waitForSelector('#ov-current[data-override=no]');
  const q2 = await get(`/api/v1/quota/users/${uid}`, admin.key);
  const a3 = await auditOf(`user_id=${uid}&action=override.`);
  check(!q2.override && a3.map((e) => e.action).join() === 'override.clear,override.set',
    `${W} confirming clears it (API: no override; audit override.set then override.clear)`, a3.map((e) => e.action));

  /* a second key, with an end */
  const keyEnd = Date.now() + 10 * 86400e3;
  await page.fill('#key-expires', localUtc(keyEnd));
  await page.click('#key-issue');
  const k2 = await takeKey(page, { escape: true });
  const prefix2 = k2.key.slice(0, 12);
  await page.waitForSelector(`#keys-table tr[data-prefix="${prefix2}"]`);
  const u2 = await userOf(uid);
  const key2 = u2.keys.find((k) => k.prefix === prefix2);
  check(await authed(k2.key) && key2 && key2.expires_at === `${localUtc(keyEnd)}:00Z` && k2.gone,
    `${W} "Issue a key" shows a working key once (with its end), listed by prefix; Escape closes and forgets it`, key2);

  /* revoke it */
  const t2 = await confirmWith(page, `#keys-table tr[data-prefix="${prefix2}"] button`, 'ok');
  const revoked = await until(async () => (await userOf(uid)).keys.find((k) => k.prefix === prefix2).revoked_at);
  await sleep(1200);   /* auth_cache_seconds = 1 */
  const a4 = await auditOf(`user_id=${uid}&action=key.revoke`);
  check(/revoke/i.test(t2) && revoked && !(await authed(k2.key)) && await authed(k1.key) && a4.length === 1,
    `${W} "Revoke" (confirmed) revokes that key only; audit key.revoke`, { revoked, a4: a4.length });
  await page.waitForFunction((p) => {
    const tr = document.querySelector(`#keys-table tr[data-prefix="${p}"]`);
    return tr && /revoked/.test(tr.textContent) && !tr.querySelector('button');
  }, prefix2).catch(() => {});
  check(await page.evaluate((p) => /revoked/.test(document.querySelector(`#keys-table tr[data-prefix="${p}"]`).textContent), prefix2),
    `${W} the keys table shows the key as revoked`);
  const focusAfter = await page.waitForFunction(() => {
    const a = document.activeElement;
    return a && (a.id === 'key-issue' || (a.closest('#keys-table') && a.tagName === 'BUTTON')) ? a.id || a.textContent : null;
  }, null, { timeout: WAIT }).then((h) => h.jsonValue()).catch(() => null);
  check(!!focusAfter, `${W} after a revoke the focus moves to the next key's Revoke or to "Issue a key" (not the page)`,
    await page.evaluate(() => document.activeElement && (document.activeElement.id || document.activeElement.tagName)));

  /* purge the cache */
  const entry = `/api/v1/cache/session/console-${tag}`;
  const put = await api('PUT', entry, k1.key, { value: 'cached answer' });
  await page.click('#refresh');
  await page.waitForFunction((k) => !!document.querySelector(`#uc-table tr[data-key="${k}"]`), `console-${tag}`,
    { timeout: WAIT }).catch(() => {});
  const listed = await page.evaluate((k) => {
    const tr = document.querySelector(`#uc-table tr[data-key="${k}"]`);
    return tr ? { tier: tr.querySelector('[data-col=tier]').textContent, bytes: tr.querySelector('[data-col=bytes]').textContent } : null;
  }, `console-${tag}`);
  const apiList = (await get(`/api/v1/admin/users/${uid}/cache`, admin.key)).find((e) => e.key === `console-${tag}`);
  check(listed && apiList && listed.tier === 'session' && listed.bytes === String(apiList.bytes),
    `${W} the user's cache entries are listed (key, tier, bytes as GET /admin/users/{id}/cache)`, { listed, apiList });
  await confirmWith(page, '#u-purge', 'ok');
  const tp = await toastText(page, /Removed/);
  const gone = await api('GET', entry, k1.key);
  const a5 = await auditOf(`user_id=${uid}&action=cache.purge`);
  check((put.status === 200 || put.status === 201) && /Removed 1 cache entry/.test(tp.text) && gone.status === 404 && a5.length === 1,
    `${W} "Purge cache" (confirmed) removes the user's entries (toast, GET 404, audit cache.purge)`, { put: put.status, tp, gone: gone.status });

  /* disable and enable; at 1280 px the question is first cancelled and asked
   * again at once, before the cancel's close event has arrived (a fast user,
   * or a slow machine): the new question must still be the one answered */
  if (w > 400) {
    await page.evaluate(() => {
      const t = document.getElementById('u-toggle');
      t.click();
      document.getElementById('confirm-cancel').click();
      t.click();
    });
  } else {
    await page.click('#u-toggle');
  }
  await page.waitForSelector('#confirm-dlg[open]');
  await shot(page, `admin-confirm-${w}.png`);
  await page.click('#confirm-ok');
  const dis = await until(async () => (await userOf(uid)).disabled === true);
  await sleep(1200);
  const a6 = await auditOf(`user_id=${uid}&action=user.disable`);
  check(dis && a6.length === 1 && !(await authed(k1.key)), `${W} "Disable" (confirmed): API disabled, the key refused, audit user.disable`, a6.length);
  await page.waitForFunction(() => document.getElementById('u-toggle').textContent === 'Enable');
  await page.click('#u-toggle');
  const en = await until(async () => (await userOf(uid)).disabled === false);
  const a7 = await auditOf(`user_id=${uid}&action=user.enable`);
  check(en && a7.length === 1, `${W} "Enable": API enabled, audit user.enable`, a7.length);
  await page.waitForFunction(() => document.getElementById('u-toggle').textContent === 'Disable');
  await userReady(page);
  const uaActions = await page.evaluate(() => [...document.querySelectorAll('#ua-table tr[data-action]')].map((t) => t.getAttribute('data-action')));
  const apiActions = (await auditOf(`user_id=${uid}`)).slice(0, 20).map((e) => e.action);
  check(uaActions.join() === apiActions.join(), `${W} the user's page lists its audit entries as the API has them`, { uaActions, apiActions });
  await noScroll(page, w, "user's page after the actions");
  await shot(page, `admin-user-${w}.png`);

  /* an admin cannot disable themself: the problem detail is shown */
  if (w > 400) {
    await page.evaluate((id) => { location.hash = `#user-${id}`; }, admin.id);
    await page.reload();
    await page.waitForSelector('body[data-state=ready]');
    await userReady(page);
    await confirmWith(page, '#u-toggle', 'ok');
    const te = await toastText(page, /409/);
    const selfUser = await userOf(admin.id);
    check(te.kind === 'error' && /409/.test(te.text) && /own|themsel|yourself/i.test(te.text) && !selfUser.disabled,
      `${W} an admin disabling themself sees the 409 and its detail; nothing changes`, te);
  }

  /* the audit view */
  await page.click('.tab[data-view=audit]');
  await page.waitForSelector('body[data-audit=ready]');
  await page.fill('#au-user', String(uid));
  await page.click('#au-submit');
  await page.waitForFunction((id) => document.body.getAttribute('data-audit') === 'ready' &&
    [...document.querySelectorAll('#audit-table tr[data-action]')].length > 0 &&
    [...document.querySelectorAll('#audit-table tr[data-action]')].every((t) => t.querySelector('[data-col=target]').textContent.startsWith(`#${id}`)), String(uid));
  const av = await page.evaluate(() => ({
    actions: [...document.querySelectorAll('#audit-table tr[data-action]')].map((t) => t.getAttribute('data-action')),
    createAfter: (() => {
      const tr = document.querySelector('#audit-table tr[data-action="user.create"]');
      return tr ? tr.querySelector('code.after').textContent : null;
    })(),
  }));
  const apiAll = (await auditOf(`user_id=${uid}`)).slice(0, 25).map((e) => e.action);
  s = await safe(page);
  check(av.actions.join() === apiAll.join() && av.createAfter && av.createAfter.includes(JSON.stringify(email).slice(1, -1)) &&
    !s.xss && s.imgs === 0, `${W} the audit view filtered by user id equals GET /admin/audit?user_id=, hostile email as text`, { av, apiAll });
  await page.selectOption('#au-action', 'user.');
  await page.click('#au-submit');
  await page.waitForFunction(() => document.body.getAttribute('data-audit') === 'ready' &&
    [...document.querySelectorAll('#audit-table tr[data-action]')].every((t) => t.getAttribute('data-action').startsWith('user.')));
  const fam = await page.evaluate(() => [...document.querySelectorAll('#audit-table tr[data-action]')].map((t) => t.getAttribute('data-action')));
  check(fam.length === 4 && fam.every((a) => a.startsWith('user.')), `${W} the action filter (user.*) narrows the audit view`, fam);
  await noScroll(page, w, 'audit view');
  await shot(page, `admin-audit-${w}.png`);
  const ls = await page.evaluate(() => localStorage.length);
  check(ls === 0, `${W} nothing was written to localStorage`, ls);
  await context.close();
  return { uid, email };
}

async function promptsFlow(w) {
  const { context, page } = await newPage({ width: w, height: w > 400 ? 900 : 780 });
  const W = `at ${w} px:`;
  await login(page, admin.key);
  await page.click('.tab[data-view=prompts]');
  await page.waitForSelector('body[data-prompts=ready]');
  const key = `console-${w}-${TAG}`;
  const v1 = `You write CVs.\n${XSS}\nKeep it short.`;
  await page.click('#prompt-new');
  await page.fill('#ed-key', key);
  await page.fill('#ed-value', v1);
  await page.click('#ed-review');
  await page.waitForSelector('#diff-box:not([hidden])');
  let diff = await page.evaluate(() => [...document.querySelectorAll('#diff .dl')].map((l) => [l.getAttribute('data-op'), l.textContent]));
  check(diff.length === 3 && diff.every((l) => l[0] === '+') && diff[1][1] === `+ ${XSS}`,
    `${W} a new prompt: the review shows its three lines as added, markup as text`, diff);
  await page.click('#ed-save');
  const stored = await until(async () => (await get('/api/v1/admin/system-prompts', admin.key)).find((p) => p.key === key && p.value === v1));
  await page.waitForSelector(`#prompts-table tr[data-key="${key}"]`);
  let s = await safe(page);
  check(stored && !s.xss && s.imgs === 0, `${W} "Save" stores it (GET /admin/system-prompts), nothing ran`, s);

  /* edit: one line changed */
  const v2 = `You write CVs.\n${XSS}\nKeep it very short.\nUse British spelling.`;
  await page.click(`#prompts-table tr[data-key="${key}"] button[data-focus^="edit-"]`);
  const before = await page.inputValue('#ed-value');
  await page.fill('#ed-value', v2);
  await page.click('#ed-review');
  await page.waitForSelector('#diff-box:not([hidden])');
  diff = await page.evaluate(() => [...document.querySelectorAll('#diff .dl')].map((l) => l.textContent));
  const summary = await page.textContent('#diff-summary');
  check(before === v1 && diff.join('|') === `  You write CVs.|  ${XSS}|- Keep it short.|+ Keep it very short.|+ Use British spelling.`
    && /2 lines added, 1 line removed/.test(summary), `${W} editing shows a line diff of the change before saving`, { diff, summary });
  await noScroll(page, w, 'prompt diff');
  await shot(page, `admin-prompt-diff-${w}.png`);
  await page.click('#ed-save');
  const stored2 = await until(async () => (await get('/api/v1/admin/system-prompts', admin.key)).find((p) => p.key === key && p.value === v2));
  /* the audit row follows the stored value within the same request: wait for it */
  let mine = [];
  await until(async () => {
    mine = (await auditOf('action=system.put')).filter((e) => e.target === key || (e.target || '').includes(key));
    return mine.length === 2;
  });
  check(stored2 && mine.length === 2, `${W} "Save" stores the new value; audit has two system.put for the key`, mine.length);

  /* delete */
  const t = await confirmWith(page, `#prompts-table tr[data-key="${key}"] button[data-focus^="delete-"]`, 'ok');
  const left = await until(async () => !(await get('/api/v1/admin/system-prompts', admin.key)).some((p) => p.key === key));
  await page.waitForFunction((k) => !document.querySelector(`#prompts-table tr[data-key="${k}"]`), key);
  const dels = (await auditOf('action=system.delete')).filter((e) => (e.target || '').includes(key));
  s = await safe(page);
  check(/delete/i.test(t) && left && dels.length === 1 && !s.xss, `${W} "Delete" (confirmed) removes it; audit system.delete`, dels.length);
  await context.close();
}

async function chartsFlow(w, ovr) {
  const { context, page } = await newPage({ width: w, height: w > 400 ? 900 : 780 });
  const W = `at ${w} px:`;
  await login(page, admin.key);
  await page.click('.tab[data-view=charts]');
  await page.waitForSelector('body[data-charts=ready]');
  const sp = await get('/api/v1/admin/spend?days=90', admin.key);
  const sum = (f) => sp.days.reduce((a, r) => a + (r[f] || 0), 0);
  const view = await page.evaluate(() => {
    const f = (k) => { const e = document.querySelector(`#spend-summary [data-field=${k}]`); return e ? e.textContent : null; };
    return {
      billed: f('billed'), saved: f('saved'), calls: f('calls'), refusals: f('refusals'),
      days: document.querySelectorAll('#spend-svg g.day').length,
      billedSum: [...document.querySelectorAll('#spend-svg g.day')].reduce((a, g) => a + Number(g.getAttribute('data-billed')), 0),
      savedSum: [...document.querySelectorAll('#spend-svg g.day')].reduce((a, g) => a + Number(g.getAttribute('data-saved')), 0),
      rects: document.querySelectorAll('#spend-svg rect').length,
      refusalDays: document.querySelectorAll('#refusals-svg g.day').length,
      refusalRects: document.querySelectorAll('#refusals-svg rect.refusal').length,
      refusalSum: [...document.querySelectorAll('#refusals-svg g.day')].reduce((a, g) => a + Number(g.getAttribute('data-refusals')), 0),
      planRows: [...document.querySelectorAll('#spend-table tbody tr[data-plan]')].map((t) => t.getAttribute('data-plan')),
      title: document.querySelector('#spend-svg title').textContent,
    };
  });
  const nDays = Math.round((Date.parse(`${sp.to}T00:00:00Z`) - Date.parse(`${sp.from}T00:00:00Z`)) / 86400e3) + 1;
  const plans = [...new Set(sp.days.map((r) => r.plan))].sort();
  check(nDays === 90 && view.days === 90 && view.refusalDays === 90, `${W} both charts have one column per day of the last 90 (GET /admin/spend?days=90)`,
    { nDays, days: view.days, r: view.refusalDays });
  check(Math.abs(view.billedSum - sum('billed_usd')) < 1e-9 && Math.abs(view.savedSum - sum('saved_usd')) < 1e-9 &&
    Number(view.calls.replace(/,/g, '')) === sum('calls') && view.refusalSum === sum('refusals') &&
    Number(view.refusals.replace(/,/g, '')) === sum('refusals') && view.planRows.join() === plans.join(),
    `${W} billed, saved, calls and refusals in the charts and the table equal the API's sums, one row per plan`, { view, api: [sum('billed_usd'), sum('saved_usd'), sum('calls'), sum('refusals')], plans });
  check(view.rects > 0 && sum('billed_usd') > 0 && sum('refusals') > 0 && view.refusalRects > 0,
    `${W} the charts draw bars for today's spend and refusal`, { rows: sp.days.length, rects: view.rects, refusals: sum('refusals') });
  const near = await get('/api/v1/admin/nearest?limit=20', admin.key);
  const nv = await page.evaluate(() => [...document.querySelectorAll('#nearest-table tr[data-user]')].map((t) => ({
    id: Number(t.getAttribute('data-user')), pct: t.querySelector('[data-col=percent]').textContent })));
  /* users with the same percent may come in either order */
  const pctOf = new Map(near.map((x) => [x.user_id, `${x.percent.toLocaleString('en-US')}%`]));
  check(nv.length === near.length && nv.every((r, i) => pctOf.get(r.id) === r.pct && r.pct === pctOf.get(near[i].user_id)),
    `${W} "nearest their daily limit" lists the users of GET /admin/nearest in order, with their percent`, { nv, near: near.map((x) => [x.user_id, x.percent]) });
  const exp = await page.evaluate((id) => {
    const tr = document.querySelector(`#expiring-table tr[data-user="${id}"]`);
    return tr && { reason: tr.querySelector('[data-col=reason]').textContent, day: tr.querySelector('[data-col=day]').textContent };
  }, String(ovr.id));
  const s = await safe(page);
  check(exp && exp.reason === ovr.reason && exp.day === '5,000' && !s.xss && s.imgs === 0,
    `${W} "overrides about to end" lists the override ending in 2 days, its reason as text`, exp);
  await noScroll(page, w, 'charts view');
  await shot(page, `admin-charts-${w}.png`);
  /* a user link in the nearest table opens that user */
  if (w > 400) {
    await page.click(`#expiring-table tr[data-user="${ovr.id}"] button`);
    await userReady(page);
    check(await page.textContent('#u-email') === ovr.email, `${W} a user in the overrides table opens their page`);
  }
  await context.close();
}

/* Tab until the selector has focus (at most `max` presses): reachability by keyboard */
async function tabTo(page, sel, max = 80) {
  for (let i = 0; i < max; i++) {
    if (await page.evaluate((s) => !!document.activeElement && document.activeElement.matches(s), sel)) return true;
    await page.keyboard.press('Tab');
  }
  return page.evaluate((s) => !!document.activeElement && document.activeElement.matches(s), sel);
}

async function keyboardFlow() {
  const { context, page } = await newPage({ width: 1280, height: 900 });
  await page.goto(`${BASE}/admin.html`, { waitUntil: 'load' });
  const W = 'keyboard only:';
  const auto = await page.evaluate(() => document.activeElement && document.activeElement.id);
  if (auto !== 'key-input') await tabTo(page, '#key-input');
  await page.keyboard.type(admin.key);
  await page.keyboard.press('Enter');
  await page.waitForSelector('body[data-state=ready]');
  await page.waitForSelector('body[data-users=ready]');
  const email = `kbd-${TAG}@example.com`;
  let ok = await tabTo(page, '#new-email');
  await page.keyboard.type(email);
  ok = ok && await tabTo(page, '#create-submit');
  const ring = await page.evaluate(() => {
    const st = getComputedStyle(document.activeElement);
    return { style: st.outlineStyle, width: st.outlineWidth };
  });
  await page.keyboard.press('Enter');
  await page.waitForSelector('#key-dlg[open]');
  await page.waitForFunction(() => document.activeElement && document.activeElement.id === 'key-copy',
    null, { timeout: 3000 }).catch(() => {});
  const inDlg = await page.evaluate(() => document.activeElement.id);
  const key = await page.inputValue('#key-value');
  keys.push(key);
  await page.keyboard.press('Enter');                      /* Copy */
  await page.waitForFunction(() => document.getElementById('key-copied').textContent !== '');
  await page.keyboard.press('Escape');
  await page.waitForSelector('#key-dlg:not([open])', { state: 'attached' });
  /* focus comes back in the dialog's close event, a moment after it closes */
  await page.waitForFunction(() => document.activeElement && document.activeElement.id === 'create-submit',
    null, { timeout: 3000 }).catch(() => {});
  const back = await page.evaluate(() => document.activeElement.id);
  const created = await get(`/api/v1/admin/users?q=${encodeURIComponent(email)}`, admin.key);
  const uid = created.users.length === 1 ? created.users[0].id : 0;
  check(ok && uid > 0 && inDlg === 'key-copy' && back === 'create-submit' && await authed(key),
    `${W} Tab to the form, type, Enter creates the user; the key dialog takes focus and Escape returns it`, { ok, uid, inDlg, back });
  check(ring.style !== 'none' && parseFloat(ring.width) >= 2, `${W} the focused button shows a visible focus ring`, ring);
  /* open the user from the list (it was searched for after the creation) */
  await page.waitForSelector(`#users-table tr[data-user="${uid}"]`);
  ok = await tabTo(page, `[data-focus="open-${uid}"]`);
  await page.keyboard.press('Enter');
  await userReady(page);
  const focused = await page.evaluate(() => document.activeElement.id);
  check(ok && focused === 'user-title', `${W} Enter on "Open" shows the user and moves focus to its heading`, { ok, focused });
  ok = await tabTo(page, '#u-toggle');
  await page.keyboard.press('Enter');
  await page.waitForSelector('#confirm-dlg[open]');
  const first = await page.evaluate(() => document.activeElement.id);
  await page.keyboard.press('Escape');
  await page.waitForSelector('#confirm-dlg:not([open])', { state: 'attached' });
  const afterEsc = await page.evaluate(() => document.activeElement.id);
  check(ok && first === 'confirm-cancel' && afterEsc === 'u-toggle' && !(await userOf(uid)).disabled,
    `${W} Enter on "Disable" asks (focus on Cancel); Escape cancels and returns focus`, { first, afterEsc });
  await page.keyboard.press('Enter');
  await page.waitForSelector('#confirm-dlg[open]');
  await page.keyboard.press('Tab');
  const onOk = await page.evaluate(() => document.activeElement.id);
  await page.keyboard.press('Enter');
  const dis = await until(async () => (await userOf(uid)).disabled === true);
  await page.waitForFunction(() => document.getElementById('u-toggle').textContent === 'Enable');
  const still = await page.evaluate(() => document.activeElement.id);
  check(onOk === 'confirm-ok' && dis, `${W} Tab to Confirm, Enter disables the user (API)`, { onOk, dis });
  await page.keyboard.press('Enter');
  const en = await until(async () => (await userOf(uid)).disabled === false);
  check(still === 'u-toggle' && en, `${W} focus stays on the button, now "Enable"; Enter enables the user (API)`, { still, en });
  /* the tabs too */
  await page.keyboard.press('Shift+Tab');
  ok = await tabTo(page, '.tab[data-view=prompts]');
  await page.keyboard.press('Enter');
  await page.waitForSelector('body[data-prompts=ready]');
  check(ok && await page.evaluate(() => document.activeElement.id) === 'prompts-title', `${W} the view tabs work with Tab and Enter`);
  await context.close();
}

/* ---- the run ----------------------------------------------------------------- */

async function main() {
  fs.mkdirSync(SHOTS, { recursive: true });
  diag(`admin console at ${BASE}/admin.html, chromium ${CHROMIUM}`);
  const t0 = Date.now();
  admin = addUser('admin', 'enterprise', true);
  keys.push(admin.key);
  /* some spend and a refusal for the charts; an override ending in 2 days (hostile reason) */
  const spender = addUser('spender', 'pro_monthly', false);
  keys.push(spender.key);
  for (const p of ['one', 'two', 'one']) {
    const r = await api('POST', '/api/v1/generate', spender.key, { task: 'cover_letter', prompt: `console spend ${p} ${TAG}` });
    if (r.status !== 200) diag(`generate answered ${r.status}: ${r.text.slice(0, 160)}`);
  }
  const ovr = addUser('ovr', 'payg', false);
  keys.push(ovr.key);
  ovr.reason = `${XSS} ends soon ${TAG}`;
  const so = await api('PUT', `/api/v1/quota/users/${ovr.id}/override`, admin.key, {
    tokens_per_day: 5000, expires_at: new Date(Date.now() + 2 * 86400e3).toISOString().replace(/\.\d+Z$/, 'Z'), reason: ovr.reason,
  });
  if (so.status !== 200) diag(`override answered ${so.status}`);
  const tiny = addUser('tiny', 'freemium', false);
  keys.push(tiny.key);
  ctl('quota', 'set-override', '--id', String(tiny.id), '--day', '1', '--reason', 'console refusal');
  /* a generate refused by the quota is a refusal of the day (usage_events outcome 'quota') */
  const rf = await api('POST', '/api/v1/generate', tiny.key, { task: 'cover_letter', prompt: `console refusal ${TAG}` });
  if (rf.status !== 429) diag(`the refused generate answered ${rf.status}`);
  /* the chart routes may still be on their way */
  let spendUp = false;
  for (let i = 0; i < 3 && !spendUp; i++) {
    spendUp = (await api('GET', '/api/v1/admin/spend?days=90', admin.key)).status === 200 &&
      (await api('GET', '/api/v1/admin/nearest?limit=20', admin.key)).status === 200;
    if (!spendUp) await sleep(1000);
  }
  check(spendUp, 'GET /admin/spend and /admin/nearest answer (the charts\' routes)');
  await sleep(1100);   /* counters reach the database within a second */

  browser = await chromium.launch({
    executablePath: CHROMIUM, headless: true, timeout: 30000,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
  });
  diag(`browser: ${browser.version()}`);

  /* a plain user's key is refused by the console */
  {
    const { context, page } = await newPage({ width: 1280, height: 900 });
    const st = await login(page, spender.key);
    const msg = await page.evaluate(() => document.getElementById('error').textContent.replace(/\s+/g, ' ').trim());
    const stored = await page.evaluate(() => sessionStorage.getItem('quotacache.apiKey'));
    check(st === 'unauthorized' && /admin/.test(msg) && stored === null, 'a non-admin key is refused with a message and forgotten', { st, msg });
    await context.close();
  }

  for (const w of [1280, 360]) {
    await usersFlow(w);
    await promptsFlow(w);
    if (spendUp) await chartsFlow(w, ovr);
  }
  await keyboardFlow();

  /* the dashboard links here for admins only */
  {
    const { context, page } = await newPage({ width: 1280, height: 900 });
    await page.goto(`${BASE}/`, { waitUntil: 'load' });
    await page.fill('#key-input', admin.key);
    await page.click('#key-submit');
    await page.waitForSelector('body[data-state=ready]');
    const shown = await page.evaluate(() => !document.getElementById('admin-link').hidden);
    await page.click('#admin-link');
    await page.waitForSelector('body[data-state=ready]');
    const url = page.url();
    check(shown && url.endsWith('/admin.html#users'), 'the dashboard links admins to the console, which opens with the same tab\'s key', url);
    await page.goto(`${BASE}/`, { waitUntil: 'load' });
    await page.click('#signout');
    await page.fill('#key-input', spender.key);
    await page.click('#key-submit');
    await page.waitForSelector('body[data-state=ready]');
    check(await page.evaluate(() => document.getElementById('admin-link').hidden), 'a plain user sees no console link');
    await context.close();
  }

  const foreign = requests.filter((u) => !u.startsWith(`${BASE}/`) && !u.startsWith('data:'));
  check(foreign.length === 0 && requests.length > 0, 'no request leaves the server', foreign.slice(0, 5));
  const leaked = requests.filter((u) => keys.some((k) => u.includes(k) || u.includes(encodeURIComponent(k))) || /qck_[A-Za-z0-9_-]{20,}/.test(u));
  check(leaked.length === 0, 'no request URL carries an API key', leaked.slice(0, 3));
  check(pageErrors.length === 0, 'no uncaught script error and no native dialog', pageErrors.slice(0, 5));
  diag(`admin console test: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
}

const watchdog = setTimeout(async () => {
  check(false, 'the admin console test finished within 150 s');
  if (browser) await Promise.race([browser.close().catch(() => {}), sleep(5000)]);
  console.log(`1..${tap.n}`);
  process.exit(1);
}, 150000);

try {
  await main();
} catch (e) {
  check(false, 'the admin console test ran to the end', String(e && e.stack || e));
} finally {
  if (browser) await Promise.race([browser.close().catch(() => {}), sleep(10000)]);
  clearTimeout(watchdog);
}
console.log(`1..${tap.n}`);
process.exit(tap.failed ? 1 : 0);
