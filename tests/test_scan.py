"The scan against brute force: every rule at every ladder step, on every layout, dtype and edge case."
import math
from pathlib import Path
import numpy as np, pandas as pd, pytest, torch
from safetensors.torch import load_file, save_file
from rlsub.checkpoints import open_checkpoint, CheckpointError
from rlsub.measure.rules import LADDER, changed, snap
from rlsub.measure.report import DeltaReport
from rlsub.measure.pairing import PairError
from rlsub.measure.scan import scan_pair
from rlsub.examples import plant_changes


def load_all(folder):
    return {k: v for f in sorted(Path(folder).glob('*.safetensors')) for k, v in load_file(f).items()}


def brute(B: dict, T: dict, names, rule: str, thr: float) -> list[int]:
    "Changed entries per tensor, straight from the rule's definition on whole tensors."
    out = []
    for n in names:
        b, t = B[n], T[n]
        if rule == 'exact':
            same = (b == t) | (b.isnan() & t.isnan())            # values equal (+0 == -0) or NaN on both sides
            out.append(int((~same).sum()))
            continue
        b, t = b.float(), t.float()
        d = (t - b).abs()
        lim = thr if rule == 'abs' else thr * torch.maximum(b.abs(), t.abs())
        bits_equal = (b == t) | (b.isnan() & t.isnan())
        out.append(int(((d > lim) | (~torch.isfinite(d) & ~bits_equal)).sum()))
    return out


def check_against_brute(report, B, T):
    names = report.table.name.tolist()
    assert report.changed('exact').tolist() == brute(B, T, names, 'exact', None)
    for rule in ('abs', 'rel'):
        for thr in LADDER:
            assert report.changed(rule, float(thr)).tolist() == brute(B, T, names, rule, float(thr)), (rule, thr)


@pytest.mark.parametrize('key', ['llama-bf16-single', 'llama-bf16-sharded', 'qwen2-fp16-sharded', 'qwen3-fp32-single', 'gpt2-bf16-single', 'phi-fp32-sharded'])
def test_every_rule_and_step_matches_brute_force(pairs, key):
    family, dt, layout = key.split('-')
    dtype = {'bf16': torch.bfloat16, 'fp16': torch.float16, 'fp32': torch.float32}[dt]
    folder, planted = pairs[family, dtype, layout == 'sharded']
    report = scan_pair(folder / 'base', folder / 'tuned', progress=False, chunk_size=777)   # odd chunk size: chunk edges inside tensors
    known = planted.set_index('name').loc[report.table.name]
    assert report.table.changed.tolist() == known.changed.tolist()
    assert report.table.numel.tolist() == known.numel.tolist()
    check_against_brute(report, load_all(folder / 'base'), load_all(folder / 'tuned'))


@pytest.mark.parametrize('key', [('llama', torch.bfloat16, True), ('qwen2', torch.float16, True), ('phi', torch.float32, True)])
def test_elementwise_changed_agrees_with_the_report(pairs, key):
    folder, _ = pairs[key]
    r = scan_pair(folder / 'base', folder / 'tuned', progress=False)
    B, T = load_all(folder / 'base'), load_all(folder / 'tuned')
    names = r.table.name.tolist()
    assert [int(changed(B[n].flatten(), T[n].flatten()).sum()) for n in names] == r.changed('exact').tolist()
    for rule in ('abs', 'rel'):
        for thr in LADDER[::7]:
            assert [int(changed(B[n].flatten(), T[n].flatten(), rule, float(thr)).sum()) for n in names] == r.changed(rule, float(thr)).tolist()


def test_chunk_size_threads_and_prefetch_do_not_change_the_answer(pairs):
    folder, _ = pairs['llama', torch.bfloat16, True]
    ref = scan_pair(folder / 'base', folder / 'tuned', progress=False)
    for kw in (dict(chunk_size=1), dict(chunk_size=64, threads=1, prefetch=0), dict(chunk_size=10**9, threads=3, prefetch=5), dict(chunk_size=7, threads=5, prefetch=1)):
        r = scan_pair(folder / 'base', folder / 'tuned', progress=False, **kw)
        pd.testing.assert_frame_equal(r.table[['name', 'numel', 'changed', 'nonfinite']], ref.table[['name', 'numel', 'changed', 'nonfinite']])
        assert (r.abs_hist == ref.abs_hist).all() and (r.rel_hist == ref.rel_hist).all()
        np.testing.assert_allclose(r.table.delta_norm, ref.table.delta_norm, rtol=1e-5)


def test_norms_and_max(pairs):
    folder, _ = pairs['qwen2', torch.float16, True]
    r = scan_pair(folder / 'base', folder / 'tuned', progress=False)
    B, T = load_all(folder / 'base'), load_all(folder / 'tuned')
    for row in r.table.itertuples():
        d = T[row.name].float() - B[row.name].float()
        assert row.delta_norm == pytest.approx(float(d.norm()), rel=1e-5)
        assert row.base_norm == pytest.approx(float(B[row.name].float().norm()), rel=1e-5)
        assert row.max_abs_delta == float(d.abs().max())


@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16, torch.float32])
def test_nan_inf_and_signed_zero(dtype):
    inf, nan = math.inf, math.nan
    b = torch.tensor([0.0, -0.0, 1.0, nan, nan, inf, inf, 1.0, 2.0, -inf, 3.0], dtype=dtype)
    t = torch.tensor([-0.0, 0.0, nan, nan, 1.0, inf, -inf, inf, 2.0, -inf, 3.5], dtype=dtype)
    r = scan_pair({'w': b}, {'w': t}, progress=False, chunk_size=4)
    # changed: 1->nan, nan->1, inf->-inf, 1->inf, 3->3.5;  unchanged: ±0 twice, nan=nan, inf=inf, 2=2, -inf=-inf
    assert int(r.changed('exact').iloc[0]) == 5
    assert int(r.table.nonfinite.iloc[0]) == 4
    for rule in ('abs', 'rel'):
        for thr in (0.0, 1e-5, 0.1, 1.0):
            assert int(r.changed(rule, thr).iloc[0]) == brute({'w': b}, {'w': t}, ['w'], rule, thr)[0]
    assert int(r.changed('abs', 1.0).iloc[0]) == 4          # only the non-finite ones exceed |Δ| > 1
    assert r.table.max_abs_delta.iloc[0] == inf


def test_changes_fp32_cannot_see_still_count_under_exact():
    # fp64 values that differ only below fp32 precision, and int64 buffers beyond 2**24: bits differ, fp32 Δ is 0
    b = {'w64': torch.tensor([1.0, 2.0, 0.0], dtype=torch.float64), 'pos': torch.tensor([2**30, 5, 7])}
    t = {'w64': torch.tensor([1.0 + 1e-12, 2.0, -0.0], dtype=torch.float64), 'pos': torch.tensor([2**30 + 1, 5, 8])}
    r = scan_pair(b, t, progress=False)
    assert r.changed('exact').to_dict() == {'w64': 1, 'pos': 2}   # the 1e-12 change and both int changes; -0.0 vs 0.0 is no change
    assert r.changed('abs', 0.0).to_dict() == {'w64': 0, 'pos': 1}  # fp32 sees only 7 -> 8
    assert r.changed('rel', 0.0).to_dict() == {'w64': 0, 'pos': 1}


def test_rel_uses_the_product_form_at_ties():
    # |Δ| exactly equal to fl(η·m) at a ladder step: not changed (strict >); one rounding unit more: changed
    m = torch.tensor([1.0, 3.0, 7.0, 1000.0, 0.1])
    eta = torch.tensor(1e-3, dtype=torch.float32)
    d = (eta * m)                                            # fp32 products, as the definition computes them
    b = m - d                                                # |t| = m is the larger side, |Δ| = d (up to rounding)
    t = m.clone()
    r = scan_pair({'w': b}, {'w': t}, progress=False)
    assert r.changed('rel', 1e-3).tolist() == brute({'w': b}, {'w': t}, ['w'], 'rel', 1e-3)


def test_mismatched_pairs_are_explained(tmp_path):
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(10, 6, generator=g).bfloat16()
    base = {'model.embed_tokens.weight': emb, 'model.layers.0.mlp.down_proj.weight': torch.randn(6, 8, generator=g).bfloat16(),
            'model.layers.0.mlp.gone.weight': torch.ones(3)}
    tuned = {'model.embed_tokens.weight': torch.cat([plant_changes(emb, 0.5, generator=g), torch.zeros(2, 6, dtype=torch.bfloat16)]),
             'lm_head.weight': plant_changes(emb, 0.2, generator=g),
             'model.layers.0.mlp.down_proj.weight': plant_changes(base['model.layers.0.mlp.down_proj.weight'], 0.5, generator=g)[:, :5].contiguous()}
    (tmp_path / 'b').mkdir(); (tmp_path / 't').mkdir()
    save_file(base, tmp_path / 'b' / 'model.safetensors'); save_file(tuned, tmp_path / 't' / 'model.safetensors')
    r = scan_pair(tmp_path / 'b', tmp_path / 't', progress=False, chunk_size=7)
    t = r.table.set_index('name')
    assert t.loc['model.embed_tokens.weight', 'status'] == 'shape differs' and t.loc['model.embed_tokens.weight', 'numel'] == 60
    assert t.loc['model.embed_tokens.weight', 'changed'] == int((tuned['model.embed_tokens.weight'][:10] != emb).sum())
    assert t.loc['lm_head.weight', 'status'] == 'tied'
    assert t.loc['lm_head.weight', 'changed'] == int((tuned['lm_head.weight'] != emb).sum())
    down_b, down_t = base['model.layers.0.mlp.down_proj.weight'][:, :5], tuned['model.layers.0.mlp.down_proj.weight']
    assert t.loc['model.layers.0.mlp.down_proj.weight', 'changed'] == int((down_b != down_t).sum())   # common block of differing trailing dims
    assert t.loc['model.layers.0.mlp.gone.weight', 'status'] == 'base only' and t.loc['model.layers.0.mlp.gone.weight', 'numel'] == 0
    assert 'notes:' in r.summary() and 'tied' in repr(r)


def test_tied_on_the_tuned_side(tmp_path):
    emb = torch.randn(10, 6).bfloat16()
    r = scan_pair({'model.embed_tokens.weight': emb, 'lm_head.weight': emb.clone()}, {'model.embed_tokens.weight': emb}, progress=False)
    t = r.table.set_index('name')
    assert t.loc['lm_head.weight', 'status'] == 'tied' and t.loc['lm_head.weight', 'changed'] == 0


def test_incomparable_shapes_name_the_tensor():
    with pytest.raises(PairError, match='model.layers.3.self_attn.q_proj.weight'):
        scan_pair({'model.layers.3.self_attn.q_proj.weight': torch.zeros(4, 4)}, {'model.layers.3.self_attn.q_proj.weight': torch.zeros(4, 4, 1)}, progress=False)


def test_sparsity_groupings_add_up(pairs):
    folder, planted = pairs['llama', torch.bfloat16, False]
    r = scan_pair(folder / 'base', folder / 'tuned', progress=False)
    for rule, thr in (('exact', None), ('abs', 1e-5), ('rel', 1e-3), ('abs', 4e-4)):
        total = r.sparsity(rule, thr)
        for by in ('layer', 'kind', ['layer', 'kind'], 'name'):
            g = r.sparsity(rule, thr, by=by)
            assert g.params.sum() == r.numel
            assert 1 - g.changed.sum() / g.params.sum() == pytest.approx(float(total), abs=1e-12)
    assert set(r.sparsity(by='kind').index) == {'q', 'k', 'v', 'o', 'gate', 'up', 'down', 'norm', 'embed', 'lm_head'}


def test_snapping_says_which_step():
    s = scan_pair({'w': torch.ones(3)}, {'w': torch.tensor([1.0, 1.5, 1.0])}, progress=False).sparsity('abs', 3.3e-5)
    assert s.threshold == 3.15e-5 and s.requested == 3.3e-5 and 'ladder step below' in repr(s)
    assert snap(1e-5)[1] == 1e-5 and snap(2.5e-3)[1] == 2.5e-3


def test_report_round_trip_is_exact(pairs, tmp_path):
    folder, _ = pairs['gpt2', torch.bfloat16, False]
    r = scan_pair(folder / 'base', folder / 'tuned', progress=False)
    for name in ('r.json', 'r.json.gz'):
        r.save(tmp_path / name)
        back = DeltaReport.load(tmp_path / name)
        pd.testing.assert_frame_equal(back.table, r.table)
        assert (back.abs_hist == r.abs_hist).all() and (back.rel_hist == r.rel_hist).all() and back.meta == r.meta
        assert repr(back) == repr(r)
    assert not list(tmp_path.glob('.*'))            # no temporary files left behind


def test_in_memory_sources_and_models():
    from transformers import AutoModelForCausalLM
    from rlsub.examples import tiny_config
    torch.manual_seed(0)
    a = AutoModelForCausalLM.from_config(tiny_config('llama'))
    b = AutoModelForCausalLM.from_config(tiny_config('llama'))
    b.load_state_dict(a.state_dict())
    with torch.no_grad(): b.model.layers[1].mlp.up_proj.weight[:3] += 1
    r = scan_pair(a, b, progress=False)
    assert r.table.set_index('name').changed.sum() == 3 * 64


def test_bin_checkpoints_read_like_safetensors(pairs, tmp_path):
    folder, _ = pairs['llama', torch.bfloat16, False]
    for side in ('base', 'tuned'):
        (tmp_path / side).mkdir()
        torch.save(load_all(folder / side), tmp_path / side / 'pytorch_model.bin')
    a = scan_pair(folder / 'base', folder / 'tuned', progress=False)
    b = scan_pair(tmp_path / 'base', tmp_path / 'tuned', progress=False)
    assert a.table.changed.tolist() == b.table.changed.tolist() and (a.rel_hist == b.rel_hist).all()


def test_reading_is_bounded_by_the_chunk(pairs):
    "A read of a slice allocates that slice, not the tensor: the buffer passed in is the one filled."
    folder, _ = pairs['llama', torch.bfloat16, False]
    ck = open_checkpoint(folder / 'base')
    name = max(ck.names, key=lambda n: ck[n].numel)
    buf = torch.empty(100 * 2, dtype=torch.uint8)
    x = ck.read(name, 50, 150, out=buf)
    assert x.data_ptr() == buf.data_ptr() and x.numel() == 100
    assert torch.equal(x, ck.tensor(name).flatten()[50:150])


def test_saved_files_get_the_usual_mode(tmp_path):
    "Written through a private temporary file, a report still ends up readable as a plain open() would leave it."
    import os, stat
    from rlsub.outputs import write_atomic
    write_atomic(tmp_path / 'r.json', b'{}')
    umask = os.umask(0); os.umask(umask)
    assert stat.S_IMODE((tmp_path / 'r.json').stat().st_mode) == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir()] == ['r.json']


def test_a_tied_lm_head_counts_once_in_memory_as_on_disk(tmp_path):
    from transformers import AutoModelForCausalLM
    from rlsub.examples import tiny_config
    from rlsub.measure.masks import SubnetMask
    torch.manual_seed(0)
    a = AutoModelForCausalLM.from_config(tiny_config('qwen2', tie_word_embeddings=True))
    b = AutoModelForCausalLM.from_config(tiny_config('qwen2', tie_word_embeddings=True))
    b.load_state_dict(a.state_dict())
    with torch.no_grad(): b.model.embed_tokens.weight[:2] += 1; b.model.layers[0].mlp.up_proj.weight[:3] += 1
    a.save_pretrained(tmp_path / 'a'); b.save_pretrained(tmp_path / 'b')
    live, files = scan_pair(a, b, progress=False), scan_pair(tmp_path / 'a', tmp_path / 'b', progress=False)
    assert live.table.name.tolist() == files.table.name.tolist() and 'lm_head.weight' not in live.table.name.tolist()
    assert live.table.numel.sum() == files.table.numel.sum() == sum(p.numel() for p in a.parameters())
    assert live.table.changed.tolist() == files.table.changed.tolist()
    assert SubnetMask.from_pair(a, b).names == SubnetMask.from_pair(tmp_path / 'a', tmp_path / 'b').names
    assert len(open_checkpoint(a.state_dict())) == len(open_checkpoint(tmp_path / 'a'))   # a state dict shares storage the same way
