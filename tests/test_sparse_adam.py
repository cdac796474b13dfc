"rlsub.train.sparse_adam: SparseAdamW against torch.optim.AdamW and today's masked training, bit-identity outside the mask, state proportional to the mask, fused modes and clipping, train_grpo and Trainer wiring."
import random
import numpy as np
import pytest, torch
from rlsub.core import RlsubError
from rlsub.train.grpo import GRPOConfig, train_grpo
from rlsub.measure.masks import SubnetMask
from rlsub.train.sparse_adam import SparseAdamW, adamw_, local_mask, mask_index
from rlsub.train.tiny import addition, char_tokenizer, tiny_policy


@pytest.fixture(scope='module')
def tok():
    return char_tokenizer()


def bernoulli_mask(model, density, seed=0):
    "A SubnetMask over `model`'s parameters with each entry in it with probability `density`, built without a scan."
    g = torch.Generator().manual_seed(seed)
    bits = {n: np.packbits((torch.rand(p.shape, generator=g) < density).reshape(-1).numpy(), bitorder='little') for n, p in model.named_parameters()}
    return SubnetMask(bits, {n: tuple(p.shape) for n, p in model.named_parameters()})


def bits_equal(a, b):
    return torch.equal(a.contiguous().view(torch.uint8), b.contiguous().view(torch.uint8))


def moved_only_inside(model, mask, start, dtype=None) -> int:
    "Assert every entry outside `mask` is bit-identical to `start` (and each weight in `dtype`, if given); the number of entries inside that moved."
    moved = 0
    for n, p in model.named_parameters():
        k = mask.tensor(n)
        assert (dtype is None or p.dtype == dtype) and bits_equal(p.detach()[~k], start[n][~k]), n
        moved += int((p.detach()[k] != start[n][k]).sum())
    return moved


def mlp(dtype=torch.float32, seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3)).to(dtype)


def batches(n=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(8, 6, generator=g) for _ in range(n)]


def loss(model, x):
    return model(x.to(next(model.parameters()).dtype)).float().pow(2).mean()


def test_all_ones_is_adamw_fp32():
    "A mask of every entry on fp32 weights: torch.optim.AdamW to the bit, both its single-tensor and its foreach path, with decay and a scheduler."
    for foreach in (False, True):
        a, b = mlp(), mlp()
        oa = torch.optim.AdamW(a.parameters(), lr=3e-2, weight_decay=0.1, betas=(0.8, 0.99), foreach=foreach)
        ob = SparseAdamW(b, bernoulli_mask(b, 1.0), lr=3e-2, weight_decay=0.1, betas=(0.8, 0.99))
        sa, sb = torch.optim.lr_scheduler.LambdaLR(oa, lambda s: 1 / (1 + s)), torch.optim.lr_scheduler.LambdaLR(ob, lambda s: 1 / (1 + s))
        for x in batches():
            for m, o, s in ((a, oa, sa), (b, ob, sb)):
                o.zero_grad(); loss(m, x).backward(); o.step(); s.step()
        same = all(bits_equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
        if foreach: assert same or max((p - q).abs().max().item() for p, q in zip(a.parameters(), b.parameters())) < 1e-7
        else: assert same


def test_all_ones_bf16_is_mixed_precision_adamw():
    "bf16 weights, mask of every entry: the fp32 master equals torch AdamW stepping an fp32 copy on the same (bf16, upcast) gradients, and the weight is that master rounded to bf16."
    b = mlp(torch.bfloat16)
    master = mlp(torch.bfloat16).float()                       # the same start, upcast exactly
    om = torch.optim.AdamW(master.parameters(), lr=1e-2, weight_decay=0.1)
    ob = SparseAdamW(b, bernoulli_mask(b, 1.0), lr=1e-2, weight_decay=0.1)
    for x in batches():
        ob.zero_grad(); loss(b, x).backward()
        for p, q in zip(master.parameters(), b.parameters()): p.grad = q.grad.float()
        ob.step(); om.step()
    for p, q in zip(master.parameters(), b.parameters()):
        assert bits_equal(ob.state[q]['master'], p.detach().reshape(-1))
        assert bits_equal(q.detach(), p.detach().to(torch.bfloat16))


@pytest.mark.parametrize('fused', [None, 'packed', 'step'])
@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16])
def test_outside_bit_identical_state_proportional(fused, dtype):
    "Weight decay, clipping and (unless LOMO) accumulation: outside entries keep their bits, inside ones move, state is 16 bytes per masked entry (+ 4 while packed gradients wait)."
    m = mlp(dtype); mask = bernoulli_mask(m, 0.3)
    start = {n: p.detach().clone() for n, p in m.named_parameters()}
    accumulate = 1 if fused == 'step' else 2
    n_in = sum(int(mask.tensor(n).sum()) for n, _ in m.named_parameters())
    with SparseAdamW(m, mask, lr=1e-2, weight_decay=0.5, fused=fused, max_grad_norm=0.1) as opt:
        for x in batches():
            opt.zero_grad()
            for part in x.chunk(accumulate): loss(m, part).backward()
            if fused is not None: assert all(p.grad is None for p in m.parameters())          # the hooks freed every gradient
            if fused == 'packed': assert opt.state_bytes() == 20 * n_in + 4 * len(opt.state)   # + the packed gradients
            opt.step()
        assert moved_only_inside(m, mask, start, dtype) > 0
        assert opt.state_bytes() == 16 * n_in + 4 * len(opt.state)   # indices, master, two moments; 0-d step counters
    assert opt.handles == []


@pytest.mark.parametrize('clip', [None, 0.05])
def test_unfused_agrees_with_masked_adamw(clip):
    "fp32 weights, unfused: the same steps as torch AdamW with masked gradients, clip_grad_norm_ and the restore (rlsub.train.grpo's Freezer): bit-equal without clipping, within 1e-6 with it."
    from rlsub.train.loop import Freezer
    a, b = mlp(), mlp(); mask = bernoulli_mask(a, 0.3)
    fr, oa = Freezer(a, mask, 'cpu'), torch.optim.AdamW(a.parameters(), lr=1e-2, weight_decay=0.1)
    ob = SparseAdamW(b, mask, lr=1e-2, weight_decay=0.1, max_grad_norm=clip)
    for x in batches():
        oa.zero_grad(); ob.zero_grad(); loss(a, x).backward(); loss(b, x).backward()
        fr.grads()
        if clip is not None: torch.nn.utils.clip_grad_norm_(a.parameters(), clip)
        oa.step(); fr.restore(); ob.step()
    diff = max((p - q).abs().max().item() for p, q in zip(a.parameters(), b.parameters()))
    assert diff == 0 if clip is None else diff < 1e-6


def test_state_scales_with_density():
    m = mlp()
    sizes = {d: SparseAdamW(m, bernoulli_mask(m, d), lr=1e-3).state_bytes() for d in (0.0, 0.06, 0.3, 1.0)}
    n = sum(p.numel() for p in m.parameters())
    assert sizes[0.0] == 4 * 4 and sizes[1.0] == 16 * n + 16
    assert sizes[0.06] < sizes[0.3] < sizes[1.0]


def test_clipping_modes():
    "None and 'packed' clip by the global norm of the masked gradient (torch's rule, within float rounding); 'step' by each tensor's own norm."
    x = batches(1)[0]
    ref = mlp(); mask = bernoulli_mask(ref, 0.5)
    ref_masks = {n: mask.tensor(n) for n, _ in ref.named_parameters()}
    loss(ref, x).backward()
    for n, p in ref.named_parameters(): p.grad.masked_fill_(~ref_masks[n], 0)
    norm = torch.nn.utils.clip_grad_norm_(ref.parameters(), 0.01)
    for fused in (None, 'packed'):
        m = mlp()
        with SparseAdamW(m, mask, lr=1e-2, fused=fused, max_grad_norm=0.01) as opt:
            loss(m, x).backward(); opt.step()
        assert abs(opt.last_norm.item() - norm.item()) < 1e-6 * norm.item()
    # 'step' clips each tensor by its own norm: it matches a one-tensor optimizer per tensor (whose global norm is that tensor's),
    # and not global clipping. A large eps makes the update proportional to the gradient, so the clip shows in the weights.
    def step_once(model, fused, named=None, masks=None):
        opt = SparseAdamW(named or model, masks or mask, lr=1.0, eps=10.0, fused=fused, max_grad_norm=0.01)
        if fused is None and named is None: loss(model, x).backward()
        opt.step(); opt.remove_hooks()
    lomo, glob, solo = mlp(), mlp(), mlp()
    opt = SparseAdamW(lomo, mask, lr=1.0, eps=10.0, fused='step', max_grad_norm=0.01)
    loss(lomo, x).backward(); opt.step(); opt.remove_hooks()
    step_once(glob, None)
    loss(solo, x).backward()
    for n, q in solo.named_parameters(): step_once(None, None, [(n, q)], {n: ref_masks[n]})
    assert max((p - q).abs().max().item() for p, q in zip(lomo.parameters(), solo.parameters())) < 1e-7
    assert max((p - q).abs().max().item() for p, q in zip(lomo.parameters(), glob.parameters())) > 1e-4


def test_zero_grad_drops_packed_gradients():
    "A backward pass before zero_grad() leaves nothing behind in fused='packed': the step equals one without it."
    a, b = mlp(), mlp(); mask = bernoulli_mask(a, 0.5); x, y = batches(2)
    with SparseAdamW(a, mask, lr=1e-2, fused='packed') as oa, SparseAdamW(b, mask, lr=1e-2, fused='packed') as ob:
        loss(a, y).backward(); oa.zero_grad(); loss(a, x).backward(); oa.step()
        loss(b, x).backward(); ob.step()
    assert all(bits_equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_lomo_refuses_accumulation_and_processes():
    m = mlp()
    with SparseAdamW(m, bernoulli_mask(m, 0.5), fused='step') as opt:
        loss(m, batches(1)[0]).backward()
        with pytest.raises(RlsubError, match="use fused='packed'"): loss(m, batches(1)[0]).backward()
    with pytest.raises(RlsubError, match='unknown fused'): SparseAdamW(m, bernoulli_mask(m, 0.5), fused='lomo')
    opt = SparseAdamW(m, bernoulli_mask(m, 0.5))
    opt.param_groups[0]['params'] = [torch.nn.Parameter(q.detach().clone()) for q in m.parameters()]   # as if sharded after building
    for q in opt.param_groups[0]['params']: q.grad = torch.ones_like(q)
    with pytest.raises(RlsubError, match='build SparseAdamW after sharding'): opt.step()
    with pytest.raises(RlsubError, match='has shape'): SparseAdamW(m, {'0.weight': torch.ones(6, 16), '0.bias': torch.ones(16), '2.weight': torch.ones(3, 16), '2.bias': torch.ones(3)})


def test_state_dict_round_trip_keeps_fp32():
    m = mlp(torch.bfloat16); mask = bernoulli_mask(m, 0.3)
    opt = SparseAdamW(m, mask, lr=1e-2)
    loss(m, batches(1)[0]).backward(); opt.step()
    sd = opt.state_dict()
    again = SparseAdamW(m, mask, lr=1e-2); again.load_state_dict(sd)
    for p in m.parameters():
        for k in ('master', 'exp_avg', 'exp_avg_sq', 'idx'):
            assert again.state[p][k].dtype == opt.state[p][k].dtype and torch.equal(again.state[p][k], opt.state[p][k])


def grpo_run(tok, mask, optimizer, dtype=torch.float32, **kw):
    p = tiny_policy(tok, 'tiny', seed=1).to(dtype)
    cfg = GRPOConfig(group_size=4, prompts_per_step=4, steps=3, lr=1e-2, weight_decay=0.1, device='cpu', optimizer=optimizer, seed=0, **kw)
    hist = train_grpo(p, tok, addition(1), cfg, mask=mask, progress=False)
    return p, hist


@pytest.mark.parametrize('kw', [dict(grad_clip=None), dict(grad_clip=None, micro_batch=4), dict(grad_clip=1e-3, micro_batch=4)])
def test_train_grpo_sparse_agrees_with_adamw(tok, kw):
    "fp32 weights: optimizer='sparse' takes today's masked steps; the same bits without clipping, within 1e-6 with (the norm summed in another order)."
    mask = bernoulli_mask(tiny_policy(tok, 'tiny', seed=1), 0.25)
    a, _ = grpo_run(tok, mask, 'adamw', **kw)
    s, _ = grpo_run(tok, mask, 'sparse', **kw)
    diff = max((p - q).abs().max().item() for p, q in zip(a.parameters(), s.parameters()))
    if kw['grad_clip'] is None: assert diff == 0
    else: assert diff < 1e-6
    assert all(not getattr(p, '_post_accumulate_grad_hooks', None) for p in s.parameters())   # the hooks left with the run


def test_train_grpo_sparse_bf16(tok):
    "bf16 weights stay bf16, outside entries keep their bits under weight decay, clipping and micro-batches; no mask trains everything."
    base = tiny_policy(tok, 'tiny', seed=1).to(torch.bfloat16)
    start = {n: t.detach().clone() for n, t in base.named_parameters()}
    mask = bernoulli_mask(base, 0.1)
    p, hist = grpo_run(tok, mask, 'sparse', torch.bfloat16, micro_batch=4)
    moved = moved_only_inside(p, mask, start, torch.bfloat16)
    assert moved > 0 and len(hist) == 3
    full, _ = grpo_run(tok, None, 'sparse', torch.bfloat16)
    assert sum(int((t.detach() != start[n]).sum()) for n, t in full.named_parameters()) > moved
    with pytest.raises(RlsubError, match='unknown optimizer'): GRPOConfig(optimizer='sgd')


def test_trainer_optimizers_argument(tmp_path, tok):
    "A transformers Trainer with optimizers=(SparseAdamW, None) and MaskedTraining: bf16 weights, clipping by the Trainer on the masked gradient, accumulation; outside bit-identical, no start copy kept."
    pytest.importorskip('trl', reason="needs the trl extra (pip install 'rlsub[trl]'); tests/test_install.py runs this file without extras")
    from datasets import Dataset
    from transformers import Trainer, TrainingArguments
    from rlsub.train.trl import MaskedTraining
    pol = tiny_policy(tok, 'tiny', seed=2).to(torch.bfloat16)
    mask = bernoulli_mask(pol, 0.2, seed=1)
    start = {n: p.detach().clone() for n, p in pol.named_parameters()}
    texts = [f'{p}{a}' for p, a in addition(2).batch(32, random.Random(0))]
    enc = tok(texts, padding=True, padding_side='right')
    ds = Dataset.from_dict(dict(input_ids=enc.input_ids, attention_mask=enc.attention_mask, labels=enc.input_ids))
    ta = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to='none', disable_tqdm=True, per_device_train_batch_size=4,
                           gradient_accumulation_steps=2, max_steps=3, max_grad_norm=0.5, save_strategy='no', seed=0)
    opt = SparseAdamW(pol, mask, lr=1e-2, weight_decay=0.1)
    mt = MaskedTraining(mask)
    Trainer(model=pol, args=ta, train_dataset=ds, optimizers=(opt, None), callbacks=[mt]).train()
    assert mt.freezer is None                                     # the optimizer never writes outside: nothing to restore
    assert moved_only_inside(pol, mask, start, torch.bfloat16) > 0


def test_grpo_trainer_sparse_bf16(tmp_path, tok):
    "TRL's GRPOTrainer with optimizers=(SparseAdamW, None) and MaskedTraining on bf16 weights: outside bit-identical, inside moved."
    pytest.importorskip('trl', reason="needs the trl extra (pip install 'rlsub[trl]'); tests/test_install.py runs this file without extras")
    from datasets import Dataset
    from trl import GRPOConfig as TRLConfig, GRPOTrainer
    from rlsub.train.trl import MaskedTraining
    task = addition(1)
    pol = tiny_policy(tok, 'tiny', seed=1).to(torch.bfloat16)
    mask = bernoulli_mask(pol, 0.25)
    start = {n: p.detach().clone() for n, p in pol.named_parameters()}
    ds = Dataset.from_list([dict(prompt=p, answer=a) for p, a in task.batch(64, random.Random(0))])
    def reward(completions, answer, **kw): return [float(c[:1] in '02468' and c[:1] != '') for c in completions]   # an untrained policy scores sometimes
    args = TRLConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, gradient_checkpointing=False, report_to='none', disable_tqdm=True,
                     num_generations=4, per_device_train_batch_size=16, max_completion_length=3, lr_scheduler_type='constant',
                     loss_type='grpo', max_steps=3, logging_steps=1, save_strategy='no', seed=0)
    GRPOTrainer(model=pol, reward_funcs=reward, args=args, train_dataset=ds, processing_class=tok,
                optimizers=(SparseAdamW(pol, mask, lr=1e-2, weight_decay=0.1), None), callbacks=[MaskedTraining(mask)]).train()
    assert moved_only_inside(pol, mask, start, torch.bfloat16) > 0
