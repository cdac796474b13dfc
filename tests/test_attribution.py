"Precision attribution and early prediction: classes by hand, agreement with the masks, a tracker that does not perturb training, masked runs, bad inputs."
from types import SimpleNamespace
import pytest, torch
from torch.optim import optimizer as torch_optimizer
from rlsub.experiments.attribution import CLASSES, AttributionTracker, attribution_table, bf16_spacing, bf16_same, early_prediction, mask_from_tensors, plot_early_prediction, plot_precision, precision_attribution, predictor_mask, step_absorption, top_fraction
from rlsub.core import RlsubError
from rlsub.style import RlsubFigure
from rlsub.train.grpo import GRPOConfig, train_grpo, TIMINGS
from rlsub.measure.masks import SubnetMask
from rlsub.train.tiny import char_tokenizer, tiny_policy
from toys import EVEN, as_int, planted_mask


pytestmark = pytest.mark.usefixtures('one_thread')   # tests/conftest.py


@pytest.fixture(scope='module')
def tok():
    return char_tokenizer()


def cfg(**kw):
    return GRPOConfig(**dict(dict(group_size=4, prompts_per_step=4, steps=4, lr=1e-3, device='cpu'), **kw))


def sgd_run(grads, w0=1.0, **kw):
    "Drive a tracker by hand: SGD with lr 1 on a 1×n linear layer, one step per gradient row."
    lin = torch.nn.Linear(len(grads[0]), 1, bias=False)
    with torch.no_grad(): lin.weight.fill_(w0)
    opt = torch.optim.SGD(lin.parameters(), lr=1.0)
    state = SimpleNamespace(policy=lin, config=SimpleNamespace(steps=len(grads)), step=0)
    tr = AttributionTracker(**kw); tr.on_train_begin(state)
    for k, g in enumerate(grads, 1):
        lin.weight.grad = torch.tensor([g]); opt.step()
        state.step = k; tr.on_step_end({}, state)
    tr.on_train_end(state)
    return tr, lin


def test_bf16_spacing_and_rounding_at_half_a_gap():
    w = torch.tensor([1.0, -3.0, 2.0**-20, 0.0])
    sp = bf16_spacing(w)
    assert sp[:3].tolist() == [2**-7, 2**-6, 2**-27]
    assert sp[3] > 0
    for x in (1.0, 1.5, 100.0, 1e-3):
        t = torch.tensor([x, x])
        s = bf16_spacing(t)[0].item()
        assert bf16_same(t, t + torch.tensor([0.49, 0.51]) * s).tolist() == [True, False] or x != torch.tensor(x).bfloat16().float().item()


def test_classes_by_hand_and_step_to_step():
    # step 1: 0 | 2^-10 (absorbed) | 2^-6 (visible) | 1e-9 (lost in fp32); step 2 pushes entry 1 past half a gap in total
    tr, _ = sgd_run([[0.0, 2**-10, 2**-6, 1e-9], [0.0, 2**-8, 0.0, 0.0]], predict_at=(), predictors=())
    t = attribution_table(tr, step=1).iloc[0]
    assert [t[c] for c in CLASSES] == [0.25, 0.25, 0.25, 0.25]
    t = attribution_table(tr).iloc[0]
    assert [t[c] for c in CLASSES] == [0.25, 0.25, 0.0, 0.5]
    s = step_absorption(tr)
    assert s.moved.tolist() == [0.5, 0.25]
    assert s.absorbed_of_moved.tolist() == [0.5, 0.0]
    assert s.visible_vs_start.tolist() == [0.25, 0.5]
    assert tr.mask(1, 'bf16').tensor('weight').tolist() == [[False, False, True, False]]
    assert tr.mask(2, 'fp32').tensor('weight').tolist() == [[False, True, True, False]]
    assert tr.ever.tensor('weight').tolist() == [[False, True, True, True]]


def test_a_step_that_moves_nothing_has_no_absorbed_share():
    tr, _ = sgd_run([[0.0, 0.0]], predict_at=(), predictors=())
    assert step_absorption(tr).absorbed_of_moved.isna().all()
    assert attribution_table(tr).never.iloc[0] == 1.0


def test_top_fraction_global_cut_ties_and_zeros():
    s = {'a': torch.tensor([3.0, 1.0, 2.0]), 'b': torch.tensor([2.0, 0.0, 5.0])}
    assert top_fraction(s, 2).count == 2
    m = top_fraction(s, 3)                     # the cut falls on the tie at 2: both kept
    assert m.tensor('a').tolist() == [True, False, True] and m.tensor('b').tolist() == [True, False, True]
    assert top_fraction(s, 6).count == 5       # a zero score is never predicted
    assert top_fraction(s, 0).count == 0
    for bad in (-1, 7, 2.5):
        with pytest.raises(RlsubError, match='count must be'): top_fraction(s, bad)


def test_mask_from_tensors_round_trips():
    t = {'x': torch.rand(3, 5) > 0.5, 'y': torch.tensor([True, False, True])}
    m = mask_from_tensors(t, 'lbl')
    assert m.label == 'lbl' and all(torch.equal(m.tensor(n), v) for n, v in t.items())


def test_tracking_does_not_perturb_training_and_leaves_no_hook(tok):
    hooks = len(torch_optimizer._global_optimizer_pre_hooks)
    a, b = tiny_policy(tok, 'tiny', seed=3), tiny_policy(tok, 'tiny', seed=3)
    tr = AttributionTracker(predict_at=(1, 2))
    h1 = train_grpo(a, tok, EVEN, cfg(), callbacks=[tr], progress=False)
    h2 = train_grpo(b, tok, EVEN, cfg(), progress=False)
    assert h1.drop(columns=list(TIMINGS)).equals(h2.drop(columns=list(TIMINGS)))
    assert all(torch.equal(as_int(p), as_int(q)) for p, q in zip(a.parameters(), b.parameters()))
    assert len(torch_optimizer._global_optimizer_pre_hooks) == hooks
    assert tr.start is None and tr.opt is None            # the copies of the model are dropped after training


def test_tracker_agrees_with_the_final_weights(tok):
    pol = tiny_policy(tok, 'tiny', seed=4)
    start = {n: p.detach().clone() for n, p in pol.named_parameters()}
    tr = AttributionTracker(predict_at=(1,))
    train_grpo(pol, tok, EVEN, cfg(), callbacks=[tr], progress=False)
    final = tr.mask(None, 'bf16')
    for n, p in pol.named_parameters():
        assert torch.equal(final.tensor(n), p.detach().bfloat16() != start[n].bfloat16()), n
        assert torch.equal(tr.mask(None, 'fp32').tensor(n), p.detach() != start[n]), n
    pa = precision_attribution(tr)
    assert pa.overall[list(CLASSES)].sum(axis=1).iloc[0] == pytest.approx(1.0)
    assert pa.overall.visible.iloc[0] == pytest.approx(final.density)
    assert pa.by_kind.params.sum() == pa.by_layer.params.sum() == final.numel
    ep = early_prediction(tr).set_index(['predictor', 'k'])
    assert ep.loc[('mask bf16', 4), ['precision', 'recall']].tolist() == [1.0, 1.0]
    assert (ep.xs('mask fp32').recall == 1.0).all()     # every entry stored differently in bf16 moved in fp32
    assert set(ep.index.get_level_values(0)) >= {'top-d adam_v', 'top-d adam_m', 'top-d move', 'top-d small_w'}
    assert 'Precision attribution after step 4' in repr(tr)
    assert isinstance(plot_precision(pa), RlsubFigure) and isinstance(plot_early_prediction(early_prediction(tr)), RlsubFigure)


def test_masked_run_gradients_and_changes_stay_in_the_mask(tok):
    pol = tiny_policy(tok, 'tiny', seed=5)
    mask = planted_mask(pol, 0.25)
    tr = AttributionTracker(predict_at=(), predictors=())
    train_grpo(pol, tok, EVEN, cfg(weight_decay=0.1), mask=mask, callbacks=[tr], progress=False)
    mask = SubnetMask({n: mask.bits[n] for n in tr.ever.names}, {n: mask.shapes[n] for n in tr.ever.names})   # the planted copy of the tied lm_head is no parameter
    assert (tr.ever - mask).count == 0                    # the optimizer saw gradients only inside the mask
    assert (tr.mask(None, 'fp32') - mask).count == 0
    assert attribution_table(tr).never.iloc[0] >= 1 - mask.density


def test_bad_input_is_refused(tok):
    with pytest.raises(RlsubError, match="unknown predictor 'fisher'"): AttributionTracker(predictors=('fisher',))
    empty = AttributionTracker()
    with pytest.raises(RlsubError, match='recorded nothing'): attribution_table(empty)
    with pytest.raises(RlsubError, match='recorded nothing'): precision_attribution(empty)
    assert 'nothing recorded yet' in repr(empty)
    tr, _ = sgd_run([[1.0]], predict_at=(), predictors=(), step_to_step=False)
    with pytest.raises(RlsubError, match='step_to_step=True'): step_absorption(tr)
    assert len(precision_attribution(tr).steps) == 0
    with pytest.raises(RlsubError, match="by must be"): attribution_table(tr, by='name')
    with pytest.raises(RlsubError, match='no bf16 mask kept at step 7'): tr.mask(7)
    with pytest.raises(RlsubError, match='no move scores kept at step 1'): predictor_mask(tr, 'move', 1, 1)
