"""Host topology for shmrss: which logical CPUs this process may use, how they
group into physical cores, last-level caches and NUMA nodes, what the cgroup
allows, and where to place the emulated CPUs and the reader so that per-CPU
timings mean something.

Everything is read from sysfs, procfs and cgroupfs under a configurable root,
so tests can point it at a fake tree.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import psutil
from loguru import logger

if TYPE_CHECKING:
    from rich.table import Table

__all__ = [
    "TopologyError",
    "PinError",
    "Topology",
    "Placement",
    "parse_cpulist",
    "format_cpulist",
    "read_topology",
    "plan",
    "pin_self",
    "current_cpu",
    "render_table",
]

DEFAULT_CACHE_LINE = 64

_CPU_RANGE = re.compile(r"(\d+)(?:-(\d+))?")


class TopologyError(Exception):
    """A request the host cannot satisfy; the message is one user-facing line."""


class PinError(Exception):
    """Pinning the calling process to a CPU failed."""


# --------------------------------------------------------------------------- cpu lists


def parse_cpulist(text: str) -> list[int]:
    """Parse a kernel cpu list such as "0-3,8,10-11" into sorted unique ints.

    An empty (or all-whitespace) list is valid and gives []."""
    text = text.strip()
    if not text:
        return []
    cpus: set[int] = set()
    for item in text.split(","):
        m = _CPU_RANGE.fullmatch(item.strip())
        if m is None:
            raise ValueError(f"malformed cpu list {text!r}: bad item {item!r}")
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) is not None else lo
        if hi < lo:
            raise ValueError(f"malformed cpu list {text!r}: descending range {item!r}")
        cpus.update(range(lo, hi + 1))
    return sorted(cpus)


def format_cpulist(cpus) -> str:
    """Render CPUs compactly: runs of three or more as ranges ("0-3,8,10,11")."""
    ordered = sorted(set(cpus))
    parts: list[str] = []
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        if j - i >= 2:
            parts.append(f"{ordered[i]}-{ordered[j]}")
        else:
            parts.extend(str(c) for c in ordered[i : j + 1])
        i = j + 1
    return ",".join(parts)


# --------------------------------------------------------------------------- topology


@dataclass(frozen=True)
class Topology:
    online: tuple[int, ...]
    usable: tuple[int, ...]
    cores: tuple[tuple[int, ...], ...]
    llc_groups: tuple[tuple[int, ...], ...]
    numa_nodes: tuple[tuple[int, ...], ...]
    node_ids: tuple[int, ...]
    possible: int
    cache_line: int
    quota_cpus: float | None
    smt_active: bool
    model: str

    def physical_cpus(self) -> list[int]:
        """One logical CPU per physical core: the first usable sibling."""
        return [core[0] for core in self.cores]

    def core_of(self, cpu: int) -> int:
        """Index into cores of the core holding cpu."""
        return _index_of(self.cores, cpu, "core")

    def node_of(self, cpu: int) -> int:
        """NUMA node id of cpu."""
        return self.node_ids[_index_of(self.numa_nodes, cpu, "NUMA node")]

    def llc_of(self, cpu: int) -> int:
        """Index into llc_groups of the last-level cache shared by cpu."""
        return _index_of(self.llc_groups, cpu, "LLC group")

    def to_dict(self) -> dict:
        d = asdict(self)
        for key, value in d.items():
            if isinstance(value, tuple):
                d[key] = [list(v) if isinstance(v, tuple) else v for v in value]
        d["physical_cpus"] = self.physical_cpus()
        return d


def _index_of(groups: tuple[tuple[int, ...], ...], cpu: int, what: str) -> int:
    for i, group in enumerate(groups):
        if cpu in group:
            return i
    raise ValueError(f"CPU {cpu} is not a usable CPU of any {what}")


class _Reader:
    """Reads files below a root; optional files degrade to None with a debug log."""

    def __init__(self, root: str):
        self.root = Path(root)

    def path(self, rel: str) -> Path:
        return self.root / rel.lstrip("/")

    def text(self, rel: str | Path) -> str | None:
        path = rel if isinstance(rel, Path) else self.path(rel)
        try:
            return path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            logger.debug("topology: cannot read {}: {}", path, exc)
            return None

    def cpulist(self, rel: str | Path) -> list[int] | None:
        text = self.text(rel)
        if text is None:
            return None
        try:
            return parse_cpulist(text)
        except ValueError as exc:
            logger.debug("topology: ignoring {}: {}", rel, exc)
            return None


def read_topology(root: str = "/") -> Topology:
    """Read the host topology (under root, for tests) and the limits on this process."""
    if sys.platform != "linux":
        raise TopologyError(
            "shmrss needs Linux (sysfs, POSIX shared memory, sched_setaffinity); "
            f"this is {sys.platform}"
        )
    rd = _Reader(root)
    cpu_dir = "sys/devices/system/cpu"

    online = rd.cpulist(f"{cpu_dir}/online")
    if not online:
        online = sorted(
            int(p.name[3:])
            for p in _listdir(rd.path(cpu_dir))
            if re.fullmatch(r"cpu\d+", p.name)
        )
    if not online:
        raise TopologyError(f"cannot find the online CPUs under {rd.path(cpu_dir)}")

    allowed = set(online)
    if os.path.realpath(root) == "/":
        allowed &= os.sched_getaffinity(0)
    cpuset, quota = _read_cgroup(rd)
    if cpuset is not None:
        if allowed & set(cpuset):
            allowed &= set(cpuset)
        else:
            logger.debug("topology: cgroup cpuset {} disjoint from online CPUs; ignored", cpuset)
    usable = tuple(sorted(allowed))
    if not usable:
        raise TopologyError("no usable CPUs: the affinity mask excludes every online CPU")

    cores = _partition(
        usable,
        lambda c: rd.cpulist(f"{cpu_dir}/cpu{c}/topology/core_cpus_list")
        or rd.cpulist(f"{cpu_dir}/cpu{c}/topology/thread_siblings_list"),
        unknown_alone=True,
    )
    llc_groups = _partition(usable, lambda c: _llc_cpus(rd, c), unknown_alone=False)
    numa_nodes, node_ids = _read_numa(rd, usable)

    possible = len(rd.cpulist(f"{cpu_dir}/possible") or online)
    cache_line = _read_int(rd, f"{cpu_dir}/cpu{usable[0]}/cache/index0/coherency_line_size")
    if not cache_line or cache_line <= 0:
        cache_line = DEFAULT_CACHE_LINE

    topo = Topology(
        online=tuple(online),
        usable=usable,
        cores=cores,
        llc_groups=llc_groups,
        numa_nodes=numa_nodes,
        node_ids=node_ids,
        possible=possible,
        cache_line=cache_line,
        quota_cpus=quota,
        smt_active=any(len(core) > 1 for core in cores),
        model=_read_model(rd),
    )
    logger.debug("topology: {}", topo)
    return topo


def _listdir(path: Path) -> list[Path]:
    try:
        return list(path.iterdir())
    except OSError as exc:
        logger.debug("topology: cannot list {}: {}", path, exc)
        return []


def _read_int(rd: _Reader, rel: str | Path) -> int | None:
    text = rd.text(rel)
    if text is None:
        return None
    try:
        return int(text.strip())
    except ValueError:
        logger.debug("topology: {} is not an integer: {!r}", rel, text)
        return None


def _partition(usable, siblings_of, unknown_alone: bool) -> tuple[tuple[int, ...], ...]:
    """Group usable CPUs by a per-CPU sibling list, ordered by first CPU.

    Each CPU lands in exactly one group even if sysfs lists are inconsistent.
    A CPU with no sibling information is alone when unknown_alone, otherwise it
    is taken to share with every usable CPU (e.g. no cache info at all)."""
    usable_set = set(usable)
    assigned: set[int] = set()
    groups = []
    for cpu in usable:
        if cpu in assigned:
            continue
        sibs = siblings_of(cpu)
        if sibs is None:
            sibs = [cpu] if unknown_alone else usable
        group = (set(sibs) & usable_set) - assigned | {cpu}
        assigned |= group
        groups.append(tuple(sorted(group)))
    return tuple(sorted(groups))


def _llc_cpus(rd: _Reader, cpu: int) -> list[int] | None:
    """shared_cpu_list of the highest-level cache of cpu (instruction caches skipped)."""
    best: tuple[int, list[int]] | None = None
    for index in _listdir(rd.path(f"sys/devices/system/cpu/cpu{cpu}/cache")):
        if not index.name.startswith("index"):
            continue
        kind = (rd.text(index / "type") or "").strip()
        level = _read_int(rd, index / "level")
        shared = rd.cpulist(index / "shared_cpu_list")
        if kind == "Instruction" or level is None or shared is None:
            continue
        if best is None or level > best[0]:
            best = (level, shared)
    return best[1] if best else None


def _read_numa(rd: _Reader, usable) -> tuple[tuple[tuple[int, ...], ...], tuple[int, ...]]:
    nodes: list[tuple[int, tuple[int, ...]]] = []
    for d in _listdir(rd.path("sys/devices/system/node")):
        m = re.fullmatch(r"node(\d+)", d.name)
        if m is None:
            continue
        cpus = set(rd.cpulist(d / "cpulist") or [])
        mine = tuple(c for c in usable if c in cpus)
        if mine:  # memory-only nodes and nodes outside the cpuset are dropped
            nodes.append((int(m.group(1)), mine))
    if not nodes:
        return (tuple(usable),), (0,)
    nodes.sort()
    return tuple(n[1] for n in nodes), tuple(n[0] for n in nodes)


def _read_model(rd: _Reader) -> str:
    for line in (rd.text("proc/cpuinfo") or "").splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == "model name":
            return value.strip()
    return ""


# --------------------------------------------------------------------------- cgroups


def _cgroup_dirs(rd: _Reader, controller: str | None) -> list[Path]:
    """Directories from this process's cgroup up to the hierarchy root, deepest first.

    controller None means the unified (v2) hierarchy."""
    text = rd.text("proc/self/cgroup") or ""
    out: list[Path] = []
    for line in text.splitlines():
        parts = line.strip().split(":", 2)
        if len(parts) != 3:
            continue
        hid, ctrls, cg_path = parts
        if controller is None:
            if hid != "0" or ctrls:
                continue
            # hybrid hosts mount v2 at /sys/fs/cgroup/unified
            bases = ["sys/fs/cgroup", "sys/fs/cgroup/unified"]
        else:
            names = ctrls.split(",")
            if controller not in names:
                continue
            bases = [f"sys/fs/cgroup/{ctrls}", f"sys/fs/cgroup/{controller}"]
        for base in dict.fromkeys(bases):
            base_path = rd.path(base)
            if not base_path.is_dir():
                continue
            # In a cgroup namespace the listed path may not exist below the
            # mount; walking up still reaches the mount root.
            rel = [p for p in cg_path.strip("/").split("/") if p]
            for depth in range(len(rel), -1, -1):
                out.append(base_path.joinpath(*rel[:depth]))
    return out


def _read_cgroup(rd: _Reader) -> tuple[list[int] | None, float | None]:
    """(cpuset of this process's cgroup or None, CPU quota in CPUs or None)."""
    cpuset: list[int] | None = None
    candidates = [(d, "cpuset.cpus.effective") for d in _cgroup_dirs(rd, None)]
    v1 = _cgroup_dirs(rd, "cpuset")
    candidates += [(d, "cpuset.effective_cpus") for d in v1]
    candidates += [(d, "cpuset.cpus") for d in v1]
    for d, name in candidates:
        if not (d / name).is_file():
            continue
        cpus = rd.cpulist(d / name)
        if cpus:  # an empty effective set means "inherit", not "no CPUs"
            cpuset = cpus
            break

    quotas: list[float] = []
    for d in _cgroup_dirs(rd, None):
        if (d / "cpu.max").is_file():
            q = _parse_cpu_max(rd.text(d / "cpu.max"))
            if q is not None:
                quotas.append(q)
    for d in _cgroup_dirs(rd, "cpu"):
        if (d / "cpu.cfs_quota_us").is_file():
            quota = _read_int(rd, d / "cpu.cfs_quota_us")
            period = _read_int(rd, d / "cpu.cfs_period_us")
            if quota is not None and quota > 0 and period:
                quotas.append(quota / period)
    return cpuset, (min(quotas) if quotas else None)


def _parse_cpu_max(text: str | None) -> float | None:
    """cgroup v2 cpu.max: "max [period]" or "quota [period]"."""
    if not text:
        return None
    parts = text.split()
    if parts[0] == "max":
        return None
    try:
        quota = int(parts[0])
        period = int(parts[1]) if len(parts) > 1 else 100_000
    except ValueError:
        logger.debug("topology: malformed cpu.max {!r}", text)
        return None
    return quota / period if quota > 0 and period > 0 else None


# --------------------------------------------------------------------------- placement


@dataclass(frozen=True)
class Placement:
    cpus: tuple[int, ...]
    reader_cpu: int | None
    oversubscribed: bool
    warnings: tuple[str, ...]


def _smt_pool(topo: Topology) -> list[int]:
    """All usable CPUs, the first sibling of every core before any second one."""
    pool = []
    for k in range(max((len(c) for c in topo.cores), default=0)):
        pool.extend(core[k] for core in topo.cores if len(core) > k)
    return pool


def refuse_unusable(cpus: list[int], topo: Topology) -> None:
    """TopologyError naming the first CPU that does not exist, is offline, or is outside this process's
    affinity / cpuset; or a repeated one (callers other than ``parse`` may pass any list)."""
    if len(set(cpus)) != len(cpus):
        dup = next(c for i, c in enumerate(cpus) if c in cpus[:i])
        raise TopologyError(f"--host-cpus lists CPU {dup} twice: one emulated CPU a host CPU")
    usable = set(topo.usable)
    for c in cpus:
        if c in usable:
            continue
        if c >= topo.possible and c not in topo.online:
            raise TopologyError(f"--host-cpus: CPU {c} does not exist on this host "
                                f"(online CPUs {format_cpulist(topo.online)})")
        if c not in topo.online:
            raise TopologyError(f"--host-cpus: CPU {c} is offline (online CPUs {format_cpulist(topo.online)})")
        raise TopologyError(f"--host-cpus: CPU {c} is outside this process's CPU affinity or cpuset "
                            f"(usable CPUs {format_cpulist(topo.usable)})")


def plan(topo: Topology, ncpus: int, smt: bool = False, oversubscribe: bool = False,
         host_cpus: list[int] | None = None) -> Placement:
    """Choose a host CPU for each of ncpus emulated CPUs and one for the reader.

    host_cpus (``--host-cpus``) fixes the host CPUs, in order, instead of choosing."""
    if ncpus < 1:
        raise TopologyError(f"--cpus must be at least 1 (got {ncpus})")
    if host_cpus is not None:
        refuse_unusable(list(host_cpus), topo)
        if ncpus < len(host_cpus):
            raise TopologyError(f"--cpus {ncpus} is fewer than the {len(host_cpus)} CPUs of --host-cpus")
    pool = list(host_cpus) if host_cpus is not None else _smt_pool(topo) if smt else topo.physical_cpus()
    if not pool:
        raise TopologyError("no usable CPUs to place emulated CPUs on")
    warnings: list[str] = []

    oversubscribed = ncpus > len(pool)
    if oversubscribed and not oversubscribe:
        what = "CPUs of --host-cpus" if host_cpus is not None else "logical CPUs" if smt else "physical cores"
        hint = "pass --oversubscribe to run anyway (timings will not be valid)"
        if topo.smt_active and not smt and host_cpus is None:
            hint = (
                f"pass --smt to also use SMT siblings ({len(topo.usable)} usable logical CPUs), "
                "or --oversubscribe to run anyway (timings will not be valid)"
            )
        raise TopologyError(
            f"--cpus {ncpus} exceeds the {len(pool)} usable {what} "
            f"({format_cpulist(pool)}); {hint}"
        )
    cpus = tuple(pool[i % len(pool)] for i in range(ncpus))
    if oversubscribed:
        warnings.append(
            f"oversubscribed: {ncpus} emulated CPUs on {len(pool)} host CPUs; timings are not valid"
        )

    used = set(cpus)
    shared = [
        "+".join(map(str, sibs))
        for core in topo.cores
        if len(sibs := [c for c in core if c in used]) > 1
    ]
    if shared:
        warnings.append(
            f"SMT siblings (host CPUs {', '.join(shared)}) share a core: "
            "per-CPU timings include sibling contention"
        )

    if topo.quota_cpus is not None and topo.quota_cpus < ncpus:
        warnings.append(
            f"cgroup CPU quota is {topo.quota_cpus:g} CPUs for {ncpus} emulated CPUs: "
            "throttling will distort timings"
        )

    free_cores = [core for core in topo.cores if not used & set(core)]
    free_cpus = [c for c in topo.usable if c not in used]
    if free_cores:
        reader_cpu: int | None = free_cores[0][0]
    elif free_cpus:
        reader_cpu = free_cpus[0]
        warnings.append("the reader shares a core with the emulated CPUs")
    else:
        reader_cpu = None
        warnings.append(
            "no free core for the reader: it shares host CPUs with the emulated CPUs"
        )

    return Placement(cpus, reader_cpu, oversubscribed, tuple(warnings))


# --------------------------------------------------------------------------- pinning


def pin_self(cpu: int) -> None:
    """Pin the calling process (its main thread) to one CPU and verify it took."""
    try:
        os.sched_setaffinity(0, {cpu})
        affinity = psutil.Process().cpu_affinity()
    except (OSError, ValueError, OverflowError, psutil.Error) as exc:
        raise PinError(f"could not pin to CPU {cpu}: {exc}") from exc
    if affinity != [cpu]:
        raise PinError(f"could not pin to CPU {cpu}: affinity is {affinity} after setting it")


def current_cpu() -> int:
    """The CPU this process last ran on."""
    return psutil.Process().cpu_num()


# --------------------------------------------------------------------------- display


def render_table(topo: Topology, placement: Placement | None = None) -> "Table":
    """A rich table with one row per usable CPU, and the placement if given."""
    from rich.table import Table

    quota = "none" if topo.quota_cpus is None else f"{topo.quota_cpus:g} CPUs"
    caption = (
        f"cache line {topo.cache_line} B; {topo.possible} possible, {len(topo.online)} online, "
        f"{len(topo.usable)} usable CPUs; cgroup quota {quota}; "
        f"model {topo.model or 'unknown'}"
    )
    table = Table(title="host topology", caption=caption)
    for name in ("cpu", "core", "siblings", "LLC", "node"):
        table.add_column(name, justify="right" if name != "siblings" else "left")
    if placement is not None:
        table.add_column("use")

    users: dict[int, list[str]] = {}
    if placement is not None:
        for emu, host in enumerate(placement.cpus):
            users.setdefault(host, []).append(f"emu {emu}")
        if placement.reader_cpu is not None:
            users.setdefault(placement.reader_cpu, []).append("reader")

    for cpu in topo.usable:
        core = topo.core_of(cpu)
        try:
            node = str(topo.node_of(cpu))
        except ValueError:
            node = "?"
        row = [str(cpu), str(core), format_cpulist(topo.cores[core]), str(topo.llc_of(cpu)), node]
        if placement is not None:
            row.append(", ".join(users.get(cpu, [])))
        table.add_row(*row)
    return table
