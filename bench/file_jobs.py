"""File generation throughput: rows/s and tokens/s of `generate_file` for
the same prompts at several batch sizes, in one process and with 2 worker
processes (MultiWorkerMirroredStrategy on 127.0.0.1), in one run; and the
check that every layout wrote the same file byte for byte.

    python bench/file_jobs.py                                # 256 prompts, batches 1, 8, 32
    python bench/file_jobs.py --preset=gpt2-medium --rows=64

Protocol: fp32, a seeded random GPT-2 (`--preset`, default the 124M
`gpt2`: Medium at batch 1 over 256 prompts takes most of an hour on two
cores) written by `save_pretrained`; prompts of 4-6 tokens; top-k 50
sampling with --seed=0, `--max_new_tokens` each (a random model rarely
stops early). Each configuration runs in fresh processes: a warm-up call on
one batch of the same shapes per worker (compilation, reported on its own),
then the timed call over all rows (the fingerprint's weight digest and the
chief's detokenizing and writing included). Tokens/s counts generated tokens. With 2 workers
each process gets one of the machine's cores' worth of work and the time is
the chief's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from absl import app, flags  # noqa: E402

from bench_support import random_checkpoint  # noqa: E402
from cluster_support import free_ports, quiet_env, worker_env  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("batch_sizes", ["1", "8", "32"], "Rows per decode call.")
flags.DEFINE_integer("rows", 256, "Prompts in the file.")
flags.DEFINE_integer("max_new_tokens", 16, "New tokens per prompt.")
flags.DEFINE_string("preset", "gpt2", "Model size (a GPT2Config preset), random weights.")
flags.DEFINE_string("checkpoint_dir", None, "Where the random checkpoint is kept "
                    "(default: a directory under the system's temp dir).")
flags.DEFINE_list("workers", ["1", "2"], "Worker processes per configuration.")

RUN = """
import json, sys, time
import tfgpt2
from tfgpt2.distribute.strategy import make_strategy
checkpoint, prompts, warmup, out, batch, new_tokens, strategy = sys.argv[1:]
strategy = make_strategy(strategy)
model = tfgpt2.GPT2LMHeadModel.from_pretrained(checkpoint)
settings = dict(batch_size=int(batch), max_new_tokens=int(new_tokens), seed=0, progress=False,
                strategy=strategy)
began = time.perf_counter()
tfgpt2.generate_file(model, warmup, out + ".warmup", **settings)
warm = time.perf_counter() - began
began = time.perf_counter()
result = tfgpt2.generate_file(model, prompts, out, **settings)
seconds = time.perf_counter() - began
if result.wrote_output:
    print("RESULT " + json.dumps(dict(warmup=warm, seconds=seconds, rows=result.generated_rows,
                                      tokens=result.generated_tokens)))
"""


def run(checkpoint, work: Path, batch: int, workers: int) -> dict:
    out = work / f"out_b{batch}_w{workers}.jsonl"
    args = [str(checkpoint), str(work / "prompts.txt"), str(work / f"warmup{batch}.txt"), str(out),
            str(batch), str(FLAGS.max_new_tokens), "one_device" if workers == 1 else "multi_worker"]
    path = {"PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    ports = free_ports(workers)
    processes = [subprocess.Popen(
        [sys.executable, "-c", RUN, *args], text=True, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, env=(worker_env(ports, i) if workers > 1 else quiet_env()) | path)
        for i in range(workers)]
    outputs = [p.communicate() for p in processes]
    for process, (stdout, stderr) in zip(processes, outputs):
        if process.returncode:
            raise RuntimeError(f"batch {batch}, {workers} workers failed:\n{stderr[-3000:]}")
    line = next(line for stdout, _ in outputs for line in stdout.splitlines()
                if line.startswith("RESULT "))
    return dict(json.loads(line[len("RESULT "):]), output=out.read_bytes())


def main(argv):
    del argv
    checkpoint_dir = FLAGS.checkpoint_dir or os.path.join(tempfile.gettempdir(),
                                                          f"tfgpt2-bench-random-{FLAGS.preset}")
    from tfgpt2 import GPT2Config

    checkpoint = random_checkpoint(checkpoint_dir, GPT2Config.from_preset(FLAGS.preset),
                                   f"GPT-2 ({FLAGS.preset})")
    work = Path(tempfile.mkdtemp(prefix="tfgpt2-bench-file-jobs-"))
    words = ["The", "river", "Once", "upon", "a", "time", "in", "the", "city", "of", "glass"]
    prompts = [" ".join(words[(i + j) % len(words)] for j in range(3 + i % 3))
               for i in range(FLAGS.rows)]
    (work / "prompts.txt").write_text("\n".join(prompts) + "\n", encoding="utf-8")
    batches = [int(b) for b in FLAGS.batch_sizes]
    most_workers = max(int(w) for w in FLAGS.workers)
    for batch in batches:  # a batch of the same shapes per worker, to compile on
        warmup = prompts[:batch * most_workers]
        (work / f"warmup{batch}.txt").write_text("\n".join(warmup) + "\n", encoding="utf-8")
    print(f"uptime: {os.popen('uptime').read().strip()}")
    print(f"{FLAGS.rows} prompts, {FLAGS.max_new_tokens} new tokens each, random {FLAGS.preset}, "
          f"fp32, top-k 50 sampling, seed 0")
    print("| workers | batch | rows/s | tokens/s | timed s | warm-up s (compile) |")
    print("|---|---|---|---|---|---|")
    files = {}
    for workers in (int(w) for w in FLAGS.workers):
        for batch in batches:
            result = run(checkpoint, work, batch, workers)
            files[(workers, batch)] = result["output"]
            print(f"| {workers} | {batch} | {result['rows'] / result['seconds']:.2f} | "
                  f"{result['tokens'] / result['seconds']:.1f} | {result['seconds']:.1f} | "
                  f"{result['warmup']:.1f} |", flush=True)
    reference = next(iter(files.values()))
    same = all(data == reference for data in files.values())
    print(f"every layout wrote the same file byte for byte: {same}")
    print(f"uptime: {os.popen('uptime').read().strip()}")
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    app.run(main)
