"""What a reader sees in the committed notebooks: no debris in any output.

Every notebook under nbs/ is read as committed (nothing is run) and each cell's outputs are checked for
- stderr streams (warnings, logging, tracebacks written to stderr),
- progress-bar text (tqdm's `45%|████▌     | 9/20 [00:01<00:01, 7.9it/s]`, with or without a bar),
- a developer's paths: /work/, /tmp/, /root/, a virtual environment's .venv (a temporary folder the notebook made
  prints as an absolute /tmp/... path: print paths relative to it instead),
- a figure's text (`<Figure size 640x480 with 1 Axes>`) where no picture comes with it: a figure returned or printed
  rather than shown,
- errors (a cell that raised).
A failure names each notebook, cell and what was found, with the text around it.
"""
import json, re
from pathlib import Path
import pytest

NBS = Path(__file__).parents[1] / 'nbs'
NOTEBOOKS = sorted(p for p in NBS.rglob('*.ipynb') if '.ipynb_checkpoints' not in p.parts and not p.name.startswith('_'))

PROGRESS = re.compile(r'\d{1,3}%\|[^|\n]{0,120}\|\s*\d+/\d+'            # tqdm's bar: 45%|████▌     | 9/20
                      r'|\d+(?:\.\d+)?\s?(?:it|s|step|steps|B|kB|MB|GB)/(?:s|it|step)\b'   # its rate: 7.9it/s, 1.2s/it, 3.1step/s
                      r'|\[\d\d:\d\d<(?:\d\d:\d\d|\?)')                     # its times: [00:01<00:01, [00:00<?
PATHS = re.compile(r'(?<![\w.])(?:/work/|/tmp/|/root/)|(?<![\w-])\.venv\b')
FIGURE = re.compile(r'<\w*Figure size [\d.]+x[\d.]+ with \d+ Axes>')
PICTURES = ('image/png', 'image/jpeg', 'image/svg+xml', 'application/pdf')
TEXT = ('text/plain', 'text/html', 'text/markdown', 'text/latex')


def _around(text: str, m: re.Match, n: int = 60) -> str:
    return repr(text[max(0, m.start() - n):m.end() + n])


def debris(nb: dict) -> list[str]:
    "What a reader would see that is not the notebook's content: one line per finding, 'cell N: what: text around it'."
    found = []
    for i, cell in enumerate(nb.get('cells', [])):
        for out in cell.get('outputs', []) if cell.get('cell_type') == 'code' else []:
            kind, where = out.get('output_type'), f'cell {i}'
            if kind == 'error':
                found.append(f"{where}: an error: {out.get('ename')}: {out.get('evalue', '')[:200]!r}"); continue
            if kind == 'stream':
                text = ''.join(out.get('text', ''))
                if out.get('name') == 'stderr': found.append(f'{where}: a stderr stream: {text[:200]!r}')
                texts = [('stream', text)]
            elif kind in ('execute_result', 'display_data'):
                data = out.get('data', {})
                texts = [(k, ''.join(v) if isinstance(v, list) else v if isinstance(v, str) else json.dumps(v)) for k, v in data.items() if k in TEXT]
                if not any(k in data for k in PICTURES):
                    for k, t in texts:
                        if m := FIGURE.search(t): found.append(f'{where}: a figure as text ({k}), no picture: {_around(t, m)}')
            else: texts = []
            for k, t in texts:
                if m := PROGRESS.search(t): found.append(f'{where}: progress-bar text ({k}): {_around(t, m)}')
                if m := PATHS.search(t): found.append(f"{where}: a developer's path ({k}): {_around(t, m)}")
    return found


# Notebooks committed with debris this test found when it was written (2026-12-05), each to be cleaned by whoever next
# works on it (print paths relative to a scratch folder the notebook chdirs into, as tutorials/01 and measure/18 do; pass
# progress=False, or show QuietLog's lines, where the live widget bar's text would otherwise stay in the output).
# Strict: a notebook cleaned and still listed fails, so the list only shrinks.
KNOWN = {'experiments/51_demo.ipynb': "temporary-folder paths in the reports' 'report:' lines"}


@pytest.mark.parametrize('nb', [pytest.param(p, marks=pytest.mark.xfail(reason=f'known debris: {KNOWN[str(p.relative_to(NBS))]}', strict=True))
                                if str(p.relative_to(NBS)) in KNOWN else p for p in NOTEBOOKS], ids=lambda p: str(p.relative_to(NBS)))
def test_no_debris(nb):
    found = debris(json.loads(nb.read_text()))
    assert not found, f"{nb.relative_to(NBS.parent)} shows, as committed:\n  " + '\n  '.join(found)


def _nb(*outputs) -> dict:
    return {'cells': [{'cell_type': 'code', 'source': '', 'outputs': list(outputs)}]}


def test_debris_is_found():
    "Each kind of debris is found, and what is not debris is left alone."
    stream = lambda text, name='stdout': {'output_type': 'stream', 'name': name, 'text': text}
    shown = lambda data: {'output_type': 'display_data', 'data': data, 'metadata': {}}
    bad = {'stderr': stream('UserWarning: something\n', 'stderr'),
           'tqdm bar': stream('GRPO:  45%|████▌     | 9/20 [00:01<00:01,  7.90step/s]\n'),
           'tqdm widget text': shown({'text/plain': 'Loading weights:   0%|          | 0/21 [00:00<?, ?it/s]'}),
           'tmp path': stream('wrote /tmp/tmpab12cd34/report.json\n'),
           'venv path': stream('  File "/home/me/rlsub/.venv/lib/python3.11/site-packages/x.py", line 3\n'),
           'work path': shown({'text/html': "<code>/work/main/pair</code>"}),
           'figure text': {'output_type': 'execute_result', 'data': {'text/plain': '<Figure size 640x480 with 1 Axes>'}, 'metadata': {}},
           'error': {'output_type': 'error', 'ename': 'ValueError', 'evalue': 'no', 'traceback': []}}
    for what, out in bad.items(): assert debris(_nb(out)), what
    good = [stream('sparsity 75.00% (exact); 100 steps in 44 s, 2.3 steps a second\n'),
            stream('accuracy 41.8% ± 2.2 | 50.6% ± 2.2\n'),
            shown({'image/png': 'iVBOR', 'text/plain': '<RlsubFigure size 792x259.2 with 3 Axes>'}),   # a picture: its text is never seen
            stream('report: pair/report.json; see docs/tmp/ and my.venv.txt\n')]
    for out in good: assert not debris(_nb(out)), out
