"""Subnet-only training in several processes on CPU: DDP through transformers' Trainer (torch AdamW + MaskedTraining, and SparseAdamW), FSDP2 (`fully_shard`) with SparseAdamW, and SparseAdamW(fused='packed') averaging its packed gradients itself, each under `torchrun --nproc_per_node 2` on gloo.

The pytest side launches this same file under torchrun (`python -m torch.distributed.run`); the `__main__` block is the worker."""
import os, random, subprocess, sys
from pathlib import Path
import numpy as np
import pytest, torch

HERE = Path(__file__).resolve().parent
STEPS, LR, WD, CLIP = 3, 1e-2, 0.1, 0.5


def bernoulli_mask(model, density, seed=0):
    "A SubnetMask over `model`'s parameters, each entry in with probability `density` (no scan: the same on every rank)."
    from rlsub.measure.masks import SubnetMask
    g = torch.Generator().manual_seed(seed)
    bits = {n: np.packbits((torch.rand(p.shape, generator=g) < density).reshape(-1).numpy(), bitorder='little') for n, p in model.named_parameters()}
    return SubnetMask(bits, {n: tuple(p.shape) for n, p in model.named_parameters()})


def policy(dtype=torch.float32):
    from rlsub.train.tiny import char_tokenizer, tiny_policy
    tok = char_tokenizer()
    return tiny_policy(tok, 'tiny', seed=3).to(dtype), tok


def lm_batches(tok, n, seed=0):
    from rlsub.train.tiny import addition
    texts = [f'{p}{a}' for p, a in addition(2).batch(n, random.Random(seed))]
    enc = tok(texts, padding=True, padding_side='right', return_tensors='pt')
    return enc.input_ids, enc.attention_mask


# ---- workers (run under torchrun) ----

def ddp_worker(out: Path):
    "Trainer under DDP, two arms in one launch: torch AdamW + MaskedTraining (restore), and SparseAdamW in bf16 + MaskedTraining (gradient masking only)."
    from datasets import Dataset
    from transformers import Trainer, TrainingArguments
    from rlsub.train.sparse_adam import SparseAdamW
    from rlsub.train.trl import MaskedTraining
    rank = int(os.environ['RANK'])
    for arm, dtype in (('adamw', torch.float32), ('sparse', torch.bfloat16)):
        pol, tok = policy(dtype)
        mask = bernoulli_mask(pol, 0.2)
        ids, attn = lm_batches(tok, 64)
        ds = Dataset.from_dict(dict(input_ids=ids.tolist(), attention_mask=attn.tolist(), labels=ids.tolist()))
        ta = TrainingArguments(output_dir=str(out / arm), use_cpu=True, report_to='none', disable_tqdm=True, per_device_train_batch_size=4,
                               gradient_accumulation_steps=2, max_steps=STEPS, learning_rate=LR, weight_decay=WD, max_grad_norm=CLIP,
                               lr_scheduler_type='constant', save_strategy='no', seed=0, ddp_backend='gloo')
        opts = (SparseAdamW(pol, mask, lr=LR, weight_decay=WD), None) if arm == 'sparse' else (None, None)
        tr = Trainer(model=pol, args=ta, train_dataset=ds, optimizers=opts, callbacks=[MaskedTraining(mask)])
        tr.train()
        assert tr.args.world_size == 2, tr.args.world_size
        torch.save({n: p.detach().clone() for n, p in pol.named_parameters()}, out / f'{arm}-rank{rank}.pt')


def fsdp_worker(out: Path):
    "FSDP2: each decoder layer and the root sharded over a 2-process CPU mesh; SparseAdamW over the DTensor parameters, clipping by the norm summed over the mesh."
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard
    from rlsub.train.sparse_adam import SparseAdamW
    dist.init_process_group('gloo')
    rank, world = dist.get_rank(), dist.get_world_size()
    pol, tok = policy()
    mask = bernoulli_mask(pol, 0.3)
    mesh = init_device_mesh('cpu', (world,))
    for layer in pol.model.layers: fully_shard(layer, mesh=mesh)
    fully_shard(pol, mesh=mesh)
    opt = SparseAdamW(pol, mask, lr=LR, weight_decay=WD, max_grad_norm=CLIP)
    ids, attn = lm_batches(tok, 8 * STEPS)
    norms = []
    for s in range(STEPS):
        rows = slice(8 * s + 4 * rank, 8 * s + 4 * (rank + 1))      # each rank its half of the step's 8 rows
        opt.zero_grad()
        pol(input_ids=ids[rows], attention_mask=attn[rows], labels=ids[rows]).loss.backward()
        opt.step(); norms.append(opt.last_norm.item())
    full = {n: p.full_tensor() for n, p in pol.named_parameters()}
    local = {n: (tuple(p.to_local().shape), int(opt.state[p]['idx'].numel())) for n, p in pol.named_parameters()}
    torch.save(dict(params=full, norms=norms, local=local), out / f'fsdp-rank{rank}.pt')
    dist.barrier(); dist.destroy_process_group()       # no rank tears down while the other still talks


def packed_worker(out: Path):
    "Data parallel without DDP: SparseAdamW(fused='packed') averages the packed gradients itself; two micro-batches a step, clipping, weight decay, bf16 weights."
    import torch.distributed as dist
    from rlsub.train.sparse_adam import SparseAdamW
    dist.init_process_group('gloo')
    rank = dist.get_rank()
    pol, tok = policy(torch.bfloat16)
    mask = bernoulli_mask(pol, 0.3)
    ids, attn = lm_batches(tok, 8 * STEPS)
    with SparseAdamW(pol, mask, lr=LR, weight_decay=WD, max_grad_norm=CLIP, fused='packed') as opt:
        for s in range(STEPS):
            opt.zero_grad()
            for half in (0, 1):                                        # this rank's 4 rows in two micro-batches of 2
                r = slice(8 * s + 4 * rank + 2 * half, 8 * s + 4 * rank + 2 * half + 2)
                (pol(input_ids=ids[r], attention_mask=attn[r], labels=ids[r]).loss / 2).backward()
            assert all(p.grad is None for p in pol.parameters())
            opt.step()
    torch.save({n: p.detach().clone() for n, p in pol.named_parameters()}, out / f'packed-rank{rank}.pt')
    dist.barrier(); dist.destroy_process_group()


# ---- tests ----

def torchrun(scenario, out, timeout=240):
    """Launch `scenario` on 2 processes. gloo's teardown on CPU can abort a worker after its work is done ("terminate called without
    an active exception", SIGABRT, seen once in CI); such a launch, and only such, is run once more. Any other failure fails at once."""
    env = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1', PYTHONPATH=os.pathsep.join([str(HERE.parent), os.environ.get('PYTHONPATH', '')]))
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2', str(Path(__file__).resolve()), scenario, str(out)]
    for attempt in (1, 2):
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        aborted = 'terminate called without an active exception' in r.stderr and 'Signal 6 (SIGABRT)' in r.stderr
        if r.returncode == 0 or not aborted: break
        print(f'torchrun {scenario}: a worker aborted in teardown (attempt {attempt}); launching again', file=sys.stderr)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]


def bits_equal(a, b):
    return torch.equal(a.contiguous().view(torch.uint8), b.contiguous().view(torch.uint8))


def test_ddp_trainer_two_processes(tmp_path):
    torchrun('ddp', tmp_path)
    for arm, dtype in (('adamw', torch.float32), ('sparse', torch.bfloat16)):
        start = dict(policy(dtype)[0].named_parameters())
        mask = bernoulli_mask(policy(dtype)[0], 0.2)
        ranks = [torch.load(tmp_path / f'{arm}-rank{r}.pt') for r in (0, 1)]
        moved = 0
        for n, p0 in start.items():
            k = mask.tensor(n)
            for r in ranks: assert bits_equal(r[n][~k], p0.detach()[~k]), (arm, n)     # outside: the start's bits, on every rank
            assert bits_equal(ranks[0][n], ranks[1][n]), (arm, n)                     # ranks end equal
            moved += int((ranks[0][n][k] != p0.detach()[k]).sum())
        assert moved > 0, arm


def test_fsdp2_two_processes(tmp_path):
    "FSDP2 runs on gloo/CPU: outside entries bit-identical, the mask sharded like the parameters, and the steps those of one process on the whole batch (within float rounding)."
    from rlsub.train.sparse_adam import SparseAdamW
    torchrun('fsdp', tmp_path)
    ranks = [torch.load(tmp_path / f'fsdp-rank{r}.pt') for r in (0, 1)]
    pol, tok = policy()
    mask = bernoulli_mask(pol, 0.3)
    start = {n: p.detach().clone() for n, p in pol.named_parameters()}
    for n, p0 in start.items():
        k = mask.tensor(n)
        for r in ranks: assert bits_equal(r['params'][n][~k], p0[~k]), n
        assert bits_equal(ranks[0]['params'][n], ranks[1]['params'][n]), n
        rows = [r['local'][n][0][0] if r['local'][n][0] else 0 for r in ranks]
        assert sum(rows) == p0.shape[0] and ranks[0]['local'][n][1] + ranks[1]['local'][n][1] == int(k.sum()), n   # shards tile the tensor, packed entries tile the mask
    # the same three steps in one process on the whole batch of 8
    opt = SparseAdamW(pol, mask, lr=LR, weight_decay=WD, max_grad_norm=CLIP)
    ids, attn = lm_batches(tok, 8 * STEPS)
    norms = []
    for s in range(STEPS):
        opt.zero_grad()
        rows = [slice(8 * s, 8 * s + 4), slice(8 * s + 4, 8 * s + 8)]
        sum(pol(input_ids=ids[r], attention_mask=attn[r], labels=ids[r]).loss / 2 for r in rows).backward()
        opt.step(); norms.append(opt.last_norm.item())
    assert ranks[0]['norms'] == ranks[1]['norms']
    assert np.allclose(norms, ranks[0]['norms'], rtol=1e-5)
    assert max((p.detach() - ranks[0]['params'][n]).abs().max().item() for n, p in pol.named_parameters()) < 1e-5


def test_packed_data_parallel_two_processes(tmp_path):
    "fused='packed' across 2 processes without DDP: ranks equal, outside bit-identical, the steps of one process on the whole batch (bf16 weights: within a bf16 rounding)."
    from rlsub.train.sparse_adam import SparseAdamW
    torchrun('packed', tmp_path)
    ranks = [torch.load(tmp_path / f'packed-rank{r}.pt') for r in (0, 1)]
    pol, tok = policy(torch.bfloat16)
    mask = bernoulli_mask(pol, 0.3)
    start = {n: p.detach().clone() for n, p in pol.named_parameters()}
    ids, attn = lm_batches(tok, 8 * STEPS)
    with SparseAdamW(pol, mask, lr=LR, weight_decay=WD, max_grad_norm=CLIP, fused='packed') as opt:
        for s in range(STEPS):
            opt.zero_grad()
            for q in range(4):
                r = slice(8 * s + 2 * q, 8 * s + 2 * q + 2)
                (pol(input_ids=ids[r], attention_mask=attn[r], labels=ids[r]).loss / 4).backward()
            opt.step()
    moved = differ = 0
    for n, p in pol.named_parameters():
        k = mask.tensor(n)
        for r in ranks: assert bits_equal(r[n][~k], start[n][~k]), n
        assert bits_equal(ranks[0][n], ranks[1][n]), n
        moved += int((ranks[0][n][k] != start[n][k]).sum())
        differ += int((ranks[0][n] != p.detach()).sum())
        assert (ranks[0][n].float() - p.detach().float()).abs().max() <= 2 ** -6 * p.detach().float().abs().max() + 1e-6, n   # a bf16 step apart at most
    assert moved > 0 and differ < 0.01 * moved


if __name__ == '__main__':
    os.environ.setdefault('TRANSFORMERS_VERBOSITY', 'error')
    torch.set_num_threads(1)
    {'ddp': ddp_worker, 'fsdp': fsdp_worker, 'packed': packed_worker}[sys.argv[1]](Path(sys.argv[2]))
