"""A tiny GPT-2 with GPT-2's vocabulary whose next-token distribution is
rigged: with the final LayerNorm's gain at 0 its output is its bias for
every position, so logits = beta @ wte^T whatever the context. Probabilities
are then known in closed form (numpy), and chosen tokens can be made the
most likely."""

from __future__ import annotations

import numpy as np
from model_support import small_config
from tokenizer_support import oracle_ids

VOCAB = 50257

# WikiText's `wiki.test.tokens` format: every line starts and ends with a
# space, blank lines are a lone space, headings are spaced `=` runs, numbers
# and hyphenated words carry @,@ @.@ @-@, punctuation and clitics are tokens.
WIKITEXT = (
    " \n"
    " = Valkyria Chronicles III = \n"
    " \n"
    " Senjō no Valkyria 3 : <unk> Chronicles ( Japanese : 戦場のヴァルキュリア3 ) , commonly "
    "referred to as Valkyria Chronicles III outside Japan , is a tactical role @-@ playing "
    "video game developed by Sega and Media.Vision for the PlayStation Portable . \n"
    " \n"
    " = = Gameplay = = \n"
    " \n"
    " The game 's battle system is carried over from the first game . It sold 102 @,@ 779 "
    "copies in its first week and was rated 8 @.@ 5 out of 10 ; \" It was a great success , \" "
    "said the producer , and the players ' votes agreed ! \n"
    " = = = Plot = = = \n"
)
WIKITEXT_DETOKENIZED = (
    "\n"
    "= Valkyria Chronicles III =\n"
    "\n"
    "Senjō no Valkyria 3: <unk> Chronicles (Japanese: 戦場のヴァルキュリア3), commonly "
    "referred to as Valkyria Chronicles III outside Japan, is a tactical role-playing "
    "video game developed by Sega and Media.Vision for the PlayStation Portable.\n"
    "\n"
    "== Gameplay ==\n"
    "\n"
    "The game's battle system is carried over from the first game. It sold 102,779 "
    "copies in its first week and was rated 8.5 out of 10; \"It was a great success,\" "
    "said the producer, and the players' votes agreed!\n"
    "=== Plot ===\n"
)

# Mikolov's `ptb.test.txt`: lower case, no punctuation, N for numbers,
# clitics split, a space at both ends of each line.
PTB = (
    " no it was n't a good year for the company \n"
    " i 'm sure the $ N million deal 's terms were <unk> by N analysts \n"
    " mr. <unk> said investors ' shares they 've held since N N would be sold \n"
)
PTB_DETOKENIZED = (
    "No it wasn't a good year for the company\n"
    "I'm sure the $1 million deal's terms were <unk> by 1 analysts\n"
    "Mr. <unk> said investors' shares they've held since 1 1 would be sold\n"
)

# The One Billion Word benchmark's heldout files: one sentence per line,
# case kept, punctuation and clitics spaced.
LM1B = (
    "He said : \" It does n't matter , \" and left the room .\n"
    "Shares of the company rose 5 % on Tuesday ( after the report ) .\n"
    "The players ' union has n't agreed ; talks resume Friday !\n"
)
LM1B_DETOKENIZED = (
    "He said: \"It doesn't matter,\" and left the room.\n"
    "Shares of the company rose 5% on Tuesday (after the report).\n"
    "The players' union hasn't agreed; talks resume Friday!\n"
)


def rigged_model(favoured: dict[str, float] | None = None, seed: int = 0):
    """`favoured` maps single-token strings (e.g. " cat") to their logit;
    every other token's logit is small and random."""
    from tfgpt2 import GPT2LMHeadModel

    config = small_config(vocab_size=VOCAB, n_positions=64, bos_token_id=50256,
                          eos_token_id=50256)
    model = GPT2LMHeadModel.from_config(config, seed=seed)
    wte = model.embeddings.wte.numpy()
    beta = np.zeros(config.n_embd, np.float32)
    beta[0] = 1.0
    for text, logit in (favoured or {}).items():
        [token] = oracle_ids(text)
        wte[token, 0] = logit
    model.embeddings.wte.assign(wte)
    model.ln_f.gamma.assign(np.zeros(config.n_embd, np.float32))
    model.ln_f.beta.assign(beta)
    return model


def next_token_logprobs(model) -> np.ndarray:
    """The rigged model's log-probabilities (the same at every position)."""
    logits = (model.ln_f.beta.numpy().astype(np.float64)
              @ model.embeddings.wte.numpy().astype(np.float64).T)
    logits -= logits.max()
    return logits - np.log(np.exp(logits).sum())


def nll_of(model, text: str) -> float:
    """-log p(text's tokens) under the rigged model, ids from tiktoken."""
    logp = next_token_logprobs(model)
    return -float(sum(logp[i] for i in oracle_ids(text, special_tokens=False)))
