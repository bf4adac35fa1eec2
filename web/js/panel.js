// One instrumentation on screen: a live chart refreshed every second.
//   no decomposition          -> a line
//   discrete decomposition    -> stacked areas (drawn here, on a canvas)
//   numeric decomposition     -> the agent's heatmap PNG, with our axes,
//                                legend, overlays and cell details
import { api, ApiError } from './api.js';
import {
  h, defaultHue, hueCss, seriesColor, fmtCount, unitFormatter, fmtTime, fmtDuration,
  niceStep, fitCanvas,
} from './util.js';

const WINDOWS = [60, 300, 600, 1800, 3600, 3 * 3600, 6 * 3600, 86400, 7 * 86400];
const MARGIN = { l: 64, r: 12, t: 10, b: 28 };
const PLOT_H = 220;
const MAX_SERIES = 10;

export function predicateText(p) {
  if (!p || typeof p !== 'object' || !Object.keys(p).length) return '';
  const [op, arg] = Object.entries(p)[0];
  if (op === 'and' || op === 'or')
    return arg.map((x) => `(${predicateText(x)})`).join(` ${op} `);
  const sym = { eq: '==', ne: '!=', lt: '<', le: '<=', gt: '>', ge: '>=' }[op] || op;
  return `${arg[0]} ${sym} ${JSON.stringify(arg[1])}`;
}

export class Panel {
  // app supplies the catalogue (fields, types) and owns the panel list.
  constructor(app, instr) {
    this.app = app;
    this.instr = instr;
    this.id = String(instr.id);
    this.paused = false;
    this.busy = false;
    this.hidden = new Set();      // stacked: keys not drawn
    this.selected = [];           // heatmap: keys drawn in their own hue
    this.mode = 'selected';       // heatmap: selected | isolate | exclude | all
    this.overlays = { avg: false, pct: false };
    this.pinned = null;           // heatmap: details shown for a clicked cell
    this.last = null;
    const gran = instr.granularity || 1;
    const ret = instr['retention-time'] || 600;
    this.windows = WINDOWS.filter((w) => w <= ret && w >= gran * 10);
    if (!this.windows.includes(ret)) this.windows.push(ret);
    this.window = this.windows.includes(app.defaultWindow) ? app.defaultWindow
      : Math.min(ret, this.windows[0]);

    const decomp = instr.decomposition || [];
    const fields = app.catalogue.fields || {};
    this.numField = decomp.find((f) => this.arity(f) === 'numeric') || null;
    this.discFields = decomp.filter((f) => f !== this.numField);
    this.kind = this.numField ? 'heatmap' : this.discFields.length ? 'stacked' : 'line';
    this.numDesc = this.numField ? fields[this.numField] : null;
    this.fmtY = this.numField ? unitFormatter(this.numDesc, app.catalogue.types) : fmtCount;
    this.build();
  }

  arity(f) {
    const fd = (this.app.catalogue.fields || {})[f];
    const t = fd && (this.app.catalogue.types || {})[fd.type];
    return t ? t.arity : 'discrete';
  }

  metricName() { return `${this.instr.module}.${this.instr.stat}`; }

  build() {
    const i = this.instr;
    const m = (this.app.catalogue.metrics || []).find((x) => x.module === i.module && x.stat === i.stat);
    const unit = m && m.unit ? m.unit : 'ops';
    this.unit = unit;
    const decomp = (i.decomposition || []).join(', ');
    const pred = predicateText(i.predicate);
    this.winSel = h('select', { title: 'time window', 'aria-label': 'time window', onchange: () => {
      this.window = Number(this.winSel.value); this.pinned = null; this.refresh(true);
    } }, this.windows.map((w) => h('option', { value: w, selected: w === this.window }, `last ${fmtDuration(w)}`)));
    this.pauseBtn = h('button', { class: 'btn', title: 'pause / resume this chart', onclick: () => this.setPaused(!this.paused) }, 'pause');
    const ctrls = [this.winSel, this.pauseBtn];
    if (this.kind === 'heatmap') {
      this.modeSel = h('select', { title: 'how keys are coloured', 'aria-label': 'key colouring', onchange: () => {
        this.mode = this.modeSel.value; this.refresh(true);
      } },
      h('option', { value: 'selected' }, 'selected keys in hues'),
      h('option', { value: 'isolate' }, 'isolate selected'),
      h('option', { value: 'exclude' }, 'exclude selected'),
      h('option', { value: 'all' }, 'every key in a hue'));
      if (!this.discFields.length) this.modeSel.disabled = true;
      const ov = (name, label) => h('label', { class: 'chk', title: `${label} overlay` },
        h('input', { type: 'checkbox', onchange: (e) => { this.overlays[name] = e.target.checked; this.refresh(true); } }), label);
      ctrls.unshift(this.modeSel, ov('avg', 'avg'), ov('pct', 'p95'));
    }
    ctrls.push(h('button', { class: 'btn danger', title: 'delete this instrumentation', onclick: () => this.app.deletePanel(this) }, '✕'));

    this.canvas = h('canvas', { class: 'plot', tabindex: '0', 'aria-label': `chart of instrumentation ${this.id}` });
    this.status = h('div', { class: 'pstatus' }, 'loading…');
    this.legend = h('div', { class: 'legend' });
    this.details = h('div', { class: 'details' });
    this.tip = h('div', { class: 'tip', hidden: true });
    this.el = h('section', { class: `panel ${this.kind}`, id: `instr-${this.id}`, dataset: { id: this.id, kind: this.kind, metric: this.metricName() } },
      h('header', {},
        h('div', { class: 'ptitle' },
          h('span', { class: 'pid' }, `#${this.id}`), ' ',
          h('b', {}, this.metricName()),
          decomp ? h('span', { class: 'dim' }, ` by ${decomp}`) : null,
          pred ? h('span', { class: 'pred', title: JSON.stringify(i.predicate) }, ` where ${pred}`) : null,
          h('span', { class: 'dim' }, ` · ${i.granularity || 1} s slots, ${fmtDuration(i['retention-time'] || 600)} kept`)),
        h('div', { class: 'pctrl' }, ctrls)),
      h('div', { class: 'pbody' }, h('div', { class: 'cwrap' }, this.canvas, this.status, this.tip), this.legend),
      this.details);
    this.canvas.addEventListener('mousemove', (e) => this.onHover(e));
    this.canvas.addEventListener('mouseleave', () => { this.tip.hidden = true; this.hoverAt = null; });
    this.canvas.addEventListener('click', (e) => this.onClick(e));
    this.canvas.addEventListener('keydown', (e) => this.onKey(e));
  }

  setPaused(p) {
    this.paused = p;
    this.pauseBtn.textContent = p ? 'resume' : 'pause';
    this.pauseBtn.classList.toggle('on', p);
    this.el.classList.toggle('paused', p);
    if (!p) this.refresh(true);
  }

  plotSize() {
    const w = Math.max(240, Math.floor(this.canvas.parentElement.clientWidth || 600));
    return { w, h: PLOT_H + MARGIN.t + MARGIN.b, pw: w - MARGIN.l - MARGIN.r, ph: PLOT_H };
  }

  setStatus(text, cls) {
    this.status.textContent = text || '';
    this.status.className = `pstatus ${cls || ''}`;
    this.status.hidden = !text;
  }

  async refresh(force) {
    if ((this.paused && !force) || this.busy) return;
    this.busy = true;
    try {
      if (this.kind === 'heatmap') await this.refreshHeatmap();
      else await this.refreshSeries();
    } catch (e) {
      if (e instanceof ApiError && e.status === 404) {
        this.setStatus(`instrumentation ${this.id} no longer exists on the agent`, 'err');
        this.app.lostPanel(this);
      } else {
        this.setStatus(e.message, 'err');
      }
    } finally {
      this.busy = false;
    }
  }

  // ---- lines and stacked areas ----------------------------------------

  async refreshSeries() {
    // The agent gives at most 3600 points: longer windows merge slots.
    const slot = this.instr.granularity || 1;
    const gran = slot * Math.ceil(this.window / slot / 3600);
    const n = Math.max(1, Math.floor(this.window / gran));
    // The window ends where the agent's default data point does (CA's
    // now - duration - granularity, by the agent's clock, not the
    // browser's: a replaying agent's "now" is its recording's end); with
    // ndatapoints and no start_time CA counts forward from there, so the
    // start is asked for explicitly.
    const last = await api.raw(this.id, { duration: gran });
    const from = last.start_time + gran - n * gran;
    let res = await api.raw(this.id, { start_time: from, duration: gran, ndatapoints: n });
    if (!Array.isArray(res)) res = [res];
    const now = Math.floor(Date.now() / 1000);
    const start = res.length ? res[0].start_time : now - (now % gran) - n * gran;
    const points = res.map((r) => ({ t: r.start_time, v: r.value }));
    this.last = { start, gran, n, points };
    this.drawSeries();
  }

  drawSeries() {
    const { start, gran, n, points } = this.last;
    const sz = this.plotSize();
    const ctx = fitCanvas(this.canvas, sz.w, sz.h);
    ctx.clearRect(0, 0, sz.w, sz.h);
    // series: key -> values[n]; scalar data is one unnamed series.
    const series = new Map();
    let any = false;
    for (const p of points) {
      const idx = Math.round((p.t - start) / gran);
      if (idx < 0 || idx >= n || p.v === null || p.v === undefined) continue;
      const obj = typeof p.v === 'number' ? { '': p.v } : p.v;
      for (const [k, v] of Object.entries(obj)) {
        if (typeof v !== 'number') continue;
        if (!series.has(k)) series.set(k, new Float64Array(n));
        series.get(k)[idx] += v;
        if (v) any = true;
      }
    }
    const totals = [...series.entries()].map(([k, arr]) => [k, arr.reduce((a, b) => a + b, 0)]);
    totals.sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1));
    // Beyond MAX_SERIES keys the rest is summed so the chart stays legible.
    let keys = totals.map((x) => x[0]);
    if (keys.length > MAX_SERIES) {
      const other = new Float64Array(n);
      for (const k of keys.slice(MAX_SERIES - 1)) series.get(k).forEach((v, i) => { other[i] += v; });
      keys = keys.slice(0, MAX_SERIES - 1);
      series.set('(other)', other);
      keys.push('(other)');
    }
    this.colors = new Map(keys.map((k, i) => [k, this.kind === 'line' ? '#5fb3ff' : seriesColor(i)]));
    const shown = keys.filter((k) => !this.hidden.has(k));
    const stack = new Float64Array(n);
    const layers = [];
    for (const k of shown) {
      const base = Float64Array.from(stack);
      series.get(k).forEach((v, i) => { stack[i] += v; });
      layers.push({ k, base, top: Float64Array.from(stack) });
    }
    let ymax = 0;
    stack.forEach((v) => { ymax = Math.max(ymax, v); });
    ymax = ymax > 0 ? niceCeil(ymax) : 1;
    const X = (i) => MARGIN.l + ((i + 0.5) / n) * sz.pw;
    const Y = (v) => MARGIN.t + sz.ph * (1 - v / ymax);
    this.axes(ctx, sz, start, n * gran, 0, ymax, fmtCount, `${this.unit} / ${gran === 1 ? 's' : `${gran} s`}`);
    for (const L of layers) {
      ctx.beginPath();
      for (let i = 0; i < n; i++) (i ? ctx.lineTo : ctx.moveTo).call(ctx, X(i), Y(L.top[i]));
      if (this.kind === 'stacked') {
        for (let i = n - 1; i >= 0; i--) ctx.lineTo(X(i), Y(L.base[i]));
        ctx.closePath();
        ctx.globalAlpha = 0.75;
        ctx.fillStyle = this.colors.get(L.k);
        ctx.fill();
        ctx.globalAlpha = 1;
      } else {
        ctx.strokeStyle = this.colors.get(L.k);
        ctx.lineWidth = 1.5;
        ctx.stroke();
      }
    }
    this.series = { series, keys, layers, X, Y, n, start, gran, ymax };
    this.setStatus(any ? '' : 'no data yet — nothing has been counted in this window', 'empty');
    this.drawLegendSeries(keys, series);
    this.el.dataset.ready = any ? '1' : '0';
  }

  drawLegendSeries(keys, series) {
    if (this.kind === 'line') { this.legend.replaceChildren(); return; }
    const n = this.last.n;
    this.legend.replaceChildren(...keys.map((k) => {
      const arr = series.get(k);
      const lastv = arr[n - 1];
      return h('button', { class: `lkey ${this.hidden.has(k) ? 'off' : ''}`, title: `${k}: click to hide/show`, dataset: { key: k },
        onclick: () => { if (this.hidden.has(k)) this.hidden.delete(k); else this.hidden.add(k); this.drawSeries(); } },
      h('i', { style: `background:${this.colors.get(k)}` }), h('span', { class: 'kname' }, k || 'total'), h('span', { class: 'kval' }, fmtCount(lastv)));
    }));
  }

  seriesHover(mx) {
    const s = this.series;
    if (!s) return null;
    const i = Math.floor(((mx - MARGIN.l) / this.plotSize().pw) * s.n);
    if (i < 0 || i >= s.n) return null;
    const rows = s.keys.filter((k) => !this.hidden.has(k)).map((k) => [k, s.series.get(k)[i]]).filter((r) => r[1]);
    return h('div', {}, h('div', { class: 'tt' }, `${fmtTime(s.start + i * s.gran)} (+${s.gran} s)`),
      rows.length ? h('table', {}, rows.map(([k, v]) => h('tr', {}, h('td', {}, h('i', { class: 'sw', style: `background:${this.colors.get(k)}` }), k || 'total'), h('td', { class: 'num' }, fmtCount(v)))))
        : h('div', { class: 'dim' }, 'nothing'));
  }

  // ---- heatmaps ---------------------------------------------------------

  heatParams() {
    const sz = this.plotSize();
    const p = { width: sz.pw, height: sz.ph, duration: this.window };
    const d = this.numDesc;
    if (d && d.type === 'subsecond') {
      // Pinned to the whole second so that lines keep their place.
      p.ymin = 0; p.ymax = (d.bucketing && d.bucketing.max) || 1000;
      p.nbuckets = Math.min(sz.ph, Math.round(p.ymax / ((d.bucketing && d.bucketing.width) || 10)));
    }
    if (this.discFields.length) {
      if (this.mode === 'all') p.decompose_all = true;
      else if (this.selected.length) {
        p.selected = this.selected;
        if (this.mode === 'isolate') p.isolate = true;
        if (this.mode === 'exclude') p.exclude = true;
      }
    }
    return p;
  }

  async refreshHeatmap() {
    const params = this.heatParams();
    const img = await api.heatmap(this.id, 'image', params);
    // Details and overlays must describe exactly the picture on screen.
    const fixed = { ...params, start_time: img.start_time, duration: img.duration, ymin: img.ymin, ymax: img.ymax, nbuckets: img.nbuckets };
    const ov = {};
    // series=true: one [t, v] per column, not CA's one object per data point
    if (this.overlays.avg) ov.avg = await api.heatmap(this.id, 'average', { ...fixed, series: true });
    if (this.overlays.pct) ov.pct = await api.heatmap(this.id, 'percentile', { ...fixed, percentile: 0.95, series: true });
    const bitmap = new Image();
    bitmap.src = `data:image/png;base64,${img.image}`;
    await bitmap.decode();
    this.last = { img, fixed, bitmap, ov };
    this.drawHeatmap();
    if (this.pinned) this.showDetails(this.pinned.x, this.pinned.y, true);
  }

  drawHeatmap() {
    const { img, bitmap, ov } = this.last;
    const sz = this.plotSize();
    const ctx = fitCanvas(this.canvas, sz.w, sz.h);
    ctx.clearRect(0, 0, sz.w, sz.h);
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(bitmap, MARGIN.l, MARGIN.t, sz.pw, sz.ph);
    const d = this.numDesc || {};
    this.axes(ctx, sz, img.start_time, img.duration, img.ymin, img.ymax, this.fmtY, d.label || this.numField, true);
    const Y = (v) => MARGIN.t + sz.ph * (1 - (v - img.ymin) / (img.ymax - img.ymin));
    const X = (t) => MARGIN.l + ((t - img.start_time + (this.instr.granularity || 1) / 2) / img.duration) * sz.pw;
    const overlay = (data, color, label) => {
      const pts = toPoints(data);
      ctx.strokeStyle = color; ctx.lineWidth = 1.5; ctx.setLineDash(label === 'p95' ? [4, 3] : []);
      ctx.beginPath();
      let pen = false;
      for (const [t, v] of pts) {
        if (v === null || v === undefined) { pen = false; continue; }
        const x = X(t), y = Math.max(MARGIN.t, Math.min(MARGIN.t + sz.ph, Y(v)));
        if (pen) ctx.lineTo(x, y); else ctx.moveTo(x, y);
        pen = true;
      }
      ctx.stroke();
      ctx.setLineDash([]);
    };
    if (ov.avg) overlay(ov.avg, '#00b7ff', 'avg');
    if (ov.pct) overlay(ov.pct, '#ff3df2', 'p95');
    if (this.pinned) {
      ctx.strokeStyle = '#ffe14d';
      ctx.strokeRect(MARGIN.l + this.pinned.x - 3.5, MARGIN.t + this.pinned.y - 3.5, 7, 7);
    }
    // For tests and for anyone reading pixels: where the image lies.
    Object.assign(this.canvas.dataset, {
      plotX: MARGIN.l, plotY: MARGIN.t, plotW: sz.pw, plotH: sz.ph,
      ymin: img.ymin, ymax: img.ymax, start: img.start_time, duration: img.duration,
    });
    const present = Array.isArray(img.present) ? img.present : [];
    const any = present.length > 0 || (!this.discFields.length && inked(bitmap));
    this.setStatus(any ? '' : 'no data yet — nothing has been counted in this window', 'empty');
    this.el.dataset.ready = any ? '1' : '0';
    this.drawLegendHeat(present);
  }

  drawLegendHeat(present) {
    const items = [];
    if (this.discFields.length) {
      const sel = this.selected;
      const hueOf = (k) => {
        if (this.mode === 'all') return defaultHue(1 + present.indexOf(k));
        const i = sel.indexOf(k);
        if (i >= 0 && this.mode !== 'exclude') return defaultHue(1 + i);
        return null;
      };
      const restLabel = this.mode === 'isolate' ? null : sel.length && this.mode !== 'all' ? 'the rest' : this.mode === 'all' ? null : 'all keys';
      if (restLabel) items.push(h('span', { class: 'lkey static' }, h('i', { style: `background:${hueCss(defaultHue(0))}` }), h('span', { class: 'kname dim' }, restLabel)));
      const keys = [...new Set([...sel, ...present])];
      for (const k of keys) {
        const hue = hueOf(k);
        const on = sel.includes(k);
        items.push(h('button', { class: `lkey ${on ? 'sel' : ''} ${present.includes(k) ? '' : 'gone'}`, dataset: { key: k },
          title: `${k}: click to ${on ? 'unselect' : 'select'}`,
          onclick: () => {
            this.selected = on ? sel.filter((x) => x !== k) : [...sel, k];
            this.refresh(true);
          } },
        h('i', { style: hue === null ? 'background:transparent;border:1px solid #666' : `background:${hueCss(hue)}` }),
        h('span', { class: 'kname' }, k)));
      }
      if (!keys.length) items.push(h('span', { class: 'dim' }, 'no keys yet'));
    } else {
      items.push(h('span', { class: 'lkey static' }, h('i', { style: `background:${hueCss(defaultHue(0))}` }), h('span', { class: 'kname' }, 'count')));
    }
    if (this.overlays.avg) items.push(h('span', { class: 'lkey static' }, h('i', { class: 'line', style: 'background:#00b7ff' }), 'average'));
    if (this.overlays.pct) items.push(h('span', { class: 'lkey static' }, h('i', { class: 'line dash', style: 'background:#ff3df2' }), '95th percentile'));
    this.legend.replaceChildren(...items);
  }

  async showDetails(x, y, pinned) {
    if (!this.last || !this.last.fixed) return null;
    const det = await api.heatmap(this.id, 'details', { ...this.last.fixed, x, y });
    const body = this.detailsBody(det);
    if (pinned) {
      this.details.replaceChildren(h('div', { class: 'dhead' }, 'cell details ',
        h('button', { class: 'btn', title: 'close (Esc)', onclick: () => this.unpin() }, 'close')), body);
      this.details.classList.add('open');
    }
    return body;
  }

  detailsBody(d) {
    const present = d.present || {};
    const rows = Object.entries(present).sort((a, b) => b[1] - a[1]);
    const g = d.duration || this.instr.granularity || 1;
    return h('div', { class: 'dbody', dataset: { total: d.total, bucketMin: d.bucket_min, bucketMax: d.bucket_max, start: d.start_time } },
      h('div', {}, h('span', { class: 'dim' }, 'time '), `${fmtTime(d.start_time)} – ${fmtTime(d.start_time + g)}`),
      h('div', {}, h('span', { class: 'dim' }, `${(this.numDesc && this.numDesc.label) || this.numField} `), `${this.fmtY(d.bucket_min)} – ${this.fmtY(d.bucket_max)}`),
      h('div', {}, h('span', { class: 'dim' }, 'count '), h('b', { class: 'dtotal' }, fmtCount(d.total))),
      rows.length ? h('table', { class: 'dkeys' }, rows.map(([k, v]) => h('tr', {}, h('td', {}, k), h('td', { class: 'num' }, fmtCount(v))))) : null);
  }

  unpin() {
    this.pinned = null;
    this.details.classList.remove('open');
    this.details.replaceChildren();
    if (this.last && this.kind === 'heatmap') this.drawHeatmap();
  }

  plotXY(e) {
    const r = this.canvas.getBoundingClientRect();
    const sz = this.plotSize();
    const x = Math.floor(e.clientX - r.left - MARGIN.l), y = Math.floor(e.clientY - r.top - MARGIN.t);
    if (x < 0 || y < 0 || x >= sz.pw || y >= sz.ph) return null;
    return { x, y, mx: e.clientX - r.left, my: e.clientY - r.top };
  }

  placeTip(p) {
    const w = this.canvas.clientWidth;
    this.tip.style.left = `${Math.min(p.mx + 14, w - 220)}px`;
    this.tip.style.top = `${p.my + 14}px`;
    this.tip.hidden = false;
  }

  onHover(e) {
    const p = this.plotXY(e);
    if (!p) { this.tip.hidden = true; return; }
    if (this.kind !== 'heatmap') {
      const body = this.seriesHover(p.mx);
      if (!body) { this.tip.hidden = true; return; }
      this.tip.replaceChildren(body);
      this.placeTip(p);
      return;
    }
    // Hover asks the agent at most every 150 ms; the last position wins.
    this.hoverAt = p;
    if (this.hoverTimer) return;
    this.hoverTimer = setTimeout(async () => {
      this.hoverTimer = null;
      const q = this.hoverAt;
      if (!q) return;
      try {
        const body = await this.showDetails(q.x, q.y, false);
        if (body && this.hoverAt === q) { this.tip.replaceChildren(body); this.placeTip(q); }
      } catch { this.tip.hidden = true; }
    }, 150);
  }

  async onClick(e) {
    const p = this.plotXY(e);
    if (!p || this.kind !== 'heatmap') return;
    this.pinned = { x: p.x, y: p.y };
    this.drawHeatmap();
    try { await this.showDetails(p.x, p.y, true); } catch (err) { this.setStatus(err.message, 'err'); }
  }

  onKey(e) {
    if (e.key === 'Escape' && this.pinned) { this.unpin(); e.stopPropagation(); }
  }

  // ---- axes -----------------------------------------------------------

  axes(ctx, sz, start, duration, ymin, ymax, fmtY, ylabel, frameOnly) {
    ctx.font = '11px ui-monospace, "DejaVu Sans Mono", monospace';
    ctx.fillStyle = '#9aa4b1';
    ctx.strokeStyle = '#2a313b';
    ctx.lineWidth = 1;
    const step = niceStep(ymax - ymin, 5);
    ctx.textAlign = 'right'; ctx.textBaseline = 'middle';
    for (let v = Math.ceil(ymin / step) * step; v <= ymax + step * 1e-9; v += step) {
      const y = Math.round(MARGIN.t + sz.ph * (1 - (v - ymin) / (ymax - ymin))) + 0.5;
      if (!frameOnly) { ctx.beginPath(); ctx.moveTo(MARGIN.l, y); ctx.lineTo(MARGIN.l + sz.pw, y); ctx.stroke(); }
      ctx.fillText(fmtY(v), MARGIN.l - 6, y);
    }
    // x: wall-clock ticks on round seconds/minutes.
    const tstep = [1, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400]
      .find((s) => duration / s <= Math.max(2, sz.pw / 90)) || 86400;
    ctx.textAlign = 'center'; ctx.textBaseline = 'top';
    for (let t = Math.ceil(start / tstep) * tstep; t <= start + duration; t += tstep) {
      const x = Math.round(MARGIN.l + ((t - start) / duration) * sz.pw) + 0.5;
      ctx.beginPath(); ctx.moveTo(x, MARGIN.t + sz.ph); ctx.lineTo(x, MARGIN.t + sz.ph + 4); ctx.stroke();
      const label = duration > 86400 ? new Date(t * 1000).toISOString().slice(5, 16).replace('T', ' ') : fmtTime(t);
      ctx.fillText(tstep >= 60 ? label.slice(0, label.length - 3) : label, x, MARGIN.t + sz.ph + 6);
    }
    ctx.strokeStyle = '#3a4350';
    ctx.strokeRect(MARGIN.l - 0.5, MARGIN.t - 0.5, sz.pw + 1, sz.ph + 1);
    ctx.save();
    ctx.translate(12, MARGIN.t + sz.ph / 2);
    ctx.rotate(-Math.PI / 2);
    ctx.textAlign = 'center'; ctx.textBaseline = 'middle';
    ctx.fillStyle = '#c6ced8';
    ctx.fillText(ylabel, 0, 0);
    ctx.restore();
  }
}

function niceCeil(v) {
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 1.25, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

// average/percentile answers: [[t, v], ...], possibly wrapped in an object.
function toPoints(data) {
  if (Array.isArray(data)) return data;
  if (data && typeof data === 'object') {
    for (const v of Object.values(data)) if (Array.isArray(v)) return v;
  }
  return [];
}

// Undecomposed heatmaps name no keys: a cell with a count is any pixel that
// is not the white background.
function inked(bitmap) {
  const c = document.createElement('canvas');
  c.width = bitmap.naturalWidth; c.height = bitmap.naturalHeight;
  const ctx = c.getContext('2d', { willReadFrequently: true });
  ctx.drawImage(bitmap, 0, 0);
  const px = ctx.getImageData(0, 0, c.width, c.height).data;
  for (let i = 0; i < px.length; i += 4) if (px[i] < 250 || px[i + 1] < 250 || px[i + 2] < 250) return true;
  return false;
}
