"The trajectory against scan_pair and brute force on real layouts; bad series; every chunk of every checkpoint read exactly once."
import math, shutil
from pathlib import Path
import numpy as np, pandas as pd, pytest, torch
from safetensors.torch import load_file, save_file
from rlsub.checkpoints import CheckpointError, open_checkpoint
from rlsub.core import RlsubError
from rlsub.examples import make_pair, tiny_config
from rlsub.measure.rules import changed
from rlsub.measure.scan import scan_pair
from rlsub.measure.trajectory import TrajectoryError, checkpoint_series, trajectory


def load_all(folder):
    return {k: v for f in sorted(Path(folder).glob('*.safetensors')) for k, v in load_file(f).items()}


def one_line_error(exc_type, fn, *match):
    with pytest.raises(exc_type) as e: fn()
    msg = str(e.value)
    assert '\n' not in msg and msg, msg
    for m in match: assert m in msg, msg
    return msg


@pytest.fixture(scope='module')
def series(tmp_path_factory):
    "A Trainer-like output_dir of a tiny sharded bf16 llama: checkpoint-0 (θ⁰), then 30 %, 10 % and 20 % of entries changed (nested sets: reverts)."
    root = tmp_path_factory.mktemp('series')
    cfg = tiny_config('llama', tie_word_embeddings=False)
    make_pair(root / 'p1', cfg, density=0.3, max_ulps=64, seed=3, shard_size=30_000)
    make_pair(root / 'p2', cfg, density=0.1, max_ulps=4, seed=3, shard_size=30_000)    # same seed: the same base, nested change sets
    make_pair(root / 'p3', cfg, density=0.2, max_ulps=16, seed=3, shard_size=30_000)
    run = root / 'run'
    for n, src in ((0, root / 'p1/base'), (5, root / 'p1/tuned'), (10, root / 'p2/tuned'), (50, root / 'p3/tuned')):
        shutil.copytree(src, run / f'checkpoint-{n}')
    shutil.copytree(root / 'p2/tuned', run, dirs_exist_ok=True)                     # the final model at the top, as save_model writes it
    return run


def test_series_order_and_final(series):
    assert [p.name for p in checkpoint_series(series)] == ['checkpoint-0', 'checkpoint-5', 'checkpoint-10', 'checkpoint-50']
    t = trajectory(series, device='cpu')
    assert t.steps.step.tolist() == [0, 5, 10, 50]
    tf = trajectory(series, device='cpu', final=series)
    assert tf.steps.name.tolist()[-1] == series.name and tf.steps.step.isna().tolist() == [False] * 4 + [True]


@pytest.mark.parametrize('rule,thr', [('exact', None), ('abs', None), ('abs', 1e-4), ('abs', 0.0), ('rel', None), ('rel', 2e-2)])
def test_steps_agree_with_scan_pair(series, rule, thr):
    t = trajectory(series, rule, thr, device='cpu', chunk_size=777)          # odd chunk size: chunk edges inside tensors
    paths = checkpoint_series(series)
    s = t.steps
    for i in range(1, len(paths)):
        step = scan_pair(paths[i - 1], paths[i], device='cpu', progress=False)
        start = scan_pair(paths[0], paths[i], device='cpu', progress=False)
        assert s.step_changed[i] == int(step.changed(rule, thr).sum())
        assert s.changed[i] == int(start.changed(rule, thr).sum())
        assert s.step_sparsity[i] == pytest.approx(float(step.sparsity(rule, thr)), abs=1e-12)
        assert s.sparsity_vs_start[i] == pytest.approx(float(start.sparsity(rule, thr)), abs=1e-12)
        per_tensor = start.changed(rule, thr)
        assert t.counts[:, i, 0].tolist() == per_tensor.loc[t.tensors.name].tolist()


@pytest.mark.parametrize('rule,thr', [('exact', None), ('abs', 3e-5), ('rel', 1e-2)])
def test_overlaps_and_split_against_brute_force(series, rule, thr):
    paths = checkpoint_series(series)
    t = trajectory(series, rule, thr, device='cpu', chunk_size=1000)
    W = [load_all(p) for p in paths]
    names = t.tensors.name.tolist()
    flat = lambda i, n: W[i][n].reshape(-1)
    U = [None] + [torch.cat([changed(flat(i - 1, n), flat(i, n), rule, thr) for n in names]) for i in range(1, len(W))]
    A = [None] + [torch.cat([changed(flat(0, n), flat(i, n), rule, thr) for n in names]) for i in range(1, len(W))]
    ever = A[1] | A[2] | A[3]
    s = t.steps
    for i in (2, 3):
        inter = int((U[i - 1] & U[i]).sum())
        assert s.step_shared[i] == inter
        assert s.step_overlap[i] == pytest.approx(inter / int(U[i].sum()))
        assert s.step_jaccard[i] == pytest.approx(inter / int((U[i - 1] | U[i]).sum()))
        assert s.overlap_chance[i] == pytest.approx(int(U[i - 1].sum()) / t.params)
    assert s.ever_changed[3] == int(ever.sum())
    sp = t.split.loc['all']
    assert (sp.never, sp.reverted, sp.final) == (int((~ever).sum()), int((ever & ~A[3]).sum()), int(A[3].sum()))
    assert sp.never + sp.reverted + sp.final == sp.params == t.params
    if rule == 'exact': assert 0.08 < sp.reverted_frac < 0.12 and 0.18 < sp.final_frac < 0.22    # 30 % changed, 20 % still at the end


def test_chunk_size_and_prefetch_do_not_change_the_answer(series):
    ref = trajectory(series, device='cpu')
    for kw in (dict(chunk_size=97, prefetch=1), dict(chunk_size=10**9, prefetch=5), dict(chunk_size=4096, progress=True)):
        assert trajectory(series, device='cpu', **kw).counts.tolist() == ref.counts.tolist()


def test_every_chunk_of_every_checkpoint_is_read_once(series):
    "Memory does not grow with the series: the walk reads each chunk of each checkpoint exactly once (no re-reads, no whole-tensor reads)."
    cks = [open_checkpoint(p) for p in checkpoint_series(series)]
    reads = []
    for i, ck in enumerate(cks):
        orig = ck.read
        def counted(name, start=0, stop=None, out=None, orig=orig, i=i):
            x = orig(name, start, stop, out)
            reads.append((i, name, start, x.numel())); return x
        ck.read = counted
    chunk = 1000
    t = trajectory(cks, device='cpu', chunk_size=chunk)
    per_ck = sum(math.ceil(ck[n].numel / chunk) for n in cks[0].names)
    assert len(reads) == len(cks) * per_ck
    assert len(set(reads)) == len(reads)                                       # no chunk read twice
    assert max(n for *_, n in reads) <= chunk
    assert sum(n for *_, n in reads) == len(cks) * t.params
    assert t.counts.tolist() == trajectory(series, device='cpu').counts.tolist()
    assert cks[0].read('model.norm.weight').numel() > 0                       # Checkpoints passed in are left open
    for ck in cks: ck.close()


def test_memory_inputs_and_dtype_changes():
    g = torch.Generator().manual_seed(0)
    w = (torch.randn(6, 4, generator=g) * 0.02).bfloat16()
    w1 = w.clone(); w1[0] += 1
    t = trajectory([{'w': w}, {'w': w1}, {'w': w.float()}], device='cpu')     # bf16 -> fp32 upcast: the same values, unchanged
    assert t.steps.changed.tolist() == [0, 4, 0]
    assert t.split.loc['all', ['never', 'reverted', 'final']].tolist() == [20, 4, 0]
    assert t.steps.name.tolist() == ['<state dict> #0', '<state dict> #1', '<state dict> #2']


def test_bad_series(tmp_path, series):
    (tmp_path / 'empty').mkdir()
    one_line_error(TrajectoryError, lambda: trajectory(tmp_path / 'empty'), 'no checkpoint-N subfolders')
    one_line_error(TrajectoryError, lambda: trajectory(series / 'checkpoint-0'), 'no checkpoint-N subfolders')   # a model, not a run
    one_line_error(TrajectoryError, lambda: trajectory(tmp_path / 'missing'), 'no such folder')
    one_line_error(TrajectoryError, lambda: trajectory([]), 'at least 2 checkpoints', 'got 0')
    (tmp_path / 'single').mkdir(); shutil.copytree(series / 'checkpoint-0', tmp_path / 'single/checkpoint-0')
    one_line_error(TrajectoryError, lambda: trajectory(tmp_path / 'single'), 'at least 2 checkpoints', 'got 1')
    (tmp_path / 'single/checkpoint-7').mkdir()                                # a checkpoint folder without weights
    one_line_error(CheckpointError, lambda: trajectory(tmp_path / 'single'), 'checkpoint-7', 'no weights found')
    one_line_error(RlsubError, lambda: trajectory(series, 'abs', -1.0), 'threshold')
    one_line_error(RlsubError, lambda: trajectory(series, chunk_size=0), 'chunk_size')
    one_line_error(RlsubError, lambda: trajectory(series).to_csv(tmp_path / 'x.csv', table='nope'), 'table must be')


def test_mismatched_tensors_name_the_tensor_and_checkpoint(tmp_path):
    e, q = torch.zeros(8, 4), torch.zeros(4, 4)
    good = {'model.embed_tokens.weight': e, 'model.layers.0.self_attn.q_proj.weight': q, 'lm_head.weight': e.clone()}
    cases = {'missing': ({k: v for k, v in good.items() if 'q_proj' not in k}, 'has no tensor model.layers.0.self_attn.q_proj.weight'),
             'extra': ({**good, 'model.norm.weight': torch.ones(4)}, 'has a tensor model.norm.weight'),
             'shape': ({**good, 'model.layers.0.self_attn.q_proj.weight': torch.zeros(4, 5)}, 'q_proj.weight has shape 4×5, but 4×4 in checkpoint-0'),
             'ndim': ({**good, 'model.layers.0.self_attn.q_proj.weight': torch.zeros(16)}, 'checkpoint-2 against checkpoint-0', 'q_proj.weight'),
             'tied': ({k: v for k, v in good.items() if k != 'lm_head.weight'}, 'lm_head.weight', 'tied')}
    for case, (bad, *match) in cases.items():
        run = tmp_path / case
        for n, sd in enumerate((good, good, bad)):
            (run / f'checkpoint-{n}').mkdir(parents=True); save_file(sd, run / f'checkpoint-{n}/model.safetensors')
        msg = one_line_error(TrajectoryError, lambda: trajectory(run, device='cpu'), *match)
        assert 'checkpoint-2' in msg, msg
