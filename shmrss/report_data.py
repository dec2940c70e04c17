"""Results for the report: load result lines, classify them, group repeats of one point, and give the
min / median / max of a metric across repeats.

A group is every repeat of one point measured by one identity (host, kernel,
label: ``host_meta.identity``): the point's key without its repeat index, plus
the identity's name in ``key["identity"]``; results of different identities
are never merged, even when the files give their points the same key. Lines written by ``shmrss run --json`` (no sweep key) get a key
derived from their parameters; identical ones are repeats of each other.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from shmrss.host_meta import identity, identity_name
from shmrss.results_file import FINISHED, canonical, read_records, status_of

KIND_RUN, KIND_LIFECYCLE = "run", "lifecycle"


@dataclass
class Group:
    key: dict  # the point's key without the repeat index
    kind: str
    results: list[dict] = field(default_factory=list)  # finished (ok or invariant_failed), one per repeat
    partial: int = 0  # repeats whose last attempt was interrupted and that never finished
    failed: list[str] = field(default_factory=list)  # error of each repeat that never finished

    @property
    def failing(self) -> list[dict]:
        return [r for r in self.results if not all(r.get("invariants", {}).values())]

    def values(self, get) -> list[float]:
        out = []
        for r in self.results:
            try:
                v = get(r)
            except (KeyError, TypeError, IndexError):
                v = None
            if v is not None:
                out.append(float(v))
        return out

    def spread(self, get) -> tuple[float, float, float] | None:
        """(min, median, max) of a metric across repeats, or None when no repeat has it."""
        vs = self.values(get)
        return (min(vs), statistics.median(vs), max(vs)) if vs else None


@dataclass
class Loaded:
    groups: list[Group]
    notes: list[str]
    counts: dict  # status -> lines
    duplicates: int
    redone: int = 0  # partial or failed attempts of points that a later line finished


def _derived_key(r: dict) -> dict:
    """A key for a plain ``shmrss run`` result, from its parameters."""
    p = r.get("params", {})
    if "lifecycle" in r:
        return {"workload": "fork_exit", "mode": "processes", "design": r.get("design"),
                "lifecycle": p.get("lifecycle"), "cpus": p.get("cpus"), "possible_cpus": p.get("possible_cpus"),
                "tasks": None, "duration_s": p.get("duration_s"), "line": p.get("line"), "pages": p.get("pages"),
                "clones": p.get("clones"),
                # issue 22's options, only when set: a key without them stays what it was
                **{k: p[k] for k in ("coarse_group", "fork_globals", "switches", "remote_every") if p.get(k)}}
    ri = p.get("read_interval_s")
    return {"workload": r.get("workload"), "mode": p.get("mode"), "design": r.get("design"), "lifecycle": None,
            "cpus": p.get("cpus"), "possible_cpus": p.get("possible_cpus"), "tasks": p.get("tasks_option"),
            "duration_s": p.get("duration_s"), "read_interval_ms": ri * 1000 if ri is not None else None,
            "line": p.get("line"), "pack": p.get("pack"), "smt": p.get("smt"),
            "oversubscribed": p.get("oversubscribed"), "slice": p.get("slice"), "reclaimer": p.get("reclaimer"),
            "oom": r.get("oom") is not None, "nodes": p.get("nodes_option"), "tree_orders": p.get("tree_orders"),
            "pages": None, "clones": None, "online_cpus": p.get("online_cpus"), "fault_pages": p.get("fault_pages"),
            "fault_body": p.get("fault_body")}


def _count_plan(plans: dict, meta: dict | None) -> None:
    if meta and isinstance(meta.get("plan"), str) and isinstance(meta.get("plan_points"), int):
        plans.setdefault(meta["plan"], (meta["plan_points"], set()))[1].add(canonical(meta.get("key") or {}))


def _plans_incomplete(plans: dict) -> list[str]:
    """A note per sweep plan whose points the files do not all hold (a shard not gathered, or not run)."""
    return [f"sweep plan {digest}: the files hold {len(seen)} of its {total} points (a shard missing, or not "
            f"finished)" for digest, (total, seen) in plans.items() if len(seen) < total]


_ESSENTIAL = ("workload", "design", "cpus", "possible_cpus")  # what tables and figures sort and draw by


def _completed(key: dict, r: dict, kind: str | None) -> dict:
    """A sweep key with the fields the tables and figures need taken from the result when the key lacks them
    (a sweep writes them all; a hand-made or damaged line may not)."""
    if kind is None:
        return key
    derived = _derived_key(r)
    for f in _ESSENTIAL + (("lifecycle",) if kind == KIND_LIFECYCLE else ()):
        if key.get(f) is None:
            key[f] = derived.get(f)
    return key


def derived_key(r: dict) -> dict:
    """The point a result measured, from its parameters (its host and label are not part of it)."""
    return _derived_key(r)


def kind_of(r: dict) -> str | None:
    if isinstance(r.get("lifecycle"), dict):
        return KIND_LIFECYCLE
    if isinstance(r.get("throughput"), dict):
        return KIND_RUN
    return None


def load(paths: list[str]) -> Loaded:
    notes: list[str] = []
    counts = {"ok": 0, "invariant_failed": 0, "partial": 0, "failed": 0}
    groups: dict[str, Group] = {}
    finished: dict[str, tuple[str, dict]] = {}  # full key -> (group id, result); the last line wins
    unfinished: dict[str, tuple[str, list]] = {}  # full key -> (group id, [(status, error)]) of other attempts
    duplicates = 0
    plain_repeat: dict[str, int] = {}
    plans: dict[str, tuple[int, set[str]]] = {}  # a sweep plan's digest -> (its points, the keys seen)
    for path in paths:
        records, more = read_records(path)
        notes += more
        empty = 0
        # a line without a result (a failed point) belongs to the host that wrote the file
        file_ident = next((identity(r) for r in records if isinstance(r.get("host"), dict)), None)
        for r in records:
            status = status_of(r)
            kind = kind_of(r)
            if status in FINISHED and kind is None:  # "ok" with no result in it: nothing to report
                empty += 1
                continue
            counts[status] += 1
            meta = r.get("sweep") if isinstance(r.get("sweep"), dict) else None
            _count_plan(plans, meta)
            if meta is not None and isinstance(meta.get("key"), dict):
                full = _completed(dict(meta["key"]), r, kind)
            elif kind is not None:
                full = _derived_key(r)
                gid = canonical(full)
                full["repeat"] = plain_repeat.get(gid, 0)
                plain_repeat[gid] = full["repeat"] + 1
            else:
                notes.append(f"{path}: a line that is neither a result nor a sweep point was ignored")
                continue
            ident = identity(r) if isinstance(r.get("host"), dict) or file_ident is None else file_ident
            key = {k: v for k, v in full.items() if k != "repeat"}
            key["identity"] = identity_name(ident)
            gid = canonical({**key, "identity": ident})
            if kind is None:  # a failed point: no result, its key says what it was
                kind = KIND_LIFECYCLE if key.get("lifecycle") else KIND_RUN
            groups.setdefault(gid, Group(key, kind))
            fid = canonical({**full, "identity": ident})
            if status in FINISHED:
                if fid in finished:
                    duplicates += 1
                finished[fid] = (gid, r)
            else:
                unfinished.setdefault(fid, (gid, []))[1].append((status, str((meta or {}).get("error") or "")))
        if empty:
            notes.append(f"{path}: skipped {empty} line{'s' if empty > 1 else ''} marked finished without a "
                         f"result")
    notes += _plans_incomplete(plans)
    for gid, r in finished.values():
        groups[gid].results.append(r)
    # attempts that a later run of the same point made good are history, not unfinished points
    redone = 0
    for fid, (gid, attempts) in unfinished.items():
        if fid in finished:
            redone += len(attempts)
        else:
            status, error = attempts[-1]
            if status == "partial":
                groups[gid].partial += 1
            else:
                groups[gid].failed.append(error or "no result")
    if duplicates:
        notes.append(f"{duplicates} finished point{'s were' if duplicates > 1 else ' was'} in the input more "
                     f"than once: the last line of each was used")
    return Loaded(list(groups.values()), notes, counts, duplicates, redone)


def dedup_warnings(results: list[dict]) -> list[tuple[str, int]]:
    """Each distinct warning and how many of the results carry it, in order of first appearance."""
    seen: dict[str, int] = {}
    for r in results:
        for w in dict.fromkeys(r.get("warnings") or []):
            seen[w] = seen.get(w, 0) + 1
    return list(seen.items())


def invariant_failures(results: list[dict]) -> list[str]:
    """One line per result with a failed invariant."""
    out = []
    for r in results:
        bad = [k for k, ok in (r.get("invariants") or {}).items() if not ok]
        if bad:
            out.append(f"{point_name(r)}: {', '.join(bad)}")
    return out


def point_name(r: dict) -> str:
    p = r.get("params", {})
    meta = r.get("sweep") or {}
    rep = (meta.get("key") or {}).get("repeat")
    name = p.get("lifecycle") or r.get("design")
    mode = p.get("mode")
    mode = f" {mode}" if mode and r.get("workload") != "fork_exit" else ""
    return (f"{name} {r.get('workload')}{mode} {p.get('cpus')} CPUs P={p.get('possible_cpus')}"
            + (f" repeat {rep + 1}" if rep is not None else ""))
