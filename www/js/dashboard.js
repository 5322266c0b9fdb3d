/* dashboard.js - the quotacache operator/user dashboard. It reads only the
 * public API (/api/v1/...) with the key the person typed, kept in
 * sessionStorage for this tab (never in a URL, a cookie or localStorage).
 * Every string from the API goes into the page through textContent or an
 * attribute: cache keys and e-mails are user-controlled, so no innerHTML. */
(function () {
  'use strict';

  var KEY_STORE = 'quotacache.apiKey';
  var REFRESH_MS = 30000;
  var TIER_ORDER = ['system', 'session', 'extraction', 'content'];
  var WINDOWS = [
    { id: 'daily', name: 'Daily tokens', unit: 'tokens' },
    { id: 'monthly', name: 'Monthly tokens', unit: 'tokens' },
    { id: 'hourly_calls', name: 'Calls this hour', unit: 'calls' }
  ];
  var LEVELS = ['ok', 'warning', 'critical', 'exceeded'];

  var state = {
    key: null,
    me: null,
    planNames: null,       /* plan code -> display name, from /quota/plans */
    plans: {},             /* plan code -> the /quota/plans row */
    scopeTouched: false,   /* the admin chose a usage scope by hand */
    skewMs: 0,             /* server clock minus ours, from the Date header */
    series: null,          /* last timeseries buckets, to redraw on resize */
    timer: null,           /* the 30 s auto-refresh */
    ticker: null,          /* the 1 s countdown */
    inflight: null,        /* the refresh under way, if any */
    lastOk: 0,
    generation: 0,         /* bumps on sign-out so late answers are dropped */
    resetRefreshDone: {},  /* resets_at values a refresh was already asked for */
    submitAt: null
  };

  /* ---- small DOM helpers (textContent only) ------------------------------ */

  function $(id) { return document.getElementById(id); }

  function h(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function clear(e) { while (e.firstChild) e.removeChild(e.firstChild); }

  function show(e, on) { e.hidden = !on; }

  /* ---- formatting --------------------------------------------------------- */

  var F = window.qcFormat;   /* js/format.js */
  var num = F.num, fmtInt = F.fmtInt, fmtUsd = F.fmtUsd, fmtUtc = F.fmtUtc;

  function fmtRatio(hits, misses, ratio) {
    if (num(hits) + num(misses) === 0) return '—';
    return (num(ratio) * 100).toFixed(1) + '%';
  }


  function fmtBytes(b) {
    b = num(b);
    if (b < 1024) return fmtInt(b) + ' B';
    var units = ['KiB', 'MiB', 'GiB', 'TiB'], i = -1;
    do { b /= 1024; i++; } while (b >= 1024 && i < units.length - 1);
    return (b >= 100 ? b.toFixed(0) : b >= 10 ? b.toFixed(1) : b.toFixed(2)) + ' ' + units[i];
  }

  function fmtDuration(sec) {
    sec = Math.max(0, Math.floor(sec));
    var d = Math.floor(sec / 86400), hh = Math.floor(sec % 86400 / 3600);
    var m = Math.floor(sec % 3600 / 60), s = sec % 60;
    var p2 = function (x) { return String(x).padStart(2, '0'); };
    if (d > 0) return d + 'd ' + hh + 'h ' + p2(m) + 'm';
    if (hh > 0) return hh + 'h ' + p2(m) + 'm ' + p2(s) + 's';
    return m + 'm ' + p2(s) + 's';
  }

  function fmtClock(d) {
    return d.toLocaleTimeString('en-GB', { hour: '2-digit', minute: '2-digit', second: '2-digit' });
  }


  function levelOf(l) { return LEVELS.indexOf(l) >= 0 ? l : 'ok'; }

  function levelBadge(l, extraCls) {
    var lv = levelOf(l);
    var b = h('span', 'level lvl-' + lv + (extraCls ? ' ' + extraCls : ''), String(l || 'ok'));
    b.setAttribute('data-level', lv);
    return b;
  }

  function planLabel(code) {
    return state.planNames && state.planNames[code] ? state.planNames[code] : code;
  }

  /* ---- API ------------------------------------------------------------------ */

  function ApiError(status, problem, path, cause) {
    this.status = status;
    this.problem = problem || null;
    this.path = path;
    this.cause = cause || null;
  }

  function api(path, auth) {
    var headers = { Accept: 'application/json' };
    if (auth !== false && state.key) headers.Authorization = 'Bearer ' + state.key;
    return fetch(path, { headers: headers, cache: 'no-store', credentials: 'omit', redirect: 'error' })
      .catch(function (err) { throw new ApiError(0, null, path, err); })
      .then(function (r) {
        var date = Date.parse(r.headers.get('Date') || '');
        if (isFinite(date)) {
          /* the header has one-second resolution: only correct a real skew */
          var skew = date - Date.now();
          state.skewMs = Math.abs(skew) > 2000 ? skew : 0;
        }
        return r.text().then(function (t) {
          var body = null;
          try { body = t ? JSON.parse(t) : null; } catch (e) { body = null; }
          if (!r.ok) throw new ApiError(r.status, body, path);
          if (body === null || typeof body !== 'object') throw new ApiError(r.status, null, path, 'not JSON');
          return body;
        });
      });
  }

  function describe(err) {
    var p = err && err.problem, detail = p && typeof p.detail === 'string' ? p.detail : '';
    if (detail) detail = detail.charAt(0).toUpperCase() + detail.slice(1);
    switch (err && err.status) {
      case 401:
        return { title: 'The API key was not accepted (401).',
                 detail: (detail ? detail + '. ' : '') + 'Check the key and enter it again.' };
      case 403:
        return { title: 'This key is not allowed to read ' + err.path + ' (403).',
                 detail: detail || 'Ask an administrator for access.' };
      case 429:
        return { title: 'Too many requests (429).', detail: detail || 'The dashboard will try again.' };
      case 503:
        return { title: 'The service is unavailable (503).',
                 detail: (detail ? detail + '. ' : '') + 'Showing the last data; retrying every 30 s.' };
      case 0:
        return { title: 'The server cannot be reached.', detail: 'Check the connection; retrying every 30 s.' };
      default:
        return { title: 'The server answered ' + (err && err.status) + ' for ' + (err && err.path) + '.',
                 detail: detail || (p && p.title) || 'Retrying every 30 s.' };
    }
  }

  function showError(err) {
    var d = describe(err);
    $('error-title').textContent = d.title;
    $('error-detail').textContent = d.detail;
    $('error').setAttribute('data-status', String(err && err.status));
    show($('error'), true);
  }

  function hideError() { show($('error'), false); }

  /* ---- the usage query (from / to inputs) --------------------------------- */

  /* A date-only "to" covers that whole day, for people and for the API. */
  function usagePath() {
    var q = [], from = $('usage-from').value, to = $('usage-to').value, scope = $('usage-scope').value;
    if (from) q.push('from=' + encodeURIComponent(from));
    if (to) q.push('to=' + encodeURIComponent(to));
    if (scope && state.me && state.me.role === 'admin') q.push('user_id=' + encodeURIComponent(scope));
    return '/api/v1/usage' + (q.length ? '?' + q.join('&') : '');
  }

  /* ---- rendering ------------------------------------------------------------ */

  function renderMe(me, quota) {
    $('who-email').textContent = me.email || ('user ' + me.id);
    $('who-role').textContent = me.role || 'user';
    $('who-role').className = 'badge badge-role' + (me.role === 'admin' ? ' badge-admin' : '');
    var plan = quota.plan || me.plan || '';
    $('plan-name').textContent = planLabel(plan);
    $('plan-code').textContent = plan;
    $('plan-code').hidden = planLabel(plan) === plan;
    var ol = $('overall-level');
    ol.className = 'level lvl-' + levelOf(quota.level);
    ol.setAttribute('data-level', levelOf(quota.level));
    ol.textContent = 'overall: ' + (quota.level || 'ok');
  }

  function numCell(dl, label, field, value) {
    var d = h('div', 'kv');
    d.appendChild(h('dt', null, label));
    var dd = h('dd', null, value);
    dd.setAttribute('data-field', field);
    d.appendChild(dd);
    dl.appendChild(d);
  }

  function renderQuota(quota) {
    var box = $('quota-windows');
    clear(box);
    WINDOWS.forEach(function (wdef) {
      var w = quota[wdef.id];
      if (!w || typeof w !== 'object') return;
      var lv = levelOf(w.level), unlimited = w.limit === null || w.limit === undefined;
      var row = h('section', 'window lvl-' + lv + (unlimited ? ' unlimited' : ''));
      row.setAttribute('data-window', wdef.id);

      var head = h('div', 'win-head');
      head.appendChild(h('h3', 'win-name', wdef.name));
      var badge = levelBadge(w.level);
      badge.setAttribute('data-field', 'level');
      head.appendChild(badge);
      row.appendChild(head);

      var bar = h('div', 'bar');
      bar.setAttribute('role', 'meter');
      bar.setAttribute('aria-label', wdef.name);
      var used = num(w.used), reserved = num(w.reserved);
      if (!unlimited && num(w.limit) > 0) {
        var lim = num(w.limit);
        var pu = Math.min(100, used / lim * 100);
        var pr = Math.min(100 - pu, reserved / lim * 100);
        var su = h('span', 'seg seg-used'); su.style.width = pu + '%';
        var sr = h('span', 'seg seg-reserved'); sr.style.width = pr + '%';
        bar.appendChild(su); bar.appendChild(sr);
        bar.setAttribute('aria-valuemin', '0');
        bar.setAttribute('aria-valuemax', String(lim));
        bar.setAttribute('aria-valuenow', String(Math.min(lim, used + reserved)));
        bar.setAttribute('aria-valuetext', fmtInt(used + reserved) + ' of ' + fmtInt(lim) + ' ' + wdef.unit);
      } else if (!unlimited) {          /* a limit of 0: nothing is allowed */
        var sz = h('span', 'seg seg-used'); sz.style.width = '100%';
        bar.appendChild(sz);
      } else {
        bar.setAttribute('aria-valuetext', 'unlimited');
      }
      row.appendChild(bar);

      var dl = h('dl', 'win-nums');
      numCell(dl, 'used', 'used', fmtInt(used));
      numCell(dl, 'reserved', 'reserved', fmtInt(reserved));
      numCell(dl, 'remaining', 'remaining', unlimited ? 'unlimited' : fmtInt(w.remaining));
      numCell(dl, 'limit', 'limit', unlimited ? 'unlimited' : fmtInt(w.limit));
      row.appendChild(dl);

      var foot = h('div', 'win-foot');
      var pctText = unlimited ? 'no limit'
        : (num(w.percent) === 0 && used + reserved > 0 ? '<1' : fmtInt(w.percent)) + '% of limit';
      var pct = h('span', 'pct', pctText);
      pct.setAttribute('data-field', 'percent');
      foot.appendChild(pct);
      var reset = h('span', 'reset');
      reset.appendChild(document.createTextNode('resets in '));
      var cd = h('span', 'countdown', '');
      cd.setAttribute('data-field', 'countdown');
      cd.setAttribute('data-resets-at', String(w.resets_at || ''));
      cd.title = 'at ' + fmtUtc(w.resets_at) + ' UTC';
      reset.appendChild(cd);
      foot.appendChild(reset);
      row.appendChild(foot);
      if (lv === 'exceeded' && !unlimited) {
        row.appendChild(h('p', 'win-alert', 'Limit reached: new ' + (wdef.unit === 'calls' ? 'calls' : 'requests') +
          ' are refused until this window resets.'));
      } else if (lv === 'critical') {
        row.appendChild(h('p', 'win-alert win-alert-soft', 'Over 90% used: ' + fmtInt(w.remaining) + ' ' + wdef.unit + ' left.'));
      }
      box.appendChild(row);
    });
    tick();
  }

  /* one second: every countdown; a window that has just reset gets a refresh */
  function tick() {
    var now = Date.now() + state.skewMs, due = false;
    var cds = document.querySelectorAll('[data-resets-at]');
    for (var i = 0; i < cds.length; i++) {
      var at = cds[i].getAttribute('data-resets-at'), t = Date.parse(at);
      if (!isFinite(t)) { cds[i].textContent = '—'; continue; }
      var left = (t - now) / 1000;
      cds[i].textContent = fmtDuration(left);
      if (left <= 0 && !state.resetRefreshDone[at]) { state.resetRefreshDone[at] = true; due = true; }
    }
    if (due) setTimeout(function () { refresh(); }, 1500);
  }

  function cell(tr, text, label, cls, field) {
    var td = h(tr.children.length === 0 ? 'th' : 'td', cls || (tr.children.length ? 'num' : null), text);
    if (tr.children.length === 0) td.setAttribute('scope', 'row');
    td.setAttribute('data-label', label);
    if (field) td.setAttribute('data-col', field);
    tr.appendChild(td);
    return td;
  }

  function ratioCell(tr, s) {
    var td = cell(tr, '', 'hit ratio', 'num ratio', 'hit_ratio');
    var txt = h('span', 'ratio-text', fmtRatio(s.hits, s.misses, s.hit_ratio));
    var mini = h('span', 'mini');
    var fill = h('span', 'mini-fill');
    fill.style.width = Math.max(0, Math.min(100, num(s.hit_ratio) * 100)) + '%';
    mini.appendChild(fill);
    td.appendChild(mini);
    td.appendChild(txt);
    return td;
  }

  function renderCache(cs) {
    var admin = cs.scope === 'global';
    $('cache-scope').textContent = admin ? 'all users' : 'your keys';
    var t = cs.total || {};
    $('cache-ratio').textContent = fmtRatio(t.hits, t.misses, t.hit_ratio);
    $('cache-entries').textContent = fmtInt(t.entries);
    $('cache-bytes').textContent = fmtBytes(t.bytes);
    $('cache-bytes').title = fmtInt(t.bytes) + ' bytes';
    $('cache-saved').textContent = fmtUsd(t.saved_usd);
    var pl = state.me && state.plans[state.me.plan];
    var noCache = !admin && pl && pl.session_ttl_seconds === null && pl.content_ttl_seconds === null;
    $('cache-plan-note').textContent = noCache
      ? 'The ' + planLabel(pl.name) + ' plan does not store session or content results; only the shared system tier can hit.'
      : '';
    show($('cache-plan-note'), !!noCache);

    var tb = $('tier-table').tBodies[0];
    clear(tb);
    var tiers = cs.tiers || {};
    var names = TIER_ORDER.filter(function (n) { return tiers[n]; })
      .concat(Object.keys(tiers).filter(function (n) { return TIER_ORDER.indexOf(n) < 0; }));
    names.forEach(function (name) {
      var s = tiers[name] || {};
      var tr = h('tr');
      tr.setAttribute('data-tier', name);
      cell(tr, name, 'tier', 'tier-name', 'tier');
      ratioCell(tr, s);
      cell(tr, fmtInt(s.hits), 'hits', null, 'hits');
      cell(tr, fmtInt(s.misses), 'misses', null, 'misses');
      cell(tr, fmtInt(s.entries), 'entries', null, 'entries');
      var b = cell(tr, fmtBytes(s.bytes), 'stored', null, 'bytes');
      b.title = fmtInt(s.bytes) + ' bytes';
      cell(tr, fmtUsd(s.saved_usd), 'saved', null, 'saved_usd');
      tb.appendChild(tr);
    });

    renderFeatures(cs, admin);
    show($('plans-card'), admin);
    show($('topkeys-card'), admin);
    if (!admin) return;

    var pb = $('plan-cache-table').tBodies[0];
    clear(pb);
    Object.keys(cs.plans || {}).sort().forEach(function (plan) {
      var s = cs.plans[plan] || {};
      var tr = h('tr');
      tr.setAttribute('data-plan', plan);
      cell(tr, plan, 'plan', 'tier-name', 'plan');
      ratioCell(tr, s);
      cell(tr, fmtInt(s.hits), 'hits', null, 'hits');
      cell(tr, fmtInt(s.misses), 'misses', null, 'misses');
      cell(tr, fmtUsd(s.saved_usd), 'saved', null, 'saved_usd');
      pb.appendChild(tr);
    });
    if (!pb.children.length) pb.appendChild(emptyRow(5, 'No cache lookups yet.'));

    var kb = $('topkeys-table').tBodies[0];
    clear(kb);
    (cs.top_keys || []).forEach(function (k, i) {
      var tr = h('tr');
      tr.setAttribute('data-rank', String(i));
      var th = cell(tr, '', 'key', 'key-cell', 'key');
      var code = h('code', 'cache-key', k.key);   /* user-controlled: textContent */
      code.title = String(k.key);
      th.appendChild(code);
      cell(tr, k.tier, 'tier', 'tier-name', 'tier');
      cell(tr, k.user_id === 0 ? 'shared' : '#' + k.user_id, 'user', null, 'user_id');
      cell(tr, fmtInt(k.hits), 'hits', null, 'hits');
      kb.appendChild(tr);
    });
    if (!kb.children.length) kb.appendChild(emptyRow(4, 'No cache entries.'));
  }

  function emptyRow(span, text) {
    var tr = h('tr', 'empty-row');
    var td = h('td', 'muted', text);
    td.colSpan = span;
    tr.appendChild(td);
    return tr;
  }

  function renderChart(ts) {
    state.series = Array.isArray(ts.buckets) ? ts.buckets : [];
    drawChart();
  }

  function drawChart() {
    if (!state.series || !window.QCChart) return;
    var totals = window.QCChart.render($('chart'), state.series, {
      onFocus: function (b, label) {
        $('chart-readout').textContent = b ? label + ' · ' + fmtUsd(b.saved_usd) + ' saved'
                                           : 'last ' + state.series.length + ' hours, local time';
      }
    });
    var sum = $('chart-summary');
    clear(sum);
    var hs = h('span', 'sum-hits', fmtInt(totals.hits));
    hs.setAttribute('data-field', 'hits');
    var ms = h('span', 'sum-misses', fmtInt(totals.misses));
    ms.setAttribute('data-field', 'misses');
    sum.appendChild(hs);
    sum.appendChild(document.createTextNode(' hits · '));
    sum.appendChild(ms);
    sum.appendChild(document.createTextNode(' misses'));
    $('chart-readout').textContent = 'last ' + state.series.length + ' hours, local time';
  }

  var USAGE_COLS = [
    ['calls', 'calls', fmtInt], ['cached', 'cached', fmtInt],
    ['prompt_tokens', 'tokens in', fmtInt], ['completion_tokens', 'tokens out', fmtInt],
    ['cost_usd', 'cost', fmtUsd], ['saved_tokens', 'saved tokens', fmtInt],
    ['saved_usd', 'saved', fmtUsd], ['failures', 'failures', fmtInt],
    ['streamed', 'streamed', fmtInt], ['openai', 'via /v1', fmtInt]
  ];

  function renderUsage(u) {
    show($('usage-error'), false);
    $('usage-period').textContent = fmtUtc(u.from) + ' → ' + fmtUtc(u.to) + ' UTC' +
      (u.user_id === 'all' ? ' · all users' : '');
    var tb = $('usage-table').tBodies[0], tf = $('usage-table').tFoot;
    clear(tb); clear(tf);
    var tasks = u.tasks || {}, names = Object.keys(tasks).sort(), tot = {};
    names.forEach(function (task) {
      var r = tasks[task] || {};
      var tr = h('tr');
      tr.setAttribute('data-task', task);
      cell(tr, task, 'task', 'task-name', 'task');
      USAGE_COLS.forEach(function (c) {
        cell(tr, c[2](r[c[0]]), c[1], null, c[0]);
        tot[c[0]] = (tot[c[0]] || 0) + num(r[c[0]]);
      });
      tb.appendChild(tr);
    });
    show($('usage-empty'), names.length === 0);
    if (names.length > 1) {
      var tr = h('tr', 'total-row');
      cell(tr, 'total', 'task', 'task-name', 'task');
      USAGE_COLS.forEach(function (c) { cell(tr, c[2](tot[c[0]]), c[1], null, c[0]); });
      tf.appendChild(tr);
    }

    var pb = $('plan-usage-table').tBodies[0];
    clear(pb);
    if (u.plans) {
      $('plan-usage-period').textContent = '(same period)';
      Object.keys(u.plans).sort().forEach(function (plan) {
        var r = u.plans[plan] || {};
        var tr = h('tr');
        tr.setAttribute('data-plan', plan);
        cell(tr, plan, 'plan', 'tier-name', 'plan');
        cell(tr, fmtInt(r.calls), 'calls', null, 'calls');
        cell(tr, fmtInt(num(r.prompt_tokens) + num(r.completion_tokens)), 'tokens', null, 'tokens');
        cell(tr, fmtUsd(r.cost_usd), 'cost', null, 'cost_usd');
        cell(tr, fmtUsd(r.saved_usd), 'saved', null, 'saved_usd');
        pb.appendChild(tr);
      });
      if (!pb.children.length) pb.appendChild(emptyRow(5, 'No calls in this period.'));
    }
  }

  function renderUsageError(err) {
    var d = describe(err);
    var e = $('usage-error');
    e.textContent = (err.status === 400 && err.problem && err.problem.detail)
      ? 'The period was refused: ' + err.problem.detail + '.' : d.title + ' ' + d.detail;
    show(e, true);
  }

  function renderHealth(hh) {
    var el = $('health');
    if (!hh) { el.textContent = 'service status unknown'; el.className = ''; return; }
    el.textContent = 'quotacache ' + hh.version + ' · database ' +
      (hh.database ? 'reachable' : 'unreachable') + ' · schema ' + hh.schema_version;
    el.className = hh.database ? 'health-ok' : 'health-bad';
  }

  function stampUpdated() {
    var now = new Date();
    var u = $('updated');
    u.textContent = 'Updated at ' + fmtClock(now);
    u.setAttribute('data-updated-at', now.toISOString());
    u.title = 'refreshes every 30 s';
    u.classList.remove('stale');
  }

  /* ---- the refresh cycle ------------------------------------------------------ */

  /* A/B experiments (admin): each experiment's arms, two rows */
  function renderExperiments(list) {
    var tb = $('experiments-table').tBodies[0];
    clear(tb);
    list = Array.isArray(list) ? list.slice(0, 10) : [];
    list.forEach(function (e) {
      ['control', 'treatment'].forEach(function (arm) {
        var a = (e.arms && e.arms[arm]) || {};
        var tr = h('tr');
        cell(tr, e.name + (arm === 'control' ? ' (' + num(e.control_pct) + ' % control)' : ''), 'experiment', null, 'name');
        cell(tr, e.state, 'state', 'text', 'state');
        cell(tr, arm, 'arm', 'text', 'arm');
        cell(tr, fmtInt(a.requests), 'requests', null, 'requests');
        cell(tr, (num(a.hit_ratio) * 100).toFixed(1) + ' %', 'hit ratio', null, 'hit_ratio');
        cell(tr, fmtInt(a.upstream_calls), 'upstream calls', null, 'upstream_calls');
        cell(tr, Math.round(num(a.latency_ms_mean)) + ' ms', 'mean latency', null, 'latency');
        cell(tr, fmtUsd(a.billed_usd), 'billed', null, 'billed');
        cell(tr, fmtUsd(a.saved_usd), 'saved', null, 'saved');
        tb.appendChild(tr);
      });
    });
    show($('experiments-empty'), list.length === 0);
  }

  /* SPEC §13: effective TTLs, regions, what cost-aware caching learned, warming spend */
  function renderFeatures(cs, admin) {
    var rows = function (id, list, fill) {
      var tb = $(id).tBodies[0];
      clear(tb);
      (Array.isArray(list) ? list : []).forEach(function (x) {
        var tr = h('tr');
        fill(tr, x);
        tb.appendChild(tr);
      });
    };
    rows('ttl-table', cs.effective_ttl, function (tr, x) {
      cell(tr, String(x.ttl_up_to), 'TTL up to', null, 'ttl');
      cell(tr, fmtInt(x.entries), 'entries', null, 'entries');
      cell(tr, fmtInt(x.adaptive), 'adaptive', null, 'adaptive');
    });
    rows('region-table', cs.regions, function (tr, x) {
      cell(tr, x.region === null ? '(none)' : String(x.region), 'region', null, 'region');
      cell(tr, fmtInt(x.hits), 'hits', null, 'hits');
      cell(tr, fmtInt(x.misses), 'misses', null, 'misses');
      cell(tr, fmtInt(x.entries), 'entries', null, 'entries');
      cell(tr, fmtBytes(x.bytes), 'stored', null, 'bytes');
    });
    $('worker-region').textContent = cs.worker_region ? '(this worker: ' + cs.worker_region + ')' : '';
    rows('value-table', cs.task_value, function (tr, x) {
      cell(tr, String(x.task), 'task', null, 'task');
      cell(tr, String(x.tier), 'tier', 'text', 'tier');
      cell(tr, fmtInt(x.hits), 'hits', null, 'hits');
      cell(tr, fmtInt(x.stores), 'stores', null, 'stores');
      cell(tr, x.hits_per_store === null ? '-' : num(x.hits_per_store).toFixed(2), 'hits per store', null, 'hps');
    });
    $('evicted').textContent = num(cs.evicted) ? '(' + fmtInt(cs.evicted) + ' evicted under the cap)' : '';
    show($('warming-box'), admin);
    var w = cs.warming || {};
    rows('warming-table', Object.keys(w).sort().map(function (p) { return { plan: p, s: w[p] || {} }; }),
      function (tr, x) {
        cell(tr, planLabel(x.plan), 'plan', null, 'plan');
        cell(tr, fmtInt(x.s.calls), 'calls', null, 'calls');
        cell(tr, fmtInt(x.s.refused_by_budget), 'refused by budget', null, 'refused');
        cell(tr, fmtInt(x.s.tokens), 'tokens', null, 'tokens');
        cell(tr, fmtUsd(x.s.cost_usd), 'spent', null, 'cost');
      });
  }

  /* overrides about to end (admin): loyal customers to look after */
  function renderOverrides(list) {
    var tb = $('overrides-table').tBodies[0];
    clear(tb);
    list = Array.isArray(list) ? list : [];
    list.forEach(function (o) {
      var tr = h('tr');
      tr.setAttribute('data-user', String(o.user_id));
      cell(tr, String(o.email || ''), 'user', null, 'email');
      cell(tr, planLabel(o.plan), 'plan', 'text', 'plan');
      cell(tr, fmtUtc(o.expires_at), 'ends', 'text', 'expires');
      cell(tr, o.tokens_per_day === undefined ? 'plan' : o.tokens_per_day === null ? 'unlimited'
        : fmtInt(o.tokens_per_day), 'daily limit', null, 'day');
      cell(tr, String(o.reason || ''), 'reason', 'text', 'reason');
      tb.appendChild(tr);
    });
    show($('overrides-empty'), list.length === 0);
  }

  function refreshExperiments(admin) {
    show($('overrides-card'), admin);
    if (admin) {
      var g = state.generation;
      api('/api/v1/admin/overrides?within_days=7').then(function (list) {
        if (g === state.generation) renderOverrides(list);
      }, function () { /* the other cards say what is wrong */ });
    }
    show($('experiments-card'), admin);
    if (!admin) return;
    var gen = state.generation;
    api('/api/v1/admin/experiments').then(function (list) {
      if (gen === state.generation) renderExperiments(list);
    }, function () { /* the other cards say what is wrong */ });
  }

  function refresh() {
    if (!state.key) return Promise.resolve();
    if (state.inflight) return state.inflight;
    var gen = state.generation;
    var planNames = state.planNames ? Promise.resolve(null)
      : api('/api/v1/quota/plans', false).catch(function () { return null; });
    var me = api('/api/v1/me');
    var usage = me.then(function (m) {
      if (m.role === 'admin' && !state.scopeTouched) $('usage-scope').value = 'all';
      state.me = m;
      return api(usagePath());
    }).then(
      function (u) { return { ok: u }; },
      function (err) { if (err.status === 401) throw err; return { err: err }; });
    var health = api('/api/v1/health', false).catch(function () { return null; });
    var p = Promise.all([
      me, api('/api/v1/quota/status'), api('/api/v1/cache/stats'),
      api('/api/v1/cache/stats/timeseries?hours=24'), usage, planNames, health
    ]).then(function (r) {
      if (gen !== state.generation) return;
      if (r[5] && Array.isArray(r[5].plans)) {
        state.planNames = {};
        r[5].plans.forEach(function (pl) {
          state.planNames[pl.name] = pl.display_name || pl.name;
          state.plans[pl.name] = pl;
        });
      }
      state.me = r[0];
      show($('usage-scope-label'), r[0].role === 'admin');
      show($('admin-link'), r[0].role === 'admin');   /* admin.html: the console */
      hideError();
      show($('login'), false);
      show($('dash'), true);
      show($('session'), true);
      renderMe(r[0], r[1]);
      renderQuota(r[1]);
      renderCache(r[2]);
      renderChart(r[3]);
      if (r[4].ok) renderUsage(r[4].ok); else renderUsageError(r[4].err);
      renderHealth(r[6]);
      refreshExperiments(r[0].role === 'admin');
      stampUpdated();
      state.lastOk = Date.now();
      document.body.setAttribute('data-state', 'ready');
      if (state.submitAt !== null) {
        /* first data after the key was entered: for the load-time test */
        window.qcTiming = { submitAt: state.submitAt, dataShownAt: performance.now() };
        try { performance.mark('qc-data-shown'); } catch (e) { /* old browsers */ }
        state.submitAt = null;
      }
    }).catch(function (err) {
      if (gen !== state.generation) return;
      if (!(err instanceof ApiError)) err = new ApiError(-1, { detail: String(err && err.message || err) }, 'the page');
      if (err.status === 401) {
        signOut(false);
        showError(err);
        document.body.setAttribute('data-state', 'unauthorized');
        return;
      }
      showError(err);
      $('updated').classList.add('stale');
      if (!state.lastOk) {
        show($('login'), true);
        document.body.setAttribute('data-state', 'error');
      }
    }).then(function () { state.inflight = null; });
    state.inflight = p;
    return p;
  }

  function start(key) {
    state.key = key;
    state.generation++;
    state.inflight = null;
    state.lastOk = 0;
    document.body.setAttribute('data-state', 'loading');
    clearInterval(state.timer);
    clearInterval(state.ticker);
    state.timer = setInterval(function () {
      if (document.visibilityState !== 'hidden') refresh();
    }, REFRESH_MS);
    state.ticker = setInterval(tick, 1000);
    return refresh();
  }

  function signOut(clearError) {
    try { sessionStorage.removeItem(KEY_STORE); } catch (e) { /* storage off */ }
    state.key = null;
    state.me = null;
    state.scopeTouched = false;
    $('usage-scope').value = '';
    state.generation++;
    state.inflight = null;
    clearInterval(state.timer);
    clearInterval(state.ticker);
    show($('dash'), false);
    show($('session'), false);
    show($('admin-link'), false);
    show($('login'), true);
    if (clearError) hideError();
    document.body.setAttribute('data-state', 'signed-out');
    $('key-input').value = '';
    $('key-input').focus();
  }

  /* ---- wiring ------------------------------------------------------------------- */

  function init() {
    $('key-form').addEventListener('submit', function (ev) {
      ev.preventDefault();
      var key = $('key-input').value.trim();
      if (!key) {
        $('error-title').textContent = 'Enter an API key.';
        $('error-detail').textContent = 'Keys start with qck_; an administrator creates them with quotacachectl.';
        $('error').setAttribute('data-status', 'empty');
        show($('error'), true);
        return;
      }
      try { sessionStorage.setItem(KEY_STORE, key); } catch (e) { /* kept in memory only */ }
      $('key-input').value = '';
      hideError();
      state.submitAt = performance.now();
      start(key);
    });
    $('refresh').addEventListener('click', function () { refresh(); });
    $('signout').addEventListener('click', function () { signOut(true); });
    $('usage-form').addEventListener('submit', function (ev) {
      ev.preventDefault();
      var f = $('usage-from').value, t = $('usage-to').value;
      if (f && t && t < f) {
        renderUsageError(new ApiError(400, { detail: "'to' must not be before 'from'" }, '/api/v1/usage'));
        return;
      }
      refreshUsage();
    });
    $('usage-reset').addEventListener('click', function () {
      $('usage-from').value = '';
      $('usage-to').value = '';
      refreshUsage();
    });
    $('usage-scope').addEventListener('change', function () {
      state.scopeTouched = true;
      refreshUsage();
    });

    var rt = null;
    window.addEventListener('resize', function () {
      clearTimeout(rt);
      rt = setTimeout(drawChart, 120);
    });
    document.addEventListener('visibilitychange', function () {
      if (document.visibilityState === 'visible' && state.key && Date.now() - state.lastOk > REFRESH_MS) refresh();
    });

    var stored = null;
    try { stored = sessionStorage.getItem(KEY_STORE); } catch (e) { stored = null; }
    if (stored) {
      state.submitAt = performance.now();
      start(stored);
    } else {
      document.body.setAttribute('data-state', 'signed-out');
      api('/api/v1/health', false).then(renderHealth, function () { renderHealth(null); });
    }
  }

  /* only the usage table, when its period or scope changes */
  function refreshUsage() {
    if (!state.key) return;
    var gen = state.generation;
    api(usagePath()).then(function (u) {
      if (gen === state.generation) renderUsage(u);
    }, function (err) {
      if (gen !== state.generation) return;
      if (err.status === 401) { signOut(false); showError(err); return; }
      renderUsageError(err);
    });
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
  else init();

})();
