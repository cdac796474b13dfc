"""The self-contained HTML report (rlsub.viz.page) in headless system Chromium, opened from a file with the network refused.

Moves the threshold over the whole ladder under each rule and compares, as text, the headline, the by-layer and by-kind
tables, every heatmap cell, tensor rows and one tensor's histogram with `DeltaReport.sparsity`, `tensor_table` and
`tensor_hist`; the same for a page of three reports (report picker, the differences column); the number formats on ties.
Skipped without Chromium or playwright (the reason names the install commands), failed instead under RLSUB_REQUIRE_BROWSER=1 (CI)."""
import math, random, time
import pytest
from browser import chromium, require_browser

from rlsub.examples import make_pair, tiny_config
from rlsub.measure.report import synthetic_report
from rlsub.core import fmt_pct
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


def _open(browser, path):
    "Open `path` from file:// with every other request refused; (page, refused requests, seconds to first render)."
    page = browser.new_page(viewport={'width': 1400, 'height': 1000})
    refused, errors = [], []
    page.route('**/*', lambda route: route.continue_() if route.request.url.startswith('file:') else (refused.append(route.request.url), route.abort()))
    page.on('pageerror', lambda e: errors.append(str(e)))
    t0 = time.perf_counter()
    page.goto(path.as_uri())
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
