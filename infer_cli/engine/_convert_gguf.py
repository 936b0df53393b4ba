"""Convert a GGUF checkpoint into a plain Hugging Face folder (safetensors + tokenizer).

Run by the ENGINE environment's python (torch, transformers, gguf, accelerate), never imported by
infer itself::

    python -I _convert_gguf.py --gguf FILE --out FOLDER [--summary FILE.json]
                               [--check-prompt TEXT --check-expect WORD]

transformers 5 keeps GGUF weights packed by default, so the weights are loaded dequantized, copied
into a clean model built from the config alone (no ``quantization_config``), and saved with the
tokenizer. With ``--check-prompt`` the saved folder is loaded back and asked the prompt (greedy);
the answer must contain ``--check-expect``. A JSON summary is the last line on stdout (and is
written to ``--summary``); exit 0 on success, 1 on failure.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path
from typing import Any

SUMMARY_PREFIX = "INFER_CONVERT "


def _arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="GGUF -> Hugging Face folder")
    parser.add_argument("--gguf", required=True, type=Path, help="the .gguf file")
    parser.add_argument("--out", required=True, type=Path, help="an empty or missing output folder")
    parser.add_argument("--summary", type=Path, default=None, help="also write the summary here")
    parser.add_argument("--dtype", default="bfloat16", help="torch dtype of the saved weights")
    parser.add_argument("--check-prompt", default=None, help="a chat prompt to ask the saved model")
    parser.add_argument("--check-expect", default=None, help="a word the answer must contain")
    parser.add_argument("--max-new-tokens", type=int, default=24)
    return parser.parse_args(argv)


def convert(gguf: Path, out: Path, dtype_name: str) -> dict[str, Any]:
    torch = importlib.import_module("torch")
    transformers = importlib.import_module("transformers")
    AutoConfig = transformers.AutoConfig
    AutoModelForCausalLM = transformers.AutoModelForCausalLM
    AutoTokenizer = transformers.AutoTokenizer
    GgufConfig = transformers.GgufConfig

    dtype = getattr(torch, dtype_name)
    folder, name = str(gguf.parent), gguf.name

    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    packed = AutoModelForCausalLM.from_pretrained(
        folder,
        gguf_file=name,
        quantization_config=GgufConfig(gguf_file=str(gguf), dequantize=True),
        dtype=dtype,
    )
    state = {key: value.detach().to(dtype) for key, value in packed.state_dict().items()}
    config_dict = packed.config.to_dict()
    del packed
    config_dict.pop("quantization_config", None)
    config = AutoConfig.for_model(**config_dict)
    config.dtype = dtype

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    model.load_state_dict(state, strict=False, assign=True)
    model.tie_weights()
    missing = [key for key, value in model.state_dict().items() if value.is_meta]
    if missing:
        raise RuntimeError(f"weights missing after conversion: {', '.join(missing[:5])}")

    generation = model.generation_config
    for attribute in ("eos_token_id", "bos_token_id", "pad_token_id"):
        value = getattr(tokenizer, attribute, None)
        if value is not None:
            setattr(generation, attribute, value)
            setattr(model.config, attribute, value)

    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    parameters = model.num_parameters()
    return {
        "architecture": type(model).__name__,
        "parameters": parameters,
        "dtype": dtype_name,
        "transformers": transformers.__version__,
        "torch": torch.__version__,
    }


def check(out: Path, prompt: str, expect: str | None, max_new_tokens: int) -> str:
    torch = importlib.import_module("torch")
    transformers = importlib.import_module("transformers")
    AutoModelForCausalLM = transformers.AutoModelForCausalLM
    AutoTokenizer = transformers.AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(out))
    model = AutoModelForCausalLM.from_pretrained(str(out))
    messages = [{"role": "user", "content": prompt}]
    inputs = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    answer = str(
        tokenizer.decode(output[0][inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    )
    if expect is not None and expect.lower() not in answer.lower():
        raise RuntimeError(
            f"the converted model answered {answer.strip()!r}, expected {expect!r} in it"
        )
    return answer.strip()


def main(argv: list[str]) -> int:
    options = _arguments(argv)
    started = time.monotonic()
    summary: dict[str, Any] = {"ok": False, "gguf": str(options.gguf), "out": str(options.out)}
    try:
        if not options.gguf.is_file():
            raise FileNotFoundError(f"no GGUF file at {options.gguf}")
        summary.update(convert(options.gguf, options.out, options.dtype))
        summary["convert_seconds"] = round(time.monotonic() - started, 1)
        if options.check_prompt:
            summary["check_prompt"] = options.check_prompt
            summary["check_answer"] = check(
                options.out, options.check_prompt, options.check_expect, options.max_new_tokens
            )
        summary["ok"] = True
    except Exception as error:  # the one place every failure becomes a summary line
        import traceback

        traceback.print_exc()
        summary["error"] = f"{type(error).__name__}: {error}"
    summary["seconds"] = round(time.monotonic() - started, 1)
    print(SUMMARY_PREFIX + json.dumps(summary), flush=True)
    if options.summary is not None:
        options.summary.write_text(json.dumps(summary, indent=2) + "\n")
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
