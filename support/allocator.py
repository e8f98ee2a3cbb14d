"""Have TensorFlow keep and reuse its CPU memory instead of asking the C library for it at every step.

Fed batch by batch from Python (BatchGenerator), TensorFlow on the CPU frees and re-allocates its
activation and gradient buffers (megabytes each) every step, in many threads, and glibc hands much of that
memory back to the kernel in between: every page is then faulted in and zeroed again. On a 2-core machine
that took half of the CPU time of a photo_cnn epoch (as much system time as user time). TensorFlow's own
best-fit-with-coalescing (BFC) allocator, which it already uses on GPUs, keeps the memory and reuses it:
a photo_cnn run took a third less time and the peak memory hardly moved (`bench/cpu_settings.py` measures both).

TensorFlow reads the setting when it first allocates CPU memory, so train.py sets it when imported. A
value the user set (TF_CPU_ALLOCATOR_USE_BFC=false, say) is left alone.
"""
import os

SETTING = "TF_CPU_ALLOCATOR_USE_BFC"


def reuse_cpu_memory():
    """Ask for TensorFlow's BFC allocator on the CPU; effective only before the first tensor is allocated."""
    os.environ.setdefault(SETTING, "true")
