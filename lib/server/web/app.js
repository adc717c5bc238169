// The status page: polls /api/status and /api/history and redraws in place (no reload).
// Every value from the server goes into the page as text, never as markup: user and host
// names come from clients.

const state = {
  range: 'hour',
  pollMs: 2000,
  charts: new Map(),
  chartRange: '',
  status: undefined,
  history: undefined,
  updates: 0,
  errors: 0,
};
// For tests and the curious: the charts (uPlot instances) and the last documents drawn.
window.floatlm = state;

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') e.className = v;
    else if (k === 'style') Object.assign(e.style, v);
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

function duration(ms) {
  const s = Math.floor(ms / 1000);
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (d > 0) return `${d}d ${h}h`;
  if (h > 0) return `${h}h ${String(m).padStart(2, '0')}m`;
  if (m > 0) return `${m}m ${String(s % 60).padStart(2, '0')}s`;
  return `${s % 60}s`;
}

function when(ms) {
  return new Date(ms).toLocaleString();
}

function fill(id, rows, columns, empty) {
  const body = document.querySelector(`#${id} tbody`);
  const trs = rows.map((r) =>
    el(
      'tr',
      {},
      ...columns.map(([cls, get]) => {
        const v = get(r);
        return el('td', cls ? { class: cls } : {}, v);
      }),
    ),
  );
  if (trs.length === 0) {
    const n = document.querySelectorAll(`#${id} thead th`).length;
    trs.push(el('tr', {}, el('td', { class: 'empty', colspan: String(n) }, empty)));
  }
  body.replaceChildren(...trs);
}

function bar(f) {
  const total = Math.max(1, f.licensed);
  const pct = (n) => `${(100 * Math.max(0, n)) / total}%`;
  const idleReserved = Math.min(f.reservedIdle, Math.max(0, f.licensed - f.inUse));
  return el(
    'div',
    {
      class: 'bar',
      title: `${f.inUse} in use, ${f.reserved} reserved, ${f.free} free of ${f.licensed}`,
    },
    el('span', { class: 'inuse', style: { width: pct(Math.min(f.inUse, f.licensed)) } }),
    el('span', { class: 'reserved', style: { width: pct(idleReserved) } }),
    el('span', { class: 'free', style: { width: pct(f.licensed - f.inUse - idleReserved) } }),
  );
}

function drawStatus(s) {
  document.getElementById('server').textContent =
    `floatlmd ${s.version} · ${s.sessions} session(s) · store ${s.store.backend}${s.store.reachable ? '' : ' (unreachable)'}`;
  const ready = document.getElementById('ready');
  ready.textContent = s.ready === 'ready' ? 'ready' : `not ready: ${s.ready}`;
  ready.className = `badge ${s.ready === 'ready' ? 'ok' : 'bad'}`;
  document.getElementById('updated').textContent =
    `updated ${new Date(s.now).toLocaleTimeString()}`;
  const body = document.querySelector('#features tbody');
  const rows = s.features.map((f) =>
    el(
      'tr',
      { 'data-feature': f.name, 'data-version': f.version },
      el('td', { class: 'name' }, f.name, f.removed ? ' (removed)' : f.expired ? ' (expired)' : ''),
      el('td', {}, f.version),
      el('td', {}, f.vendor),
      el('td', {}, bar(f)),
      el('td', { class: 'num inuse-n' }, f.inUse),
      el('td', { class: 'num reserved-n' }, f.reserved),
      el('td', { class: 'num free-n' }, f.free),
      el('td', { class: 'num licensed-n' }, f.licensed),
      el('td', { class: 'num queued-n' }, f.queued),
      el('td', { class: 'num denied-n' }, f.denied),
    ),
  );
  if (rows.length === 0)
    rows.push(el('tr', {}, el('td', { class: 'empty', colspan: '10' }, 'no features')));
  body.replaceChildren(...rows);
  fill(
    'holders',
    s.holders,
    [
      ['', (h) => h.feature],
      ['', (h) => h.version],
      ['', (h) => h.user],
      ['', (h) => h.host],
      ['num', (h) => h.count],
      ['', (h) => when(h.since)],
      ['', (h) => duration(h.heldMs)],
    ],
    'nobody holds a seat',
  );
  fill(
    'queue',
    s.queue,
    [
      ['', (q) => q.feature],
      ['num', (q) => q.position],
      ['', (q) => q.user],
      ['', (q) => q.host],
      ['num', (q) => q.count],
      ['', (q) => duration(q.waitingMs)],
    ],
    'nobody is waiting',
  );
  fill(
    'denials',
    s.denials,
    [
      ['', (d) => d.feature],
      ['', (d) => d.reason],
      ['num', (d) => d.count],
    ],
    'no denials',
  );
}

// Points for buckets with few samples (a fresh history), lines alone once it has filled up.
const sparse = (u, si) => u.data[si].filter((v) => v !== null).length < 60;

function chartData(h, f) {
  return [h.t, f.inUse, f.queued, f.denied, f.licensed];
}

function drawHistory(h) {
  const box = document.getElementById('charts');
  const names = Object.keys(h.features).sort();
  const same =
    state.chartRange === h.range &&
    names.length === state.charts.size &&
    names.every((n) => state.charts.has(n));
  if (!same) {
    for (const c of state.charts.values()) c.destroy();
    state.charts.clear();
    box.replaceChildren();
    state.chartRange = h.range;
    for (const name of names) {
      const holder = el('div', { class: 'chart', 'data-feature': name }, el('h3', {}, name));
      box.append(holder);
      const opts = {
        width: 520,
        height: 200,
        scales: { x: { time: true }, y: { range: (_u, _min, max) => [0, Math.max(1, max)] } },
        series: [
          {},
          {
            label: 'in use',
            stroke: '#d35400',
            width: 2,
            paths: uPlot.paths.stepped({ align: 1 }),
            points: { show: sparse },
          },
          {
            label: 'queued',
            stroke: '#2471a3',
            width: 2,
            paths: uPlot.paths.stepped({ align: 1 }),
            points: { show: sparse },
          },
          {
            label: 'denied',
            stroke: '#c0392b',
            fill: 'rgba(192,57,43,0.25)',
            paths: uPlot.paths.bars({ size: [0.6, 12] }),
          },
          { label: 'licensed', stroke: '#7f8c8d', dash: [6, 4], width: 1 },
        ],
        axes: [{}, { label: 'seats' }],
      };
      state.charts.set(name, new uPlot(opts, chartData(h, h.features[name]), holder));
    }
    if (names.length === 0) box.append(el('p', { class: 'muted' }, 'no history yet'));
  } else {
    for (const name of names) state.charts.get(name).setData(chartData(h, h.features[name]));
  }
}

async function getJson(path) {
  const r = await fetch(path, { credentials: 'same-origin', cache: 'no-store' });
  if (!r.ok) throw new Error(`${path}: HTTP ${r.status}`);
  return r.json();
}

async function refresh() {
  try {
    const [s, h] = await Promise.all([
      getJson('/api/status'),
      getJson(`/api/history?range=${encodeURIComponent(state.range)}`),
    ]);
    state.pollMs = s.pollMs || state.pollMs;
    drawStatus(s);
    drawHistory(h);
    state.status = s;
    state.history = h;
    state.updates++;
  } catch (e) {
    state.errors++;
    const ready = document.getElementById('ready');
    ready.textContent = `no answer: ${e.message}`;
    ready.className = 'badge bad';
  }
  setTimeout(refresh, state.pollMs);
}

for (const b of document.querySelectorAll('#ranges button')) {
  b.addEventListener('click', () => {
    state.range = b.dataset.range;
    for (const o of document.querySelectorAll('#ranges button')) {
      o.setAttribute('aria-pressed', String(o === b));
    }
    getJson(`/api/history?range=${encodeURIComponent(state.range)}`).then(drawHistory, () => {});
  });
}

refresh();
