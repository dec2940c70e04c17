"""The counter designs, one module each, all with the same compiled interface.

The interface (every function the compiled code calls, and the defaults of the
optional ones) is written down in ``interface.py``, which checks a design when
it is loaded.

Adding a design is adding a module here and its name to DESIGNS (a name's ``-`` is ``_`` in its
module's name), with an ID no other design has (the segment header names the design by it).
"""

from importlib import import_module

DESIGNS = ("atomic", "split", "percpu", "pcpcache", "single", "single-atomic", "pernode", "tree")
# the kernel's own C (docs/kernel-c.md): named, never part of "all" (they need --kernel-src)
KERNEL_DESIGNS = ("k-percpu", "k-tree", "c")  # c: a user's library, --design c:SPEC.toml


class UnknownDesign(ValueError):
    pass


def get(name: str):
    if name not in DESIGNS and name not in KERNEL_DESIGNS:
        named = (*DESIGNS, "k-percpu", "k-tree", "c:SPEC.toml")
        raise UnknownDesign(f"unknown design {name!r}; choose from {', '.join(named)} or all")
    from shmrss.designs.interface import check

    return check(import_module(f"shmrss.designs.{module_name(name)}"))


def module_name(name: str) -> str:
    """The design's module in shmrss.designs: ``single-atomic`` -> ``single_atomic``."""
    return name.replace("-", "_")


def parse_list(text: str) -> list[str]:
    """'atomic,percpu' or 'all' (also within a list) -> names, validated, order kept, duplicates dropped."""
    names = [d for n in text.split(",") if n.strip() for d in (DESIGNS if n.strip() == "all" else (n.strip(),))]
    if not names:
        raise UnknownDesign("no design named")
    out: list[str] = []
    for n in names:
        get(n)
        if n not in out:
            out.append(n)
    return out
