"""The self-contained HTML report (rlsub.viz.page) in headless system Chromium, opened from a file with the network refused.

Moves the threshold over the whole ladder under each rule and compares, as text, the headline, the by-layer and by-kind
tables, every heatmap cell, tensor rows and one tensor's histogram with `DeltaReport.sparsity`, `tensor_table` and
`tensor_hist`; the same for a page of three reports (report picker, the differences column); the number formats on ties.
Then what a reader does beyond the controls: the keyboard (arrows through heatmap cells and table rows, Enter chooses),
a copied link that reopens the same view, the dark theme (the reader's preference, or JupyterLab's around an iframe),
hover values on the charts, zoom by a dragged box; and `rlsub demo`'s page (from a synthetic DemoResult: no training) with its controls, each
click redrawn within 150 ms, and its tables' numbers written one way.
Skipped without Chromium or playwright (the reason names the install commands), failed instead under RLSUB_REQUIRE_BROWSER=1 (CI)."""
import math, random, re, time
from urllib.parse import parse_qs, urlsplit
import numpy as np
import pandas as pd
import pytest
from browser import chromium, require_browser

from rlsub.examples import make_pair, tiny_config
from rlsub.measure.report import synthetic_report
from rlsub.core import fmt_pct, fmt_threshold
from rlsub.viz.figures import kind_order
from rlsub.viz.groups import tensor_hist, tensor_table
from rlsub.viz.page import headline_text, save_report
from rlsub.measure.rules import LADDER
from rlsub.measure.scan import scan_pair

require_browser()

pct = lambda x: fmt_pct(x, 2)   # one format everywhere: a partial share is never written 0.00% or 100.00%


def _lab(v) -> str:
    "A group label as the page writes it ('—': outside the layers)."
    import pandas as pd
    return '—' if v is pd.NA or v is None or (isinstance(v, float) and math.isnan(v)) else str(v)


@pytest.fixture(scope='module')
def reports(tmp_path_factory):
    "A scanned tiny pair and two synthetic reports of the same layout: {label: report}."
    d = tmp_path_factory.mktemp('report-html')
    make_pair(d / 'pair', tiny_config('llama'), density=0.25, max_ulps=16, seed=0)
    scanned = scan_pair(d / 'pair' / 'base', d / 'pair' / 'tuned', device='cpu', progress=False)
    cfg = tiny_config('llama')
    return {'scanned': scanned, 'synthetic 1': synthetic_report(cfg, seed=1), 'synthetic 2': synthetic_report(cfg, seed=2)}


@pytest.fixture(scope='module')
def browser():
    with chromium() as b:
        yield b


def _open(browser, path, **kw):
    "Open `path` (a file, or a file:// address with a fragment) with every other request refused; (page, refused requests, errors, seconds to first render)."
    page = browser.new_page(viewport={'width': 1400, 'height': 1000}, **kw)
    refused, errors = [], []
    page.route('**/*', lambda route: route.continue_() if route.request.url.startswith('file:') else (refused.append(route.request.url), route.abort()))
    page.on('pageerror', lambda e: errors.append(str(e)))
    t0 = time.perf_counter()
    page.goto(path if isinstance(path, str) else path.as_uri())
    page.wait_for_selector('body[data-ready="1"]', timeout=30_000)
    return page, refused, errors, time.perf_counter() - t0


SWEEP_JS = """([rule, view]) => {   // every ladder step under `rule`, as a user moving the slider: headline, table rows, heatmap cells each time
  document.querySelector(`#rl-rules button[data-rule="${rule}"]`).click();
  document.querySelector(`#rl-views button[data-view="${view}"]`).click();
  const th = document.getElementById('rl-threshold'), out = [];
  for (let j = 0; j <= +th.max; j++) {
    th.value = j; th.dispatchEvent(new Event('input', {bubbles: true}));
    out.push({readout: document.getElementById('rl-readout').textContent, head: document.getElementById('rl-headline').textContent,
              rows: [...document.querySelectorAll('#rl-groups tbody tr, #rl-tensors tbody tr')].map(r => [...r.children].map(c => c.textContent)),
              cells: [...document.querySelectorAll('rect.rl-cell')].map(r => r.dataset.tip)});
  }
  return out;
}"""


def _group_rows(report, rule, thr, by):
    g = report.sparsity(rule, thr, by=by)
    if by == 'kind': g = g.loc[kind_order(g.index)]                  # kinds in model order, as the notebook shows them
    return [[_lab(k), f"{p:,}", f"{c:,}", pct(s), pct(d)] for k, p, c, s, d in zip(g.index, g.params, g.changed, g.sparsity, g.density)]


def _cells(report, rule, thr):
    "The heatmap's numbers for every layer × kind, as the page shows them on hover."
    g = report.sparsity(rule, thr, by=['layer', 'kind'])
    return [f"layer {_lab(l)} · {k}: sparsity {pct(s)} ({c:,} of {p:,} changed)" for (l, k), p, c, s in zip(g.index, g.params, g.changed, g.sparsity)]


def _tensor_rows(report, rule, thr, query=''):
    "The tensor table's rows (model order), those whose name contains `query`."
    t = tensor_table(report, rule, thr, 'model order')
    t = t[t.name.str.lower().str.contains(query.lower(), regex=False)]
    shape = lambda s: '—' if s is None else ('×'.join(map(str, s)) if s else 'scalar')
    return [[n, _lab(l), k, shape(s), f"{p:,}", f"{c:,}", pct(sp)] for n, l, k, s, p, c, sp in zip(t.name, t.layer, t.kind, t['shape'], t.params, t.changed, t.sparsity)]


def test_one_report_agrees_with_python_everywhere(browser, reports, tmp_path):
    report = reports['scanned']
    path = save_report(report, tmp_path / 'report.html', 'abs', 1e-5)
    page, refused, errors, first = _open(browser, path)
    assert page.inner_text('#rl-headline') == headline_text(report, 'abs', 1e-5)
    # the slider with the keyboard, as a user moves it: each step the headline follows
    j = int(page.input_value('#rl-threshold'))
    page.focus('#rl-threshold')
    for _ in range(3):
        page.keyboard.press('ArrowRight'); j += 1
        assert page.inner_text('#rl-readout') == f"{LADDER[j]:.3g}".replace('e-0', 'e-')
        assert page.inner_text('#rl-headline') == headline_text(report, 'abs', float(LADDER[j]))
    # every rule, every ladder step, every view: headline, group tables, heatmap cells, tensor rows, to the last printed digit
    for rule in ('abs', 'rel'):
        for view in ('layer', 'kind', 'heatmap', 'tensors'):
            steps = page.evaluate(SWEEP_JS, [rule, view])
            assert len(steps) == len(LADDER)
            for j, st in enumerate(steps):
                thr = float(LADDER[j])
                assert st['head'] == headline_text(report, rule, thr), (rule, j)
                if view == 'heatmap': assert st['cells'] == _cells(report, rule, thr), (rule, j)
                else: assert st['rows'] == (_tensor_rows(report, rule, thr) if view == 'tensors' else _group_rows(report, rule, thr, view)), (rule, view, j)
    page.click('#rl-views button[data-view="kind"]')
    page.click('#rl-rules button[data-rule="exact"]')
    assert page.is_disabled('#rl-threshold') and page.inner_text('#rl-headline') == headline_text(report, 'exact')
    assert page.eval_on_selector_all('#rl-groups tbody tr', 'rs => rs.map(r => [...r.children].map(c => c.textContent))') == _group_rows(report, 'exact', None, 'kind')

    # the heatmap: every cell's numbers (shown on hover) equal sparsity(by=['layer', 'kind'])
    page.click('#rl-rules button[data-rule="rel"]')
    page.click('#rl-views button[data-view="heatmap"]')
    g = report.sparsity('rel', 1e-3, by=['layer', 'kind'])
    want = dict(zip([(_lab(l), k) for l, k in g.index], _cells(report, 'rel', 1e-3)))
    cells = page.eval_on_selector_all('rect.rl-cell', 'rs => rs.map(r => [r.dataset.layer, r.dataset.kind, r.dataset.tip])')
    assert {(l, k): tip for l, k, tip in cells} == want
    page.hover('rect.rl-cell[data-layer="1"][data-kind="q"]')
    assert page.inner_text('#rl-hover') == want['1', 'q']
    assert page.eval_on_selector_all('text.rl-val', 'ts => ts.map(t => t.textContent)') == [pct(v) for v in g.sparsity]   # the numbers in the cells
    heads = page.eval_on_selector_all('#rl-heatmap > text.ax', 'ts => ts.map(t => t.textContent)')
    kinds = list(dict.fromkeys(g.index.get_level_values('kind')))
    assert heads[:len(kinds)] == kind_order(kinds) and heads[:3] == ['q', 'k', 'v'], heads      # model order, not alphabetical
    bar = page.eval_on_selector_all('#rl-colourbar text', 'ts => ts.map(t => t.textContent)')
    assert page.locator('#rl-colourbar rect').count() > 10 and bar[0] == '100.00%' and bar[-1] == pct(g.sparsity.min()), bar

    # the tensor table: search, read rows, pick a tensor, read its histogram
    page.click('#rl-views button[data-view="tensors"]')
    page.fill('#rl-search', 'mlp')
    rows = page.eval_on_selector_all('#rl-tensors tbody tr', 'rs => rs.map(r => [...r.children].map(c => c.textContent))')
    assert rows == _tensor_rows(report, 'rel', 1e-3, 'mlp') and len(rows) == 6
    name = 'model.layers.1.mlp.up_proj.weight'
    page.click(f'#rl-tensors tr[data-name="{name}"]')
    assert page.input_value('#rl-tensor') == name and page.get_attribute('#rl-tensors tr.sel', 'data-name') == name
    bins = page.eval_on_selector_all('rect.rl-bin', 'rs => rs.map(r => [+r.dataset.bin, +r.dataset.count])')
    h = tensor_hist(report, name, 'rel')['count'].to_numpy()
    assert sum(c for _, c in bins) == h.sum() > 0 and all(h[b] == c for b, c in bins)
    assert f"{int(report.changed('rel', 1e-3)[name]):,} of" in page.inner_text('#rl-hist-text')
    assert page.text_content('#rl-hist-svg .rl-xtitle').startswith('|Δ| / max') and page.text_content('#rl-hist-svg .rl-ytitle') == 'entries'
    page.click('#rl-rules button[data-rule="abs"]')                      # the histogram follows the rule
    h = tensor_hist(report, name, 'abs')['count'].to_numpy()
    assert page.get_attribute('#rl-hist-svg', 'data-rule') == 'abs'
    assert all(h[b] == c for b, c in page.eval_on_selector_all('rect.rl-bin', 'rs => rs.map(r => [+r.dataset.bin, +r.dataset.count])'))
    page.fill('#rl-tensor', 'model.layers.0.self_attn.k_proj.weight')   # typing a whole name chooses it too
    assert page.inner_text('#rl-hist h3') == 'model.layers.0.self_attn.k_proj.weight'

    assert refused == [] and errors == [], (refused, errors)
    print(f"\n{path.name}: {path.stat().st_size / 1024:.0f} KiB, first render {first * 1000:.0f} ms (file:// to the drawn page)")


def test_several_reports(browser, reports, tmp_path):
    path = save_report(reports, tmp_path / 'three.html', 'rel', 1e-3, view='kind', printable=False)
    page, refused, errors, first = _open(browser, path)
    labels = list(reports)
    assert page.eval_on_selector_all('#rl-report option', 'os => os.map(o => o.textContent)') == labels
    rows = page.eval_on_selector_all('#rl-reports tbody tr', 'rs => rs.map(r => [...r.children].map(c => c.textContent))')
    assert rows == [[k, f"{r.numel:,}", f"{int(r.changed('rel', 1e-3).sum()):,}", pct(r.sparsity('rel', 1e-3))] for k, r in reports.items()]
    for i, (k, r) in enumerate(reports.items()):                         # the picker chooses whose headline and heatmap are shown
        page.select_option('#rl-report', str(i))
        assert page.inner_text('#rl-headline') == headline_text(r, 'rel', 1e-3)
    # by kind: each report's sparsity, then each one's difference from the first in percentage points
    g = {k: r.sparsity('rel', 1e-3, by='kind').sparsity for k, r in reports.items()}
    a = g[labels[0]]
    want = [[kind] + [pct(g[k][kind]) for k in labels] + [f"{(g[k][kind] - a[kind]) * 100:+.2f}" for k in labels[1:]] for kind in kind_order(a.index)]
    assert page.eval_on_selector_all('#rl-groups tbody tr', 'rs => rs.map(r => [...r.children].map(c => c.textContent))') == want
    assert page.eval_on_selector_all('#rl-groups thead th', 'hs => hs.map(h => h.textContent)')[-1] == f"{labels[2]} − {labels[0]} (pp)"
    assert page.locator('circle.rl-pt').count() == 3 * len(a)
    # the heatmap as a difference: the chosen report against the first, cell by cell, in percentage points
    page.select_option('#rl-report', '1')
    page.click('#rl-views button[data-view="heatmap"]')
    page.check('#rl-diff')
    s = {k: r.sparsity('rel', 1e-3, by=['layer', 'kind']).sparsity for k, r in reports.items()}
    s0, s1 = s[labels[0]], s[labels[1]]
    assert s0.index.equals(s1.index)                                    # one layout: the same cells, in the same order
    want = [f"layer {_lab(l)} · {k}: {(b - a) * 100:+.2f} pp ({pct(b)} in {labels[1]} against {pct(a)} in {labels[0]})" for (l, k), a, b in zip(s1.index, s0, s1)]
    assert page.eval_on_selector_all('rect.rl-cell', 'rs => rs.map(r => r.dataset.tip)') == want
    assert refused == [] and errors == [], (refused, errors)
    print(f"\n{path.name}: {path.stat().st_size / 1024:.0f} KiB, first render {first * 1000:.0f} ms")


def test_numbers_are_written_as_python_writes_them(browser, reports, tmp_path):
    "The page's percentage, point and count formats against Python's, on random values and on exact ties (12.125 -> '12.12')."
    path = save_report(reports['scanned'], tmp_path / 'r.html', printable=False)
    page, *_ = _open(browser, path)
    rng = random.Random(0)
    xs = [rng.random() for _ in range(3000)] + [c / n for n in (8, 80, 800, 1600, 4000) for c in range(n + 1)] + [1 - c / 800 for c in range(801)]
    xs += [0.99996, 0.999949, 1e-5, 4.9e-5, 5e-5]                         # near the ends: '>99.99%', '<0.01%', as fmt_pct writes them
    got = page.evaluate('xs => xs.map(x => [rlsubFormat.pct(x), rlsubFormat.pp((x - 0.5) * 100)])', xs)
    assert got == [[fmt_pct(x, 2), f"{(x - 0.5) * 100:+.2f}"] for x in xs]
    assert got[-5][0] == '>99.99%' and got[-3][0] == '<0.01%'
    ns = [0, 7, 999, 1000, 123456789, 2**53 - 1]
    assert page.evaluate('ns => ns.map(rlsubFormat.int)', ns) == [f"{n:,}" for n in ns]



def test_tensors_not_compared_and_empty_groups(browser, reports, tmp_path):
    "A tensor only one side has (no parameters compared: sparsity '—', its group left out as sparsity(by=...) leaves it) and a lone kind."
    r = reports['synthetic 2']
    t = r.table.copy()
    gone = t.index[t.name == 'model.layers.1.self_attn.k_proj.weight'][0]
    t.loc[gone, ['status', 'numel', 'changed', 'shape_tuned']] = ['base only', 0, 0, None]
    t.loc[t.name == 'model.norm.weight', 'kind'] = 'other'
    ah, rh = r.abs_hist.copy(), r.rel_hist.copy()
    ah[gone], rh[gone] = 0, 0
    odd = type(r)(t, ah, rh, r.meta)
    path = save_report(odd, tmp_path / 'odd.html', printable=False)
    page, refused, errors, _ = _open(browser, path)
    for rule in ('abs', 'rel'):
        for view in ('kind', 'heatmap', 'tensors'):
            for j, st in enumerate(page.evaluate(SWEEP_JS, [rule, view])):
                thr = float(LADDER[j])
                assert st['head'] == headline_text(odd, rule, thr)
                if view == 'heatmap': assert st['cells'] == _cells(odd, rule, thr), (rule, j)
                else: assert st['rows'] == (_tensor_rows(odd, rule, thr) if view == 'tensors' else _group_rows(odd, rule, thr, view)), (rule, view, j)
    assert ['model.layers.1.self_attn.k_proj.weight', '1', 'k', '—', '0', '0', '—'] in st['rows']
    assert refused == [] and errors == [], (refused, errors)


# ---- what a reader does beyond the controls: keyboard, links, theme, hover ----

NAV = "document.activeElement && document.activeElement.getAttribute('data-nav')"
ROWS = 'rs => rs.map(r => [...r.children].map(c => c.textContent))'


def test_keyboard_moves_through_cells_and_rows(browser, reports, tmp_path):
    "Each table and the heatmap is one tab stop; arrows move, Enter chooses: a cell's or a group's tensors, a tensor's histogram, a report."
    path = save_report(reports, tmp_path / 'keys.html', 'rel', 1e-3, view='heatmap', printable=False)
    page, refused, errors, _ = _open(browser, path)
    r = reports['scanned']
    tips = dict(zip([(_lab(l), k) for l, k in r.sparsity('rel', 1e-3, by=['layer', 'kind']).index], _cells(r, 'rel', 1e-3)))
    assert page.locator('rect.rl-cell[tabindex="0"]').count() == 1
    page.focus('rect.rl-cell[tabindex="0"]')                             # the tab stop: the top left cell
    assert page.evaluate(NAV) == 'c:0|q' and page.inner_text('#rl-hover') == tips['0', 'q']   # its numbers as it takes focus
    for key, at in (('ArrowRight', 'c:0|k'), ('ArrowDown', 'c:1|k'), ('ArrowUp', 'c:0|k'), ('ArrowDown', 'c:1|k'), ('ArrowLeft', 'c:1|q'), ('ArrowRight', 'c:1|k')):
        page.keyboard.press(key)
        assert page.evaluate(NAV) == at, (key, at)
    assert page.inner_text('#rl-hover') == tips['1', 'k']
    page.keyboard.press('Enter')                                         # the cell's tensors, the keyboard on the first of them
    name = 'model.layers.1.self_attn.k_proj.weight'
    assert page.get_attribute('#rl-views button.on', 'data-view') == 'tensors' and page.inner_text('#rl-count') == '1 of 21 tensors (layer 1 · k)'
    assert page.evaluate(NAV) == f't:{name}'
    page.keyboard.press('Enter')                                         # a tensor's row: its histogram; the keyboard stays on the row
    assert page.inner_text('#rl-hist h3') == name and page.get_attribute('#rl-tensors tr.sel', 'data-name') == name and page.evaluate(NAV) == f't:{name}'

    page.click('#rl-views button[data-view="tensors"]')                  # every tensor: Home, End, PageDown, ArrowUp
    order = [row[0] for row in _tensor_rows(r, 'rel', 1e-3)]
    page.focus('#rl-tensors tr[tabindex="0"]')
    assert page.evaluate(NAV) == f't:{name}'                             # the tab stop is the chosen tensor's row
    for key, i in (('Home', 0), ('End', len(order) - 1), ('Home', 0), ('PageDown', 10), ('ArrowUp', 9)):
        page.keyboard.press(key)
        assert page.evaluate(NAV) == f't:{order[i]}', key
    page.keyboard.press('Enter')
    assert page.inner_text('#rl-hist h3') == order[9] and page.evaluate(NAV) == f't:{order[9]}'

    page.click('#rl-views button[data-view="kind"]')                     # a group's row: its tensors
    page.focus('#rl-groups tbody tr[tabindex="0"]')
    page.keyboard.press('ArrowDown'); page.keyboard.press('ArrowDown')
    assert page.evaluate(NAV) == 'g:kind:v'
    page.keyboard.press('Enter')
    rows = page.eval_on_selector_all('#rl-tensors tbody tr', ROWS)
    assert rows == [row for row in _tensor_rows(r, 'rel', 1e-3) if row[2] == 'v'] and page.inner_text('#rl-count').endswith('(v)')
    assert page.evaluate(NAV) == f't:{rows[0][0]}'

    page.focus('#rl-reports tbody tr[tabindex="0"]')                     # a report's row: that report
    page.keyboard.press('ArrowDown'); page.keyboard.press('Enter')
    assert page.input_value('#rl-report') == '1' and page.inner_text('#rl-headline') == headline_text(reports['synthetic 1'], 'rel', 1e-3)
    assert page.evaluate(NAV) == 'r:1'
    assert refused == [] and errors == [], (refused, errors)


def _view_state(page) -> dict:
    "What the reader sees of the state: report, rule, threshold, view, search, tensor, headline, the table or the heatmap."
    js = """() => { const q = s => document.querySelector(s), t = s => q(s) ? q(s).textContent : null;
      return {report: q('#rl-report').value, rule: q('#rl-rules button.on').dataset.rule, readout: t('#rl-readout'), view: q('#rl-views button.on').dataset.view,
              search: q('#rl-search') ? q('#rl-search').value : null, tensor: t('#rl-hist h3'), head: t('#rl-headline'), count: t('#rl-count'),
              diff: q('#rl-diff') ? q('#rl-diff').checked : null,
              rows: [...document.querySelectorAll('#rl-main tbody tr')].map(r => r.textContent), cells: [...document.querySelectorAll('rect.rl-cell')].map(r => r.dataset.tip)}; }"""
    return page.evaluate(js)


def test_a_link_reopens_the_same_view(browser, reports, tmp_path):
    "The page's address keeps report, rule, threshold, view, search, cut and tensor; a reopened or pasted link shows the same; a wrong one opens as written."
    path = save_report(reports, tmp_path / 'link.html', printable=False)
    page, refused, errors, _ = _open(browser, path)
    page.select_option('#rl-report', '2')
    page.click('#rl-rules button[data-rule="rel"]')
    page.focus('#rl-threshold'); page.keyboard.press('ArrowLeft'); page.keyboard.press('ArrowLeft')
    j = int(page.input_value('#rl-threshold'))
    page.click('#rl-views button[data-view="tensors"]')
    page.fill('#rl-search', 'mlp')
    name = 'model.layers.0.mlp.gate_proj.weight'
    page.click(f'#rl-tensors tr[data-name="{name}"]')
    url = page.url
    assert parse_qs(urlsplit(url).fragment) == {'rule': ['rel'], 'threshold': [fmt_threshold(float(LADDER[j]))], 'view': ['tensors'],
                                                'report': ['synthetic 2'], 'tensor': [name], 'search': ['mlp']}
    want = _view_state(page)
    assert want['head'] == headline_text(reports['synthetic 2'], 'rel', float(LADDER[j])) and want['tensor'] == name and len(want['rows']) == 6
    again, *_ = _open(browser, url)                                      # the link, opened anew
    assert _view_state(again) == want
    # the heatmap as the difference from the first report, and a table cut to one cell, survive the link too
    again.click('#rl-views button[data-view="heatmap"]'); again.check('#rl-diff')
    diff = _view_state(again)
    assert 'diff=1' in again.url and _view_state(_open(browser, again.url)[0]) == diff
    again.click('rect.rl-cell[data-layer="1"][data-kind="up"]')
    cut = _view_state(again)
    assert cut['count'] == '1 of 21 tensors (layer 1 · up)' and _view_state(_open(browser, again.url)[0]) == cut
    # a link naming what the file does not hold opens as the file was written
    bad, _, bad_errors, _ = _open(browser, path.as_uri() + '#rule=fuzzy&threshold=x&view=pie&report=nobody&tensor=model.none')
    plain = _view_state(_open(browser, path)[0])
    assert _view_state(bad) == plain and plain['head'] == headline_text(reports['scanned']) and plain['view'] == 'layer'
    bad.evaluate('h => { location.hash = h; }', urlsplit(url).fragment)     # a link pasted into the open tab
    bad.wait_for_function('h => document.getElementById("rl-headline").textContent === h', arg=want['head'])
    assert _view_state(bad) == want
    assert refused == [] and errors == [] and bad_errors == [], (refused, errors, bad_errors)


def _luma(css: str) -> float:
    "Relative brightness 0..1 of a CSS rgb() colour."
    r, g, b = (int(v) for v in re.findall(r'\d+', css)[:3])
    return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255

THEME = """() => { const s = e => getComputedStyle(e);
  return [document.documentElement.dataset.theme, s(document.body).backgroundColor, s(document.body).color,
          s(document.querySelector('#rl-chart text.ax')).fill, s(document.querySelector('#rl-groups th')).backgroundColor]; }"""


def test_dark_theme_follows_the_reader_and_jupyterlab(browser, reports, tmp_path):
    "prefers-color-scheme: dark gives the dark theme (and light again when it changes); inside JupyterLab (an iframe), JupyterLab's theme decides."
    path = save_report(reports['scanned'], tmp_path / 'theme.html', printable=False)
    page, refused, errors, _ = _open(browser, path, color_scheme='dark')
    theme, bg, fg, axis, head = page.evaluate(THEME)
    assert theme == 'dark' and _luma(bg) < 0.15 and _luma(fg) > 0.8 and _luma(axis) > 0.5 and _luma(head) < 0.25, (bg, fg, axis, head)
    page.emulate_media(color_scheme='light')                             # the reader switches: the page follows
    page.wait_for_function('document.documentElement.dataset.theme === "light"')
    theme, bg, fg, axis, head = page.evaluate(THEME)
    assert _luma(bg) > 0.95 and _luma(fg) < 0.2 and _luma(head) > 0.9
    # JupyterLab showing the page in an iframe (one origin, served from memory: nothing leaves the machine), its theme dark under a light system
    lab, lab_refused, lab_errors, _ = _open(browser, path, color_scheme='light')
    files = {'/lab.html': "<html><body data-jp-theme-light='false'><iframe id='f' src='theme.html' width='1200' height='700'></iframe></body></html>",
             '/theme.html': path.read_text()}
    lab.route('http://lab.test/**', lambda route: route.fulfill(status=200, content_type='text/html', body=files[urlsplit(route.request.url).path]))
    lab.goto('http://lab.test/lab.html')
    frame = lab.wait_for_selector('#f').content_frame()
    frame.wait_for_selector('body[data-ready="1"]')
    assert frame.evaluate(THEME)[0] == 'dark' and _luma(frame.evaluate(THEME)[1]) < 0.15
    lab.evaluate("document.body.setAttribute('data-jp-theme-light', 'true')")   # JupyterLab switched to its light theme
    frame.wait_for_function('document.documentElement.dataset.theme === "light"')
    assert refused == errors == lab_refused == lab_errors == [], (refused, errors, lab_refused, lab_errors)


def test_hover_values_on_the_charts(browser, reports, tmp_path):
    "Hovering a column of the by-kind chart shows every report's sparsity there; a histogram bar its count."
    path = save_report(reports, tmp_path / 'hover.html', 'rel', 1e-3, view='kind', printable=False)
    page, refused, errors, _ = _open(browser, path)
    page.hover('rect.rl-col[data-group="gate"]')
    s = {k: r.sparsity('rel', 1e-3, by='kind').sparsity['gate'] for k, r in reports.items()}
    assert page.inner_text('#rl-hover') == 'kind gate: ' + ' · '.join(f'{k} {pct(v)}' for k, v in s.items())
    assert page.get_attribute('#rl-chart line.guide', 'visibility') == 'visible'
    r = reports['scanned']                                                # one report: its numbers in full
    page, refused2, errors2, _ = _open(browser, save_report(r, tmp_path / 'one.html', 'rel', 1e-3, printable=False))
    g = r.sparsity('rel', 1e-3, by='layer').loc[1]
    page.hover('rect.rl-col[data-group="1"]')
    assert page.inner_text('#rl-hover') == f"layer 1: sparsity {pct(g.sparsity)} ({int(g.changed):,} of {int(g.params):,} changed)"
    page.fill('#rl-tensor', 'model.layers.1.mlp.up_proj.weight')
    h = tensor_hist(r, 'model.layers.1.mlp.up_proj.weight', 'rel')['count'].to_numpy()
    k = int(np.argmax(h))
    box = page.locator(f'rect.rl-bin[data-bin="{k}"]').bounding_box()
    page.mouse.move(box['x'] + box['width'] / 2, box['y'] + 2)
    assert page.inner_text('#rl-hist-hover').endswith(f": {h[k]:,} entries")
    assert refused == errors == refused2 == errors2 == [], (refused, errors, refused2, errors2)


# ---- rlsub demo's page: the same engine around the demo's claims and figures ----

def _synthetic_demo():
    "A DemoResult laid out as run_demo lays it out, with synthetic numbers (no training): six scans, two histories, a tracker, rank and overlap."
    from rlsub.experiments.demo import DemoResult, KINDS
    cfg = tiny_config('llama')
    scans = {k: {d: synthetic_report(cfg, seed=10 * i + j) for j, d in enumerate(('bf16', 'fp32'))} for i, k in enumerate(KINDS)}
    full, kinds = scans['full'], pd.Index(['q', 'k', 'v', 'o', 'gate', 'up', 'down'], name='kind')
    m = dict(scans=scans, overlap_seeds=(0, 1),
             kind_bf16=full['bf16'].sparsity('abs', 1e-5, by='kind'), kind_fp32=full['fp32'].sparsity('abs', 1e-5, by='kind'),
             layer_bf16=full['bf16'].sparsity('abs', 1e-5, by='layer'), layer_fp32=full['fp32'].sparsity('abs', 1e-5, by='layer'),
             overlap_by_kind=pd.DataFrame(dict(o1=0.3, o2=0.33, chance_o1=0.07, chance_o2=0.08), index=kinds),
             rank_by_kind=pd.DataFrame(dict(matrices=4, rank_fraction=0.998047, min_rank_fraction=0.99, effective_fraction=0.397941, spectral_shift=2.4e-5), index=kinds))
    steps = np.arange(1, 6)
    hist = pd.DataFrame(dict(step=steps, reward=np.linspace(0.3, 0.5, 5), accuracy=np.linspace(0.3, 0.5, 5)))
    tracker = pd.DataFrame([dict(step=s, storage=d, rule=r, threshold=t, sparsity=sp) for s in steps for d, r, t, sp in
                            (('bf16', 'abs', 1e-5, 1 - 0.01 * s), ('fp32', 'abs', 1e-5, 0.99996), ('bf16', 'exact', math.nan, 0.416))])
    runs = pd.DataFrame(dict(seed=pd.array([pd.NA, 0, 0, 0], dtype='Int64'), accuracy=[0.416, 0.48, 0.5, 0.5], n_eval=50,
                             accuracy_bf16=[0.416, 0.48, 0.48, 0.5], seconds=[0.0, 6.6, 2.7, 4.0], absorbed=[math.nan, 0.873225, 0.011245, 0.869059]),
                        index=pd.Index(['base', 'full', 'subnet', 'random'], name='run'))
    claims = pd.DataFrame([{'finding': 'RL updates a small subnetwork', 'paper': '68–96 %', 'this run': '92.0% (1 seed)',
                            'verdict': 'cannot tell at this n', 'rule': 'holds if the interval lies above 68.0%'}])
    return DemoResult(claims, runs, {'full': hist, 'subnet': hist}, tracker, m, 'synthetic demo: no training, seeded counts')


CLICK_MS = """async ([sel, event, value]) => {   // one control used, to the frame that shows its answer
  const e = document.querySelector(sel), t0 = performance.now();
  if (event === 'click') e.dispatchEvent(new MouseEvent('click', {bubbles: true}));
  else { e.value = value; e.dispatchEvent(new Event(event, {bubbles: true})); }
  await new Promise(r => requestAnimationFrame(() => setTimeout(r, 0)));
  return performance.now() - t0;
}"""
RAW_FRACTION = re.compile(r'(?<![\w.])\d+\.\d+(?![\d.]*(%|e-))')     # a number with decimals that is not a percentage or 2.4e-5


def test_demo_page_is_explorable(browser, tmp_path):
    "rlsub demo's page: the runs' scans behind working controls (each redrawn within 150 ms of a click) and tables whose numbers read one way."
    from rlsub.experiments.demo import KINDS, demo_html
    res = _synthetic_demo()
    path = tmp_path / 'rlsub-demo.html'
    path.write_text(demo_html(res))
    page, refused, errors, first = _open(browser, path)
    scans, labels = res.measured['scans'], [f'{k} ({d})' for k in KINDS for d in ('bf16', 'fp32')]
    assert page.eval_on_selector_all('#rl-report option', 'os => os.map(o => o.textContent)') == labels
    assert page.inner_text('#rl-headline') == headline_text(scans['full']['bf16'], 'abs', 1e-5)
    g = {k: scans[k.split(' ')[0]][k[-5:-1]].sparsity('abs', 1e-5, by='kind').sparsity for k in labels}
    assert page.eval_on_selector_all('#rl-groups tbody tr', ROWS) == [
        [kind] + [pct(g[k][kind]) for k in labels] + [f"{(g[k][kind] - g[labels[0]][kind]) * 100:+.2f}" for k in labels[1:]] for kind in kind_order(g[labels[0]].index)]
    ms = {}
    def use(what, sel, event='click', value=None): ms[what] = page.evaluate(CLICK_MS, [sel, event, value])
    use('rule rel', '#rl-rules button[data-rule="rel"]')
    use('threshold', '#rl-threshold', 'input', str(int(np.searchsorted(LADDER, 2e-3))))
    use('report', '#rl-report', 'change', str(labels.index('subnet (fp32)')))
    use('heatmap', '#rl-views button[data-view="heatmap"]')
    thr = float(LADDER[int(page.input_value('#rl-threshold'))])
    sub = scans['subnet']['fp32']
    assert page.inner_text('#rl-headline') == headline_text(sub, 'rel', thr)
    assert page.eval_on_selector_all('rect.rl-cell', 'rs => rs.map(r => r.dataset.tip)') == _cells(sub, 'rel', thr)
    use('difference', '#rl-diff')
    use('cell', 'rect.rl-cell[data-layer="1"][data-kind="down"]')
    assert page.inner_text('#rl-count') == '1 of 21 tensors (layer 1 · down)'
    use('row', '#rl-tensors tr[data-name="model.layers.1.mlp.down_proj.weight"]')
    assert page.inner_text('#rl-hist h3') == 'model.layers.1.mlp.down_proj.weight'
    use('by layer', '#rl-views button[data-view="layer"]')
    use('rule exact', '#rl-rules button[data-rule="exact"]')
    assert page.inner_text('#rl-headline') == headline_text(sub, 'exact')
    assert 'report=subnet+%28fp32%29' in page.url and 'view=layer' in page.url
    assert max(ms.values()) <= 150, ms
    # the tables around the explorer: percentages as fmt_pct writes them, accuracies with their standard error, no raw fractions
    tables = page.eval_on_selector_all('.rl-doc table', 'ts => ts.map(t => t.innerText)')
    assert len(tables) == 4 and [RAW_FRACTION.findall(t) for t in tables] == [[]] * 4, tables
    runs = page.eval_on_selector_all('.rl-doc table', 'ts => [...ts[1].querySelectorAll("tbody tr")].map(r => [...r.children].map(c => c.textContent))')
    assert runs[1] == ['full', '0', '48.0% ± 7.1%', '48.0% ± 7.1%', '50', '87.32%', '7'] and runs[0][1] == runs[0][5] == '—', runs
    assert '>99.99%' in tables[2] and '41.60%' in tables[2] and '39.79%' in tables[3] and '2.4e-5' in tables[3]
    assert page.locator('.rl-doc img').count() == 3                      # two training histories and the overlap figure
    assert refused == [] and errors == [], (refused, errors)
    print(f"\n{path.name}: {path.stat().st_size / 1024:.0f} KiB, first render {first * 1000:.0f} ms; click to redraw (ms): "
          + ', '.join(f'{k} {v:.0f}' for k, v in ms.items()))


def _drag(page, a: str, b: str):
    "Press on the element `a`, move to `b`, let go: a dragged box."
    pa, pb = page.locator(a).bounding_box(), page.locator(b).bounding_box()
    page.mouse.move(pa['x'] + pa['width'] / 2, pa['y'] + pa['height'] / 2); page.mouse.down()
    page.mouse.move(pb['x'] + pb['width'] / 2, pb['y'] + pb['height'] / 2, steps=5); page.mouse.up()


def test_zoom_by_dragging(browser, reports, tmp_path):
    "A box dragged over the heatmap or the dots shows only what it covers (the link keeps it); 'whole figure' or Escape shows all again; clicks still choose."
    rep = reports['scanned']
    path = save_report(rep, tmp_path / 'zoom.html', printable=False)
    page, refused, errors, _ = _open(browser, path)
    page.click('#rl-views button[data-view="heatmap"]')
    every = page.locator('rect.rl-cell').count()
    _drag(page, 'rect.rl-cell[data-layer="0"][data-kind="q"]', 'rect.rl-cell[data-layer="1"][data-kind="k"]')
    cells = page.locator('rect.rl-cell').evaluate_all('cs => cs.map(c => c.dataset.layer + c.dataset.kind)')
    assert sorted(cells) == ['0k', '0q', '1k', '1q'] and every > 4, (every, cells)
    assert parse_qs(urlsplit(page.url).fragment)['zoom'] == ['0-1,0-1']
    again, *_ = _open(browser, page.url)                                  # the link keeps the zoom
    assert again.locator('rect.rl-cell').count() == 4
    page.locator('rect.rl-cell').first.focus(); page.keyboard.press('Escape')
    assert page.locator('rect.rl-cell').count() == every and page.locator('#rl-unzoom').count() == 0 and 'zoom' not in parse_qs(urlsplit(page.url).fragment)
    page.click('#rl-views button[data-view="kind"]')                     # the dots: the groups under the box, the table still every group
    kinds = kind_order(rep.sparsity(by='kind').index)
    _drag(page, f'#rl-chart rect.rl-col[data-group="{kinds[1]}"]', f'#rl-chart rect.rl-col[data-group="{kinds[3]}"]')
    shown = page.locator('#rl-chart rect.rl-col').evaluate_all('cs => cs.map(c => c.dataset.group)')
    assert shown == list(kinds[1:4]) and page.locator('#rl-groups tbody tr').count() == len(kinds), shown
    page.locator(f'#rl-chart rect.rl-col[data-group="{kinds[2]}"]').click()      # a click is still a click: that kind's tensors
    assert parse_qs(urlsplit(page.url).fragment)['kind'] == [kinds[2]]
    page.click('#rl-views button[data-view="kind"]')
    _drag(page, f'#rl-chart rect.rl-col[data-group="{kinds[0]}"]', f'#rl-chart rect.rl-col[data-group="{kinds[1]}"]')
    page.click('#rl-unzoom')
    assert page.locator('#rl-chart rect.rl-col').count() == len(kinds)
    assert refused == [] and errors == [], (refused, errors)


def test_sort_and_axis_titles(browser, reports, tmp_path):
    "The tensor table sorts as the notebook's does (tensor_table's SORTS; kept in the link); the charts carry axis titles."
    rep = reports['synthetic 1']
    path = save_report(rep, tmp_path / 'sort.html', printable=False)
    page, refused, errors, _ = _open(browser, path)
    page.click('#rl-rules button[data-rule="abs"]')
    titles = page.locator('#rl-chart .rl-ytitle, #rl-chart .rl-xtitle').all_text_contents()
    assert titles == ['layer (—: tensors outside the layers)', 'sparsity (share unchanged)'], titles
    page.click('#rl-views button[data-view="heatmap"]')
    assert page.locator('#rl-heatmap .rl-ytitle').text_content().startswith('layer') and page.locator('#rl-heatmap .rl-xtitle').text_content().startswith('kind')
    page.click('#rl-views button[data-view="tensors"]')
    for sort in ('sparsity', 'size', 'model order'):
        page.select_option('#rl-sort', sort)
        shown = page.locator('#rl-tensors tbody tr').evaluate_all('rs => rs.map(r => r.dataset.name)')
        assert shown == list(tensor_table(rep, 'abs', 1e-5, sort).name), sort
        assert (parse_qs(urlsplit(page.url).fragment).get('sort') or ['model order']) == [sort]
    page.select_option('#rl-sort', 'size')
    again, *_ = _open(browser, page.url)                                  # the link keeps the order
    assert again.locator('#rl-tensors tbody tr').evaluate_all('rs => rs.map(r => r.dataset.name)') == list(tensor_table(rep, 'abs', 1e-5, 'size').name)
    assert refused == [] and errors == [], (refused, errors)


# ---- the same engine in a notebook: page_view's anywidget module, driven with a stand-in for anywidget's model ----
WIDGET_HOST = """<html><head><style>{css}</style></head><body data-jp-theme-light='{light}'>
<div class='out' id='o1'></div><div class='out' id='o2'></div>
<script type='module'>
import widget from './esm.js';
function fakeModel(data, link) {{        // what anywidget hands `render`: get, set, save_changes, on/off 'change:<name>'
  const v = {{data, link}}, cbs = {{}}, m = {{saved: []}};
  m.get = k => v[k];
  m.set = (k, x) => {{ v[k] = x; }};
  m.save_changes = () => m.saved.push(v.link);
  m.on = (ev, f) => {{ (cbs[ev] = cbs[ev] || []).push(f); }};
  m.off = (ev, f) => {{ cbs[ev] = (cbs[ev] || []).filter(g => g !== f); }};
  m.fromKernel = x => {{ v.link = x; (cbs['change:link'] || []).forEach(f => f()); }};   // Python setting `link`
  return m;
}}
window.models = {models};
for (const [i, [data, link]] of window.models.entries()) {{
  window.models[i] = fakeModel(data, link);
  widget.render({{model: window.models[i], el: document.getElementById('o' + (i + 1))}});
}}
document.body.dataset.ready = '1';
</script></body></html>"""


def _widget_page(browser, pvs, light='true'):
    "A document with page_view widgets rendered by their own module (served from memory; every other request refused): (page, errors)."
    import json
    from rlsub.viz.page import _CSS
    models = json.dumps([[pv.data, pv.link] for pv in pvs])
    files = {'/host.html': ('text/html', WIDGET_HOST.format(css=_CSS, light=light, models=models)), '/esm.js': ('text/javascript', pvs[0]._esm)}
    page = browser.new_page(viewport={'width': 1400, 'height': 1000})
    errors = []
    page.on('pageerror', lambda e: errors.append(str(e)))
    page.route('**/*', lambda route: route.fulfill(status=200, content_type=files[urlsplit(route.request.url).path][0], body=files[urlsplit(route.request.url).path][1])
               if route.request.url.startswith('http://nb.test/') else route.abort())
    page.goto('http://nb.test/host.html')
    page.wait_for_selector('body[data-ready="1"]', timeout=30_000)
    return page, errors


def test_page_view_is_the_page_engine_in_a_notebook(browser, reports):
    "page_view's module draws the page's views inside its output: two views in one document stay apart, the reader's moves reach `link` (read back by Python), Python's moves redraw it, JupyterLab's theme is followed."
    from rlsub.viz.page import page_view, _link_state
    scanned = reports['scanned']
    pvs = [page_view(scanned, 'abs', 1e-5, view='heatmap'), page_view(reports, 'exact', view='kind')]
    page, errors = _widget_page(browser, pvs, light='false')
    o1, o2 = page.locator('#o1'), page.locator('#o2')
    assert o1.locator('#rl-headline').inner_text() == headline_text(scanned, 'abs', 1e-5)
    assert o1.locator('rect.rl-cell').evaluate_all('rs => rs.map(r => r.dataset.tip)') == _cells(scanned, 'abs', 1e-5)
    assert o1.locator('#rl-colourbar').count() == 1 and o2.locator('#rl-reports tbody tr').count() == 3
    assert page.evaluate("getComputedStyle(document.getElementById('o1')).backgroundColor") != 'rgb(255, 255, 255)'   # JupyterLab's dark theme
    assert page.evaluate("document.getElementById('o1').dataset.theme") == 'dark'
    # the reader in the second view: its controls, not the first's
    t0 = time.perf_counter()
    o2.locator('#rl-rules button[data-rule="rel"]').click()
    o2.locator('#rl-views button[data-view="tensors"]').click()
    o2.locator('#rl-search').fill('mlp')
    ms = (time.perf_counter() - t0) * 1000 / 3
    link = page.evaluate('models[1].get("link")')
    # each view tells only of its own moves; the link Python opened the first with is the one the engine writes (nothing sent back)
    assert page.evaluate('models[1].saved.length') == 3 and page.evaluate('models[0].saved.length') == 0
    st = _link_state(link, pvs[1]._data)
    assert (st['rule'], st['view'], st['search'], st['report']) == ('rel', 'tensors', 'mlp', 'scanned'), link
    assert o2.locator('#rl-tensors tbody tr').evaluate_all('rs => rs.map(r => r.dataset.name)') == [r[0] for r in _tensor_rows(scanned, 'rel', 1e-3, 'mlp')]
    assert o1.locator('#rl-headline').inner_text() == headline_text(scanned, 'abs', 1e-5)               # the first view did not move
    # Python moves the first view: it redraws there
    pvs[0].show(rule='rel', threshold=1e-4, view='kind', tensor='model.layers.1.mlp.up_proj.weight')
    page.evaluate('l => models[0].fromKernel(l)', pvs[0].link)
    assert o1.locator('#rl-headline').inner_text() == headline_text(scanned, 'rel', 1e-4)
    assert o1.locator('#rl-groups tbody tr').evaluate_all('rs => rs.map(r => [...r.children].map(c => c.textContent))') == _group_rows(scanned, 'rel', 1e-4, 'kind')
    assert o1.locator('#rl-hist h3').inner_text() == 'model.layers.1.mlp.up_proj.weight'
    assert page.evaluate('models[0].get("link")') == pvs[0].link                                      # no echo back: the state is the one Python set
    print(f"\npage_view: {ms:.0f} ms a control change, Playwright's driving included (a reading; bench_page.py measures the engine)")
    assert errors == [], errors
