"""A tiny, random stand-in for `Qwen/Qwen2.5-1.5B-Instruct` (the cpu profile's LLM; the gpu profile's 7B is the same
family), saved like the published checkpoint.

It has Qwen2.5's real model and tokenizer classes (`Qwen2ForCausalLM`, `Qwen2Tokenizer`), its added tokens in
their real order (`<|endoftext|>`, `<|im_start|>`, `<|im_end|>`, ... right after the learned vocabulary, no BOS),
its embedding matrix padded past the tokenizer, its generation config (two end-of-turn ids, the recommended
sampling values) and its real chat template text, tools block and default system message included. Only the
sizes are tiny and the weights random, so the LLM service serving it shows how it serves the real weights: which
prompt the template renders, where a turn ends, how constrained decoding sees the vocabulary.
"""

from __future__ import annotations

from pathlib import Path

from services.llm.tiny import TRAINING_SENTENCES
from shared.atomic_build import build_once
from shared.tiny_tokenizer import qwen2_tokenizer, token_id

END_OF_TEXT, MESSAGE_START, MESSAGE_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
DEFAULT_SYSTEM_MESSAGE = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
# Qwen2.5's added tokens in id order (151643–151664 in the real vocabulary): the first fourteen are special.
SPECIAL_TOKENS = [
    END_OF_TEXT, MESSAGE_START, MESSAGE_END,
    "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>",
    "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
]
ADDED_TOKENS = [
    *SPECIAL_TOKENS,
    "<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>",
    "<|repo_name|>", "<|file_sep|>",
]
SEED = 20240919
TOKENIZER_VOCAB_SIZE = 400
# Qwen2.5 pads its embedding matrix past the tokenizer (151936 rows for 151665 tokens).
VOCAB_MULTIPLE = 64

# The chat template of https://huggingface.co/Qwen/Qwen2.5-1.5B-Instruct/blob/main/tokenizer_config.json, verbatim
# (the version after Qwen's fix of a doubled brace in the tools block, Qwen/Qwen2.5-7B-Instruct commit 929d90a).
CHAT_TEMPLATE = (
    "{%- if tools %}\n"
    "    {{- '<|im_start|>system\\n' }}\n"
    "    {%- if messages[0]['role'] == 'system' %}\n"
    "        {{- messages[0]['content'] }}\n"
    "    {%- else %}\n"
    "        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}\n"
    "    {%- endif %}\n"
    "    {{- \"\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\nYou are provided "
    "with function signatures within <tools></tools> XML tags:\\n<tools>\" }}\n"
    "    {%- for tool in tools %}\n"
    "        {{- \"\\n\" }}\n"
    "        {{- tool | tojson }}\n"
    "    {%- endfor %}\n"
    "    {{- \"\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments within "
    "<tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\\"name\\\": <function-name>, \\\"arguments\\\": "
    "<args-json-object>}\\n</tool_call><|im_end|>\\n\" }}\n"
    "{%- else %}\n"
    "    {%- if messages[0]['role'] == 'system' %}\n"
    "        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}\n"
    "    {%- else %}\n"
    "        {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}\n"
    "    {%- endif %}\n"
    "{%- endif %}\n"
    "{%- for message in messages %}\n"
    "    {%- if (message.role == \"user\") or (message.role == \"system\" and not loop.first) or "
    "(message.role == \"assistant\" and not message.tool_calls) %}\n"
    "        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}\n"
    "    {%- elif message.role == \"assistant\" %}\n"
    "        {{- '<|im_start|>' + message.role }}\n"
    "        {%- if message.content %}\n"
    "            {{- '\\n' + message.content }}\n"
    "        {%- endif %}\n"
    "        {%- for tool_call in message.tool_calls %}\n"
    "            {%- if tool_call.function is defined %}\n"
    "                {%- set tool_call = tool_call.function %}\n"
    "            {%- endif %}\n"
    "            {{- '\\n<tool_call>\\n{\"name\": \"' }}\n"
    "            {{- tool_call.name }}\n"
    "            {{- '\", \"arguments\": ' }}\n"
    "            {{- tool_call.arguments | tojson }}\n"
    "            {{- '}\\n</tool_call>' }}\n"
    "        {%- endfor %}\n"
    "        {{- '<|im_end|>\\n' }}\n"
    "    {%- elif message.role == \"tool\" %}\n"
    "        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != \"tool\") %}\n"
    "            {{- '<|im_start|>user' }}\n"
    "        {%- endif %}\n"
    "        {{- '\\n<tool_response>\\n' }}\n"
    "        {{- message.content }}\n"
    "        {{- '\\n</tool_response>' }}\n"
    "        {%- if loop.last or (messages[loop.index0 + 1].role != \"tool\") %}\n"
    "            {{- '<|im_end|>\\n' }}\n"
    "        {%- endif %}\n"
    "    {%- endif %}\n"
    "{%- endfor %}\n"
    "{%- if add_generation_prompt %}\n"
    "    {{- '<|im_start|>assistant\\n' }}\n"
    "{%- endif %}\n"
)

_MARKER = "config.json"


def build_qwen2_5_instruct(folder: Path) -> Path:
    """Build the Qwen2.5-Instruct stand-in into `folder` unless it is there; returns `folder`."""
    return build_once(folder, marker=_MARKER, write=_write_qwen2_5_instruct, what="Qwen2.5-Instruct stand-in")


def _write_qwen2_5_instruct(folder: Path) -> None:
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    tokenizer = qwen2_tokenizer(
        TRAINING_SENTENCES, vocab_size=TOKENIZER_VOCAB_SIZE, added_tokens=ADDED_TOKENS, special_tokens=SPECIAL_TOKENS,
        eos_token=MESSAGE_END, pad_token=END_OF_TEXT, chat_template=CHAT_TEMPLATE, model_max_length=131072,
        errors="replace", split_special_tokens=False,
    )
    end_of_text, message_end = token_id(tokenizer, END_OF_TEXT), token_id(tokenizer, MESSAGE_END)
    config = Qwen2Config(
        vocab_size=-(-len(tokenizer) // VOCAB_MULTIPLE) * VOCAB_MULTIPLE,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=32768,
        max_window_layers=21,
        sliding_window=32768,
        use_sliding_window=False,
        rms_norm_eps=1e-6,
        tie_word_embeddings=True,
        bos_token_id=end_of_text,
        eos_token_id=message_end,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = Qwen2ForCausalLM(config).eval()
    # Qwen2.5-1.5B-Instruct's generation_config.json, with this vocabulary's ids.
    model.generation_config = GenerationConfig(
        bos_token_id=end_of_text,
        pad_token_id=end_of_text,
        eos_token_id=[message_end, end_of_text],
        do_sample=True,
        repetition_penalty=1.1,
        temperature=0.7,
        top_p=0.8,
        top_k=20,
    )
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
