/* format.js - number, money and time formats shared by the dashboard
 * (dashboard.js) and the admin console (admin.js): window.qcFormat. */
(function () {
  'use strict';

  function num(v) { return typeof v === 'number' && isFinite(v) ? v : 0; }

  function fmtInt(v) { return Math.round(num(v)).toLocaleString('en-US'); }

  /* Dollars: cents for amounts of a dollar or more, else up to six decimals
   * (LLM calls cost fractions of a cent). */
  function fmtUsd(v) {
    v = num(v);
    if (v === 0) return '$0.00';
    var a = Math.abs(v), s;
    if (a >= 1) {
      s = a.toLocaleString('en-US', { minimumFractionDigits: 2, maximumFractionDigits: 2 });
    } else {
      s = a.toFixed(6).replace(/0+$/, '');
      if (/\.\d$/.test(s)) s += '0';
      if (s === '0.') s = '0.00';
    }
    return (v < 0 ? '-$' : '$') + s;
  }

  /* "2026-11-25T02:04:36Z" -> "2026-11-25 02:04" */
  function fmtUtc(iso) {
    return typeof iso === 'string' ? iso.replace('T', ' ').replace(/:\d\dZ$/, '') : '';
  }

  window.qcFormat = { num: num, fmtInt: fmtInt, fmtUsd: fmtUsd, fmtUtc: fmtUtc };
})();
