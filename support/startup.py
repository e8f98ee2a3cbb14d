"""What every command-line tool does first, in one explicit call: setup(), from the `if __name__ == "__main__":` block
at the top of the tool's file, before anything imports TensorFlow. Importing a module of the template changes
nothing; running a tool sets up the process:

- the Keras backend's own requirements (requirements.py): KERAS_BACKEND=jax without JAX is one `error:` line;
- TensorFlow's BFC allocator on the CPU (allocator.py), which TensorFlow reads at its first CPU allocation;
- Pillow's and OpenCV's own pixel limits (images.py), behind the measurement of every image's header;
- a quiet console (console.py): TensorFlow imported without its start-up chatter, harmless messages dropped.
"""
from support import allocator, console, images, requirements


def setup():
    requirements.require_keras_backend()
    allocator.reuse_cpu_memory()
    images.library_ceilings()
    console.quiet()
