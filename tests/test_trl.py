"rlsub.train.trl: subnet-only training, sparsity tracking and GRESO selection inside TRL's GRPOTrainer and transformers' Trainer, on CPU with tiny policies."
import random
from types import SimpleNamespace
import pytest, torch
from datasets import Dataset
from transformers import Trainer, TrainerCallback, TrainingArguments
from trl import GRPOConfig, GRPOTrainer
from rlsub.core import RlsubError
from rlsub.measure.masks import SubnetMask
from rlsub.measure.scan import scan_pair
from rlsub.train.tiny import Task, addition, char_tokenizer, tiny_policy
from rlsub.train.trl import GresoGRPOTrainer, GresoSampler, MaskedTraining, SparsityTracker
from toys import EVEN as TASK, planted_mask




@pytest.fixture(scope='module')
def tok():
    return char_tokenizer()


def dataset(n=64, seed=0):
    return Dataset.from_list([dict(prompt=p, answer=a) for p, a in TASK.batch(n, random.Random(seed))])


def reward(completions, answer, **kw):
    return [TASK.reward(c, a) for c, a in zip(completions, answer)]


def args(out, **kw):
    base = dict(output_dir=str(out), use_cpu=True, bf16=False, gradient_checkpointing=False, report_to='none', disable_tqdm=True,
                num_generations=4, per_device_train_batch_size=16, max_completion_length=3, learning_rate=1e-2, weight_decay=0.1,
                optim='adamw_torch', lr_scheduler_type='constant', loss_type='grpo', max_steps=3, logging_steps=1, save_strategy='no', seed=0)
    return GRPOConfig(**(base | kw))


class GradProbe(TrainerCallback):
    "Largest gradient outside the mask and the gradient norm, just before each optimizer step (after clipping)."
    def __init__(self, mask): self.mask, self.outside, self.norms = mask, [], []
    def on_pre_optimizer_step(self, args, state, control, model=None, **kw):
        ps = [(n, p) for n, p in model.named_parameters() if p.grad is not None]
        self.outside.append(max(p.grad[~self.mask.tensor(n)].abs().max().item() for n, p in ps))
        self.norms.append(torch.linalg.vector_norm(torch.stack([p.grad.norm() for _, p in ps])).item())


def bits(t):
    return t.view(torch.int32)


def check_frozen(policy, start, mask):
    "Outside the mask bit-identical to `start`; the number of entries inside that moved."
    moved = 0
    for n, p in policy.named_parameters():
        m = mask.tensor(n)
        assert torch.equal(bits(p.detach()[~m]), bits(start[n][~m])), n
        moved += (p.detach()[m] != start[n][m]).sum().item()
    return moved


@pytest.mark.parametrize('extra', [dict(), dict(gradient_accumulation_steps=2, per_device_train_batch_size=8), dict(max_grad_norm=1e6)])
def test_grpo_masked_bit_identical(tmp_path, tok, extra):
    pol = tiny_policy(tok, 'tiny', seed=1)
    mask = planted_mask(pol)
    start = {n: p.detach().clone() for n, p in pol.named_parameters()}
    probe, mt = GradProbe(mask), MaskedTraining(mask)
    tr = GRPOTrainer(model=pol, reward_funcs=reward, args=args(tmp_path, **extra), train_dataset=dataset(), processing_class=tok,
                     callbacks=[mt, probe])
    tr.train()
    assert check_frozen(pol, start, mask) > 0
    assert probe.outside == [0.0] * 3
    assert max(probe.norms) > 0                                  # some group had spread rewards, so there was a gradient to mask
    logged = [r['grad_norm'] for r in tr.state.log_history if 'grad_norm' in r]
    if 'max_grad_norm' in extra: assert logged == pytest.approx(probe.norms, rel=1e-4)   # clipping's norm is the masked gradient's
    else: assert max(probe.norms) <= 1 + 1e-4
    assert mt.handles == [] and all(not p._backward_hooks for p in pol.parameters())   # hooks removed at the end


def test_grpo_without_masking_moves_outside(tmp_path, tok):
    "The control: the same run without MaskedTraining changes entries outside the mask (so the check above can fail)."
    pol = tiny_policy(tok, 'tiny', seed=1)
    mask = planted_mask(pol)
    start = {n: p.detach().clone() for n, p in pol.named_parameters()}
    GRPOTrainer(model=pol, reward_funcs=reward, args=args(tmp_path), train_dataset=dataset(), processing_class=tok).train()
    with pytest.raises(AssertionError): check_frozen(pol, start, mask)


@pytest.mark.parametrize('optim', ['adamw_torch', 'sgd', 'adafactor'])
def test_plain_trainer_masked(tmp_path, tok, optim):
    "Any transformers.Trainer: next-token training of the tiny policy with three optimizers and weight decay."
    pol = tiny_policy(tok, 'tiny', seed=2)
    mask = planted_mask(pol, seed=1)
    start = {n: p.detach().clone() for n, p in pol.named_parameters()}
    texts = [f'{p}{a}' for p, a in addition(2).batch(32, random.Random(0))]
    enc = tok(texts, padding=True, padding_side='right')
    ds = Dataset.from_dict(dict(input_ids=enc.input_ids, attention_mask=enc.attention_mask, labels=enc.input_ids))
    ta = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to='none', disable_tqdm=True, per_device_train_batch_size=8,
                           max_steps=3, learning_rate=1e-2, weight_decay=0.1, optim=optim, save_strategy='no', seed=0)
    Trainer(model=pol, args=ta, train_dataset=ds, callbacks=[MaskedTraining(mask)]).train()
    assert check_frozen(pol, start, mask) > 0


@pytest.mark.parametrize('save_dtype', ['bf16', 'fp32'])
def test_tracker_equals_scan_pair(tmp_path, tok, save_dtype):
    pol = tiny_policy(tok, 'tiny', seed=1)      # tied embeddings
    mask = planted_mask(pol)
    tracker = SparsityTracker(every=2, save_dir=tmp_path / 'snaps', save_dtype=save_dtype)
    tr = GRPOTrainer(model=pol, reward_funcs=reward, args=args(tmp_path / 'out', max_steps=5), train_dataset=dataset(),
                     processing_class=tok, callbacks=[MaskedTraining(mask), tracker])
    tr.train()
    logged = [r for r in tr.state.log_history if f'sparsity/{save_dtype}/exact' in r]
    assert [r['step'] for r in logged] == [2, 4, 5]              # every 2 steps and the last
    for r in logged:
        rep = scan_pair(tmp_path / 'snaps/checkpoint-0', tmp_path / f"snaps/checkpoint-{r['step']}", progress=False)
        for rule, t in tracker.tracker.rules: assert r[f'sparsity/{save_dtype}/{rule}'] == float(rep.sparsity(rule, t))
    assert 1 - mask.density <= logged[-1]['sparsity/bf16/exact'] < 1
    assert logged[-1]['sparsity/fp32/exact'] <= logged[-1]['sparsity/bf16/exact']   # fp32 sees every change bf16 sees
    assert len(tracker.table) == 3 * 2 * 3                       # steps × storages × rules


def test_tracker_refuses_used_folder(tmp_path, tok):
    (tmp_path / 'snaps/checkpoint-0').mkdir(parents=True)
    tr = GRPOTrainer(model=tiny_policy(tok, 'tiny'), reward_funcs=reward, args=args(tmp_path / 'out', max_steps=1), train_dataset=dataset(),
                     processing_class=tok, callbacks=[SparsityTracker(save_dir=tmp_path / 'snaps')])
    with pytest.raises(RlsubError, match='not empty'): tr.train()


def test_refuses_sharding_and_foreign_masks(tmp_path, tok):
    pol = tiny_policy(tok, 'tiny')
    mask = planted_mask(pol)
    for a, name in [(SimpleNamespace(fsdp='full_shard', deepspeed=None), 'FSDP'), (SimpleNamespace(fsdp=None, deepspeed={'zero_optimization': {'stage': 2}}), 'DeepSpeed')]:
        for cb in (MaskedTraining(mask), SparsityTracker()):
            with pytest.raises(RlsubError, match=f'uses {name}'): cb.on_train_begin(a, SimpleNamespace(is_world_process_zero=True), None, model=pol)
    other = SubnetMask.from_pair(tiny_policy(tok, 'small'), tiny_policy(tok, 'small'))
    tr = GRPOTrainer(model=pol, reward_funcs=reward, args=args(tmp_path, max_steps=1), train_dataset=dataset(), processing_class=tok,
                     callbacks=[MaskedTraining(other)])
    with pytest.raises(RlsubError, match='has shape'): tr.train()


class KeepOdd:
    "Stand-in selector: keeps prompts whose first number is odd; records what it is shown."
    def __init__(self): self.seen, self.steps = [], 0
    def keep(self, prompt): return int(prompt.split('+')[0]) % 2 == 1
    def observe(self, prompt, rewards): self.seen.append((prompt, list(rewards))); return len(set(rewards)) > 1
    def end_step(self): self.steps += 1; return dict(observed=len(self.seen))


def test_greso_sampler_layout():
    ds = dataset(12)
    class Every:
        def keep(self, p): return True
    idx = list(GresoSampler(ds, Every(), mini_repeat_count=3, batch_size=2, repeat_count=2, seed=1))
    assert len(idx) == 12 * 3 * 2
    blocks = [idx[i:i + 12] for i in range(0, len(idx), 12)]   # one generation batch (2 prompts × 3) repeated twice
    for b in blocks: assert b[:6] == b[6:] and b[0] == b[1] == b[2] and b[3] == b[4] == b[5]
    assert sorted({i for b in blocks for i in b}) == list(range(12))


def test_greso_trainer(tmp_path, tok):
    sel = KeepOdd()
    tr = GresoGRPOTrainer(model=tiny_policy(tok, 'tiny', seed=1), reward_funcs=reward, args=args(tmp_path, max_steps=4), train_dataset=dataset(),
                          processing_class=tok, selection=sel)
    tr.train()
    assert len(sel.seen) == 4 * 16 // 4 and sel.steps == 4
    assert all(sel.keep(p) and len(r) == 4 for p, r in sel.seen)
    # observe got TRL's rewards: each step's logged mean reward is the mean over the groups observed in that step
    logged = [r for r in tr.state.log_history if 'reward' in r]
    for k, r in enumerate(logged):
        group = sel.seen[4 * k: 4 * k + 4]
        assert r['reward'] == pytest.approx(sum(sum(x) for _, x in group) / 16)
        assert r['greso/observed'] == 4 * (k + 1)
    with pytest.raises(RlsubError, match='unknown selection'):
        GresoGRPOTrainer(model=tiny_policy(tok, 'tiny'), reward_funcs=reward, args=args(tmp_path), train_dataset=dataset(),
                         processing_class=tok, selection=object())
