import os

from support import allocator


def test_tensorflow_is_asked_to_reuse_cpu_memory_unless_the_user_chose(monkeypatch):
    monkeypatch.delenv(allocator.SETTING, raising=False)
    allocator.reuse_cpu_memory()
    assert os.environ[allocator.SETTING] == "true"

    monkeypatch.setenv(allocator.SETTING, "false")
    allocator.reuse_cpu_memory()
    assert os.environ[allocator.SETTING] == "false"
