"Masks against the scan on every layout, transplant exactness and layout, save/load and overlap edge cases."
import hashlib, json, math, shutil
from pathlib import Path
import numpy as np, pytest, torch
from safetensors.torch import load_file, save_file
from rlsub.core import RlsubError
from rlsub.checkpoints import open_checkpoint
from rlsub.measure.masks import SubnetMask, overlap, random_mask, transplant, _Packer
from rlsub.measure.rules import LADDER
from rlsub.measure.scan import scan_pair

KEYS = [('llama', torch.bfloat16, False), ('llama', torch.bfloat16, True), ('qwen2', torch.float16, True),
        ('qwen3', torch.float32, False), ('gpt2', torch.bfloat16, False), ('phi', torch.float32, True)]


def load_all(folder):
    return {k: v for f in sorted(Path(folder).glob('*.safetensors')) for k, v in load_file(f).items()}


def digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(Path(folder).iterdir())}


@pytest.mark.parametrize('key', KEYS, ids=lambda k: f'{k[0]}-{str(k[1])[6:]}-{"sharded" if k[2] else "single"}')
def test_mask_counts_match_the_scan_for_every_rule(pairs, key):
    folder, planted = pairs[key]
    report = scan_pair(folder / 'base', folder / 'tuned', progress=False)
    exact = SubnetMask.from_pair(folder / 'base', folder / 'tuned', chunk_size=777)   # rounded up to 784: chunk edges inside tensors
    assert exact.names == report.table.name.tolist()
    assert exact.table['count'].tolist() == report.changed().tolist() == planted.set_index('name').loc[exact.names].changed.tolist()
    for rule in ('abs', 'rel'):
        for thr in LADDER[::9]:
            m = SubnetMask.from_pair(folder / 'base', folder / 'tuned', rule, float(thr))
            assert m.table['count'].tolist() == report.changed(rule, float(thr)).tolist(), (rule, thr)
            assert (m - exact).count == 0


def test_mask_bits_are_the_elementwise_definition(pairs):
    folder, _ = pairs['qwen2', torch.float16, True]
    m = SubnetMask.from_pair(folder / 'base', folder / 'tuned', 'rel', 2e-3)
    B, T = load_all(folder / 'base'), load_all(folder / 'tuned')
    for n in m.names:
        b, t = B[n].float(), T[n].float()
        want = ((t - b).abs() > torch.tensor(2e-3) * torch.maximum(b.abs(), t.abs())) & (B[n] != T[n])
        assert torch.equal(m.tensor(n), want), n


def test_mismatched_pairs_mask_what_the_scan_compares():
    torch.manual_seed(0)
    emb = torch.randn(16, 4).bfloat16()
    bsd = {'model.embed_tokens.weight': emb, 'model.layers.0.mlp.up_proj.weight': torch.randn(8, 4).bfloat16(), 'model.only_base.weight': torch.ones(3)}
    tsd = {'model.embed_tokens.weight': torch.cat([emb * 2, torch.randn(8, 4).bfloat16()]), 'lm_head.weight': emb.clone(),
           'model.layers.0.mlp.up_proj.weight': bsd['model.layers.0.mlp.up_proj.weight'].float() * 1.5, 'model.extra.weight': torch.zeros(3)}
    m = SubnetMask.from_pair(bsd, tsd, chunk_size=3)
    report = scan_pair(bsd, tsd, progress=False)
    compared = report.table[report.table.numel > 0]
    assert sorted(m.names) == sorted(compared.name) and 'model.extra.weight' not in m and 'model.only_base.weight' not in m
    assert m.shapes['model.embed_tokens.weight'] == (16, 4)
    assert torch.equal(m.tensor('model.embed_tokens.weight'), emb != 0)
    assert m.table.set_index('name')['count'].to_dict() == compared.set_index('name').changed.to_dict()


def test_packer_any_chunking():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1001, generator=g) < 0.3
    for sizes in ([1001], [1, 7, 8, 985], [3] * 333 + [2], [500, 501]):
        p = _Packer()
        for c in x.split(sizes): p.add(c)
        assert np.array_equal(p.finish(), np.packbits(x.numpy(), bitorder='little'))


def test_bad_arguments(pairs):
    folder, _ = pairs['llama', torch.bfloat16, False]
    b, t = folder / 'base', folder / 'tuned'
    with pytest.raises(RlsubError, match='unknown rule'): SubnetMask.from_pair(b, t, 'fuzzy')
    with pytest.raises(RlsubError, match='takes no threshold'): SubnetMask.from_pair(b, t, 'exact', 1e-5)
    with pytest.raises(RlsubError, match='>= 0'): SubnetMask.from_pair(b, t, 'abs', -1.0)
    with pytest.raises(RlsubError, match='chunk_size'): SubnetMask.from_pair(b, t, chunk_size=0)
    m = SubnetMask.from_pair(b, t)
    with pytest.raises(RlsubError, match=r'density must be a number in \[0, 1\]'): random_mask(m, density=1.5)
    with pytest.raises(RlsubError, match='by must be'): m.density_by('shard')


def test_density_by_matches_the_report(pairs):
    folder, _ = pairs['llama', torch.bfloat16, True]
    m, r = SubnetMask.from_pair(folder / 'base', folder / 'tuned', 'abs', 1e-4), scan_pair(folder / 'base', folder / 'tuned', progress=False)
    for by in ('layer', 'kind', ['layer', 'kind'], 'name'):
        d, s = m.density_by(by), r.sparsity('abs', 1e-4, by=by)
        assert d.changed.tolist() == s.changed.tolist() and d.params.tolist() == s.params.tolist()
        assert np.allclose(d.density, s.density)
    assert math.isclose(m.density_by(None), 1 - r.sparsity('abs', 1e-4))


def test_save_load_round_trip_and_refusals(pairs, tmp_path):
    folder, _ = pairs['gpt2', torch.bfloat16, False]
    m = SubnetMask.from_pair(folder / 'base', folder / 'tuned', 'abs', 1e-5)
    m.save(tmp_path / 'm.safetensors')
    again = SubnetMask.load(tmp_path / 'm.safetensors')
    assert again == m and again.meta == m.meta and again.threshold == 1e-5 and again.rule == 'abs'
    assert [p.name for p in tmp_path.iterdir()] == ['m.safetensors']          # no temporary file left behind
    raw = (tmp_path / 'm.safetensors').read_bytes()
    (tmp_path / 'cut.safetensors').write_bytes(raw[:len(raw) // 2])
    with pytest.raises(RlsubError, match='not a readable rlsub mask'): SubnetMask.load(tmp_path / 'cut.safetensors')
    save_file({'x': torch.zeros(3)}, tmp_path / 'plain.safetensors')
    with pytest.raises(RlsubError, match='not an rlsub mask'): SubnetMask.load(tmp_path / 'plain.safetensors')
    with pytest.raises(RlsubError, match='no such mask file'): SubnetMask.load(tmp_path / 'missing.safetensors')
    with pytest.raises(RlsubError, match='does not exist'): m.save(tmp_path / 'no' / 'such' / 'm.safetensors')


def test_overlap_chance_and_errors(pairs):
    folder, _ = pairs['qwen3', torch.float32, False]
    m = SubnetMask.from_pair(folder / 'base', folder / 'tuned')
    zs = []
    for s in range(5):
        o = overlap(random_mask(m, seed=10 + s), random_mask(m, seed=20 + s))
        zs += [o.z1, o.z2]
    assert max(abs(z) for z in zs) < 4.5
    o = overlap(m, m)
    assert (o.o1, o.o2, o.jaccard) == (1.0, 1.0, 1.0) and o.z1 > 50
    g = overlap(m, random_mask(m, seed=1), by=['layer', 'kind'])
    assert list(g.columns[:4]) == ['params', 'n1', 'n2', 'both'] and g.both.sum() == overlap(m, random_mask(m, seed=1)).both
    empty = m - m
    oe = overlap(empty, m)
    assert oe.both == 0 and math.isnan(oe.o1) and 'Overlap' in repr(oe)
    other, _ = pairs['gpt2', torch.bfloat16, False]
    with pytest.raises(RlsubError, match='cover different tensors'): overlap(m, SubnetMask.from_pair(other / 'base', other / 'tuned'))
    with pytest.raises(RlsubError, match='cover different tensors'): m & SubnetMask.from_pair(other / 'base', other / 'tuned')


@pytest.mark.parametrize('key', [('llama', torch.bfloat16, True), ('qwen2', torch.float16, True), ('phi', torch.float32, True), ('gpt2', torch.bfloat16, False)],
                         ids=lambda k: f'{k[0]}-{str(k[1])[6:]}')
def test_transplant_is_exact_and_keeps_the_layout(pairs, tmp_path, key):
    folder, _ = pairs[key]
    base, tuned = folder / 'base', folder / 'tuned'
    before = digest(base), digest(tuned)
    m = SubnetMask.from_pair(base, tuned)
    half = random_mask(m, density=0.5, seed=3) & m
    transplant(base, tuned, m, tmp_path / 'full', chunk_size=100)
    transplant(base, tuned, half, tmp_path / 'half')
    transplant(base, tuned, half, tmp_path / 'rest', complement=True)
    assert (digest(base), digest(tuned)) == before                     # inputs untouched
    B, T, H, R = (load_all(p) for p in (base, tuned, tmp_path / 'half', tmp_path / 'rest'))
    F = load_all(tmp_path / 'full')
    for n in B:
        assert F[n].dtype == B[n].dtype and torch.equal(F[n].view(-1).view(torch.uint8), T[n].view(-1).view(torch.uint8)), n
        h = half.tensor(n)
        assert torch.equal(H[n], torch.where(h, T[n], B[n])) and torch.equal(R[n], torch.where(h, B[n], T[n])), n
    assert sorted(p.name for p in (tmp_path / 'full').iterdir()) == sorted(p.name for p in base.iterdir())
    for f in base.glob('*.safetensors'):
        with open_checkpoint(f) as a, open_checkpoint(tmp_path / 'full' / f.name) as b:
            assert a.names == b.names and [a[n].offset for n in a.names] == [b[n].offset for n in b.names]   # same order, same offsets
    assert scan_pair(base, tmp_path / 'half', progress=False).changed().tolist() == half.table['count'].tolist()


def test_transplant_copies_small_files_and_loads_in_transformers(pairs, tmp_path):
    from transformers import AutoModelForCausalLM
    folder, _ = pairs['llama', torch.bfloat16, True]
    base = tmp_path / 'base'
    shutil.copytree(folder / 'base', base)
    (base / 'tokenizer.json').write_text('{}'); (base / 'generation_config.json').write_text('{}')
    m = SubnetMask.from_pair(base, folder / 'tuned')
    out = transplant(base, folder / 'tuned', m, tmp_path / 'out')
    assert (out / 'tokenizer.json').read_text() == '{}' and (out / 'config.json').read_text() == (base / 'config.json').read_text()
    model = AutoModelForCausalLM.from_pretrained(out)
    sd = load_all(folder / 'tuned')
    assert all(torch.equal(p.detach(), sd[n]) for n, p in model.named_parameters())


def test_transplant_refusals_and_state_dicts(pairs, tmp_path):
    folder, _ = pairs['llama', torch.bfloat16, False]
    base, tuned = folder / 'base', folder / 'tuned'
    m = SubnetMask.from_pair(base, tuned)
    (tmp_path / 'exists').mkdir()
    with pytest.raises(RlsubError, match='already exists'): transplant(base, tuned, m, tmp_path / 'exists')
    other, _ = pairs['gpt2', torch.bfloat16, False]
    with pytest.raises(RlsubError, match='another pair'): transplant(base, tuned, SubnetMask.from_pair(other / 'base', other / 'tuned'), tmp_path / 'x')
    assert not (tmp_path / 'x').exists() and [p.name for p in tmp_path.iterdir()] == ['exists']   # nothing half-written left behind
    B, T = load_all(base), load_all(tuned)
    out = transplant(B, T, m, tmp_path / 'sd')
    assert [p.name for p in out.iterdir()] == ['model.safetensors']
    S = load_file(out / 'model.safetensors')
    assert all(torch.equal(S[n], T[n]) for n in T)


def test_random_mask_is_seeded_and_matches_density(pairs):
    folder, _ = pairs['phi', torch.float32, True]
    m = SubnetMask.from_pair(folder / 'base', folder / 'tuned')
    a, b = random_mask(m, seed=7), random_mask(m, seed=7)
    assert a == b and a != random_mask(m, seed=8) and a.names == m.names
    big = m.table[m.table.numel > 5000]
    got = a.table.set_index('name').density.loc[big.name].to_numpy()
    assert np.all(np.abs(got - big.density.to_numpy()) < 4 * np.sqrt(big.density * (1 - big.density) / big.numel).to_numpy() + 1e-9)
    assert 'random' in repr(a)
