"""Tiny models for fast unit tests: a 2-layer Llama from a config and a BPE tokenizer trained on fixture text.

They behave like the real thing (chat template, special tokens, save/load) at a few hundred KB.
"""

from __future__ import annotations

from pathlib import Path

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}"
    "{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

FIXTURE_TEXT = [
    "The quick brown fox jumps over the lazy dog.",
    "What is the capital of France? The capital of France is Paris.",
    "Give three tips for staying healthy. Eat well, sleep enough and exercise.",
    "Translate to French: good morning. Bonjour.",
    "Classify the sentiment: I love this product. positive",
    "Classify the sentiment: this is terrible. negative",
    '{"category": "billing", "priority": "high", "product": "router"}',
    "user assistant system tool hello hi who are you I am an AI assistant",
    "0 1 2 3 4 5 6 7 8 9 10 100 1000 + - * / = ( ) [ ] { } : ; , . ! ?",
] * 20

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<pad>"]


def build_tiny_tokenizer(vocab_size: int = 512):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE(unk_token=None))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(FIXTURE_TEXT, trainer=trainer)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<pad>",
        unk_token="<|endoftext|>",
    )
    tok.chat_template = CHATML_TEMPLATE
    return tok


def build_tiny_llama(tokenizer, seed: int = 0):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    return LlamaForCausalLM(config)


def save_tiny_model(directory: Path) -> Path:
    """Write a tiny Llama + tokenizer as a Hugging Face folder (safetensors)."""
    tokenizer = build_tiny_tokenizer()
    model = build_tiny_llama(tokenizer)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)
    return directory


# Words the encoder tests build their synthetic corpora from: in the tiny BERT's vocabulary as whole tokens.
BERT_WORDS = {
    "animal": ["cat", "dog", "cow", "owl", "fox", "bee", "ant", "pig"],
    "sound": ["meow", "bark", "moo", "hoot", "yip", "buzz", "tick", "oink"],
    "place": ["river", "forest", "garden", "valley", "desert", "island", "meadow", "canyon"],
    "building": ["bridge", "cabin", "shed", "barn", "tent", "lighthouse", "mill", "tower"],
}
BERT_SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def build_tiny_bert_tokenizer(vocab_size: int = 400):
    """A lower-casing WordPiece tokenizer (BERT's pre-tokenizer, [CLS] x [SEP] template) on fixture text."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertTokenizerFast

    core = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    core.normalizer = normalizers.BertNormalizer(lowercase=True)
    core.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    core.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=BERT_SPECIAL, show_progress=False)
    words = [" ".join(group) for group in BERT_WORDS.values()] * 20
    core.train_from_iterator(FIXTURE_TEXT + words, trainer=trainer)
    cls, sep = core.token_to_id("[CLS]"), core.token_to_id("[SEP]")
    core.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    return BertTokenizerFast(tokenizer_object=core, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                             sep_token="[SEP]", mask_token="[MASK]", model_max_length=128)


def build_tiny_bert(tokenizer, seed: int = 0):
    """A 2-layer BERT encoder (no MLM head, like the embedded all-MiniLM-L6-v2)."""
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                        num_attention_heads=4, max_position_embeddings=128, pad_token_id=tokenizer.pad_token_id)
    return BertModel(config, add_pooling_layer=False)


def save_tiny_bert(directory: Path) -> Path:
    """Write the tiny BERT + WordPiece tokenizer as a Hugging Face folder (safetensors)."""
    tokenizer = build_tiny_bert_tokenizer()
    model = build_tiny_bert(tokenizer)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)
    return directory
