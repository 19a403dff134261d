"""kill -9 soak test of the project store: no committed edit is ever lost, the file is never damaged.

Each run starts a child process that opens a fresh project and performs a scripted, random editing session
(add / update / delete instances, apply model results, change settings) through ``app.project.store``.
Before each edit the child prints what it is about to do (``BEGIN``), after the commit returns it prints
``DONE``.
The parent SIGKILLs the child at a random moment, reopens the project and checks:

- ``PRAGMA integrity_check`` is ``ok``;
- the instances in the file are exactly the state after the last ``DONE`` edit, or after the edit that was
  in flight (it may have committed just before the kill): nothing committed is lost, nothing half-written;
- the lock of the killed process is gone (the project opens again).

    .venv/bin/python bench/soak_kill.py --runs 100          # the soak (about 1-2 min on 2 cores)
    .venv/bin/python bench/soak_kill.py --runs 3 --seed 7   # what the test suite runs

Prints one line per failing run and a summary with the commit latency (each commit fsyncs), exits 1 on
any failure.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.project.records import NewInstance, Provenance  # noqa: E402
from app.project.settings import ProjectSettings  # noqa: E402
from app.project.store import ProjectStore  # noqa: E402

IMAGES = ("a.png", "b.png", "c.png")
SIZE = (48, 64)  # (H, W) of the pretend images


def _random_instance(rng: random.Random, category_id: int, provenance: Provenance) -> NewInstance:
    import numpy as np
    from pycocotools import mask as mask_utils

    h, w = SIZE
    x0, y0 = rng.randrange(w - 4), rng.randrange(h - 4)
    x1, y1 = rng.randrange(x0 + 1, w + 1), rng.randrange(y0 + 1, h + 1)
    full = np.zeros(SIZE, dtype=np.uint8)
    full[y0:y1, x0:x1] = 1
    rle = mask_utils.encode(np.asfortranarray(full))
    rle["counts"] = rle["counts"].decode("ascii")
    score = round(rng.random(), 4) if provenance is Provenance.PREDICTED else None
    return NewInstance(
        category_id=category_id,
        rle=rle,
        box=(x0, y0, x1, y1),
        area=int(full.sum()),
        provenance=provenance,
        score=score,
    )


def _content(image_id: int, inst: dict) -> tuple:
    return (image_id, inst["category_id"], inst["counts"], inst["provenance"])


def run_child(folder: Path, seed: int) -> None:
    """The scripted editing session; never returns normally (it is killed)."""
    rng = random.Random(seed)
    store = ProjectStore.open(folder)
    store.add_images(IMAGES)
    cats = store.ensure_categories(["circle", "square"])
    image_ids = [store.image_by_name(n).id for n in IMAGES]
    owned: dict[int, int] = {}  # instance id -> image id, as this child knows them
    print("READY", flush=True)
    for step in range(100_000):
        image_id = rng.choice(image_ids)
        kind = rng.choice(("add", "add", "update", "delete", "predict", "setting"))
        mine = [i for i, img in owned.items() if img == image_id]
        if kind in ("update", "delete") and not mine:
            kind = "add"
        cat = rng.choice(list(cats.values()))
        if kind == "add":
            new = _random_instance(rng, cat, Provenance.EDITED)
            plan = {"op": "add", "image": image_id, "inst": _plain(new)}
            print("BEGIN", json.dumps(plan), flush=True)
            (new_id,) = store.apply_edit(image_id, add=[new])
            owned[new_id] = image_id
            plan["id"] = new_id
        elif kind == "update":
            target = rng.choice(mine)
            new = _random_instance(rng, cat, Provenance.EDITED)
            plan = {"op": "update", "image": image_id, "id": target, "inst": _plain(new)}
            print("BEGIN", json.dumps(plan), flush=True)
            old = next(r for r in store.instances(image_id) if r.id == target)
            store.apply_edit(image_id, update=[replace(old, **_fields(new))])
        elif kind == "delete":
            target = rng.choice(mine)
            plan = {"op": "delete", "image": image_id, "id": target}
            print("BEGIN", json.dumps(plan), flush=True)
            store.apply_edit(image_id, delete=[target])
            del owned[target]
        elif kind == "predict":
            news = [_random_instance(rng, cat, Provenance.PREDICTED) for _ in range(rng.randrange(4))]
            plan = {"op": "predict", "image": image_id, "insts": [_plain(n) for n in news]}
            print("BEGIN", json.dumps(plan), flush=True)
            revision = store.image(image_id).revision
            store.apply_prediction(
                image_id, expected_revision=revision, instances=news, model_version_id=None, image_size=SIZE
            )
        else:
            plan = {"op": "setting", "value": step}
            print("BEGIN", json.dumps(plan), flush=True)
            ProjectSettings(store).last_image_id = step
        print("DONE", json.dumps(plan), flush=True)


def _plain(inst: NewInstance) -> dict:
    return {
        "category_id": inst.category_id,
        "counts": inst.rle["counts"],
        "provenance": inst.provenance.value,
    }


def _fields(inst: NewInstance) -> dict:
    return {
        "category_id": inst.category_id,
        "rle": inst.rle,
        "box": inst.box,
        "area": inst.area,
        "provenance": inst.provenance,
        "score": inst.score,
    }


class _Model:
    """The parent's replay of the child's committed edits."""

    def __init__(self) -> None:
        self.by_id: dict[int, tuple] = {}  # person's instances, by id
        self.predicted: dict[int, list[tuple]] = {}  # image id -> predicted contents
        self.setting: int | None = None

    def copy(self) -> _Model:
        other = _Model()
        other.by_id = dict(self.by_id)
        other.predicted = {k: list(v) for k, v in self.predicted.items()}
        other.setting = self.setting
        return other

    def apply(self, plan: dict) -> None:
        op = plan["op"]
        if op == "add":
            self.by_id[plan.get("id", -1)] = _content(plan["image"], plan["inst"])
        elif op == "update":
            self.by_id[plan["id"]] = _content(plan["image"], plan["inst"])
        elif op == "delete":
            self.by_id.pop(plan["id"], None)
        elif op == "predict":
            self.predicted[plan["image"]] = [_content(plan["image"], i) for i in plan["insts"]]
        else:
            self.setting = plan["value"]

    def contents(self) -> Counter:
        everything = list(self.by_id.values()) + [c for cs in self.predicted.values() for c in cs]
        return Counter(everything)


def check_run(folder: Path, lines: list[str]) -> str | None:
    """``None`` when the reopened project matches the child's report, else what is wrong."""
    committed, in_flight = _Model(), None
    for line in lines:
        tag, _, payload = line.partition(" ")
        if tag == "BEGIN":
            in_flight = json.loads(payload)
        elif tag == "DONE":
            committed.apply(json.loads(payload))
            in_flight = None
    candidates = [committed]
    if in_flight is not None:
        maybe = committed.copy()
        maybe.apply(in_flight)
        candidates.append(maybe)
    with ProjectStore.open(folder) as store:
        verdict = store.integrity_check()
        if verdict != "ok":
            return f"integrity_check: {verdict}"
        found = Counter(
            (r.image_id, r.category_id, r.rle["counts"], r.provenance.value) for r in store.instances()
        )
        setting = ProjectSettings(store).last_image_id
    for model in candidates:
        if found == model.contents() and setting == model.setting:
            return None
    missing = committed.contents() - found
    extra = found - committed.contents()
    return (
        f"state mismatch: {sum(missing.values())} committed instance(s) missing, "
        f"{sum(extra.values())} unexpected"
    )


def one_run(seed: int, workdir: Path) -> tuple[str | None, int]:
    """Start a child, kill it at a random moment, check the project. Returns (problem, edits committed)."""
    rng = random.Random(seed)
    folder = workdir / f"run{seed}"
    folder.mkdir()
    child = subprocess.Popen(
        [sys.executable, __file__, "--child", str(folder), "--seed", str(seed)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    first = child.stdout.readline()
    if first.strip() != "READY":
        child.kill()
        return f"child did not start: {first!r} {child.stderr.read()[-500:]}", 0
    time.sleep(rng.uniform(0.0, 0.6))
    os.kill(child.pid, signal.SIGKILL)
    out, _ = child.communicate()
    lines = [line for line in out.splitlines(keepends=True) if line.endswith("\n")]
    done = sum(1 for line in lines if line.startswith("DONE"))
    return check_run(folder, [line.rstrip("\n") for line in lines]), done


def commit_latency_ms(workdir: Path, n: int = 200) -> float:
    """Median wall time of one durable commit (a one-row edit, fsync included) on this disk."""
    folder = workdir / "latency"
    folder.mkdir()
    times = []
    with ProjectStore.open(folder) as store:
        store.add_images(IMAGES)
        (cat,) = store.ensure_categories(["circle"]).values()
        image_id = store.image_by_name(IMAGES[0]).id
        rng = random.Random(0)
        for _ in range(n):
            new = _random_instance(rng, cat, Provenance.EDITED)
            t0 = time.perf_counter()
            store.apply_edit(image_id, add=[new])
            times.append(time.perf_counter() - t0)
    return sorted(times)[n // 2] * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        run_child(args.child, args.seed)
        return 0
    failures, edits = 0, 0
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="soak-kill-") as tmp:
        latency = commit_latency_ms(Path(tmp))
        for i in range(args.runs):
            problem, done = one_run(args.seed * 10_000 + i, Path(tmp))
            edits += done
            if problem:
                failures += 1
                print(f"run {i}: {problem}")
    elapsed = time.perf_counter() - started
    print(
        f"{args.runs - failures}/{args.runs} runs ok; {edits} committed edits checked after kill -9 "
        f"({elapsed:.1f} s); median durable commit {latency:.2f} ms"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
