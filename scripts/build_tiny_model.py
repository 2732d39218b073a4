"""Build a tiny randomly initialised chat model locally, for tests and the embedded CPU default.

Llama architecture, a byte-level BPE tokenizer trained on local text, and one of two chat templates:
"chatml" (system/user/assistant roles) or "gemma", which has no system role: like Gemma-3's template it
folds the system text and a blank line into the first user turn, renders the assistant as "model", ends
turns with <end_of_turn> while eos_token is <eos>, and its tokenizer adds <bos> itself.
"modernbert" is instead a tiny ModernBERT masked language model (the persona classifier's base), whose
tokenizer wraps a text in [CLS] ... [SEP].
"""

import argparse
import random

import torch
from octlib.io import save_dir_atomic
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import LlamaConfig, LlamaForCausalLM, ModernBertConfig, ModernBertForMaskedLM, PreTrainedTokenizerFast

CHATML = (
    "{%- for message in messages -%}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}"
)
GEMMA = (
    "{{ bos_token }}"
    "{%- if messages[0]['role'] == 'system' -%}"
    "{%- set first_user_prefix = messages[0]['content'] + '\\n\\n' -%}{%- set loop_messages = messages[1:] -%}"
    "{%- else -%}{%- set first_user_prefix = '' -%}{%- set loop_messages = messages -%}{%- endif -%}"
    "{%- for message in loop_messages -%}"
    "{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{%- endif -%}"
    "{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}"
    "{{ '<start_of_turn>' + role + '\\n' + (first_user_prefix if loop.first else '') + message['content'] | trim"
    " + '<end_of_turn>\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\\n' }}{%- endif -%}"
)
FLAVOURS = {
    "chatml": dict(
        template=CHATML,
        special=["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>"],
        bos="<|endoftext|>",
        eos="<|im_end|>",
        pad="<|pad|>",
        stop=["<|im_end|>"],
    ),
    "gemma": dict(
        template=GEMMA,
        special=["<bos>", "<eos>", "<pad>", "<start_of_turn>", "<end_of_turn>"],
        bos="<bos>",
        eos="<eos>",
        pad="<pad>",
        stop=["<eos>", "<end_of_turn>"],
    ),
    "modernbert": dict(
        template=None,
        special=["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"],
        bos="[CLS]",
        eos="[SEP]",
        pad="[PAD]",
        stop=[],
    ),
}

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--flavour", choices=FLAVOURS, default="chatml")
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--hidden-size", type=int, default=64)
parser.add_argument("--layers", type=int, default=4)
parser.add_argument("--vocab-size", type=int, default=1024)
parser.add_argument("--out", required=True)
args = parser.parse_args()
flavour = FLAVOURS[args.flavour]

# ---- tokenizer -----------------------------------------------------------------------------------------
rng = random.Random(args.seed)
words = (
    "the a an I you we model persona trait kind warm calm sharp witty poem number love reply question"
    " answer why how what when think feel help write explain day life world time friend work code data learn"
).split()
corpus = [
    " ".join(rng.choice(words) for _ in range(rng.randint(4, 14))).capitalize() + rng.choice(".?!,;:")
    for _ in range(3000)
]
backend = Tokenizer(models.BPE())
backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
backend.decoder = decoders.ByteLevel()
backend.train_from_iterator(
    corpus,
    trainers.BpeTrainer(
        vocab_size=args.vocab_size,
        min_frequency=2,
        special_tokens=flavour["special"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    ),
)
bos_id = backend.token_to_id(flavour["bos"])
if args.flavour == "gemma":  # Gemma's tokenizer prepends <bos> when asked for special tokens
    backend.post_processor = processors.Sequence(
        [
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(single=f"{flavour['bos']} $A", special_tokens=[(flavour["bos"], bos_id)]),
        ]
    )
elif args.flavour == "modernbert":
    sep_id = backend.token_to_id("[SEP]")
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", bos_id), ("[SEP]", sep_id)]
    )
else:
    backend.post_processor = processors.ByteLevel(trim_offsets=False)
tokenizer = PreTrainedTokenizerFast(
    tokenizer_object=backend,
    bos_token=flavour["bos"],
    eos_token=flavour["eos"],
    pad_token=flavour["pad"],
    padding_side="left",
)
if args.flavour == "modernbert":
    tokenizer.add_special_tokens(
        {"cls_token": "[CLS]", "sep_token": "[SEP]", "mask_token": "[MASK]", "unk_token": "[UNK]"}
    )
    tokenizer.padding_side = "right"
tokenizer.chat_template = flavour["template"]

# ---- model ---------------------------------------------------------------------------------------------
torch.manual_seed(args.seed)
if args.flavour == "modernbert":  # a tiny config that trains on CPU in a second
    model = ModernBertForMaskedLM(
        ModernBertConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            global_attn_every_n_layers=2,
            local_attention=16,
            max_position_embeddings=8192,
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=bos_id,
            eos_token_id=tokenizer.eos_token_id,
            cls_token_id=bos_id,
            sep_token_id=tokenizer.eos_token_id,
        )
    )
else:
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=args.hidden_size,
        intermediate_size=2 * args.hidden_size,
        num_hidden_layers=args.layers,
        num_attention_heads=args.hidden_size // 32,
        num_key_value_heads=args.hidden_size // 32,
        max_position_embeddings=4096,
        bos_token_id=bos_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = [tokenizer.convert_tokens_to_ids(t) for t in flavour["stop"]]
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = bos_id


def save(path):
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)


save_dir_atomic(args.out, save)
print(
    f"tiny {args.flavour} model: {sum(p.numel() for p in model.parameters())} parameters, "
    f"vocabulary {len(tokenizer)}, saved to {args.out}"
)
