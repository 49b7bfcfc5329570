"""Tokens per second of the llm service's llama.cpp engine on the packaged SmolLM2-135M-Instruct, against
transformers' own `generate` on the same weights and llama.cpp (llama-cpp-python's `Llama`) on the same GGUF file,
with the same thread count, in one run.

    python bench/llm_engine.py --threads 1 2 --markdown
    python bench/llm_engine.py --model /models/qwen2.5-1.5b-instruct-q4_k_m.gguf --threads 1 --skip-transformers

Rows: the service answering one request, the service answering 4 concurrent requests (their tokens together
over the wall time), transformers `generate` (greedy, fp32, the GGUF dequantised), llama.cpp's own chat completion,
and llama.cpp's raw batched decode of 4 sequences without sampling or HTTP (what batching can give at most on this
machine). Each engine writes `--tokens` tokens for the same prompt; a run that stops early is timed for what it
wrote.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import machine_description, markdown_table  # noqa: E402

PROMPT = [{"role": "user", "content": "Write a short story for children about a cat named Mia who finds a lost kite."}]


def service_rates(model: str, threads: int, tokens: int, cache: Path) -> tuple[float, float]:
    """(one request, four concurrent requests) in tokens per second through the HTTP service, run as its own
    process (`fabula serve llm`), as `fabula up` runs it."""
    import os
    import subprocess

    import httpx
    import openai

    from shared.server_thread import free_port

    port = free_port()
    environment = {
        **os.environ, "FABULA_CACHE_DIR": str(cache), "FABULA_DATA_DIR": str(cache / "data"), "FABULA_LLM_THREADS": str(threads),
        "FABULA_LLM_PARALLEL": "4", "FABULA_API_KEY": "", "FABULA_LLM_MODEL": model,
    }
    command = [sys.executable, "-m", "webapp.cli", "serve", "llm", "--profile", "offline", "--port", str(port)]
    process = subprocess.Popen(command, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        else:
            raise RuntimeError("the llm service did not become ready")

        async def ask(client: openai.AsyncOpenAI, seed: int) -> int:
            reply = await client.chat.completions.create(model=model, messages=PROMPT, max_tokens=tokens, temperature=0.7, seed=seed)
            return reply.usage.completion_tokens if reply.usage else 0

        async def rate(concurrent: int) -> float:
            async with openai.AsyncOpenAI(base_url=url + "/v1", api_key="x", timeout=600) as client:
                await ask(client, 0)  # warm up
                started = time.perf_counter()
                written = await asyncio.gather(*(ask(client, seed) for seed in range(1, concurrent + 1)))
                return sum(written) / (time.perf_counter() - started)

        return asyncio.run(rate(1)), asyncio.run(rate(4))
    finally:
        process.terminate()
        process.wait(timeout=30)


def transformers_rate(model_id: str, threads: int, tokens: int, cache: Path) -> float:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from services.llm.gguf import convert_gguf, gguf_file_for

    folder = convert_gguf(gguf_file_for(model_id), cache / "models")
    torch.set_num_threads(threads)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    inputs = tokenizer.apply_chat_template(PROMPT, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.inference_mode():
        model.generate(**inputs, max_new_tokens=8, do_sample=False)
        started = time.perf_counter()
        output = model.generate(**inputs, max_new_tokens=tokens, do_sample=False)
    written = output.shape[1] - inputs["input_ids"].shape[1]
    return written / (time.perf_counter() - started)


def llama_cpp_rates(model_id: str, threads: int, tokens: int) -> tuple[float, float]:
    """(llama.cpp's chat completion, raw batched decode of 4 sequences) in tokens per second."""
    import llama_cpp
    from llama_cpp import Llama, _internals

    from services.llm.gguf import gguf_file_for

    path = str(gguf_file_for(model_id))
    llama = Llama(path, n_threads=threads, n_threads_batch=threads, n_ctx=2048, verbose=False)
    llama.create_chat_completion(PROMPT, max_tokens=8, temperature=0.0)
    started = time.perf_counter()
    reply = llama.create_chat_completion(PROMPT, max_tokens=tokens, temperature=0.0)
    chat_rate = reply["usage"]["completion_tokens"] / (time.perf_counter() - started)
    del llama

    model = _internals.LlamaModel(path_model=path, params=llama_cpp.llama_model_default_params(), verbose=False)
    params = llama_cpp.llama_context_default_params()
    params.n_ctx, params.n_batch, params.n_seq_max, params.n_threads, params.n_threads_batch, params.kv_unified = 4096, 512, 4, threads, threads, True
    context = _internals.LlamaContext(model=model, params=params, verbose=False)
    holder = _internals.LlamaBatch(n_tokens=512, embd=0, n_seq_max=1, verbose=False)  # owns the batch's memory
    batch = holder.batch
    sequences, prompt = 4, 47

    def put(row: int, token: int, position: int, sequence: int, logits: bool) -> None:
        batch.token[row], batch.pos[row], batch.n_seq_id[row], batch.logits[row] = token, position, 1, logits
        batch.seq_id[row][0] = sequence

    for sequence in range(sequences):
        for position in range(prompt):
            put(sequence * prompt + position, 100 + position, position, sequence, position == prompt - 1)
    batch.n_tokens = sequences * prompt
    llama_cpp.llama_decode(context.ctx, batch)
    started = time.perf_counter()
    for step in range(tokens):
        for sequence in range(sequences):
            put(sequence, 200 + step % 100, prompt + step, sequence, True)
        batch.n_tokens = sequences
        llama_cpp.llama_decode(context.ctx, batch)
        for sequence in range(sequences):
            ctypes.cast(llama_cpp.llama_get_logits_ith(context.ctx, sequence), ctypes.POINTER(ctypes.c_float))[0]
    rate = sequences * tokens / (time.perf_counter() - started)
    holder.close()
    context.close()
    model.close()
    return chat_rate, rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--model", default="smollm2", help="smollm2 (packaged), or a .gguf path")
    parser.add_argument("--skip-transformers", action="store_true", help="a big model's fp32 copy takes minutes and gigabytes")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="fabula-llm-bench-") as folder:
        cache = Path(folder)
        for threads in args.threads:
            one, four = service_rates(args.model, threads, args.tokens, cache)
            reference = None if args.skip_transformers else transformers_rate(args.model, threads, args.tokens, cache)
            chat, batched = llama_cpp_rates(args.model, threads, args.tokens)
            rows.append([
                threads, round(one, 1), round(four, 1), round(four / one, 2), reference and round(reference, 1), reference and round(one / reference, 1),
                round(chat, 1), f"{(one / chat - 1) * 100:+.0f} %", round(batched, 1),
            ])
    headers = [
        "threads", "service, 1 request (tok/s)", "service, 4 concurrent (tok/s)", "4 ÷ 1", "transformers generate (tok/s)",
        "service ÷ transformers", "llama.cpp chat (tok/s)", "service vs llama.cpp", "llama.cpp raw batch of 4 (tok/s)",
    ]
    table = markdown_table(headers, rows)
    print(f"Machine: {machine_description()}; model: {args.model}\n" if args.markdown else "", end="")
    print(table)


if __name__ == "__main__":
    main()
