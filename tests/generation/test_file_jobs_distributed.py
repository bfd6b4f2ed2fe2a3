"""`generate_file` and evaluation under every strategy, against one device:
MirroredStrategy over 2 logical CPU devices and MultiWorkerMirroredStrategy
with 2 worker processes on 127.0.0.1 write the same file byte for byte as
one device (with other batch sizes, so other batch compositions); evaluation reports the same under 1 and 2 replicas; a run killed
with SIGKILL mid-file, then run again with the same arguments, ends with
the file of an uninterrupted run.

Each run is a process of its own (a strategy and its devices are set once
per process), all started at once while this process makes the one-device
references. A process costs seconds of CPU (TensorFlow's import, a
compilation), so the mirrored one does all the mirrored work: it writes the
short file, evaluates, then is killed while writing the long file; the
rerun is a `generate_file` call here with the same arguments (the command
line calls the same function), whose programs are compiled already.
"""

import json
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from cluster_support import free_ports, quiet_env, worker_env
from file_jobs_support import SETTINGS, many_prompts, write_jsonl

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
ROWS_BEFORE_KILL = 6
LONG_FILE_ROWS = 48

PASSAGES = ["She fed the animal that purred on her lap every night. It was her cat",
            "The dog barked at the mailman again, and everyone knew it was the dog",
            "Whiskers and a long tail: she was sure it was a cat"]
CANDIDATES = ["dog", "cat", "bird", "garden", "house", "tree", "boy", "girl", "mouse", "horse"]


def cbt_text(answers):
    return "\n".join("".join(f"{i} Sentence {i} of the story , about a garden .\n"
                             for i in range(1, 21))
                     + f"21 `` Look , '' said Tom , `` the XXXXX is sleeping . ''\t{answer}\t\t"
                       f"{'|'.join(CANDIDATES)}\n" for answer in answers)


def generate_command(checkpoint, prompts, out, *flags):
    return [sys.executable, str(REPO / "main.py"), "--mode=generate", f"--model={checkpoint}",
            f"--prompts_file={prompts}", f"--output_file={out}",
            f"--seed={SETTINGS['seed']}", f"--max_new_tokens={SETTINGS['max_new_tokens']}", *flags]


MIRRORED = """
import dataclasses, json
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import tfgpt2
from tfgpt2.distribute import replicas
from tfgpt2.evaluation import tasks
root = {root!r}
mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
assert replicas.Replicas(mirrored).num_replicas == 2
model = tfgpt2.GPT2LMHeadModel.from_pretrained({checkpoint!r})
tfgpt2.generate_file(model, root + "/prompts.jsonl", root + "/mirrored.jsonl", strategy=mirrored,
                     batch_size=3, progress=False, **{settings!r})
reports = {{}}
for task, data, options in [("text", root + "/text.txt", dict(stride=24, batch_size=2)),
                            ("lambada", root + "/lambada_test.jsonl", dict(batch_size=2)),
                            ("cbt-cn", root + "/cbtest_CN_test_2500ex.txt", {{}})]:
    loaded = tasks.load_task_data(task, data)
    one = tasks.run_task(model, loaded, **options)
    with replicas.using(mirrored):
        two = tasks.run_task(model, loaded, **options)
    reports[task] = [dataclasses.asdict(one), dataclasses.asdict(two)]
with open(root + "/reports.json", "w") as f:
    json.dump(reports, f)
# Killed in here by the test.
tfgpt2.generate_file(model, root + "/many.txt", root + "/killed.jsonl", strategy=mirrored,
                     batch_size=3, progress=False, **{settings!r})
"""


def kill_mid_file(process, output: Path, report: dict):
    """SIGKILL `process` once `output` holds ROWS_BEFORE_KILL rows."""
    deadline = time.time() + 600
    while process.poll() is None and time.time() < deadline:
        if output.exists() and output.read_bytes().count(b"\n") >= ROWS_BEFORE_KILL:
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.005)
    report["returncode"] = process.wait()
    report["rows"] = output.read_bytes().count(b"\n") if output.exists() else 0


@pytest.fixture(scope="module")
def runs(tiny_checkpoint, tmp_path_factory, request):
    """Start the mirrored process (a thread kills it once it writes the long
    file) and the two workers; meanwhile make the one-device references."""
    import tfgpt2

    root = tmp_path_factory.mktemp("file_jobs_distributed")
    prompts = write_jsonl(root / "prompts.jsonl")
    many = root / "many.txt"
    many.write_text(many_prompts(LONG_FILE_ROWS), encoding="utf-8")
    (root / "text.txt").write_text("It was the best of times, it was the worst of times. " * 30,
                                   encoding="utf-8")
    (root / "lambada_test.jsonl").write_text(
        "".join(json.dumps({"text": p}) + "\n" for p in PASSAGES), encoding="utf-8")
    (root / "cbtest_CN_test_2500ex.txt").write_text(cbt_text(["cat", "dog", "tree"]),
                                                    encoding="utf-8")
    mirrored = subprocess.Popen(
        [sys.executable, "-c", MIRRORED.format(root=str(root), checkpoint=str(tiny_checkpoint),
                                               settings=SETTINGS)],
        cwd=REPO, stdout=(root / "mirrored.log").open("wb"), stderr=subprocess.STDOUT,
        env=quiet_env())
    kill = {}
    killer = threading.Thread(target=kill_mid_file, args=(mirrored, root / "killed.jsonl", kill))
    killer.start()
    ports = free_ports(2)
    workers = [subprocess.Popen(
        generate_command(tiny_checkpoint, prompts, root / "workers.jsonl",
                         "--strategy=multi_worker", "--batch_size=2"),
        cwd=REPO, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        env=worker_env(ports, i)) for i in range(2)]

    # Asked for only now, so that they run while the other processes do.
    model = request.getfixturevalue("file_model")
    shutil.copy(request.getfixturevalue("reference")[2], root / "one.jsonl")
    tfgpt2.generate_file(model, many, root / "many_one.jsonl", batch_size=4, progress=False,
                         **SETTINGS)
    killer.join()
    return dict(root=root, model=model, kill=kill, workers=workers, outputs={})


def finished(runs, process, timeout=600):
    """The process's output once it has ended, which must be with success."""
    if process.pid not in runs["outputs"]:
        runs["outputs"][process.pid] = process.communicate(timeout=timeout)[0]
    output = runs["outputs"][process.pid]
    assert process.returncode == 0, output[-3000:]
    return output


def test_sigkill_mid_file_then_the_same_arguments_complete_it(runs):
    import tfgpt2

    log = (runs["root"] / "mirrored.log").read_text(errors="replace")[-3000:]
    assert runs["kill"]["returncode"] == -signal.SIGKILL, (runs["kill"], log)
    written = runs["kill"]["rows"]
    assert ROWS_BEFORE_KILL <= written < LONG_FILE_ROWS, written  # killed mid-file
    root = runs["root"]
    result = tfgpt2.generate_file(runs["model"], root / "many.txt", root / "killed.jsonl",
                                  batch_size=4, progress=False, **SETTINGS)
    assert result.generated_rows == LONG_FILE_ROWS - written
    assert (root / "killed.jsonl").read_bytes() == (root / "many_one.jsonl").read_bytes()


def test_mirrored_over_two_devices_equals_one_device(runs):
    root = runs["root"]
    assert (root / "mirrored.jsonl").read_bytes() == (root / "one.jsonl").read_bytes()


def test_two_worker_processes_equal_one_device(runs):
    logs = [finished(runs, worker) for worker in runs["workers"]]
    root = runs["root"]
    assert (root / "workers.jsonl").read_bytes() == (root / "one.jsonl").read_bytes()
    assert "workers.jsonl: 7 rows (7 generated now" in logs[0]
    assert "the chief wrote" in logs[1]


def test_evaluation_reports_the_same_under_one_and_two_replicas(runs):
    reports = json.loads((runs["root"] / "reports.json").read_text())
    assert sorted(reports) == ["cbt-cn", "lambada", "text"]
    for task, (one, two) in reports.items():
        assert one == two, task
        assert one["total_nll"] > 0 and one["num_tokens"] > 0, task
