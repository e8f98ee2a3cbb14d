import json
import os
import socket
import subprocess
import sys

import keras
import numpy as np
import pytest

import train
from conftest import ROOT, write_npy
from datagen import BatchGenerator
from reader import DataReader
from support import distribute
from support.errors import UserError


def free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_shards_together_make_each_global_batch(tmp_path):
    reader = DataReader(write_npy(str(tmp_path / "npy"), {"a": 50, "b": 53}))
    whole = BatchGenerator(reader, "train", batch_size=8, seed=2)
    shards = [BatchGenerator(reader, "train", batch_size=8, seed=2, shard=k, num_shards=2) for k in (0, 1)]
    assert len(shards[0]) == len(shards[1]) == len(whole.order()) // 8
    for index in range(len(shards[0])):
        parts = [set(s.order()[index * 4:(index + 1) * 4]) for s in shards]
        assert not parts[0] & parts[1]
        assert parts[0] | parts[1] == set(whole.order()[index * 8:(index + 1) * 8])
    with pytest.raises(UserError, match="batch_size 9 does not split over 2 processes"):
        BatchGenerator(reader, batch_size=9, num_shards=2)


def test_data_parallel_takes_whole_batches_only(tmp_path):
    """Each device takes an equal share of a batch, so a last partial batch is dropped, in training and validation."""
    reader = DataReader(write_npy(str(tmp_path / "npy"), {"a": 50, "b": 53}))
    val = BatchGenerator(reader, "val", batch_size=8, whole_batches=True)
    assert len(val) == len(val.indices) // 8 and [len(val[i][0]) for i in range(len(val))] == [8] * len(val)
    with pytest.raises(UserError, match=f"has {len(val.indices)} items, fewer than one batch of 64"):
        BatchGenerator(reader, "val", batch_size=64, whole_batches=True)


def test_cluster_from_flags_tf_config_or_nothing():
    assert distribute.cluster_from(environ={}) == distribute.Cluster(0, 1, None)
    assert distribute.cluster_from("h:1", 3, 2, environ={}) == distribute.Cluster(2, 3, "h:1")
    tf_config = {"cluster": {"chief": ["c:5"], "worker": ["w0:5", "w1:5"]}, "task": {"type": "worker", "index": 1}}
    assert distribute.cluster_from(environ={"TF_CONFIG": json.dumps(tf_config)}) == distribute.Cluster(2, 3, "c:5")
    with pytest.raises(UserError, match="TF_CONFIG is not a cluster spec"):
        distribute.cluster_from(environ={"TF_CONFIG": "{}"})
    with pytest.raises(UserError, match="process id 4 is not in 0..1"):
        distribute.cluster_from("h:1", 2, 4, environ={})
    with pytest.raises(UserError, match="need --coordinator_address"):
        distribute.cluster_from(None, 2, 0, environ={})


@pytest.mark.skipif(keras.backend.backend() == "jax", reason="checks the message on other backends")
def test_data_parallel_needs_the_jax_backend(tmp_path, capsys):
    data = write_npy(str(tmp_path / "npy"), {"a": 10, "b": 10})
    with pytest.raises(SystemExit) as stop:
        train.main(["--data", data, "--save_to", str(tmp_path / "run"), "--distribute", "data_parallel"])
    assert stop.value.code == 2 and "KERAS_BACKEND=jax" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_two_processes_train_one_run_on_disjoint_items_to_identical_weights(tmp_path):
    pytest.importorskip("jax")
    data = write_npy(str(tmp_path / "npy"), {"a": 60, "b": 60, "c": 60})
    run_dir = str(tmp_path / "run")
    flags = ["--data", data, "--save_to", run_dir, "--model", "logistic", "--num_epochs", "1", "--batch_size", "16",
             "--distribute", "data_parallel", "--coordinator_address", f"localhost:{free_port()}",
             "--num_processes", "2"]
    env = dict(os.environ, KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="3")
    worker = os.path.join(ROOT, "tests", "distributed_worker.py")
    processes = [subprocess.Popen([sys.executable, worker, str(tmp_path / f"p{k}.npz"), *flags, "--process_id", str(k)],
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                 for k in (0, 1)]
    outputs = [p.communicate(timeout=400)[0] for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs
    results = [np.load(tmp_path / f"p{k}.npz") for k in (0, 1)]
    seen = [set(r["seen"].tolist()) for r in results]
    assert seen[0] and seen[1] and not seen[0] & seen[1]
    train_items = len(BatchGenerator(DataReader(data), "train").indices)
    assert len(seen[0] | seen[1]) == train_items // 16 * 16
    assert np.array_equal(results[0]["weights"], results[1]["weights"])
    assert sorted(os.listdir(tmp_path)) == ["npy", "p0.npz", "p1.npz", "run"]
    model = keras.saving.load_model(os.path.join(run_dir, "best.keras"), compile=False)
    assert model.predict(np.zeros((1, 28, 28, 1), np.float32), verbose=0).shape == (1, 3)
    assert json.load(open(os.path.join(run_dir, "config.json")))["num_processes"] == 2
