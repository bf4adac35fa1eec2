// The UI's honest states against an agent that wants a bearer token (and
// keeps no state dir): "token required" with a prompt and no polling while
// it waits, a tenant's token showing only the tenant's VMs, the token kept
// in sessionStorage, dashboards refused with the reason, then "agent
// unreachable" once the agent is gone.
// Prints "ok DESC" / "not_ok DESC" lines like ui_test.mjs.
// Usage: node ui_states.mjs BASE_URL TENANT_TOKEN TENANT_VM AGENT_PID ARTIFACT_DIR USER_DATA_DIR
import { openLocalOnly, say } from './browser.mjs';

const [base, token, tenantVm, agentPid, artifacts, userData] = process.argv.slice(2);
const origin = new URL(base).origin;
const pageErrors = [];
const { ctx, page, outside } = await openLocalOnly(userData, origin, { width: 1200, height: 700 });
page.on('pageerror', (e) => pageErrors.push(e.message));
const caRequests = [];
page.on('request', (r) => { if (new URL(r.url()).pathname.startsWith('/ca')) caRequests.push(Date.now()); });

async function step(desc, fn) {
  try {
    const r = await fn();
    say(true, desc + (typeof r === 'string' ? ` (${r})` : ''));
  } catch (e) {
    say(false, `${desc}: ${String(e.message || e).split('\n')[0]}`);
  }
}
const withToken = (path) => page.evaluate(async ([p, t]) => (await fetch(p, { headers: { Authorization: `Bearer ${t}` } })).json(), [path, token]);

try {
  await page.goto(`${base}/`);
  await step('without a token the UI says a token is required and asks for it', async () => {
    await page.waitForSelector('#conn.token', { timeout: 10000 });
    await page.waitForSelector('#token-dialog[open]', { timeout: 5000 });
    const why = await page.textContent('#token-why');
    if (!/asks for a bearer token/.test(why)) throw new Error(why);
    return why;
  });
  await page.screenshot({ path: `${artifacts}/web-token.png` });
  await step('while it waits for a token the page polls nothing (was a 401 every second)', async () => {
    const from = Date.now();
    await page.waitForTimeout(3000);
    const n = caRequests.filter((t) => t >= from).length;
    if (n) throw new Error(`${n} requests to /ca in 3 s`);
  });
  await step('a wrong token keeps it asking', async () => {
    await page.fill('#token-input', `${token}x`);
    await page.click('#token-form button:not([value="cancel"])');
    await page.waitForSelector('#token-dialog[open]', { timeout: 5000 });
    if (!(await page.$('#conn.token'))) throw new Error(`state ${await page.textContent('#conn')}`);
    const why = await page.textContent('#token-why');
    if (!/refused the token/.test(why)) throw new Error(why);
  });
  await step('with the tenant\'s token the overview shows the tenant\'s VM only', async () => {
    await page.fill('#token-input', token);
    await page.click('#token-form button:not([value="cancel"])');
    await page.waitForSelector('#conn.ok', { timeout: 10000 });
    await page.waitForSelector(`#vm-table tr[data-vm="${tenantVm}"]`, { timeout: 15000 });
    const vms = await page.$$eval('#vm-table tbody tr', (r) => r.map((x) => x.dataset.vm));
    if (vms.some((v) => v !== tenantVm)) throw new Error(`rows ${vms}`);
    return vms.join(',');
  });
  await step('a tenant gets no fleet card (the peer list is for operators), and no "refused token" banner', async () => {
    await page.waitForSelector('#fleet-card', { state: 'hidden', timeout: 10000 });
    const states = [];
    for (let i = 0; i < 12; i++) { states.push(await page.getAttribute('body', 'data-conn')); await page.waitForTimeout(500); }
    if (states.some((s) => s !== 'ok')) throw new Error(`connection states ${[...new Set(states)]}`);
  });
  await step('the token is kept in sessionStorage only', async () => {
    const s = await page.evaluate(() => [sessionStorage.getItem('kvmscope.token'), localStorage.length]);
    if (s[0] !== token || s[1] !== 0) throw new Error(JSON.stringify(s.map((x) => (x === token ? 'the token' : x))));
  });
  await step('a reload keeps working with the stored token, re-creating nothing', async () => {
    await page.waitForTimeout(1500);
    const before = (await withToken('/ca/instrumentations')).map((i) => i.id).sort();
    await page.reload();
    await page.waitForSelector('#conn.ok', { timeout: 10000 });
    if (await page.$('#token-dialog[open]')) throw new Error('asked again');
    await page.waitForSelector(`#kvmstat-table tr[data-vm="${tenantVm}"]`, { timeout: 10000 });
    await page.waitForTimeout(1500);
    const after = (await withToken('/ca/instrumentations')).map((i) => i.id).sort();
    if (JSON.stringify(before) !== JSON.stringify(after)) throw new Error(`instrumentations ${before} -> ${after}`);
    return `${after.length} instrumentations, the same ones`;
  });
  await step('the tenant\'s VM page works under its forced scope', async () => {
    await page.click(`#vm-table tr[data-vm="${tenantVm}"] a.vmlink`);
    await page.waitForSelector('#view-vm section.panel[data-panel="exits"][data-ready]', { timeout: 15000 });
  });
  await step('dashboards on an agent without a state dir: the reason, not a failure', async () => {
    await page.click('#dash-btn');
    await page.waitForFunction(() => /keeps no dashboards/.test(document.querySelector('#dash-msg').textContent), null, { timeout: 5000 });
    const disabled = await page.isDisabled('#dash-save');
    const msg = await page.textContent('#dash-msg');
    await page.keyboard.press('Escape');
    if (!disabled) throw new Error('save stays enabled');
    return msg;
  });
  process.kill(Number(agentPid), 'SIGTERM');
  await step('with the agent gone the UI says it is unreachable', async () => {
    await page.waitForSelector('#conn.unreachable', { timeout: 10000 });
    return page.textContent('#banner');
  });
  await page.screenshot({ path: `${artifacts}/web-unreachable.png` });
  await step('no uncaught errors in the page', async () => {
    if (pageErrors.length) throw new Error(pageErrors.slice(0, 3).join(' | '));
  });
  await step('no request left the agent\'s origin', async () => {
    if (outside.length) throw new Error(outside.slice(0, 3).join(' '));
  });
} catch (e) {
  say(false, `browser session: ${e.message}`);
} finally {
  await ctx.close();
}
