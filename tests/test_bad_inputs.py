"""Bad inputs and faults, as a careless user and as an attacker would try them (issue 13).

Every refusal must be: exit code 2, exactly one line on stderr starting `rlsub: error:`, no traceback, nothing
written at or beside the destination, and every input byte-identical afterwards. Most cases run the command
in-process (`rlsub.cli.main`); signals and pipes need a real process.
"""
import gzip, hashlib, io, json, os, signal, struct, subprocess, sys, contextlib, zlib
from pathlib import Path
import pytest, torch
from safetensors.torch import save_file

RLSUB = [sys.executable, '-c', 'from rlsub.cli import console; console()']   # what the installed `rlsub` runs


def run(*argv):
    "The CLI in-process: (exit code, stdout, stderr)."
    from rlsub.cli import main
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err): code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def digest(root: Path) -> dict:
    "Every file under `root` with its bytes' hash: the inputs must come out of every case byte-identical."
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob('*')) if p.is_file()}


@pytest.fixture(scope='module')
def world(tmp_path_factory):
    "A planted llama pair, a gpt2 and a wider llama checkpoint, a DDP-saved copy of tuned, two masks and a report."
    from transformers import AutoModelForCausalLM
    from rlsub.examples import make_pair, tiny_config
    from rlsub.measure.masks import SubnetMask
    from rlsub.measure.scan import scan_pair
    d = tmp_path_factory.mktemp('bad')
    make_pair(d / 'p', tiny_config('llama', num_hidden_layers=2, hidden_size=32, intermediate_size=64), density=0.25)
    for name, cfg in (('gpt2', tiny_config('gpt2')), ('wide', tiny_config('llama', num_hidden_layers=2, hidden_size=64, intermediate_size=128))):
        torch.manual_seed(0); AutoModelForCausalLM.from_config(cfg).to(torch.bfloat16).save_pretrained(d / name)
    from safetensors.torch import load_file
    tuned = load_file(d / 'p/tuned/model.safetensors')
    (d / 'ddp').mkdir(); save_file({f'module.{n}': t for n, t in tuned.items()}, d / 'ddp/model.safetensors')
    SubnetMask.from_pair(d / 'p/base', d / 'p/tuned', device='cpu').save(d / 'mask.safetensors')
    scan_pair(d / 'p/base', d / 'p/tuned', progress=False, device='cpu').save(d / 'report.json')
    return d


def refused(world, *argv, dest=None, contains=None):
    "Run a command that must be refused; check the one line, that nothing is left at or beside `dest`, and that no input changed."
    before = digest(world)
    dest_before = dest.read_bytes() if dest is not None and dest.is_file() else None
    code, out, err = run(*argv)
    assert code == 2, (argv, code, out, err)
    assert err.count('\n') == 1 and err.startswith('rlsub: error: ') and 'Traceback' not in err, err
    if contains: assert contains in err, err
    if dest is not None:
        assert (dest.read_bytes() if dest.is_file() else None) == dest_before or dest.is_dir(), f"{dest} was written"
        if dest.parent.is_dir(): assert not [p for p in dest.parent.iterdir() if p.name.startswith(f'.{dest.name}')], 'a temporary file was left'
    assert digest(world) == before, 'an input changed'
    return err


# ---- outputs aimed at inputs -------------------------------------------------------------------------------

def test_outputs_never_land_on_inputs(world):
    b, t = world / 'p/base', world / 'p/tuned'
    refused(world, 'scan', b, t, '-o', t / 'model.safetensors', dest=t / 'model.safetensors', contains='inside the input checkpoint folder')
    refused(world, 'scan', b, t, '-o', b / 'config.json', dest=b / 'config.json', contains='inside the input checkpoint folder')
    refused(world, 'scan', b, t, '--html', t / 'config.json', dest=t / 'config.json', contains='inside the input checkpoint folder')
    refused(world, 'scan', b, t, '-o', t / 'new-report.json', dest=t / 'new-report.json', contains='inside the input checkpoint folder')
    refused(world, 'mask', b, t, '-o', b / 'model.safetensors', dest=b / 'model.safetensors', contains='inside the input checkpoint folder')
    refused(world, 'rank', b, t, '-o', t / 'model.safetensors', dest=t / 'model.safetensors', contains='inside the input checkpoint folder')
    refused(world, 'scan', b, t, '-o', world / 'same.json', '--html', world / 'same.json', dest=world / 'same.json', contains='also the path of -o')
    refused(world, 'scan', b, t, '-o', t, contains='it is a folder')


def test_outputs_through_links_are_caught(world, tmp_path):
    b, t = world / 'p/base', world / 'p/tuned'
    (tmp_path / 'link-into-tuned').symlink_to(t)                            # a symlinked folder into the checkpoint
    refused(world, 'scan', b, t, '-o', tmp_path / 'link-into-tuned/model.safetensors', contains='inside the input checkpoint folder')
    os.link(t / 'model.safetensors', tmp_path / 'alias.safetensors')       # the tuned file under another name
    refused(world, 'scan', b / 'model.safetensors', t / 'model.safetensors', '-o', tmp_path / 'alias.safetensors',
            dest=tmp_path / 'alias.safetensors', contains='input files')


def test_outputs_are_checked_before_any_work(world, tmp_path):
    b, t = world / 'p/base', world / 'p/tuned'
    refused(world, 'scan', b, t, '-o', tmp_path / 'missing/r.json', contains='does not exist')
    refused(world, 'demo', '--size', 'test', '-o', tmp_path / 'demo.html', '--keep', tmp_path, contains='already exists')
    runs = tmp_path / 'runs'; (runs / 'checkpoint-1').mkdir(parents=True)
    for step in (0, 1):
        ck = runs / f'checkpoint-{step}'; ck.mkdir(exist_ok=True)
        (ck / 'model.safetensors').write_bytes((b if step == 0 else t).joinpath('model.safetensors').read_bytes())
    refused(world, 'trajectory', runs, '-o', runs / 'checkpoint-1/steps.csv', contains='inside the input checkpoint folder')


@pytest.mark.skipif(os.geteuid() == 0, reason='root writes into read-only folders; the probe cannot fail here')
def test_an_unwritable_folder_is_found_before_the_scan(world, tmp_path):
    ro = tmp_path / 'ro'; ro.mkdir(); ro.chmod(0o555)
    err = refused(world, 'scan', world / 'p/base', world / 'p/tuned', '-o', ro / 'r.json', contains='not writable')
    assert '.r.json' not in err                                            # names the destination, never a hidden temporary file


# ---- forged safetensors headers ----------------------------------------------------------------------------

def forged(folder: Path, header: dict, data: bytes = bytes(16), raw_header: bytes | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    h = raw_header if raw_header is not None else json.dumps(header).encode()
    (folder / 'model.safetensors').write_bytes(struct.pack('<Q', len(h)) + h + data)
    return folder


W = 'model.layers.0.self_attn.q_proj.weight'
HEADERS = {
    'overlapping offsets':   ({W: dict(dtype='F32', shape=[2], data_offsets=[0, 8]), 'b': dict(dtype='F32', shape=[2], data_offsets=[4, 12])}, 'overlapping'),
    'offset into the header': ({W: dict(dtype='F32', shape=[4], data_offsets=[-8, 8])}, 'data_offsets'),
    'negative dimensions':   ({W: dict(dtype='F32', shape=[-2, -2], data_offsets=[0, 16])}, 'non-negative'),
    'float dimension':       ({W: dict(dtype='F32', shape=[4.0], data_offsets=[0, 16])}, 'non-negative integers'),
    'boolean offset':        ({W: dict(dtype='U8', shape=[1], data_offsets=[False, True])}, 'data_offsets'),
    'size disagrees with dtype': ({W: dict(dtype='F32', shape=[3], data_offsets=[0, 16])}, 'needs 12'),
    'gap between tensors':   ({W: dict(dtype='F32', shape=[2], data_offsets=[0, 8]), 'b': dict(dtype='F32', shape=[1], data_offsets=[12, 16])}, 'gapped'),
    'bytes after the last tensor': ({W: dict(dtype='F32', shape=[2], data_offsets=[0, 8])}, 'follow the last tensor'),
    'unknown dtype':         ({W: dict(dtype='F128', shape=[1], data_offsets=[0, 16])}, "dtype 'F128'"),
    'metadata not strings':  ({'__metadata__': {'a': 1}, W: dict(dtype='F32', shape=[4], data_offsets=[0, 16])}, '__metadata__'),
    'entry not an object':   ({W: [1, 2, 3]}, 'malformed header entry'),
}


@pytest.mark.parametrize('what', list(HEADERS))
def test_forged_headers_are_refused(world, tmp_path, what):
    header, msg = HEADERS[what]
    bad = forged(tmp_path / 'bad', header)
    refused(world, 'scan', world / 'p/base', bad, '-o', tmp_path / 'r.json', dest=tmp_path / 'r.json', contains=msg)


def test_duplicate_names_and_broken_json_are_refused(world, tmp_path):
    dup = b'{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}'
    refused(world, 'scan', world / 'p/base', forged(tmp_path / 'dup', {}, b'\0', raw_header=dup), contains='lists a twice')
    refused(world, 'scan', world / 'p/base', forged(tmp_path / 'json', {}, b'', raw_header=b'{"a": '), contains='not valid JSON')
    (tmp_path / 'zero').mkdir(); (tmp_path / 'zero/model.safetensors').write_bytes(b'')
    refused(world, 'scan', world / 'p/base', tmp_path / 'zero', contains='too short')


# ---- pairs whose names do not line up --------------------------------------------------------------------------

def test_a_prefixed_tuned_checkpoint_is_lined_up_with_a_note(world, tmp_path):
    code, out, err = run('scan', world / 'p/base', world / 'ddp', '-o', tmp_path / 'r.json', '--no-progress')
    assert code == 0, err
    assert "carry the prefix 'module.'" in out
    from rlsub.measure.report import DeltaReport
    ddp, plain = DeltaReport.load(tmp_path / 'r.json'), DeltaReport.load(world / 'report.json')
    assert ddp.sparsity() == plain.sparsity() and ddp.table.changed.tolist() == plain.table.changed.tolist()
    code, out, _ = run('mask', world / 'p/base', world / 'ddp', '-o', tmp_path / 'm.safetensors', '--no-progress')
    assert code == 0 and "prefix 'module.'" in out                        # mask prints the same note


@pytest.mark.parametrize('cmd', ['scan', 'mask', 'rank'])
@pytest.mark.parametrize('other, msg', [('gpt2', 'names do not line up'), ('wide', 'different model sizes')])
def test_pairs_that_cannot_be_trusted_are_refused(world, tmp_path, cmd, other, msg):
    refused(world, cmd, world / 'p/base', world / other, '-o', tmp_path / 'out', dest=tmp_path / 'out', contains=msg)


def test_trajectory_follows_the_same_rules(world, tmp_path):
    from rlsub.measure.trajectory import trajectory
    from rlsub.core import RlsubError
    from rlsub.measure.report import DeltaReport
    t = trajectory([world / 'p/base', world / 'ddp'], device='cpu')
    assert t.steps.sparsity_vs_start.iloc[-1] == pytest.approx(DeltaReport.load(world / 'report.json').sparsity())
    assert any("prefix 'module.'" in n for n in t.meta['notes'])
    with pytest.raises(RlsubError, match='names do not line up'): trajectory([world / 'p/base', world / 'gpt2'], device='cpu')


# ---- reports and masks that lie ----------------------------------------------------------------------------

def report_with(world, tmp_path, edit, name='bad.json'):
    doc = json.loads((world / 'report.json').read_text()); edit(doc)
    (tmp_path / name).write_text(json.dumps(doc))
    return tmp_path / name


REPORT_EDITS = {
    'more changed than entries': (lambda d: d['tensors'][2].update(changed=d['tensors'][2]['numel'] * 2), 'need 0 ≤ nonfinite ≤ changed ≤ numel'),
    'negative count':            (lambda d: d['tensors'][2].update(changed=-5), 'need 0'),
    'count past int64':          (lambda d: d['tensors'][2].update(numel=10**40), 'counts'),
    'missing histogram':         (lambda d: d['tensors'][0].pop('rel_hist'), 'rel_hist'),
    'histogram not summing':     (lambda d: d['tensors'][0]['abs_hist'].__setitem__(0, 10**6), 'summing'),
    'numel its shapes do not give': (lambda d: d['tensors'][1].update(numel=d['tensors'][1]['numel'] + 8, changed=0, nonfinite=0, abs_hist=[0] * 103, rel_hist=[0] * 103), 'shapes do not give'),
    'tensors not a list':        (lambda d: d.update(tensors={'x': 1}), 'no list of tensors'),
    'row not an object':         (lambda d: d['tensors'].__setitem__(0, 7), 'not an object'),
    'unknown kind':              (lambda d: d['tensors'][0].update(kind='weird'), 'not one rlsub writes'),
    'name twice':                (lambda d: d['tensors'].append(dict(d['tensors'][0])), 'twice'),
    'wrong format':              (lambda d: d.update(format='something else'), 'not an rlsub report'),
    'other ladder':              (lambda d: d['ladder'].pop(), 'incompatible'),
}


@pytest.mark.parametrize('what', list(REPORT_EDITS))
def test_show_refuses_reports_that_lie(world, tmp_path, what):
    edit, msg = REPORT_EDITS[what]
    refused(world, 'show', report_with(world, tmp_path, edit), contains=msg)


def test_show_refuses_json_that_is_no_report_and_decompression_bombs(world, tmp_path):
    for name, raw, msg in [('list.json', b'[1, 2]', 'not an rlsub report'), ('deep.json', b'[' * 100_000, 'not a readable'),
                           ('bigint.json', b'{"format": ' + b'9' * 5000 + b'}', 'not a readable'),
                           ('cut.json.gz', gzip.compress((world / 'report.json').read_bytes())[:-20], 'truncated gzip')]:
        (tmp_path / name).write_bytes(raw)
        refused(world, 'show', tmp_path / name, contains=msg)
    c, bomb = zlib.compressobj(9, zlib.DEFLATED, 31), bytearray()     # 520 MB of spaces in about half a megabyte
    chunk = b' ' * 2**20
    for _ in range(520): bomb += c.compress(chunk)
    (tmp_path / 'bomb.json.gz').write_bytes(bytes(bomb + c.flush()))
    refused(world, 'show', tmp_path / 'bomb.json.gz', contains='larger than 512 MB')
    refused(world, 'show', tmp_path, contains='is a folder')


def test_overlap_refuses_masks_that_lie(world, tmp_path):
    from safetensors import safe_open
    from safetensors.numpy import save_file as save_np
    with safe_open(world / 'mask.safetensors', 'np') as f: md, bits = f.metadata(), {n: f.get_tensor(n) for n in f.keys()}
    n0 = next(iter(bits))
    short = dict(bits); short[n0] = bits[n0][:-1]
    save_np(short, tmp_path / 'short.safetensors', metadata=md)
    refused(world, 'overlap', world / 'mask.safetensors', tmp_path / 'short.safetensors', contains='bytes of bits')
    md2 = dict(md); md2['tensors'] = json.dumps([[n, [3] if n == n0 else list(s)] for n, s in json.loads(md['tensors'])])
    padded = dict(bits); padded[n0] = bits[n0][:1] | 0x80                  # 3 entries: bit 7 is padding and must be 0
    save_np(padded, tmp_path / 'padded.safetensors', metadata=md2)
    refused(world, 'overlap', tmp_path / 'padded.safetensors', tmp_path / 'padded.safetensors', contains='padding must be 0')
    refused(world, 'overlap', world / 'mask.safetensors', world / 'p/base/model.safetensors', contains='not an rlsub mask')
    forged(tmp_path / 'f', HEADERS['overlapping offsets'][0])
    refused(world, 'overlap', world / 'mask.safetensors', tmp_path / 'f/model.safetensors', contains='not a readable rlsub mask')


# ---- paths, shards, pickles ------------------------------------------------------------------------------

def test_local_looking_paths_are_never_sent_to_the_hub(world, monkeypatch):
    monkeypatch.chdir(world)
    import huggingface_hub
    monkeypatch.setattr(huggingface_hub, 'snapshot_download', lambda *a, **k: pytest.fail('a local path was looked up on the hub'))
    refused(world, 'scan', 'p/base', 'p/tunde', contains='read as a local path, not a hub id, because p/ is a folder')
    refused(world, 'scan', 'p/base', 'q/model.safetensors', contains='no such file or folder')


def test_shard_indexes_stay_in_their_folder(world, tmp_path):
    for target in ('../p/tuned/model.safetensors', str(world / 'p/tuned/model.safetensors')):
        d = tmp_path / f'idx{len(target)}'; d.mkdir()
        (d / 'model.safetensors.index.json').write_text(json.dumps({'weight_map': {W: target}}))
        refused(world, 'scan', world / 'p/base', d, contains='outside the checkpoint')
    (tmp_path / 'bad-map').mkdir(); (tmp_path / 'bad-map/model.safetensors.index.json').write_text('{"weight_map": {"a": 5}}')
    refused(world, 'scan', world / 'p/base', tmp_path / 'bad-map', contains='shard file names')


def test_pickles_are_refused_naming_the_blocked_global(world, tmp_path):
    class Evil:
        def __reduce__(self): return (os.system, ('touch pwned',))
    (tmp_path / 'evil').mkdir(); torch.save({'w': Evil()}, tmp_path / 'evil/pytorch_model.bin')
    err = refused(world, 'scan', world / 'p/base', tmp_path / 'evil', contains='GLOBAL posix.system')
    assert 'system' in err and 'will likely succeed' not in err and not (tmp_path / 'pwned').exists()


# ---- processes: signals and pipes ------------------------------------------------------------------------

def rlsub_process(*args, **kw):
    return subprocess.Popen(RLSUB + [str(a) for a in args], env=dict(os.environ, HF_HUB_OFFLINE='1'), **kw)


def test_sigterm_during_rlsub_example_leaves_nothing(tmp_path):
    import time
    p = rlsub_process('example', tmp_path / 'ex', '--layers', 8, '--hidden', 512, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not any((tmp_path / 'ex').glob('.*')): time.sleep(0.01)   # wait until it is writing
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=120)
    if p.returncode == 0: pytest.skip('the example finished before the signal arrived')
    assert p.returncode == 143 and err.decode().count('\n') == 1 and 'Traceback' not in err.decode(), err
    assert [q.name for q in (tmp_path / 'ex').iterdir()] == []


def test_a_closed_pipe_costs_neither_the_report_nor_a_traceback(world, tmp_path):
    for i, reads in enumerate((0, 1)):                                     # `| true` (closed before any output) and `| head -1`
        out = tmp_path / f'r{i}.json'
        p = rlsub_process('scan', world / 'p/base', world / 'p/tuned', '-o', out, '--by', 'name', '--no-progress',
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(reads): p.stdout.readline()
        p.stdout.close()
        err = p.stderr.read().decode(); p.wait(timeout=120)
        assert p.returncode == 0 and err == '', err
        assert json.loads(out.read_text())['format'] == 'rlsub.DeltaReport'
