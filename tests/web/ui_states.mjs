// The UI's honest states against an agent that wants a bearer token:
// "token required" with a prompt, the token kept in sessionStorage, then
// "agent unreachable" once the agent is gone.
// Prints "ok DESC" / "not_ok DESC" lines like ui_test.mjs.
// Usage: node ui_states.mjs BASE_URL TOKEN AGENT_PID ARTIFACT_DIR USER_DATA_DIR
import { openLocalOnly, say } from './browser.mjs';

const [base, token, agentPid, artifacts, userData] = process.argv.slice(2);
const origin = new URL(base).origin;
const pageErrors = [];
const { ctx, page, outside } = await openLocalOnly(userData, origin, { width: 1200, height: 700 });
page.on('pageerror', (e) => pageErrors.push(e.message));

async function step(desc, fn) {
  try {
    const r = await fn();
    say(true, desc + (typeof r === 'string' ? ` (${r})` : ''));
  } catch (e) {
    say(false, `${desc}: ${String(e.message || e).split('\n')[0]}`);
  }
}

try {
  await page.goto(`${base}/#analytics`);
  await step('without a token the UI says a token is required and asks for it', async () => {
    await page.waitForSelector('#conn.token', { timeout: 10000 });
    await page.waitForSelector('#token-dialog[open]', { timeout: 5000 });
    return page.textContent('#banner');
  });
  await page.screenshot({ path: `${artifacts}/web-token.png` });
  await step('a wrong token keeps it asking', async () => {
    await page.fill('#token-input', `${token}x`);
    await page.click('#token-form button[type="submit"]');
    await page.waitForSelector('#token-dialog[open]', { timeout: 5000 });
    if (!(await page.$('#conn.token'))) throw new Error(`state ${await page.textContent('#conn')}`);
  });
  await step('with the token the catalogue loads', async () => {
    await page.fill('#token-input', token);
    await page.click('#token-form button[type="submit"]');
    await page.waitForSelector('#conn.ok', { timeout: 10000 });
    await page.waitForSelector('#f-metric option[value="vm.irqs"]', { state: 'attached', timeout: 10000 });
    return `${await page.$$eval('#f-metric option', (o) => o.length)} metrics`;
  });
  await step('the token is kept in sessionStorage only', async () => {
    const s = await page.evaluate(() => [sessionStorage.getItem('kvmscope.token'), localStorage.length]);
    if (s[0] !== token || s[1] !== 0) throw new Error(JSON.stringify(s));
  });
  await step('a reload keeps working with the stored token', async () => {
    await page.reload();
    await page.waitForSelector('#conn.ok', { timeout: 10000 });
    if (await page.$('#token-dialog[open]')) throw new Error('asked again');
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
