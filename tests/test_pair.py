"ModelPair on tiny models written with save_pretrained: loading, the memory check, generation, and scans of the loaded weights."
import pytest, torch
from rlsub.core import RlsubError
from rlsub.examples import tiny_config
from rlsub.measure.masks import SubnetMask
from rlsub.measure.scan import scan_pair
import rlsub.measure.pair as rp
from rlsub.measure.pair import ModelPair, check_fits, loaded_bytes


def char_tokenizer():
    "A character-level tokenizer (one token per character), as a transformers fast tokenizer."
    from tokenizers import Tokenizer, Regex, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    vocab = {t: i for i, t in enumerate(['<bos>', '<eos>', '<pad>', '<unk>'] + list("abcdefghijklmnopqrstuvwxyz0123456789 +=?.,"))}
    tk = Tokenizer(models.WordLevel(vocab, unk_token='<unk>'))
    tk.pre_tokenizer, tk.decoder = pre_tokenizers.Split(Regex('.'), behavior='isolated'), decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=tk, bos_token='<bos>', eos_token='<eos>', pad_token='<pad>', unk_token='<unk>')


@pytest.fixture(scope='module')
def saved(tmp_path_factory):
    "A qwen2 base (random init, with tokenizer) and a tuned copy with a known number of entries changed, in bf16, via save_pretrained."
    from transformers import AutoModelForCausalLM
    root = tmp_path_factory.mktemp('pair')
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(tiny_config('qwen2', tie_word_embeddings=True, vocab_size=64)).to(torch.bfloat16)
    model.save_pretrained(root / 'base', max_shard_size='100KB')
    char_tokenizer().save_pretrained(root / 'base')
    with torch.no_grad():
        w = model.model.layers[0].mlp.up_proj.weight
        w.view(-1)[:100] += 1.0                                         # 100 entries moved far beyond a bf16 ulp
    model.save_pretrained(root / 'tuned')
    return root


def test_load_scan_and_mask_match_the_files(saved):
    with ModelPair.load(saved / 'base', saved / 'tuned', device='cpu') as p:
        assert p.dtype == torch.bfloat16 and p.tokenizer is not None and 'Qwen2ForCausalLM' in repr(p)
        r, files = p.scan(), scan_pair(saved / 'base', saved / 'tuned', progress=False)
        live = r.table.set_index('name').changed
        assert live['model.layers.0.mlp.up_proj.weight'] == 100 and live.sum() == 100
        assert files.table.set_index('name').changed.to_dict() == {n: live[n] for n in files.table.name}
        m, mf = p.mask(), SubnetMask.from_pair(saved / 'base', saved / 'tuned')
        assert m.count == 100 and m.meta['base'] == str(saved / 'base')
        assert m.names == mf.names and 'lm_head.weight' not in m             # tied: counted once, in memory as in the files
        assert all(m.tensor(n).equal(mf.tensor(n)) for n in mf.names)
        assert r.table.name.tolist() == files.table.name.tolist() and r.table.numel.sum() == files.table.numel.sum()


def test_generate_is_seeded_and_batched_like_single_prompts(saved):
    with ModelPair.load(saved / 'base', saved / 'tuned', device='cpu', dtype='float32') as p:
        prompts = ['1+1=', 'a', 'the sum of 12 and 30 is ']
        g = p.generate(prompts, max_new_tokens=6)
        assert list(g.columns) == ['prompt', 'base', 'tuned'] and g.prompt.tolist() == prompts
        assert g.equals(p.generate(prompts, max_new_tokens=6, batch_size=1))
        s1 = p.generate(prompts, max_new_tokens=6, do_sample=True, seed=3)
        assert s1.equals(p.generate(prompts, max_new_tokens=6, do_sample=True, seed=3))
        assert p.generate('abc', max_new_tokens=2).shape == (1, 3)
        assert p.tokenizer.padding_side == 'right'                    # restored after left-padded generation


def test_tokenizer_passed_or_missing(saved, tmp_path):
    with ModelPair.load(saved / 'tuned', saved / 'base', device='cpu') as p:   # the tuned folder has no tokenizer
        assert p.tokenizer is None
        with pytest.raises(RlsubError, match='no tokenizer'): p.generate('a')
    with ModelPair.load(saved / 'tuned', saved / 'base', device='cpu', tokenizer=saved / 'base') as p:
        assert p.generate('a', max_new_tokens=2).shape == (1, 3)
    with ModelPair.load(saved / 'tuned', saved / 'base', device='cpu', tokenizer=char_tokenizer()) as p:
        assert p.tokenizer('ab').input_ids == [4, 5]
    with pytest.raises(RlsubError, match='cannot load a tokenizer'):
        ModelPair.load(saved / 'base', saved / 'tuned', device='cpu', tokenizer=tmp_path)


def test_memory_check_refuses_before_loading(saved, monkeypatch):
    def boom(*a, **k): raise AssertionError('loaded despite the refusal')
    monkeypatch.setattr(rp, '_load_model', boom)
    monkeypatch.setattr(rp, '_free_bytes', lambda dev: 100_000)
    with pytest.raises(RlsubError, match=r'need about .* GiB on cpu .* is free; load in a smaller dtype'):
        ModelPair.load(saved / 'base', saved / 'tuned', device='cpu')
    n = loaded_bytes(saved / 'base')
    assert loaded_bytes(saved / 'base', torch.float32) == 2 * n
    assert check_fits([saved / 'base'], 'cpu', free=10**12) == int(n * rp.MARGIN) + rp.HEADROOM


def test_bad_inputs(saved, tmp_path):
    with pytest.raises(RlsubError, match='no such file'): ModelPair.load(tmp_path / 'missing', saved / 'tuned', device='cpu')
    if not torch.cuda.is_available():
        with pytest.raises(RlsubError, match='no CUDA'): ModelPair.load(saved / 'base', saved / 'tuned', device='cuda')
    (tmp_path / 'weights').mkdir()
    from safetensors.torch import save_file
    save_file({'w': torch.zeros(3)}, tmp_path / 'weights' / 'model.safetensors')   # weights but no config.json
    with pytest.raises(RlsubError, match='cannot load it as a causal LM'): ModelPair.load(tmp_path / 'weights', saved / 'tuned', device='cpu')


def test_closed_pair(saved):
    p = ModelPair.load(saved / 'base', saved / 'tuned', device='cpu')
    p.close()
    assert 'closed' in repr(p)
    for f in (lambda: p.scan(), lambda: p.mask(), lambda: p.generate('a')):
        with pytest.raises(RlsubError, match='closed'): f()


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_on_the_gpu(saved):
    with ModelPair.load(saved / 'base', saved / 'tuned') as p:
        assert p.device.type == 'cuda'
        assert p.scan().table.changed.sum() == 100 and p.mask().count == 100
        assert p.generate(['1+1='], max_new_tokens=4).shape == (1, 3)


def test_a_wrongly_converted_chat_tokenizer_is_repaired(saved, tmp_path):
    "A chat tokenizer with transformers 5.17's defects (eos = <|im_start|>, no pad) passed to ModelPair.load: repaired, in one warning line."
    from rlsub.train.tasks import toy_chat_tokenizer
    tok = toy_chat_tokenizer(); tok.eos_token = '<|im_start|>'; tok.pad_token = None
    with pytest.warns(UserWarning, match=r"repaired the chat tokens .*eos '<\|im_start\|>' -> '<\|im_end\|>'; pad None"):
        with ModelPair.load(saved / 'base', saved / 'tuned', tokenizer=tok, device='cpu') as p:
            end = tok.convert_tokens_to_ids('<|im_end|>')
            assert (p.tokenizer.eos_token, p.tokenizer.pad_token) == ('<|im_end|>', '<|im_end|>')
            assert p.base.generation_config.eos_token_id == end and p.tuned.generation_config.eos_token_id == end
