/* admin.js - the quotacache admin console (SPEC §14, issue 15): users (search,
 * create, plan, keys, overrides, disable, cache purge), system prompts (edit
 * with a line diff before saving), spend and refusals per day (SVG), users
 * nearest their limits, overrides about to end, and the audit log. It acts
 * only through the admin routes of /api/v1 with the key the person typed,
 * kept in sessionStorage for this tab like the dashboard (never in a URL, a
 * cookie or localStorage). Every string from the API is written with
 * textContent: e-mails, reasons and prompts are user-controlled, so no
 * innerHTML anywhere. A new key is shown once, in a dialog, and forgotten
 * when it closes. Destructive actions ask first, in a <dialog>. */
(function () {
  'use strict';

  var KEY_STORE = 'quotacache.apiKey';   /* the dashboard's, so one key serves both */
  var NS = 'http://www.w3.org/2000/svg';
  var PER_PAGE = 25;
  var WINDOWS = [
    { id: 'daily', name: 'tokens today' },
    { id: 'monthly', name: 'tokens this month' },
    { id: 'hourly_calls', name: 'calls this hour' }
  ];

  var state = {
    key: null,
    me: null,
    plans: [],            /* [{name, display_name}] */
    view: 'users',
    q: '', page: 1,
    userId: null, user: null, quota: null,
    prompts: [], edit: null,    /* {key, old, isNew} */
    audit: { page: 1 },
    spend: null,
    generation: 0
  };

  /* ---- small DOM helpers (textContent only) ------------------------------ */

  function $(id) { return document.getElementById(id); }

  function h(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function svg(name, attrs, parent) {
    var e = document.createElementNS(NS, name);
    for (var k in attrs) if (Object.prototype.hasOwnProperty.call(attrs, k)) e.setAttribute(k, String(attrs[k]));
    if (parent) parent.appendChild(e);
    return e;
  }

  function clear(e) { while (e.firstChild) e.removeChild(e.firstChild); }

  function show(e, on) { e.hidden = !on; }

  function btn(text, cls, onClick, focusKey) {
    var b = h('button', 'btn ' + (cls || ''), text);
    b.type = 'button';
    if (focusKey) b.setAttribute('data-focus', focusKey);
    b.addEventListener('click', onClick);
    return b;
  }

  /* ---- formatting ---------------------------------------------------------- */

  var F = window.qcFormat;   /* js/format.js */
  var num = F.num, fmtInt = F.fmtInt, fmtUsd = F.fmtUsd, fmtUtc = F.fmtUtc;



  function limitText(v) { return v === null ? 'unlimited' : v === undefined ? 'plan' : fmtInt(v); }

  function planLabel(code) {
    for (var i = 0; i < state.plans.length; i++) {
      if (state.plans[i].name === code) return state.plans[i].display_name || code;
    }
    return String(code);
  }

  /* a datetime-local value, read as UTC -> ISO 8601, or null when empty */
  function utcFromInput(v) {
    if (!v) return null;
    return (v.length === 16 ? v + ':00' : v.slice(0, 19)) + 'Z';
  }

  /* ---- API --------------------------------------------------------------- */

  function ApiError(status, problem, path, method) {
    this.status = status;
    this.problem = problem || null;
    this.path = path;
    this.method = method || 'GET';
  }

  function api(method, path, body) {
    var headers = { Accept: 'application/json' };
    if (state.key) headers.Authorization = 'Bearer ' + state.key;
    var init = { method: method, headers: headers, cache: 'no-store', credentials: 'omit', redirect: 'error' };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    var gen = state.generation;
    return fetch(path, init)
      .catch(function () { throw new ApiError(0, null, path, method); })
      .then(function (r) {
        return r.text().then(function (t) {
          var data = null;
          try { data = t ? JSON.parse(t) : null; } catch (e) { data = null; }
          if (gen !== state.generation) throw new ApiError(-2, null, path, method);   /* signed out since */
          if (!r.ok) throw new ApiError(r.status, data, path, method);
          return data;
        });
      });
  }

  function describe(err) {
    if (!(err instanceof ApiError)) return { title: 'Something went wrong in the page.', detail: String(err && err.message || err) };
    var p = err.problem, detail = p && typeof p.detail === 'string' ? p.detail : '';
    if (detail) detail = detail.charAt(0).toUpperCase() + detail.slice(1);
    switch (err.status) {
      case 0: return { title: 'The server cannot be reached.', detail: 'Check the connection and try again.' };
      case 401: return { title: 'The API key was not accepted (401).', detail: (detail ? detail + '. ' : '') + 'Enter it again.' };
      case 403: return { title: 'This key may not do that (403).', detail: detail || 'The console needs an admin key.' };
      default:
        return { title: err.method + ' ' + err.path.replace(/\?.*$/, '') + ' answered ' + err.status + '.',
                 detail: detail || (p && p.title) || '' };
    }
  }

  /* ---- messages ---------------------------------------------------------------- */

  var toastTimer = null;

  function toast(text, isError) {
    var t = $('toast');
    $('toast-text').textContent = text;
    t.className = 'toast' + (isError ? ' toast-error' : '');
    t.setAttribute('data-kind', isError ? 'error' : 'ok');
    show(t, true);
    clearTimeout(toastTimer);
    if (!isError) toastTimer = setTimeout(function () { show(t, false); }, 8000);
  }

  function failed(err) {
    if (err instanceof ApiError && err.status === -2) return;
    if (err instanceof ApiError && err.status === 401) { signOut(false); showError(err); return; }
    var d = describe(err);
    toast(d.title + (d.detail ? ' ' + d.detail : ''), true);
  }

  function showError(err) {
    var d = describe(err);
    $('error-title').textContent = d.title;
    $('error-detail').textContent = d.detail;
    show($('error'), true);
  }

  /* ---- dialogs ------------------------------------------------------------------ */

  /* One opening of a modal dialog at a time: settle(returnValue) runs once
   * when it closes. The close event is queued, not sent, when the dialog
   * closes, so a fast user (Escape, then Enter on the same button) can open it
   * again before the last close's event arrives. That event is then not the
   * new opening's (the dialog is open again) and is ignored; openers call
   * settlePending first, which settles the last opening now, in order. */
  var settleLast = {};
  function settlePending(dlg) {
    if (settleLast[dlg.id]) settleLast[dlg.id]();
  }
  function onDialogClose(dlg, settle) {
    function onClose() {
      if (dlg.open) return;
      done();
    }
    function done() {
      dlg.removeEventListener('close', onClose);
      settleLast[dlg.id] = null;
      settle(dlg.returnValue);
    }
    settleLast[dlg.id] = done;
    dlg.addEventListener('close', onClose);
  }

  /* Ask before a destructive action. Resolves true on Confirm; Cancel and
   * Escape resolve false. Focus starts on Cancel and returns where it was. */
  function confirmAction(title, body, okLabel) {
    var dlg = $('confirm-dlg');
    settlePending(dlg);
    var back = document.activeElement;
    $('confirm-title').textContent = title;
    $('confirm-body').textContent = body;
    $('confirm-ok').textContent = okLabel || 'Confirm';
    dlg.returnValue = '';
    return new Promise(function (resolve) {
      onDialogClose(dlg, function (value) {
        document.body.removeAttribute('data-dialog');
        if (back && back.isConnected && typeof back.focus === 'function') back.focus();
        resolve(value === 'ok');
      });
      dlg.showModal();
      document.body.setAttribute('data-dialog', 'confirm');
      $('confirm-cancel').focus();
    });
  }

  /* A new key, shown once. Nothing keeps it: the field is emptied on close. */
  function showKeyOnce(key, note, back) {
    var dlg = $('key-dlg'), input = $('key-value');
    settlePending(dlg);
    back = back || document.activeElement;
    $('key-dlg-note').textContent = note;
    $('key-copied').textContent = '';
    input.value = key;
    key = null;
    return new Promise(function (resolve) {
      onDialogClose(dlg, function () {
        input.value = '';
        $('key-copied').textContent = '';
        document.body.removeAttribute('data-dialog');
        var target = back && back.isConnected ? back : null;
        if (target && typeof target.focus === 'function') target.focus();
        resolve();
      });
      dlg.showModal();
      document.body.setAttribute('data-dialog', 'key');
      $('key-copy').focus();
    });
  }

  function copyKey() {
    var input = $('key-value'), v = input.value, msg = $('key-copied');
    var fallback = function () {
      input.focus();
      input.select();
      var ok = false;
      try { ok = document.execCommand('copy'); } catch (e) { ok = false; }
      msg.textContent = ok ? 'Copied.' : 'Selected: press Ctrl+C (⌘C) to copy.';
      msg.setAttribute('data-copied', ok ? 'fallback' : 'selected');
    };
    if (navigator.clipboard && navigator.clipboard.writeText && window.isSecureContext) {
      navigator.clipboard.writeText(v).then(function () {
        msg.textContent = 'Copied to the clipboard.';
        msg.setAttribute('data-copied', 'clipboard');
      }, fallback);
    } else {
      fallback();
    }
  }

  /* ---- tables ------------------------------------------------------------------- */

  function cell(tr, text, label, cls, col) {
    var first = tr.children.length === 0;
    var td = h(first ? 'th' : 'td', cls || null, text);
    if (first) td.setAttribute('scope', 'row');
    td.setAttribute('data-label', label);
    if (col) td.setAttribute('data-col', col);
    tr.appendChild(td);
    return td;
  }

  function emptyRow(tb, span, text) {
    var tr = h('tr', 'empty-row');
    var td = h('td', 'muted', text);
    td.colSpan = span;
    tr.appendChild(td);
    tb.appendChild(tr);
  }

  /* keep keyboard focus across a re-render: the new element with the same data-focus */
  function focusKeyOf() {
    var a = document.activeElement;
    return a && a.getAttribute ? a.getAttribute('data-focus') : null;
  }
  function refocus(k) {
    if (!k) return;
    var e = document.querySelector('[data-focus="' + k.replace(/["\\]/g, '') + '"]');
    if (e && !e.disabled) e.focus();
  }

  /* ---- views ---------------------------------------------------------------------- */

  function setView(view, focus) {
    state.view = view;
    var tabView = view === 'user' ? 'users' : view;
    ['users', 'user', 'prompts', 'charts', 'audit'].forEach(function (v) { show($('view-' + v), v === view); });
    var tabs = document.querySelectorAll('.tab');
    for (var i = 0; i < tabs.length; i++) {
      var on = tabs[i].getAttribute('data-view') === tabView;
      if (on) tabs[i].setAttribute('aria-current', 'page'); else tabs[i].removeAttribute('aria-current');
    }
    var hash = view === 'user' ? '#user-' + state.userId : '#' + view;
    if (location.hash !== hash) history.replaceState(null, '', hash);
    document.body.setAttribute('data-view', view);
    var load = view === 'users' ? loadUsers() : view === 'user' ? loadUser(state.userId)
      : view === 'prompts' ? loadPrompts() : view === 'charts' ? loadCharts() : loadAudit();
    return load.then(function () {
      if (focus) {
        var t = $(view === 'user' ? 'user-title' : view === 'prompts' ? 'prompts-title'
          : view === 'charts' ? 'charts-title' : view + '-title');
        if (t) t.focus();
      }
    });
  }

  /* ---- users ---------------------------------------------------------------------- */

  function loadUsers() {
    var q = '/api/v1/admin/users?per_page=' + PER_PAGE + '&page=' + state.page +
      (state.q ? '&q=' + encodeURIComponent(state.q) : '');
    document.body.setAttribute('data-users', 'loading');
    return api('GET', q).then(renderUsers, failed);
  }

  function renderUsers(r) {
    var tb = $('users-table').tBodies[0];
    clear(tb);
    (r.users || []).forEach(function (u) {
      var tr = h('tr');
      tr.setAttribute('data-user', String(u.id));
      cell(tr, String(u.email), 'email', 'wrap-any', 'email');
      cell(tr, String(u.id), 'id', 'num', 'id');
      cell(tr, planLabel(u.plan), 'plan', null, 'plan');
      cell(tr, String(u.role), 'role', null, 'role');
      var st = cell(tr, '', 'status', null, 'status');
      st.appendChild(h('span', 'badge ' + (u.disabled ? 'badge-off' : 'badge-on'), u.disabled ? 'disabled' : 'active'));
      cell(tr, fmtInt(u.active_keys), 'keys', 'num', 'keys');
      cell(tr, fmtUtc(u.created_at), 'created', null, 'created');
      var act = cell(tr, '', 'actions', 'row-actions', 'actions');
      var b = btn('Open', 'btn-small', function () { openUser(u.id); }, 'open-' + u.id);
      b.setAttribute('aria-label', 'Open ' + u.email);
      act.appendChild(b);
      tb.appendChild(tr);
    });
    if (!tb.children.length) emptyRow(tb, 8, state.q ? 'No user\'s email contains that.' : 'No users yet.');
    var pages = Math.max(1, Math.ceil(num(r.total) / PER_PAGE));
    $('users-count').textContent = fmtInt(r.total) + (r.total === 1 ? ' user' : ' users') + (state.q ? ' found' : '');
    $('users-page').textContent = 'page ' + state.page + ' of ' + pages;
    $('users-prev').disabled = state.page <= 1;
    $('users-next').disabled = state.page >= pages;
    document.body.setAttribute('data-users', 'ready');
  }

  function createUser(ev) {
    ev.preventDefault();
    var email = $('new-email').value.trim();
    if (!email) { toast('Enter an e-mail address.', true); $('new-email').focus(); return; }
    var body = { email: email, plan: $('new-plan').value, admin: $('new-admin').checked };
    var back = document.activeElement;   /* focus returns here when the key dialog closes */
    var exp = utcFromInput($('new-expires').value);
    if (exp) body.key_expires_at = exp;
    $('create-submit').disabled = true;
    api('POST', '/api/v1/admin/users', body).then(function (u) {
      var key = u.key;
      delete u.key;
      $('new-email').value = '';
      $('new-expires').value = '';
      $('new-admin').checked = false;
      toast('Created user #' + u.id + ' (' + u.email + ').');
      state.q = u.email;
      $('search-q').value = u.email;
      state.page = 1;
      loadUsers();
      $('create-submit').disabled = false;     /* focus comes back to it when the dialog closes */
      return showKeyOnce(key, 'The first key of ' + u.email + ' (user #' + u.id + ').', back);
    }).catch(failed).then(function () { $('create-submit').disabled = false; });
  }

  function openUser(id) {
    state.userId = id;
    return setView('user', true);
  }

  /* ---- one user --------------------------------------------------------------------- */

  function loadUser(id) {
    document.body.setAttribute('data-user-state', 'loading');
    var fk = focusKeyOf();
    var to = new Date(), from = new Date(to.getTime() - 30 * 86400e3);
    return Promise.all([
      api('GET', '/api/v1/admin/users/' + encodeURIComponent(id)),
      api('GET', '/api/v1/quota/users/' + encodeURIComponent(id)),
      api('GET', '/api/v1/usage?user_id=' + encodeURIComponent(id) + '&from=' + from.toISOString().slice(0, 10) +
        '&to=' + to.toISOString().slice(0, 10)).catch(function (e) { return { error: e }; }),
      api('GET', '/api/v1/admin/audit?per_page=20&user_id=' + encodeURIComponent(id)).catch(function (e) { return { error: e }; }),
      api('GET', '/api/v1/admin/users/' + encodeURIComponent(id) + '/cache?limit=100').catch(function (e) { return { error: e }; })
    ]).then(function (r) {
      if (state.userId !== id) return;
      state.user = r[0];
      state.quota = r[1];
      renderUser(r[0], r[1]);
      renderUserUsage(r[2]);
      renderUserCache(r[4]);
      renderAuditRows($('ua-table').tBodies[0], r[3].entries || [], 'No audited change to this user yet.');
      document.body.setAttribute('data-user-state', 'ready');
      refocus(fk);
    }, function (err) {
      document.body.setAttribute('data-user-state', 'error');
      failed(err);
    });
  }

  function fact(dl, label, value, field) {
    var d = h('div', 'kv');
    d.appendChild(h('dt', null, label));
    var dd = h('dd', null, value);
    if (field) dd.setAttribute('data-field', field);
    d.appendChild(dd);
    dl.appendChild(d);
  }

  function renderUser(u, q) {
    $('u-email').textContent = String(u.email);
    var badges = $('u-badges');
    clear(badges);
    badges.appendChild(h('span', 'badge' + (u.role === 'admin' ? ' badge-admin' : ''), u.role));
    var st = h('span', 'badge ' + (u.disabled ? 'badge-off' : 'badge-on'), u.disabled ? 'disabled' : 'active');
    st.setAttribute('data-field', 'status');
    badges.appendChild(st);
    var dl = $('u-facts');
    clear(dl);
    fact(dl, 'id', String(u.id), 'id');
    fact(dl, 'plan', planLabel(u.plan) + (planLabel(u.plan) !== u.plan ? ' (' + u.plan + ')' : ''), 'plan');
    fact(dl, 'created', fmtUtc(u.created_at) + ' UTC', 'created');
    var live = (u.keys || []).filter(function (k) { return !k.revoked_at; }).length;
    fact(dl, 'keys', live + ' active of ' + (u.keys || []).length, 'keys');

    var sel = $('u-plan');
    fillPlans(sel, u.plan);
    var tg = $('u-toggle');
    tg.textContent = u.disabled ? 'Enable' : 'Disable';
    tg.className = 'btn ' + (u.disabled ? 'btn-primary' : 'btn-danger');
    tg.setAttribute('data-action', u.disabled ? 'enable' : 'disable');

    /* quota windows */
    var lvl = $('uq-level');
    lvl.textContent = 'overall: ' + (q.level || 'ok');
    lvl.className = 'level lvl-' + (q.level || 'ok');
    var tb = $('uq-table').tBodies[0];
    clear(tb);
    WINDOWS.forEach(function (w) {
      var x = q[w.id];
      if (!x) return;
      var tr = h('tr');
      tr.setAttribute('data-window', w.id);
      cell(tr, w.name, 'window', null, 'window');
      cell(tr, fmtInt(num(x.used) + num(x.reserved)), 'used', 'num', 'used');
      cell(tr, x.limit === null ? 'unlimited' : fmtInt(x.limit), 'limit', 'num', 'limit');
      cell(tr, x.limit === null ? '—' : fmtInt(x.percent) + '%', '%', 'num', 'percent');
      var lc = cell(tr, '', 'level', null, 'level');
      lc.appendChild(h('span', 'level lvl-' + (x.level || 'ok'), x.level || 'ok'));
      cell(tr, fmtUtc(x.resets_at), 'resets', null, 'resets');
      tb.appendChild(tr);
    });

    /* override */
    var o = q.override || u.override || null;
    var cur = $('ov-current');
    clear(cur);
    if (o) {
      var parts = [];
      if ('tokens_per_day' in o) parts.push(limitText(o.tokens_per_day) + ' per day');
      if ('tokens_per_month' in o) parts.push(limitText(o.tokens_per_month) + ' per month');
      if ('calls_per_hour' in o) parts.push(limitText(o.calls_per_hour) + ' calls per hour');
      cur.appendChild(h('span', 'ov-limits', 'in force: ' + parts.join(', ') +
        (o.expires_at ? ', until ' + fmtUtc(o.expires_at) + ' UTC' : ', no end')));
      if (o.reason) {
        cur.appendChild(document.createTextNode(' · reason: '));
        var rs = h('span', 'ov-reason wrap-any', String(o.reason));
        rs.setAttribute('data-field', 'reason');
        cur.appendChild(rs);
      }
    } else {
      cur.textContent = 'none: the plan\'s limits apply';
    }
    cur.setAttribute('data-override', o ? 'yes' : 'no');
    $('ov-clear').disabled = !o;

    /* keys */
    var kb = $('keys-table').tBodies[0];
    clear(kb);
    (u.keys || []).forEach(function (k) {
      var tr = h('tr');
      tr.setAttribute('data-prefix', String(k.prefix));
      var pc = cell(tr, '', 'prefix', null, 'prefix');
      pc.appendChild(h('code', null, String(k.prefix) + '…'));
      cell(tr, fmtUtc(k.created_at), 'created', null, 'created');
      cell(tr, k.expires_at ? fmtUtc(k.expires_at) : 'never', 'ends', null, 'expires');
      var expired = k.expires_at && Date.parse(k.expires_at) <= Date.now();
      cell(tr, k.revoked_at ? 'revoked ' + fmtUtc(k.revoked_at) : expired ? 'expired' : 'active', 'status', null, 'status');
      var act = cell(tr, '', 'actions', 'row-actions', 'actions');
      if (!k.revoked_at) {
        var b = btn('Revoke', 'btn-small btn-danger', function () { revokeKey(k.prefix); }, 'revoke-' + k.prefix);
        b.setAttribute('aria-label', 'Revoke key ' + k.prefix);
        act.appendChild(b);
      }
      kb.appendChild(tr);
    });
    if (!kb.children.length) emptyRow(kb, 5, 'No keys.');
  }

  function renderUserCache(list) {
    var tb = $('uc-table').tBodies[0];
    clear(tb);
    if (!Array.isArray(list)) { $('uc-summary').textContent = list && list.error ? describe(list.error).title : ''; return; }
    var bytes = 0;
    list.forEach(function (e) {
      var tr = h('tr');
      tr.setAttribute('data-key', String(e.key));
      cell(tr, String(e.key), 'key', 'mono', 'key');
      cell(tr, String(e.tier), 'tier', null, 'tier');
      cell(tr, e.task === null || e.task === undefined ? '-' : String(e.task), 'task', null, 'task');
      cell(tr, fmtInt(e.bytes), 'bytes', 'num', 'bytes');
      cell(tr, fmtInt(e.hits), 'hits', 'num', 'hits');
      cell(tr, fmtUtc(e.created_at), 'stored (UTC)', null, 'created');
      cell(tr, e.expires_at ? fmtUtc(e.expires_at) : 'never', 'expires (UTC)', null, 'expires');
      bytes += num(e.bytes);
      tb.appendChild(tr);
    });
    $('uc-summary').textContent = fmtInt(list.length) + (list.length === 1 ? ' live entry, ' : ' live entries, ') +
      fmtInt(bytes) + ' bytes' + (list.length >= 100 ? ' (the newest 100)' : '');
    if (!tb.children.length) emptyRow(tb, 7, 'No live cache entries.');
  }

  function renderUserUsage(r) {
    var tb = $('uu-table').tBodies[0];
    clear(tb);
    if (r.error) { $('uu-period').textContent = describe(r.error).title; return; }
    $('uu-period').textContent = fmtUtc(r.from) + ' → ' + fmtUtc(r.to) + ' UTC';
    var tasks = r.tasks || {};
    Object.keys(tasks).sort().forEach(function (t) {
      var x = tasks[t] || {};
      var tr = h('tr');
      tr.setAttribute('data-task', t);
      cell(tr, t, 'task', null, 'task');
      cell(tr, fmtInt(x.calls), 'calls', 'num', 'calls');
      cell(tr, fmtInt(x.cached), 'cached', 'num', 'cached');
      cell(tr, fmtInt(num(x.prompt_tokens) + num(x.completion_tokens)), 'tokens', 'num', 'tokens');
      cell(tr, fmtUsd(x.cost_usd), 'cost', 'num', 'cost');
      cell(tr, fmtUsd(x.saved_usd), 'saved', 'num', 'saved');
      cell(tr, fmtInt(x.failures), 'failures', 'num', 'failures');
      tb.appendChild(tr);
    });
    if (!tb.children.length) emptyRow(tb, 7, 'No calls in the last 30 days.');
  }

  function fillPlans(sel, current) {
    clear(sel);
    state.plans.forEach(function (p) {
      var o = h('option', null, (p.display_name || p.name) + (p.display_name && p.display_name !== p.name ? ' (' + p.name + ')' : ''));
      o.value = p.name;
      sel.appendChild(o);
    });
    if (current) sel.value = current;
  }

  /* after an action: say so, and show the user as the API now has it */
  function done(msg) {
    return function () { toast(msg); return loadUser(state.userId); };
  }

  function userLabel() { return state.user ? state.user.email + ' (#' + state.user.id + ')' : '#' + state.userId; }

  function setPlan(ev) {
    ev.preventDefault();
    var plan = $('u-plan').value, id = state.userId;
    api('PUT', '/api/v1/quota/users/' + id + '/plan', { plan: plan })
      .then(done('Plan of ' + userLabel() + ' is now ' + planLabel(plan) + '.'), failed);
  }

  function toggleUser() {
    var u = state.user, id = state.userId;
    if (!u) return;
    if (u.disabled) {
      api('POST', '/api/v1/admin/users/' + id + '/enable').then(done('Enabled ' + userLabel() + '.'), failed);
      return;
    }
    confirmAction('Disable this user?', 'Disable ' + userLabel() + '? Their keys stop working within seconds; ' +
      'you can enable the user again later.', 'Disable').then(function (ok) {
      if (!ok) return;
      api('POST', '/api/v1/admin/users/' + id + '/disable').then(done('Disabled ' + userLabel() + '.'), failed);
    });
  }

  function purgeCache() {
    var id = state.userId;
    confirmAction('Purge this user\'s cache?', 'Remove every cache entry of ' + userLabel() +
      '? Their next requests go to the upstream model again.', 'Purge cache').then(function (ok) {
      if (!ok) return;
      api('DELETE', '/api/v1/admin/users/' + id + '/cache').then(function (r) {
        return done('Removed ' + fmtInt(r && r.deleted) + (r && r.deleted === 1 ? ' cache entry' : ' cache entries') +
          ' of ' + userLabel() + '.')();
      }, failed);
    });
  }

  function revokeKey(prefix) {
    confirmAction('Revoke this key?', 'Revoke the key ' + prefix + '… of ' + userLabel() +
      '? Whoever uses it is refused from now on. This cannot be undone.', 'Revoke key').then(function (ok) {
      if (!ok) return;
      api('DELETE', '/api/v1/admin/keys/' + encodeURIComponent(prefix))
        .then(done('Revoked the key ' + prefix + '….'), failed)
        .then(function () {
          /* its button is gone: keyboard users land on the next key's
           * Revoke, else on "Issue a key", not on the page */
          var a = document.activeElement;
          if (a && a !== document.body && a.isConnected) return;
          var next = document.querySelector('#keys-table button') || $('key-issue');
          if (next && !next.disabled) next.focus();
        });
    });
  }

  function issueKey(ev) {
    ev.preventDefault();
    var id = state.userId, exp = utcFromInput($('key-expires').value), label = userLabel();
    var back = document.activeElement;
    $('key-issue').disabled = true;
    api('POST', '/api/v1/admin/users/' + id + '/keys', exp ? { expires_at: exp } : {}).then(function (r) {
      var key = r.key;
      r.key = null;
      $('key-expires').value = '';
      loadUser(id);
      toast('Issued the key ' + r.prefix + '… for ' + label + '.');
      $('key-issue').disabled = false;
      return showKeyOnce(key, 'A new key for ' + label + (r.expires_at ? ', ending ' + fmtUtc(r.expires_at) + ' UTC' : '') + '.', back);
    }).catch(failed).then(function () { $('key-issue').disabled = false; });
  }

  /* "" -> absent, "unlimited" -> null, else a whole number >= 0 */
  function limitField(id, name, body) {
    var v = $(id).value.trim();
    if (v === '') return true;
    if (/^(unlimited|none|null)$/i.test(v)) { body[name] = null; return true; }
    if (!/^\d{1,13}$/.test(v.replace(/[,_ ]/g, ''))) {
      toast('"' + v + '" is not a whole number (or "unlimited") for ' + name.replace(/_/g, ' ') + '.', true);
      $(id).focus();
      return false;
    }
    body[name] = Number(v.replace(/[,_ ]/g, ''));
    return true;
  }

  function setOverride(ev) {
    ev.preventDefault();
    var body = {}, id = state.userId;
    if (!limitField('ov-day', 'tokens_per_day', body) || !limitField('ov-month', 'tokens_per_month', body) ||
        !limitField('ov-hour', 'calls_per_hour', body)) return;
    var exp = utcFromInput($('ov-expires').value);
    if (exp) body.expires_at = exp;
    var reason = $('ov-reason').value;
    if (reason) body.reason = reason;
    api('PUT', '/api/v1/quota/users/' + id + '/override', body).then(function () {
      ['ov-day', 'ov-month', 'ov-hour', 'ov-expires', 'ov-reason'].forEach(function (f) { $(f).value = ''; });
      return done('Override set for ' + userLabel() + '.')();
    }, failed);
  }

  function clearOverride() {
    var id = state.userId;
    confirmAction('Clear the override?', 'Remove the override of ' + userLabel() +
      '? The limits of the plan apply again at once.', 'Clear override').then(function (ok) {
      if (!ok) return;
      api('DELETE', '/api/v1/quota/users/' + id + '/override').then(done('Cleared the override of ' + userLabel() + '.'), failed);
    });
  }

  /* ---- system prompts ----------------------------------------------------------------- */

  function loadPrompts() {
    document.body.setAttribute('data-prompts', 'loading');
    return api('GET', '/api/v1/admin/system-prompts').then(function (list) {
      state.prompts = Array.isArray(list) ? list : [];
      var tb = $('prompts-table').tBodies[0];
      var fk = focusKeyOf();
      clear(tb);
      state.prompts.forEach(function (p) {
        var tr = h('tr');
        tr.setAttribute('data-key', String(p.key));
        var kc = cell(tr, '', 'key', 'wrap-any', 'key');
        kc.appendChild(h('code', null, String(p.key)));
        cell(tr, fmtInt(p.bytes), 'bytes', 'num', 'bytes');
        cell(tr, fmtUtc(p.created_at), 'stored', null, 'created');
        var first = String(p.value || '').split('\n')[0];
        cell(tr, first.length > 80 ? first.slice(0, 80) + '…' : first, 'starts with', 'wrap-any prompt-start', 'start');
        var act = cell(tr, '', 'actions', 'row-actions', 'actions');
        var e = btn('Edit', 'btn-small', function () { editPrompt(p, false); }, 'edit-' + p.key);
        e.setAttribute('aria-label', 'Edit ' + p.key);
        var d = btn('Delete', 'btn-small btn-danger', function () { deletePrompt(p.key); }, 'delete-' + p.key);
        d.setAttribute('aria-label', 'Delete ' + p.key);
        act.appendChild(e);
        act.appendChild(d);
        tb.appendChild(tr);
      });
      if (!tb.children.length) emptyRow(tb, 5, 'The system tier is empty.');
      document.body.setAttribute('data-prompts', 'ready');
      refocus(fk);
    }, failed);
  }

  function editPrompt(p, isNew) {
    state.edit = { key: p ? p.key : '', old: p ? String(p.value) : '', isNew: isNew };
    $('ed-key').value = state.edit.key;
    $('ed-key').readOnly = !isNew;
    $('ed-value').value = state.edit.old;
    $('editor-title').textContent = isNew ? 'New system prompt' : 'Edit ' + p.key;
    $('editor-bytes').textContent = isNew ? '' : fmtInt(p.bytes) + ' bytes now';
    show($('editor'), true);
    show($('editor-form'), true);
    show($('diff-box'), false);
    (isNew ? $('ed-key') : $('ed-value')).focus();
  }

  /* A line diff (longest common subsequence): [{op: ' ' | '-' | '+', text}] */
  function lineDiff(a, b) {
    var x = a === '' ? [] : a.split('\n'), y = b === '' ? [] : b.split('\n');
    var n = x.length, m = y.length, i, j;
    /* common head and tail first: the table is only for the middle */
    var pre = 0;
    while (pre < n && pre < m && x[pre] === y[pre]) pre++;
    var suf = 0;
    while (suf < n - pre && suf < m - pre && x[n - 1 - suf] === y[m - 1 - suf]) suf++;
    var xs = x.slice(pre, n - suf), ys = y.slice(pre, m - suf), N = xs.length, M = ys.length;
    var out = [];
    for (i = 0; i < pre; i++) out.push({ op: ' ', text: x[i] });
    if (N * M > 4e6) {               /* too big for the table: all out, all in */
      xs.forEach(function (t) { out.push({ op: '-', text: t }); });
      ys.forEach(function (t) { out.push({ op: '+', text: t }); });
    } else {
      var L = [];
      for (i = 0; i <= N; i++) L.push(new Uint32Array(M + 1));
      for (i = N - 1; i >= 0; i--) {
        for (j = M - 1; j >= 0; j--) {
          L[i][j] = xs[i] === ys[j] ? L[i + 1][j + 1] + 1 : Math.max(L[i + 1][j], L[i][j + 1]);
        }
      }
      i = 0; j = 0;
      while (i < N && j < M) {
        if (xs[i] === ys[j]) { out.push({ op: ' ', text: xs[i] }); i++; j++; }
        else if (L[i + 1][j] >= L[i][j + 1]) { out.push({ op: '-', text: xs[i] }); i++; }
        else { out.push({ op: '+', text: ys[j] }); j++; }
      }
      for (; i < N; i++) out.push({ op: '-', text: xs[i] });
      for (; j < M; j++) out.push({ op: '+', text: ys[j] });
    }
    for (i = n - suf; i < n; i++) out.push({ op: ' ', text: x[i] });
    return out;
  }

  function reviewPrompt(ev) {
    ev.preventDefault();
    var key = $('ed-key').value.trim(), val = $('ed-value').value;
    if (!key) { toast('Give the prompt a key.', true); $('ed-key').focus(); return; }
    if (state.edit.isNew && state.prompts.some(function (p) { return p.key === key; })) {
      var existing = state.prompts.filter(function (p) { return p.key === key; })[0];
      state.edit.old = String(existing.value);    /* compare with what is stored under that key */
    }
    state.edit.key = key;
    state.edit.value = val;
    var d = lineDiff(state.edit.old, val), pre = $('diff');
    clear(pre);
    var added = 0, removed = 0;
    d.forEach(function (l) {
      var line = h('span', 'dl ' + (l.op === '+' ? 'dl-add' : l.op === '-' ? 'dl-del' : 'dl-same'), l.op + ' ' + l.text);
      line.setAttribute('data-op', l.op);
      pre.appendChild(line);
      pre.appendChild(document.createTextNode('\n'));
      if (l.op === '+') added++;
      if (l.op === '-') removed++;
    });
    $('diff-summary').textContent = added === 0 && removed === 0 ? 'No change to ' + key + '.'
      : key + ': ' + added + (added === 1 ? ' line' : ' lines') + ' added, ' + removed +
        (removed === 1 ? ' line' : ' lines') + ' removed.';
    $('ed-save').disabled = added === 0 && removed === 0 && !state.edit.isNew;
    show($('editor-form'), false);
    show($('diff-box'), true);
    $('diff-title').focus();
  }

  function savePrompt() {
    var e = state.edit;
    if (!e) return;
    $('ed-save').disabled = true;
    api('PUT', '/api/v1/admin/system-prompts/' + encodeURIComponent(e.key), { value: e.value }).then(function (r) {
      toast('Saved ' + e.key + ' (' + fmtInt(r && r.bytes) + ' bytes).');
      state.edit = null;
      show($('editor'), false);
      return loadPrompts().then(function () { $('prompts-title').focus(); });
    }, failed).then(function () { $('ed-save').disabled = false; });
  }

  function deletePrompt(key) {
    confirmAction('Delete this system prompt?', 'Delete the system prompt ' + key +
      '? Requests that use it will miss the system tier until it is stored again.', 'Delete').then(function (ok) {
      if (!ok) return;
      api('DELETE', '/api/v1/admin/system-prompts/' + encodeURIComponent(key)).then(function () {
        toast('Deleted ' + key + '.');
        if (state.edit && state.edit.key === key) { state.edit = null; show($('editor'), false); }
        return loadPrompts().then(function () { $('prompts-title').focus(); });
      }, failed);
    });
  }

  /* ---- charts: spend and refusals per day; nearest; overrides ending ------------------- */

  function niceScale(v) {
    if (!(v > 0)) return { max: 1, step: 0.25 };
    var raw = v / 4, p = Math.pow(10, Math.floor(Math.log10(raw))), m = raw / p;
    var step = (m <= 1 ? 1 : m <= 2 ? 2 : m <= 2.5 ? 2.5 : m <= 5 ? 5 : 10) * p;
    return { max: Math.ceil(v / step - 1e-9) * step, step: step };
  }

  function dayList(from, to) {
    var out = [], t = Date.parse(from + 'T00:00:00Z'), end = Date.parse(to + 'T00:00:00Z');
    if (!isFinite(t) || !isFinite(end)) return out;
    for (; t <= end && out.length < 400; t += 86400e3) out.push(new Date(t).toISOString().slice(0, 10));
    return out;
  }

  function loadCharts() {
    document.body.setAttribute('data-charts', 'loading');
    var days = $('expiring-days').value || '14';
    return Promise.all([
      api('GET', '/api/v1/admin/spend?days=90').catch(function (e) { return { error: e }; }),
      api('GET', '/api/v1/admin/nearest?limit=20').catch(function (e) { return { error: e }; }),
      api('GET', '/api/v1/admin/overrides?within_days=' + encodeURIComponent(days)).catch(function (e) { return { error: e }; })
    ]).then(function (r) {
      if (r[0].error) { failed(r[0].error); state.spend = null; } else state.spend = r[0];
      drawSpend();
      renderNearest(r[1]);
      renderExpiring(r[2]);
      document.body.setAttribute('data-charts', 'ready');
    });
  }

  function drawSpend() {
    var sp = state.spend, box = $('spend-chart'), rbox = $('refusals-chart');
    clear(box); clear(rbox);
    if (!sp) { $('spend-summary').textContent = 'Spend is not available.'; return; }
    var rows = Array.isArray(sp.days) ? sp.days : [];
    var days = dayList(sp.from, sp.to);
    var plans = [], byDay = {}, tot = {}, all = { billed: 0, saved: 0, calls: 0, refusals: 0 };
    rows.forEach(function (x) {
      if (plans.indexOf(x.plan) < 0) plans.push(x.plan);
      (byDay[x.day] = byDay[x.day] || {})[x.plan] = x;
      var t = tot[x.plan] = tot[x.plan] || { billed: 0, saved: 0, calls: 0, refusals: 0, days: 0 };
      t.billed += num(x.billed_usd); t.saved += num(x.saved_usd); t.calls += num(x.calls);
      t.refusals += num(x.refusals); t.days++;
      all.billed += num(x.billed_usd); all.saved += num(x.saved_usd); all.calls += num(x.calls); all.refusals += num(x.refusals);
    });
    plans.sort();
    $('spend-period').textContent = sp.from + ' → ' + sp.to + ' (UTC days)';
    var sum = $('spend-summary');
    clear(sum);
    var part = function (text, field) { var s = h('strong', null, text); s.setAttribute('data-field', field); return s; };
    sum.appendChild(document.createTextNode('Last ' + days.length + ' days: '));
    sum.appendChild(part(fmtUsd(all.billed), 'billed'));
    sum.appendChild(document.createTextNode(' billed, '));
    sum.appendChild(part(fmtUsd(all.saved), 'saved'));
    sum.appendChild(document.createTextNode(' saved by the cache, '));
    sum.appendChild(part(fmtInt(all.calls), 'calls'));
    sum.appendChild(document.createTextNode(' calls, '));
    sum.appendChild(part(fmtInt(all.refusals), 'refusals'));
    sum.appendChild(document.createTextNode(' quota refusals.'));

    /* legend: one colour per plan; billed solid, saved light */
    var lg = $('spend-legend');
    clear(lg);
    plans.forEach(function (p, i) {
      var li = h('li');
      li.appendChild(h('span', 'swatch pc' + (i % 8)));
      li.appendChild(document.createTextNode(planLabel(p)));
      lg.appendChild(li);
    });
    var l1 = h('li'); l1.appendChild(h('span', 'swatch sw-billed')); l1.appendChild(document.createTextNode('left bar: billed'));
    var l2 = h('li'); l2.appendChild(h('span', 'swatch sw-saved')); l2.appendChild(document.createTextNode('right bar: saved'));
    lg.appendChild(l1); lg.appendChild(l2);

    /* the spend chart: per day, billed and saved side by side, each stacked by plan */
    var width = Math.max(280, Math.floor(box.clientWidth || 600)), narrow = width < 520;
    var height = narrow ? 200 : 260;
    var maxV = 0;
    days.forEach(function (d) {
      var b = 0, s = 0, m = byDay[d] || {};
      plans.forEach(function (p) { if (m[p]) { b += num(m[p].billed_usd); s += num(m[p].saved_usd); } });
      maxV = Math.max(maxV, b, s);
    });
    var sc = niceScale(maxV), ticks = [], longest = 0;
    for (var tv = 0; tv <= sc.max + sc.step * 1e-6; tv += sc.step) {
      var lab = fmtUsd(Math.round(tv / sc.step) * sc.step);
      ticks.push({ v: tv, label: lab });
      longest = Math.max(longest, lab.length);
    }
    /* the y labels decide the left margin: dollars of LLM calls can be tiny */
    var pad = { top: 12, right: 8, bottom: 26, left: Math.max(narrow ? 36 : 44, 10 + longest * 6.4) };
    var plotW = width - pad.left - pad.right, plotH = height - pad.top - pad.bottom;
    var n = Math.max(1, days.length), slot = plotW / n;
    var barW = Math.max(0.8, Math.min(10, slot * 0.4));
    var y = function (v) { return pad.top + plotH - (v / sc.max) * plotH; };
    var s1 = svg('svg', { viewBox: '0 0 ' + width + ' ' + height, width: width, height: height, role: 'img',
      class: 'chart-svg', 'aria-labelledby': 'spend-svg-title', id: 'spend-svg' });
    svg('title', { id: 'spend-svg-title' }, s1).textContent = 'Billed and saved dollars per day and plan, ' +
      sp.from + ' to ' + sp.to + ': ' + fmtUsd(all.billed) + ' billed, ' + fmtUsd(all.saved) + ' saved';
    var grid = svg('g', { class: 'grid' }, s1);
    ticks.forEach(function (t) {
      var yy = Math.round(y(t.v)) + 0.5;
      svg('line', { x1: pad.left, x2: width - pad.right, y1: yy, y2: yy, class: t.v === 0 ? 'axis' : 'gridline' }, grid);
      svg('text', { x: pad.left - 6, y: yy + 4, 'text-anchor': 'end', class: 'tick' }, grid).textContent = t.label;
    });
    var bars = svg('g', { class: 'bars' }, s1);
    var every = narrow ? 30 : 15;
    days.forEach(function (d, i) {
      var m = byDay[d] || {}, x0 = pad.left + i * slot + slot / 2;
      var g = svg('g', { class: 'day', 'data-day': d }, bars);
      var b = 0, s = 0, desc = [];
      plans.forEach(function (p, pi) {
        var r = m[p];
        if (!r) return;
        var bv = num(r.billed_usd), sv = num(r.saved_usd);
        if (bv > 0) svg('rect', { x: x0 - barW, y: y(b + bv), width: barW, height: Math.max(0.5, y(b) - y(b + bv)),
          class: 'pc' + (pi % 8) + ' billed', 'data-plan': p, 'data-usd': bv }, g);
        if (sv > 0) svg('rect', { x: x0, y: y(s + sv), width: barW, height: Math.max(0.5, y(s) - y(s + sv)),
          class: 'pc' + (pi % 8) + ' saved', 'data-plan': p, 'data-usd': sv }, g);
        b += bv; s += sv;
        desc.push(planLabel(p) + ': ' + fmtUsd(bv) + ' billed, ' + fmtUsd(sv) + ' saved');
      });
      g.setAttribute('data-billed', String(b));
      g.setAttribute('data-saved', String(s));
      svg('title', {}, g).textContent = d + (desc.length ? ' — ' + desc.join('; ') : ' — no activity');
      if (i % every === 0 || i === days.length - 1) {
        svg('text', { x: x0, y: height - 8, 'text-anchor': i === days.length - 1 ? 'end' : 'middle', class: 'tick' }, s1)
          .textContent = d.slice(5);
      }
    });
    if (!rows.length) {
      svg('text', { x: pad.left + plotW / 2, y: pad.top + plotH / 2, 'text-anchor': 'middle', class: 'empty-note' }, s1)
        .textContent = 'No spend in these ' + days.length + ' days';
    }
    box.appendChild(s1);

    /* refusals per day (all plans) */
    var rh = narrow ? 120 : 140, rplotH = rh - pad.top - pad.bottom, rmax = 0, perDay = {};
    days.forEach(function (d) {
      var c = 0, m = byDay[d] || {};
      plans.forEach(function (p) { if (m[p]) c += num(m[p].refusals); });
      perDay[d] = c;
      rmax = Math.max(rmax, c);
    });
    var rs = niceScale(rmax);
    if (rs.step < 1) rs = { max: Math.max(1, Math.ceil(rs.max)), step: 1 };
    var ry = function (v) { return pad.top + rplotH - (v / rs.max) * rplotH; };
    var s2 = svg('svg', { viewBox: '0 0 ' + width + ' ' + rh, width: width, height: rh, role: 'img',
      class: 'chart-svg', 'aria-labelledby': 'refusals-svg-title', id: 'refusals-svg' });
    svg('title', { id: 'refusals-svg-title' }, s2).textContent = 'Quota refusals per day, ' + sp.from + ' to ' + sp.to +
      ': ' + all.refusals + ' in all';
    var g2 = svg('g', { class: 'grid' }, s2);
    [0, rs.max].forEach(function (v) {
      var yy = Math.round(ry(v)) + 0.5;
      svg('line', { x1: pad.left, x2: width - pad.right, y1: yy, y2: yy, class: v === 0 ? 'axis' : 'gridline' }, g2);
      svg('text', { x: pad.left - 6, y: yy + 4, 'text-anchor': 'end', class: 'tick' }, g2).textContent = String(v);
    });
    var rb = Math.max(1, Math.min(12, slot * 0.7));
    days.forEach(function (d, i) {
      var c = perDay[d], x0 = pad.left + i * slot + (slot - rb) / 2;
      var g = svg('g', { class: 'day', 'data-day': d, 'data-refusals': c }, s2);
      svg('title', {}, g).textContent = d + ': ' + c + (c === 1 ? ' refusal' : ' refusals');
      if (c > 0) svg('rect', { x: x0, y: ry(c), width: rb, height: ry(0) - ry(c), class: 'refusal' }, g);
      if (i % every === 0 || i === days.length - 1) {
        svg('text', { x: x0 + rb / 2, y: rh - 8, 'text-anchor': i === days.length - 1 ? 'end' : 'middle', class: 'tick' }, s2)
          .textContent = d.slice(5);
      }
    });
    rbox.appendChild(s2);
    var busiest = days.reduce(function (a, d) { return perDay[d] > (perDay[a] || 0) ? d : a; }, '');
    $('refusals-summary').textContent = all.refusals + (all.refusals === 1 ? ' refusal' : ' refusals') +
      (busiest ? '; most on ' + busiest + ' (' + perDay[busiest] + ')' : '');

    /* the same numbers as tables */
    var tb = $('spend-table').tBodies[0], tf = $('spend-table').tFoot;
    clear(tb); clear(tf);
    plans.forEach(function (p) {
      var t = tot[p], tr = h('tr');
      tr.setAttribute('data-plan', p);
      cell(tr, planLabel(p), 'plan', null, 'plan');
      cell(tr, fmtUsd(t.billed), 'billed', 'num', 'billed');
      cell(tr, fmtUsd(t.saved), 'saved', 'num', 'saved');
      cell(tr, fmtInt(t.calls), 'calls', 'num', 'calls');
      cell(tr, fmtInt(t.refusals), 'refusals', 'num', 'refusals');
      cell(tr, fmtInt(t.days), 'days active', 'num', 'days');
      tb.appendChild(tr);
    });
    if (!plans.length) emptyRow(tb, 6, 'No spend in this period.');
    else {
      var tr = h('tr', 'total-row');
      cell(tr, 'total', 'plan', null, 'plan');
      cell(tr, fmtUsd(all.billed), 'billed', 'num', 'billed');
      cell(tr, fmtUsd(all.saved), 'saved', 'num', 'saved');
      cell(tr, fmtInt(all.calls), 'calls', 'num', 'calls');
      cell(tr, fmtInt(all.refusals), 'refusals', 'num', 'refusals');
      cell(tr, '', 'days active', 'num', 'days');
      tf.appendChild(tr);
    }
    var db = $('spend-days').tBodies[0];
    clear(db);
    rows.slice().sort(function (a, b) { return a.day < b.day ? 1 : a.day > b.day ? -1 : a.plan < b.plan ? -1 : 1; })
      .forEach(function (x) {
        var tr = h('tr');
        cell(tr, x.day, 'day', null, 'day');
        cell(tr, planLabel(x.plan), 'plan', null, 'plan');
        cell(tr, fmtUsd(x.billed_usd), 'billed', 'num', 'billed');
        cell(tr, fmtUsd(x.saved_usd), 'saved', 'num', 'saved');
        cell(tr, fmtInt(x.calls), 'calls', 'num', 'calls');
        cell(tr, fmtInt(x.refusals), 'refusals', 'num', 'refusals');
        db.appendChild(tr);
      });
  }

  function userLink(td, id, email) {
    var b = btn(String(email), 'btn-link wrap-any', function () { openUser(id); }, 'user-' + id);
    b.setAttribute('data-user', String(id));
    td.appendChild(b);
  }

  function renderNearest(list) {
    var tb = $('nearest-table').tBodies[0];
    clear(tb);
    if (list && list.error) { emptyRow(tb, 6, describe(list.error).title); return; }
    (Array.isArray(list) ? list : []).forEach(function (x) {
      var tr = h('tr');
      tr.setAttribute('data-user', String(x.user_id));
      userLink(cell(tr, '', 'user', null, 'email'), x.user_id, x.email);
      cell(tr, planLabel(x.plan), 'plan', null, 'plan');
      cell(tr, fmtInt(x.used), 'used', 'num', 'used');
      cell(tr, x.limit === null || x.limit === undefined ? 'unlimited' : fmtInt(x.limit), 'limit', 'num', 'limit');
      var pc = cell(tr, '', '%', 'num ratio', 'percent');
      var mini = h('span', 'mini'), fill = h('span', 'mini-fill' + (num(x.percent) >= 100 ? ' over' : num(x.percent) >= 90 ? ' high' : ''));
      fill.style.width = Math.max(0, Math.min(100, num(x.percent))) + '%';
      mini.appendChild(fill);
      pc.appendChild(mini);
      pc.appendChild(h('span', null, fmtInt(x.percent) + '%'));
      cell(tr, x.override_expires_at ? fmtUtc(x.override_expires_at) : (x.override ? 'no end' : '—'), 'override ends', null, 'override');
      tb.appendChild(tr);
    });
    if (!tb.children.length) emptyRow(tb, 6, 'No user has used any of a daily limit today.');
  }

  function renderExpiring(list) {
    var tb = $('expiring-table').tBodies[0];
    clear(tb);
    if (list && list.error) { emptyRow(tb, 5, describe(list.error).title); return; }
    (Array.isArray(list) ? list : []).forEach(function (o) {
      var tr = h('tr');
      tr.setAttribute('data-user', String(o.user_id));
      userLink(cell(tr, '', 'user', null, 'email'), o.user_id, o.email);
      cell(tr, planLabel(o.plan), 'plan', null, 'plan');
      cell(tr, fmtUtc(o.expires_at), 'ends', null, 'expires');
      cell(tr, limitText(o.tokens_per_day), 'per day', 'num', 'day');
      cell(tr, String(o.reason || ''), 'reason', 'wrap-any', 'reason');
      tb.appendChild(tr);
    });
    if (!tb.children.length) emptyRow(tb, 5, 'No override ends in this period.');
  }

  /* ---- audit ------------------------------------------------------------------------ */

  function auditPath() {
    var q = ['per_page=' + PER_PAGE, 'page=' + state.audit.page];
    var add = function (name, v) { if (v) q.push(name + '=' + encodeURIComponent(v)); };
    add('action', $('au-action').value);
    add('actor', $('au-actor').value.trim());
    add('user_id', $('au-user').value.trim());
    if ($('au-since').value) add('since', $('au-since').value + 'T00:00:00Z');
    if ($('au-until').value) add('until', $('au-until').value + 'T23:59:59Z');
    return '/api/v1/admin/audit?' + q.join('&');
  }

  function loadAudit() {
    document.body.setAttribute('data-audit', 'loading');
    return api('GET', auditPath()).then(function (r) {
      renderAuditRows($('audit-table').tBodies[0], r.entries || [], 'No entries match.');
      var pages = Math.max(1, Math.ceil(num(r.total) / PER_PAGE));
      $('audit-count').textContent = fmtInt(r.total) + (r.total === 1 ? ' entry' : ' entries');
      $('audit-page').textContent = 'page ' + state.audit.page + ' of ' + pages;
      $('audit-prev').disabled = state.audit.page <= 1;
      $('audit-next').disabled = state.audit.page >= pages;
      document.body.setAttribute('data-audit', 'ready');
    }, failed);
  }

  function compact(o) {
    if (o === null || o === undefined) return '—';
    try { return JSON.stringify(o); } catch (e) { return String(o); }
  }

  function renderAuditRows(tb, entries, emptyText) {
    clear(tb);
    entries.forEach(function (e) {
      var tr = h('tr');
      tr.setAttribute('data-audit-id', String(e.id));
      tr.setAttribute('data-action', String(e.action));
      cell(tr, fmtUtc(e.at), 'when', null, 'at');
      var ac = cell(tr, '', 'action', null, 'action');
      ac.appendChild(h('code', null, String(e.action)));
      cell(tr, String(e.actor) + (e.source === 'cli' ? ' (cli)' : ''), 'actor', 'wrap-any', 'actor');
      var tc = cell(tr, '', 'target', 'wrap-any', 'target');
      if (e.target_user) tc.appendChild(h('span', 'muted', '#' + e.target_user + ' '));
      tc.appendChild(document.createTextNode(String(e.target || '')));
      var ch = cell(tr, '', 'before → after', 'change', 'change');
      ch.appendChild(h('code', 'before wrap-any', compact(e.before)));
      ch.appendChild(document.createTextNode(' → '));
      ch.appendChild(h('code', 'after wrap-any', compact(e.after)));
      tb.appendChild(tr);
    });
    if (!tb.children.length) emptyRow(tb, 5, emptyText);
  }

  /* ---- session ------------------------------------------------------------------------ */

  function viewFromHash() {
    var m = /^#user-(\d+)$/.exec(location.hash);
    if (m) { state.userId = Number(m[1]); return 'user'; }
    var v = location.hash.replace(/^#/, '');
    return ['users', 'prompts', 'charts', 'audit'].indexOf(v) >= 0 ? v : 'users';
  }

  function start(key) {
    state.key = key;
    state.generation++;
    document.body.setAttribute('data-state', 'loading');
    return Promise.all([
      api('GET', '/api/v1/me'),
      fetch('/api/v1/quota/plans', { headers: { Accept: 'application/json' }, credentials: 'omit', cache: 'no-store' })
        .then(function (r) { return r.ok ? r.json() : null; }).catch(function () { return null; })
    ]).then(function (r) {
      var me = r[0];
      if (!me || me.role !== 'admin') {
        var err = new ApiError(403, { detail: 'the key of ' + (me && me.email) + ' is not an admin key; the console needs one' },
          '/api/v1/me');
        throw err;
      }
      state.me = me;
      state.plans = r[1] && Array.isArray(r[1].plans) ? r[1].plans : [];
      fillPlans($('new-plan'), state.plans.some(function (p) { return p.name === 'payg'; }) ? 'payg' : null);
      $('who').textContent = String(me.email);
      show($('error'), false);
      show($('login'), false);
      show($('console'), true);
      show($('session'), true);
      document.body.setAttribute('data-state', 'ready');
      return setView(viewFromHash(), false);
    }).catch(function (err) {
      if (err instanceof ApiError && err.status === -2) return;
      var unauthorized = err instanceof ApiError && (err.status === 401 || err.status === 403);
      signOut(false);
      showError(err);
      document.body.setAttribute('data-state', unauthorized ? 'unauthorized' : 'error');
    });
  }

  function signOut(clearError) {
    try { sessionStorage.removeItem(KEY_STORE); } catch (e) { /* storage off */ }
    state.key = null;
    state.me = null;
    state.user = null;
    state.edit = null;
    state.generation++;
    show($('console'), false);
    show($('session'), false);
    show($('login'), true);
    show($('toast'), false);
    if (clearError) show($('error'), false);
    document.body.setAttribute('data-state', 'signed-out');
    $('key-input').value = '';
    $('key-input').focus();
  }

  function init() {
    $('key-form').addEventListener('submit', function (ev) {
      ev.preventDefault();
      var key = $('key-input').value.trim();
      if (!key) {
        $('error-title').textContent = 'Enter an admin API key.';
        $('error-detail').textContent = 'Keys start with qck_; create an admin with quotacachectl user add --admin.';
        show($('error'), true);
        return;
      }
      try { sessionStorage.setItem(KEY_STORE, key); } catch (e) { /* kept in memory only */ }
      $('key-input').value = '';
      start(key);
    });
    $('signout').addEventListener('click', function () { signOut(true); });
    $('refresh').addEventListener('click', function () { setView(state.view, false); });
    var tabs = document.querySelectorAll('.tab');
    for (var i = 0; i < tabs.length; i++) {
      tabs[i].addEventListener('click', function (ev) {
        setView(ev.currentTarget.getAttribute('data-view'), true);
      });
    }
    $('search-form').addEventListener('submit', function (ev) {
      ev.preventDefault();
      state.q = $('search-q').value.trim();
      state.page = 1;
      loadUsers();
    });
    $('users-prev').addEventListener('click', function () { if (state.page > 1) { state.page--; loadUsers(); } });
    $('users-next').addEventListener('click', function () { state.page++; loadUsers(); });
    $('create-form').addEventListener('submit', createUser);
    $('back-users').addEventListener('click', function () { setView('users', true); });
    $('plan-form').addEventListener('submit', setPlan);
    $('u-toggle').addEventListener('click', toggleUser);
    $('u-purge').addEventListener('click', purgeCache);
    $('ov-form').addEventListener('submit', setOverride);
    $('ov-clear').addEventListener('click', clearOverride);
    $('key-issue-form').addEventListener('submit', issueKey);
    $('key-copy').addEventListener('click', copyKey);
    $('prompt-new').addEventListener('click', function () { editPrompt(null, true); });
    $('editor-form').addEventListener('submit', reviewPrompt);
    $('ed-cancel').addEventListener('click', function () { state.edit = null; show($('editor'), false); $('prompt-new').focus(); });
    $('ed-back').addEventListener('click', function () { show($('diff-box'), false); show($('editor-form'), true); $('ed-value').focus(); });
    $('ed-save').addEventListener('click', savePrompt);
    $('audit-form').addEventListener('submit', function (ev) { ev.preventDefault(); state.audit.page = 1; loadAudit(); });
    $('audit-prev').addEventListener('click', function () { if (state.audit.page > 1) { state.audit.page--; loadAudit(); } });
    $('audit-next').addEventListener('click', function () { state.audit.page++; loadAudit(); });
    $('expiring-days').addEventListener('change', function () {
      api('GET', '/api/v1/admin/overrides?within_days=' + encodeURIComponent($('expiring-days').value))
        .then(renderExpiring, failed);
    });
    $('toast-close').addEventListener('click', function () { show($('toast'), false); });
    var rt = null;
    window.addEventListener('resize', function () {
      clearTimeout(rt);
      rt = setTimeout(function () { if (state.view === 'charts' && state.spend) drawSpend(); }, 150);
    });

    var stored = null;
    try { stored = sessionStorage.getItem(KEY_STORE); } catch (e) { stored = null; }
    if (stored) start(stored);
    else document.body.setAttribute('data-state', 'signed-out');
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
  else init();
})();
