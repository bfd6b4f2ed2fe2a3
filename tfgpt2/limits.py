"""The rules every runtime applies to a prompt before decoding, written
once: `generate`, the exported SavedModel (through `packing`) and the LiteRT
runner. Plain Python, so the runner applies them without TensorFlow.

- An empty prompt starts from `<|endoftext|>`, as transformers does.
- The new tokens must leave room for at least one prompt token in the
  context (the model's, or an artifact's cache), and a longer prompt is
  refused unless asked to keep its last tokens.
"""

from __future__ import annotations


def start_empty(ids: list, bos_token_id: int) -> list:
    """`ids`, or `[bos_token_id]` for an empty prompt."""
    return list(ids) if len(ids) else [bos_token_id]


def room_for_prompt(new_tokens: int, context: int, what: str = "context") -> int:
    """How many prompt tokens fit beside `new_tokens` new ones in `context`
    positions; an error if not even one does."""
    if new_tokens >= context:
        raise ValueError(f"max_new_tokens={new_tokens} leaves no room for the prompt in the "
                         f"{what} of {context} tokens; lower max_new_tokens.")
    return context - new_tokens


def check_prompt_fits(prompt_length: int, new_tokens: int, context: int, truncate: bool,
                      what: str = "context") -> int:
    """The most prompt tokens that fit beside `new_tokens` new ones; an
    error if a prompt of `prompt_length` is longer and `truncate` is off."""
    room = room_for_prompt(new_tokens, context, what)
    if prompt_length > room and not truncate:
        raise ValueError(
            f"A prompt of {prompt_length} tokens plus {new_tokens} new tokens exceeds the {what} "
            f"of {context}. Shorten the prompt, lower max_new_tokens, or pass "
            "truncate_prompt=True to keep the prompt's last tokens.")
    return room
