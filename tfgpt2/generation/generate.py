"""`generate`: the user-facing side of text generation (settings, inputs,
outputs, streaming). The compiled programs live in `decoding.py`."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from tfgpt2.generation.programs import DecodePrograms, ProgramKey, bucket_batch, bucket_length

# --- settings -----------------------------------------------------------------


@dataclasses.dataclass
class GenerationConfig:
    """The generation settings users know from transformers and keras-hub.

    `max_length` counts the prompt (as in transformers and the model card);
    `max_new_tokens` counts only new tokens and wins when both are given.
    With neither, 20 tokens in total, transformers' default. `top_k=0` or
    `None` disables top-k; top-k (default 50), top-p and temperature only act
    when `do_sample=True`.
    """

    max_length: int | None = None
    max_new_tokens: int | None = None
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int | None = 50
    top_p: float = 1.0
    num_beams: int = 1
    length_penalty: float = 1.0
    early_stopping: bool = False
    repetition_penalty: float = 1.0
    num_return_sequences: int = 1
    eos_token_id: int | Sequence[int] | None = None
    stop_token_ids: Sequence[int] | None = None
    pad_token_id: int | None = None
    seed: int | None = None
    truncate_prompt: bool = False  # keep the prompt's last tokens if it is too long

    def validate(self, vocab_size: int):
        def check(ok, message):
            if not ok:
                raise ValueError(message)

        check(self.max_length is None or (isinstance(self.max_length, int) and self.max_length >= 1),
              f"max_length must be a positive int, got {self.max_length!r}.")
        check(self.max_new_tokens is None
              or (isinstance(self.max_new_tokens, int) and self.max_new_tokens >= 1),
              f"max_new_tokens must be a positive int, got {self.max_new_tokens!r}.")
        if self.do_sample:
            check(isinstance(self.temperature, (int, float)) and self.temperature > 0,
                  f"temperature must be > 0 when sampling, got {self.temperature!r}; for "
                  "deterministic output use do_sample=False (greedy).")
        check(isinstance(self.top_p, (int, float)) and 0 < self.top_p <= 1,
              f"top_p must be in (0, 1], got {self.top_p!r}.")
        check(self.top_k is None or (isinstance(self.top_k, int) and self.top_k >= 0),
              f"top_k must be a positive int (or 0/None to disable it), got {self.top_k!r}.")
        check(isinstance(self.num_beams, int) and self.num_beams >= 1,
              f"num_beams must be an int >= 1, got {self.num_beams!r}.")
        check(not (self.num_beams > 1 and self.do_sample),
              "Beam sampling (num_beams > 1 with do_sample=True) is not supported; use one or "
              "the other.")
        check(isinstance(self.num_return_sequences, int) and self.num_return_sequences >= 1,
              f"num_return_sequences must be an int >= 1, got {self.num_return_sequences!r}.")
        check(self.num_beams == 1 or self.num_return_sequences <= self.num_beams,
              f"num_return_sequences ({self.num_return_sequences}) cannot exceed num_beams "
              f"({self.num_beams}).")
        check(self.num_beams > 1 or self.do_sample or self.num_return_sequences == 1,
              "Greedy decoding returns one sequence per prompt; use do_sample=True or num_beams > 1 "
              "for num_return_sequences > 1.")
        check(isinstance(self.repetition_penalty, (int, float)) and self.repetition_penalty > 0,
              f"repetition_penalty must be > 0, got {self.repetition_penalty!r}.")
        for token in self.stop_ids():
            check(isinstance(token, (int, np.integer)) and 0 <= token < vocab_size,
                  f"Stop token ids must be in [0, {vocab_size}), got {token!r}.")

    def stop_ids(self) -> list[int]:
        ids = []
        for value in (self.eos_token_id, self.stop_token_ids):
            if value is None:
                continue
            ids.extend([value] if isinstance(value, (int, np.integer)) else list(value))
        return ids


# --- seeds -------------------------------------------------------------------------

_seed_source = np.random.default_rng()


def set_seed(seed: int) -> None:
    """Seed Python, NumPy, TensorFlow/Keras and tfgpt2's sampling, as
    `transformers.set_seed` does: the same seed gives the same samples."""
    import keras

    global _seed_source
    keras.utils.set_random_seed(seed)
    _seed_source = np.random.default_rng(seed)


def _draw_seed() -> np.ndarray:
    return _seed_source.integers(0, 2**31 - 1, size=2, dtype=np.int64).astype(np.int32)


# --- inputs --------------------------------------------------------------------------


@dataclasses.dataclass
class _Prompts:
    rows: list  # one int32 array of real token ids per prompt
    kind: str  # "str", "strs", "tf" or "np": what the caller gave, so we return the same
    texts: list | None = None  # the prompt strings, for string outputs


def _prepare_prompts(model, inputs, attention_mask) -> _Prompts:
    if isinstance(inputs, str) or (isinstance(inputs, (list, tuple)) and inputs
                                   and all(isinstance(x, str) for x in inputs)):
        texts = [inputs] if isinstance(inputs, str) else list(inputs)
        ids = model.tokenizer(texts)["input_ids"]
        return _Prompts([np.asarray(row, np.int32) for row in ids],
                        "str" if isinstance(inputs, str) else "strs", texts)
    if isinstance(inputs, (list, tuple)) and any(isinstance(x, str) for x in inputs):
        raise TypeError("generate() got a list mixing strings and other values; pass either "
                        "strings or token ids, not both.")
    if inputs is None:
        raise ValueError("generate() needs a prompt: a string, a list of strings, or token ids "
                         "[batch, length].")
    kind = "tf" if tf.is_tensor(inputs) else "np"
    ids = inputs.numpy() if tf.is_tensor(inputs) else np.asarray(inputs)
    if ids.dtype == object or not np.issubdtype(ids.dtype, np.integer):
        raise TypeError(f"Token ids must be integers, got {ids.dtype}.")
    if ids.ndim != 2:
        raise ValueError(f"Token ids must be [batch, length], got shape {ids.shape}; for one "
                         "prompt add a batch axis (ids[None]).")
    if attention_mask is None:
        mask = np.ones_like(ids)
    else:
        mask = attention_mask.numpy() if tf.is_tensor(attention_mask) else np.asarray(attention_mask)
        if mask.shape != ids.shape:
            raise ValueError(f"attention_mask shape {mask.shape} must equal input_ids shape {ids.shape}.")
        if not np.isin(mask, (0, 1)).all():
            raise ValueError("attention_mask must hold only 0 and 1.")
    vocab = model.config.vocab_size
    real = ids[mask.astype(bool)]
    if real.size and (real.min() < 0 or real.max() >= vocab):
        raise ValueError(f"Token ids must be in [0, {vocab}); found "
                         f"{real[(real < 0) | (real >= vocab)][:5].tolist()}.")
    # Left or right padded, each row keeps its real tokens; we left-pad again.
    return _Prompts([row[m.astype(bool)].astype(np.int32) for row, m in zip(ids, mask)], kind)


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
    if budget >= n_positions:
        raise ValueError(f"Cannot generate {budget} new tokens with a context of {n_positions}.")
    return budget


def _fit_context(rows, budget, n_positions, truncate):
    room = n_positions - budget
    longest = max(len(r) for r in rows)
    if longest <= room:
        return rows
    if not truncate:
        raise ValueError(
            f"A prompt of {longest} tokens plus {budget} new tokens exceeds the context of "
            f"{n_positions}. Shorten the prompt, lower max_new_tokens, or pass "
            "truncate_prompt=True to keep the prompt's last tokens.")
    return [r[-room:] for r in rows]


def _left_pad(rows, length, batch, pad_id):
    ids = np.full((batch, length), pad_id, np.int32)
    mask = np.zeros((batch, length), np.int32)
    for i, row in enumerate(rows):
        if len(row):
            ids[i, length - len(row):] = row
            mask[i, length - len(row):] = 1
    return ids, mask


# --- generate ---------------------------------------------------------------------------


def generate(model, inputs=None, *, attention_mask=None, input_ids=None, streamer=None,
             generation_config: GenerationConfig | None = None, **kwargs):
    """See `GPT2LMHeadModel.generate`."""
    if input_ids is not None:
        if inputs is not None:
            raise ValueError("Pass the prompt either positionally or as input_ids, not both.")
        inputs = input_ids
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
    # An empty prompt starts from <|endoftext|>, as transformers does.
    rows = [r if len(r) else np.asarray([cfg.bos_token_id], np.int32) for r in prompts.rows]
    budget = _new_token_budget(config, max(len(r) for r in rows), cfg.n_positions)
    rows = _fit_context(rows, budget, cfg.n_positions, config.truncate_prompt)

    if streamer is not None:
        if config.num_beams > 1:
            raise ValueError("Streaming works with greedy decoding and sampling, not beam search "
                             "(a beam's tokens can still change).")
        if hasattr(streamer, "put") and len(rows) * config.num_return_sequences != 1:
            raise ValueError("A put()/end() streamer takes one sequence; pass one prompt with "
                             "num_return_sequences=1, or a callable that receives [batch] tokens.")
    if config.num_beams > 1:
        tokens, lengths = _run_beams(model, config, rows, budget, pad_id)
        repeat = config.num_return_sequences
    else:
        repeat = config.num_return_sequences
        rows = [r for r in rows for _ in range(repeat)]
        tokens, lengths = _run_sampling(model, config, rows, budget, pad_id, streamer)
        repeat = 1  # rows were already repeated
    return _format_outputs(model, prompts, rows, tokens, lengths, repeat, pad_id, config)


def _program_key(config: GenerationConfig, kind, batch, prompt_length, budget):
    sampling = config.do_sample
    return ProgramKey(
        kind=kind, batch=batch, prompt_length=prompt_length, new_tokens=bucket_length(budget),
        do_sample=sampling, top_k=(config.top_k or 0) if sampling else 0,
        use_top_p=sampling and config.top_p < 1.0,
        use_temperature=sampling and config.temperature != 1.0,
        use_repetition_penalty=config.repetition_penalty != 1.0,
        num_beams=config.num_beams, early_stopping=bool(config.early_stopping))


def _params(config: GenerationConfig, budget, vocab_size, pad_id):
    stop_mask = np.zeros([vocab_size], bool)
    stop_mask[config.stop_ids()] = True
    seed = np.asarray([config.seed, 0], np.int32) if config.seed is not None else _draw_seed()
    return {
        "max_new_tokens": tf.constant(budget, tf.int32),
        "temperature": tf.constant(config.temperature, tf.float32),
        "top_p": tf.constant(config.top_p, tf.float32),
        "repetition_penalty": tf.constant(config.repetition_penalty, tf.float32),
        "length_penalty": tf.constant(config.length_penalty, tf.float32),
        "stop_mask": tf.constant(stop_mask),
        "pad_token_id": tf.constant(pad_id, tf.int32),
        "seed": tf.constant(seed, tf.int32),
    }


def _batch_inputs(rows, pad_id):
    batch = bucket_batch(len(rows))
    length = bucket_length(max(len(r) for r in rows))
    # Padding rows (to the batch bucket) hold one token so they stay well-defined.
    filler = [np.asarray([pad_id], np.int32)] * (batch - len(rows))
    ids, mask = _left_pad(list(rows) + filler, length, batch, pad_id)
    return tf.constant(ids), tf.constant(mask)


def _programs(model) -> DecodePrograms:
    if getattr(model, "_decode_programs", None) is None:
        model._decode_programs = DecodePrograms(model)
    return model._decode_programs


def _prefill(model, config, rows, budget, pad_id, prefill_kind, decode_kind):
    """Run a bucket's prefill program, with its decode program compiling in
    the background on the bucket's first call. Returns the prefill's result,
    the decode program and the parameters both take."""
    ids, mask = _batch_inputs(rows, pad_id)
    params = _params(config, budget, model.config.vocab_size, pad_id)
    programs = _programs(model)
    key = lambda kind: _program_key(config, kind, ids.shape[0], ids.shape[1], budget)  # noqa: E731
    prefill = programs.get(key(prefill_kind))
    compiling = programs.compile_ahead(key(decode_kind), prefill, (ids, mask, params))
    prefilled = prefill(ids, mask, params)
    if compiling is not None:
        compiling.result()  # re-raises anything the compilation raised
    return prefilled, programs.get(key(decode_kind)), params


def _run_sampling(model, config, rows, budget, pad_id, streamer):
    decode_kind = "step" if streamer is not None else "loop"
    state, decode, params = _prefill(model, config, rows, budget, pad_id, "prefill", decode_kind)
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
    prefilled, search, params = _prefill(model, config, rows, budget, pad_id, "beam_prefill", "beam")
    sequences, _scores, lengths, _steps = search(prefilled, params)
    n = config.num_return_sequences
    sequences, lengths = sequences.numpy()[: len(rows), :n], lengths.numpy()[: len(rows), :n]
    width = int(lengths.max())
    tokens = sequences[:, :, :width].reshape(len(rows) * n, width)
    return tokens, lengths.reshape(-1)


def _format_outputs(model, prompts, rows, tokens, lengths, repeat, pad_id, config):
    """Ids in: prompt (left-padded) followed by the new tokens, as the same
    type. Strings in: the prompt text followed by the generated text, cut at
    the stop token."""
    if lengths is not None:  # beam hypotheses: pad past each one's end
        columns = np.arange(tokens.shape[1])[None]
        tokens = np.where(columns < lengths[:, None], tokens, pad_id)
    prompt_rows = [r for r in rows for _ in range(repeat)]
    if prompts.kind in ("str", "strs"):
        per_prompt = len(tokens) // len(prompts.texts)
        stops = set(config.stop_ids())
        texts = []
        for i, new in enumerate(tokens):
            cut = next((j for j, t in enumerate(new) if t in stops), len(new))
            texts.append(prompts.texts[i // per_prompt] + model.tokenizer.decode(new[:cut].tolist()))
        return texts[0] if prompts.kind == "str" and len(texts) == 1 else texts
    prompt_ids, _ = _left_pad(prompt_rows, max(len(r) for r in prompt_rows), len(prompt_rows), pad_id)
    result = np.concatenate([prompt_ids, tokens.astype(np.int32)], axis=1)
    return tf.constant(result) if prompts.kind == "tf" else result
