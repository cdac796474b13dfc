"rlsub.train.tasks: the final-number reward, one BOS, held-out sets disjoint from training, bad inputs."
import random
import pytest
from rlsub.core import RlsubError
from rlsub.train.tasks import ARITHMETIC, ChatTask, arithmetic, arithmetic_questions, chat_prompt, final_number, number_reward, toy_chat_tokenizer


@pytest.fixture(scope='module')
def tok():
    return toy_chat_tokenizer()


@pytest.mark.parametrize('text, value', [('17 + 25 = 42.', 42), ('The sum is 1,234,567.', 1234567), ('3 - 10 = -7.', -7),
                                         ('-5', -5), ('x = −3', -3), ('x−3', 3), ('Pi is about 3.14.', 3.14), ('10-3=7', 7), ('', None),
                                         ('twelve', None), ('1,23', 23), ('is 7.\n\nThen', 7)])
def test_final_number(text, value):
    got = final_number(text)
    assert (got is None and value is None) or float(got) == value


def test_reward_reads_the_last_number():
    assert number_reward('8 + 7 = 15', '15') == 1.0
    assert number_reward('8 + 7 = 15, not 16', '15') == 0.0
    assert number_reward('no idea', '0') == 0.0
    assert number_reward('-0', '0') == 1.0


@pytest.mark.parametrize('in_template', [True, False])
def test_one_bos(in_template):
    tok = toy_chat_tokenizer(bos_in_template=in_template)
    p = chat_prompt(tok, 'What is 1 + 2?')
    ids = tok(p, add_special_tokens=False).input_ids
    assert ids[0] == tok.bos_token_id and ids.count(tok.bos_token_id) == 1
    assert tok(p).input_ids[:2] == [tok.bos_token_id] * 2     # what add_special_tokens=True would do


def test_no_template_is_refused():
    from rlsub.train.tiny import char_tokenizer
    with pytest.raises(RlsubError, match='no chat template'): chat_prompt(char_tokenizer(), '1+1=')


def test_task_interface(tok):
    t = arithmetic('add20', tok)
    assert (t.name, t.add_special_tokens, t.n_eval, t.max_new_tokens) == ('add20', False, 200, 16)
    b = t.batch(3, random.Random(0))
    assert b == t.batch(3, random.Random(0)) and all(p.endswith('<|im_start|>assistant\n') for p, _ in b)
    assert len(t.eval_set()) == 200 and t.eval_set(3) == t.eval_set()[:3]


@pytest.mark.parametrize('n_eval', [1, 50, 99])
def test_generator_held_out_disjoint(tok, n_eval):
    t = arithmetic('add1', tok, n_eval=n_eval)
    held = {p for p, _ in t.eval_set()}
    train = {p for p, _ in t.batch(3000, random.Random(n_eval))}
    assert len(held) == n_eval and not held & train and len(train) == 100 - n_eval


def test_generator_too_small(tok):
    with pytest.raises(RlsubError, match='none is left to train on'): arithmetic('add1', tok, n_eval=100).batch(1, random.Random(0))
    with pytest.raises(RlsubError, match='fewer than n_eval=150'): arithmetic('add1', tok, n_eval=150).eval_set()


def test_list_split(tok):
    pairs = arithmetic_questions('add1') * 2                  # duplicates split by question
    t = ChatTask('list', tok, pairs, n_eval=40, eval_seed=3)
    assert len(t.held_out()) == 40
    held = {q for q, _ in t.held_out()}
    train = {p for p, _ in t.batch(2000, random.Random(0))}
    assert len(train) == 60 and not {t.prompt(q) for q in held} & train
    assert ChatTask('list', tok, pairs, n_eval=40, eval_seed=4).held_out() != t.held_out()
    with pytest.raises(RlsubError, match='lower n_eval'): ChatTask('list', tok, pairs, n_eval=100).eval_set()


def test_changing_n_eval_recomputes(tok):
    t = arithmetic('add1', tok, n_eval=10)
    assert len(t.eval_set()) == 10
    t.n_eval = 20
    assert len(t.eval_set()) == 20 and len({p for p, _ in t.batch(2000, random.Random(0))}) == 80


def test_custom_reward_and_system(tok):
    t = ChatTask('yes', tok, [('What is 1?', 'yes'), ('What is 2?', 'yes')], reward_fn=lambda c, a: float(a in c), n_eval=1, system='Be brief.')
    assert t.reward('oh yes', 'yes') == 1.0
    assert t.eval_set()[0][0].startswith('<s><|im_start|>system\nBe brief.<|im_end|>')


def test_presets_answers():
    for name in ARITHMETIC:
        for q, a in arithmetic_questions(name)[:50]:
            x, op, y = q.removeprefix('What is ').removesuffix('?').partition(next(o for o in '+-*' if o in q[8:]))
            assert int(a) == eval(f'{int(x)}{op}{int(y)}')


def test_unknown_preset(tok):
    with pytest.raises(RlsubError, match='unknown arithmetic task'): arithmetic('div1', tok)
