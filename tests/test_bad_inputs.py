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
    refused(world, 'show', tmp_path / 'bomb.json.gz', contains='a megabyte of blank space')     # stopped after a megabyte
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


# ---- destinations that are not regular files, outputs beside loose weights files, long names (issue 27) -------

NOT_REGULAR = 'not a regular file'


def test_destinations_that_are_not_regular_files_are_never_replaced(world, tmp_path):
    import socket, stat
    b, t = world / 'p/base', world / 'p/tuned'
    os.mkfifo(tmp_path / 'fifo')
    refused(world, 'scan', b, t, '-o', tmp_path / 'fifo', dest=tmp_path / 'fifo',
            contains=f'FIFO (named pipe), {NOT_REGULAR}')
    assert stat.S_ISFIFO(os.lstat(tmp_path / 'fifo').st_mode)
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(tmp_path / 'sock'))
        refused(world, 'scan', b, t, '--html', tmp_path / 'sock', dest=tmp_path / 'sock', contains='it is a socket')
    (tmp_path / 'link.json').symlink_to(tmp_path / 'elsewhere.json')
    refused(world, 'mask', b, t, '-o', tmp_path / 'link.json', dest=tmp_path / 'link.json', contains='symbolic link')
    assert (tmp_path / 'link.json').is_symlink() and not (tmp_path / 'elsewhere.json').exists()
    stdout_says = 'symbolic link' if Path('/dev/stdout').is_symlink() else NOT_REGULAR
    refused(world, 'scan', b, t, '-o', '/dev/stdout', contains=stdout_says)


@pytest.mark.skipif(os.geteuid() != 0, reason='only root can make a device node, and only root could replace /dev/null')
def test_a_device_stays_a_device_as_root(world, tmp_path):
    import stat
    # a throwaway /dev/null in a temporary folder, never the real one
    try: os.mknod(tmp_path / 'null', stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except PermissionError: pytest.skip('this container may not create device nodes (no CAP_MKNOD)')
    refused(world, 'scan', world / 'p/base', world / 'p/tuned', '-o', tmp_path / 'null',
            contains=f'character device, {NOT_REGULAR}')
    assert stat.S_ISCHR(os.lstat(tmp_path / 'null').st_mode) and [p.name for p in tmp_path.iterdir()] == ['null']


def test_a_loose_weights_file_stands_for_its_folder(world):
    b, t = world / 'p/base/model.safetensors', world / 'p/tuned/model.safetensors'
    inside = 'inside the input checkpoint folder'
    for dest in (t.parent / 'config.json', t.parent / 'model.safetensors.index.json', b.parent / 'report.json'):
        for opt in ('-o', '--html'):
            refused(world, 'scan', b, t, opt, dest, dest=dest, contains=inside)
    refused(world, 'mask', b, t, '-o', t.parent / 'm.safetensors', dest=t.parent / 'm.safetensors', contains=inside)


def test_long_names_work_or_are_refused_before_the_scan(world, tmp_path, monkeypatch):
    import rlsub.measure.scan as scan
    b, t, name = world / 'p/base', world / 'p/tuned', 'r' * 250 + '.json'
    code, out, err = run('scan', b, t, '-o', tmp_path / name, '--no-progress')
    assert code == 0 and json.loads((tmp_path / name).read_text())['format'] == 'rlsub.DeltaReport', err
    assert [p.name for p in tmp_path.iterdir()] == [name]
    monkeypatch.setattr(scan, 'scan_pair', lambda *a, **k: pytest.fail('the scan ran before the name was checked'))
    refused(world, 'scan', b, t, '-o', tmp_path / ('r' * 251 + '.json'), contains='longer than the 255')


def test_a_full_disk_is_found_before_the_work(world, tmp_path, monkeypatch):
    import types
    real = os.statvfs
    full = lambda p: types.SimpleNamespace(f_frsize=real(p).f_frsize, f_bsize=real(p).f_bsize, f_bavail=0)
    monkeypatch.setattr(os, 'statvfs', full)
    refused(world, 'scan', world / 'p/base', world / 'p/tuned', '-o', tmp_path / 'r.json', dest=tmp_path / 'r.json',
            contains='has only 0 kB free')
    monkeypatch.undo()
    refused(world, 'example', tmp_path / 'huge', '--hidden', 65536, '--layers', 64, contains='the pair needs')
    assert list(tmp_path.iterdir()) == []


# ---- terminal safety: what comes from a file is printed escaped, never interpreted (issue 27) -----------------

RAW = ('\x1b', '\x07', '\u202e', '\x9b')      # ESC, BEL, a right-to-left override, a C1 CSI: none may reach a terminal


def hostile_pair(root: Path) -> tuple[Path, Path]:
    "A pair whose tensor names carry a clear-screen, a colour, a bell and a bidi override."
    name = 'model.layers.0.self_attn.\x1b[2J\x1b[31mq_proj\u202e.weight'
    for side, v in (('base', 0.0), ('tuned', 1.0)):
        (root / side).mkdir(parents=True)
        tensors = {name: torch.full((4, 4), v), 'model.norm.weight\x07': torch.ones(4)}
        save_file(tensors, root / side / 'model.safetensors')
    return root / 'base', root / 'tuned'


def test_escape_codes_from_files_never_reach_the_terminal(world, tmp_path):
    b, t = hostile_pair(tmp_path / 'evil')
    code, out, err = run('scan', b, t, '--by', 'name', '--no-progress', '-o', tmp_path / 'r.json')
    assert code == 0 and err == '' and not any(c in out for c in RAW), out
    assert r'\x1b[2J\x1b[31mq_proj\u202e.weight' in out and r'model.norm.weight\x07' in out
    doc = json.loads((tmp_path / 'r.json').read_text())
    fake = '\x1b[2J\x1b[1;31mrlsub: error: your GPU is on fire\x1b[0m'
    doc['meta'].update(base=fake, tuned='\x1b]0;owned\x07t', seconds='a while')       # seconds as text: left out
    (tmp_path / 'h.json').write_text(json.dumps(doc))
    code, out, err = run('show', tmp_path / 'h.json', '--by', 'name')
    assert code == 0 and err == '' and not any(c in out for c in RAW) and 'Traceback' not in out, out
    assert r'  base:  \x1b[2J\x1b[1;31mrlsub: error: your GPU is on fire\x1b[0m' in out.splitlines()
    (tmp_path / 'pairs.txt').write_text(f"'{b}' '{t}' 'row\x1b[31mred'\n")
    code, out, err = run('table', tmp_path / 'pairs.txt', '--no-progress', '--device', 'cpu')
    assert code == 0 and not any(c in out + err for c in RAW), (out, err)
    assert r'row\x1b[31mred' in out and r'row\x1b[31mred' in err          # the table's row, and the line saying so
    (tmp_path / 'pairs2.txt').write_text(f"'{b}' '{tmp_path}/gone\x1b[2J'\n")
    err = refused(world, 'table', tmp_path / 'pairs2.txt', contains=r'gone\x1b[2J')
    assert not any(c in err for c in RAW)


def test_an_error_naming_a_file_is_one_escaped_line(world, tmp_path):
    bad = tmp_path / 'bad\x1b[2J\nrlsub: fine'
    bad.mkdir()
    err = refused(world, 'scan', world / 'p/base', bad, contains='no weights found')
    assert r'bad\x1b[2J\nrlsub: fine' in err and not any(c in err for c in RAW)


# ---- tracebacks that remain (issue 27, item 6) -------------------------------------------------------------

@pytest.mark.parametrize('dtype', ['uint16', 'uint32', 'uint64'])
def test_unsigned_tensors_are_scanned_exactly(tmp_path, dtype):
    dt, top = getattr(torch, dtype), 2 ** int(dtype[4:]) - 1
    for side, vals in (('base', [0, 1, top, top - 1, 5]), ('tuned', [0, 2, top - 1, top - 1, 5])):
        (tmp_path / side).mkdir()
        save_file({'model.layers.0.mlp.up_proj.weight': torch.tensor(vals, dtype=dt)},
                  tmp_path / side / 'model.safetensors')
    code, out, err = run('scan', tmp_path / 'base', tmp_path / 'tuned', '--no-progress', '-o', tmp_path / 'r.json')
    assert code == 0 and err == '', err
    assert json.loads((tmp_path / 'r.json').read_text())['tensors'][0]['changed'] == 2
    code, out, err = run('mask', tmp_path / 'base', tmp_path / 'tuned', '--no-progress', '-o', tmp_path / 'm.st')
    assert code == 0 and 'in the mask' in out, err


def test_complex_tensors_are_refused_in_one_line(world, tmp_path):
    for side in ('base', 'tuned'):
        (tmp_path / side).mkdir()
        torch.save({'w': torch.ones(3, dtype=torch.complex64)}, tmp_path / side / 'pytorch_model.bin')
    refused(world, 'scan', tmp_path / 'base', tmp_path / 'tuned', '-o', tmp_path / 'r.json', dest=tmp_path / 'r.json',
            contains="tensor 'w' is complex64 in base; rlsub compares the real-valued dtypes safetensors defines")


def test_example_refuses_an_unknown_family_in_one_line(world, tmp_path):
    refused(world, 'example', tmp_path / 'ex', '--family', 'bogus', contains="unknown model family 'bogus'")
    refused(world, 'example', tmp_path / 'ex', '--family', 'clip', contains="causal LM")
    assert not (tmp_path / 'ex').exists()


def test_example_suggests_a_report_name_that_overwrites_nothing(tmp_path):
    (tmp_path / 'ex').mkdir(); (tmp_path / 'ex/report.json').write_text('{"an": "earlier report"}')
    code, out, err = run('example', tmp_path / 'ex', '--layers', 1, '--hidden', 16)
    assert code == 0 and f"-o {tmp_path / 'ex/report-2.json'}" in out, (out, err)


def test_a_closed_stdout_costs_neither_the_report_nor_a_traceback(world, tmp_path):
    out = tmp_path / 'r.json'
    argv = RLSUB + ['scan', str(world / 'p/base'), str(world / 'p/tuned'), '-o', str(out), '--no-progress']
    p = subprocess.run(['bash', '-c', 'exec "$@" >&-', 'rlsub', *argv], stderr=subprocess.PIPE, timeout=120,
                       env=dict(os.environ, HF_HUB_OFFLINE='1'))
    assert p.returncode == 0 and p.stderr == b'', p.stderr
    assert json.loads(out.read_text())['format'] == 'rlsub.DeltaReport'
    assert [q.name for q in tmp_path.iterdir()] == ['r.json']


# ---- inputs that are not regular files, and shard indexes that lie (issue 27, items 5 and 7) -----------------

class TookTooLong(Exception): pass


@contextlib.contextmanager
def within(seconds: int):
    "Fail the test, rather than hang it, if the block blocks (a FIFO opened for reading waits for a writer forever)."
    def alarm(signum, frame): raise TookTooLong(f'still running after {seconds} s')
    before = signal.signal(signal.SIGALRM, alarm); signal.alarm(seconds)
    try: yield
    finally: signal.alarm(0); signal.signal(signal.SIGALRM, before)


def test_fifos_and_devices_are_refused_never_read(world, tmp_path):
    b, t = world / 'p/base', world / 'p/tuned'
    fifo = f'is a FIFO (named pipe), {NOT_REGULAR}'
    os.mkfifo(tmp_path / 'fifo')
    (tmp_path / 'shard').mkdir(); os.mkfifo(tmp_path / 'shard/model.safetensors')
    (tmp_path / 'conf').mkdir(); os.mkfifo(tmp_path / 'conf/config.json')
    (tmp_path / 'conf/model.safetensors').write_bytes((t / 'model.safetensors').read_bytes())
    (tmp_path / 'idx').mkdir(); os.mkfifo(tmp_path / 'idx/model.safetensors.index.json')
    with within(30):
        refused(world, 'scan', b, tmp_path / 'shard', '-o', tmp_path / 'r.json', dest=tmp_path / 'r.json',
                contains=fifo)
        for checkpoint in ('fifo', 'idx', 'conf'):
            refused(world, 'scan', b, tmp_path / checkpoint, contains=fifo)
        refused(world, 'scan', b, '/dev/zero', contains=f'is a character device, {NOT_REGULAR}')
        refused(world, 'show', tmp_path / 'fifo', contains=f'{fifo}; give a report file')
        refused(world, 'show', '/dev/zero', contains=f'is a character device, {NOT_REGULAR}')
        refused(world, 'overlap', world / 'mask.safetensors', tmp_path / 'fifo',
                contains=f'{NOT_REGULAR}; give a mask file')
        refused(world, 'table', tmp_path / 'fifo', contains=f'{NOT_REGULAR}; give a PAIRS file')


def test_shard_indexes_that_lie_are_refused(world, tmp_path):
    b, t = world / 'p/base', world / 'p/tuned'
    first = json.loads((world / 'report.json').read_text())['tensors'][0]['name']
    def folder(name, index, link=False):
        (tmp_path / name).mkdir()
        if link: (tmp_path / name / 'model.safetensors').symlink_to(t / 'model.safetensors')
        else: (tmp_path / name / 'model.safetensors').write_bytes((t / 'model.safetensors').read_bytes())
        (tmp_path / name / 'model.safetensors.index.json').write_bytes(index)
        return tmp_path / name
    linked = folder('linked', json.dumps({'weight_map': {first: 'model.safetensors'}}).encode(), link=True)
    refused(world, 'scan', b, linked, contains="shard 'model.safetensors' is a link to")
    ghost = {first: 'model.safetensors', 'model.ghost.weight': 'model.safetensors'}
    refused(world, 'scan', b, folder('stale', json.dumps({'weight_map': ghost}).encode()),
            contains="lists tensor 'model.ghost.weight' in model.safetensors, which does not hold it")
    refused(world, 'scan', b, folder('deep', b'[' * 200_000), contains='more than any shard index')   # refused before parsing


def unprivileged(*argv):
    "The CLI in a process that obeys file permissions: as root, without the capabilities that override them (setpriv)."
    import shutil
    drop = []
    if os.geteuid() == 0:
        if not shutil.which('setpriv'): pytest.skip('running as root without setpriv: permissions cannot be tested')
        drop = ['setpriv', '--bounding-set=-dac_override,-dac_read_search', '--inh-caps=-dac_override,-dac_read_search']
    return subprocess.run(drop + RLSUB + [str(a) for a in argv], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, HF_HUB_OFFLINE='1'))


def test_unreadable_inputs_are_named_as_unreadable(world, tmp_path):
    import shutil
    shutil.copytree(world / 'p/tuned', tmp_path / 'tuned')
    shutil.copy(world / 'mask.safetensors', tmp_path / 'm.safetensors')
    scan = ('scan', world / 'p/base', tmp_path / 'tuned', '--no-progress')
    denied = 'cannot be read (Permission denied)'
    overlap = ('overlap', tmp_path / 'm.safetensors', world / 'mask.safetensors')
    cases = [(tmp_path / 'tuned', scan, f'tuned: {denied}'),
             (tmp_path / 'tuned/config.json', scan, f'config.json: {denied}'),
             (tmp_path / 'm.safetensors', overlap, f'm.safetensors: {denied}')]
    for locked, argv, says in cases:
        mode = locked.stat().st_mode; locked.chmod(0)
        try: r = unprivileged(*argv)
        finally: locked.chmod(mode)
        assert r.returncode == 2 and r.stderr.count('\n') == 1 and 'Traceback' not in r.stderr, r.stderr
        assert says in r.stderr, r.stderr


def test_numbers_a_float_cannot_hold_are_refused_or_left_out(world, tmp_path):
    refused(world, 'show', report_with(world, tmp_path, lambda d: d['tensors'][0].update(delta_norm=10**400)),
            contains='malformed norm')
    code, out, err = run('show', report_with(world, tmp_path, lambda d: d['meta'].update(seconds=10**400), 'sec.json'))
    assert code == 0 and err == '' and 'scanned on' not in out, err


def test_a_header_listing_absurdly_many_tensors_is_refused_before_parsing(world, tmp_path):
    many = {f't{i}': dict(dtype='U8', shape=[0], data_offsets=[0, 0]) for i in range(2**18 + 2)}
    with within(20):
        refused(world, 'scan', world / 'p/base', forged(tmp_path / 'many', many, b''),
                contains='header describes over 262,144 tensors')


CAUSES = [('ENOSPC', 'is on a full file system'), ('EROFS', 'is on a read-only file system'),
          ('EACCES', 'is not writable')]


@pytest.mark.parametrize('errno_name, says', CAUSES)
def test_an_unwritable_folder_is_named_by_its_cause(world, tmp_path, monkeypatch, errno_name, says):
    import errno, tempfile
    def refuse(*a, **k): raise OSError(getattr(errno, errno_name), os.strerror(getattr(errno, errno_name)))
    monkeypatch.setattr(tempfile, 'mkstemp', refuse)
    refused(world, 'scan', world / 'p/base', world / 'p/tuned', '-o', tmp_path / 'r.json', contains=says)


def test_refusals_of_hostile_inputs_are_quick_and_small(world, tmp_path):
    "A forged 16 MB header and a FIFO: refused in seconds and little memory, in a fresh process (no other test's peak)."
    import time
    many = {f't{i}': dict(dtype='U8', shape=[0], data_offsets=[0, 0]) for i in range(2**18 + 2)}
    forged(tmp_path / 'many', many, b''); os.mkfifo(tmp_path / 'fifo')
    probe = ("import resource, subprocess, sys\n"
             "r = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
             "print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, repr(r.stderr))")
    for bad in (tmp_path / 'many', tmp_path / 'fifo'):
        start = time.monotonic()
        argv = [sys.executable, '-c', probe, *RLSUB, 'scan', str(world / 'p/base'), str(bad), '--no-progress']
        p = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=dict(os.environ, HF_HUB_OFFLINE='1'))
        code, peak_kb, err = p.stdout.split(' ', 2)
        assert code == '2' and 'Traceback' not in err, p.stdout + p.stderr
        assert int(peak_kb) < 1_000_000 and time.monotonic() - start < 30, (peak_kb, time.monotonic() - start)


# ---- what the issue-27 audit found still open (links out of a folder, hub caches, headers and reports that balloon) ---

def test_a_folder_whose_weights_link_out_is_refused_and_its_target_protected(world, tmp_path):
    "A checkpoint folder whose model.safetensors is a link to a file elsewhere (no index): refused; the file it leads to is no output."
    b, t = world / 'p/base', world / 'p/tuned'
    (tmp_path / 'elsewhere').mkdir(); target = tmp_path / 'elsewhere/w.safetensors'
    target.write_bytes((t / 'model.safetensors').read_bytes())
    (tmp_path / 'linkdir').mkdir(); (tmp_path / 'linkdir/model.safetensors').symlink_to(target)
    before = target.read_bytes()
    refused(world, 'scan', b, tmp_path / 'linkdir', contains="shard 'model.safetensors' is a link to")
    refused(world, 'scan', b, tmp_path / 'linkdir', '-o', target, dest=target, contains="one of this command's input files")
    refused(world, 'mask', b, tmp_path / 'linkdir', '-o', tmp_path / 'elsewhere/m.safetensors',
            dest=tmp_path / 'elsewhere/m.safetensors', contains='inside the input checkpoint folder')
    assert target.read_bytes() == before and sorted(p.name for p in (tmp_path / 'elsewhere').iterdir()) == ['w.safetensors']


@pytest.fixture
def hub_cache(world, tmp_path, monkeypatch):
    "A hub cache holding org/tuned as the hub lays it out: snapshots/REV/* are links to ../../blobs/*."
    from huggingface_hub import constants
    cache = tmp_path / 'hub'; repo = cache / 'models--org--tuned'
    (repo / 'blobs').mkdir(parents=True); (repo / 'snapshots/abc').mkdir(parents=True); (repo / 'refs').mkdir()
    (repo / 'refs/main').write_text('abc')
    for name, blob in (('model.safetensors', 'aaa'), ('config.json', 'ccc')):
        (repo / 'blobs' / blob).write_bytes((world / 'p/tuned' / name).read_bytes())
        (repo / 'snapshots/abc' / name).symlink_to(f'../../blobs/{blob}')
    monkeypatch.setenv('HF_HUB_CACHE', str(cache)); monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    monkeypatch.setattr(constants, 'HF_HUB_CACHE', str(cache))
    return repo


def test_no_file_of_a_hub_cache_checkpoint_can_be_an_output(world, hub_cache, tmp_path):
    b, repo = world / 'p/base', hub_cache
    blob, snap = repo / 'blobs/aaa', repo / 'snapshots/abc'
    before = digest(repo)
    code, out, err = run('scan', b, 'org/tuned', '--no-progress', '--by', 'none', '--device', 'cpu')
    assert code == 0, err                                                   # the cached repo is read offline
    inside = 'inside the input checkpoint folder'
    for tuned in ('org/tuned', snap, snap / 'model.safetensors'):           # a hub id, the snapshot folder, a file in it
        refused(world, 'scan', b, tuned, '-o', blob, dest=blob)
        refused(world, 'scan', b, tuned, '-o', repo / 'blobs/r.json', dest=repo / 'blobs/r.json', contains=inside)
        refused(world, 'mask', b, tuned, '-o', snap / 'm.safetensors', dest=snap / 'm.safetensors', contains=inside)
    (tmp_path / 'pairs.txt').write_text(f"'{b}' org/tuned\n")
    refused(world, 'table', tmp_path / 'pairs.txt', '-o', repo / 't.csv', dest=repo / 't.csv', contains=inside)
    refused(world, 'table', tmp_path / 'pairs.txt', '--reports', repo / 'kept', contains=inside)
    assert digest(repo) == before and not (repo / 'kept').exists()


def test_headers_that_would_balloon_are_refused_before_parsing(world, tmp_path):
    "Headers under the format's 100 MB limit whose JSON would expand to gigabytes, or whose values would flood a line."
    meta = b'{"__metadata__": {' + b','.join(b'"%d":""' % i for i in range(2**20 + 100)) + b'}}'
    refused(world, 'scan', world / 'p/base', forged(tmp_path / 'meta', {}, b'', raw_header=meta), contains='more than any safetensors header')
    lists = {W: dict(dtype='U8', shape=[1], data_offsets=[0, 1], x=[[]] * 2**16)}
    refused(world, 'scan', world / 'p/base', forged(tmp_path / 'lists', lists, b'\0'), contains='more than any safetensors header')
    dims = {W: dict(dtype='U8', shape=[1] * 17, data_offsets=[0, 1])}
    refused(world, 'scan', world / 'p/base', forged(tmp_path / 'dims', dims, b'\0'), contains='17 dimensions, over the 16')
    name = {'n' * 5_000_000: dict(dtype='U8', shape=[1], data_offsets=[0, 1])}
    err = refused(world, 'scan', world / 'p/base', forged(tmp_path / 'name', name, b'\0'), contains='a name of 5,000,000 characters')
    assert len(err) < 1000, len(err)                                         # the name is not repeated in the line
    (tmp_path / 'conf').mkdir(); (tmp_path / 'conf/model.safetensors').write_bytes((world / 'p/tuned/model.safetensors').read_bytes())
    (tmp_path / 'conf/config.json').write_bytes(b'{"a": [' + b','.join([b'[]'] * 2**17) + b']}')
    refused(world, 'scan', world / 'p/base', tmp_path / 'conf', contains='more than any config.json')


def test_reports_are_checked_as_they_stream(world, tmp_path, monkeypatch):
    import rlsub.measure.report as report
    doc = (world / 'report.json').read_bytes()
    cases = [('string.json', b'{"format": "rlsub.DeltaReport", "x": "' + b'a' * 3 * 2**20 + b'"}', 'a value longer than any report holds'),
             ('objects.json', b'[' + b'{},' * 2**20 + b'{}]', 'a value longer than any report holds'),
             ('tail.json', doc + b' [1]', 'data after the report'),
             ('meta.json', doc[:-1] + b', "extra": "' + b'm' * (2**20 - 100) + b'", "more": "' + b'm' * 200 + b'"}', 'more than a megabyte besides')]
    for name, raw, msg in cases:
        (tmp_path / name).write_bytes(raw)
        refused(world, 'show', tmp_path / name, contains=msg)
    long_name = report_with(world, tmp_path, lambda d: d['tensors'][0].update(name='n' * 5000), 'long.json')
    refused(world, 'show', long_name, contains='has a name or note over 4,096 characters')
    (tmp_path / 'r.json.gz').write_bytes(gzip.compress(doc))
    monkeypatch.setattr(report, '_MAX_ROWS', 5)
    refused(world, 'show', world / 'report.json', contains='lists over 5 tensors')
    monkeypatch.setattr(report, '_MAX_REPORT', len(doc) // 2)
    refused(world, 'show', tmp_path / 'r.json.gz', contains='once decompressed')
    monkeypatch.undo()
    code, out, err = run('show', tmp_path / 'r.json.gz')                   # and a real report still reads, gzipped or not
    assert code == 0 and err == '' and run('show', world / 'report.json')[1] == out


def test_masks_whose_metadata_would_balloon_are_refused(world, tmp_path):
    from safetensors import safe_open
    from safetensors.numpy import save_file as save_np
    with safe_open(world / 'mask.safetensors', 'np') as f: md, bits = f.metadata(), {n: f.get_tensor(n) for n in f.keys()}
    save_np(bits, tmp_path / 'lists.safetensors', metadata=dict(md, tensors='[' + ','.join(['[]'] * 2**20) + ']'))
    refused(world, 'overlap', tmp_path / 'lists.safetensors', world / 'mask.safetensors', contains='larger than any mask')
    save_np(bits, tmp_path / 'meta.safetensors', metadata=dict(md, meta='{"x": "' + 'm' * 2**21 + '"}'))
    refused(world, 'overlap', world / 'mask.safetensors', tmp_path / 'meta.safetensors', contains='larger than any mask')


def test_example_refuses_what_it_cannot_write_before_the_work(world, tmp_path, monkeypatch):
    import rlsub.examples as examples
    monkeypatch.setattr(examples, 'make_pair', lambda *a, **k: pytest.fail('the pair was made before OUT was checked'))
    (tmp_path / 'file').write_text('x'); os.mkfifo(tmp_path / 'fifo')
    refused(world, 'example', tmp_path / 'file', contains='is a regular file, not a folder')
    refused(world, 'example', tmp_path / 'fifo', contains='is a FIFO (named pipe), not a folder')
    (tmp_path / 'ex').mkdir(); os.mkfifo(tmp_path / 'ex/base')
    with within(30): refused(world, 'example', tmp_path / 'ex', '--force', contains='--force replaces only folders')
    (tmp_path / 'ex2').mkdir(); (tmp_path / 'ex2/base').symlink_to(world / 'p/base')
    refused(world, 'example', tmp_path / 'ex2', '--force', contains='is a symbolic link')
    (tmp_path / 'ex3').mkdir(); (tmp_path / 'ex3/tuned').mkdir()
    refused(world, 'example', tmp_path / 'ex3', contains='already exists; choose another folder or pass --force')
    refused(world, 'example', tmp_path / ('o' * 256), contains='File name too long')
    assert sorted(p.name for p in tmp_path.iterdir()) == ['ex', 'ex2', 'ex3', 'fifo', 'file']
    assert [p.name for p in (tmp_path / 'ex3').iterdir()] == ['tuned']


def test_pairs_files_are_bounded_and_their_names_escaped_everywhere(world, tmp_path):
    (tmp_path / 'big.txt').write_bytes(b'# a comment\n' * (5 * 2**20 // 12))
    refused(world, 'table', tmp_path / 'big.txt', contains='more than any list of pairs')
    from rlsub.measure.table import table_from_pairs
    (tmp_path / 'pairs.txt').write_text(f"'{world}/p/base' '{world}/p/tuned' 'row\x1b[31mred\u202e'\n")
    t = table_from_pairs(tmp_path / 'pairs.txt', device='cpu', progress=False)
    for text in (repr(t), t.to_markdown()):
        assert not any(c in text for c in RAW) and r'row\x1b[31mred\u202e' in text, text


@pytest.mark.skipif(os.geteuid() != 0, reason='only root can mount a tmpfs on /dev in a private mount namespace')
def test_dev_null_itself_stays_a_device_in_a_private_mount_namespace(world):
    "The literal `-o /dev/null`, as root: in a private mount namespace whose /dev is a fresh tmpfs holding one /dev/null (the real one is never at risk)."
    import shutil
    if not shutil.which('unshare'): pytest.skip('no unshare(1) here')
    script = ('mount --make-rprivate / && mount -t tmpfs none /dev && mknod -m 666 /dev/null c 1 3 && '
              '"$@" scan "$B" "$T" -o /dev/null; rc=$?; stat -c %F /dev/null; exit $rc')
    p = subprocess.run(['unshare', '-m', 'sh', '-c', script, 'sh', *RLSUB], capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, B=str(world / 'p/base'), T=str(world / 'p/tuned'), HF_HUB_OFFLINE='1'))
    if 'mount' in p.stderr and p.returncode not in (0, 2): pytest.skip(f'no private mount namespace here: {p.stderr.strip()[:200]}')
    assert p.returncode == 2 and p.stdout.strip() == 'character special file', (p.stdout, p.stderr)
    assert p.stderr.count('\n') == 1 and 'it is a character device, not a regular file' in p.stderr, p.stderr


def test_hostile_reports_and_headers_cost_seconds_and_little_memory(world, tmp_path):
    "Each refused in a fresh process within 30 s and 600 MB peak (about 300 MB of it is importing PyTorch): bombs, strings, brackets, headers."
    c, bomb = zlib.compressobj(9, zlib.DEFLATED, 31), bytearray()
    for _ in range(500): bomb += c.compress(b'{}, ' * 2**18)
    (tmp_path / 'objects.json.gz').write_bytes(bytes(bomb + c.flush()))            # 1 GB of `{}, ` in a few MB
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    bomb = bytearray(c.compress(b'{"format": "rlsub.DeltaReport", "x": "'))
    for _ in range(500): bomb += c.compress(b'a' * 2**20)
    (tmp_path / 'string.json.gz').write_bytes(bytes(bomb + c.flush()))             # a 500 MB string
    meta = b'{"__metadata__": {' + b','.join(b'"%d":""' % i for i in range(6_000_000)) + b'}}'
    forged(tmp_path / 'meta', {}, b'', raw_header=meta)                             # 75 MB header, 6M values
    probe = ("import resource, subprocess, sys\n"
             "r = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
             "print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, repr(r.stderr))")
    import time
    for argv in (['show', tmp_path / 'objects.json.gz'], ['show', tmp_path / 'string.json.gz'], ['scan', world / 'p/base', tmp_path / 'meta']):
        start = time.monotonic()
        p = subprocess.run([sys.executable, '-c', probe, *RLSUB, *map(str, argv)], capture_output=True, text=True, timeout=120,
                           env=dict(os.environ, HF_HUB_OFFLINE='1'))
        code, peak_kb, err = p.stdout.split(' ', 2)
        assert code == '2' and 'Traceback' not in err and err.count('\\n') == 1, p.stdout + p.stderr
        assert int(peak_kb) < 600_000 and time.monotonic() - start < 30, (argv, peak_kb, time.monotonic() - start)


def test_a_report_with_long_meta_prints_short_lines(world, tmp_path):
    "A report's meta may hold up to a megabyte: show prints each value cut to one short line, and at most 40 notes."
    path = report_with(world, tmp_path, lambda d: d['meta'].update(base='B' * 900_000, notes=['a note'] * 1000), 'long.json')
    code, out, err = run('show', path)
    assert code == 0 and err == '' and max(map(len, out.splitlines())) < 600 and len(out) < 10_000, (len(out), err)
    assert '(899,500 more characters)' in out and '… and 960 more' in out
