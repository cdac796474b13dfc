"Controls: random masks at the RL mask's density, LoRA through PEFT trained by train_grpo (base frozen, merged update only in the adapted matrices), bad inputs."
import builtins
import numpy as np
import pytest, torch
from rlsub.core import RlsubError
from rlsub.experiments.controls import LoRA, control_masks, run_controls, update_sparsity
from rlsub.train.grpo import GRPOConfig, train_grpo
from rlsub.train.loop import save_policy
from rlsub.measure.masks import SubnetMask, overlap
from rlsub.train.tiny import char_tokenizer, tiny_policy
from rlsub.train.zoo import default_task, load_policy


pytestmark = pytest.mark.usefixtures('one_thread')   # tests/conftest.py


@pytest.fixture(scope='module')
def tok():
    return char_tokenizer()


def toy_mask(densities, n=40_000, seed=0):
    g = torch.Generator().manual_seed(seed)
    names = [f'model.layers.{i}.mlp.up_proj.weight' for i in range(len(densities))]
    bits = {nm: np.packbits((torch.rand(n, generator=g) < p).numpy(), bitorder='little') for nm, p in zip(names, densities)}
    return SubnetMask(bits, {nm: (n,) for nm in names})


def test_random_control_matches_density_per_tensor_and_differs_from_the_rl_mask():
    rl = toy_mask([0.3, 0.05, 0.0])
    ms = control_masks(rl, densities=(0.2,), seed=3)
    assert list(ms) == ['random', 'random-20pct']
    np.testing.assert_allclose(ms['random'].table.density, rl.table.density, atol=0.01)
    assert ms['random'].table.density.iloc[2] == 0                     # an empty tensor stays empty
    np.testing.assert_allclose(ms['random-20pct'].table.density, 0.2, atol=0.01)
    ov = overlap(rl, ms['random'])                                      # a random mask overlaps the RL mask at chance, no more
    assert abs(ov.o1 - ov.chance_o1) < 0.02 and abs(ov.z1) < 4
    assert control_masks(rl, densities=(0.2,), seed=4)['random'] != ms['random']


@pytest.mark.parametrize('bad', [(0,), (1.5,), ('10%',)])
def test_control_masks_refuses_bad_densities(bad):
    with pytest.raises(RlsubError, match=r'densities must be numbers in \(0, 1\]'): control_masks(toy_mask([0.1]), densities=bad)


@pytest.mark.parametrize('rank', [1, 4])
def test_lora_trains_only_adapters_and_merges_into_the_matrices(rank, tmp_path):
    pol, tok = load_policy('tiny-addition', dtype=torch.float32)           # a warm-started policy: rewards vary, so gradients flow
    save_policy(pol, tok, tmp_path / 'base-bf16', 'bf16')
    w0 = {n: p.detach().clone() for n, p in pol.named_parameters()}
    lin = [m for n, m in pol.named_modules() if isinstance(m, torch.nn.Linear) and not n.endswith('lm_head')]
    ad = LoRA(rank=rank, seed=1)
    inner, finish = ad(pol)
    assert ad.trainable == rank * sum(m.in_features + m.out_features for m in lin)
    train_grpo(inner, tok, default_task('tiny-addition', tok), GRPOConfig(group_size=4, prompts_per_step=8, steps=3, lr=1e-3, device='cpu'), progress=False)
    frozen = {n.replace('.base_layer', ''): p for n, p in inner.named_parameters() if 'lora_' not in n}
    assert all(torch.equal(p, w0[n]) for n, p in frozen.items())      # the optimizer touched only the adapters
    merged = finish()
    assert list(dict(merged.named_parameters())) == list(w0)
    changed = {n for n, p in merged.named_parameters() if not torch.equal(p, w0[n])}
    assert changed and all(n.endswith('_proj.weight') for n in changed)  # only adapted weight matrices moved: no embeddings, norms, biases
    save_policy(merged, tok, tmp_path / 'lora-bf16', 'bf16')
    sp = update_sparsity(tmp_path, 'lora')
    assert sp['unchanged'] > sp['unchanged (matrices)'] and sp['unchanged (matrices)'] < 0.5   # a low-rank update is dense in its matrices


def test_lora_is_seeded(tok):
    a = dict(LoRA(rank=2, seed=5)(tiny_policy(tok, 'tiny', seed=0))[0].named_parameters())
    b = dict(LoRA(rank=2, seed=5)(tiny_policy(tok, 'tiny', seed=0))[0].named_parameters())
    assert all(torch.equal(p, b[n]) for n, p in a.items())


@pytest.fixture
def no_peft(monkeypatch):
    "Imports of peft fail, as on a machine without it."
    real = builtins.__import__
    def imp(name, *a, **k):
        if name == 'peft' or name.startswith('peft.'): raise ImportError(name)
        return real(name, *a, **k)
    monkeypatch.setattr(builtins, '__import__', imp)


def test_lora_without_peft_says_how_to_install(tok, no_peft):
    with pytest.raises(RlsubError, match=r'rlsub\[lora\]'): LoRA()(tiny_policy(tok, 'tiny', seed=0))


def test_run_controls_needs_a_demo_folder(tmp_path):
    import pandas as pd
    with pytest.raises(RlsubError, match='holds no demo run'): run_controls(tmp_path, pd.DataFrame())


def test_demo_lora_without_peft_refuses_before_any_work(tmp_path, no_peft):
    from rlsub.experiments.demo import run_demo
    with pytest.raises(RlsubError, match=r'rlsub\[lora\]'): run_demo('test', out=None, workdir=tmp_path / 'w', lora=1, log=None)
    assert not (tmp_path / 'w').exists()
