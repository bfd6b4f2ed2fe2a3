"""`pipeline('text-generation', ...)`: the model card's entry point."""

from __future__ import annotations

import os

from tfgpt2.config import DEFAULT_PRESET

# GPT-2's config.json carries these for the text-generation task
# (task_specific_params): sample, up to 50 tokens in total.
TEXT_GENERATION_DEFAULTS = {"do_sample": True, "max_length": 50}


class TextGenerationPipeline:
    """Callable like transformers' pipeline: a string gives a list of
    `{'generated_text': ...}` dicts (one per returned sequence); a list of
    strings gives one such list per prompt."""

    def __init__(self, model, tokenizer=None):
        self.model = model
        if tokenizer is not None:
            model.tokenizer = tokenizer
        self.tokenizer = model.tokenizer

    def __call__(self, text_inputs, return_full_text: bool = True, **generate_kwargs):
        single = isinstance(text_inputs, str)
        prompts = [text_inputs] if single else list(text_inputs)
        if not prompts or not all(isinstance(p, str) for p in prompts):
            raise TypeError("The text-generation pipeline takes a string or a list of strings.")
        settings = {**TEXT_GENERATION_DEFAULTS, **generate_kwargs}
        if "max_new_tokens" in generate_kwargs and "max_length" not in generate_kwargs:
            settings.pop("max_length")
        texts = self.model.generate(prompts, **settings)
        per_prompt = len(texts) // len(prompts)
        results = []
        for i, prompt in enumerate(prompts):
            group = texts[i * per_prompt:(i + 1) * per_prompt]
            if not return_full_text:
                group = [t[len(prompt):] for t in group]
            results.append([{"generated_text": t} for t in group])
        return results[0] if single else results


def pipeline(task: str = "text-generation", model=DEFAULT_PRESET, tokenizer=None, **model_kwargs):
    """The model card's entry point, as transformers' `pipeline`.

    Args:
      task: "text-generation" (the one task GPT-2 serves).
      model: a hub name (`gpt2-medium`, `org/name`), a checkpoint directory,
        or a `GPT2LMHeadModel`.
      tokenizer: a `GPT2Tokenizer`, a name or directory for one, or None for
        the model's own.
      **model_kwargs: passed to `GPT2LMHeadModel.from_pretrained`.

    Returns:
      A callable: `generator(text or list of texts, **settings)` returns,
      per prompt, a list of `{"generated_text": ...}` (prompt included unless
      `return_full_text=False`). It samples with GPT-2's task defaults
      (`do_sample=True`, `max_length=50`); settings are `GenerationConfig`'s.

    Example:
        from tfgpt2 import pipeline, set_seed
        generator = pipeline('text-generation', model='gpt2-medium')
        set_seed(42)
        generator("Hello, I'm a language model,", max_length=30, num_return_sequences=5)
    """
    if task != "text-generation":
        raise ValueError(f"tfgpt2 provides the 'text-generation' pipeline, not {task!r}.")
    from tfgpt2.modeling.model import GPT2LMHeadModel
    from tfgpt2.tokenizer.hf_api import GPT2Tokenizer

    if isinstance(model, (str, os.PathLike)):
        model = GPT2LMHeadModel.from_pretrained(model, **model_kwargs)
    elif not isinstance(model, GPT2LMHeadModel):
        raise TypeError("model must be a hub name, a checkpoint directory or a GPT2LMHeadModel, "
                        f"got {type(model).__name__}.")
    if isinstance(tokenizer, (str, os.PathLike)):
        tokenizer = GPT2Tokenizer.from_pretrained(tokenizer)
    return TextGenerationPipeline(model, tokenizer)
