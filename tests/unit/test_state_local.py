"""The local state backend: atomic writes, backups, serials, the OS lock."""

from __future__ import annotations

import json
import multiprocessing
import os
import threading

import pytest

from reconciler import errors
from reconciler.state import local, model


def resource(name: str) -> model.ResourceState:
    return model.ResourceState("KmsProvider", name, "managed", {"keyId": name}, {"a": 1}, {"region": "r"})


def test_write_increments_serial_keeps_backup_and_lineage(tmp_path):
    backend = local.LocalBackend(tmp_path / "s" / "state.json")
    assert backend.read() == model.State.empty()
    with backend.lock("apply"):
        first = backend.write(model.State.empty().with_resource(resource("a")))
        second = backend.write(first.with_resource(resource("b")))
    assert first.serial == 1 and second.serial == 2
    assert first.lineage and second.lineage == first.lineage
    on_disk = json.loads(backend.path.read_text())
    assert on_disk["serial"] == 2 and set(on_disk["resources"]) == {"KmsProvider/a", "KmsProvider/b"}
    backup = json.loads(backend.backup_path.read_text())
    assert backup["serial"] == 1 and set(backup["resources"]) == {"KmsProvider/a"}
    assert oct(backend.path.stat().st_mode & 0o777) == "0o600"
    assert not [p for p in backend.path.parent.iterdir() if p.name.endswith(".tmp")]
    assert backend.read() == second


@pytest.mark.parametrize("links", [True, False], ids=["hard-link", "no-hard-links"])
def test_each_write_keeps_the_version_it_replaces_as_the_backup(tmp_path, monkeypatch, links):
    """The backup is the replaced file itself (a hard link: not written and synced
    again), or a copy where the file system has no hard links."""
    if not links:
        def refuse(*_args, **_kwargs):
            raise PermissionError("no hard links on this file system")
        monkeypatch.setattr(local.os, "link", refuse)
    backend = local.LocalBackend(tmp_path / "state.json")
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(local.os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])
    with backend.lock("apply"):
        state = backend.write(model.State.empty().with_resource(resource("a")))
        for name in "bcd":
            before = backend.path.read_bytes()
            synced.clear()
            state = backend.write(state.with_resource(resource(name)))
            assert backend.backup_path.read_bytes() == before  # the version just replaced
            assert json.loads(backend.path.read_text())["serial"] == state.serial
            assert len(synced) == (2 if links else 4)  # the new file and the directory (+ the copy's two)
            assert (backend.backup_path.stat().st_ino != backend.path.stat().st_ino)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert backend.read_backup() is not None and backend.read_backup().serial == state.serial - 1


def test_write_without_lock_is_refused(tmp_path):
    with pytest.raises(errors.StateError, match="without holding the lock"):
        local.LocalBackend(tmp_path / "state.json").write(model.State.empty())


def test_other_lineage_is_never_overwritten(tmp_path):
    backend = local.LocalBackend(tmp_path / "state.json")
    with backend.lock("apply"):
        backend.write(model.State.empty())
        with pytest.raises(errors.StateError, match="lineage changed"):
            backend.write(model.State("someone-else", 5))


def test_corrupt_state_is_a_clear_error(tmp_path):
    path = tmp_path / "state.json"
    path.write_text('{"lineage": "x", "serial": ')
    with pytest.raises(errors.StateError, match=r"state.json:1:\d+: state file is not valid JSON"):
        local.LocalBackend(path).read()
    path.write_text('{"version": 99, "lineage": "x", "serial": 1}')
    with pytest.raises(errors.StateError, match="version 99 is not supported"):
        local.LocalBackend(path).read()


def _hold(path: str, ready, release) -> None:
    backend = local.LocalBackend(path)
    with backend.lock("apply"):
        ready.set()
        release.wait(10)


def test_lock_names_holder_and_unlock_refuses_a_live_holder(tmp_path):
    path = str(tmp_path / "state.json")
    ctx = multiprocessing.get_context("fork")
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold, args=(path, ready, release))
    holder.start()
    try:
        assert ready.wait(10)
        backend = local.LocalBackend(path)
        with pytest.raises(errors.LockError) as info:
            with backend.lock("apply", timeout=0.3):
                pass
        message = str(info.value)
        assert f"locked by PID {holder.pid} on " in message and "since" in message
        lock_id = json.loads(backend.lock_path.read_text())["id"]
        assert lock_id in message
        with pytest.raises(errors.LockError, match="held by a running process"):
            backend.unlock(lock_id)
    finally:
        release.set()
        holder.join(10)
    free = local.LocalBackend(path)
    with free.lock("apply") as lock_id:  # free again once the holder is gone
        record = json.loads(free.lock_path.read_text())
        assert (record["id"], record["pid"]) == (lock_id, os.getpid())


def test_unlock_clears_a_record_left_by_a_dead_process(tmp_path):
    backend = local.LocalBackend(tmp_path / "state.json")
    backend.lock_path.write_text(json.dumps({"id": "abc", "pid": 999999, "host": "h", "since": "x"}))
    with pytest.raises(errors.LockError, match="does not match"):
        backend.unlock("zzz")
    assert "released" in backend.unlock("abc")
    assert backend.lock_path.read_text() == ""
    with pytest.raises(errors.LockError, match="not locked"):
        backend.unlock("abc")


def test_lock_timeout_waits_for_release(tmp_path):
    path = str(tmp_path / "state.json")
    ctx = multiprocessing.get_context("fork")
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold, args=(path, ready, release))
    holder.start()
    assert ready.wait(10)
    backend = local.LocalBackend(path)
    with pytest.raises(errors.LockError, match=f"locked by PID {holder.pid}"):
        with backend.lock("apply", timeout=0):
            pass
    timer = threading.Timer(0.2, release.set)  # the holder finishes while we wait
    timer.start()
    with backend.lock("apply", timeout=10) as lock_id:
        assert release.is_set()  # acquired only after the holder let go
        assert json.loads(backend.lock_path.read_text())["id"] == lock_id
    holder.join(10)
    timer.join(10)
    assert holder.exitcode == 0
