"""SharedMemoryTracker: remembers what a run's processes map or hold open, removes only that."""

from __future__ import annotations

import mmap
import os
from collections.abc import Sequence
from pathlib import Path

from infer_cli.engine.shm import SharedMemoryTracker


def fake_proc(
    proc: Path, pid: int, maps: Sequence[str] = (), fds: dict[str, Path] | None = None
) -> None:
    folder = proc / str(pid)
    (folder / "fd").mkdir(parents=True)
    (folder / "maps").write_text("".join(line + "\n" for line in maps))
    for fd, target in (fds or {}).items():
        (folder / "fd" / fd).symlink_to(target)


def map_line(path: Path | str, inode: int = 1234) -> str:
    return f"7f0000000000-7f0000001000 rw-s 00000000 00:1a {inode}                      {path}"


def test_snapshot_and_cleanup_with_a_fake_proc(tmp_path: Path) -> None:
    shm, proc = tmp_path / "shm", tmp_path / "proc"
    shm.mkdir()
    files = {
        name: shm / name
        for name in (
            "lmcache_kv_100_0",  # mapped by pid 100
            "psm_abc",  # held open by pid 100
            "sem.mp-xyz",  # mapped by pid 101
            "lmcache_kv_101_0",  # not seen mapped, but named after a snapshotted pid
            "lmcache_kv_999_0",  # decoy: another pid's segment
            "psm_other",  # decoy: nobody of ours maps it
        )
    }
    for path in files.values():
        path.write_bytes(b"x")
    fake_proc(
        proc,
        100,
        maps=[
            "55d0c0000000-55d0c0001000 r-xp 00000000 08:01 42 /usr/bin/python3.11",
            map_line(files["lmcache_kv_100_0"]),
            map_line(shm / "psm_gone (deleted)"),
            "7ffd00000000-7ffd00001000 rw-p 00000000 00:00 0                          [stack]",
        ],
        fds={"0": Path("/dev/null"), "5": files["psm_abc"], "6": tmp_path / "elsewhere"},
    )
    fake_proc(proc, 101, maps=[map_line(files["sem.mp-xyz"])])
    tracker = SharedMemoryTracker(shm_root=shm, proc_root=proc)
    tracker.snapshot([100, 101, 4242])  # 4242 does not exist
    assert set(tracker.files) == {files["lmcache_kv_100_0"], files["psm_abc"], files["sem.mp-xyz"]}
    assert tracker.pids == {100, 101, 4242}

    removed = tracker.cleanup()
    assert set(removed) == {
        files["lmcache_kv_100_0"],
        files["psm_abc"],
        files["sem.mp-xyz"],
        files["lmcache_kv_101_0"],
    }
    assert files["lmcache_kv_999_0"].exists() and files["psm_other"].exists()
    assert tracker.cleanup() == []  # idempotent


def test_files_outside_the_shm_root_are_never_touched(tmp_path: Path) -> None:
    shm, proc = tmp_path / "shm", tmp_path / "proc"
    shm.mkdir()
    outside = tmp_path / "shm-lookalike" / "file"
    outside.parent.mkdir()
    outside.write_bytes(b"x")
    sneaky = shm / ".." / "sneaky"
    (tmp_path / "sneaky").write_bytes(b"x")
    fake_proc(proc, 7, maps=[map_line(outside), map_line(sneaky), map_line(shm)])
    tracker = SharedMemoryTracker(shm_root=shm, proc_root=proc)
    tracker.snapshot([7])
    assert tracker.files == {}
    assert tracker.cleanup() == []
    assert outside.exists() and (tmp_path / "sneaky").exists()


def test_unreadable_proc_entries_are_tolerated(tmp_path: Path) -> None:
    shm, proc = tmp_path / "shm", tmp_path / "proc"
    shm.mkdir()
    (proc / "8" / "maps").mkdir(
        parents=True
    )  # reading it fails (a folder, like a permission error)
    (proc / "8" / "fd").write_text("not a folder")
    tracker = SharedMemoryTracker(shm_root=shm, proc_root=proc)
    tracker.snapshot([8, 9])
    assert tracker.files == {}
    assert tracker.cleanup() == []


def test_a_replaced_file_is_not_removed(tmp_path: Path) -> None:
    shm, proc = tmp_path / "shm", tmp_path / "proc"
    shm.mkdir()
    path = shm / "psm_reused"
    path.write_bytes(b"old")
    fake_proc(proc, 5, fds={"3": path})
    tracker = SharedMemoryTracker(shm_root=shm, proc_root=proc)
    with open(path, "rb"):  # keep the old inode alive so the new file gets another one
        tracker.snapshot([5])
        replacement = shm / "psm_reused.new"
        replacement.write_bytes(b"new")
        os.replace(replacement, path)
    assert tracker.cleanup() == []
    assert path.read_bytes() == b"new"


def test_real_proc_sees_what_this_process_maps_and_holds_open(tmp_path: Path) -> None:
    shm = tmp_path / "shm"
    shm.mkdir()
    mapped, held = shm / "lmcache_kv_test_mapped", shm / "psm_held"
    mapped.write_bytes(b"\0" * mmap.PAGESIZE)
    decoy = shm / f"lmcache_kv_{os.getpid() + 1}_0"
    decoy.write_bytes(b"x")
    tracker = SharedMemoryTracker(shm_root=shm)
    with open(mapped, "r+b") as handle:
        mapping = mmap.mmap(handle.fileno(), mmap.PAGESIZE)
    try:
        with open(held, "wb"):
            tracker.snapshot([os.getpid()])
    finally:
        mapping.close()
    assert {mapped, held} <= set(tracker.files)
    removed = tracker.cleanup()
    assert set(removed) == {mapped, held}
    assert decoy.exists()
