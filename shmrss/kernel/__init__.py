"""Kernel C beside the ports: a userspace shim (``c/``), its build with gcc, and the call into it.

``source`` finds (or extracts from Debian's linux-source tarball) the kernel files a
built-in kernel design compiles; ``build`` compiles a library with the shim into a
shared object in the private compile cache and loads it; ``ccall`` is the compiled
call through an address the segment holds. docs/kernel-c.md tells the whole story.
"""
