/**
 * The status page in a real browser (Debian's chromium driven by playwright-core) against a
 * real daemon over real UDP: the feature row's numbers, a chart with data points after real
 * checkouts, and the page following a checkout without a reload. Saves a screenshot in the
 * test's temp dir. Skips when /usr/bin/chromium is missing, except under CI=true.
 */
import { existsSync, mkdtempSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import t from 'tap';
import { startOperatorHttp } from '../helpers/operator.ts';
import { client, makeSite, startDaemon } from '../helpers/site.ts';

const CHROMIUM = '/usr/bin/chromium';

/** The page's state as app.js exposes it (`window.floatlm`). */
interface PageState {
  floatlm: { charts: Map<string, { data: (number | null)[][] }>; chartRange: string };
}

/** Browser-side: demo's in-use series (uPlot data column 1) reaches `n` in some bucket. */
function chartHas(n: number): boolean {
  const u = (globalThis as unknown as PageState).floatlm.charts.get('demo');
  return !!u && u.data[1]!.some((v) => v !== null && v >= n);
}

if (!existsSync(CHROMIUM)) {
  if (process.env.CI === 'true') {
    t.fail(`${CHROMIUM} is missing; CI must install it (apt-get install -y chromium)`);
  } else {
    t.plan(0, `${CHROMIUM} is missing: install it with 'apt-get install -y chromium' to run this`);
  }
} else {
  t.test('the status page follows real checkouts', async (t) => {
    const site = makeSite([
      'FEATURE demo demo 1.0 permanent 3',
      'FEATURE solver demo 2.5 permanent 1 QUEUE=yes',
    ]);
    const d = await startDaemon(site);
    t.teardown(() => d.close());
    const { http, base } = await startOperatorHttp(t, site, d, { pollMs: 200, sampleMs: 200 });
    const c = await client(site, d.address().port);
    t.teardown(() => c.close());
    const bob = await client(site, d.address().port, { user: 'bob', host: 'ws2' });
    t.teardown(() => bob.close());
    await c.checkout('demo');
    await bob.checkout('demo');
    http.sample();

    // A fresh profile (--user-data-dir) for every run.
    const profile = mkdtempSync(join(site.dir, 'chromium-'));
    const browser = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
      viewport: { width: 1280, height: 1400 },
    });
    t.teardown(() => browser.close());
    const page = await browser.newPage();
    const problems: string[] = [];
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    page.on('console', (m) => {
      if (m.type() === 'error') problems.push(`console: ${m.text()}`);
    });
    await page.goto(`${base}/`);

    const row = page.locator('#features tr[data-feature="demo"]');
    await row.locator('.inuse-n', { hasText: '2' }).waitFor();
    t.equal(await row.locator('.licensed-n').textContent(), '3');
    t.equal(await row.locator('.free-n').textContent(), '1');
    t.equal(await row.locator('.reserved-n').textContent(), '0');
    t.equal(await page.locator('#holders tbody tr').count(), 2, 'two holders listed');
    t.match(await page.locator('#holders tbody').textContent(), /bob.*ws2/s);

    // A chart with data points: the in-use series of demo has a nonzero bucket.
    await page.waitForFunction(chartHas, 2);
    t.ok(await page.locator('.chart[data-feature="demo"] canvas').count(), 'the chart is drawn');

    // One more checkout: the row follows without a reload.
    const updates = await page.evaluate<number>('window.floatlm.updates');
    const carol = await client(site, d.address().port, { user: 'carol', host: 'ws3' });
    t.teardown(() => carol.close());
    await carol.checkout('demo');
    await row.locator('.inuse-n', { hasText: '3' }).waitFor();
    t.equal(await row.locator('.free-n').textContent(), '0');
    const later = await page.evaluate<number>('window.floatlm.updates');
    t.ok(later > updates, 'updated by polling, same page');
    t.equal(
      await page.evaluate<number>("performance.getEntriesByType('navigation').length"),
      1,
      'never reloaded',
    );
    await page.waitForFunction(chartHas, 3);

    // The other ranges draw from the same history.
    await page.click('#ranges button[data-range="day"]');
    await page.waitForFunction(
      () => (globalThis as unknown as PageState).floatlm.chartRange === 'day',
    );
    const shot = join(site.dir, 'status-page.png');
    await page.screenshot({ path: shot, fullPage: true });
    t.ok(existsSync(shot), `screenshot saved: ${shot}`);
    t.same(problems, [], 'no script errors, no CSP violations');
  });
}
