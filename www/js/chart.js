/* chart.js - a stacked bar chart of cache hits and misses per hour, drawn as
 * inline SVG with createElementNS and textContent only (no library, no
 * innerHTML). Exposes window.QCChart.render(container, buckets, hooks).
 * buckets: [{hour: ISO string, hits, misses, saved_usd}], oldest first. */
(function () {
  'use strict';
  var NS = 'http://www.w3.org/2000/svg';

  function el(name, attrs, parent) {
    var e = document.createElementNS(NS, name);
    for (var k in attrs) if (Object.prototype.hasOwnProperty.call(attrs, k)) e.setAttribute(k, String(attrs[k]));
    if (parent) parent.appendChild(e);
    return e;
  }

  /* The smallest "nice" axis maximum >= v (1, 2, 5 x 10^n), and a step. */
  function niceScale(v) {
    if (!(v > 0)) return { max: 4, step: 1 };
    var ticks = 4, raw = v / ticks, p = Math.pow(10, Math.floor(Math.log10(raw)));
    var m = raw / p, step = (m <= 1 ? 1 : m <= 2 ? 2 : m <= 2.5 ? 2.5 : m <= 5 ? 5 : 10) * p;
    if (step < 1) step = 1;
    return { max: Math.ceil(v / step) * step, step: step };
  }

  function hourLabel(d) {
    return String(d.getHours()).padStart(2, '0') + ':00';
  }

  function render(container, buckets, hooks) {
    hooks = hooks || {};
    var width = Math.max(280, Math.floor(container.clientWidth || 600));
    var narrow = width < 520;
    var height = narrow ? 190 : 230;
    var pad = { top: 12, right: 8, bottom: 26, left: narrow ? 30 : 40 };
    var plotW = width - pad.left - pad.right, plotH = height - pad.top - pad.bottom;
    var n = buckets.length || 1;
    var maxTotal = 0;
    buckets.forEach(function (b) { maxTotal = Math.max(maxTotal, (b.hits || 0) + (b.misses || 0)); });
    var scale = niceScale(maxTotal);
    var slot = plotW / n, barW = Math.max(2, Math.min(28, slot * 0.7));
    var y = function (v) { return pad.top + plotH - (v / scale.max) * plotH; };

    var svg = el('svg', {
      viewBox: '0 0 ' + width + ' ' + height, width: width, height: height,
      role: 'img', class: 'chart-svg', 'aria-labelledby': 'chart-svg-title'
    });
    var totalHits = 0, totalMisses = 0;
    buckets.forEach(function (b) { totalHits += b.hits || 0; totalMisses += b.misses || 0; });
    el('title', { id: 'chart-svg-title' }, svg).textContent =
      'Cache hits and misses per hour over the last ' + buckets.length + ' hours: ' +
      totalHits + ' hits, ' + totalMisses + ' misses';

    /* grid lines and y labels */
    var grid = el('g', { class: 'grid' }, svg);
    for (var v = 0; v <= scale.max + 1e-9; v += scale.step) {
      var yy = Math.round(y(v)) + 0.5;
      el('line', { x1: pad.left, x2: width - pad.right, y1: yy, y2: yy, class: v === 0 ? 'axis' : 'gridline' }, grid);
      var t = el('text', { x: pad.left - 6, y: yy + 4, 'text-anchor': 'end', class: 'tick' }, grid);
      t.textContent = String(Math.round(v * 10) / 10);
    }

    /* bars: one group per hour, hits at the bottom, misses stacked on top */
    var bars = el('g', { class: 'bars' }, svg);
    var every = narrow ? 6 : 3;
    buckets.forEach(function (b, i) {
      var hits = b.hits || 0, misses = b.misses || 0;
      var start = new Date(b.hour);
      var x = pad.left + i * slot + (slot - barW) / 2;
      var g = el('g', {
        class: 'bar', tabindex: '0', 'data-hour': b.hour, 'data-hits': hits, 'data-misses': misses
      }, bars);
      var label = hourLabel(start) + '–' + hourLabel(new Date(start.getTime() + 3600e3)) + ': ' +
        hits + (hits === 1 ? ' hit, ' : ' hits, ') + misses + (misses === 1 ? ' miss' : ' misses');
      el('title', {}, g).textContent = label;
      /* an invisible full-height target makes thin bars easy to hover */
      el('rect', { x: pad.left + i * slot, y: pad.top, width: slot, height: plotH, class: 'hover' }, g);
      if (hits > 0) {
        el('rect', { x: x, y: y(hits), width: barW, height: y(0) - y(hits), class: 'hit', rx: 1.5 }, g);
      }
      if (misses > 0) {
        el('rect', { x: x, y: y(hits + misses), width: barW, height: y(hits) - y(hits + misses), class: 'miss', rx: 1.5 }, g);
      }
      if (i % every === 0 || i === buckets.length - 1 && buckets.length < every) {
        var lt = el('text', { x: pad.left + i * slot + slot / 2, y: height - 8, 'text-anchor': 'middle', class: 'tick' }, svg);
        lt.textContent = hourLabel(start);
      }
      if (hooks.onFocus) {
        var show = function () { hooks.onFocus(b, label); };
        g.addEventListener('mouseenter', show);
        g.addEventListener('focus', show);
        g.addEventListener('mouseleave', function () { hooks.onFocus(null); });
        g.addEventListener('blur', function () { hooks.onFocus(null); });
      }
    });

    if (totalHits + totalMisses === 0) {
      var e = el('text', { x: pad.left + plotW / 2, y: pad.top + plotH / 2, 'text-anchor': 'middle', class: 'empty-note' }, svg);
      e.textContent = 'no cache lookups in this period';
    }

    while (container.firstChild) container.removeChild(container.firstChild);
    container.appendChild(svg);
    return { hits: totalHits, misses: totalMisses };
  }

  window.QCChart = { render: render, niceScale: niceScale };
})();
