"""The explorer in a real browser: JupyterLab on localhost, headless Chromium driven by Playwright.

Runs a notebook that scans a tiny pair and shows `explore(report)`, then moves the threshold slider with the
keyboard and checks that the headline numbers and the figure follow; types a tensor's name in the search box and
opens both tabs (histogram, then the picture read from the checkpoints); clicks a heatmap cell (that cell's tensor is
chosen and the table cut to it) and a table row (that tensor is chosen), checking the chosen tensor each time. Needs Debian's `chromium` at /usr/bin/chromium
(CI: `apt-get install -y chromium`) and the pip packages `playwright`, `jupyterlab`, `ipywidgets`; without Chromium or
playwright the test is skipped with the install commands as the reason, and fails instead under RLSUB_REQUIRE_BROWSER=1
(set by .ci/run). No `playwright install`: the browser is the system one.
"""
import hashlib, json, os, re, socket, subprocess, sys, time, urllib.request
from pathlib import Path
import pytest
from browser import chromium, require_browser

require_browser()
KERNEL = 'rlsub-test'           # a kernelspec of our own, pointing at this very interpreter
SERVER_START_S = 60             # seconds for `jupyter lab` to answer /api/status
RUN_ALL_S = 100                 # seconds for the kernel to start and run every cell (imports, make_pair, scan)
UPDATE_S = 30                   # seconds for the dashboard to follow one slider move

SETUP = """\
import json, sys
from pathlib import Path
from rlsub.examples import make_pair, tiny_config
from rlsub.measure.rules import LADDER; from rlsub.measure.scan import scan_pair
from rlsub.viz.explorer import Explorer; from rlsub.viz.groups import tensor_table
planted = make_pair(Path('pair'), tiny_config('llama'), density=0.25, max_ulps=16, seed=0)
report = scan_pair(Path('pair') / 'base', Path('pair') / 'tuned', device='cpu', progress=False)
# what the headline must show along the threshold ladder, for the test to read
want = {'ladder': LADDER.tolist(), **{r: [100 * report.sparsity(r, float(t)) for t in LADDER] for r in ('abs', 'rel')}}
# where the heatmap shows layer 1 x q (an Explorer of the same report lays it out the same), and what a click there chooses
_ex, t = Explorer(report), tensor_table(report, sort='size')
_ex.view.value = 'heatmap'
cell = t[(t.layer == 1) & (t.kind == 'q')]
want.update(cell={'point': _ex.point(layer=1, kind='q'), 'tensor': cell.name.iloc[0], 'rows': len(cell)},
            typed='layers.0.mlp.down_proj.weight', row='model.layers.0.self_attn.v_proj.weight')   # typed as the table shows it
Path('expected.json').write_text(json.dumps(want))
print('kernel python:', sys.executable)"""

EXPLORE = """\
from rlsub.viz.explorer import explore
ex = explore(report)"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float = 5):
    "GET `url` without any proxy from the environment."
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=timeout) as r:
        return json.loads(r.read())


def _tail(path: Path, n: int = 3000) -> str:
    return path.read_text(errors='replace')[-n:] if path.exists() else ''


def _write_notebook(path: Path, cells: list[str]):
    nb = {'nbformat': 4, 'nbformat_minor': 5,
          'metadata': {'kernelspec': {'name': KERNEL, 'display_name': 'rlsub test', 'language': 'python'},
                       'language_info': {'name': 'python'}},
          'cells': [{'cell_type': 'code', 'id': f'c{i}', 'metadata': {}, 'execution_count': None, 'outputs': [],
                     'source': src} for i, src in enumerate(cells)]}
    path.write_text(json.dumps(nb, indent=1))


def _stop(proc: subprocess.Popen, timeout: float = 15):
    "Terminate the server, then its kernels: terminate, wait, kill; whatever state it is in."
    import psutil
    try:
        kids = psutil.Process(proc.pid).children(recursive=True)
    except psutil.Error:
        kids = []
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
    for k in kids:                      # kernels live in their own sessions: the server usually stops them, make sure
        try:
            k.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(kids, timeout=timeout)
    for k in alive:
        try:
            k.kill()
        except psutil.Error:
            pass


@pytest.fixture
def lab(tmp_path):
    "A JupyterLab server on 127.0.0.1 with no token, rooted in a temporary folder, and its own kernelspec: (url, root, log)."
    root, home = tmp_path / 'root', tmp_path / 'jupyter'
    root.mkdir()
    spec = home / 'data' / 'kernels' / KERNEL
    spec.mkdir(parents=True)
    (spec / 'kernel.json').write_text(json.dumps({'argv': [sys.executable, '-m', 'ipykernel_launcher', '-f', '{connection_file}'],
                                                 'display_name': 'rlsub test', 'language': 'python'}))
    settings = home / 'settings' / '@jupyterlab' / 'apputils-extension'
    settings.mkdir(parents=True)        # no news or update toasts over the page
    (settings / 'notification.jupyterlab-settings').write_text(json.dumps({'fetchNews': 'false', 'checkForUpdates': False}))
    env = dict(os.environ, HF_HUB_OFFLINE='1', TRANSFORMERS_VERBOSITY='error', PYTHONUNBUFFERED='1',
               JUPYTER_CONFIG_DIR=str(home / 'config'), JUPYTER_DATA_DIR=str(home / 'data'),
               JUPYTER_PATH=str(home / 'data'), JUPYTER_RUNTIME_DIR=str(home / 'runtime'), IPYTHONDIR=str(home / 'ipython'),
               MPLBACKEND='Agg')
    port = _free_port()
    log = tmp_path / 'jupyter.log'
    cmd = [sys.executable, '-m', 'jupyter', 'lab', '--no-browser', '--ServerApp.ip=127.0.0.1', f'--ServerApp.port={port}',
           '--ServerApp.port_retries=0', '--ServerApp.allow_root=True', '--IdentityProvider.token=', '--PasswordIdentityProvider.hashed_password=',
           f'--ServerApp.root_dir={root}', f'--LabApp.user_settings_dir={home / "settings"}',
           f'--LabApp.workspaces_dir={home / "workspaces"}', '--LabApp.news_url=None',
           '--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate', f'--KernelSpecManager.allowed_kernelspecs={KERNEL}']
    with open(log, 'wb') as out:
        proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    url = f'http://127.0.0.1:{port}'
    try:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f'jupyter lab exited with {proc.returncode} before answering:\n{_tail(log)}')
            try:
                _get(f'{url}/api/status')
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f'jupyter lab did not answer on {url} within {SERVER_START_S} s:\n{_tail(log)}')
                time.sleep(0.25)        # polling a socket: there is nothing to wait on but the clock
        specs = _get(f'{url}/api/kernelspecs')['kernelspecs']
        assert specs[KERNEL]['spec']['argv'][0] == sys.executable, specs
        yield url, root, log
    finally:
        _stop(proc)


@pytest.fixture
def chromium_page(tmp_path):
    "A page in headless system Chromium."
    with chromium() as browser:
        page = browser.new_page(viewport={'width': 1400, 'height': 1000})
        page.set_default_timeout(UPDATE_S * 1000)
        yield page


# The figure's bytes (its <img>'s src fetched: a blob or data URL) or, for a figure that is not an image, its markup;
# and its version: the src, which ipywidgets renews on every new value.
FIGURE_JS = """async (el) => {
  const img = el.tagName === 'IMG' ? el : el.querySelector('img');
  if (!img) return 'html:' + el.innerHTML;
  const buf = new Uint8Array(await (await fetch(img.src)).arrayBuffer());
  let s = ''; for (let i = 0; i < buf.length; i++) s += String.fromCharCode(buf[i]);
  return 'img:' + btoa(s);
}"""
VERSION_JS = "el => { const img = el.tagName === 'IMG' ? el : el.querySelector('img'); return img ? img.src : el.innerHTML; }"
# The state the controls show (rule, ladder step of the readout's threshold) and whether the rest agrees with it: the
# headline shows the scan's sparsity there, at the precision it is written with ("75.75%", "75.8 %", "76%"), and the
# figure is no longer at version `old`. Steps snap to the ladder like rlsub.measure.rules.snap.
STATE_JS = """([root, want, old]) => {
  const q = c => root.querySelector('.rlsub-' + c), fig = q('figure'), img = fig.tagName === 'IMG' ? fig : fig.querySelector('img');
  const sel = q('rule').querySelector('select'), btn = q('rule').querySelector('button.mod-active');
  const rule = sel ? sel.value : (btn ? btn.innerText.trim() : null);
  const m = (q('readout') || {innerText: ''}).innerText.match(/\d*\.?\d+(?:[eE][-+]?\d+)?/);   // our readout: '—' under exact
  let step = -1;
  if (m) { const t = parseFloat(m[0]) * (1 + 1e-9); while (step + 1 < want.ladder.length && want.ladder[step + 1] <= t) step++; }
  const pct = (want[rule] || [])[step], head = q('headline').innerText;
  const shows = pct !== undefined && (head.match(/\d+(?:\.\d+)?(?=\s*%)/g) || []).some(
    s => Math.abs(parseFloat(s) - pct) <= 0.5 * 10 ** -((s.split('.')[1] || '').length) + 1e-9);
  const redrawn = (img ? img.src : fig.innerHTML) !== old;
  return {rule, step, pct, head, redrawn, ok: shows && redrawn};
}"""
STDERR = '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'    # where JupyterLab shows tracebacks
NUMBER = re.compile(r'\d*\.?\d+(?:[eE][-+]?\d+)?')
LOADED_JS = "el => { const i = el.tagName === 'IMG' ? el : el.querySelector('img'); return !!i && !!i.src && i.complete && i.naturalWidth > 0; }"


def _outputs(page) -> str:
    return '\n'.join(page.locator('.jp-OutputArea-output').all_inner_texts())


class Dashboard:
    "The explorer's widgets on the page, read and driven as a user would."
    def __init__(self, page, want: dict):
        self.page, self.want = page, want    # want: 100 * report.sparsity(rule, t) along the ladder, from the kernel
        self.head, self.fig = page.locator('.rlsub-headline').first, page.locator('.rlsub-figure').first
        self.slider, self.rules = page.locator('.rlsub-threshold').first, page.locator('.rlsub-rule').first
        self.handle = self.slider.locator('.noUi-handle').first
        self.root = page.locator('.jp-OutputArea-output', has=self.head).first     # the output the dashboard lives in

    def figure(self) -> str:
        "A digest of what the figure shows now."
        return hashlib.sha256(self.fig.evaluate(FIGURE_JS).encode()).hexdigest()

    def state(self, old: str = '') -> dict:
        return self.page.evaluate(STATE_JS, [self.root.element_handle(), self.want, old])

    def act(self, do, what: str) -> dict:
        "Do `do()`, then wait until the headline shows the scan's sparsity at the controls' rule and threshold, on a new figure."
        from playwright.sync_api import TimeoutError as PlaywrightTimeout
        version, before = self.fig.evaluate(VERSION_JS), self.head.inner_text()
        do()
        try:
            self.page.wait_for_function(f'args => ({STATE_JS})(args).ok', arg=[self.root.element_handle(), self.want, version],
                                        timeout=UPDATE_S * 1000)
        except PlaywrightTimeout:
            st = self.state(version)
            pytest.fail(f'after {what}, the dashboard did not follow within {UPDATE_S} s: controls at {st["rule"]} '
                        f'{self.want["ladder"][st["step"]] if st["step"] >= 0 else "?"}, where the scan says {st["pct"]} %; '
                        f'the headline shows {st["head"]!r} (before: {before!r}); the figure was {"" if st["redrawn"] else "not "}redrawn')
        return self.state()


def _loaded(page, loc, what: str):
    "Wait until the image in `loc` is shown (decoded, not empty)."
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    try:
        page.wait_for_function(LOADED_JS, arg=loc.element_handle(), timeout=UPDATE_S * 1000)
    except PlaywrightTimeout:
        pytest.fail(f'{what} did not show within {UPDATE_S} s; cell outputs:\n{_outputs(page)}')


def _src(loc) -> str: return loc.evaluate(VERSION_JS)


def steer_by_hand(page, dash: Dashboard, want: dict, error):
    "Type a name in the search box, open both tabs, click a heatmap cell and a table row; check what is chosen each time."
    from playwright.sync_api import expect
    box, tabs = page.locator('.rlsub-tensor input').first, page.locator('.rlsub-tabs').first
    hist, changes, table = page.locator('.rlsub-hist').first, page.locator('.rlsub-changes').first, page.locator('.rlsub-table').first
    expect(tabs).to_be_hidden()                                          # nothing chosen yet
    box.click()
    box.press_sequentially('layers.0.mlp.nowhere', delay=2)               # nothing matches: one line says so
    expect(page.locator('.rlsub-note .rlsub-nomatch').first).to_be_visible()
    box.fill('')
    box.press_sequentially(want['typed'], delay=2)                       # synced as typed: a prefix names no tensor yet
    expect(box).to_have_value(want['typed'])
    expect(tabs).to_be_visible()
    _loaded(page, hist, f"the histogram of {want['typed']}")
    tabs.locator('.lm-TabBar-tab', has_text='where it changed').click()
    _loaded(page, changes, f"the picture of {want['typed']} (read from the checkpoints)")
    expect(page.locator('.rlsub-note').first).to_have_text('')           # the 'reading…' note is gone once the picture is in
    pic = _src(changes)

    old = _src(dash.fig)                                                 # a heatmap cell: that cell's tensor, the table cut to it
    page.locator('.rlsub-view').first.get_by_role('button', name='layer × kind', exact=True).click()
    page.wait_for_function(f'([el, old]) => ({VERSION_JS})(el) !== old', arg=[dash.fig.element_handle(), old], timeout=UPDATE_S * 1000)
    _loaded(page, dash.fig, 'the heatmap')
    bb = dash.fig.locator('img').first.bounding_box()
    x, y = want['cell']['point']
    page.mouse.click(bb['x'] + x * bb['width'], bb['y'] + y * bb['height'])
    expect(box).to_have_value(want['cell']['tensor'].removeprefix('model.'))   # as the table shows it
    expect(table.locator('tr[data-name]')).to_have_count(want['cell']['rows'])
    expect(table.locator('tr.rlsub-sel')).to_have_attribute('data-name', want['cell']['tensor'])
    expect(page.locator('.rlsub-unfilter').first).to_contain_text('layer 1 · kind q')
    page.wait_for_function(f'([el, old]) => ({VERSION_JS})(el) !== old', arg=[changes.element_handle(), pic], timeout=UPDATE_S * 1000)
    _loaded(page, changes, f"the picture of {want['cell']['tensor']}")

    page.locator('.rlsub-unfilter').first.click()                        # lift the cut, list every tensor, click a row
    expect(table).to_be_hidden()
    page.locator('.rlsub-view').first.get_by_role('button', name='tensors', exact=True).click()
    expect(table).to_be_visible()
    row = table.locator(f'tr[data-name="{want["row"]}"]')
    row.click()
    expect(box).to_have_value(want['row'].removeprefix('model.'))
    expect(row).to_have_class(re.compile(r'\brlsub-sel\b'))
    assert not error.count(), _outputs(page)
    print(f"typed {want['typed']}; clicked layer 1 x q -> {want['cell']['tensor']}; clicked the row {want['row']}")


def test_explorer_in_jupyterlab(chromium_page, lab, tmp_path):
    from playwright.sync_api import TimeoutError as PlaywrightTimeout, expect
    url, root, log = lab
    page = chromium_page
    _write_notebook(root / 'explore.ipynb', [SETUP, EXPLORE])
    shot, whole = tmp_path / 'explorer.png', tmp_path / 'page.png'
    try:
        page.goto(f'{url}/lab/tree/explore.ipynb', timeout=60_000)
        page.locator('.jp-NotebookPanel .jp-Cell').first.wait_for(timeout=60_000)
        # the notebook opened on our kernelspec (no kernel picker in the way), and its kernel is up
        page.locator('.jp-NotebookPanel .jp-Toolbar-kernelName', has_text='rlsub test').wait_for(timeout=60_000)
        page.locator('.jp-NotebookPanel .jp-Notebook-ExecutionIndicator[data-status="idle"]').wait_for(timeout=60_000)
        page.locator('.lm-MenuBar-item', has_text='Run').first.click()
        page.locator('.lm-Menu-content .lm-Menu-itemLabel').get_by_text('Run All Cells', exact=True).click()
        error = page.locator(STDERR).filter(has_text='Traceback (most recent call last)')
        dialog = page.locator('.jp-Dialog')
        try:
            page.locator('.rlsub-headline').or_(error).or_(dialog).first.wait_for(timeout=RUN_ALL_S * 1000)
        except PlaywrightTimeout:
            pytest.fail(f'no dashboard after {RUN_ALL_S} s; cell outputs:\n{_outputs(page)}\nserver log:\n{_tail(log)}')
        if dialog.count():
            pytest.fail(f'JupyterLab asks: {dialog.first.inner_text()!r}')
        if error.count():
            pytest.fail(f'a notebook cell raised:\n{_outputs(page)}')
        assert f'kernel python: {sys.executable}' in _outputs(page), _outputs(page)
        dash = Dashboard(page, json.loads((root / 'expected.json').read_text()))
        dash.head.scroll_into_view_if_needed()
        dash.fig.wait_for()
        head0 = dash.head.inner_text()
        assert re.search(r'\d+(?:\.\d+)?\s*%', head0), f'no percentage in the headline: {head0!r}'

        # the threshold means nothing under 'exact': choose 'abs' (the slider comes alive), as a user would
        if dash.slider.locator('[disabled]').count():
            dash.act(lambda: dash.rules.get_by_role('button', name='abs', exact=True).click(), "choosing rule 'abs'")
            expect(dash.slider.locator('[disabled]')).to_have_count(0)
        st0 = dash.state()
        rule, step0 = st0['rule'], st0['step']
        assert rule in ('abs', 'rel') and step0 >= 0, f'the slider is live under rule {rule!r} at step {step0}'
        fig0, head0 = dash.figure(), dash.head.inner_text()

        # to the far end of the ladder with the keyboard, where the count of changed entries must move
        end = 'Home' if dash.handle.get_attribute('aria-valuenow') == dash.handle.get_attribute('aria-valuemax') else 'End'
        step1 = dash.act(lambda: dash.handle.press(end), f'{end} on the slider')['step']
        expect(dash.handle).to_have_attribute('aria-valuenow', dash.handle.get_attribute('aria-valuemin' if end == 'Home' else 'aria-valuemax'))
        head1, fig1 = dash.head.inner_text(), dash.figure()
        assert step1 != step0 and abs(dash.want[rule][step1] - dash.want[rule][step0]) > 1, (step0, step1)
        assert NUMBER.findall(head1) != NUMBER.findall(head0), (head0, head1)
        assert fig1 != fig0, 'the figure did not change with the threshold'
        assert not error.count(), _outputs(page)
        steer_by_hand(page, dash, dash.want, error)
        print(f'\n{rule} threshold {dash.want["ladder"][step0]:g} -> {dash.want["ladder"][step1]:g}: {head0!r} -> {head1!r}')
    finally:                            # the dashboard, and the whole page (which says why when there is no dashboard)
        page.screenshot(path=str(whole))
        out = page.locator('.jp-OutputArea-output', has=page.locator('.rlsub-headline'))
        if out.count():
            out.first.screenshot(path=str(shot), timeout=10_000)
        print(f'screenshots: {shot if shot.exists() else "(no dashboard)"} {whole}')
