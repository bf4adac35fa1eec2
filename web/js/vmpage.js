// One VM's page: what it exits for and how long the exits last, its
// interrupts inside each second and by vector, its disk ops by offset and
// latency, the guest processes (CR3) it runs and its NIC traffic, every
// chart scoped to the VM with a predicate on vm.
import { api } from './api.js';
import { h } from './util.js';
import { Chart } from './chart.js';
import { ensureInstr } from './instr.js';

export const VM_PANELS = [
  { id: 'exits', title: 'exits by reason', spec: { module: 'vm', stat: 'exits', decomposition: ['reason'] } },
  { id: 'latency', title: 'exit latency by reason', spec: { module: 'vm', stat: 'exits', decomposition: ['reason', 'latency'] }, height: 240 },
  { id: 'irqsub', title: 'interrupts inside each second, by vector', spec: { module: 'vm', stat: 'irqs', decomposition: ['vector', 'subsecond'] } },
  { id: 'irqvec', title: 'interrupts by vector', spec: { module: 'vm', stat: 'irqs', decomposition: ['vector'] } },
  { id: 'diskoff', title: 'disk ops by offset', spec: { module: 'vm', stat: 'disk_ops', decomposition: ['disk', 'offset'] } },
  { id: 'disklat', title: 'disk op latency by type', spec: { module: 'vm', stat: 'disk_ops', decomposition: ['optype', 'latency'] } },
  { id: 'cr3', title: 'vCPU samples by guest process (CR3)', spec: { module: 'vm', stat: 'samples', decomposition: ['mmuctx'] } },
  { id: 'nic', title: 'NIC bytes by NIC and direction', spec: { module: 'vm', stat: 'nic_bytes', decomposition: ['nic', 'direction'] } },
];

export const vmPredicate = (vm) => ({ eq: ['vm', vm] });

export class VmPage {
  // state: { show: [panel ids] | null, views: {panelKey: view} }
  constructor(app, root, vm, state) {
    this.app = app;
    this.root = root;
    this.vm = vm;
    this.charts = new Map();
    const show = new Set(state.show || VM_PANELS.map((p) => p.id));
    this.facts = h('div', { class: 'vmfacts dim' }, 'loading…');
    this.toggles = h('fieldset', { class: 'ptoggles' }, h('legend', {}, 'panels'),
      VM_PANELS.map((p) => h('label', { class: 'chk' }, h('input', { type: 'checkbox', value: p.id, checked: show.has(p.id),
        onchange: (e) => this.toggle(p, e.target.checked) }), p.title)));
    this.panels = h('div', { class: 'panels' });
    root.replaceChildren(
      h('section', { class: 'card vmhead', 'aria-labelledby': 'vm-h' },
        h('header', {}, h('a', { href: '#/host', class: 'btn' }, '← host'), h('h2', { id: 'vm-h' }, `VM ${vm}`), this.facts),
        this.toggles),
      this.panels);
    this.views = state.views || {};
    for (const p of VM_PANELS) if (show.has(p.id)) this.add(p);
    this.loadFacts();
  }

  async loadFacts() {
    try {
      const vms = await api.vms();
      const v = vms.find((x) => x.name === this.vm);
      this.facts.textContent = v ? `pid ${v.pid} · ${(v.vcpus || []).length} vCPUs · VMID ${v.vmid || '–'} · UUID ${v.uuid || '–'} · disks ${(v.disks || []).length} · NICs ${(v.nics || []).length}`
        : 'this VM is not running on this host now (its history may still be kept)';
    } catch (e) { this.facts.textContent = e.message; }
  }

  shown() { return VM_PANELS.filter((p) => this.charts.has(p.id)).map((p) => p.id); }

  toggle(p, on) {
    if (on) this.add(p); else { const c = this.charts.get(p.id); if (c) { this.app.unobserve(c); c.el.remove(); this.charts.delete(p.id); } }
    this.app.stateChanged();
  }

  async add(p) {
    if (this.charts.has(p.id)) return;
    const slot = h('div', { class: 'slot', dataset: { panel: p.id } });
    // keep the page's order whatever order the instrumentations come in
    const after = VM_PANELS.slice(0, VM_PANELS.indexOf(p)).map((x) => this.panels.querySelector(`[data-panel="${x.id}"]`)).filter(Boolean).pop();
    if (after) after.after(slot); else this.panels.prepend(slot);
    this.charts.set(p.id, null);
    try {
      const instr = await ensureInstr({ ...p.spec, predicate: vmPredicate(this.vm) });
      if (!slot.isConnected) return;
      const c = new Chart(this.app, instr, { key: p.id, title: `${p.title} · ${this.vm}`, height: p.height, view: this.views[p.id] });
      this.charts.set(p.id, c);
      slot.replaceWith(c.el);
      c.el.dataset.panel = p.id;
      this.app.observe(c);
      c.refresh();
    } catch (e) {
      slot.replaceChildren(h('div', { class: 'err' }, `${p.title}: ${e.message}`));
    }
  }

  all() { return [...this.charts.values()].filter(Boolean); }
}
