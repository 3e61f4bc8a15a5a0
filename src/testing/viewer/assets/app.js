// The local Application Insights viewer: renders the view the path names from the JSON API
// (/api/...), and refreshes it when /api/stats says something arrived. No libraries, no build
// step; text is always inserted as text (never as HTML).
'use strict';

const POLL_MS = 2000;
const SVG_NS = 'http://www.w3.org/2000/svg';
const PALETTE = ['#0b61a4', '#c4314b', '#2b8a3e', '#8a5a00', '#6f42c1', '#0f7b8a', '#a3469d', '#5c6b7a'];

// ---- DOM helpers ---------------------------------------------------------------------------

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

// Appends children (arrays are flattened).
function add(el, ...children) {
  return append(el, children);
}

// Replaces an element's children (arrays are flattened, unlike replaceChildren).
function fill(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

function setAttrs(el, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    // Through the CSSOM: the pages' Content-Security-Policy forbids style attributes.
    else if (k === 'style') el.style.cssText = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  return el;
}

function h(tag, attrs, ...children) {
  return append(setAttrs(document.createElement(tag), attrs), children);
}

function s(tag, attrs, ...children) {
  return append(setAttrs(document.createElementNS(SVG_NS, tag), attrs), children);
}

// The data the server embedded in the page for its first rendering (see api.rs `page`): used
// once, so that the first view needs no request; refreshes fetch.
const PRELOAD = (() => {
  try {
    return JSON.parse(document.getElementById('preload').textContent);
  } catch (_) {
    return {};
  }
})();

function preloaded(key) {
  const value = PRELOAD[key];
  delete PRELOAD[key];
  return value;
}

async function api(path, key) {
  const early = key ? preloaded(key) : undefined;
  if (early !== undefined) {
    if (key !== 'view') return early;
    if (early.status === 200) return early.body;
    const error = new Error(early.body.error || `${path} answered ${early.status}`);
    error.status = early.status;
    throw error;
  }
  const response = await fetch(path, { cache: 'no-store' });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error(body.error || `${path} answered ${response.status}`);
    error.status = response.status;
    throw error;
  }
  return body;
}

// ---- Formatting ----------------------------------------------------------------------------

function ms(value) {
  if (value === null || value === undefined) return '–';
  if (value >= 10000) return `${(value / 1000).toFixed(1)} s`;
  if (value >= 100) return `${Math.round(value)} ms`;
  return `${value.toFixed(1)} ms`;
}

function clock(t) {
  if (!t) return '–';
  const d = new Date(t);
  const pad = (n, w = 2) => String(n).padStart(w, '0');
  const time = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
  const today = new Date();
  return d.toDateString() === today.toDateString() ? time : `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${time}`;
}

const role = (name) => name || '(no role)';
const kindLabel = {
  request: 'Request', dependency: 'Dependency', trace: 'Trace', exception: 'Exception',
  event: 'Event', metric: 'Metric', pageview: 'Page view', availability: 'Availability', other: 'Other',
};

function txHref(operationId) {
  return `/transactions/${encodeURIComponent(operationId)}`;
}

function searchHref(params) {
  const query = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') query.set(k, v);
  return `/search?${query}`;
}

function txLink(operationId, text) {
  return operationId ? h('a', { href: txHref(operationId) }, text || operationId) : '–';
}

function badge(kind) {
  return h('span', { class: `badge kind-${kind}` }, kindLabel[kind] || kind);
}

function outcome(item) {
  if (item.kind === 'exception') return h('span', { class: 'bad' }, 'Exception');
  if (item.success === false) return h('span', { class: 'bad' }, `Failed${item.result_code ? ` (${item.result_code})` : ''}`);
  if (item.success === true) return h('span', { class: 'good' }, item.result_code || 'OK');
  if (item.kind === 'trace') return item.severity || '';
  return '';
}

function summary(item) {
  switch (item.kind) {
    case 'request': return item.name || item.data;
    case 'dependency': return `${item.dependency_type ? item.dependency_type + ' ' : ''}${item.name}${item.target ? ' → ' + item.target : ''}`;
    case 'trace': return item.message;
    case 'exception': return `${item.exception_type}: ${item.message}`;
    default: return item.name || item.message || item.data;
  }
}

function table(caption, headers, rows, empty) {
  if (!rows.length) return h('p', { class: 'empty' }, empty || 'Nothing yet.');
  return h('div', { class: 'scroll' },
    h('table', {},
      h('caption', {}, caption),
      h('thead', {}, h('tr', {}, headers.map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, rows.map((cells) => h('tr', {}, cells.map((c, i) => (i === 0 ? h('th', { scope: 'row' }, c) : h('td', {}, c))))))));
}

function card(label, value, href, bad) {
  const content = [h('span', { class: 'value' }, String(value)), h('span', { class: 'label' }, label)];
  return h('li', { class: `card${bad ? ' bad-card' : ''}` }, href ? h('a', { href }, content) : content);
}

// ---- Views ---------------------------------------------------------------------------------

async function overview(view) {
  const data = await api('/api/overview?minutes=30', 'view');
  const sum = (f) => data.roles.reduce((n, r) => n + f(r), 0);
  const requests = sum((r) => r.requests.count);
  const failed = sum((r) => r.requests.failed);
  const depFailed = sum((r) => r.dependencies.failed);
  const exceptions = sum((r) => r.exceptions);
  add(view, 
    h('ul', { class: 'cards', 'aria-label': 'Totals' },
      card('requests', requests, searchHref({ type: 'request' })),
      card('failed requests', failed, searchHref({ type: 'request', success: 'false' }), failed > 0),
      card('failed dependencies', depFailed, searchHref({ type: 'dependency', success: 'false' }), depFailed > 0),
      card('exceptions', exceptions, searchHref({ type: 'exception' }), exceptions > 0),
      card('roles', data.roles.length, '/map')),
    h('section', { 'aria-labelledby': 'rate-h' },
      h('h2', { id: 'rate-h' }, 'Request rate (per minute, last 30 minutes)'),
      rateChart(data.request_rate)),
    h('section', { 'aria-labelledby': 'roles-h' },
      h('h2', { id: 'roles-h' }, 'Roles'),
      table('Telemetry per role (cloud role name)',
        ['Role', 'Requests', 'Failed', 'Avg duration', 'Dependencies', 'Failed deps', 'Traces', 'Exceptions', 'Events'],
        data.roles.map((r) => [
          h('a', { href: searchHref({ role: r.name }) }, role(r.name)),
          r.requests.count, r.requests.failed, ms(r.requests.avg_ms), r.dependencies.count,
          r.dependencies.failed, r.traces, r.exceptions, r.events,
        ]), 'No telemetry yet. Send some with the connection string above.')),
    h('section', { 'aria-labelledby': 'slow-h' },
      h('h2', { id: 'slow-h' }, 'Slowest operations'),
      table('Operations by average duration',
        ['Operation', 'Role', 'Calls', 'Failed', 'Avg duration', 'Slowest', 'Slowest transaction'],
        data.slowest.map((o) => [
          h('a', { href: searchHref({ type: 'request', role: o.role, operation: o.name }) }, o.name || '(unnamed)'),
          role(o.role), o.calls.count, o.calls.failed, ms(o.calls.avg_ms), ms(o.max_ms),
          txLink(o.slowest_operation_id, 'Open'),
        ]), 'No requests yet.')));
}

function rateChart(points) {
  const width = 900, height = 140, pad = 28;
  const max = Math.max(1, ...points.map((p) => p.requests));
  const bar = (width - pad) / points.length;
  const total = points.reduce((n, p) => n + p.requests, 0);
  const failed = points.reduce((n, p) => n + p.failed, 0);
  return s('svg', { viewBox: `0 0 ${width} ${height + 20}`, class: 'chart', role: 'img', 'aria-label': `${total} requests, ${failed} failed, in the last ${points.length} minutes` },
    s('text', { x: 0, y: 12, class: 'axis' }, String(max)),
    s('text', { x: 0, y: height, class: 'axis' }, '0'),
    s('line', { x1: pad, x2: width, y1: height, y2: height, class: 'grid' }),
    points.map((p, i) => {
      const x = pad + i * bar;
      const okH = ((p.requests - p.failed) / max) * (height - 16);
      const badH = (p.failed / max) * (height - 16);
      return s('g', {},
        s('title', {}, `${clock(p.t)}: ${p.requests} requests, ${p.failed} failed`),
        s('rect', { x: x + 1, y: height - okH - badH, width: bar - 2, height: okH, class: 'bar-ok' }),
        s('rect', { x: x + 1, y: height - badH, width: bar - 2, height: badH, class: 'bar-bad' }));
    }),
    s('text', { x: pad, y: height + 16, class: 'axis' }, clock(points[0].t)),
    s('text', { x: width, y: height + 16, class: 'axis', 'text-anchor': 'end' }, 'now'));
}

async function map(view) {
  const data = await api('/api/map', 'view');
  if (!data.nodes.length) {
    add(view, h('p', { class: 'empty' }, 'No telemetry yet: the map appears when requests and dependencies arrive.'));
    return;
  }
  add(view, 
    h('p', { class: 'hint' }, 'Roles (services) and the components they call. Select a node or a call to list those calls.'),
    mapSvg(data),
    h('section', { 'aria-labelledby': 'calls-h' },
      h('h2', { id: 'calls-h' }, 'Calls'),
      table('Calls between nodes of the map',
        ['From', 'To', 'Calls', 'Failed', 'Avg duration', 'Calls list'],
        data.edges.map((e) => [role(e.from), role(e.to), e.calls.count, e.calls.failed, ms(e.calls.avg_ms),
          h('a', { href: searchHref({ from: e.from, to: e.to }) }, `Calls from ${role(e.from)} to ${role(e.to)}`)]))),
    h('section', { 'aria-labelledby': 'nodes-h' },
      h('h2', { id: 'nodes-h' }, 'Nodes'),
      table('Nodes of the map', ['Node', 'Kind', 'Requests served', 'Failed', 'Exceptions', 'Instances'],
        data.nodes.map((n) => [
          n.kind === 'role' ? h('a', { href: searchHref({ role: n.id }) }, role(n.id)) : role(n.id),
          n.kind, n.calls.count, n.calls.failed, n.exceptions, n.instances.join(', ')]))));
}

function mapSvg(data) {
  // Columns by call depth from the users (bounded relaxation: cycles stop growing).
  const layer = new Map(data.nodes.map((n) => [n.id, n.kind === 'users' ? 0 : 1]));
  for (let i = 0; i < data.nodes.length; i++) {
    for (const e of data.edges) {
      const next = Math.min(layer.get(e.from) + 1, data.nodes.length);
      if (e.from !== e.to && next > layer.get(e.to)) layer.set(e.to, next);
    }
  }
  const columns = [];
  for (const n of data.nodes) (columns[layer.get(n.id)] ||= []).push(n);
  const used = columns.filter(Boolean);
  const nodeW = 190, nodeH = 58, colGap = 200, rowGap = 40;
  const width = used.length * (nodeW + colGap) - colGap + 40;
  const height = Math.max(...used.map((c) => c.length)) * (nodeH + rowGap) - rowGap + 40;
  const pos = new Map();
  used.forEach((column, ci) => {
    const top = (height - (column.length * (nodeH + rowGap) - rowGap)) / 2;
    column.forEach((n, ri) => pos.set(n.id, { x: 20 + ci * (nodeW + colGap), y: top + ri * (nodeH + rowGap) }));
  });
  const edges = data.edges.map((e) => {
    const a = pos.get(e.from), b = pos.get(e.to);
    if (!a || !b) return null;
    const x1 = a.x + nodeW, y1 = a.y + nodeH / 2;
    let x2 = b.x, y2 = b.y + nodeH / 2;
    if (b.x <= a.x) { x2 = b.x + nodeW / 2; y2 = b.y + (b.y > a.y ? 0 : nodeH); }
    const mx = (x1 + x2) / 2, my = (y1 + y2) / 2;
    const bad = e.calls.failed > 0;
    const label = `${e.calls.count} calls · ${ms(e.calls.avg_ms)}${bad ? ` · ${e.calls.failed} failed` : ''}`;
    return s('a', { href: searchHref({ from: e.from, to: e.to }), class: `edge${bad ? ' edge-bad' : ''}` },
      s('title', {}, `${role(e.from)} → ${role(e.to)}: ${label}`),
      s('path', { d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}`, 'marker-end': `url(#arrow${bad ? '-bad' : ''})` }),
      s('rect', { x: mx - 78, y: my - 11, width: 156, height: 20, rx: 4, class: 'edge-label-bg' }),
      s('text', { x: mx, y: my + 4, 'text-anchor': 'middle', class: 'edge-label' }, label));
  });
  const nodes = data.nodes.map((n) => {
    const p = pos.get(n.id);
    const detail = n.kind === 'users' ? 'callers' : n.kind === 'external' ? 'no telemetry of its own'
      : `${n.calls.count} requests · ${n.calls.failed} failed`;
    const shape = [
      s('title', {}, `${role(n.id)} (${n.kind}): ${detail}`),
      s('rect', { x: p.x, y: p.y, width: nodeW, height: nodeH, rx: n.kind === 'role' ? 10 : 29, class: `node node-${n.kind}${n.calls.failed || n.exceptions ? ' node-bad' : ''}` }),
      s('text', { x: p.x + nodeW / 2, y: p.y + 24, 'text-anchor': 'middle', class: 'node-name' }, shorten(role(n.id), 24)),
      s('text', { x: p.x + nodeW / 2, y: p.y + 43, 'text-anchor': 'middle', class: 'node-detail' }, detail),
    ];
    return n.kind === 'users' ? s('g', { class: 'map-node' }, shape)
      : s('a', { href: n.kind === 'role' ? searchHref({ role: n.id }) : searchHref({ to: n.id, from: fromOf(data, n.id) }), class: 'map-node' }, shape);
  });
  const marker = (id, cls) => s('marker', { id, viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 8, markerHeight: 8, orient: 'auto-start-reverse' },
    s('path', { d: 'M0,0 L10,5 L0,10 z', class: cls }));
  return h('figure', { class: 'map' },
    s('svg', { viewBox: `0 0 ${width} ${height}`, width, height, role: 'group', 'aria-label': 'Application map' },
      s('defs', {}, marker('arrow', 'arrow'), marker('arrow-bad', 'arrow-bad')), edges, nodes),
    h('figcaption', {}, `${data.nodes.length} nodes, ${data.edges.length} connections. Red: calls that failed.`));
}

function fromOf(data, id) {
  const edge = data.edges.find((e) => e.to === id);
  return edge ? edge.from : '';
}

function shorten(text, n) {
  return text.length > n ? `${text.slice(0, n - 1)}…` : text;
}

const TIME_WINDOWS = [['', 'Any time'], ['5', 'Last 5 minutes'], ['30', 'Last 30 minutes'], ['60', 'Last hour'], ['1440', 'Last 24 hours']];

async function search(view, refresh) {
  const params = new URLSearchParams(location.search);
  if (!refresh) {
    const roles = (await api('/api/overview?minutes=1', 'roles')).roles.map((r) => r.name);
    const field = (label, control) => h('div', { class: 'field' }, h('label', { for: control.id }, label), control);
    const select = (name, options) => {
      const el = h('select', { id: `f-${name}`, name }, options.map(([v, t]) => h('option', { value: v }, t)));
      el.value = params.get(name) || '';
      return el;
    };
    const hidden = ['from', 'to', 'operation', 'exception'].filter((k) => params.get(k));
    add(view, h('form', { class: 'filters', method: 'get', action: '/search', role: 'search', 'aria-label': 'Filter telemetry' },
      field('Type', select('type', [['', 'All types'], ...['request', 'dependency', 'trace', 'exception', 'event', 'pageview', 'availability'].map((k) => [k, kindLabel[k]])])),
      field('Role', select('role', [['', 'All roles'], ...roles.map((r) => [r, role(r)])])),
      field('Time', select('minutes', TIME_WINDOWS)),
      field('Result', select('success', [['', 'Any result'], ['true', 'Successful'], ['false', 'Failed']])),
      field('Text', h('input', { id: 'f-text', name: 'text', type: 'search', value: params.get('text') || '', placeholder: 'name, message, target, id…' })),
      hidden.map((k) => h('input', { type: 'hidden', name: k, value: params.get(k) })),
      h('div', { class: 'field' }, h('button', { type: 'submit' }, 'Search')),
      hidden.length ? h('p', { class: 'hint' }, `Also filtered by ${hidden.map((k) => `${k} “${params.get(k)}”`).join(', ')}. `, h('a', { href: '/search' }, 'Clear all filters')) : null));
    add(view, h('div', { id: 'results' }));
  }
  const query = new URLSearchParams();
  for (const key of ['type', 'role', 'text', 'success', 'from', 'to', 'operation', 'exception']) if (params.get(key)) query.set(key, params.get(key));
  const minutes = Number(params.get('minutes'));
  if (minutes > 0) query.set('since', String(Date.now() - minutes * 60000));
  const data = await api(`/api/search?${query}`, 'view');
  const results = view.querySelector('#results');
  fill(results, 
    h('p', { class: 'count' }, `${data.total} matching item${data.total === 1 ? '' : 's'}${data.total > data.items.length ? `, newest ${data.items.length} shown` : ''}.`),
    table('Matching telemetry, newest first', ['Time', 'Type', 'Role', 'Item', 'Result', 'Duration', 'Transaction'],
      data.items.map((i) => [
        clock(i.time_ms), badge(i.kind), role(i.role),
        i.operation_id ? h('a', { href: txHref(i.operation_id) }, summary(i)) : summary(i),
        outcome(i), i.duration_ms === null ? '' : ms(i.duration_ms),
        i.operation_id ? h('a', { href: txHref(i.operation_id), 'aria-label': `Transaction ${i.operation_id}` }, i.operation_id.slice(0, 8)) : '–',
      ]), 'No telemetry matches these filters.'));
}

async function transaction(view, refresh, operationId) {
  let data;
  try {
    data = await api(`/api/transactions/${encodeURIComponent(operationId)}`, 'view');
  } catch (error) {
    if (error.status !== 404) throw error;
    fill(view, h('p', { class: 'empty' }, `No item of operation ${operationId} is stored: it has not arrived yet, or it was evicted.`));
    return;
  }
  const span = Math.max(data.end_ms - data.start_ms, 1);
  const roles = [...new Set(data.items.map((i) => role(i.role)))];
  const failures = data.items.filter((i) => i.success === false || i.kind === 'exception').length;
  const rows = data.items.map((item, n) => {
    const left = ((item.time_ms - data.start_ms) / span) * 100;
    const width = item.duration_ms === null ? 0 : Math.max((item.duration_ms / span) * 100, 0.6);
    const bar = item.duration_ms === null
      ? h('span', { class: `tick kind-${item.kind}`, style: `left:${Math.min(left, 99.4)}%` })
      : h('span', { class: `span kind-${item.kind}${item.success === false ? ' failed' : ''}`, style: `left:${Math.min(left, 99.4)}%;width:${Math.min(width, 100 - left)}%` });
    return h('tr', { class: item.success === false || item.kind === 'exception' ? 'row-bad' : '' },
      h('th', { scope: 'row' }, h('div', { class: 'tree', style: `padding-left:${item.depth * 1.25}rem` },
        item.depth ? h('span', { class: 'branch', 'aria-hidden': 'true' }, '└ ') : null,
        badge(item.kind), ' ', h('a', { href: `#item-${n}` }, shorten(summary(item), 90)))),
      h('td', {}, role(item.role)),
      h('td', { class: 'timeline-cell' }, h('div', { class: 'timeline', role: 'img', 'aria-label': `starts at +${ms(item.time_ms - data.start_ms)}${item.duration_ms === null ? '' : `, lasts ${ms(item.duration_ms)}`}` }, bar)),
      h('td', {}, item.duration_ms === null ? '' : ms(item.duration_ms)),
      h('td', {}, outcome(item)));
  });
  fill(view, 
    h('p', { class: 'opid' }, 'Operation id ', h('code', {}, data.operation_id)),
    h('ul', { class: 'cards', 'aria-label': 'Transaction summary' },
      card('items', data.items.length), card(roles.length === 1 ? 'role' : 'roles', roles.length),
      card('duration', ms(data.end_ms - data.start_ms)), card('failures', failures, null, failures > 0)),
    h('p', {}, `Roles: ${roles.join(', ')}. Started ${clock(data.start_ms)}.`),
    h('div', { class: 'scroll' }, h('table', { class: 'tx' },
      h('caption', {}, 'Items of the transaction as a tree (children under the item they belong to), with a timeline'),
      h('thead', {}, h('tr', {}, ['Item', 'Role', 'Timeline', 'Duration', 'Result'].map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, rows))),
    h('h2', {}, 'Details'),
    data.items.map((item, n) => details(item, n)));
}

function details(item, n) {
  const env = item.envelope || {};
  const base = (env.data && env.data.baseData) || {};
  const scalar = (v) => (typeof v === 'object' && v !== null ? JSON.stringify(v) : String(v));
  const fields = Object.entries(base).filter(([k]) => !['properties', 'measurements', 'exceptions', 'metrics', 'ver'].includes(k));
  const dl = (pairs) => h('dl', { class: 'fields' }, pairs.map(([k, v]) => [h('dt', {}, k), h('dd', {}, scalar(v))]));
  const exceptions = Array.isArray(base.exceptions) ? base.exceptions : [];
  return h('section', { id: `item-${n}`, class: 'item', 'aria-labelledby': `item-${n}-h` },
    h('h3', { id: `item-${n}-h` }, badge(item.kind), ' ', summary(item)),
    dl([['time', env.time], ['role', role(item.role)], ['type', env.data && env.data.baseType], ...fields]),
    exceptions.map((e) => h('div', {},
      h('h4', {}, `${e.typeName}: ${e.message}`),
      e.stack ? h('pre', {}, e.stack) : null,
      Array.isArray(e.parsedStack) ? h('pre', {}, e.parsedStack.map((f) => `${f.level}: ${f.method}${f.fileName ? ` at ${f.fileName}:${f.line}` : ''}`).join('\n')) : null)),
    base.properties && Object.keys(base.properties).length ? [h('h4', {}, 'Properties (customDimensions)'), dl(Object.entries(base.properties))] : null,
    base.measurements && Object.keys(base.measurements).length ? [h('h4', {}, 'Measurements'), dl(Object.entries(base.measurements))] : null,
    h('details', {}, h('summary', {}, 'Tags'), dl(Object.entries(env.tags || {}))),
    h('details', {}, h('summary', {}, 'Envelope as received (JSON)'), h('pre', {}, JSON.stringify(env, null, 2))));
}

async function failures(view) {
  const data = await api('/api/failures', 'view');
  const rate = (g) => `${g.failed} of ${g.total}`;
  fill(view, 
    h('section', { 'aria-labelledby': 'ops-h' },
      h('h2', { id: 'ops-h' }, 'Failed operations'),
      table('Requests that failed, by operation', ['Operation', 'Role', 'Failed', 'Failed requests', 'Example'],
        data.operations.map((g) => [g.name || '(unnamed)', role(g.role), rate(g),
          h('a', { href: searchHref({ type: 'request', role: g.role, operation: g.name, success: 'false' }) }, 'List'),
          txLink(g.example_operation_id, 'Example transaction')]), 'No failed requests.')),
    h('section', { 'aria-labelledby': 'ex-h' },
      h('h2', { id: 'ex-h' }, 'Exceptions'),
      table('Exceptions by type and operation', ['Exception type', 'Role', 'Operation', 'Count', 'Message', 'Example'],
        data.exceptions.map((g) => [
          h('a', { href: searchHref({ type: 'exception', exception: g.name, role: g.role }) }, g.name || '(no type)'),
          role(g.role), g.operation_name, g.failed, g.message, txLink(g.example_operation_id, 'Example transaction')]), 'No exceptions.')),
    h('section', { 'aria-labelledby': 'deps-h' },
      h('h2', { id: 'deps-h' }, 'Failed dependencies'),
      table('Dependency calls that failed, by target', ['Dependency', 'Role', 'Failed', 'Message', 'Example'],
        data.dependencies.map((g) => [g.name, role(g.role), rate(g), g.message, txLink(g.example_operation_id, 'Example transaction')]),
        'No failed dependencies.')));
}

async function metrics(view) {
  const data = await api('/api/metrics', 'view');
  if (!data.metrics.length) {
    fill(view, h('p', { class: 'empty' }, 'No custom metrics yet.'));
    return;
  }
  fill(view, 
    h('nav', { 'aria-label': 'Metrics on this page', class: 'toc' }, h('ul', {}, data.metrics.map((m, i) => h('li', {}, h('a', { href: `#metric-${i}` }, m.name))))),
    data.metrics.map((m, i) => h('section', { id: `metric-${i}`, class: 'metric', 'aria-labelledby': `metric-${i}-h` },
      h('h2', { id: `metric-${i}-h` }, m.name), metricChart(m),
      h('ul', { class: 'legend' }, m.series.map((sr, j) => h('li', {},
        h('span', { class: 'swatch', style: `background:${PALETTE[j % PALETTE.length]}`, 'aria-hidden': 'true' }),
        `${role(sr.role)}${sr.dimensions ? ` · ${sr.dimensions}` : ''}: latest ${fmt(sr.points[sr.points.length - 1].value)} (${sr.points.length} point${sr.points.length === 1 ? '' : 's'})`))),
      h('details', {}, h('summary', {}, 'Data'),
        table(`${m.name}: every point`, ['Time', 'Series', 'Value', 'Count', 'Min', 'Max'],
          m.series.flatMap((sr) => sr.points.map((p) => [clock(p.t), `${role(sr.role)} ${sr.dimensions}`, fmt(p.value), p.count ?? '', p.min === null ? '' : fmt(p.min), p.max === null ? '' : fmt(p.max)])))))));
}

function fmt(v) {
  return Number.isInteger(v) ? String(v) : v.toFixed(3).replace(/0+$/, '');
}

function metricChart(metric) {
  const width = 900, height = 180, left = 60, bottom = 22;
  const points = metric.series.flatMap((sr) => sr.points);
  const t0 = Math.min(...points.map((p) => p.t)), t1 = Math.max(...points.map((p) => p.t));
  const v0 = Math.min(0, ...points.map((p) => p.value)), v1 = Math.max(...points.map((p) => p.value), v0 + 1);
  const x = (t) => (t1 === t0 ? left + (width - left) / 2 : left + ((t - t0) / (t1 - t0)) * (width - left - 10));
  const y = (v) => 8 + (1 - (v - v0) / (v1 - v0)) * (height - bottom - 8);
  return s('svg', { viewBox: `0 0 ${width} ${height}`, class: 'chart', role: 'img', 'aria-label': `${metric.name}: ${metric.series.length} series from ${clock(t0)} to ${clock(t1)}, values ${fmt(v0)} to ${fmt(v1)}` },
    s('line', { x1: left, x2: width, y1: y(v0), y2: y(v0), class: 'grid' }),
    s('line', { x1: left, x2: width, y1: y(v1), y2: y(v1), class: 'grid' }),
    s('text', { x: left - 6, y: y(v1) + 4, 'text-anchor': 'end', class: 'axis' }, fmt(v1)),
    s('text', { x: left - 6, y: y(v0) + 4, 'text-anchor': 'end', class: 'axis' }, fmt(v0)),
    s('text', { x: left, y: height - 4, class: 'axis' }, clock(t0)),
    s('text', { x: width, y: height - 4, 'text-anchor': 'end', class: 'axis' }, clock(t1)),
    metric.series.map((sr, j) => {
      const color = PALETTE[j % PALETTE.length];
      return s('g', {},
        sr.points.length > 1 ? s('polyline', { points: sr.points.map((p) => `${x(p.t)},${y(p.value)}`).join(' '), fill: 'none', stroke: color, 'stroke-width': 2 }) : null,
        sr.points.map((p) => s('circle', { cx: x(p.t), cy: y(p.value), r: 3.5, fill: color }, s('title', {}, `${clock(p.t)} ${role(sr.role)} ${sr.dimensions}: ${fmt(p.value)}`))));
    }));
}

async function rejected(view) {
  const data = await api('/api/rejected', 'view');
  fill(view, 
    h('p', { class: 'hint' }, 'Items the ingestion contract refused, newest first, with the reason the endpoint answered. Azure Monitor would drop them too.'),
    table('Rejected items', ['Received', 'Status', 'Reason', 'Item'],
      data.rejected.map((r) => [clock(r.received_ms), `${r.status}${r.scripted ? ' (scripted fault)' : ''}`, r.reason,
        r.index === null ? 'whole request' : h('details', {}, h('summary', {}, `item ${r.index} of its request`), h('pre', {}, JSON.stringify(r.item, null, 2)))]),
      'Nothing rejected: every item honoured the contract.'));
}

// ---- Live metrics --------------------------------------------------------------------------

const LIVE_MS = 1000;

function liveValue(value, unit) {
  if (value === null || value === undefined) return '–';
  if (unit === 'ms') return ms(value);
  if (unit === 'bytes') {
    const mib = value / (1024 * 1024);
    return mib >= 1024 ? `${(mib / 1024).toFixed(2)} GiB` : `${mib.toFixed(1)} MiB`;
  }
  if (unit === '%') return `${value.toFixed(1)} %`;
  return `${fmt(value)}${unit}`;
}

// A small line of the last minute's samples; its text alternative says the latest value and
// the range (the numbers are in the card beside it too).
function sparkline(metric, values, times) {
  const width = 160, height = 36;
  const known = values.filter((v) => v !== null && v !== undefined);
  const max = Math.max(...known, 0), min = Math.min(...known, 0);
  const span = max - min || 1;
  const x = (i) => (values.length < 2 ? width / 2 : (i / (values.length - 1)) * width);
  const y = (v) => 2 + (1 - (v - min) / span) * (height - 4);
  const points = values.map((v, i) => (v === null || v === undefined ? null : `${x(i).toFixed(1)},${y(v).toFixed(1)}`)).filter(Boolean);
  const latest = known.length ? known[known.length - 1] : null;
  const label = known.length
    ? `${metric.label}: latest ${liveValue(latest, metric.unit)}, from ${liveValue(Math.min(...known), metric.unit)} to ${liveValue(Math.max(...known), metric.unit)} over ${known.length} seconds${times.length ? ` until ${clock(times[times.length - 1])}` : ''}`
    : `${metric.label}: no samples`;
  return s('svg', { viewBox: `0 0 ${width} ${height}`, class: 'spark', role: 'img', 'aria-label': label },
    s('line', { x1: 0, x2: width, y1: y(min), y2: y(min), class: 'grid' }),
    points.length > 1 ? s('polyline', { points: points.join(' '), class: 'spark-line' }) : null,
    points.length ? s('circle', { cx: points[points.length - 1].split(',')[0], cy: points[points.length - 1].split(',')[1], r: 2.5, class: 'spark-dot' }) : null);
}

const BAD_METRICS = ['request_failed', 'dependency_failed', 'exception_rate'];

function liveDocument(entry) {
  const d = entry.document || {};
  const type = d.DocumentType;
  const kind = { Request: 'request', RemoteDependency: 'dependency', Exception: 'exception', Trace: 'trace', Event: 'event' }[type] || 'other';
  const what = {
    Request: () => `${d.Name || ''}${d.Url ? ` (${d.Url})` : ''}`,
    RemoteDependency: () => `${d.Name || ''}${d.CommandName ? ` — ${d.CommandName}` : ''}`,
    Exception: () => `${d.ExceptionType || ''}: ${d.ExceptionMessage || ''}`,
    Trace: () => d.Message || '',
    Event: () => d.Name || '',
  }[type] || (() => JSON.stringify(d));
  const code = d.ResponseCode ?? d.ResultCode ?? '';
  return [clock(entry.t), badge(kind), `${role(entry.role)} · ${entry.instance || '–'}`, what(), code, d.Duration || ''];
}

async function live(view) {
  const data = await api('/api/live', 'view');
  const sources = data.sources;
  add(view,
    h('p', { class: 'hint' },
      'Live Metrics from the programs that use this server\u2019s connection string (its LiveEndpoint). ',
      'While this page is open they post one sample per second; when no Live page has polled for ',
      `${Math.round(data.watch_ms / 1000)} seconds, they only ping. `,
      `${data.posts} posts and ${data.pings} pings received`,
      data.problem_count ? ` · ${data.problem_count} unreadable` : '', '.'),
    sources.length === 0
      ? h('p', { class: 'empty' }, 'No program has pinged yet. Run one with this server\u2019s connection string and Live Metrics enabled (e.g. cargo run --example live_metrics).')
      : sources.map((src, i) => h('section', { class: 'live-source', 'aria-labelledby': `live-${i}-h` },
        h('h2', { id: `live-${i}-h` }, `${role(src.role)} · ${src.instance || '(no instance)'}`),
        h('p', { class: 'hint' },
          src.last_post_ms ? `Last sample ${clock(src.last_post_ms)}` : 'No sample yet (pinging only)',
          src.last_ping_ms ? ` · last ping ${clock(src.last_ping_ms)}` : '',
          ` · ${src.samples} of ${data.capacity} samples kept · ${src.evicted} evicted`,
          src.machine ? ` · machine ${src.machine}` : '', src.stream_id ? ` · stream ${src.stream_id}` : ''),
        h('ul', { class: 'cards live-cards', 'aria-label': `Live metrics of ${role(src.role)} ${src.instance || ''}` },
          data.metrics.map((m) => {
            const key = m.key;
            const latest = src.latest[key];
            const bad = BAD_METRICS.includes(key) && latest > 0;
            return h('li', { class: `card live-card${bad ? ' bad-card' : ''}` },
              h('span', { class: 'label' }, m.label),
              h('span', { class: 'value' }, liveValue(latest, m.unit)),
              sparkline(m, src.series[key] || [], src.times));
          })))),
    h('section', { 'aria-labelledby': 'live-docs-h' },
      h('h2', { id: 'live-docs-h' }, 'Latest failed requests, failed dependencies, exceptions and traces'),
      table('Documents the programs sent with their samples, newest first', ['Received', 'Type', 'Role · instance', 'What', 'Code', 'Duration'],
        data.documents.map(liveDocument),
        'No documents yet: failed requests and dependencies, exceptions and traces appear here while this page is open.')),
    data.problems.length
      ? h('section', { 'aria-labelledby': 'live-problems-h' },
        h('h2', { id: 'live-problems-h' }, 'Unreadable pings and posts'),
        table('Problems, newest first', ['Received', 'Problem'], data.problems.map((p) => [clock(p.t), p.message])))
      : null);
}

// ---- Routing and refresh -------------------------------------------------------------------

function route() {
  const path = location.pathname;
  if (path.startsWith('/transactions/')) {
    const id = decodeURIComponent(path.slice('/transactions/'.length));
    return { title: 'End-to-end transaction', nav: '/search', render: (v, r) => transaction(v, r, id) };
  }
  const views = {
    '/': { title: 'Overview', render: overview },
    '/map': { title: 'Application map', render: map },
    '/search': { title: 'Transaction search', render: search },
    '/failures': { title: 'Failures', render: failures },
    '/metrics': { title: 'Custom metrics', render: metrics },
    '/rejected': { title: 'Rejected items', render: rejected },
    '/live': { title: 'Live metrics', render: live, every: LIVE_MS },
  };
  return views[path] || { title: 'Not found', render: (v) => v.replaceChildren(h('p', {}, 'No such view.')) };
}

const state = { version: null, busy: false, paused: false };

async function stats() {
  const st = await api('/api/stats', 'stats');
  const text = `${st.stored} of ${st.capacity} items kept · ${st.evicted} evicted · ${st.rejected} rejected · ${st.requests} track requests`;
  const line = document.getElementById('stats');
  // Only on change: the line is a polite live region.
  if (line.dataset.text !== text) {
    line.dataset.text = text;
    line.replaceChildren(
      `${st.stored} of ${st.capacity} items kept · `,
      h('span', { id: 'evicted' }, `${st.evicted} evicted`), ' · ',
      h('a', { href: '/rejected' }, `${st.rejected} rejected`),
      ` · ${st.requests} track requests`);
  }
  return st.version;
}

function pauseButton() {
  const button = h('button', { type: 'button', class: 'pause', 'aria-pressed': 'false' }, 'Pause updates');
  button.addEventListener('click', () => {
    state.paused = !state.paused;
    button.setAttribute('aria-pressed', String(state.paused));
    button.textContent = state.paused ? 'Resume updates' : 'Pause updates';
  });
  return button;
}

async function render(view, current, refresh) {
  if (state.busy) return;
  state.busy = true;
  try {
    if (refresh && current.render !== search) {
      // Render off-page, then swap: no flash of an empty page, the scroll position stays.
      const next = h('div');
      await current.render(next, true);
      fill(view, [...next.childNodes]);
    } else {
      await current.render(view, refresh);
    }
  } catch (error) {
    fill(view, h('p', { class: 'error', role: 'alert' }, `Could not load this view: ${error.message}`));
  } finally {
    state.busy = false;
  }
}

async function main() {
  const current = route();
  document.title = `${current.title} · Local Application Insights`;
  document.getElementById('title').textContent = current.title;
  const nav = current.nav || location.pathname;
  for (const a of document.querySelectorAll('nav[aria-label="Views"] a')) {
    if (a.getAttribute('href') === nav) a.setAttribute('aria-current', 'page');
  }
  const view = document.getElementById('view');
  view.replaceChildren();
  document.getElementById('controls').append(pauseButton());
  try {
    state.version = await stats();
  } catch (error) {
    add(view, h('p', { class: 'error', role: 'alert' }, `The viewer's server does not answer: ${error.message}`));
    return;
  }
  await render(view, current, false);
  if (current.every) {
    // A live view reads its API every second (each read also keeps the programs posting).
    setInterval(() => {
      if (!state.paused) render(view, current, true);
    }, current.every);
  }
  setInterval(async () => {
    try {
      const version = await stats();
      if (version !== state.version && !state.paused && !current.every) {
        state.version = version;
        await render(view, current, true);
      }
    } catch (_) {
      document.getElementById('stats').textContent = 'The viewer\u2019s server stopped answering.';
    }
  }, POLL_MS);
}

main();
