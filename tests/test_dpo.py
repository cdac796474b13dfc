"DPO: the loss by hand, on-policy pairs, reproducible runs, subnet-only training that leaves the rest bit-identical, bad inputs."
import math
import pytest, torch
from rlsub.core import RlsubError
from rlsub.train.dpo import DPOConfig, PreferencePairs, dpo_loss, preference_pairs, train_dpo
from rlsub.train.callbacks import Tracker
from rlsub.measure.masks import SubnetMask, random_mask
from rlsub.train.tiny import Task, addition, char_tokenizer, tiny_policy
from toys import EVEN


@pytest.fixture(scope='module')
def tok():
    return char_tokenizer()




@pytest.fixture(scope='module')
def pairs(tok):
    return preference_pairs(tiny_policy(tok, 'tiny', seed=0), tok, EVEN, n_prompts=16, G=8, seed=0)


def cfg(**kw):
    return DPOConfig(**dict(dict(steps=3, batch_size=4, lr=1e-2, device='cpu'), **kw))


def flat(m):
    return torch.cat([p.detach().flatten() for p in m.parameters()])


def test_loss_by_hand():
    # margin = β((π_c − ref_c) − (π_r − ref_r)); loss = log(1 + e^−margin)
    beta, pc, pr, rc, rr = 0.5, torch.tensor([-2.0, -1.0, -3.0]), torch.tensor([-4.0, -1.0, -1.0]), torch.tensor([-3.0, -2.0, -3.0]), torch.tensor([-3.0, -2.0, -2.0])
    margins = torch.tensor([0.5 * (1 + 1), 0.5 * (1 - 1), 0.5 * (0 - 1)])
    loss, m, acc = dpo_loss(pc, pr, rc, rr, beta)
    assert torch.allclose(m, margins)
    assert math.isclose(loss.item(), sum(math.log1p(math.exp(-x)) for x in margins.tolist()) / 3, rel_tol=1e-6)
    assert acc.item() == pytest.approx(1 / 3)
    # a large margin costs almost nothing; a large negative one about |margin|
    big, _, _ = dpo_loss(torch.tensor([0.0]), torch.tensor([-100.0]), torch.tensor([0.0]), torch.tensor([0.0]), 1.0)
    assert big.item() < 1e-30
    bad, _, _ = dpo_loss(torch.tensor([-100.0]), torch.tensor([0.0]), torch.tensor([0.0]), torch.tensor([0.0]), 1.0)
    assert bad.item() == pytest.approx(100.0)


def test_pairs_are_right_and_wrong(tok, pairs):
    assert isinstance(pairs, PreferencePairs) and 0 < len(pairs) <= 16
    assert all(EVEN.reward(c, a) == 1.0 for c, a in zip(pairs.table.chosen, pairs.table.answer))
    assert all(EVEN.reward(r, a) == 0.0 for r, a in zip(pairs.table.rejected, pairs.table.answer))
    for p, c, r in pairs.rows:
        assert p[0].item() == tok.bos_token_id and tok.pad_token_id not in p.tolist()   # prompts without padding
    assert 'preference pairs from 16 prompts' in repr(pairs)


def test_seeded_runs_reproduce(tok, pairs):
    runs = []
    for seed in (0, 0, 1):
        p = tiny_policy(tok, 'tiny', seed=0)
        runs.append((p, train_dpo(p, tok, pairs, cfg(seed=seed), progress=False)))
    (p1, h1), (p2, h2), (p3, _) = runs
    assert h1.drop(columns='seconds').equals(h2.drop(columns='seconds'))
    assert torch.equal(flat(p1), flat(p2)) and not torch.equal(flat(p1), flat(p3))
    assert h1.loss.iloc[0] == pytest.approx(math.log(2), abs=1e-5)   # policy = reference at the first step


def test_training_raises_the_margin(tok, pairs):
    p = tiny_policy(tok, 'tiny', seed=0)
    h = train_dpo(p, tok, pairs, cfg(steps=20, lr=3e-3), progress=False)
    assert h.margin.tail(5).mean() > 0.05 and h.loss.tail(5).mean() < math.log(2) - 0.02
    assert (h.chosen_reward - h.rejected_reward - h.margin).abs().max() < 1e-5


def test_mask_keeps_outside_bit_identical(tok, pairs):
    p = tiny_policy(tok, 'tiny', seed=0)
    mask = random_mask(SubnetMask.from_pair(p, p), density=0.3, seed=1)
    start = {n: t.detach().clone() for n, t in p.named_parameters()}
    tr = Tracker(every=2, storage=('fp32',))
    h = train_dpo(p, tok, pairs, cfg(steps=4, weight_decay=0.5), mask=mask, callbacks=[tr], progress=False)
    inside, allowed, total = 0, 0, 0
    for n, t in p.named_parameters():
        allowed += mask.tensor(n).sum().item(); total += t.numel()
        m = mask.tensor(n)
        assert torch.equal(t.detach()[~m].view(torch.int32), start[n][~m].view(torch.int32)), n
        inside += (t.detach()[m] != start[n][m]).sum().item()
    assert inside > 0
    assert h.sparsity_fp32.iloc[-1] >= 1 - allowed / total - 1e-9 and h.sparsity_fp32.notna().sum() == 2   # the tracker sees changes inside the mask only


def test_without_mask_weight_decay_moves_everything(tok, pairs):
    p = tiny_policy(tok, 'tiny', seed=0)
    before = flat(p)
    train_dpo(p, tok, pairs, cfg(steps=1, weight_decay=0.5), progress=False)
    assert (flat(p) != before).float().mean() > 0.99


def test_callbacks_see_the_state(tok, pairs):
    seen = []
    class CB:
        def on_train_begin(self, state): seen.append(('begin', state.task.name, state.config.steps))
        def on_step_end(self, row, state): seen.append(('step', state.step, len(state.rows)))
        def on_train_end(self, state): seen.append(('end', state.step))
    rows = []
    train_dpo(tiny_policy(tok, 'tiny', seed=0), tok, pairs, cfg(steps=2), callbacks=[CB(), rows.append], progress=False)
    assert seen == [('begin', 'even-start', 2), ('step', 1, 1), ('step', 2, 2), ('end', 2)]
    assert [r['step'] for r in rows] == [1, 2]


def test_quiet_progress_lines(tok, pairs, capsys):
    train_dpo(tiny_policy(tok, 'tiny', seed=0), tok, pairs, cfg(steps=2))
    out = capsys.readouterr().out
    assert 'step 2/2' in out and 'accuracy' in out


def test_bad_inputs(tok, pairs):
    untrained, never = tiny_policy(tok, 'tiny', seed=0), addition(3)
    with pytest.raises(RlsubError, match='none of 4 prompts got both a right and a wrong completion') as e:
        preference_pairs(untrained, tok, never, n_prompts=4, G=2)
    assert '\n' not in str(e.value)
    with pytest.raises(RlsubError, match='G must be an integer of at least 2'):
        preference_pairs(untrained, tok, EVEN, n_prompts=4, G=1)
    with pytest.raises(RlsubError, match='n_prompts must be a positive integer'):
        preference_pairs(untrained, tok, EVEN, n_prompts=0)
    with pytest.raises(RlsubError, match='at least one pair'):
        train_dpo(untrained, tok, PreferencePairs([], pairs.table.iloc[:0]), cfg())
    with pytest.raises(RlsubError, match='needs PreferencePairs'):
        train_dpo(untrained, tok, [(1, 2, 3)], cfg())
    with pytest.raises(RlsubError, match='beta must be > 0'):
        DPOConfig(beta=-1)
    with pytest.raises(RlsubError, match='steps must be a positive integer'):
        DPOConfig(steps=0)
    other = SubnetMask.from_pair(tiny_policy(tok, 'small'), tiny_policy(tok, 'small'))
    with pytest.raises(RlsubError, match='model.embed_tokens.weight has shape'):
        train_dpo(untrained, tok, pairs, cfg(), mask=other, progress=False)
