"""Which `tf.distribute` strategy runs the training, generation or evaluation.

`auto`: MultiWorkerMirroredStrategy when `TF_CONFIG` names more than one
task, MirroredStrategy when this machine has several GPUs, else
OneDeviceStrategy (the GPU if there is one). The strategies are TF's own;
the same command runs under each.
"""

from __future__ import annotations

import json
import os


def cluster_size() -> int:
    """Tasks named in TF_CONFIG's cluster (workers and chief); 1 without it."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return 1
    try:
        cluster = json.loads(raw).get("cluster", {})
    except (ValueError, AttributeError) as err:
        raise ValueError(f"TF_CONFIG is not valid JSON ({err}); see "
                         "https://www.tensorflow.org/guide/distributed_training.") from None
    return sum(len(cluster.get(kind, [])) for kind in ("chief", "worker"))


def make_strategy(name: str = "auto"):
    """The strategy `name` asks for (see the module docstring for `auto`)."""
    import tensorflow as tf

    if name == "auto":
        if cluster_size() > 1:
            name = "multi_worker"
        elif len(tf.config.list_logical_devices("GPU")) > 1:
            name = "mirrored"
        else:
            name = "one_device"
    if name == "multi_worker":
        if cluster_size() < 2:
            raise ValueError("strategy=multi_worker needs TF_CONFIG naming the cluster "
                             "(at least 2 tasks) and this task's type and index.")
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "one_device":
        gpus = tf.config.list_logical_devices("GPU")
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    raise ValueError(f"Unknown strategy {name!r}.")


def is_chief(strategy) -> bool:
    """Whether this task writes the checkpoints, logs and final model."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return task_type == "chief" or (not has_chief and task_type == "worker" and task_id == 0)


def replicas_on_cpu(strategy) -> bool:
    """Whether the strategy's replicas run on CPUs (no GPU or TPU)."""
    import tensorflow as tf

    return all(tf.DeviceSpec.from_string(device).device_type == "CPU"
               for device in strategy.extended.worker_devices)
