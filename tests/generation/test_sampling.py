"""The samplers against brute force: kept sets equal a sort-based numpy
reference exactly, draws follow the renormalised distribution (chi-square),
the uniforms are uniform and reproducible, nothing compiles to a sort, and
the same code converts to TFLite builtins and runs in LiteRT.

Chi-square tests: each uses fixed seeds, so it is deterministic; a correct
sampler would fail one with probability ALPHA = 1e-3 over the choice of
seeds (its false-alarm rate), and `test_chi_square_rejects_a_wrong_distribution`
checks that the test does catch a wrong sampler.
"""

import numpy as np
import pytest
import tensorflow as tf

from tfgpt2.generation import sampling
from tfgpt2.modeling.masking import MASKED_VALUE

ALPHA = 1e-3
# float32 sums of up to 50k probabilities, and XLA's exp against numpy's,
# agree with float64 to well within this (absolute, in probability).
ROUNDING = 2e-6
MEDIUM_VOCAB = 50257


# --- the oracle: brute force in numpy, float64 ---------------------------------------------


def reference_top_k_keep(row, k):
    """Keep every logit >= the k-th largest (ties at the k-th kept)."""
    ordered = np.sort(row)[::-1]
    return row >= ordered[min(k, row.size) - 1]


def mass_strictly_above(row):
    """Per token, the probability mass (float64) of strictly larger logits."""
    x = row.astype(np.float64)
    probs = np.exp(x - x.max())
    probs /= probs.sum()
    values, inverse = np.unique(x, return_inverse=True)  # ascending
    per_value = np.bincount(inverse, weights=probs, minlength=values.size)
    above = np.concatenate([np.cumsum(per_value[::-1])[::-1][1:], [0.0]])
    return above[inverse]


def reference_top_p_keep(row, top_p):
    """Today's sort-based rule, in float64: sort descending, keep the
    positions whose preceding mass is < top_p (and the first), then every
    logit >= the smallest kept one. top_p >= 1 keeps everything."""
    if top_p >= 1.0:
        return np.ones(row.shape, bool)
    x = row.astype(np.float64)
    probs = np.exp(x - x.max())
    probs /= probs.sum()
    order = np.argsort(-x, kind="stable")
    before = np.cumsum(probs[order]) - probs[order]
    kept = before < top_p
    kept[0] = True
    return x >= x[order][kept].min()


def decision_margin(row, top_p):
    """How far the nucleus decision is from a float32 rounding coin-flip:
    min over tokens of |mass strictly above - top_p|. The most likely
    token(s) have exactly 0 above them in any precision, so they count not."""
    above = mass_strictly_above(row)
    return np.abs(above[above > 0] - top_p).min(initial=np.inf)


def adversarial_rows(vocab, seed):
    rng = np.random.default_rng(seed)
    normal = lambda scale: rng.standard_normal(vocab) * scale  # noqa: E731
    some = lambda fraction: rng.random(vocab) < fraction  # noqa: E731
    signed_zeros = np.where(some(0.5), -0.0, 0.0)
    signed_zeros[rng.choice(vocab, 5, replace=False)] = 1.0
    signed_zeros[rng.choice(vocab, 5, replace=False)] = -1.0
    one_finite = np.full(vocab, -np.inf)
    one_finite[vocab // 2] = 2.0
    rows = [
        normal(3.0),  # peaked
        normal(0.64),  # flat, like the random GPT-2 Medium of bench/decode.py
        np.round(normal(2.0)) / 2,  # many ties
        rng.integers(0, 3, vocab).astype(float),  # three values, heavy ties
        np.zeros(vocab),  # all equal
        np.full(vocab, -7.25),  # all equal, negative
        np.where(some(0.5), -np.inf, normal(1.0)),
        np.where(some(0.5), MASKED_VALUE, normal(1.0)),  # already filtered
        np.where(some(0.3), -3e38, normal(1e4)),  # huge spread, exp underflows
        signed_zeros,
        one_finite,
    ]
    return np.stack(rows).astype(np.float32)


def run(fn, mode, *args):
    """fn in a plain TF graph (the prefill) or compiled by XLA (the loop)."""
    return tf.function(fn, autograph=False, jit_compile=(mode == "xla"))(*args)


# --- kept sets ------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["graph", "xla"])
@pytest.mark.parametrize("vocab,ks", [
    (1000, [1, 2, 7, 50, 256, 257, 600, 999, 1000, 1005]),
    (MEDIUM_VOCAB, [1, 50, 257, 20000, MEDIUM_VOCAB]),
])
def test_top_k_keeps_exactly_the_reference_set(mode, vocab, ks):
    rows = adversarial_rows(vocab, seed=vocab)
    for k in ks:  # k <= 256: XLA's TopK; above: bisection; >= vocab: all
        out = run(lambda x, k=k: sampling.top_k_filter(x, k), mode, tf.constant(rows)).numpy()
        for row, filtered in zip(rows, out):
            keep = reference_top_k_keep(row, k)
            # (a logit already at MASKED_VALUE looks filtered either way)
            np.testing.assert_array_equal(filtered != MASKED_VALUE, keep & (row != MASKED_VALUE),
                                          err_msg=f"k={k}")
            np.testing.assert_array_equal(filtered[keep], row[keep])
            assert keep.sum() >= min(k, row.size)


@pytest.mark.parametrize("mode", ["graph", "xla"])
@pytest.mark.parametrize("vocab", [1000, MEDIUM_VOCAB])
def test_top_p_keeps_exactly_the_reference_set(mode, vocab):
    """Exact equality on every token whose decision is not a rounding
    coin-flip: a token with mass strictly above it within ROUNDING of top_p
    could go either way in float32 (as in today's sort-based code). Such
    tokens are excused one by one and must be few."""
    rows = adversarial_rows(vocab, seed=vocab + 1)
    keep_fn = tf.function(sampling.top_p_keep, autograph=False, jit_compile=(mode == "xla"))
    excused = 0
    for top_p in [1e-7, 0.01, 0.1, 0.5, 0.9, 0.999, 1.0]:
        kept = keep_fn(tf.constant(rows), tf.constant(top_p)).numpy()
        for row, keep in zip(rows, kept):
            above = mass_strictly_above(row)
            clear = (np.abs(above - top_p) >= ROUNDING) | (above == 0) | (top_p >= 1.0)
            np.testing.assert_array_equal(keep[clear], reference_top_p_keep(row, top_p)[clear],
                                          err_msg=f"top_p={top_p}")
            assert keep[above == 0].all()
            excused += (~clear).sum()
    assert excused <= rows.size // 1000, excused


def test_top_p_ties_and_tiny_p():
    # Probabilities 1/2, 1/4, 1/4 (exact in float): the tie at 1/4 has mass
    # 1/2 above it, so top_p=0.5 keeps one token, and 0.5 + tiny keeps all three.
    row = np.log(np.array([[2.0, 1.0, 1.0]], np.float32))
    row = np.concatenate([row, [[-np.inf]]], axis=1).astype(np.float32)
    assert sampling.top_p_keep(tf.constant(row), 0.5).numpy().tolist() == [[True, False, False,
                                                                              False]]
    assert sampling.top_p_keep(tf.constant(row), 0.5001).numpy().tolist() == [[True, True, True,
                                                                               False]]
    # Tiny top_p keeps the most likely token(s), ties included.
    tied_max = tf.constant([[3.0, 1.0, 3.0, 2.0]])
    assert sampling.top_p_keep(tied_max, 1e-9).numpy().tolist() == [[True, False, True, False]]


def test_filters_never_make_nan():
    rows = tf.constant(adversarial_rows(300, seed=5))
    for fn in (lambda x: sampling.top_k_filter(x, 3), lambda x: sampling.top_p_filter(x, 0.3),
               lambda x: sampling.process_logits(x, do_sample=True, temperature=0.5, top_k=9,
                                                 top_p=0.8)):
        assert not np.isnan(run(fn, "xla", rows).numpy()).any()


# --- draws -------------------------------------------------------------------------------


def chi_square_p_value(observed, probs):
    """P(chi-square >= statistic) for counts against probabilities. Bins
    expecting fewer than 5 draws are pooled (into the smallest bin if the
    pool itself expects fewer than 5); zero-probability tokens are checked
    apart. The survival function is the regularised upper incomplete gamma
    Q(dof / 2, statistic / 2)."""
    expected = probs * observed.sum()
    big, small = expected >= 5, (expected < 5) & (probs > 0)
    obs, exp = observed[big].astype(np.float64), expected[big]
    if small.any():
        pooled_obs, pooled_exp = observed[small].sum(), expected[small].sum()
        if pooled_exp >= 5 or not big.any():
            obs, exp = np.append(obs, pooled_obs), np.append(exp, pooled_exp)
        else:
            smallest = np.argmin(exp)
            obs[smallest] += pooled_obs
            exp[smallest] += pooled_exp
    statistic = ((obs - exp) ** 2 / exp).sum()
    dof = obs.size - 1
    return float(tf.math.igammac(tf.constant(dof / 2, tf.float64),
                                 tf.constant(statistic / 2, tf.float64)))


def expected_distribution(row, *, temperature=None, top_k=0, top_p=None, seen=None,
                          repetition_penalty=None):
    """The renormalised distribution the sampler must draw from (float64)."""
    x = row.astype(np.float64)
    if repetition_penalty is not None:
        x = np.where(seen, np.where(x > 0, x / repetition_penalty, x * repetition_penalty), x)
    if temperature is not None:
        x = x / temperature
    keep = np.ones(x.shape, bool)
    if top_k:
        keep = reference_top_k_keep(x, top_k)
    if top_p is not None:
        assert decision_margin(np.where(keep, x, MASKED_VALUE), top_p) > ROUNDING
        keep &= reference_top_p_keep(np.where(keep, x, MASKED_VALUE), top_p)
    probs = np.where(keep, np.exp(x - x.max()), 0.0)
    return probs / probs.sum()


def draw_counts(row, settings, *, rows=4096, seeds=8, seen=None):
    """Counts of `rows * seeds` draws by the XLA-compiled sampler: every
    row of a batch gets its own uniforms, so copies of one row are
    independent draws."""
    kwargs = {name: tf.constant(value) if name in ("temperature", "top_p",
                                                   "repetition_penalty") else value
              for name, value in settings.items()}

    @tf.function(jit_compile=True, autograph=False)
    def sample(logits, seed, seen):
        batch = tf.tile(logits[None], [rows, 1])
        seen_rows = tf.tile(seen[None], [rows, 1]) if "repetition_penalty" in kwargs else None
        return sampling.choose_tokens(batch, seed, seen=seen_rows, do_sample=True, **kwargs)

    seen = np.zeros(row.shape, bool) if seen is None else seen
    counts = np.zeros(row.size, np.int64)
    for step in range(seeds):
        tokens = sample(tf.constant(row), tf.constant([11, step]), tf.constant(seen)).numpy()
        counts += np.bincount(tokens, minlength=row.size)
    return counts


def distribution_row(vocab=1000, seed=0, scale=1.5):
    rng = np.random.default_rng(seed)
    row = (rng.standard_normal(vocab) * scale).astype(np.float32)
    # Ties across the top: the 5th largest value occurs 3 times.
    order = np.argsort(-row)
    row[order[5:7]] = row[order[4]]
    return row


@pytest.mark.parametrize("name,settings,row_scale", [
    ("pure", dict(), 1.5),
    ("top_k=5, tie at the 5th", dict(top_k=5), 1.5),
    ("top_k=300 (bisection)", dict(top_k=300), 1.5),
    ("top_p=0.6", dict(top_p=0.6), 1.5),
    ("top_p=0.02 on a flat row (fallback)", dict(top_p=0.02), 0.3),
    ("temperature 0.7, top_k=40, top_p=0.9, penalty", dict(
        temperature=0.7, top_k=40, top_p=0.9, repetition_penalty=1.3), 1.5),
])
def test_draws_follow_the_renormalised_distribution(name, settings, row_scale):
    row = distribution_row(scale=row_scale)
    seen = np.arange(row.size) % 3 == 0
    counts = draw_counts(row, settings, seen=seen)
    probs = expected_distribution(row, seen=seen, **settings)
    assert counts[probs == 0].sum() == 0, "drew a token outside the kept set"
    assert chi_square_p_value(counts, probs) > ALPHA


def test_nucleus_fallback_alone_follows_the_distribution(monkeypatch):
    """With no rejection draws, every row takes the bisection nucleus."""
    monkeypatch.setattr(sampling, "NUCLEUS_DRAWS", 0)
    row = distribution_row(seed=3)
    counts = draw_counts(row, dict(top_p=0.5))
    probs = expected_distribution(row, top_p=0.5)
    assert counts[probs == 0].sum() == 0
    assert chi_square_p_value(counts, probs) > ALPHA


def test_draws_over_the_medium_vocabulary():
    """Real vocabulary size: tokens in every block, the short last block
    included; the rest of the vocabulary holds negligible mass."""
    rng = np.random.default_rng(4)
    row = np.full(MEDIUM_VOCAB, -40.0, np.float32)
    live = np.concatenate([rng.choice(MEDIUM_VOCAB - 100, 60, replace=False),
                           np.arange(MEDIUM_VOCAB - 40, MEDIUM_VOCAB)])
    row[live] = rng.standard_normal(live.size).astype(np.float32)
    counts = draw_counts(row, dict(top_k=50, top_p=0.95), rows=256, seeds=32)
    probs = expected_distribution(row, top_k=50, top_p=0.95)
    assert counts[probs == 0].sum() == 0
    assert chi_square_p_value(counts, probs) > ALPHA


def spread_ties_row(vocab=1000, copies=40, seed=6):
    """The top value occurs `copies` times, spread over the whole row: with
    top_k=5 all copies are kept, though only 5 blocks of 32 are candidates."""
    rng = np.random.default_rng(seed)
    row = (rng.standard_normal(vocab) - 4.0).astype(np.float32)
    row[rng.choice(vocab, copies, replace=False)] = 1.5
    return row


def test_top_k_ties_beyond_the_candidate_blocks_are_drawn():
    row = spread_ties_row()
    counts = draw_counts(row, dict(top_k=5, top_p=0.5))
    probs = expected_distribution(row, top_k=5, top_p=0.5)
    assert (probs > 0).sum() == 40
    assert counts[probs == 0].sum() == 0
    assert chi_square_p_value(counts, probs) > ALPHA


def test_a_row_draws_the_same_whichever_path_its_neighbours_take():
    """Rows whose top-k ties reach beyond the candidate blocks draw over
    the vocabulary; the others over the candidates. Each row's token
    depends on its own logits and seed only."""
    plain, ties = distribution_row(), spread_ties_row()
    sample = tf.function(lambda x, s: sampling.choose_tokens(x, s, do_sample=True, top_k=5),
                         jit_compile=True, autograph=False)
    for step in range(4):
        seed = tf.constant([3, step])
        mixed = sample(tf.constant(np.stack([plain, ties])), seed).numpy()
        assert mixed[0] == sample(tf.constant(np.stack([plain, plain])), seed).numpy()[0]
        assert mixed[1] == sample(tf.constant(np.stack([ties, ties])), seed).numpy()[1]


def test_chi_square_rejects_a_wrong_distribution():
    row = distribution_row()
    counts = draw_counts(row, dict(temperature=0.7, top_k=40))
    assert chi_square_p_value(counts, expected_distribution(row, temperature=0.7,
                                                            top_k=40)) > ALPHA
    assert chi_square_p_value(counts, expected_distribution(row, top_k=40)) < 1e-9


def test_top_k_one_and_cold_temperature_are_greedy():
    rows = tf.constant(adversarial_rows(1000, seed=7)[[0, 1, 6, 7, 8]])  # one maximum each
    greedy = np.argmax(rows.numpy(), axis=-1)
    for settings in (dict(top_k=1), dict(temperature=tf.constant(1e-4)), dict(top_p=1e-9)):
        tokens = run(lambda x: sampling.choose_tokens(x, tf.constant([1, 2]), do_sample=True,
                                                      **settings), "xla", rows)
        np.testing.assert_array_equal(tokens.numpy(), greedy)


@pytest.mark.parametrize("mode", ["graph", "xla"])
def test_argmax_is_the_first_maximum(mode):
    rows = adversarial_rows(1000, seed=8)
    np.testing.assert_array_equal(run(sampling.argmax, mode, tf.constant(rows)).numpy(),
                                  np.argmax(rows, axis=-1))


# --- seeds ---------------------------------------------------------------------------------


def test_uniforms_are_uniform_and_independent_across_rows():
    values = np.concatenate([
        sampling.uniforms(tf.constant([seed, step]), 64, stream).numpy()
        for seed in range(4) for step in range(16) for stream in range(16)])
    assert values.min() >= 0.0 and values.max() < 1.0
    assert np.all(values * 2**24 == np.floor(values * 2**24))  # 24-bit grid
    counts = np.bincount((values * 64).astype(int), minlength=64)
    assert chi_square_p_value(counts, np.full(64, 1 / 64)) > ALPHA
    # Neighbouring rows (and so copies of a prompt) are independent: a 16 x 16
    # histogram of (row r, row r + 1) pairs is uniform.
    pairs = values.reshape(-1, 64)
    joint = (pairs[:, :-1] * 16).astype(int) * 16 + (pairs[:, 1:] * 16).astype(int)
    counts = np.bincount(joint.ravel(), minlength=256)
    assert chi_square_p_value(counts, np.full(256, 1 / 256)) > ALPHA


def test_uniforms_depend_only_on_seed_row_and_stream():
    seed = tf.constant([123, 45])
    five = sampling.uniforms(seed, 5, 3).numpy()
    np.testing.assert_array_equal(sampling.uniforms(seed, 2, 3).numpy(), five[:2])
    np.testing.assert_array_equal(run(lambda s: sampling.uniforms(s, 5, 3), "xla", seed).numpy(),
                                  five)
    assert not np.array_equal(sampling.uniforms(tf.constant([123, 46]), 5, 3).numpy(), five)
    assert not np.array_equal(sampling.uniforms(seed, 5, 4).numpy(), five)
    assert not np.array_equal(sampling.uniforms(tf.constant([124, 45]), 5, 3).numpy(), five)


@pytest.mark.parametrize("settings", [dict(top_k=50), dict(top_p=0.9),
                                      dict(temperature=0.7, top_k=40)])
def test_a_row_samples_the_same_in_any_batch_and_program(settings):
    rows = adversarial_rows(MEDIUM_VOCAB, seed=9)[:3]
    settings = {name: tf.constant(v) if isinstance(v, float) else v for name, v in settings.items()}
    fn = lambda x, s: sampling.choose_tokens(x, s, do_sample=True, **settings)  # noqa: E731
    xla = tf.function(fn, autograph=False, jit_compile=True)
    graph = tf.function(fn, autograph=False)
    for seed in (tf.constant([5, 0]), tf.constant([5, 1])):
        full = xla(tf.constant(rows), seed).numpy()
        np.testing.assert_array_equal(xla(tf.constant(rows), seed).numpy(), full)
        np.testing.assert_array_equal(xla(tf.constant(rows[:2]), seed).numpy(), full[:2])
        np.testing.assert_array_equal(graph(tf.constant(rows), seed).numpy(), full)


# --- what XLA and LiteRT get --------------------------------------------------------------


@pytest.mark.parametrize("settings", [dict(top_k=50), dict(top_p=0.9),
                                      dict(temperature=0.7, top_k=40), dict()])
def test_compiled_sampler_has_no_sort_and_no_random_ops(settings):
    """XLA's sort and philox are what made sampling slow on CPU: the
    compiled sampler must contain neither (top_k may use XLA's TopK)."""
    settings = {name: tf.constant(v) if isinstance(v, float) else v for name, v in settings.items()}
    fn = tf.function(lambda x, s: sampling.choose_tokens(x, s, do_sample=True, **settings),
                     jit_compile=True, autograph=False)
    hlo = fn.experimental_get_compiler_ir(tf.zeros([8, MEDIUM_VOCAB]),
                                          tf.constant([1, 2]))(stage="optimized_hlo")
    for op in (" sort(", " rng(", " rng-bit-generator(", " rng-get-and-update-state("):
        assert op not in hlo, op


def test_sampler_converts_to_tflite_builtins_and_matches_tf():
    from ai_edge_litert.interpreter import Interpreter

    vocab, batch = 1000, 3

    def sampler(logits, seed, temperature, top_p):
        tokens = sampling.choose_tokens(logits, seed, do_sample=True, temperature=temperature,
                                        top_k=50, top_p=top_p)
        return dict(tokens=tokens,
                    nucleus=tf.cast(sampling.top_p_keep(logits, top_p), tf.int32),  # bisection
                    top_300=sampling.top_k_filter(logits, 300),  # bisection on counts
                    uniforms=sampling.uniforms(seed, batch, 0))

    specs = [tf.TensorSpec([batch, vocab], tf.float32, name="logits"),
             tf.TensorSpec([2], tf.int32, name="seed"),
             tf.TensorSpec([], tf.float32, name="temperature"),
             tf.TensorSpec([], tf.float32, name="top_p")]
    module = tf.Module()  # a tracked function gives the .tflite a signature
    module.sample = tf.function(sampler, input_signature=specs, autograph=False)
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [module.sample.get_concrete_function()], module)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    runner = Interpreter(model_content=converter.convert()).get_signature_runner()

    rows = adversarial_rows(vocab, seed=10)[:batch]
    for seed in ([1, 0], [1, 1], [-7, 2**30]):
        inputs = dict(logits=rows, seed=np.array(seed, np.int32),
                      temperature=np.float32(0.8), top_p=np.float32(0.9))
        lite = runner(**inputs)
        ours = module.sample(*[tf.constant(inputs[spec.name]) for spec in specs])
        for name, value in ours.items():
            np.testing.assert_array_equal(lite[name], value.numpy(), err_msg=name)


# --- through generate ------------------------------------------------------------------

SAMPLED = dict(do_sample=True, top_k=50, top_p=0.9, temperature=0.8, seed=21, eos_token_id=[])


@pytest.fixture(scope="module")
def model():
    from model_support import louder_small_model

    return louder_small_model()


def test_streaming_samples_the_same_tokens_as_the_loop(model):
    prompt = np.array([[5, 17, 42, 8]])
    loop = model.generate(prompt, max_new_tokens=12, **SAMPLED)
    received = []
    model.generate(prompt, max_new_tokens=12, streamer=lambda t: received.append(t.copy()),
                   **SAMPLED)
    assert np.concatenate(received).tolist() == loop[0, 4:].tolist()


def test_a_prompt_samples_the_same_alone_or_first_in_a_batch(model):
    prompt = np.array([[5, 17, 42, 8]])
    alone = model.generate(prompt, max_new_tokens=12, **SAMPLED)
    copies = model.generate(np.repeat(prompt, 3, axis=0), max_new_tokens=12, **SAMPLED)
    np.testing.assert_array_equal(copies[0], alone[0])
    assert len({tuple(row) for row in copies.tolist()}) == 3  # copies draw independently


@pytest.mark.parametrize("mode", ["graph", "xla"])
@pytest.mark.parametrize("settings", [
    dict(temperature=1.0, top_k=0, top_p=1.0),
    dict(temperature=1.0, top_k=5, top_p=1.0),
    dict(temperature=0.7, top_k=40, top_p=0.9),
    dict(temperature=1.3, top_k=0, top_p=0.6),
])
def test_run_time_settings_draw_from_the_same_distribution(mode, settings):
    """The exported graphs' sampler (settings as tensors) draws from the
    distribution the brute-force reference gives for those settings."""
    row, rows = distribution_row(), 4096
    probs = expected_distribution(row, temperature=settings["temperature"],
                                  top_k=settings["top_k"],
                                  top_p=settings["top_p"] if settings["top_p"] < 1 else None)

    def sample(logits, seed, temperature, top_k, top_p):
        return sampling.choose_tokens_at_run_time(
            tf.tile(logits[None], [rows, 1]), seed, temperature=temperature, top_k=top_k,
            top_p=top_p)

    fn = tf.function(sample, jit_compile=mode == "xla", autograph=False)
    counts = np.zeros(row.size, np.int64)
    for step in range(4):
        tokens = fn(tf.constant(row), tf.constant([5, step]),
                    *(tf.constant(settings[k]) for k in ("temperature", "top_k", "top_p")))
        counts += np.bincount(tokens.numpy(), minlength=row.size)
    assert counts[probs == 0].sum() == 0, "drew a token outside the kept set"
    assert chi_square_p_value(counts, probs) > ALPHA


def test_run_time_temperature_zero_is_greedy():
    rows = np.stack([distribution_row(seed=s) for s in range(6)])
    tokens = sampling.choose_tokens_at_run_time(
        tf.constant(rows), tf.constant([1, 2]), temperature=tf.constant(0.0),
        top_k=tf.constant(50), top_p=tf.constant(0.9))
    assert tokens.numpy().tolist() == np.argmax(rows, axis=1).tolist()
