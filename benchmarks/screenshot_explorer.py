"""A screenshot of the explorer dashboard in JupyterLab, for the README (nbs/images/explorer.png).

Builds a pair that is a real RL update: the shipped tiny `addition` policy saved in bf16 before and after a short
GRPO run on CPU (`--steps`, default 30). Then starts JupyterLab on localhost with a private kernelspec and headless
Debian Chromium (the helpers of tests/test_browser.py), runs a notebook that does
`report = scan_pair('base', 'tuned', progress=False)` and `ex = explore(report)`, and, as a user would, clicks rule
`abs` (the slider moves to its usual threshold, which must be 1e-5) and the `layer × kind` view. Screenshots the
output the dashboard lives in (a small white margin, light theme) and writes the PNG atomically to `--out`.
Every process it starts (server, kernel, browser) is stopped at the end, on error too.

With --states DIR it then steers on, as a reader would, and shoots each state to DIR: a tensor typed in the search
box (its histogram), the 'where it changed' tab (read from the checkpoints), a heatmap cell clicked (the table cut to
that cell, its tensor chosen), the tensors view with a row clicked, and the by-kind view under rule rel. With --laptop
the window is a laptop's (1280 x 800, JupyterLab's file browser open) and each state must fit it, as tests/test_browser.py
checks (`fits`: nothing beyond the output or the window, no sideways scrolling, the side panel beside the figure, no taller
than the notebook's visible height).

Usage: python benchmarks/screenshot_explorer.py [--out nbs/images/explorer.png] [--steps 30] [--work DIR] [--states DIR] [--laptop]
  --work DIR keeps the pair in DIR/base, DIR/tuned and reuses it on the next run (default: a temporary folder).
Needs /usr/bin/chromium (or RLSUB_CHROMIUM) and the pip packages playwright, jupyterlab, ipywidgets.
"""
import argparse, contextlib, json, os, sys, tempfile, time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / 'tests'))
import test_browser as tb          # noqa: E402  (the server and browser helpers of the browser test)

RUN_ALL_S = 300                    # seconds for the kernel to start, scan the pair and show the dashboard (a loaded 2-core machine)
UPDATE_S = 60                      # seconds for the dashboard to follow one click
MARGIN = 12                        # pixels of white around the dashboard
CELLS = ["from rlsub.measure.scan import scan_pair\nreport = scan_pair('base', 'tuned', progress=False)\nreport",
         "import json\nfrom rlsub.viz.explorer import Explorer\n_h = Explorer(report); _h.view.value = 'heatmap'     # where the heatmap shows layer 1 x q\n"
         "open('cell.json', 'w').write(json.dumps(_h.point(layer=1, kind='q')))",
         "from rlsub.viz.explorer import explore\nex = explore(report)"]


def build_pair(work: Path, steps: int):
    "The shipped tiny addition policy in bf16 before (work/base) and after (work/tuned) `steps` GRPO steps; reused when both exist."
    if (work / 'base' / 'config.json').is_file() and (work / 'tuned' / 'config.json').is_file():
        print(f'pair: reusing {work}/base and {work}/tuned'); return
    for d in ('base', 'tuned'):
        if (work / d).exists(): raise SystemExit(f'{work / d} exists but holds no checkpoint; remove it or choose another --work')
    from rlsub.train.tiny import load_base
    from rlsub.train.grpo import train_grpo, GRPOConfig
    from rlsub.train.loop import save_policy
    start = time.perf_counter()
    pol, tok, task = load_base('addition')
    save_policy(pol, tok, work / 'base', 'bf16')
    train_grpo(pol, tok, task, GRPOConfig(steps=steps, prompts_per_step=16, lr=3e-6, device='cpu'), progress=False)
    save_policy(pol, tok, work / 'tuned', 'bf16')
    print(f'pair: {steps} GRPO steps (lr 3e-6, 16 prompts x 8) on the tiny addition policy, saved in bf16 to {work}, '
          f'in {time.perf_counter() - start:.0f} s')


def link_pair(work: Path, root: Path):
    "Make the pair visible from the notebook's folder as base/ and tuned/."
    for d in ('base', 'tuned'): (root / d).symlink_to((work / d).resolve(), target_is_directory=True)


def wait_changed(page, loc, old: str, what: str):
    "Wait until the figure's <img> src differs from `old` (ipywidgets renews it on every new value)."
    page.wait_for_function(f'([el, old]) => ({tb.VERSION_JS})(el) !== old', arg=[loc.element_handle(), old], timeout=UPDATE_S * 1000)
    print(f'dashboard: {what}')


def drive(page, url: str, log: Path) -> tuple[object, dict]:
    "Open the notebook, run all cells, click rule abs and the layer × kind view; the dashboard's output locator and what it shows."
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    page.goto(f'{url}/lab/tree/explore.ipynb', timeout=60_000)
    page.locator('.jp-NotebookPanel .jp-Cell').first.wait_for(timeout=60_000)
    for side in page.locator('.jp-SideBar .lm-TabBar-tab.lm-mod-current').all(): side.click()    # close the side panels
    page.locator('.jp-NotebookPanel .jp-Toolbar-kernelName', has_text='rlsub test').wait_for(timeout=60_000)
    page.locator('.jp-NotebookPanel .jp-Notebook-ExecutionIndicator[data-status="idle"]').wait_for(timeout=120_000)
    page.locator('.lm-MenuBar-item', has_text='Run').first.click()
    page.locator('.lm-Menu-content .lm-Menu-itemLabel').get_by_text('Run All Cells', exact=True).click()
    error, dialog = page.locator(tb.STDERR).filter(has_text='Traceback (most recent call last)'), page.locator('.jp-Dialog')
    try:
        page.locator('.rlsub-headline').or_(error).or_(dialog).first.wait_for(timeout=RUN_ALL_S * 1000)
    except PlaywrightTimeout:
        raise SystemExit(f'no dashboard after {RUN_ALL_S} s; cell outputs:\n{tb._outputs(page)}\nserver log:\n{tb._tail(log)}')
    if dialog.count(): raise SystemExit(f'JupyterLab asks: {dialog.first.inner_text()!r}')
    if error.count(): raise SystemExit(f'a notebook cell raised:\n{tb._outputs(page)}')
    head, fig = page.locator('.rlsub-headline').first, page.locator('.rlsub-figure').first
    out = page.locator('.jp-OutputArea-output', has=head).first
    fig.locator('img').first.wait_for() if fig.evaluate("el => el.tagName") != 'IMG' else fig.wait_for()
    old = fig.evaluate(tb.VERSION_JS)
    page.locator('.rlsub-rule').first.get_by_role('button', name='abs', exact=True).click()
    wait_changed(page, fig, old, "rule 'abs'")
    readout = page.locator('.rlsub-readout').first.inner_text().strip()
    if float(readout) != 1e-5: raise SystemExit(f'the threshold shows {readout!r} after choosing abs, not 1e-5')
    old = fig.evaluate(tb.VERSION_JS)
    page.locator('.rlsub-view').first.get_by_role('button', name='layer × kind', exact=True).click()
    wait_changed(page, fig, old, "view 'layer × kind'")
    page.wait_for_function('el => { const i = el.tagName === "IMG" ? el : el.querySelector("img"); return i && i.complete && i.naturalWidth > 0; }',
                           arg=fig.element_handle(), timeout=UPDATE_S * 1000)
    if error.count(): raise SystemExit(f'a notebook cell raised:\n{tb._outputs(page)}')
    return out, dict(headline=head.inner_text(), threshold=readout, report=page.locator('.jp-OutputArea-output').first.inner_text())


def shoot(page, out, path: Path) -> tuple[int, int]:
    "Screenshot the dashboard's output, padded with a white margin, to `path` atomically; its size in pixels."
    page.mouse.move(0, 0)                          # no hover highlight on a button
    page.evaluate("document.activeElement && document.activeElement.blur()")     # nor a focus ring on the last one clicked
    out.evaluate(f"el => {{ el.style.padding = '{MARGIN}px'; el.style.background = 'white'; }}")
    out.scroll_into_view_if_needed()
    fd, tmp = tempfile.mkstemp(suffix='.png', prefix='.explorer.', dir=path.parent)
    os.close(fd)
    try:
        out.screenshot(path=tmp)
        os.chmod(tmp, 0o644); os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True); raise
    box = out.bounding_box()
    return round(box['width']), round(box['height'])


def states(page, out, folder: Path, root: Path, laptop: bool = False):
    "Steer on from the heatmap as a reader would, shooting each state to `folder` (and, on a laptop's window, checking it fits); what each shows."
    from playwright.sync_api import expect
    folder.mkdir(parents=True, exist_ok=True)
    q = lambda c: page.locator(f'.rlsub-{c}').first
    box, fig, shots = q('tensor').locator('input'), q('figure'), []
    def loaded(c):
        page.wait_for_function(f'el => ({tb.LOADED_JS})(el)', arg=q(c).element_handle(), timeout=UPDATE_S * 1000)
    def changed(c, old): page.wait_for_function(f'([el, old]) => ({tb.VERSION_JS})(el) !== old', arg=[q(c).element_handle(), old], timeout=UPDATE_S * 1000)
    def shot(name, what):
        # the kernel done with the click (it turned busy before the change waited for reached the page): no 'reading…' left
        page.locator('.jp-NotebookPanel .jp-Notebook-ExecutionIndicator[data-status="idle"]').wait_for(timeout=UPDATE_S * 1000)
        if laptop: tb.fits(page, out, 'explorer', what, folder)
        w, h = shoot(page, out, folder / name); shots.append(f'{name} ({w}x{h}): {what}')
    box.click(); box.press_sequentially('model.layers.1.mlp.down_proj.weight', delay=2)
    loaded('hist'); shot('tensor.png', 'a tensor typed in the search box: its |Δ| histogram')
    q('tabs').locator('.lm-TabBar-tab', has_text='where it changed').click()
    loaded('changes'); shot('picture.png', "the 'where it changed' tab, read from the checkpoints")
    old = tb._src(q('changes'))
    x, y = json.loads((root / 'cell.json').read_text())
    bb = fig.locator('img').first.bounding_box()
    page.mouse.click(bb['x'] + x * bb['width'], bb['y'] + y * bb['height'])
    expect(box).to_have_value('layers.1.self_attn.q_proj.weight', timeout=UPDATE_S * 1000)   # as the table shows it
    changed('changes', old); loaded('changes'); shot('cell.png', 'the heatmap cell layer 1 x q clicked: the table cut to it, its tensor chosen')
    q('unfilter').click()
    old = tb._src(fig)
    q('view').get_by_role('button', name='tensors', exact=True).click(); changed('figure', old)
    q('table').locator('tr[data-name="model.layers.0.self_attn.v_proj.weight"]').click()
    expect(box).to_have_value('layers.0.self_attn.v_proj.weight', timeout=UPDATE_S * 1000)
    loaded('changes'); shot('tensors.png', 'the tensors view, a row clicked')
    old = tb._src(fig)
    q('view').get_by_role('button', name='by kind', exact=True).click(); changed('figure', old)
    old = tb._src(fig)
    q('rule').get_by_role('button', name='rel', exact=True).click(); changed('figure', old)
    loaded('changes'); shot('kind-rel.png', 'the by-kind view under rule rel (threshold 1e-3)')
    return shots


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--out', type=Path, default=REPO / 'nbs' / 'images' / 'explorer.png')
    ap.add_argument('--steps', type=int, default=30, help='GRPO steps between base and tuned')
    ap.add_argument('--work', type=Path, default=None, help='keep (and reuse) the pair here')
    ap.add_argument('--page', type=Path, default=None, help='also save a screenshot of the whole page here')
    ap.add_argument('--states', type=Path, default=None, help='also shoot more dashboard states into this folder')
    ap.add_argument('--width', type=int, default=1180, help='browser viewport width in pixels (the dashboard takes the notebook\'s width)')
    ap.add_argument('--laptop', action='store_true', help="a laptop's window (1280 x 800) for --states, each state checked to fit it")
    args = ap.parse_args()
    args.out = args.out.resolve()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix='rlsub-shot-') as tmp, contextlib.ExitStack() as stack:
        tmp = Path(tmp)
        work = args.work.resolve() if args.work else tmp / 'pair'
        work.mkdir(parents=True, exist_ok=True)
        build_pair(work, args.steps)
        url, root, log = stack.enter_context(contextlib.contextmanager(tb.lab.__wrapped__)(tmp))     # stopped on exit
        link_pair(work, root)
        tb._write_notebook(root / 'explore.ipynb', CELLS)
        page = stack.enter_context(contextlib.contextmanager(tb.chromium_page.__wrapped__)(tmp))     # closed on exit
        page.set_viewport_size(tb.LAPTOP if args.laptop else {'width': args.width, 'height': 1600})     # tall enough for the whole dashboard
        start = time.perf_counter()
        try:
            out, shown = drive(page, url, log)
            w, h = shoot(page, out, args.out)
            if args.page: page.screenshot(path=str(args.page))
            more = states(page, out, args.states.resolve(), root, args.laptop) if args.states else []
        except BaseException:
            page.screenshot(path=str(tmp / 'page.png'))
            print(f'failed; cell outputs:\n{tb._outputs(page)}', file=sys.stderr)
            raise
        print(f'report cell: {shown["report"].splitlines()[0] if shown["report"] else "(empty)"}')
        print(f'headline: {shown["headline"]}')
        print(f'wrote {args.out} ({w}x{h} px, {args.out.stat().st_size / 1024:.0f} KiB) after {time.perf_counter() - start:.0f} s in the browser')
        for m in more: print(f'state {m}')
    print('JupyterLab, its kernel and Chromium stopped')


if __name__ == '__main__':
    main()
