// GPT-2 in the browser: the tfgpt2 `.tflite` run by LiteRT.js, tokenizer
// and sampler inside the model, so this file only moves tensors between its
// signatures (the contract is in tfgpt2/export/tflite.py and
// export/README.md).
//
//   import {Gpt2} from './gpt2.js';
//   const gpt2 = await Gpt2.load('gpt2-medium.int8.tflite');
//   for await (const piece of gpt2.generate('Hello, I am', {maxNewTokens: 20})) show(piece);

import {loadAndCompile, loadLiteRt, Tensor} from '@litertjs/core';

// The order of the `metadata` signature's `sizes`.
const METADATA_FIELDS = ['n_layer', 'n_head', 'head_dim', 'vocab_size', 'cache_length',
                         'eos_token_id', 'tokenize_bytes', 'detokenize_ids', 'max_token_bytes'];

let runtime = null;  // LiteRT's wasm, loaded once per page

/** Load LiteRT's wasm from `wasmDir` (once). `threads` needs a
 *  cross-origin-isolated page (COOP/COEP headers, see serve.py). */
export async function loadRuntime(wasmDir = './node_modules/@litertjs/core/wasm/',
                                  {threads = false} = {}) {
  runtime ??= loadLiteRt(wasmDir, {threads});
  return runtime;
}

const int32 = (values, shape) => new Tensor(Int32Array.from(values), shape);
const scalarInt = (v) => new Tensor(new Int32Array([v]), []);
const scalarFloat = (v) => new Tensor(new Float32Array([v]), []);

function free(tensors) {
  for (const t of Object.values(tensors)) t.delete();
}

export class Gpt2 {
  /** Compile the `.tflite` at `url` (or an ArrayBuffer / Uint8Array). */
  static async load(model, {wasmDir, threads = false, numThreads} = {}) {
    await loadRuntime(wasmDir, {threads});
    const options = {accelerator: 'wasm'};
    if (numThreads) options.cpuOptions = {numThreads};
    const source = typeof model === 'string' ? model : new Uint8Array(model);
    const compiled = await loadAndCompile(source, options);
    const gpt2 = new Gpt2(compiled);
    await gpt2.#readMetadata();
    return gpt2;
  }

  constructor(model) {
    this.model = model;
    const names = Object.keys(model.signatures);
    for (const needed of ['decode', 'sample', 'tokenize', 'detokenize', 'metadata']) {
      if (!names.includes(needed)) {
        throw new Error(`This .tflite lacks the '${needed}' signature: export it with ` +
                        '`tfgpt2 --mode=export --format=tflite`.');
      }
    }
    const sizes = (prefix) => names.filter((n) => new RegExp(`^${prefix}\\d+$`).test(n))
        .map((n) => Number(n.slice(prefix.length))).sort((a, b) => a - b);
    this.prefillLengths = sizes('prefill_');
    // decode_<W> reads only the cache's first W positions: use the smallest that fits.
    this.decodeWindows = sizes('decode_');
    this.cache = null;
  }

  async #readMetadata() {
    const out = await this.model.run('metadata', {});
    const sizes = out.sizes.toTypedArray();
    free(out);
    METADATA_FIELDS.forEach((name, i) => { this[name] = sizes[i]; });
  }

  // --- tokenizer ------------------------------------------------------------------
  /** GPT-2's ids of `text` (at most `tokenize_bytes` UTF-8 bytes). */
  async tokenize(text) {
    const data = new TextEncoder().encode(text);
    if (data.length > this.tokenize_bytes) {
      throw new Error(`The text is ${data.length} UTF-8 bytes; this model tokenizes at most ` +
                      `${this.tokenize_bytes}.`);
    }
    if (data.length === 0) return [];
    const padded = new Int32Array(this.tokenize_bytes);
    padded.set(data);
    const inputs = {bytes: new Tensor(padded, [this.tokenize_bytes]), length: scalarInt(data.length)};
    const out = await this.model.run('tokenize', inputs);
    const count = out.count.toTypedArray()[0];
    const ids = Array.from(out.ids.toTypedArray().subarray(0, count));
    free(inputs);
    free(out);
    return ids;
  }

  /** The raw bytes of `ids` (a token may end inside a UTF-8 character). */
  async detokenizeBytes(ids) {
    const parts = [];
    for (let start = 0; start < ids.length; start += this.detokenize_ids) {
      const used = ids.slice(start, start + this.detokenize_ids);
      for (const id of used) {
        if (!Number.isInteger(id) || id < 0 || id >= this.vocab_size) {
          throw new Error(`token ids must be ints in [0, ${this.vocab_size}), got ${id}.`);
        }
      }
      const padded = new Int32Array(this.detokenize_ids);
      padded.set(used);
      const inputs = {ids: new Tensor(padded, [this.detokenize_ids]), count: scalarInt(used.length)};
      const out = await this.model.run('detokenize', inputs);
      const length = out.length.toTypedArray()[0];
      parts.push(Uint8Array.from(out.bytes.toTypedArray().subarray(0, length)));
      free(inputs);
      free(out);
    }
    const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let offset = 0;
    for (const p of parts) { all.set(p, offset); offset += p.length; }
    return all;
  }

  async detokenize(ids) {
    return new TextDecoder().decode(await this.detokenizeBytes(ids));
  }

  // --- generation -----------------------------------------------------------------
  #resetCache() {
    if (this.cache) free(this.cache);
    const shape = [1, this.n_head, this.cache_length, this.head_dim];
    const size = shape.reduce((a, b) => a * b);
    this.cache = {};
    for (let i = 0; i < this.n_layer; i++) {
      for (const kind of ['k', 'v']) {
        this.cache[`kv_cache_${kind}_${i}`] = new Tensor(new Float32Array(size), shape);
      }
    }
  }

  /** Run prefill_<T> or decode on `ids` at `start`; keeps the new cache
   *  and returns the other outputs. LiteRT.js gives every output a buffer
   *  of its own, so the model's in-place update becomes one copy here. */
  async #step(signature, ids, start, width) {
    const tokens = new Int32Array(width);
    tokens.set(ids);
    const positions = Int32Array.from({length: width}, (_, i) => start + i);
    const small = {tokens: new Tensor(tokens, [1, width]), input_pos: new Tensor(positions, [width])};
    const out = await this.model.run(signature, {...small, ...this.cache});
    free(small);
    free(this.cache);
    this.cache = {};
    const rest = {};
    for (const [name, tensor] of Object.entries(out)) {
      (name.startsWith('kv_cache_') ? this.cache : rest)[name] = tensor;
    }
    return rest;
  }

  async #prefill(ids) {
    let start = 0;
    while (start < ids.length) {
      const left = ids.length - start;
      const fitting = this.prefillLengths.filter((t) => start + t <= this.cache_length);
      if (fitting.length === 0) {  // the cache's last few slots: one token at a time
        free(await this.#step('decode', ids.slice(start, start + 1), start, 1));
        start += 1;
        continue;
      }
      const full = fitting.filter((t) => t <= left);
      const length = full.length ? Math.max(...full) : Math.min(...fitting);
      const chunk = ids.slice(start, start + length);
      free(await this.#step(`prefill_${length}`, chunk, start, length));
      start += chunk.length;
    }
  }

  /** The next token after decoding `token` at `position`. */
  async #next(token, position, settings, step) {
    const window = this.decodeWindows.find((w) => position < w);
    const {logits} = await this.#step(window ? `decode_${window}` : 'decode', [token], position, 1);
    try {
      if (settings.temperature === 0) {  // greedy: the first largest logit
        const values = logits.toTypedArray();
        let best = 0;
        for (let i = 1; i < values.length; i++) if (values[i] > values[best]) best = i;
        return best;
      }
      const inputs = {temperature: scalarFloat(settings.temperature),
                      top_k: scalarInt(settings.topK), top_p: scalarFloat(settings.topP),
                      seed: int32([settings.seed, step], [2])};
      const out = await this.model.run('sample', {logits, ...inputs});
      const next = out.next_token.toTypedArray()[0];
      free(inputs);
      free(out);
      return next;
    } finally {
      logits.delete();
    }
  }

  /** Continue `prompt`, yielding each new token's text as it comes (an
   *  empty prompt starts from <|endoftext|>). Settings mean what they mean
   *  in `GPT2LMHeadModel.generate`: `doSample: false` is greedy; the same
   *  `seed` gives the same text as the Python runner. */
  async* generate(prompt, {maxNewTokens = 40, doSample = true, temperature = 1.0, topK = 50,
                           topP = 1.0, seed = 0, onToken = null} = {}) {
    if (!Number.isInteger(maxNewTokens) || maxNewTokens < 1) {
      throw new Error(`maxNewTokens must be a positive int, got ${maxNewTokens}.`);
    }
    if (!(temperature >= 0 && topP > 0 && topP <= 1 && topK >= 0)) {
      throw new Error('temperature must be >= 0, topP in (0, 1], topK >= 0.');
    }
    let ids = await this.tokenize(prompt);
    if (ids.length === 0) ids = [this.eos_token_id];
    if (ids.length + maxNewTokens > this.cache_length) {
      throw new Error(`A prompt of ${ids.length} tokens plus ${maxNewTokens} new tokens exceeds ` +
                      `the cache of ${this.cache_length}; shorten the prompt or lower maxNewTokens.`);
    }
    const settings = {temperature: doSample ? temperature : 0, topK, topP, seed};
    this.#resetCache();
    await this.#prefill(ids.slice(0, -1));
    const decoder = new TextDecoder();
    let token = ids[ids.length - 1];
    for (let step = 0; step < maxNewTokens; step++) {
      token = await this.#next(token, ids.length - 1 + step, settings, step);
      if (onToken) onToken(token);
      if (token === this.eos_token_id) break;
      yield decoder.decode(await this.detokenizeBytes([token]), {stream: true});
    }
    const rest = decoder.decode();
    if (rest) yield rest;
  }
}
