// dashboard.mjs - browser test of the dashboard (www/) in headless Debian
// Chromium through playwright-core, against the real stack (lighttpd + the
// FastCGI workers + MariaDB). It creates its own users with quotacachectl,
// makes some traffic, then checks that every widget shows the numbers the
// API returns for the same key (fetched here with the same key), that an
// over-quota user shows "exceeded", that bad keys and 403s give a clear
// message, that the page fits 360 px, and that no request leaves the server.
// Prints TAP ("ok N - [browser] ..."), "# page load: N ms", screenshots under
// $QC_BUILD/tests/out/screenshots (./screenshots without QC_BUILD).
import { chromium } from 'playwright-core';
import fs from 'node:fs';
import path from 'node:path';
import { BASE, CHROMIUM, SHOTS, addUser as makeUser, api, ctl, get, makeTap, sleep, userIdOf } from './harness.mjs';

const WAIT = 15000;                 // every single wait in the page
const STAMP = `${process.pid}-${Date.now()}`;

/* ---- TAP ------------------------------------------------------------------ */

const tap = makeTap('browser');
const { check, diag } = tap;

/* ---- the API and the CLI, seen from the test ------------------------------- */

const addUser = (tag, plan, admin) => makeUser('dash', STAMP, tag, plan, admin);

/* ---- what the page should show, computed independently -------------------- */

const int = (s) => (/^-?[\d,]+$/.test(String(s).trim()) ? Number(String(s).replace(/,/g, '')) : NaN);
const usd = (s) => {
  const m = /^(-?)\$([\d,]+(?:\.\d+)?)$/.exec(String(s).trim());
  return m ? (m[1] ? -1 : 1) * Number(m[2].replace(/,/g, '')) : NaN;
};
/* a shown dollar amount matches the API value to the precision it shows */
function usdClose(shown, want) {
  const v = usd(shown);
  if (!Number.isFinite(v)) return false;
  const dec = (String(shown).split('.')[1] || '').length;
  return Math.abs(v - want) <= 0.5 * 10 ** -dec + 1e-12;
}
function ratioText(s) {
  return s.hits + s.misses === 0 ? '—' : `${(s.hit_ratio * 100).toFixed(1)}%`;
}
function bytesText(b) {
  if (b < 1024) return `${b.toLocaleString('en-US')} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let i = -1;
  do { b /= 1024; i++; } while (b >= 1024 && i < units.length - 1);
  return `${b >= 100 ? b.toFixed(0) : b >= 10 ? b.toFixed(1) : b.toFixed(2)} ${units[i]}`;
}
/* "21h 49m 15s" / "5d 21h 49m" / "49m 15s" -> seconds and its precision */
function countdownSeconds(s) {
  const m = /^(?:(\d+)d )?(?:(\d+)h )?(\d+)m(?: (\d+)s)?$/.exec(String(s).trim());
  if (!m) return null;
  return {
    secs: (+m[1] || 0) * 86400 + (+m[2] || 0) * 3600 + (+m[3]) * 60 + (+m[4] || 0),
    precise: m[4] !== undefined,
  };
}

/* ---- reading the page ------------------------------------------------------ */

/* Everything the widgets show, as text, read from the DOM. */
function readDashboard() {
  const txt = (el) => (el ? el.textContent.trim() : null);
  const $ = (s, root = document) => root.querySelector(s);
  const out = {
    state: document.body.getAttribute('data-state'),
    email: txt($('#who-email')), role: txt($('#who-role')),
    planName: txt($('#plan-name')), planCode: txt($('#plan-code')),
    overall: $('#overall-level') && $('#overall-level').getAttribute('data-level'),
    overallText: txt($('#overall-level')),
    updated: txt($('#updated')), updatedAt: $('#updated') && $('#updated').getAttribute('data-updated-at'),
    windows: {}, cache: {}, tiers: {}, plans: {}, topKeys: [], bars: [], usage: {}, planUsage: {},
    chartSum: { hits: txt($('#chart-summary [data-field=hits]')), misses: txt($('#chart-summary [data-field=misses]')) },
    usagePeriod: txt($('#usage-period')),
    usageEmpty: !$('#usage-empty').hidden,
    plansCard: !$('#plans-card').hidden, topKeysCard: !$('#topkeys-card').hidden,
    experimentsCard: !$('#experiments-card').hidden,
    cacheScope: txt($('#cache-scope')),
  };
  for (const w of document.querySelectorAll('#quota-windows [data-window]')) {
    const f = (k) => txt(w.querySelector(`[data-field=${k}]`));
    const used = w.querySelector('.seg-used');
    out.windows[w.getAttribute('data-window')] = {
      used: f('used'), reserved: f('reserved'), remaining: f('remaining'), limit: f('limit'),
      level: f('level'), levelAttr: w.querySelector('[data-field=level]').getAttribute('data-level'),
      percent: f('percent'), countdown: f('countdown'),
      resetsAt: w.querySelector('[data-field=countdown]').getAttribute('data-resets-at'),
      usedColor: used ? getComputedStyle(used).backgroundColor : null,
      usedWidth: used ? used.getBoundingClientRect().width : 0,
      barWidth: w.querySelector('.bar').getBoundingClientRect().width,
    };
  }
  out.cache = {
    ratio: txt($('#cache-ratio')), entries: txt($('#cache-entries')),
    bytes: txt($('#cache-bytes')), bytesTitle: $('#cache-bytes').title, saved: txt($('#cache-saved')),
  };
  const rowCells = (tr) => {
    const o = {};
    for (const c of tr.querySelectorAll('[data-col]')) o[c.getAttribute('data-col')] = { text: txt(c), title: c.title };
    return o;
  };
  for (const tr of document.querySelectorAll('#tier-table tbody tr[data-tier]')) out.tiers[tr.getAttribute('data-tier')] = rowCells(tr);
  for (const tr of document.querySelectorAll('#plan-cache-table tbody tr[data-plan]')) out.plans[tr.getAttribute('data-plan')] = rowCells(tr);
  for (const tr of document.querySelectorAll('#plan-usage-table tbody tr[data-plan]')) out.planUsage[tr.getAttribute('data-plan')] = rowCells(tr);
  for (const tr of document.querySelectorAll('#topkeys-table tbody tr[data-rank]')) {
    const c = rowCells(tr);
    out.topKeys.push({ key: $('.cache-key', tr).textContent, tier: c.tier.text, user: c.user_id.text, hits: c.hits.text });
  }
  for (const tr of document.querySelectorAll('#usage-table tbody tr[data-task]')) out.usage[tr.getAttribute('data-task')] = rowCells(tr);
  for (const g of document.querySelectorAll('#chart svg g.bar')) {
    out.bars.push({
      hour: g.getAttribute('data-hour'), title: txt(g.querySelector('title')),
      hitRect: g.querySelector('rect.hit') ? +g.querySelector('rect.hit').getAttribute('height') : 0,
      missRect: g.querySelector('rect.miss') ? +g.querySelector('rect.miss').getAttribute('height') : 0,
    });
  }
  return out;
}

/* Compare the quota widget with GET /quota/status; returns a list of problems. */
function quotaProblems(d, q) {
  const bad = [];
  const eq = (what, got, want) => { if (got !== want) bad.push(`${what}: shown ${JSON.stringify(got)}, API ${JSON.stringify(want)}`); };
  eq('plan code', d.planCode, q.plan);
  eq('overall level', d.overall, q.level);
  for (const w of ['daily', 'monthly', 'hourly_calls']) {
    const s = d.windows[w], a = q[w];
    if (!s) { bad.push(`window ${w} missing`); continue; }
    eq(`${w} used`, int(s.used), a.used);
    eq(`${w} reserved`, int(s.reserved), a.reserved);
    if (a.limit === null) {
      eq(`${w} limit`, s.limit, 'unlimited');
      eq(`${w} remaining`, s.remaining, 'unlimited');
    } else {
      eq(`${w} limit`, int(s.limit), a.limit);
      eq(`${w} remaining`, int(s.remaining), a.remaining);
      const pct = a.percent === 0 && a.used + a.reserved > 0 ? '<1' : a.percent.toLocaleString('en-US');
      eq(`${w} percent`, s.percent, `${pct}% of limit`);
    }
    eq(`${w} level`, s.level, a.level);
    eq(`${w} resets_at`, s.resetsAt, a.resets_at);
  }
  return bad;
}

function cacheProblems(d, cs) {
  const bad = [];
  const eq = (what, got, want) => { if (got !== want) bad.push(`${what}: shown ${JSON.stringify(got)}, want ${JSON.stringify(want)}`); };
  const t = cs.total;
  eq('total hit ratio', d.cache.ratio, ratioText(t));
  eq('total entries', int(d.cache.entries), t.entries);
  eq('total bytes', d.cache.bytes, bytesText(t.bytes));
  eq('total bytes (exact)', d.cache.bytesTitle, `${t.bytes.toLocaleString('en-US')} bytes`);
  if (!usdClose(d.cache.saved, t.saved_usd)) bad.push(`total saved: shown ${d.cache.saved}, API ${t.saved_usd}`);
  eq('tiers shown', Object.keys(d.tiers).sort().join(','), Object.keys(cs.tiers).sort().join(','));
  for (const [name, s] of Object.entries(cs.tiers)) {
    const c = d.tiers[name];
    if (!c) continue;
    eq(`${name} hit ratio`, c.hit_ratio.text, ratioText(s));
    eq(`${name} hits`, int(c.hits.text), s.hits);
    eq(`${name} misses`, int(c.misses.text), s.misses);
    eq(`${name} entries`, int(c.entries.text), s.entries);
    eq(`${name} bytes`, c.bytes.text, bytesText(s.bytes));
    eq(`${name} bytes (exact)`, c.bytes.title, `${s.bytes.toLocaleString('en-US')} bytes`);
    if (!usdClose(c.saved_usd.text, s.saved_usd)) bad.push(`${name} saved: shown ${c.saved_usd.text}, API ${s.saved_usd}`);
  }
  return bad;
}

function chartProblems(d, ts) {
  const bad = [];
  if (d.bars.length !== ts.buckets.length) bad.push(`${d.bars.length} bars for ${ts.buckets.length} buckets`);
  let hits = 0, misses = 0;
  ts.buckets.forEach((b, i) => {
    hits += b.hits; misses += b.misses;
    const bar = d.bars[i];
    if (!bar) return;
    const m = /(\d+) hits?, (\d+) miss/.exec(bar.title || '');
    if (bar.hour !== b.hour) bad.push(`bar ${i} hour ${bar.hour} != ${b.hour}`);
    if (!m || +m[1] !== b.hits || +m[2] !== b.misses) bad.push(`bar ${i} (${b.hour}) says "${bar.title}", API ${b.hits} hits ${b.misses} misses`);
    if ((bar.hitRect > 0) !== (b.hits > 0) || (bar.missRect > 0) !== (b.misses > 0)) bad.push(`bar ${i} drawn heights ${bar.hitRect}/${bar.missRect} for ${b.hits}/${b.misses}`);
    if (b.hits > 0 && b.misses > 0 && Math.abs(bar.hitRect / bar.missRect - b.hits / b.misses) > 0.02 * (b.hits / b.misses) + 0.05)
      bad.push(`bar ${i} heights ${bar.hitRect}:${bar.missRect} not in the ratio ${b.hits}:${b.misses}`);
  });
  if (int(d.chartSum.hits) !== hits || int(d.chartSum.misses) !== misses)
    bad.push(`summary ${d.chartSum.hits} hits / ${d.chartSum.misses} misses, API sums ${hits} / ${misses}`);
  return bad;
}

const USAGE_COLS = ['calls', 'cached', 'prompt_tokens', 'completion_tokens', 'cost_usd', 'saved_tokens', 'saved_usd', 'failures',
  'streamed', 'openai'];
function usageProblems(d, u) {
  const bad = [];
  const want = Object.keys(u.tasks).sort(), got = Object.keys(d.usage).sort();
  if (want.join(',') !== got.join(',')) bad.push(`tasks shown [${got}], API [${want}]`);
  for (const task of want) {
    const row = d.usage[task], a = u.tasks[task];
    if (!row) continue;
    for (const c of USAGE_COLS) {
      const shown = row[c] && row[c].text;
      const ok = c.endsWith('_usd') ? usdClose(shown, a[c]) : int(shown) === a[c];
      if (!ok) bad.push(`${task} ${c}: shown ${shown}, API ${a[c]}`);
    }
  }
  if (want.length === 0 && !d.usageEmpty) bad.push('no tasks, but no "no calls" note');
  return bad;
}

/* ---- the run ----------------------------------------------------------------- */

let browser = null;
const pageErrors = [];
const requests = [];
const keys = [];

async function newPage(viewport) {
  const context = await browser.newContext({ viewport, deviceScaleFactor: 1, locale: 'en-GB', timezoneId: 'UTC' });
  context.setDefaultTimeout(WAIT);
  context.setDefaultNavigationTimeout(WAIT);
  const page = await context.newPage();
  page.on('pageerror', (e) => pageErrors.push(String(e && e.message || e)));
  page.on('dialog', (dlg) => { pageErrors.push(`a dialog opened: ${dlg.message()}`); dlg.dismiss().catch(() => {}); });
  context.on('request', (r) => requests.push(r.url()));
  return { context, page };
}

async function openWithKey(page, key) {
  await page.goto(`${BASE}/`, { waitUntil: 'load' });
  await page.fill('#key-input', key);
  await page.click('#key-submit');
  await page.waitForSelector('body[data-state=ready], body[data-state=unauthorized], body[data-state=error]');
  return page.evaluate(() => document.body.getAttribute('data-state'));
}

/* Click Refresh and wait for a newer "updated at". */
async function refreshed(page) {
  const before = await page.getAttribute('#updated', 'data-updated-at');
  await page.waitForTimeout(20);
  await page.click('#refresh');
  await page.waitForFunction((b) => {
    const u = document.getElementById('updated').getAttribute('data-updated-at');
    return u && u !== b;
  }, before);
}

/* Compare page and API; on a mismatch refresh once more (hit counters reach
 * the database up to a second late) before judging. */
async function compare(page, fetchApi, problemsOf) {
  let bad = [];
  for (let attempt = 0; attempt < 3; attempt++) {
    const a = await fetchApi();
    bad = problemsOf(await page.evaluate(readDashboard), a);
    if (bad.length === 0) return bad;
    await sleep(1200);
    await refreshed(page);
  }
  return bad;
}

async function shot(page, name) {
  const file = path.join(SHOTS, name);
  await page.screenshot({ path: file, fullPage: true });
  diag(`screenshot: ${file}`);
}

async function main() {
  fs.mkdirSync(SHOTS, { recursive: true });
  diag(`dashboard at ${BASE}/, chromium ${CHROMIUM}`);

  /* users: a pro user with traffic, an admin, a freemium user over quota */
  const user = addUser('user', 'pro_monthly', false);
  const admin = addUser('admin', 'enterprise', true);
  const over = addUser('over', 'freemium', false);
  keys.push(user.key, admin.key, over.key);
  /* an A/B experiment for the admin's experiments card (a draft: it changes no one's answers) */
  const expName = `dash-ab-${process.pid}-${Date.now()}`;
  ctl('experiment', 'create', expName, '--control-pct', '30');
  /* an override ending in two days, with markup in its reason, for the admin's overrides card */
  const ovrUser = addUser('ovr', 'pro_monthly', false);
  const ovrReason = `<img src=x onerror="window.__xss=1"> loyal ${process.pid}`;
  const ovrEnd = new Date(Date.now() + 2 * 86400e3).toISOString().replace(/\.\d+Z$/, 'Z');

  const gen = async (task, prompt, extra = {}) => {
    const r = await api('POST', '/api/v1/generate', user.key, { task, prompt, ...extra });
    if (r.status !== 200) diag(`generate ${task} answered ${r.status}: ${r.text.slice(0, 160)}`);
  };
  await gen('cover_letter', `Cover letter for a C engineer, run ${STAMP}`);
  await gen('cover_letter', `Cover letter for a C engineer, run ${STAMP}`);   // a hit
  await gen('extraction', `Extract the job from: backend role ${STAMP}`, { cache_tier: 'session' });
  await gen('cv_drafting', `Draft a CV ${STAMP}`, { max_tokens: 300 });
  /* a cache key that is HTML: it must show as text, never as markup */
  const evilKey = `<img src=x onerror="window.__xss=1">${STAMP}`;
  const evilPath = `/api/v1/cache/content/${encodeURIComponent(evilKey)}`;
  const put = await api('PUT', evilPath, user.key, { value: 'hello' });
  if (put.status !== 200 && put.status !== 201) diag(`PUT cache answered ${put.status}: ${put.text.slice(0, 160)}`);
  for (let i = 0; i < 25; i++) await api('GET', evilPath, user.key);
  await api('GET', `/api/v1/cache/content/missing-${STAMP}`, user.key);

  /* over quota: commit more than the day allows, then lower the day to 1,000 */
  const res = await api('POST', '/api/v1/quota/reserve', over.key, { task_type: 'x' });
  if (res.status === 201 && res.json) {
    const c = await api('POST', '/api/v1/quota/commit', over.key, { reservation_id: res.json.reservation_id, actual_tokens: 2000 });
    if (c.status !== 200) diag(`commit answered ${c.status}: ${c.text.slice(0, 160)}`);
  } else diag(`reserve answered ${res.status}: ${res.text.slice(0, 160)}`);
  ctl('quota', 'set-override', '--id', String(over.id), '--day', '1000', '--reason', 'browser test');
  await sleep(2000);   // counters and usage rows reach the database within a second

  browser = await chromium.launch({
    executablePath: CHROMIUM, headless: true, timeout: 30000,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
  });
  diag(`browser: ${browser.version()}`);

  /* 1. the page without a key */
  const desk = await newPage({ width: 1280, height: 900 });
  let page = desk.page;
  const resp = await page.goto(`${BASE}/`, { waitUntil: 'load' });
  const loadEvent = await page.evaluate(() => {
    const nav = performance.getEntriesByType('navigation')[0];
    return nav ? Math.round(nav.loadEventEnd) : null;
  });
  check(resp && resp.status() === 200 && /quotacache/.test(await page.title()),
    'GET / serves the dashboard page', resp && resp.status());
  check(await page.isVisible('#key-input') && await page.isHidden('#dash'),
    'without a key the page asks for one and shows no dashboard');

  /* 2. a bad key */
  await page.fill('#key-input', `qck_${'x'.repeat(32)}`);
  await page.click('#key-submit');
  await page.waitForSelector('body[data-state=unauthorized]').catch(() => {});
  const badMsg = await page.evaluate(() => ({
    shown: !document.getElementById('error').hidden,
    text: document.getElementById('error').textContent.replace(/\s+/g, ' ').trim(),
    dash: !document.getElementById('dash').hidden,
    stored: sessionStorage.getItem('quotacache.apiKey'),
  }));
  check(badMsg.shown && /not accepted/.test(badMsg.text) && /401/.test(badMsg.text) && !badMsg.dash,
    'a bad key shows "The API key was not accepted (401)" and no dashboard', badMsg);
  check(badMsg.stored === null, 'a refused key is not kept in sessionStorage', badMsg.stored);

  /* 3. the user's key: numbers equal the API's */
  await page.fill('#key-input', user.key);
  await page.click('#key-submit');
  await page.waitForSelector('body[data-state=ready]').catch(() => {});
  const submitToData = await page.evaluate(() => window.qcTiming ? Math.round(window.qcTiming.dataShownAt - window.qcTiming.submitAt) : null);
  const st = await page.evaluate(() => document.body.getAttribute('data-state'));
  check(st === 'ready', 'with a valid key the dashboard shows data', st);
  const store = await page.evaluate(() => ({
    href: location.href, session: sessionStorage.getItem('quotacache.apiKey'),
    local: localStorage.length, cookie: document.cookie, input: document.getElementById('key-input').value,
  }));
  check(store.session === user.key && store.local === 0 && store.cookie === '' &&
        !store.href.includes(user.key) && store.input === '',
    'the key is kept in sessionStorage only (not in the URL, localStorage, a cookie or the input)',
    { ...store, session: store.session ? 'set' : null });

  const me = await get('/api/v1/me', user.key);
  const d0 = await page.evaluate(readDashboard);
  check(d0.email === me.email && d0.role === me.role, 'identity shows the e-mail and role of GET /me', [d0.email, d0.role]);

  let bad = await compare(page, () => get('/api/v1/quota/status', user.key), quotaProblems);
  check(bad.length === 0, 'quota widget: used, reserved, remaining, limit, percent, level and plan equal GET /quota/status', bad.join('\n'));
  const q = await get('/api/v1/quota/status', user.key);
  const plans = await get('/api/v1/quota/plans');
  const display = (plans.plans.find((p) => p.name === q.plan) || {}).display_name;
  const dq = await page.evaluate(readDashboard);
  check(dq.planName === (display || q.plan), 'the plan name is shown', [dq.planName, display]);

  /* countdowns: right to a few seconds, and ticking */
  const cdBad = [];
  for (const w of ['daily', 'monthly', 'hourly_calls']) {
    const c = countdownSeconds(dq.windows[w].countdown);
    const want = (Date.parse(q[w].resets_at) - Date.now()) / 1000;
    if (!c) { cdBad.push(`${w}: "${dq.windows[w].countdown}" unreadable`); continue; }
    if (Math.abs(c.secs - want) > (c.precise ? 5 : 65)) cdBad.push(`${w}: shows ${c.secs} s, resets_at is in ${Math.round(want)} s`);
  }
  check(cdBad.length === 0, 'each window counts down to its resets_at', cdBad.join('\n'));
  await page.waitForTimeout(2100);
  const later = countdownSeconds((await page.evaluate(readDashboard)).windows.daily.countdown);
  const first = countdownSeconds(dq.windows.daily.countdown);
  check(later && first && later.secs < first.secs && first.secs - later.secs <= 4,
    'the countdown is live (one second per second)', [dq.windows.daily.countdown, later]);

  bad = await compare(page, () => get('/api/v1/cache/stats', user.key), cacheProblems);
  check(bad.length === 0, 'cache widget: hit ratio, hits, misses, entries, bytes and dollars per tier equal GET /cache/stats', bad.join('\n'));
  const cs = await get('/api/v1/cache/stats', user.key);
  check(cs.total.hits > 0 && cs.total.misses > 0, 'the test made cache hits and misses to show', cs.total);
  check(!d0.experimentsCard, 'a user sees no experiments card');
  check(d0.cacheScope === 'your keys' && !d0.plansCard && !d0.topKeysCard,
    'a user sees their own cache scope and no admin cards', [d0.cacheScope, d0.plansCard, d0.topKeysCard]);

  bad = await compare(page, () => get('/api/v1/cache/stats/timeseries?hours=24', user.key), chartProblems);
  check(bad.length === 0, 'chart: 24 hourly bars whose hits and misses equal GET /cache/stats/timeseries?hours=24', bad.join('\n'));
  const svgInfo = await page.evaluate(() => {
    const s = document.querySelector('#chart svg');
    return s ? { ns: s.namespaceURI, w: s.getBoundingClientRect().width } : null;
  });
  check(svgInfo && svgInfo.ns === 'http://www.w3.org/2000/svg' && svgInfo.w > 600, 'the chart is inline SVG filling its card', svgInfo);

  bad = await compare(page, () => get('/api/v1/usage', user.key), usageProblems);
  check(bad.length === 0, 'usage table: calls, tokens, cost and savings per task equal GET /usage (last 30 days)', bad.join('\n'));
  const u30 = await get('/api/v1/usage', user.key);
  check(Object.keys(u30.tasks).length >= 2, 'the usage table has the tasks the test ran', Object.keys(u30.tasks));

  const upd = await page.evaluate(readDashboard);
  check(/^Updated at \d\d:\d\d:\d\d$/.test(upd.updated || ''), 'an "updated at" time is visible', upd.updated);
  await shot(page, 'dashboard-user-desktop.png');

  /* usage period: from / to (inclusive) */
  const today = new Date().toISOString().slice(0, 10);
  const weekAgo = new Date(Date.now() - 7 * 86400e3).toISOString().slice(0, 10);
  const tomorrow = new Date(Date.parse(`${today}T00:00:00Z`) + 86400e3).toISOString().slice(0, 10);
  const periodBefore = upd.usagePeriod;
  await page.fill('#usage-from', weekAgo);
  await page.fill('#usage-to', today);
  await page.click('#usage-form button[type=submit]');
  await page.waitForFunction((p) => document.getElementById('usage-period').textContent !== p, periodBefore).catch(() => {});
  const uRange = await get(`/api/v1/usage?from=${weekAgo}&to=${today}`, user.key);
  const dRange = await page.evaluate(readDashboard);
  bad = usageProblems(dRange, uRange);
  check(bad.length === 0 && dRange.usagePeriod.startsWith(`${weekAgo} 00:00`) && dRange.usagePeriod.includes(`${tomorrow} 00:00`),
    'usage from/to inputs: the table equals GET /usage?from=..&to=.. (to inclusive)', [dRange.usagePeriod, ...bad].join('\n'));
  await page.fill('#usage-from', today);
  await page.fill('#usage-to', weekAgo);
  await page.click('#usage-form button[type=submit]');
  const rangeErr = await page.evaluate(() => {
    const e = document.getElementById('usage-error');
    return e.hidden ? null : e.textContent;
  });
  check(rangeErr && /before/.test(rangeErr), 'a reversed period shows a message under the usage table', rangeErr);
  await page.click('#usage-reset');

  /* 4. reload with the key in sessionStorage: the page load time */
  await page.reload({ waitUntil: 'load' });
  await page.waitForSelector('body[data-state=ready]').catch(() => {});
  const reload = await page.evaluate(() => {
    const nav = performance.getEntriesByType('navigation')[0];
    const mark = performance.getEntriesByName('qc-data-shown')[0];
    return {
      load: nav ? Math.round(nav.loadEventEnd) : null,
      data: mark ? Math.round(mark.startTime) : null,
      state: document.body.getAttribute('data-state'),
    };
  });
  check(reload.state === 'ready' && reload.data !== null, 'a reload in the same tab shows the data without asking for the key again', reload);
  /* the page load: navigation start to the widgets showing data (key in sessionStorage) */
  console.log(`# page load: ${reload.data} ms`);
  diag(`load timing: load event ${reload.load} ms after navigation start, widgets with data at ${reload.data} ms (key in sessionStorage); ` +
       `first visit without a key: load event ${loadEvent} ms, key submitted to widgets with data ${submitToData} ms`);

  /* 5. forget the key */
  await page.click('#signout');
  const after = await page.evaluate(() => ({
    stored: sessionStorage.getItem('quotacache.apiKey'),
    login: !document.getElementById('login').hidden, dash: !document.getElementById('dash').hidden,
  }));
  check(after.stored === null && after.login && !after.dash, '"Forget key" clears sessionStorage and hides the dashboard', after);
  await desk.context.close();

  /* 6. the admin: global view, per plan, top keys */
  const adm = await newPage({ width: 1280, height: 900 });
  page = adm.page;
  check(await openWithKey(page, admin.key) === 'ready', 'an admin key shows the dashboard');
  const ovrSet = await api('PUT', `/api/v1/quota/users/${ovrUser.id}/override`, admin.key,
    { tokens_per_day: 20000, expires_at: ovrEnd, reason: ovrReason });
  check(ovrSet.status === 200, 'an override with markup in its reason, ending in 2 days', ovrSet.status);
  await page.reload();
  await page.waitForFunction(() => document.body.getAttribute('data-state') === 'ready', null, { timeout: 10000 });
  const da = await page.evaluate(readDashboard);
  check(da.role === 'admin' && da.cacheScope === 'all users' && da.plansCard && da.topKeysCard,
    'an admin sees the global cache scope, the per-plan card and the top keys', [da.role, da.cacheScope]);
  let expRows = [];
  try {
    await page.waitForFunction((n) => [...document.querySelectorAll('#experiments-table tbody tr')]
      .some((tr) => tr.textContent.includes(n)), expName, { timeout: 5000 });
  } catch (e) { /* checked below */ }
  expRows = await page.evaluate((n) => [...document.querySelectorAll('#experiments-table tbody tr')]
    .filter((tr) => tr.textContent.includes(n))
    .map((tr) => [...tr.children].map((td) => td.textContent)), expName);
  check(expRows.length === 2 && expRows[0][1] === 'draft' && expRows[0][2] === 'control' &&
    expRows[1][2] === 'treatment' && expRows[0][0].includes('30 % control'),
    'an admin sees the experiments card: each experiment with its control and treatment arms', expRows);
  try {
    await page.waitForFunction((id) => !!document.querySelector(`#overrides-table tr[data-user="${id}"]`),
      String(ovrUser.id), { timeout: 5000 });
  } catch (e) { /* checked below */ }
  const ovrRow = await page.evaluate((id) => {
    const tr = document.querySelector(`#overrides-table tr[data-user="${id}"]`);
    return tr ? { reason: tr.querySelector('[data-col=reason]').textContent,
      day: tr.querySelector('[data-col=day]').textContent, imgs: tr.querySelectorAll('img').length,
      xss: window.__xss === 1 } : null;
  }, String(ovrUser.id));
  check(ovrRow && ovrRow.reason === ovrReason && ovrRow.day === '20,000' && ovrRow.imgs === 0 && !ovrRow.xss,
    'an admin sees the override ending soon, its reason shown as text (no markup run)', ovrRow);
  const gs = await get('/api/v1/cache/stats', admin.key);
  const feat = await page.evaluate(() => ({
    ttl: [...document.querySelectorAll('#ttl-table tbody tr')].map((tr) => tr.children[0].textContent),
    regions: document.querySelectorAll('#region-table tbody tr').length,
    values: document.querySelectorAll('#value-table tbody tr').length,
    warming: !document.getElementById('warming-box').hidden,
  }));
  check(feat.ttl.join(',') === gs.effective_ttl.map((x) => x.ttl_up_to).join(',') &&
    feat.regions === gs.regions.length && feat.values === gs.task_value.length && feat.warming,
    'cache features card: effective TTL buckets, regions, hits per store and warming spend as in GET /cache/stats', feat);
  bad = await compare(page, () => get('/api/v1/cache/stats', admin.key), cacheProblems);
  check(bad.length === 0, 'admin cache widget equals the global GET /cache/stats', bad.join('\n'));
  bad = await compare(page, () => get('/api/v1/cache/stats', admin.key), (d, g) => {
    const p = [];
    const want = Object.keys(g.plans || {}).sort();
    if (Object.keys(d.plans).sort().join() !== want.join()) p.push(`plans shown [${Object.keys(d.plans)}], API [${want}]`);
    for (const name of want) {
      const c = d.plans[name], s = g.plans[name];
      if (!c) continue;
      if (c.hit_ratio.text !== ratioText(s)) p.push(`${name} ratio ${c.hit_ratio.text}`);
      if (int(c.hits.text) !== s.hits || int(c.misses.text) !== s.misses) p.push(`${name} hits/misses ${c.hits.text}/${c.misses.text} vs ${s.hits}/${s.misses}`);
      if (!usdClose(c.saved_usd.text, s.saved_usd)) p.push(`${name} saved ${c.saved_usd.text} vs ${s.saved_usd}`);
    }
    return p;
  });
  check(bad.length === 0, 'admin: cache per plan equals GET /cache/stats plans', bad.join('\n'));
  bad = await compare(page, () => get('/api/v1/cache/stats', admin.key), (d, g) => {
    const p = [];
    if (d.topKeys.length !== g.top_keys.length) p.push(`${d.topKeys.length} keys shown, API ${g.top_keys.length}`);
    g.top_keys.forEach((k, i) => {
      const s = d.topKeys[i];
      if (!s) return;
      const user = k.user_id === 0 ? 'shared' : `#${k.user_id}`;
      if (s.key !== k.key || s.tier !== k.tier || s.user !== user || int(s.hits) !== k.hits)
        p.push(`row ${i}: ${JSON.stringify(s)} vs ${JSON.stringify(k)}`);
    });
    return p;
  });
  check(bad.length === 0, 'admin: top keys (key, tier, user, hits) equal GET /cache/stats top_keys', bad.join('\n'));
  const g = await get('/api/v1/cache/stats', admin.key);
  const xss = await page.evaluate((k) => ({
    flag: window.__xss === 1,
    imgs: document.querySelectorAll('img').length,
    shown: [...document.querySelectorAll('.cache-key')].some((e) => e.textContent === k),
  }), evilKey);
  const listed = g.top_keys.some((k) => k.key === evilKey);
  check(!xss.flag && xss.imgs === 0 && (!listed || xss.shown),
    'a cache key holding HTML is shown as text, never run as markup', { ...xss, listed });
  if (!listed) diag('the HTML cache key is not among the top keys on this database; only "no markup ran" was checked');
  const uAll = await get('/api/v1/usage?user_id=all', admin.key);
  const dAll = await page.evaluate(readDashboard);
  bad = usageProblems(dAll, uAll);
  for (const [plan, s] of Object.entries(uAll.plans || {})) {
    const c = dAll.planUsage[plan];
    if (!c) { bad.push(`plan ${plan} missing from usage per plan`); continue; }
    if (int(c.calls.text) !== s.calls || int(c.tokens.text) !== s.prompt_tokens + s.completion_tokens || !usdClose(c.cost_usd.text, s.cost_usd))
      bad.push(`plan ${plan}: ${JSON.stringify(c)} vs ${JSON.stringify(s)}`);
  }
  check(bad.length === 0, 'admin: usage defaults to all users and per plan, equal to GET /usage?user_id=all', bad.join('\n'));
  bad = await compare(page, () => get('/api/v1/quota/status', admin.key), quotaProblems);
  check(bad.length === 0 && da.windows.daily.limit === 'unlimited',
    'admin (enterprise) quota shows unlimited windows as the API says (limit null)', bad.join('\n'));
  await shot(page, 'dashboard-admin-desktop.png');
  await adm.context.close();

  /* 7. over quota */
  const ov = await newPage({ width: 1280, height: 900 });
  page = ov.page;
  check(await openWithKey(page, over.key) === 'ready', 'the over-quota user sees the dashboard');
  const oq = await get('/api/v1/quota/status', over.key);
  const dov = await page.evaluate(readDashboard);
  check(oq.daily.level === 'exceeded', 'the API says the over-quota user\'s daily window is exceeded', oq.daily);
  check(dov.windows.daily.level === 'exceeded' && dov.windows.daily.levelAttr === 'exceeded' && dov.overall === 'exceeded' &&
        /exceeded/i.test(dov.overallText),
    'the over-quota user is shown "exceeded" (daily window and overall)', [dov.windows.daily.level, dov.overallText]);
  bad = quotaProblems(dov, oq);
  check(bad.length === 0, 'over quota: the numbers equal GET /quota/status', bad.join('\n'));
  const red = /^rgb\((\d+), (\d+), (\d+)\)$/.exec(dov.windows.daily.usedColor || '');
  check(red && +red[1] > 180 && +red[2] < 90 && +red[3] < 90 && dov.windows.daily.usedWidth >= dov.windows.daily.barWidth - 1,
    'an exceeded window is a full red bar', [dov.windows.daily.usedColor, dov.windows.daily.usedWidth, dov.windows.daily.barWidth]);
  const okGreen = /^rgb\((\d+), (\d+), (\d+)\)$/.exec(dov.windows.monthly.usedColor || '');
  check(dov.windows.monthly.level === 'ok' && okGreen && +okGreen[2] > +okGreen[1] && +okGreen[2] > +okGreen[3],
    'an ok window is green', [dov.windows.monthly.level, dov.windows.monthly.usedColor]);
  await shot(page, 'dashboard-exceeded-desktop.png');
  await ov.context.close();

  /* 8. 360 px wide */
  for (const [who, key] of [['user', user.key], ['admin', admin.key]]) {
    const narrow = await newPage({ width: 360, height: 760 });
    const ok = await openWithKey(narrow.page, key) === 'ready';
    await narrow.page.waitForTimeout(200);
    const sw = await narrow.page.evaluate(() => ({
      doc: document.documentElement.scrollWidth, body: document.body.scrollWidth, inner: window.innerWidth,
    }));
    check(ok && sw.doc <= 360 && sw.body <= 360, `at 360 px the ${who} dashboard has no horizontal scroll`, sw);
    if (who === 'user') {
      bad = await compare(narrow.page, () => get('/api/v1/usage', key), usageProblems);
      check(bad.length === 0, 'at 360 px the stacked usage table still shows the API numbers', bad.join('\n'));
    }
    await shot(narrow.page, `dashboard-${who}-360.png`);
    await narrow.context.close();
  }

  /* 9. auto-refresh every 30 s (the page's clock is driven by the test) */
  const ar = await newPage({ width: 1280, height: 900 });
  page = ar.page;
  await page.clock.install();
  let statusCalls = 0;
  page.on('request', (r) => { if (r.url().startsWith(`${BASE}/api/v1/quota/status`)) statusCalls++; });
  check(await openWithKey(page, user.key) === 'ready', 'dashboard ready under a test clock');
  const u1 = await page.getAttribute('#updated', 'data-updated-at');
  const calls1 = statusCalls;
  await page.clock.runFor(29000);
  await page.waitForTimeout(300);
  const early = statusCalls;
  await page.clock.runFor(1500);
  await page.waitForFunction((b) => document.getElementById('updated').getAttribute('data-updated-at') !== b, u1).catch(() => {});
  const u2 = await page.getAttribute('#updated', 'data-updated-at');
  check(early === calls1 && statusCalls === calls1 + 1 && u2 && u2 !== u1 && Date.parse(u2) - Date.parse(u1) >= 30000,
    'the page refreshes itself after 30 s and moves "updated at"', { calls1, early, after: statusCalls, u1, u2 });
  await ar.context.close();

  /* 10. a 403 from the API gives its own message */
  const fb = await newPage({ width: 1280, height: 900 });
  page = fb.page;
  await page.route(/\/api\/v1\/cache\/stats$/, (route) => route.fulfill({
    status: 403, contentType: 'application/problem+json',
    body: JSON.stringify({ type: 'about:blank', title: 'Forbidden', status: 403, detail: 'this key may not read cache statistics' }),
  }));
  const st403 = await openWithKey(page, user.key);
  const msg403 = await page.evaluate(() => document.getElementById('error').hidden ? null : document.getElementById('error').textContent.replace(/\s+/g, ' ').trim());
  check(st403 === 'error' && msg403 && /not allowed/.test(msg403) && /403/.test(msg403) && msg403.toLowerCase().includes('this key may not read cache statistics'),
    'a 403 answer shows "This key is not allowed to read ... (403)" with the problem detail', msg403);
  await fb.context.close();

  /* 11. over all pages */
  const foreign = requests.filter((u) => !u.startsWith(`${BASE}/`) && !u.startsWith('data:'));
  check(foreign.length === 0 && requests.length > 0, 'no request leaves the server (no CDN, no web fonts)', foreign.slice(0, 5));
  const leaked = requests.filter((u) => keys.some((k) => u.includes(k) || u.includes(encodeURIComponent(k))));
  check(leaked.length === 0, 'no request URL carries an API key', leaked.length);
  check(pageErrors.length === 0, 'no uncaught script error and no dialog', pageErrors.slice(0, 5));
}

/* bounded as a whole: a hung browser must not hang the suite */
const watchdog = setTimeout(async () => {
  check(false, 'the browser test finished within 300 s');
  if (browser) await Promise.race([browser.close().catch(() => {}), sleep(5000)]);
  console.log(`1..${tap.n}`);
  process.exit(1);
}, 300000);

try {
  await main();
} catch (e) {
  check(false, 'the browser test ran to the end', String(e && e.stack || e));
} finally {
  if (browser) await Promise.race([browser.close().catch(() => {}), sleep(10000)]);
  clearTimeout(watchdog);
}
console.log(`1..${tap.n}`);
process.exit(tap.failed ? 1 : 0);
