"""`orpheus_tts.up` without engines: the key file, process-group cleanup, port checks."""

from __future__ import annotations

import os
import socket
import stat
import sys
import time

import psutil
import pytest

from orpheus_tts import up


def test_local_api_key_prefers_the_environment_then_the_saved_file(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.delenv("ORPHEUS_API_KEY", raising=False)
    assert up.local_api_key() is None
    key = up.ensure_local_key()
    assert key.startswith("sk-local-") and len(key) > 30
    path = tmp_path / "orpheus-tts" / "local.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert up.ensure_local_key() == key  # reused, not regenerated
    assert up.local_api_key() == key
    monkeypatch.setenv("ORPHEUS_API_KEY", "from-env")
    assert up.local_api_key() == "from-env"


def test_stop_children_ends_the_whole_process_group(tmp_path):
    # a leader that starts a grandchild which ignores SIGTERM: only the group kill ends it
    script = ("import signal, subprocess, sys, time\n"
              "subprocess.Popen([sys.executable, '-c', 'import signal, time; "
              "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)'])\n"
              "time.sleep(600)\n")
    child = up.spawn("leader", "http://unused", [sys.executable, "-c", script], tmp_path)
    deadline = time.monotonic() + 20
    while len(psutil.Process(child.proc.pid).children()) < 1:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    family = [psutil.Process(child.proc.pid), *psutil.Process(child.proc.pid).children()]
    assert os.getpgid(child.proc.pid) == child.proc.pid != os.getpgid(0)
    up.stop_children([child], grace_s=2)
    up.stop_children([child], grace_s=2)  # idempotent
    _gone, alive = psutil.wait_procs(family, timeout=10)
    assert alive == []


def test_a_busy_port_is_refused_before_anything_starts(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        stack = up.LocalStack(up.StackConfig(port=port, key_file=tmp_path / "k",
                                             log_dir=tmp_path))
        with pytest.raises(up.StackError, match=f"port {port} is in use"):
            stack.start()
    assert stack.children == [] and not (tmp_path / "k").exists()


def test_banner_says_where_to_go_next(tmp_path):
    stack = up.LocalStack(up.StackConfig(port=8123, log_dir=tmp_path))
    stack.api_key, stack.key_file = "sk-local-abc", tmp_path / "local.key"
    text = up.banner(stack)
    assert "playground  http://127.0.0.1:8123/   (open it in a browser; it asks for the key" in text
    # not the default port: `say` needs the URL, and then the key too
    assert "ORPHEUS_URL=http://127.0.0.1:8123 ORPHEUS_API_KEY=sk-local-abc " in text
    assert 'say "Hello from Orpheus." -o hello.wav' in text


def test_a_niced_child_and_what_it_starts_yield_the_cpu(tmp_path):
    script = ("import subprocess, sys, time\n"
              "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
              "time.sleep(600)\n")
    child = up.spawn("compute", "http://unused", [sys.executable, "-c", script], tmp_path,
                     nice=up.WORKER_NICE)
    try:
        leader = psutil.Process(child.proc.pid)
        deadline = time.monotonic() + 20
        while not leader.children():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        for proc in [leader, *leader.children()]:
            assert proc.nice() == os.getpriority(os.PRIO_PROCESS, 0) + up.WORKER_NICE
        autogroup = f"/proc/{leader.pid}/autogroup"
        if os.path.exists(autogroup):  # kernels with scheduler autogroups: the session's group
            with open(autogroup) as f:
                assert f.read().split()[-1] == str(up.WORKER_NICE), autogroup
    finally:
        up.stop_children([child], grace_s=2)
