"""A local cluster for the multi-worker tests: free ports on 127.0.0.1 and
each worker's TF_CONFIG."""

from __future__ import annotations

import json
import os
import socket


def free_ports(count):
    """Ports free on 127.0.0.1 now, for a local TF_CONFIG cluster."""
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def worker_env(ports, index: int) -> dict:
    """The environment of worker `index` of a cluster on `ports`."""
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    return {**quiet_env(), "TF_CONFIG": json.dumps({"cluster": cluster,
                                                    "task": {"type": "worker", "index": index}})}


def quiet_env() -> dict:
    """This environment without TF_CONFIG and with TensorFlow's C++ logs quiet."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    return {**env, "TF_CPP_MIN_LOG_LEVEL": "2"}
