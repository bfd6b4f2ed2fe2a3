"""`generate`: the user-facing side of text generation (inputs, outputs,
streaming). Settings are `GenerationConfig`; the compiled programs are in
`programs.py`; prompt packing in `packing.py`."""

from __future__ import annotations

import dataclasses
import enum

import numpy as np
import tensorflow as tf

from tfgpt2 import limits
from tfgpt2.generation import packing
from tfgpt2.generation.config import GenerationConfig
from tfgpt2.generation.programs import DecodeParams, ProgramKey, ProgramKind
from tfgpt2.generation.sampling import Sampler, SamplingSettings
from tfgpt2.generation.seeds import seed_pair, set_seed  # noqa: F401 -- set_seed re-exported
from tfgpt2.modeling import inputs as input_checks


class PromptForm(enum.Enum):
    """What the caller passed, so the result comes back in the same form."""

    TEXT = "text"  # one str -> one str
    TEXTS = "texts"  # list of str -> list of str
    TF_IDS = "tf_ids"  # tf.Tensor ids -> tf.Tensor ids
    NUMPY_IDS = "numpy_ids"  # array-like ids -> np.ndarray ids


@dataclasses.dataclass
class _Prompts:
    rows: list  # one int32 array of real token ids per prompt
    form: PromptForm
    texts: list | None = None  # the prompt strings, for string outputs


def _prepare_prompts(model, inputs, attention_mask) -> _Prompts:
    if isinstance(inputs, (bytes, bytearray)) or (
            isinstance(inputs, (list, tuple)) and any(isinstance(x, (bytes, bytearray))
                                                      for x in inputs)):
        raise TypeError("generate() takes text as str, not bytes: decode it first, e.g. "
                        "prompt.decode('utf-8').")
    if isinstance(inputs, str) or (isinstance(inputs, (list, tuple)) and inputs
                                   and all(isinstance(x, str) for x in inputs)):
        texts = [inputs] if isinstance(inputs, str) else list(inputs)
        ids = model.tokenizer(texts)["input_ids"]
        return _Prompts([np.asarray(row, np.int32) for row in ids],
                        PromptForm.TEXT if isinstance(inputs, str) else PromptForm.TEXTS, texts)
    if isinstance(inputs, (list, tuple)) and any(isinstance(x, str) for x in inputs):
        raise TypeError("generate() got a list mixing strings and other values; pass either "
                        "strings or token ids, not both.")
    if inputs is None:
        raise ValueError("generate() needs a prompt: a string, a list of strings, or token ids "
                         "[batch, length].")
    form = PromptForm.TF_IDS if tf.is_tensor(inputs) else PromptForm.NUMPY_IDS
    ids, mask = input_checks.validate(inputs, attention_mask, model.config.vocab_size,
                                      allow_empty=True, real_only=True)
    ids, mask = ids.numpy(), mask.numpy().astype(bool)
    # Left or right padded, each row keeps its real tokens; we left-pad again.
    return _Prompts([row[m] for row, m in zip(ids, mask)], form)


def _new_token_budget(config: GenerationConfig, prompt_length: int, n_positions: int) -> int:
    if config.max_new_tokens is not None:
        budget = config.max_new_tokens
    else:
        max_length = config.max_length if config.max_length is not None else 20
        if max_length > n_positions:
            raise ValueError(f"max_length={max_length} exceeds the model's context "
                             f"n_positions={n_positions}.")
        budget = max_length - prompt_length
        if budget < 1:
            raise ValueError(
                f"The prompt is {prompt_length} tokens long, so max_length={max_length} leaves no "
                "room for new tokens; raise max_length or pass max_new_tokens instead.")
    return budget


def _pack(rows, length, pad_id, batch=None):
    """Left-pad `rows` (numpy arrays) to `length` columns, keeping each row's
    last tokens; extra rows up to `batch` hold one padding token each, so
    they stay well defined. Returns (ids, mask) as int32 tensors."""
    rows = list(rows) + [np.asarray([pad_id], np.int32)] * ((batch or len(rows)) - len(rows))
    values = np.concatenate([np.asarray(r, np.int32) for r in rows] + [np.zeros([0], np.int32)])
    splits = np.cumsum([0] + [len(r) for r in rows])
    return packing.left_pad(values, splits, length, pad_id)


def generate(model, inputs=None, *, attention_mask=None, input_ids=None, streamer=None,
             generation_config: GenerationConfig | None = None, **kwargs):
    """See `GPT2LMHeadModel.generate`."""
    if input_ids is not None:
        if inputs is not None:
            raise ValueError("Pass the prompt either positionally or as input_ids, not both.")
        inputs = input_ids
    unknown = sorted(set(kwargs) - {f.name for f in dataclasses.fields(GenerationConfig)})
    if unknown:
        raise TypeError(f"generate() got unknown settings {unknown}; the settings are "
                        "GenerationConfig's fields.")
    config = dataclasses.replace(generation_config or GenerationConfig(), **kwargs)
    cfg = model.config
    if config.eos_token_id is None and config.stop_token_ids is None:
        config.eos_token_id = cfg.eos_token_id
    config.validate(cfg.vocab_size)
    pad_id = config.pad_token_id if config.pad_token_id is not None else cfg.eos_token_id
    if not 0 <= pad_id < cfg.vocab_size:
        raise ValueError(f"The padding token {pad_id} (the config's eos_token_id unless "
                         f"pad_token_id is given) is outside the vocabulary [0, {cfg.vocab_size}); "
                         "pass pad_token_id.")
    prompts = _prepare_prompts(model, inputs, attention_mask)
    rows = [np.asarray(limits.start_empty(r, cfg.bos_token_id), np.int32) for r in prompts.rows]
    longest = max(len(r) for r in rows)
    budget = _new_token_budget(config, longest, cfg.n_positions)
    room = limits.check_prompt_fits(longest, budget, cfg.n_positions, config.truncate_prompt)
    rows = [r[-room:] for r in rows]

    if streamer is not None:
        if config.num_beams > 1:
            raise ValueError("Streaming works with greedy decoding and sampling, not beam search "
                             "(a beam's tokens can still change).")
        if hasattr(streamer, "put") and len(rows) * config.num_return_sequences != 1:
            raise ValueError("A put()/end() streamer takes one sequence; pass one prompt with "
                             "num_return_sequences=1, or a callable that receives [batch] tokens.")
    if config.num_beams > 1:
        tokens, lengths = _run_beams(model, config, rows, budget, pad_id)
        prompt_rows = [r for r in rows for _ in range(config.num_return_sequences)]
    else:
        rows = [r for r in rows for _ in range(config.num_return_sequences)]
        tokens, lengths = _run_sampling(model, config, rows, budget, pad_id, streamer)
        prompt_rows = rows
    return _format_outputs(model, prompts, prompt_rows, tokens, lengths, pad_id, config)


def _program_key(config: GenerationConfig, kind, batch, prompt_length, budget):
    return ProgramKey(
        kind=kind, batch=batch, prompt_length=prompt_length,
        new_tokens=packing.bucket_length(budget), sampler=Sampler.for_settings(config),
        num_beams=config.num_beams, early_stopping=bool(config.early_stopping))


def _stop_mask(config: GenerationConfig, vocab_size):
    """bool [V]: the tokens that end a sequence."""
    stop_mask = np.zeros([vocab_size], bool)
    stop_mask[config.stop_ids()] = True
    return stop_mask


def _params(config: GenerationConfig, budget, vocab_size, pad_id) -> DecodeParams:
    return DecodeParams(
        max_new_tokens=tf.constant(budget, tf.int32),
        new_token_slots=tf.constant(packing.bucket_length(budget), tf.int32),
        length_penalty=tf.constant(config.length_penalty, tf.float32),
        stop_mask=tf.constant(_stop_mask(config, vocab_size)),
        pad_token_id=tf.constant(pad_id, tf.int32),
        sampling=SamplingSettings.for_settings(config, seed_pair(config.seed)))


def _prefill(model, config, rows, budget, pad_id, prefill_kind, decode_kind):
    """Run a bucket's prefill program, with its decode program compiling in
    the background on the bucket's first call. Returns the prefill's result,
    the decode program and the parameters both take."""
    length = packing.bucket_length(max(len(r) for r in rows))
    ids, mask = _pack(rows, length, pad_id, batch=packing.bucket_batch(len(rows)))
    params = _params(config, budget, model.config.vocab_size, pad_id)
    programs = model.decode_programs
    key = lambda kind: _program_key(config, kind, ids.shape[0], ids.shape[1], budget)  # noqa: E731
    prefill = programs.get(key(prefill_kind))
    compiling = programs.compile_ahead(key(decode_kind), prefill, (ids, mask, params))
    prefilled = prefill(ids, mask, params)
    if compiling is not None:
        compiling.result()  # re-raises anything the compilation raised
    return prefilled, programs.get(key(decode_kind)), params


def _run_sampling(model, config, rows, budget, pad_id, streamer):
    decode_kind = ProgramKind.STEP if streamer is not None else ProgramKind.LOOP
    state, decode, params = _prefill(model, config, rows, budget, pad_id, ProgramKind.PREFILL,
                                     decode_kind)
    if streamer is not None:
        return _stream(decode, state, params, rows, budget, streamer)
    out, steps = decode(state, params)
    return out.numpy()[: len(rows), : int(steps)], None


def _stream(step, state, params, rows, budget, streamer):
    """The loop's step with Python in between, so each token reaches the
    streamer as soon as it exists."""
    put = streamer.put if hasattr(streamer, "put") else streamer
    if hasattr(streamer, "put"):
        put(np.asarray(rows[0])[None])  # transformers' streamers see the prompt first
    produced = 1
    put(state["tokens"].numpy()[: len(rows)])
    while produced < budget and not bool(tf.reduce_all(state["finished"][: len(rows)])):
        state = step(state, params)
        produced += 1
        put(state["tokens"].numpy()[: len(rows)])
    if hasattr(streamer, "end"):
        streamer.end()
    return state["out"].numpy()[: len(rows), :produced], None


def _run_beams(model, config, rows, budget, pad_id):
    prefilled, search, params = _prefill(model, config, rows, budget, pad_id,
                                         ProgramKind.BEAM_PREFILL, ProgramKind.BEAM)
    sequences, _scores, lengths, _steps = search(prefilled, params)
    n = config.num_return_sequences
    sequences, lengths = sequences.numpy()[: len(rows), :n], lengths.numpy()[: len(rows), :n]
    width = int(lengths.max())
    tokens = sequences[:, :, :width].reshape(len(rows) * n, width)
    return tokens, lengths.reshape(-1)


def _format_outputs(model, prompts, prompt_rows, tokens, lengths, pad_id, config):
    """Ids in: prompt (left-padded) followed by the new tokens, as the same
    type. Strings in: the prompt text followed by the generated text, cut at
    the stop token."""
    if lengths is not None:  # beam hypotheses: pad past each one's end
        columns = np.arange(tokens.shape[1])[None]
        tokens = np.where(columns < lengths[:, None], tokens, pad_id)
    if prompts.form in (PromptForm.TEXT, PromptForm.TEXTS):
        keep = packing.tokens_before_stop(tf.constant(tokens, tf.int32),
                                          _stop_mask(config, model.config.vocab_size)).numpy()
        new_texts = model.tokenizer.batch_decode([row[:n] for row, n in zip(tokens, keep)])
        per_prompt = len(tokens) // len(prompts.texts)
        texts = [prompts.texts[i // per_prompt] + text for i, text in enumerate(new_texts)]
        return texts[0] if prompts.form == PromptForm.TEXT and len(texts) == 1 else texts
    width = max(len(r) for r in prompt_rows)
    prompt_ids, _ = _pack(prompt_rows, width, pad_id)
    result = np.concatenate([prompt_ids.numpy(), tokens.astype(np.int32)], axis=1)
    return tf.constant(result) if prompts.form == PromptForm.TF_IDS else result
