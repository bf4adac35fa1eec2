// The host view: the VMs the agent sees, and a kvmstat-like table of exits
// per class and interrupts per vCPU, for the last complete second.
import { api, ApiError } from './api.js';
import { h, fmtCount, fmtTime, splitKey } from './util.js';

const CLASSES = ['haltx', 'irqx', 'irqwx', 'iox', 'mmiox', 'other'];
// The instrumentations this view reads. One that already exists with this
// exact shape is reused (another tab may have made it); ones made here are
// deleted when the page goes away.
const SPECS = {
  exits: { module: 'vm', stat: 'exits', decomposition: ['vm', 'vcpu', 'class'], granularity: 1, 'retention-time': 60, 'idle-max': 300 },
  irqs: { module: 'vm', stat: 'irqs', decomposition: ['vm', 'vcpu'], granularity: 1, 'retention-time': 60, 'idle-max': 300 },
};

export function isHostInstr(i) {
  return Object.values(SPECS).some((s) => s.module === i.module && s.stat === i.stat &&
    (i.decomposition || []).join() === s.decomposition.join() &&
    (!i.predicate || !Object.keys(i.predicate).length));
}

export class HostView {
  constructor(root) {
    this.root = root;
    this.vms = [];
    this.ids = {};        // which: instrumentation id
    this.mine = new Set(); // ids created by this page
    this.busy = false;
    this.paused = false;
    this.vmBody = h('tbody');
    this.statBody = h('tbody');
    this.statNote = h('span', { class: 'dim' }, 'loading…');
    this.vmNote = h('span', { class: 'dim' }, 'loading…');
    root.replaceChildren(
      h('section', { class: 'card' },
        h('header', {}, h('h2', {}, 'Virtual machines'), this.vmNote),
        h('table', { class: 'grid', id: 'vm-table' },
          h('thead', {}, h('tr', {}, ['VM', 'VMID', 'UUID', 'pid', 'vCPUs (index:tid)', 'disks', 'NICs'].map((c) => h('th', {}, c)))),
          this.vmBody)),
      h('section', { class: 'card' },
        h('header', {}, h('h2', {}, 'kvmstat — per vCPU, per second'), this.statNote),
        h('table', { class: 'grid num', id: 'kvmstat-table' },
          h('thead', {}, h('tr', {}, ['VM', 'vCPU', 'tid', 'exits/s', ...CLASSES, 'irqs/s'].map((c) => h('th', {}, c)))),
          this.statBody)));
  }

  // Finds or creates the two instrumentations behind the table.
  async ensure(listFn) {
    if (this.ids.exits && this.ids.irqs) return;
    const list = await listFn();
    for (const [which, spec] of Object.entries(SPECS)) {
      if (this.ids[which]) continue;
      const found = (list || []).find((i) => i.module === spec.module && i.stat === spec.stat &&
        (i.decomposition || []).join() === spec.decomposition.join() &&
        (!i.predicate || !Object.keys(i.predicate).length));
      if (found) { this.ids[which] = String(found.id); continue; }
      const made = await api.create(spec);
      this.ids[which] = String(made.id);
      this.mine.add(String(made.id));
    }
  }

  release() {
    for (const id of this.mine) api.remove(id, true).catch(() => {});
    this.mine.clear();
  }

  async refresh(listFn) {
    if (this.busy || this.paused) return;
    this.busy = true;
    try {
      this.vms = await api.vms();
      this.drawVms();
      await this.ensure(listFn);
      const [ex, irq] = await Promise.all([this.read('exits'), this.read('irqs')]);
      this.drawStat(ex, irq);
    } catch (e) {
      this.statNote.textContent = e.message;
      this.statNote.className = 'err';
    } finally {
      this.busy = false;
    }
  }

  async read(which) {
    const id = this.ids[which];
    try {
      return await api.raw(id, {});
    } catch (e) {
      // Deleted behind our back (idle-max, another operator): make it again.
      if (e instanceof ApiError && e.status === 404) { delete this.ids[which]; this.mine.delete(id); }
      throw e;
    }
  }

  drawVms() {
    const list = Array.isArray(this.vms) ? this.vms : [];
    this.vmNote.textContent = list.length ? `${list.length} VM${list.length > 1 ? 's' : ''}` : 'no VMs found on this host';
    this.vmNote.className = 'dim';
    const thing = (x) => (typeof x === 'string' ? x : x && (x.name || x.path || x.dev || x.device || x.tap || JSON.stringify(x)));
    this.vmBody.replaceChildren(...list.map((vm) => h('tr', { dataset: { vm: vm.name } },
      h('td', { class: 'b' }, vm.name), h('td', {}, vm.vmid || '–'),
      h('td', { class: 'mono' }, vm.uuid || '–'), h('td', {}, vm.pid),
      h('td', {}, (vm.vcpus || []).map((c) => `${c.index}:${c.tid}`).join(' ') || '–'),
      h('td', {}, (vm.disks || []).map(thing).join(', ') || '–'),
      h('td', {}, (vm.nics || []).map(thing).join(', ') || '–'))));
  }

  drawStat(ex, irq) {
    // rows keyed "vm\0vcpu"; every known vCPU appears, even an idle one.
    const rows = new Map();
    const row = (vm, vcpu) => {
      const k = `${vm}\0${vcpu}`;
      if (!rows.has(k)) rows.set(k, { vm, vcpu: String(vcpu), tid: '', total: 0, cls: {}, irqs: 0 });
      return rows.get(k);
    };
    for (const vm of Array.isArray(this.vms) ? this.vms : [])
      for (const c of vm.vcpus || []) row(vm.name, c.index).tid = c.tid;
    for (const [k, v] of Object.entries((ex && ex.value) || {})) {
      const [vm, vcpu, cls] = splitKey(k, 3);
      const r = row(vm, vcpu);
      r.total += v;
      r.cls[cls] = (r.cls[cls] || 0) + v;
    }
    for (const [k, v] of Object.entries((irq && irq.value) || {})) {
      const [vm, vcpu] = splitKey(k, 2);
      row(vm, vcpu).irqs += v;
    }
    const sorted = [...rows.values()].sort((a, b) => (a.vm < b.vm ? -1 : a.vm > b.vm ? 1 : Number(a.vcpu) - Number(b.vcpu)));
    const cell = (v) => h('td', { class: v ? '' : 'zero' }, fmtCount(v || 0));
    this.statBody.replaceChildren(...sorted.map((r) => h('tr', { dataset: { vm: r.vm, vcpu: r.vcpu } },
      h('td', { class: 'b' }, r.vm), h('td', {}, r.vcpu), h('td', { class: 'dim' }, r.tid || '–'),
      h('td', { class: 'b' }, fmtCount(r.total)), CLASSES.map((c) => cell(r.cls[c])), cell(r.irqs))));
    if (!sorted.length) this.statBody.replaceChildren(h('tr', {}, h('td', { colspan: 11, class: 'dim' }, 'no vCPUs yet')));
    const t = ex && ex.start_time;
    this.statNote.className = 'dim';
    this.statNote.textContent = t ? `second ${fmtTime(t)} · instrumentations #${this.ids.exits}, #${this.ids.irqs}` : '';
  }
}
