"""Compiled fork/exit loop: what a short-lived process pays to create and tear down its counters.

Every emulated CPU loops: create an mm, run a short tape (faults, optional
clones), exit, destroy. Creation and destruction go through an emulated
per-CPU allocator in the segment (its two global locks contended across the
CPU processes: ``pcpu_alloc_mutex``, taken by allocations only, and
``pcpu_lock``, an irq-off spinlock taken inside the mutex by allocations and
alone by frees; a bitmap of slots, one slice per possible CPU) in the way of
the chosen variant (docs/designs.md, fork/exit):

    upstream     two allocations at fork (rss counters, mm_cid), each zeroing
                 P slices, a second loop over P initialising mm_cid; futex_ref,
                 a third, at the first clone only; teardown: 4 summing loops
                 (one per counter), then the frees
    merged       Desnoyers' ``mm_percpu_struct`` (seed 000's thread): the three
                 per-CPU allocations (rss counters, mm_cid, futex_ref) as one,
                 made at fork, and one loop that zeroes the counters and
                 futex_ref and initialises mm_cid together; one free
    fused-check  upstream, but one teardown loop summing all 4 counters
    ctor-cache   merged, plus a per-CPU cache of retired mm objects keeping
                 their per-CPU memory (and their counters registered): reuse
                 needs no zeroing (a freed mm sums to zero), no mutex and no
                 global list lock; both only when the cache is empty or full
    lazy         ``single``, Krisman's RFC ("Optimize rss_stat initialization/
                 teardown for single-threaded tasks"): a single-threaded mm
                 makes no per-CPU allocation for its rss counters and does not
                 register them (no list lock; its mm object comes from the
                 slab: a lock-free claim of its slot); the second thread
                 allocates and registers the counters (and futex_ref, at the
                 first clone, as upstream). mm_cid is not deferred by the RFC:
                 fork still makes its per-CPU allocation under the mutex and
                 its two possible-CPU loops, as Mateusz Guzik says on the
                 thread: "there are 2 loops of the sort already happening even
                 with the patchset at hand: mm_alloc_cid() results in one loop
                 in the percpu allocator to zero out the area, then
                 mm_init_cid() performs the following: for_each_possible_cpu(i)
                 {...}". (Until issue 23 lazy deferred mm_cid too, which the
                 RFC does not do.)
    inline       ``tree``: the items live in the mm (zeroed with it), one
                 per-CPU allocation for the level-0 counters; HPCC's
                 percpu_counter_tree has no hotplug list, so no list lock
    first-use    merged's one allocation, not zeroed; a per-mm bitmap of the
                 CPUs whose slices are initialised, set on the first switch
                 onto a CPU (or the first counter update there), which
                 initialises that slice; check_mm and the precise read walk
                 the CPUs in the bitmap (shmrss/lifecycle_remedies.py)
    coarse       ctor-cache's objects in one pool per group of --coarse-group
                 CPUs, each behind one lock taken once on allocation and
                 once on free; an empty pool falls back to the allocator

Allocation and mm_cid walk the possible CPUs; the teardown sums (check_mm's
percpu_counter_sum, fused-check's loop) walk the online CPUs (--online-cpus).

The global list lock. Upstream's rss counters are percpu_counters, and with
CONFIG_HOTPLUG_CPU ``__percpu_counter_init_many`` and
``percpu_counter_destroy_many`` (lib/percpu_counter.c, since 6.6) each take
one global spinlock for the whole group::

    spin_lock_irqsave(&percpu_counters_lock, flags);
    for (i = 0; i < nr_counters; i++)
            list_add(&fbc[i].list, &percpu_counters);   /* list_del at destroy */
    spin_unlock_irqrestore(&percpu_counters_lock, flags);

Every fork and every exit of every process takes it, on every CPU: it is
emulated as one spinlock word on its own line (``A_PCL_LINE``), with its
acquisitions and wait ticks counted beside it. futex_ref's allocation at the
first clone follows kernel/futex/core.c ``futex_hash_allocate``:
``if (!mm->futex_ref) { mm->futex_ref = alloc_percpu(unsigned int); ...}``.

Slot s of the per-CPU region holds, in each CPU's unit, two lines: the
counters (and merged's mm_cid at word 4) and upstream's separate mm_cid line.
The mm object of slot s is design mm s. Phases are timed with rdtsc into the
CPU's tally line.
"""

from numba import njit

from shmrss import layout as L, lifecycle_remedies as R
from shmrss.atomics import cmpxchg, load, pause, raw, rdtsc, spin_lock, spin_unlock, store, xadd
from shmrss.designs._common import pcpu_word
from shmrss.designs.interface import bind
from shmrss.designs.percpu import count_word, init_structs
from shmrss.specialise import entry

# the design of this copy (``shmrss.specialise``): percpu for upstream, merged, fused-check and ctor-cache,
# single for lazy, tree for inline (lifecycle.VARIANT_DESIGN); the other variants' branches never run in it
_NAMES = ("add", "approx_bound", "mm_destroy", "mm_init", "read_approx", "read_precise", "task_exit",
          "thread_created")
(add, approx_bound, mm_destroy, mm_init, read_approx, read_precise, task_exit,
 thread_created) = bind("atomic", _NAMES)  # DESIGN-IMPORT

UPSTREAM, MERGED, FUSED, CTOR, LAZY, INLINE = range(6)
FIRST_USE, COARSE = 6, 7  # issue 22's remedies (shmrss/lifecycle_remedies.py)
VARIANTS = ("upstream", "merged", "fused-check", "ctor-cache", "lazy", "inline", "first-use", "coarse")
CID_UNSET = -1

# lifecycle parameters, first two lines of the lifecycle area (the design's global words)
P_VARIANT, P_SLOTS, P_PAGES, P_CLONES, P_DEPTH, P_CACHE, P_CACHE_STRIDE, P_BITMAP_WORDS, P_LEAK = range(9)
PARAM_WORDS = 16
# then a line with the allocator's mutex (word 0; word 1 counts its acquisitions), a line with the
# percpu_counters_lock spinlock (word 0; word 1 its acquisitions, word 2 the ticks spent waiting for it),
# a line with the allocator's pcpu_lock spinlock (the same three words);
# then the bitmaps (rss counters and the mm object, mm_cid, futex_ref), each on its own lines
A_MUTEX_LINE = 2
A_PCL_LINE = 3
A_PCPU_LOCK_LINE = 4
A_BITMAP_LINE = 5
NBITMAPS = 3
CID, FUTEX = 1, 2  # bitmaps of the separate allocations


@njit(inline="always")
def _lc(seg):
    return seg[L.H_GLOBAL]


@njit(inline="always")
def _mutex(seg):
    return _lc(seg) + A_MUTEX_LINE * seg[L.H_LINE]


@njit(inline="always")
def _bitmap(seg, which):
    """which 0: counters (and the mm object), 1: mm_cid, 2: futex_ref."""
    lw = seg[L.H_LINE]
    words = seg[_lc(seg) + P_BITMAP_WORDS]
    lines = -(-words // lw)
    return _lc(seg) + (A_BITMAP_LINE + which * lines) * lw


@njit(inline="always")
def _pcl(seg):
    return _lc(seg) + A_PCL_LINE * seg[L.H_LINE]


@njit(inline="always")
def _counters_list_locked(seg):
    """percpu_counters_lock around the list_add / list_del of a group of counters (a few stores)."""
    lk = _pcl(seg)
    t0 = rdtsc()
    spin_lock(seg, lk, 1)
    seg[lk + 1] += 1
    seg[lk + 2] += rdtsc() - t0
    spin_unlock(seg, lk)


@njit(inline="always")
def _cache(seg, cpu):
    return seg[_lc(seg) + P_CACHE] + cpu * seg[_lc(seg) + P_CACHE_STRIDE]


@njit(inline="always")
def _lock(seg):
    """Take the allocator mutex; returns the ticks spent waiting."""
    m = _mutex(seg)
    t0 = rdtsc()
    spin_lock(seg, m, 1)
    seg[m + 1] += 1
    return rdtsc() - t0


@njit(inline="always")
def _unlock(seg):
    spin_unlock(seg, _mutex(seg))


@njit(inline="always")
def _pcpu_lock(seg):
    """Take pcpu_lock, the allocator's irq-off spinlock, counting the acquisition and the ticks waited."""
    lk = _lc(seg) + A_PCPU_LOCK_LINE * seg[L.H_LINE]
    t0 = rdtsc()
    spin_lock(seg, lk, 1)
    seg[lk + 1] += 1
    seg[lk + 2] += rdtsc() - t0


@njit(inline="always")
def _pcpu_unlock(seg):
    spin_unlock(seg, _lc(seg) + A_PCPU_LOCK_LINE * seg[L.H_LINE])


@njit(inline="always")
def _alloc_locked(seg, which, s):
    """One per-CPU allocation, with the allocator's two locks as mm/percpu.c's pcpu_alloc takes them::

        mutex_lock_killable(&pcpu_alloc_mutex)      /* chunk create/destroy, [de]pop, map ext */
        spin_lock_irqsave(&pcpu_lock, flags);
        ... off = pcpu_alloc_area(chunk, bits, bit_align, off); ...
        spin_unlock_irqrestore(&pcpu_lock, flags);
        ...
        mutex_unlock(&pcpu_alloc_mutex);

    s < 0: the first free slot of bitmap ``which`` (-1 if full), else slot s (a same-index allocation).
    Returns (slot, ticks spent waiting for the mutex)."""
    wait = _lock(seg)
    _pcpu_lock(seg)
    if s < 0:
        s = _alloc_any(seg, which)
    else:
        _alloc_slot(seg, which, s)
    _pcpu_unlock(seg)
    _unlock(seg)
    return s, wait


@njit(inline="always")
def _free_locked(seg, which, s):
    """free_percpu (mm/percpu.c) takes pcpu_lock only, never the mutex::

        spin_lock_irqsave(&pcpu_lock, flags);
        ... size = pcpu_free_area(chunk, off); ...
        spin_unlock_irqrestore(&pcpu_lock, flags);
    """
    _pcpu_lock(seg)
    _free_slot(seg, which, s)
    _pcpu_unlock(seg)


@njit(inline="always")
def _alloc_any(seg, which):
    """Under the mutex: the first free slot of a bitmap, marked used; -1 if full."""
    b = _bitmap(seg, which)
    nslots = seg[_lc(seg) + P_SLOTS]
    for i in range(seg[_lc(seg) + P_BITMAP_WORDS]):
        w = seg[b + i]
        if w != -1:
            for bit in range(64):
                s = i * 64 + bit
                if s >= nslots:
                    return -1
                if not (w >> bit) & 1:
                    seg[b + i] = w | (1 << bit)
                    return s
    return -1


@njit(inline="always")
def _alloc_slot(seg, which, s):
    """Under the mutex: mark slot s used (a same-index allocation); False if it was taken."""
    b = _bitmap(seg, which) + (s >> 6)
    bit = 1 << (s & 63)
    if seg[b] & bit:
        return False
    seg[b] = seg[b] | bit
    return True


@njit(inline="always")
def _free_slot(seg, which, s):
    b = _bitmap(seg, which) + (s >> 6)
    seg[b] = seg[b] & ~(1 << (s & 63))


@njit(inline="always")
def _separate_cid(variant):
    """Variants whose mm_cid is its own per-CPU allocation made at fork (merged and ctor-cache share the
    counters'; lazy's RFC keeps mm_alloc_cid at fork)."""
    return variant == UPSTREAM or variant == FUSED or variant == INLINE or variant == LAZY


@njit(inline="always")
def _registers_at_fork(variant):
    """Variants whose rss counters are percpu_counters made at fork: init_many / destroy_many take the list lock."""
    return variant == UPSTREAM or variant == MERGED or variant == FUSED or variant == CTOR or variant >= FIRST_USE


@njit(inline="always")
def _futex_merged(variant):
    """Variants whose futex_ref lives in the one merged allocation made at fork (none at the first clone)."""
    return variant == MERGED or variant == CTOR or variant >= FIRST_USE


@njit(inline="always")
def _claim_slot(seg):
    """lazy's mm object: a lock-free claim of a free slot (the slab, not the per-CPU allocator); -1 if full."""
    b = _bitmap(seg, 0)
    nslots = seg[_lc(seg) + P_SLOTS]
    for i in range(seg[_lc(seg) + P_BITMAP_WORDS]):
        while True:
            w = load(seg, b + i)
            bit = -1
            for j in range(64):
                if i * 64 + j < nslots and not (w >> j) & 1:
                    bit = j
                    break
            if bit < 0:
                break
            if cmpxchg(seg, b + i, w, w | (1 << bit)) == w:
                return i * 64 + bit
    return -1


@njit(inline="always")
def _release_slot(seg, s):
    b = _bitmap(seg, 0) + (s >> 6)
    while True:
        w = load(seg, b)
        if cmpxchg(seg, b, w, w & ~(1 << (s & 63))) == w:
            return


@njit(inline="always")
def _separate(seg, which, s, free):
    """A separate per-CPU allocation (mm_cid, futex_ref) made (mutex, then pcpu_lock) or freed (pcpu_lock
    only); returns the ticks spent waiting for the mutex."""
    if free:
        _free_locked(seg, which, s)
        return 0
    return _alloc_locked(seg, which, s)[1]


@njit(inline="always")
def _futex_word(seg, cpu, s, merged):
    if merged:
        return pcpu_word(seg, cpu, s, 5)
    return pcpu_word(seg, cpu, s, seg[L.H_LINE] + 1)


@njit(inline="always")
def _init_futex_ref(seg, cpu, s):
    """alloc_percpu(unsigned int) zeroes every possible CPU's slice, then ``this_cpu_inc(*mm->futex_ref)``."""
    for c in range(seg[L.H_POSSIBLE]):
        store(seg, _futex_word(seg, c, s, False), 0)
    store(seg, _futex_word(seg, cpu, s, False), 1)


@njit(inline="always")
def _lazy_second_thread(seg, cpu, s):
    """lazy's switch at the second thread: the counters' per-CPU allocation the single mm saved, now made
    (their slices are zeroed by the design's switch) and registered; futex_ref at the first clone, as
    upstream. mm_cid was made at fork."""
    wait = _alloc_locked(seg, 0, s)[1]  # the mm object's slot already reserves it: this is the locks' cost
    wait += _separate(seg, FUTEX, s, False)
    _init_futex_ref(seg, cpu, s)
    _counters_list_locked(seg)
    return wait


@njit(inline="always")
def _cid_word(seg, cpu, s, merged):
    if merged:
        return pcpu_word(seg, cpu, s, 4)
    return pcpu_word(seg, cpu, s, seg[L.H_LINE])


@njit(inline="always")
def _zero_counters(seg, s):
    """The per-CPU allocator zeroes every possible CPU's slice (mm/percpu.c, pcpu_alloc)::

        for_each_possible_cpu(cpu)
            memset((void *)pcpu_chunk_addr(chunk, cpu, 0) + off, 0, size);
    """
    for cpu in range(seg[L.H_POSSIBLE]):
        for k in range(L.NMEMBERS):
            store(seg, pcpu_word(seg, cpu, s, k), 0)


@njit(inline="always")
def _zero_and_init_cid(seg, s):
    """upstream: the allocator zeroes the mm_cid slices (every possible CPU, as ``_zero_counters``), then
    mm_init_cid's own loop sets them, again over the possible CPUs (kernel/sched/core.c)::

        for_each_possible_cpu(cpu)
            per_cpu_ptr(pcpu, cpu)->cid = MM_CID_UNSET;
    """
    for cpu in range(seg[L.H_POSSIBLE]):
        store(seg, _cid_word(seg, cpu, s, False), 0)
    for cpu in range(seg[L.H_POSSIBLE]):
        store(seg, _cid_word(seg, cpu, s, False), CID_UNSET)


@njit(inline="always")
def _fused_check(seg, s):
    """One teardown loop summing all 4 counters; returns bad members.

    It fuses check_mm's four ``percpu_counter_sum`` calls, so it walks what
    ``__percpu_counter_sum`` walks: the online CPUs (0..H_ONLINE-1), lib/percpu_counter.c::

        for_each_cpu_or(cpu, cpu_online_mask, cpu_dying_mask) {
    """
    s0 = 0
    s1 = 0
    s2 = 0
    s3 = 0
    for cpu in range(seg[L.H_ONLINE]):
        s0 += load(seg, pcpu_word(seg, cpu, s, 0))
        s1 += load(seg, pcpu_word(seg, cpu, s, 1))
        s2 += load(seg, pcpu_word(seg, cpu, s, 2))
        s3 += load(seg, pcpu_word(seg, cpu, s, 3))
    bad = 0
    for k, v in ((0, s0), (1, s1), (2, s2), (3, s3)):
        if v + load(seg, count_word(seg, s, k)) != 0:
            bad += 1
    return bad


@njit(inline="always")
def _reads_zero(seg, variant, s):
    """A new or reused mm must read 0 precisely and within its bound approximately."""
    bad = 0
    for k in range(L.NMEMBERS):
        p = R.first_use_precise(seg, s, k) if variant == FIRST_USE else read_precise(seg, s, k)
        a = read_approx(seg, s, k)
        u, o = approx_bound(seg, s, k)
        if p != 0 or a < -u or a > o:
            bad += 1
    return bad


@njit(inline="always")
def _add(seg, variant, cpu, task, s, k, d, fault):
    if variant == FIRST_USE:
        R.touch(seg, cpu, s)  # add_mm_counter's bitmap test (lifecycle_remedies: a remote update)
    add(seg, cpu, task, s, k, d, fault)


@njit(inline="always")
def _free(seg, variant, s, clones):
    """The frees of an mm's per-CPU memory (percpu_counter_destroy_many first), each under pcpu_lock only;
    returns mutex wait ticks (none: free_percpu does not take the mutex)."""
    if _registers_at_fork(variant) or (variant == LAZY and clones > 0):
        _counters_list_locked(seg)  # percpu_counter_destroy_many: list_del under percpu_counters_lock
    wait = 0
    if variant == LAZY:
        if clones > 0:
            _pcpu_lock(seg)  # the counters' free (the mm object's slot is the slab's, released below)
            _pcpu_unlock(seg)
            wait += _separate(seg, FUTEX, s, True)
        wait += _separate(seg, CID, s, True)  # mm_destroy_cid: made at fork, freed at every exit
        _release_slot(seg, s)
        return wait
    _free_locked(seg, 0, s)
    if _separate_cid(variant):
        wait += _separate(seg, CID, s, True)
    if clones > 0 and not _futex_merged(variant):
        wait += _separate(seg, FUTEX, s, True)
    return wait


@njit(inline="always")
def _remedies_run(seg, variant, cpu, task, s, clones, n, cur):
    """Inside the process, issue 22's options: first-use's clones switched onto the next CPUs (the
    first switch onto each initialises its slice), ``--switches`` more switches onto its own CPU, and
    ``--remote-every``'s update from a CPU the mm never ran on (reclaim unmaps a page, the process
    faults it back)."""
    if variant == FIRST_USE:
        for j in range(1, clones + 1):
            R.touch(seg, (cpu + j) % seg[L.H_ONLINE], s)
    R.switches(seg, cpu, s, cur, variant == FIRST_USE)
    r = R.remote_cpu(seg, cpu, n)
    if r >= 0:
        _add(seg, variant, r, -1, s, L.ANON, -1, 0)
        _add(seg, variant, cpu, task, s, L.ANON, 1, 1)


@entry("int64(int64[::1], int64)")
def lifecycle_main(words, cpu):
    """Create, use, exit and destroy mms on emulated CPU ``cpu`` until the stop flag; returns lifecycles."""
    # one function: each phase is timed with rdtsc between its steps, inline, as one mm's life
    seg = raw(words)
    st = seg[L.H_CPUSTAT] + cpu * seg[L.H_CPUSTAT_STRIDE]
    ctrl = seg[L.H_CTRL]
    lc = _lc(seg)
    variant = seg[lc + P_VARIANT]
    pages = seg[lc + P_PAGES]
    clones = seg[lc + P_CLONES]
    depth = seg[lc + P_DEPTH]
    leak_every = seg[lc + P_LEAK]  # > 0: every n-th process leaves a page behind, to prove the check
    task = cpu  # this CPU's task: its mm is the one being created
    tb = seg[L.H_TASK] + task * seg[L.H_TASK_STRIDE]

    store(seg, st + L.S_STATUS, L.CPU_BARRIER)
    xadd(seg, ctrl + seg[L.H_LINE] + L.C_BARRIER, 1)
    while load(seg, ctrl + L.C_GO) == 0:
        if load(seg, ctrl + L.C_STOP) != 0:
            return 0
        pause()
    store(seg, st + L.S_TSC_START, rdtsc())

    n = 0
    t_alloc = 0
    t_init = 0
    t_run = 0
    t_down = 0
    t_free = 0
    t_wait = 0
    bad = 0
    reuse_bad = 0
    reused = 0
    cache = _cache(seg, cpu)
    while load(seg, ctrl + L.C_STOP) == 0:
        # ---- create (fork's mm_alloc + mm_init)
        t0 = rdtsc()
        s = R.pool_get(seg, cpu) if variant == COARSE else -1  # coarse: its group's pool, one lock round trip
        from_cache = s >= 0
        if from_cache:
            pass
        elif variant == CTOR and seg[cache] > 0:
            seg[cache] -= 1
            s = seg[cache + 1 + seg[cache]]
            from_cache = True
        elif variant == LAZY:
            s = _claim_slot(seg)  # no per-CPU counters for a single-threaded mm: the mm object from the slab
            if s < 0:
                break
            t_wait += _separate(seg, CID, s, False)  # mm_alloc_cid stays at fork in the RFC
        else:
            s, w = _alloc_locked(seg, 0, -1)
            t_wait += w
            if s < 0:
                break  # every slot in use: cannot happen with one mm per CPU plus caches
            if _separate_cid(variant):
                t_wait += _separate(seg, CID, s, False)
        t1 = rdtsc()
        if not from_cache:
            if variant == MERGED or variant == CTOR or variant == COARSE:
                init_structs(seg, s)
                for c in range(seg[L.H_POSSIBLE]):  # one loop: counters and futex_ref zeroed, mm_cid set
                    for k in range(L.NMEMBERS):
                        store(seg, pcpu_word(seg, c, s, k), 0)
                    store(seg, _cid_word(seg, c, s, True), CID_UNSET)
                    store(seg, _futex_word(seg, c, s, True), 0)
                store(seg, _futex_word(seg, cpu, s, True), 1)
            elif variant == FIRST_USE:
                R.first_use_init(seg, s)  # mm words and the CPU bitmap only: the slices wait for first use
            elif variant == LAZY:
                mm_init(seg, s)  # mm words only: no per-CPU counters yet
                _zero_and_init_cid(seg, s)  # mm_cid's allocation zeroing and mm_init_cid: possible CPUs
            elif variant == INLINE:
                mm_init(seg, s)  # items zeroed with the mm, level 0 zeroed by its allocation
                _zero_and_init_cid(seg, s)
            else:
                init_structs(seg, s)
                _zero_counters(seg, s)
                _zero_and_init_cid(seg, s)
            if _registers_at_fork(variant):
                _counters_list_locked(seg)  # __percpu_counter_init_many: list_add under percpu_counters_lock
        else:
            reused += 1
        seg[tb + L.T_MM] = s
        if variant == LAZY:
            thread_created(seg, cpu, s)  # the mm's first thread
        elif variant == FIRST_USE and not from_cache:
            R.touch(seg, cpu, s)  # the first switch onto this CPU initialises its slice
            store(seg, _futex_word(seg, cpu, s, True), 1)
        R.fork_globals(seg, cpu)  # --fork-globals: lru_gen_add_mm, pgd_alloc
        t2 = rdtsc()
        reuse_bad += _reads_zero(seg, variant, s)  # the emulator's check: not timed
        t2b = rdtsc()

        # ---- the process: fault, maybe clone threads, unmap, exit
        for _ in range(pages):
            _add(seg, variant, cpu, task, s, L.ANON, 1, 1)
        if clones > 0 and variant == LAZY:
            t_wait += _lazy_second_thread(seg, cpu, s)
        elif clones > 0 and not _futex_merged(variant):
            t_wait += _separate(seg, FUTEX, s, False)  # futex_hash_allocate at the first clone
            _init_futex_ref(seg, cpu, s)
        for _ in range(clones):
            if variant == LAZY:
                thread_created(seg, cpu, s)
        _remedies_run(seg, variant, cpu, task, s, clones, n, st + L.S_CUR_MM)
        leak = 1 if leak_every > 0 and (n + 1) % leak_every == 0 else 0
        _add(seg, variant, cpu, task, s, L.ANON, -pages + leak, 0)
        if variant == LAZY:
            for _ in range(clones + 1):
                task_exit(seg, cpu, task, s)
        t3 = rdtsc()

        # ---- teardown: the check that every counter sums to zero
        if variant == FUSED:
            bad += _fused_check(seg, s)
        elif variant == FIRST_USE:
            bad += R.first_use_check(seg, cpu, s)
        else:
            bad += mm_destroy(seg, s)
        t4 = rdtsc()

        # ---- free
        R.fork_globals(seg, cpu)  # --fork-globals: lru_gen_del_mm, pgd_free
        if variant == CTOR and seg[cache] < depth:
            seg[cache + 1 + seg[cache]] = s
            seg[cache] += 1
        elif variant == COARSE and R.pool_put(seg, cpu, s):
            pass
        else:
            t_wait += _free(seg, variant, s, clones)
        t5 = rdtsc()

        n += 1
        t_alloc += t1 - t0
        t_init += t2 - t1
        t_run += t3 - t2b
        t_down += t4 - t3
        t_free += t5 - t4
        store(seg, st + L.S_LC_COUNT, n)
        store(seg, st + L.S_LC_ALLOC, t_alloc)
        store(seg, st + L.S_LC_INIT, t_init)
        store(seg, st + L.S_LC_RUN, t_run)
        store(seg, st + L.S_LC_TEARDOWN, t_down)
        store(seg, st + L.S_LC_FREE, t_free)
        store(seg, st + L.S_LC_MUTEX_WAIT, t_wait)
        store(seg, st + L.S_LC_BAD, bad)
        store(seg, st + L.S_LC_REUSE_BAD, reuse_bad)
        store(seg, st + L.S_LC_REUSED, reused)
        store(seg, st + L.S_EVENTS, n)
    store(seg, st + L.S_TSC_END, rdtsc())
    store(seg, st + L.S_STATUS, L.CPU_DONE)
    return n

