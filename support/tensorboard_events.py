"""TensorBoard's view of a run, written without TensorFlow: each epoch's metrics as an event file of its own.

Keras' TensorBoard callback writes through TensorFlow's summary writer, which keeps its files open and recreates
one that was moved; but a new run folder is written under a hidden name and renamed once its first epoch is done
(folders.py), and on the JAX backend a run imports no TensorFlow at all. An event file is a TFRecord file of Event
protos, and TensorBoard reads every events.out.tfevents.* file of a folder, in name order; so each epoch's scalars
go, as Keras names them (epoch_loss, epoch_accuracy, ...), into one small file per split, written whole.
"""
import os
import socket
import time

from tensorboard.compat.proto import event_pb2, summary_pb2

from support import storage
from support.tfrecord_framing import framed

SPLITS = (("train", ""), ("validation", "val_"))  # folder, and the prefix its metrics have in Keras' logs


def write_epoch(logs_folder, epoch, logs):
    """logs_folder/{train,validation}/events.out.tfevents.<time>.<epoch>.<host>: the epoch's metrics."""
    now = time.time()
    for split, prefix in SPLITS:
        values = [summary_pb2.Summary.Value(tag=f"epoch_{key[len(prefix):]}", simple_value=float(value))
                  for key, value in sorted(logs.items())
                  if key.startswith(prefix) and (prefix or not key.startswith(SPLITS[1][1]))]
        events = [event_pb2.Event(wall_time=now, file_version="brain.Event:2"),
                  event_pb2.Event(wall_time=now, step=epoch, summary=summary_pb2.Summary(value=values))]
        name = f"events.out.tfevents.{int(now)}.{epoch:06d}.{socket.gethostname()}"
        storage.write(os.path.join(logs_folder, split, name), b"".join(framed(e.SerializeToString()) for e in events))
