// The "new instrumentation" form: metric, decomposition, a predicate built
// from rows (field, operator, value) joined by and/or, or typed as JSON.
import { api } from './api.js';
import { h, fmtDuration } from './util.js';

const OPS = [['eq', '=='], ['ne', '!='], ['lt', '<'], ['le', '<='], ['gt', '>'], ['ge', '>=']];
const RETENTIONS = [60, 300, 600, 1800, 3600, 6 * 3600, 86400];

export class CreateForm {
  // onCreated(instr) is called with the agent's answer.
  constructor(root, catalogue, onCreated) {
    this.cat = catalogue;
    this.onCreated = onCreated;
    const metrics = catalogue.metrics || [];
    this.metric = h('select', { id: 'f-metric', name: 'metric', onchange: () => this.metricChanged() },
      metrics.map((m) => h('option', { value: `${m.module}.${m.stat}` }, `${m.module}.${m.stat} — ${m.label}`)));
    this.decomp = h('div', { class: 'decomp', id: 'f-decomp' });
    this.rows = h('div', { class: 'predrows', id: 'f-pred' });
    this.join = h('select', { id: 'f-join', 'aria-label': 'combine conditions with' }, h('option', { value: 'and' }, 'all of (and)'), h('option', { value: 'or' }, 'any of (or)'));
    this.json = h('textarea', { id: 'f-json', rows: 2, spellcheck: 'false', placeholder: '{"eq": ["vm", "web1"]}  (optional: replaces the conditions above)' });
    this.gran = h('input', { id: 'f-gran', type: 'number', min: 1, max: 3600, value: 1, 'aria-label': 'granularity in seconds' });
    this.ret = h('select', { id: 'f-ret', 'aria-label': 'retention' }, RETENTIONS.map((r) => h('option', { value: r, selected: r === 600 }, fmtDuration(r))));
    this.msg = h('div', { class: 'fmsg', role: 'status' });
    this.el = h('form', { class: 'card create', id: 'create-form', onsubmit: (e) => { e.preventDefault(); this.submit(); } },
      h('header', {}, h('h2', {}, 'New instrumentation'), h('span', { class: 'dim' }, 'n: focus · Enter: create')),
      h('div', { class: 'frow' }, h('label', { for: 'f-metric' }, 'metric'), this.metric),
      h('div', { class: 'frow' }, h('label', {}, 'decompose by'), this.decomp),
      h('div', { class: 'frow' }, h('label', {}, 'predicate'),
        h('div', { class: 'predbox' }, h('div', {}, this.join, ' ',
          h('button', { type: 'button', class: 'btn', id: 'f-addcond', onclick: () => this.addRow() }, '+ condition')), this.rows, this.json)),
      h('div', { class: 'frow' }, h('label', { for: 'f-gran' }, 'granularity'), h('span', {}, this.gran, ' s  '),
        h('label', { for: 'f-ret', class: 'inl' }, 'retention'), this.ret,
        h('button', { type: 'submit', class: 'btn primary', id: 'f-create' }, 'create')),
      this.msg);
    root.replaceChildren(this.el);
    this.metricChanged();
  }

  metricDesc() {
    const [mod, stat] = this.metric.value.split('.');
    return (this.cat.metrics || []).find((m) => m.module === mod && m.stat === stat);
  }

  isNumeric(f) {
    const fd = (this.cat.fields || {})[f];
    const t = fd && (this.cat.types || {})[fd.type];
    return !!t && t.arity === 'numeric';
  }

  metricChanged() {
    const m = this.metricDesc();
    const fields = (m && m.fields) || [];
    this.decomp.replaceChildren(...fields.map((f) => {
      const num = this.isNumeric(f);
      const fd = this.cat.fields[f] || {};
      const box = h('input', { type: 'checkbox', value: f, name: 'decomposition', dataset: { numeric: num ? '1' : '0' },
        onchange: (e) => {
          // One numeric field at most: it is the heatmap's y axis.
          if (num && e.target.checked)
            this.decomp.querySelectorAll('input[data-numeric="1"]').forEach((o) => { if (o !== e.target) o.checked = false; });
        } });
      return h('label', { class: `chk ${num ? 'numeric' : ''}`, title: `${fd.label || f} (${num ? 'numeric: heatmap' : 'discrete'})` }, box, f);
    }));
    this.rows.replaceChildren();
  }

  addRow(field, op, value) {
    const m = this.metricDesc();
    const fsel = h('select', { class: 'p-field', 'aria-label': 'field' }, ((m && m.fields) || []).map((f) => h('option', { value: f, selected: f === field }, f)));
    const osel = h('select', { class: 'p-op', 'aria-label': 'operator' });
    const fillOps = () => {
      const num = this.isNumeric(fsel.value);
      const cur = osel.value || op;
      osel.replaceChildren(...OPS.filter(([o]) => num || o === 'eq' || o === 'ne').map(([o, s]) => h('option', { value: o, selected: o === cur }, s)));
    };
    fsel.addEventListener('change', fillOps);
    fillOps();
    const val = h('input', { class: 'p-value', 'aria-label': 'value', value: value || '', placeholder: 'value' });
    const row = h('div', { class: 'prow' }, fsel, osel, val,
      h('button', { type: 'button', class: 'btn', title: 'remove condition', onclick: () => row.remove() }, '✕'));
    this.rows.append(row);
    fsel.focus();
  }

  // The CA predicate the rows describe, or throws with the offending row.
  predicate() {
    const text = this.json.value.trim();
    if (text) {
      try {
        const p = JSON.parse(text);
        if (!p || typeof p !== 'object' || Array.isArray(p)) throw new Error('want an object such as {"eq": ["vm", "web1"]}');
        return p;
      } catch (e) {
        throw new Error(`predicate JSON: ${e.message}`);
      }
    }
    const conds = [...this.rows.querySelectorAll('.prow')].map((r, i) => {
      const f = r.querySelector('.p-field').value, o = r.querySelector('.p-op').value;
      const raw = r.querySelector('.p-value').value.trim();
      if (!raw) throw new Error(`condition ${i + 1} (${f}): a value is needed`);
      let v = raw;
      if (this.isNumeric(f)) {
        v = Number(raw);
        if (!Number.isFinite(v)) throw new Error(`condition ${i + 1}: ${f} is numeric, "${raw}" is not a number`);
      }
      return { [o]: [f, v] };
    });
    if (!conds.length) return {};
    return conds.length === 1 ? conds[0] : { [this.join.value]: conds };
  }

  spec() {
    const [module, stat] = this.metric.value.split('.');
    const gran = Number(this.gran.value);
    if (!Number.isInteger(gran) || gran < 1) throw new Error(`granularity: "${this.gran.value}" is not a whole number of seconds >= 1`);
    const ret = Math.max(gran, Math.ceil(Number(this.ret.value) / gran) * gran);
    return {
      module, stat,
      decomposition: [...this.decomp.querySelectorAll('input:checked')].map((b) => b.value),
      predicate: this.predicate(),
      granularity: gran,
      'retention-time': ret,
    };
  }

  async submit() {
    let spec;
    try { spec = this.spec(); } catch (e) { this.say(e.message, 'err'); return; }
    this.say('creating…');
    try {
      const made = await api.create(spec);
      this.say(`created #${made.id}`, 'ok');
      this.onCreated(made);
    } catch (e) {
      this.say(`the agent refused: ${e.message}`, 'err');
    }
  }

  say(text, cls) { this.msg.textContent = text; this.msg.className = `fmsg ${cls || ''}`; }
  focus() { this.metric.focus(); }
}
