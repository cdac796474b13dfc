// rlsub's report engine: every view of one or more reports drawn from their histograms (plain JavaScript, inline SVG, no library).
// One engine for the offline page (rlsub.viz.page.report_page: mounted over the page's own address) and the notebook
// (rlsub.viz.page.page_view: an anywidget whose `link` trait holds the same state the page keeps in its address).
const RLSUB_BODY = `
<div class="bar">
 <label>report <select id="rl-report"></select></label>
 <span>rule <span id="rl-rules"></span></span>
 <label>threshold <input id="rl-threshold" type="range" min="0" step="1"> <b id="rl-readout"></b></label>
 <span>view <span id="rl-views"></span></span>
</div>
<div id="rl-headline"></div>
<div id="rl-reports"></div>
<div class="cols">
 <div id="rl-main"></div>
 <div id="rl-side"><label>tensor <input id="rl-tensor" placeholder="type part of a name, e.g. layers.3.mlp"></label><datalist></datalist>
  <div id="rl-hist"></div></div>
</div>`;
let rlsubMounted = 0;                         // datalists need ids unique in the document: one per mounted view
function rlsubMount(root,                     // the element to draw into (its ids are looked up inside it: several views may share a document)
                    D,                        // rlsub.viz.page's data: reports, ladder, labels, the state to open in
                    opts) {                   // {own: the page is this document (it keeps its address and its theme), link: a state to open in ('#rule=…'), onState(link): told of each new state}
opts = opts || {};
root.insertAdjacentHTML('beforeend', RLSUB_BODY);
const $ = id => root.querySelector('#' + id), SVGNS = 'http://www.w3.org/2000/svg';
const namesList = root.querySelector('datalist');
namesList.id = 'rl-names-' + (++rlsubMounted); $('rl-tensor').setAttribute('list', namesList.id);
function el(tag, attrs, ...kids) {            // an element (an SVG one for 'svg:...'); names only ever go in as text
  const e = tag.startsWith('svg:') ? document.createElementNS(SVGNS, tag.slice(4)) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'text') e.textContent = v; else if (k.startsWith('on')) e.addEventListener(k.slice(2), v); else if (v !== null) e.setAttribute(k, v);
  }
  for (const c of kids) if (c !== null && c !== undefined) e.append(c);
  return e;
}
// numbers written as Python writes them: f"{x*100:.2f}" (correctly rounded, ties to even), f"{n:,}"
function fixed2(v) {
  if (Number.isInteger(v * 8) && (v * 1000) % 10 === 5) { const n = Math.round(v * 100); return ((n % 2 ? n - 1 : n) / 100).toFixed(2); }
  return v.toFixed(2);
}
function pct(x) {                           // as rlsub.core.fmt_pct(x, 2): a partial share is never written 0.00% or 100.00%
  if (Number.isNaN(x)) return '—';
  const s = fixed2(x * 100);
  return +s === 100 && x < 1 ? '>99.99%' : +s === 0 && x > 0 ? '<0.01%' : s + '%';
}
const pp = d => Number.isNaN(d) ? '—' : (d < 0 || Object.is(d, -0) ? '-' : '+') + fixed2(Math.abs(d));
const int = n => String(n).replace(/\B(?=(\d{3})+(?!\d))/g, ',');

// the theme: JupyterLab's when the page is shown inside it (it marks its body data-jp-theme-light="true" or "false"),
// otherwise the reader's (prefers-color-scheme); followed as either changes
const darkMedia = window.matchMedia ? window.matchMedia('(prefers-color-scheme: dark)') : null;
function jupyterTheme() {                     // this document's body (the page inside a notebook) or the parent's (in an iframe); null elsewhere
  for (const w of [window, window.parent]) {
    try { const v = w.document.body.getAttribute('data-jp-theme-light'); if (v === 'true' || v === 'false') return v === 'true' ? 'light' : 'dark'; }
    catch (e) { /* a frame of another origin: its theme cannot be read */ }
  }
  return null;
}
const themed = opts.own ? [document.documentElement, document.body] : [root];   // where the theme's colours are set
function applyTheme() { const t = jupyterTheme() || (darkMedia && darkMedia.matches ? 'dark' : 'light'); for (const e of themed) e.dataset.theme = t; }
applyTheme();
if (darkMedia) darkMedia.addEventListener('change', applyTheme);
for (const w of new Set([window, window.parent])) {
  try { new MutationObserver(applyTheme).observe(w.document.body, {attributes: true, attributeFilter: ['data-jp-theme-light']}); } catch (e) { /* another origin */ }
}

// what the scan kept, answered as DeltaReport answers it: abs/rel at ladder step j count the histogram bins above j
const L = D.ladder.length;
for (const R of D.reports) {
  R.above = {};
  for (const rule of ['abs', 'rel']) R.above[rule] = R[rule + '_hist'].map(h => {
    const a = new Array(L).fill(0); let s = 0;
    for (let j = L - 1; j >= 0; j--) { s += h[j + 1]; a[j] = s; }
    return a;
  });
  R.total = R.numel.reduce((a, b) => a + b, 0);
}
const changed = (R, rule, j) => rule === 'exact' ? R.changed : R.above[rule].map(a => a[j]);
function groups(R, view, c) {                 // sums per group, in the order of report.sparsity(by=...)
  const g = R.views[view], s = new Array(g.labels.length).fill(0);
  c.forEach((v, i) => { if (g.code[i] >= 0) s[g.code[i]] += v; });
  return g.labels.map((lab, k) => ({lab, key: JSON.stringify(lab), params: g.params[k], changed: s[k], sparsity: 1 - s[k] / g.params[k], density: s[k] / g.params[k]}));
}
function head(R, rule, j) {
  const c = changed(R, rule, j).reduce((a, b) => a + b, 0), s = R.total ? 1 - c / R.total : NaN;
  return {sparsity: s, density: 1 - s, changed: c, params: R.total, label: D.labels[rule][rule === 'exact' ? 0 : j]};
}
const headText = h => `sparsity ${pct(h.sparsity)} · density ${pct(h.density)} · ${int(h.changed)} of ${int(h.params)} parameters changed (${h.label})`;

const RULES = ['exact', 'abs', 'rel'], VIEWS = ['layer', 'kind', 'heatmap', 'tensors'], SORTS = ['model order', 'sparsity', 'size'];   // SORTS: rlsub.viz.groups.SORTS
const S = {};                                 // what the reader chose: report, rule, ladder step, view, tensor, search, group cut, difference
function reset() { Object.assign(S, {report: 0, rule: D.state.rule, j: D.state.j, view: D.state.view, tensor: '', query: '', cut: null, diff: false, zoom: null, sort: 'model order'}); }
reset();
const rep = () => D.reports[S.report];
const rj = () => S.rule === 'exact' ? 0 : S.j;
const KR = new Map(D.kind_order.map((k, i) => [k, i]));   // kinds in model order: q k v o (qkv) gate up down, then the others
const byKind = (a, b) => KR.get(a) - KR.get(b);
const layerText = (R, i) => R.layer[i] === null ? '—' : String(R.layer[i]);

// the view in the page's address: #rule=abs&threshold=1e-5&view=heatmap&report=…&tensor=…; a link reopens the same view
const OWN = !!opts.own;                      // only a page of its own writes its address (a notebook's view tells opts.onState instead)
function ladderStep(s) {                      // the ladder step of a threshold as written ('1e-5'), or of any number: the step at or below it (rules.snap)
  const j = D.ladder_text.indexOf(s), x = Number(s);
  if (j >= 0) return j;
  if (s === '' || !Number.isFinite(x) || x < 0) return -1;
  let k = 0; while (k + 1 < L && D.ladder[k + 1] <= x * (1 + 1e-9)) k++;
  return k;
}
function stateText() {
  const p = new URLSearchParams();
  p.set('rule', S.rule);
  if (S.rule !== 'exact') p.set('threshold', D.ladder_text[S.j]);
  p.set('view', S.view);
  if (D.reports.length > 1) p.set('report', rep().label);
  if (S.tensor) p.set('tensor', S.tensor);
  if (S.view === 'tensors') {
    if (S.cut) for (const k of ['layer', 'kind']) if (S.cut[k] !== undefined) p.set(k, S.cut[k]);
    if (S.query) p.set('search', S.query);
    if (S.sort !== 'model order') p.set('sort', S.sort);
  }
  if (S.view === 'heatmap' && S.diff) p.set('diff', '1');
  if (S.zoom && S.view !== 'tensors') p.set('zoom', zoomText(S.zoom));
  return '#' + p.toString();
}
function readState(hash) {                    // the state a link names; what it leaves out (or names wrongly) opens as the file was written
  reset();
  const p = new URLSearchParams(hash.replace(/^#/, ''));
  const i = D.reports.findIndex(R => R.label === p.get('report'));
  if (i >= 0) S.report = i;
  if (RULES.includes(p.get('rule'))) { S.rule = p.get('rule'); if (S.rule !== D.state.rule && S.rule !== 'exact') S.j = D.defaults[S.rule]; }
  const j = p.has('threshold') ? ladderStep(p.get('threshold')) : -1;
  if (j >= 0) S.j = j;
  if (VIEWS.includes(p.get('view'))) S.view = p.get('view');
  if (rep().names.includes(p.get('tensor'))) S.tensor = p.get('tensor');
  if (S.view === 'tensors') {
    const cut = {};
    for (const k of ['layer', 'kind']) if (p.has(k)) cut[k] = p.get(k);
    S.cut = Object.keys(cut).length ? cut : null;
    S.query = p.get('search') || '';
    if (SORTS.includes(p.get('sort'))) S.sort = p.get('sort');
  }
  S.diff = S.view === 'heatmap' && p.get('diff') === '1';
  S.zoom = S.view === 'tensors' ? null : readZoom(p.get('zoom') || '', S.view === 'heatmap');
}
// zoom: the groups of a chart (a-b) or the rows and columns of the heatmap (r0-r1,c0-c1) a dragged box covered, by position
const zoomText = z => z.rows ? `${z.rows[0]}-${z.rows[1]},${z.cols[0]}-${z.cols[1]}` : `${z.span[0]}-${z.span[1]}`;
function readZoom(t, heat) {
  const pair = u => { const m = /^(\d+)-(\d+)$/.exec(u || ''); return m && +m[1] <= +m[2] ? [+m[1], +m[2]] : null; };
  if (heat) { const [r, c] = t.split(','), rows = pair(r), cols = pair(c); return rows && cols ? {rows, cols} : null; }
  const span = pair(t); return span ? {span} : null;
}
const clip = (v, n) => v ? [Math.min(v[0], n - 1), Math.min(v[1], n - 1)] : [0, n - 1];
function toSvg(svg, ev) { const pt = svg.createSVGPoint(); pt.x = ev.clientX; pt.y = ev.clientY; return pt.matrixTransform(svg.getScreenCTM().inverse()); }
function zoomable(svg, boxToZoom) {           // dragging a box over `svg` zooms onto what it covers (a click stays a click); Escape zooms out
  let from = null, band = null, dragged = false;
  const move = ev => {
    const p = toSvg(svg, ev);
    if (!dragged && Math.hypot(p.x - from.x, p.y - from.y) < 5) return;
    dragged = true;
    if (!band) { band = el('svg:rect', {class: 'rl-band', 'pointer-events': 'none'}); svg.append(band); }
    band.setAttribute('x', Math.min(p.x, from.x)); band.setAttribute('y', Math.min(p.y, from.y));
    band.setAttribute('width', Math.abs(p.x - from.x)); band.setAttribute('height', Math.abs(p.y - from.y));
  };
  const up = ev => {
    window.removeEventListener('mousemove', move); window.removeEventListener('mouseup', up);
    if (band) band.remove(); band = null;
    if (dragged) { const z = boxToZoom(from, toSvg(svg, ev)); if (z) { S.zoom = z; draw(); } }
    from = null;
  };
  svg.addEventListener('mousedown', ev => {
    if (ev.button !== 0) return;
    ev.preventDefault(); from = toSvg(svg, ev); dragged = false;
    window.addEventListener('mousemove', move); window.addEventListener('mouseup', up);
  });
  svg.addEventListener('click', ev => { if (dragged) { ev.stopPropagation(); dragged = false; } }, true);   // the end of a drag is no click
  svg.addEventListener('keydown', ev => { if (ev.key === 'Escape' && S.zoom) { ev.preventDefault(); S.zoom = null; draw(); } });
}
function unzoomButton() {
  return S.zoom ? [el('button', {type: 'button', id: 'rl-unzoom', title: 'show every group again (Escape)', text: 'whole figure', onclick: () => { S.zoom = null; draw(); }})] : [];
}
let written = null;
function writeState() {
  const h = stateText();
  if (h === written) return;
  written = h;
  if (opts.onState) opts.onState(h);
  if (!OWN) return;
  try { history.replaceState(history.state, '', h); }
  catch (e) { try { location.replace(h); } catch (e2) { /* an address that cannot change (about:srcdoc) */ } }
}

function colour(s, lo) {                      // light (unchanged) to dark (changed), on a shared scale from lo to 1
  const t = lo >= 1 ? 0 : Math.max(0, Math.min(1, (1 - s) / (1 - lo)));
  const stops = [[255, 247, 236], [253, 212, 158], [252, 141, 89], [215, 48, 31], [127, 0, 0]];
  const x = t * (stops.length - 1), k = Math.min(stops.length - 2, Math.floor(x)), f = x - k;
  return 'rgb(' + stops[k].map((a, i) => Math.round(a + f * (stops[k + 1][i] - a))).join(',') + ')';
}
function diverging(t) {                      // -1 (red: denser) .. 0 (white) .. 1 (blue: sparser)
  const c = t < 0 ? [202, 0, 32] : [5, 113, 176], f = Math.min(1, Math.abs(t));
  return 'rgb(' + c.map(a => Math.round(255 + f * (a - 255))).join(',') + ')';
}
const groupText = (view, lab) => view === 'heatmap' ? `layer ${lab[0]} · ${lab[1]}` : `${view} ${lab}`;
const cutText = c => [c.layer !== undefined ? `layer ${c.layer}` : null, c.kind !== undefined ? c.kind : null].filter(s => s).join(' · ');
function showGroup(cut) { S.query = ''; S.view = 'tensors'; S.cut = cut; S.zoom = null; draw(); }   // a group's tensors: the tensor table cut to it

// keyboard: each table and the heatmap is one tab stop; arrows move between its rows (cells), Home/End/PageUp/PageDown jump, Enter chooses
function focusOn(to, from) { if (from) from.tabIndex = -1; to.tabIndex = 0; to.focus(); }
function activate(e) { e.dispatchEvent(new MouseEvent('click', {bubbles: true})); }
function rowKeys(ev) {
  const row = ev.target.closest && ev.target.closest('tr[data-nav]');
  if (!row || ev.altKey || ev.ctrlKey || ev.metaKey) return;
  const rows = [...row.parentElement.children], i = rows.indexOf(row);
  const step = {ArrowDown: 1, ArrowUp: -1, PageDown: 10, PageUp: -10, Home: -i, End: rows.length}[ev.key];
  if (step !== undefined) { ev.preventDefault(); focusOn(rows[Math.max(0, Math.min(rows.length - 1, i + step))], row); }
  else if (ev.key === 'Enter' || ev.key === ' ') { ev.preventDefault(); activate(row); afterKey(); }
}
function cellKeys(ev) {
  const c = ev.target;
  if (!c.classList || !c.classList.contains('rl-cell') || ev.altKey || ev.ctrlKey || ev.metaKey) return;
  const d = {ArrowLeft: [0, -1], ArrowRight: [0, 1], ArrowUp: [-1, 0], ArrowDown: [1, 0]}[ev.key];
  if (d) {
    ev.preventDefault();
    const at = (r, k) => c.parentNode.querySelector(`.rl-cell[data-row="${r}"][data-col="${k}"]`);
    let r = +c.dataset.row, k = +c.dataset.col, to = null;
    const n = d[0] ? +c.parentNode.dataset.rows : +c.parentNode.dataset.cols;
    for (let s = 0; s < n && !to; s++) { r += d[0]; k += d[1]; to = at(r, k); }   // over a gap (a layer without that kind) to the next cell
    if (to) focusOn(to, c);
  }
  else if (ev.key === 'Enter' || ev.key === ' ') { ev.preventDefault(); activate(c); afterKey(); }
}
function afterKey() {                         // the chosen thing redrew the page: keep the keyboard where it was, or on the new view's tab stop
  if (document.activeElement && document.activeElement !== document.body) return;
  const stop = root.querySelector('#rl-main [data-nav][tabindex="0"]');
  if (stop) stop.focus();
}
function tabStop(items, chosen) { items.forEach((e, i) => { e.tabIndex = (chosen ? e === chosen : i === 0) ? 0 : -1; }); }

function drawControls() {
  root.querySelectorAll('#rl-rules button').forEach(b => { b.classList.toggle('on', b.dataset.rule === S.rule); b.setAttribute('aria-pressed', b.dataset.rule === S.rule); });
  root.querySelectorAll('#rl-views button').forEach(b => { b.classList.toggle('on', b.dataset.view === S.view); b.setAttribute('aria-pressed', b.dataset.view === S.view); });
  const th = $('rl-threshold');
  th.disabled = S.rule === 'exact'; th.value = S.j;
  $('rl-readout').textContent = S.rule === 'exact' ? '—' : D.ladder_text[S.j];
  if (D.reports.length > 1) $('rl-report').value = String(S.report);
}

function drawHeadline() {
  $('rl-headline').textContent = headText(head(rep(), S.rule, rj()));
  const box = $('rl-reports');
  if (D.reports.length < 2) return;
  const rows = D.reports.map((R, i) => { const h = head(R, S.rule, rj());
    return el('tr', {'data-report': i, 'data-nav': 'r:' + i, class: i === S.report ? 'sel' : null, title: `show ${R.label}`, onclick: () => { S.report = i; fillNames(); draw(); }},
      el('th', {text: R.label}), el('td', {text: int(h.params)}), el('td', {text: int(h.changed)}), el('td', {text: pct(h.sparsity)})); });
  tabStop(rows, rows[S.report]);
  box.replaceChildren(el('table', {class: 'rl-table rl-pick', onkeydown: rowKeys}, el('thead', {}, el('tr', {}, ...['report', 'params', 'changed', 'sparsity'].map(t => el('th', {text: t})))), el('tbody', {}, ...rows)));
}

function chartGroups() {                      // every report's groups of this view, lined up by label
  const per = D.reports.map(R => groups(R, S.view, changed(R, S.rule, rj())));
  const order = [], seen = new Set();
  for (const gs of per) for (const g of gs) if (!seen.has(g.key)) { seen.add(g.key); order.push(g); }
  if (S.view === 'kind') order.sort((a, b) => byKind(a.lab, b.lab));
  return {per: per.map(gs => new Map(gs.map(g => [g.key, g]))), order};
}
const cutOf = lab => S.view === 'layer' ? {layer: String(lab)} : {kind: String(lab)};
function columnText(per, g) {                 // one group's numbers in every report, as the dots chart shows them on hover
  const v = per.map((m, i) => m.has(g.key) ? [D.reports[i].label, m.get(g.key)] : null).filter(x => x);
  if (D.reports.length < 2) { const x = v[0][1]; return `${groupText(S.view, g.lab)}: sparsity ${pct(x.sparsity)} (${int(x.changed)} of ${int(x.params)} changed)`; }
  return `${groupText(S.view, g.lab)}: ` + v.map(([lab, x]) => `${lab} ${pct(x.sparsity)}`).join(' · ');
}

const PALETTE = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f'];
function drawDots(per, all) {                 // sparsity by group: one line of dots per report; hovering a column shows its numbers
  const z = clip(S.zoom && S.zoom.span, all.length), order = all.slice(z[0], z[1] + 1);   // zoomed: only the groups dragged over
  const W = 720, H = 260, l = 72, r = 24, t = 10, b = 40, n = order.length;   // r: room for the last label
  let lo = 1;
  per.forEach(m => m.forEach(g => { if (!Number.isNaN(g.sparsity)) lo = Math.min(lo, g.sparsity); }));
  lo = Math.max(0, Math.floor((lo - 0.02) * 20) / 20);
  const x = k => l + (n === 1 ? (W - l - r) / 2 : k * (W - l - r) / (n - 1)), y = s => t + (1 - (s - lo) / ((1 - lo) || 1)) * (H - t - b);
  const svg = el('svg:svg', {width: W, height: H, viewBox: `0 0 ${W} ${H}`, id: 'rl-chart'});
  for (let k = 0; k <= 4; k++) { const s = lo + k * (1 - lo) / 4;
    svg.append(el('svg:line', {x1: l, x2: W - r, y1: y(s), y2: y(s), class: 'grid'}), el('svg:text', {x: l - 6, y: y(s) + 4, 'text-anchor': 'end', class: 'ax', text: pct(s)})); }
  const every = Math.ceil(n / 24);
  order.forEach((g, k) => { if (k % every === 0) svg.append(el('svg:text', {x: x(k), y: H - b + 16, 'text-anchor': 'middle', class: 'ax', text: String(g.lab)})); });
  svg.append(el('svg:text', {x: (l + W - r) / 2, y: H - 4, 'text-anchor': 'middle', class: 'ax rl-xtitle', text: S.view === 'layer' ? 'layer (—: tensors outside the layers)' : 'kind'}),
             el('svg:text', {x: 11, y: (t + H - b) / 2, 'text-anchor': 'middle', class: 'ax rl-ytitle', transform: `rotate(-90 11 ${(t + H - b) / 2})`, text: 'sparsity (share unchanged)'}));
  const guide = el('svg:line', {x1: 0, x2: 0, y1: t, y2: H - b, class: 'guide', visibility: 'hidden'});
  svg.append(guide);
  per.forEach((m, i) => {
    const pts = order.map((g, k) => m.has(g.key) ? [x(k), y(m.get(g.key).sparsity)] : null).filter(p => p);
    if (pts.length > 1) svg.append(el('svg:polyline', {points: pts.map(p => p.join(',')).join(' '), fill: 'none', stroke: PALETTE[i % 8], 'stroke-width': 1.5}));
    order.forEach((g, k) => { const v = m.get(g.key); if (!v) return;
      svg.append(el('svg:circle', {cx: x(k), cy: y(v.sparsity), r: 4, fill: PALETTE[i % 8], class: 'rl-pt', 'data-group': String(g.lab), 'data-report': i})); });
  });
  const w = n === 1 ? W - l - r : (W - l - r) / (n - 1);
  order.forEach((g, k) => {                   // a column per group over the dots: its numbers on hover, its tensors on click
    const tip = columnText(per, g);
    svg.append(el('svg:rect', {x: x(k) - w / 2, y: t, width: w, height: H - t - b, class: 'rl-col', 'data-group': String(g.lab), 'data-tip': tip,
      onmouseenter: () => { $('rl-hover').textContent = tip; guide.setAttribute('x1', x(k)); guide.setAttribute('x2', x(k)); guide.setAttribute('visibility', 'visible'); },
      onmouseleave: () => guide.setAttribute('visibility', 'hidden'), onclick: () => showGroup(cutOf(g.lab))}, el('svg:title', {text: tip})));
  });
  const at = p => Math.max(0, Math.min(n - 1, Math.round(n === 1 ? 0 : (p.x - l) / ((W - l - r) / (n - 1)))));
  zoomable(svg, (p, q) => { const a = at(p.x < q.x ? p : q), c = at(p.x < q.x ? q : p); return {span: [z[0] + a, z[0] + c]}; });
  return svg;
}

function drawGroupTable(per, order) {
  const multi = D.reports.length > 1, labs = D.reports.map(R => R.label);
  const cols = multi ? [S.view, ...labs.map(s => 'sparsity ' + s), ...labs.slice(1).map(s => `${s} − ${labs[0]} (pp)`)] : [S.view, 'params', 'changed', 'sparsity', 'density'];
  const rows = order.map(g => {
    const cells = multi ? [...per.map(m => m.has(g.key) ? pct(m.get(g.key).sparsity) : '—'),
                           ...per.slice(1).map(m => m.has(g.key) && per[0].has(g.key) ? pp((m.get(g.key).sparsity - per[0].get(g.key).sparsity) * 100) : '—')]
                        : (v => [int(v.params), int(v.changed), pct(v.sparsity), pct(v.density)])(per[0].get(g.key));
    return el('tr', {'data-group': String(g.lab), 'data-nav': `g:${S.view}:${g.lab}`, title: `${groupText(S.view, g.lab)}: its tensors`, onclick: () => showGroup(cutOf(g.lab))},
      el('th', {text: String(g.lab)}), ...cells.map(c => el('td', {text: c})));
  });
  tabStop(rows);
  return el('table', {class: 'rl-table rl-pick', id: 'rl-groups', onkeydown: rowKeys}, el('thead', {}, el('tr', {}, ...cols.map(c => el('th', {text: c})))), el('tbody', {}, ...rows));
}

function drawHeatmap() {                      // layer × kind of the chosen report, its colour scale shared by every report
  const all = D.reports.map(R => groups(R, 'heatmap', changed(R, S.rule, rj())));
  let lo = 1; all.forEach(gs => gs.forEach(g => { if (!Number.isNaN(g.sparsity)) lo = Math.min(lo, g.sparsity); }));
  const gs = all[S.report], layers = [], kinds = [], diff = D.reports.length > 1 && S.diff && S.report !== 0;
  const ref = new Map(all[0].map(g => [g.key, g])), A = D.reports[0].label, B = D.reports[S.report].label;
  const delta = g => (g.sparsity - ref.get(g.key).sparsity) * 100;   // percentage points, as Python's (b - a) * 100
  let span = 0; if (diff) gs.forEach(g => { if (ref.has(g.key)) span = Math.max(span, Math.abs(delta(g))); });
  let allLayers = [], allKinds = [];
  for (const g of gs) { if (!allLayers.includes(g.lab[0])) allLayers.push(g.lab[0]); if (!allKinds.includes(g.lab[1])) allKinds.push(g.lab[1]); }
  allKinds.sort(byKind);
  const zr = clip(S.zoom && S.zoom.rows, allLayers.length), zc = clip(S.zoom && S.zoom.cols, allKinds.length);   // zoomed: the rows and columns dragged over
  layers.push(...allLayers.slice(zr[0], zr[1] + 1)); kinds.push(...allKinds.slice(zc[0], zc[1] + 1));
  const cw = Math.max(46, Math.min(60, 640 / kinds.length)), ch = Math.max(10, Math.min(22, 520 / layers.length)), l = 58, t = 20;
  const right = l + cw * kinds.length, svg = el('svg:svg', {width: right + 90, height: t + ch * layers.length + 10, id: 'rl-heatmap',
    'data-rows': layers.length, 'data-cols': kinds.length, onkeydown: cellKeys});
  kinds.forEach((k, i) => svg.append(el('svg:text', {x: l + (i + 0.5) * cw, y: t - 6, 'text-anchor': 'middle', class: 'ax', text: k})));
  layers.forEach((v, i) => svg.append(el('svg:text', {x: l - 6, y: t + (i + 0.5) * ch + 4, 'text-anchor': 'end', class: 'ax', text: v})));
  const mid = t + ch * layers.length / 2;
  svg.append(el('svg:text', {x: l - 6, y: t - 6, 'text-anchor': 'end', class: 'ax rl-xtitle', text: 'kind →'}),
             el('svg:text', {x: 11, y: mid, 'text-anchor': 'middle', class: 'ax rl-ytitle', transform: `rotate(-90 11 ${mid})`, text: ch * layers.length >= 190 ? 'layer (—: outside the layers)' : 'layer'}));
  const cells = [];
  for (const g of gs) {
    if (diff && !ref.has(g.key) || !layers.includes(g.lab[0]) || !kinds.includes(g.lab[1])) continue;
    const tip = diff ? `layer ${g.lab[0]} · ${g.lab[1]}: ${pp(delta(g))} pp (${pct(g.sparsity)} in ${B} against ${pct(ref.get(g.key).sparsity)} in ${A})`
                     : `layer ${g.lab[0]} · ${g.lab[1]}: sparsity ${pct(g.sparsity)} (${int(g.changed)} of ${int(g.params)} changed)`;
    const row = layers.indexOf(g.lab[0]), col = kinds.indexOf(g.lab[1]), show = () => { $('rl-hover').textContent = tip; };
    const cell = el('svg:rect', {x: l + col * cw, y: t + row * ch, width: cw - 1, height: ch - 1,
      fill: diff ? diverging(span ? delta(g) / span : 0) : colour(g.sparsity, lo), class: 'rl-cell', 'data-layer': g.lab[0], 'data-kind': g.lab[1], 'data-tip': tip,
      'data-row': row, 'data-col': col, 'data-nav': `c:${g.lab[0]}|${g.lab[1]}`, role: 'button', 'aria-label': tip,
      onmouseenter: show, onfocus: show, onclick: () => showGroup({layer: g.lab[0], kind: g.lab[1]})}, el('svg:title', {text: tip}));
    cells.push(cell); svg.append(cell);
    const v = diff ? pp(delta(g)) : pct(g.sparsity), dark = diff ? span && Math.abs(delta(g)) / span > 0.6 : (1 - g.sparsity) / ((1 - lo) || 1) > 0.55;
    if (ch >= 12) svg.append(el('svg:text', {x: l + (col + 0.5) * cw, y: t + (row + 0.5) * ch + 3, 'text-anchor': 'middle',
      class: 'rl-val', fill: dark ? '#fff' : '#000', 'pointer-events': 'none', text: v}));
  }
  tabStop(cells.sort((a, b) => a.dataset.row - b.dataset.row || a.dataset.col - b.dataset.col));   // the tab stop: the top left cell
  svg.append(...colourBar(right + 14, t, ch * layers.length, diff, lo, span));
  const cell = (p, n, w, o) => Math.max(0, Math.min(n - 1, Math.floor((p - o) / w)));
  zoomable(svg, (p, q) => ({rows: [zr[0] + cell(Math.min(p.y, q.y), layers.length, ch, t), zr[0] + cell(Math.max(p.y, q.y), layers.length, ch, t)],
                             cols: [zc[0] + cell(Math.min(p.x, q.x), kinds.length, cw, l), zc[0] + cell(Math.max(p.x, q.x), kinds.length, cw, l)]}));
  const legend = el('div', {class: 'legend'}, el('span', {text: diff ? `colour: sparsity in ${B} minus in ${A}, blue sparser, red denser, up to ±${fixed2(span)} pp`
                                                                       : `colour: sparsity from ${pct(lo)} (dark) to ${pct(1)} (light), shared by every report`}));
  const box = D.reports.length < 2 ? [] : [el('div', {}, el('label', {class: 'legend'}, el('input', {type: 'checkbox', id: 'rl-diff', checked: S.diff ? '' : null,
    onchange: e => { S.diff = e.target.checked; draw(); }}), ` difference from ${A} (choose another report above)`))];
  return [...box, ...unzoomButton(), svg, el('div', {id: 'rl-hover', class: 'hover', text: 'hover a cell (or Tab to it, arrows to move) for its numbers; click it or press Enter for its tensors'}), legend];
}

function colourBar(x, y, h, diff, lo, span) {  // the scale beside the heatmap: a strip of its colours, labelled at both ends and the middle
  const n = 24, w = 12, parts = [];
  for (let i = 0; i < n; i++) { const f = 1 - i / (n - 1);   // top: 100 % (or +span), bottom: lo (or -span)
    parts.push(el('svg:rect', {x, y: y + i * h / n, width: w, height: h / n + 0.5, fill: diff ? diverging(2 * f - 1) : colour(lo + f * (1 - lo), lo)})); }
  const ends = diff ? [`+${fixed2(span)} pp`, '0', `-${fixed2(span)} pp`] : [pct(1), pct((1 + lo) / 2), pct(lo)];
  ends.forEach((s, k) => parts.push(el('svg:text', {x: x + w + 4, y: y + k * h / 2 + (k === 0 ? 8 : k === 2 ? 0 : 4), class: 'ax', text: s})));
  return [el('svg:g', {id: 'rl-colourbar'}, ...parts)];
}

function matcher(q) {                         // a search: part of a name (any case), or a regular expression
  const low = q.toLowerCase();
  let re = null; try { re = new RegExp(q, 'i'); } catch (e) { /* not a regular expression: a plain substring */ }
  return n => n.toLowerCase().includes(low) || (re !== null && re.test(n));
}
function drawTensorTable() {
  const R = rep(), c = changed(R, S.rule, rj());
  const box = el('input', {id: 'rl-search', type: 'search', placeholder: 'search names (part of a name or a regex), e.g. layers.3.mlp', value: S.query,
    oninput: e => { S.query = e.target.value; S.cut = null; fill(); writeState(); }});
  const tbody = el('tbody'), count = el('span', {id: 'rl-count'});
  const sorter = el('select', {id: 'rl-sort', title: 'sort the tensors', onchange: e => { S.sort = e.target.value; fill(); writeState(); }},
    ...SORTS.map(v => el('option', {value: v, text: v, selected: v === S.sort ? '' : null})));
  const spars = i => R.numel[i] ? 1 - c[i] / R.numel[i] : NaN;
  function order() {                           // as tensor_table sorts: most changed first, or largest first (stable; no numbers last)
    const idx = R.names.map((_, i) => i);
    if (S.sort === 'sparsity') idx.sort((a, b) => (Number.isNaN(spars(a)) - Number.isNaN(spars(b))) || (spars(a) - spars(b)) || a - b);
    else if (S.sort === 'size') idx.sort((a, b) => R.numel[b] - R.numel[a] || a - b);
    return idx;
  }
  function fill() {
    const ok = matcher(S.query), rows = [];
    order().forEach(i => { const n = R.names[i];
      if (S.query && !ok(n)) return;
      if (S.cut && ((S.cut.layer !== undefined && layerText(R, i) !== String(S.cut.layer)) || (S.cut.kind !== undefined && R.kind[i] !== S.cut.kind))) return;
      const d = c[i] / R.numel[i];
      rows.push(el('tr', {'data-name': n, 'data-nav': 't:' + n, class: n === S.tensor ? 'sel' : null, onclick: () => { S.tensor = n; draw(); }},
        el('td', {class: 'name', title: n, text: n}), el('td', {text: layerText(R, i)}), el('td', {text: R.kind[i]}),
        el('td', {text: R.shape[i]}), el('td', {text: int(R.numel[i])}), el('td', {text: int(c[i])}), el('td', {text: pct(1 - d)})));
    });
    tabStop(rows, rows.find(r => r.dataset.name === S.tensor));
    tbody.replaceChildren(...rows);
    count.textContent = (rows.length ? `${rows.length} of ${R.names.length} tensors` : `no tensor of ${R.names.length} matches`) + (S.cut ? ` (${cutText(S.cut)})` : '');
  }
  fill();
  const head = el('thead', {}, el('tr', {}, ...['name', 'layer', 'kind', 'shape', 'params', 'changed', 'sparsity'].map(t => el('th', {text: t}))));
  return [el('div', {class: 'row'}, box, el('label', {class: 'legend'}, 'sort by ', sorter), count), el('div', {class: 'scroll'}, el('table', {class: 'rl-table rl-pick', id: 'rl-tensors', onkeydown: rowKeys}, head, tbody))];
}

function binText(k) {                         // bin k holds lo < value ≤ hi
  if (k === 0) return '≤ 0';
  if (k === L) return `> ${D.ladder_text[L - 1]}`;
  return `(${D.ladder_text[k - 1]}, ${D.ladder_text[k]}]`;
}

function drawHist() {
  const R = rep(), i = R.names.indexOf(S.tensor), box = $('rl-hist');
  if (i < 0) { box.replaceChildren(el('p', {class: 'muted', text: 'choose a tensor (type its name, or click a row of the tensor table, or Enter on it) for its |Δ| histogram'})); return; }
  const rule = S.rule === 'exact' ? 'abs' : S.rule, h = R[rule + '_hist'][i], j = S.rule === 'exact' ? 0 : S.j;
  let a = h.findIndex(v => v > 0), b = h.length - 1 - [...h].reverse().findIndex(v => v > 0);
  const none = a < 0;
  if (none) { a = Math.max(0, j - 2); b = Math.min(L, j + 3); }
  a = Math.min(a, j + 1); b = Math.max(b, j);            // keep the threshold in view
  const n = b - a + 1, W = 440, H = 220, l = 50, t = 10, bw = (W - l - 10) / n, top = Math.max(1, ...h.slice(a, b + 1));
  const svg = el('svg:svg', {width: W, height: H + 40, id: 'rl-hist-svg', 'data-rule': rule});
  const readout = el('p', {id: 'rl-hist-hover', class: 'hover', text: 'hover a bar for its count'});
  for (let k = a; k <= b; k++) {
    const x = l + (k - a) * bw, hh = (H - t) * h[k] / top, tip = `${rule === 'abs' ? '|Δ|' : '|Δ|/max(|w|,|ŵ|)'} in ${binText(k)}: ${int(h[k])} entries`;
    svg.append(el('svg:rect', {x, y: t, width: Math.max(1, bw), height: H - t, class: 'rl-binhit', onmouseenter: () => { readout.textContent = tip; }},
                  el('svg:title', {text: tip})),      // the bar's whole column answers the hover, however short the bar
               el('svg:rect', {x: x + 1, y: H - hh, width: Math.max(1, bw - 2), height: hh, fill: k > j ? '#d62728' : '#999', class: 'rl-bin', 'data-bin': k,
                  'data-count': h[k], 'data-tip': tip, 'pointer-events': 'none'}));
    if ((k - a) % Math.ceil(n / 8) === 0) svg.append(el('svg:text', {x: x, y: H + 14, class: 'ax', text: k === 0 ? '0' : D.ladder_text[k - 1]}));
  }
  const xt = l + (j + 1 - a) * bw;
  svg.append(el('svg:line', {x1: xt, x2: xt, y1: t, y2: H, class: 'mark', 'stroke-dasharray': '3,3'}));
  svg.append(el('svg:text', {x: l - 6, y: t + 10, 'text-anchor': 'end', class: 'ax', text: int(top)}), el('svg:text', {x: l - 6, y: H, 'text-anchor': 'end', class: 'ax', text: '0'}));
  svg.append(el('svg:text', {x: (l + W) / 2, y: H + 34, 'text-anchor': 'middle', class: 'ax rl-xtitle', text: rule === 'abs' ? '|Δ| (bins between thresholds of the ladder)' : '|Δ| / max(|w|, |ŵ|) (bins between thresholds)'}),
             el('svg:text', {x: 12, y: (t + H) / 2, 'text-anchor': 'middle', class: 'ax rl-ytitle', transform: `rotate(-90 12 ${(t + H) / 2})`, text: 'entries'}));
  const above = R.above[rule][i][j];
  box.replaceChildren(el('h3', {text: S.tensor}),
    el('p', {id: 'rl-hist-text', text: `${rule}: ${int(above)} of ${int(R.numel[i])} entries above ${D.ladder_text[j]} (red); ${int(R.changed[i])} with different bits`}),
    svg, readout, ...(none ? [el('p', {class: 'muted', text: 'no entry of this tensor changed'})] : []));
}

function draw() {
  const was = document.activeElement, nav = was && was.getAttribute && was.getAttribute('data-nav');
  drawControls(); drawHeadline();
  const main = $('rl-main');
  if (S.view === 'layer' || S.view === 'kind') {
    const {per, order} = chartGroups();
    const key = D.reports.length < 2 ? [] : [el('div', {class: 'legend'}, ...D.reports.map((R, i) => el('span', {style: `color:${PALETTE[i % 8]};margin-right:1.5em`, text: '● ' + R.label})))];
    main.replaceChildren(...unzoomButton(), drawDots(per, order), ...key, el('div', {id: 'rl-hover', class: 'hover', text: `hover the chart for each ${S.view}'s numbers; click a ${S.view} (or Enter on its row) for its tensors`}),
                         drawGroupTable(per, order));
  }
  else if (S.view === 'heatmap') main.replaceChildren(...drawHeatmap());
  else main.replaceChildren(...drawTensorTable());
  $('rl-tensor').value = S.tensor;
  drawHist();
  if (nav && !was.isConnected) {              // the focused row or cell was redrawn: focus its new self, the keyboard stays where it was
    const now = [...root.querySelectorAll('[data-nav]')].find(e => e.getAttribute('data-nav') === nav);
    if (now) { now.parentNode.querySelectorAll('[data-nav]').forEach(e => { e.tabIndex = e === now ? 0 : -1; }); now.focus(); }
  }
  writeState();
}

// wiring
$('rl-rules').append(...RULES.map(r => el('button', {'data-rule': r, text: r, onclick: () => { S.rule = r; if (r !== 'exact') S.j = D.defaults[r]; draw(); }})));
$('rl-views').append(...[['layer', 'by layer'], ['kind', 'by kind'], ['heatmap', 'layer × kind'], ['tensors', 'tensors']].map(
  ([v, t]) => el('button', {'data-view': v, text: t, onclick: () => { if (S.view !== v) S.zoom = null; S.view = v; S.cut = null; draw(); }})));
$('rl-threshold').max = L - 1;
$('rl-threshold').addEventListener('input', e => { S.j = +e.target.value; draw(); });
const pick = $('rl-report');
function fillNames() { namesList.replaceChildren(...rep().names.map(n => el('option', {value: n}))); }
if (D.reports.length > 1) { D.reports.forEach((R, i) => pick.append(el('option', {value: i, text: R.label}))); pick.addEventListener('change', e => { S.report = +e.target.value; fillNames(); draw(); }); }
else pick.parentElement.style.display = 'none';
$('rl-tensor').addEventListener('input', e => { if (rep().names.includes(e.target.value)) { S.tensor = e.target.value; draw(); } });
if (OWN && location.hash.length > 1) readState(location.hash);
else if (opts.link) readState(opts.link);
if (OWN) window.addEventListener('hashchange', () => { if (location.hash !== written) { readState(location.hash); fillNames(); draw(); } });   // a link pasted into this tab
fillNames();
draw();
window.rlsubFormat = {pct, pp, int};    // the number formats, for tests
(OWN ? document.body : root).dataset.ready = '1';
return {
  show(link) { if (link !== written) { readState(link || ''); fillNames(); draw(); } },   // open the state `link` names (what it leaves out: as first opened)
  link: () => stateText(),
};
}
