"""Data-parallel training over local devices and over several processes or machines, on Keras 3's own API.

TensorFlow's MultiWorkerMirroredStrategy fails with Keras 3 `model.fit` (keras-team/keras issue 20585), so
multi-process training runs on the JAX backend: `jax.distributed` joins the processes (gloo collectives on
CPU), `keras.distribution.DataParallel` replicates the model over every device of every process, and each
process feeds its own shard of every batch. Single-process runs need none of this.
"""
import json
import os
from dataclasses import dataclass

from support.errors import UserError
from support.requirements import keras_backend

STRATEGIES = ("none", "data_parallel")


@dataclass(frozen=True)
class Cluster:
    """Where this process stands: which of how many, and the coordinator they all join."""

    process_id: int = 0
    num_processes: int = 1
    coordinator_address: str = None

    @property
    def is_chief(self):
        return self.process_id == 0


def from_tf_config(text):
    """A Cluster from TF_CONFIG as cloud training services set it: the chief (else worker 0) coordinates."""
    try:
        spec = json.loads(text)
        hosts = spec["cluster"].get("chief", []) + spec["cluster"].get("worker", [])
        task = spec["task"]
        offset = len(spec["cluster"].get("chief", [])) if task["type"] == "worker" else 0
        return Cluster(offset + int(task["index"]), len(hosts), hosts[0])
    except (ValueError, KeyError, TypeError, IndexError) as error:
        raise UserError(f"TF_CONFIG is not a cluster spec ({error!r}); expected "
                        f'{{"cluster": {{"worker": ["host:port", ...]}}, "task": {{"type": "worker", "index": 0}}}}')


def cluster_from(coordinator_address=None, num_processes=None, process_id=None, environ=os.environ):
    """Flags first, then TF_CONFIG, else a single process."""
    if num_processes is not None or coordinator_address is not None or process_id is not None:
        cluster = Cluster(process_id or 0, num_processes or 1, coordinator_address)
    elif environ.get("TF_CONFIG"):
        cluster = from_tf_config(environ["TF_CONFIG"])
    else:
        cluster = Cluster()
    if cluster.num_processes < 1 or not 0 <= cluster.process_id < cluster.num_processes:
        raise UserError(f"process id {cluster.process_id} is not in 0..{cluster.num_processes - 1}")
    if cluster.num_processes > 1 and not cluster.coordinator_address:
        raise UserError("several processes need --coordinator_address host:port (the same on every process)")
    return cluster


def check(mode, cluster):
    """What start() would refuse, refused before anything is written or joined."""
    if mode not in STRATEGIES:
        raise UserError(f"unknown --distribute '{mode}'; choose from: {', '.join(STRATEGIES)}")
    if mode == "none" and cluster.num_processes > 1:
        raise UserError("several processes were given; add --distribute data_parallel")
    if mode != "none" and keras_backend() != "jax":
        raise UserError("--distribute data_parallel runs on the JAX backend: pip install -r "
                        "requirements-distributed.txt and set KERAS_BACKEND=jax")


def start(mode, cluster, batch_size):
    """Join the processes and set Keras' distribution, before any model is built; each device takes an equal
    share of every batch."""
    check(mode, cluster)
    if mode == "none":
        return
    import jax
    import keras

    if cluster.num_processes > 1:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(cluster.coordinator_address, cluster.num_processes, cluster.process_id)
    devices = keras.distribution.list_devices()
    if batch_size % len(devices):
        raise UserError(f"--batch_size {batch_size} does not split over the {len(devices)} devices of "
                        f"--distribute data_parallel; use a multiple of {len(devices)}")
    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices, auto_shard_dataset=False))
    print(f"--distribute data_parallel: the model is replicated on {len(devices)} device(s) of "
          f"{cluster.num_processes} process(es)")
