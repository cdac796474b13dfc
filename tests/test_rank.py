"Update rank against torch.linalg.matrix_rank, on planted low-rank updates, bad inputs, odd pairs and real tiny models."
import math, zlib
from pathlib import Path
import numpy as np, pandas as pd, pytest, torch
from safetensors.torch import load_file
from rlsub.checkpoints import KINDS, open_checkpoint
from rlsub.core import RlsubError
from rlsub.measure.rank import COLUMNS, matrix_stats, rank_summary, update_rank
from rlsub.checkpoints import MATRIX_KINDS

Q, K, UP, DOWN = ('model.layers.0.self_attn.q_proj.weight', 'model.layers.0.self_attn.k_proj.weight',
                  'model.layers.0.mlp.up_proj.weight', 'model.layers.0.mlp.down_proj.weight')


def load_all(folder):
    return {k: v for f in sorted(Path(folder).glob('*.safetensors')) for k, v in load_file(f).items()}


def low_rank(m, n, k, g, scale=1e-2):
    return torch.randn(m, k, generator=g) @ torch.randn(k, n, generator=g) * scale


# --- bad inputs -------------------------------------------------------------------------------------------

def test_unknown_kind_is_one_line_listing_valid_kinds():
    sd = {Q: torch.zeros(4, 4)}
    with pytest.raises(RlsubError) as e: update_rank(sd, sd, kinds=['q', 'attention'])
    msg = str(e.value)
    assert '\n' not in msg and "'attention'" in msg and ', '.join(KINDS) in msg
    with pytest.raises(RlsubError, match='unknown kind'): update_rank(sd, sd, kinds=[])


def test_no_matrices():
    vecs = {'model.layers.0.input_layernorm.weight': torch.ones(8), 'model.layers.0.self_attn.q_proj.bias': torch.zeros(8)}
    with pytest.raises(RlsubError, match='no 2-D weight matrices'): update_rank(vecs, vecs)
    with pytest.raises(RlsubError, match='no 2-D weight matrices'): update_rank(vecs, vecs, kinds='all')
    with pytest.raises(RlsubError, match='no 2-D weight matrices of kind norm'): update_rank({Q: torch.zeros(4, 4)}, {Q: torch.zeros(4, 4)}, kinds='norm')


def test_bad_rtol_and_device():
    sd = {Q: torch.zeros(4, 4)}
    for bad in (-1e-3, 'loose'):
        with pytest.raises(RlsubError, match='rtol must be'): update_rank(sd, sd, rtol=bad)
    with pytest.raises(RlsubError): update_rank(sd, sd, device='tpu')
    with pytest.raises(RlsubError, match='by must be'): rank_summary(update_rank(sd, sd), by='shape')


# --- odd pairs: skipped with the reason, or computed with a note ---------------------------------------------

def test_mismatched_shape_and_one_sided_matrices_are_listed_with_the_reason():
    g = torch.Generator().manual_seed(0)
    base = {Q: torch.randn(8, 8, generator=g) * 0.02, UP: torch.randn(16, 8, generator=g), K: torch.randn(4, 8, generator=g)}
    tuned = {Q: base[Q] + low_rank(8, 8, 2, g), UP: torch.randn(20, 8, generator=g), DOWN: torch.randn(8, 16, generator=g)}
    norm = 'model.layers.0.input_layernorm.weight'       # most entries pair up, as in two checkpoints of one model (else the pair is refused)
    base[norm] = tuned[norm] = torch.ones(400)
    t = update_rank(base, tuned).set_index('name')
    assert list(t.columns) == COLUMNS[1:]
    assert t.loc[Q, 'rank'] == 2 and t.loc[Q, 'note'] == ''
    assert t.loc[UP, 'note'] == 'skipped: shape differs (base 16×8, tuned 20×8)'
    assert pd.isna(t.loc[UP, 'rank']) and math.isnan(t.loc[UP, 'rank_fraction']) and t.loc[UP, 'shape'] == (16, 8)
    assert t.loc[K, 'note'].startswith('skipped: only in base') and t.loc[DOWN, 'note'].startswith('skipped: only in tuned')
    s = rank_summary(update_rank(base, tuned))     # skipped rows do not count
    assert s.matrices.tolist() == [1] and s.rank_fraction.tolist() == [0.25]


def test_nonfinite_matrix_is_skipped():
    base = {Q: torch.ones(4, 4), K: torch.eye(4)}
    tuned = {Q: torch.ones(4, 4), K: torch.eye(4) * 2}
    tuned[Q][1, 2] = math.nan
    t = update_rank(base, tuned).set_index('name')
    assert t.loc[Q, 'note'] == 'skipped: NaN or inf entries' and pd.isna(t.loc[Q, 'rank'])
    assert t.loc[K, 'rank'] == 4 and t.loc[K, 'spectral_shift'] == pytest.approx(1.0)


def test_dtype_difference_is_computed_with_its_note():
    g = torch.Generator().manual_seed(1)
    b = torch.randn(32, 16, generator=g)
    tuned = (b + low_rank(32, 16, 3, g, 0.5)).bfloat16()
    t = update_rank({UP: b}, {UP: tuned}).iloc[0]
    assert t.note.startswith('base float32, tuned bfloat16')
    assert t['rank'] == int(torch.linalg.matrix_rank(tuned.float() - b)) == 16   # bf16 rounding of the tuned side is full rank


def test_zero_base_and_zero_update():
    z = torch.zeros(6, 4)
    st = matrix_stats(z, z)
    assert st == dict(rank=0, max_rank=4, rank_fraction=0.0, effective_rank=0.0, spectral_shift=0.0, delta_norm=0.0)
    st = matrix_stats(z, torch.ones(6, 4))
    assert st['rank'] == 1 and st['effective_rank'] == pytest.approx(1.0) and math.isnan(st['spectral_shift'])


def test_stacked_experts_give_one_row_per_matrix():
    g = torch.Generator().manual_seed(2)
    name = 'model.layers.0.mlp.experts.down_proj'
    b = torch.randn(3, 16, 24, generator=g)
    t = b.clone()
    for e, k in enumerate((1, 4, 16)): t[e] += low_rank(16, 24, k, g)
    out = update_rank({name: b}, {name: t})
    assert out.name.tolist() == [f'{name}[{e}]' for e in range(3)]
    assert out['rank'].tolist() == [1, 4, 16] and out['max_rank'].tolist() == [16] * 3 and out.kind.tolist() == ['down'] * 3


def test_default_kinds_leave_out_embeddings_and_lm_head_tied_is_compared(pairs):
    folder, _ = pairs['llama', torch.bfloat16, False]
    default = update_rank(folder / 'base', folder / 'tuned')
    assert set(default.kind) == {'q', 'k', 'v', 'o', 'gate', 'up', 'down'} and set(default.kind) <= set(MATRIX_KINDS)
    every = update_rank(folder / 'base', folder / 'tuned', kinds='all')
    assert set(every.kind) == set(default.kind) | {'embed', 'lm_head'}
    # tuned ties its head to the embedding: compared against the tuned embedding, with the note
    B = load_all(folder / 'base'); T = load_all(folder / 'tuned')
    T.pop('lm_head.weight')
    t = update_rank(B, T, kinds=['lm_head']).iloc[0]
    assert 'tied' in t.note and t['rank'] == int(torch.linalg.matrix_rank(T['model.embed_tokens.weight'].float() - B['lm_head.weight'].float()))


def test_checkpoints_passed_in_stay_open(pairs):
    folder, _ = pairs['llama', torch.bfloat16, True]
    with open_checkpoint(folder / 'base') as b, open_checkpoint(folder / 'tuned') as t:
        first = update_rank(b, t, kinds='up')
        assert update_rank(b, t, kinds='up')['rank'].tolist() == first['rank'].tolist()   # still readable


# --- agreement with torch.linalg.matrix_rank ----------------------------------------------------------------

@pytest.mark.parametrize('shape', [(64, 64), (96, 32), (24, 80), (1, 50), (128, 7)])
@pytest.mark.parametrize('rtol', [None, 1e-4, 0.3])
def test_agrees_with_matrix_rank_on_random_low_rank_updates(shape, rtol):
    g = torch.Generator().manual_seed(zlib.crc32(repr((shape, rtol)).encode()))
    m, n = shape
    names = [f'model.layers.{i}.mlp.up_proj.weight' for i in range(6)]
    base = {nm: torch.randn(m, n, generator=g) * 0.02 for nm in names}
    ks = [0, 1, 2, min(m, n) // 2, min(m, n) - 1, min(m, n)]
    tuned = {nm: base[nm] + (low_rank(m, n, k, g) if k else 0) for nm, k in zip(names, ks)}
    out = update_rank(base, tuned, rtol=rtol)
    want = [int(torch.linalg.matrix_rank(tuned[nm] - base[nm], rtol=rtol)) for nm in out.name]
    assert out['rank'].tolist() == want
    if rtol is None: assert out['rank'].tolist() == [min(k, m, n) for k in ks]       # the planted ranks, exactly
    assert out.delta_norm.tolist() == pytest.approx([float((tuned[nm] - base[nm]).norm()) for nm in out.name], rel=1e-5)


@pytest.mark.parametrize('key', [('llama', torch.bfloat16, True), ('qwen2', torch.float16, True), ('phi', torch.float32, True), ('gpt2', torch.bfloat16, False)])
def test_planted_pairs_agree_with_matrix_rank(pairs, key):
    folder, _ = pairs[key]
    out = update_rank(folder / 'base', folder / 'tuned')
    B, T = load_all(folder / 'base'), load_all(folder / 'tuned')
    assert len(out) and (out.note == '').all()
    assert out['rank'].tolist() == [int(torch.linalg.matrix_rank(T[n].float() - B[n].float())) for n in out.name]
    assert (out.rank_fraction > 0.95).all()            # 30 % of entries moved at random: full rank, as the paper finds


# --- a real tiny model pair, end to end -------------------------------------------------------------------

@pytest.mark.parametrize('family', ['llama', 'qwen2', 'gpt2'])
def test_tiny_transformers_pair_end_to_end(tmp_path, family):
    from transformers import AutoModelForCausalLM
    from rlsub.examples import tiny_config
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(tiny_config(family))
    model.save_pretrained(tmp_path / 'base')
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for _ in range(3):
        ids = torch.randint(0, 128, (2, 16))
        model(ids, labels=ids).loss.backward(); opt.step(); opt.zero_grad()
    model.to(torch.bfloat16).save_pretrained(tmp_path / 'tuned')      # a bf16 release of an fp32 base: dtype differs
    out = update_rank(tmp_path / 'base', tmp_path / 'tuned', progress=True)
    assert list(out.columns) == COLUMNS and len(out) == 2 * (7 if family != 'gpt2' else 4)
    assert out['rank'].notna().all() and not out[['rank_fraction', 'effective_rank', 'spectral_shift', 'delta_norm']].isna().any().any()
    assert (out.rank_fraction > 0.9).all() and (out.effective_rank <= out['rank'].astype(float)).all()
    assert out.note.str.startswith('base float32, tuned bfloat16').all()
    s = rank_summary(out)
    assert s.matrices.sum() == len(out) and list(s.index) == [k for k in KINDS if k in set(out.kind)]
