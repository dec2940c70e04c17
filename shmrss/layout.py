"""Word offsets of the shared segment: header slots and the fields of each per-CPU, per-task and reader record.

Module-level ints, so compiled code sees them as constants. The segment is a
flat int64 array; every region starts on a cache line and its base offset is
stored in the header, so any process (and ``shmrss monitor``) can find it.
"""

MAGIC = 0x5353_5253_5348_4D31  # "1MHSRSS" + version-independent tag
VERSION = 4  # 3: H_PIDNS (the owner's PID namespace) before the design parameters; 4: H_BASE
NMEMBERS = 4  # MM_FILEPAGES, MM_ANONPAGES, MM_SWAPENTS, MM_SHMEMPAGES
MEMBER_NAMES = ("file", "anon", "swap", "shmem")
FILE, ANON, SWAP, SHMEM = range(NMEMBERS)

# --- header: constant after creation (read by every CPU, never written while running)
H_MAGIC = 0
H_VERSION = 1
H_LINE = 2  # words per cache line
H_TOTAL = 3  # words in the segment
H_OWNER_PID = 4
H_NCPU = 5  # emulated (online) CPUs
H_POSSIBLE = 6  # possible CPUs: per-CPU units allocated and walked
H_NMM = 7
H_NTASK = 8
H_DESIGN = 9  # design id
H_PACK = 10  # 1: CPUs' per-CPU words interleaved (false sharing on purpose)
H_SLICE = 11  # scheduler time slice in events
H_CTRL = 12  # base of the control lines
H_CPUSTAT = 13  # per-CPU tally records
H_CPUSTAT_STRIDE = 14
H_TRUTH = 15  # per-CPU truth: [mm * NMEMBERS + member]
H_TRUTH_STRIDE = 16
H_PCPU = 17  # design per-CPU words: PCPU + cpu * CSTRIDE + k * KSTRIDE
H_PCPU_CSTRIDE = 18
H_PCPU_KSTRIDE = 19
H_PCPU_KWORDS = 20  # per-CPU words per mm
H_MM = 21  # design per-mm words
H_MM_STRIDE = 22
H_TASK = 23
H_TASK_STRIDE = 24
H_TAPE = 25  # tape steps, 3 words each
H_TAPE_STEPS = 26
H_RQ = 27  # per-CPU run queues: [n, task ids...]
H_RQ_STRIDE = 28
H_READER = 29
H_RING = 30  # latency samples kept per read kind
H_GLOBAL = 31  # design-wide words
H_GLOBAL_WORDS = 32
H_STAT_EVERY = 33  # events between publishing tallies / checking the stop flag
H_CREATED_NS = 34
H_RUN_ID = 35  # low 63 bits of the random run id
H_NWORK = 36  # CPUs that run tapes (0..NWORK-1); a reclaimer, if any, is CPU NWORK
H_RECLAIMER = 37  # 1 when CPU NWORK is the reclaimer
RECLAIM_BATCH = 4  # the reclaimer's pages per swap-out; small enough that a victim's anon count never dips far below 0
H_OOM = 38  # base of the OOM record (0: no OOM selection in this run)
H_FAULTS = 39  # 1: CPUs keep an in-flight journal, so a killed CPU's last update can be recovered
H_PIDNS = 40  # inode of the owner's PID namespace: H_OWNER_PID means something only in that namespace
H_DPARAM = 41  # design parameters D0..D15 (e.g. the percpu batch: its CPU-dead callback rewrites it, CPUs parked)
H_DPARAM_WORDS = 16
H_ONLINE = 57  # online CPUs (cpu_online_mask = 0..ONLINE-1): NCPU <= ONLINE <= POSSIBLE
H_HIWATER = 58  # per-mm hiwater_rss words, one line per mm (update_hiwater_rss on unmap)
# the address the owner mapped the segment at: its CPUs (forked from it, or its threads) see it there, so a C
# design's plain pointers are valid in each; the monitor, mapping it elsewhere, subtracts it (docs/kernel-c.md)
H_BASE = 59
H_WORDS = 64

# --- control lines (parent writes line 0; CPUs add themselves to the barrier on line 1)
C_STATE = 0
C_GO = 1
C_STOP = 2
C_PARENT_BEAT = 3
C_PAUSE = 4  # 1: every CPU parks at its next check point (a quiescent moment for checks and recovery)
# line 1
C_BARRIER = 0
CTRL_LINES = 2

STATE_INIT, STATE_RUNNING, STATE_STOP, STATE_DONE, STATE_FAILED = range(5)
STATE_NAMES = ("INIT", "RUNNING", "STOP", "DONE", "FAILED")

# --- per-CPU tally record (written only by its CPU)
S_EVENTS = 0  # published every H_STAT_EVERY events
S_VAR = 1  # running sum of |delta| whose truth is published
S_COMMIT = 2  # running sum of |delta| whose design update completed
S_SWITCHES = 3
S_SLOW = 4  # design slow paths taken (lock, carry, miss)
S_TSC_START = 5
S_TSC_END = 6
S_STATUS = 7
S_PID = 8
S_HOSTCPU = 9
S_BEAT = 10  # TSC at the last publish
S_HITS = 11
S_MISSES = 12
S_SPINS = 13  # failed lock attempts
S_CUR_MM = 14
S_OPS = 15  # scheduler steps (clone, exit, yield, sleep, migrate) taken
S_MIGRATIONS = 16
S_IDLE = 17  # idle scheduler passes
# fork/exit runs (lifecycle_loop): mm lifecycles and ticks spent in each phase
S_LC_COUNT = 18
S_LC_ALLOC = 19
S_LC_INIT = 20
S_LC_RUN = 21
S_LC_TEARDOWN = 22
S_LC_FREE = 23
S_LC_MUTEX_WAIT = 24
S_LC_BAD = 25  # destroyed mms whose counters did not sum to 0
S_LC_REUSE_BAD = 26  # created or reused mms that did not read 0
S_LC_REUSED = 27
S_REQ = 28  # written by the parent: REQ_OFFLINE asks the CPU to go offline at its next check point
S_CUR_TASK = 29  # the task the CPU runs (published at check points and parking)
S_RACED = 30  # pernode: moves whose node subtraction left the counter a batch or more from 0 (racing movers)
S_RACED_MAX = 31  # pernode: the largest such |counter| left
# the in-flight journal (only when H_FAULTS): what the CPU's current multi-step operation is and how
# far it got, so that the parent can complete it for a CPU that was killed in the middle
S_J = 32
J_OP = 0  # JOP_*: the kind of operation in flight
J_STEP = 1  # the design's step about to run (a kill point precedes each)
J_MM = 2
J_K = 3
J_D = 4
J_T0 = 5  # the truth word before the event
J_TASK = 6
J_A = 7  # values saved by the design before a step (old values, so a step can be told done or not)
J_B = 8
J_C = 9
J_E = 10
J_ON = 11  # 1: this CPU journals (fault runs, and always the reclaimer)
J_KILL = 12  # tests: freeze at the n-th kill point from now (0: off)
J_DOUBT_KIND = 13  # set by recovery: a lock-free update of a shared word that may or may not have landed
J_DOUBT_MM = 14
J_DOUBT_K = 15
J_DOUBT_D = 16
J_FAULT = 17  # the event's fault flag
J_KILL_STEP = 18  # tests: count only the kill points of this step (0: every step)
J_WORDS = 19
S_PAGES = S_J + J_WORDS  # pages of the fault events counted in S_EVENTS (a fault of n pages is one event)
# --fault-body page (shmrss/faultbody.py): the CPU process's real anonymous region and its page work
S_FB = 56
S_FB_PAGES = S_FB + 0  # region size in pages, set by the parent (0: no page work)
S_FB_ADDR = S_FB + 1  # the region's address in the CPU process
S_FB_CURSOR = S_FB + 2  # pages of the region touched and not yet released (a stack)
S_FB_COUNTER_TSC = S_FB + 3  # TSC ticks inside the counter updates (timed apart from the page work)
S_FB_BODY_TSC = S_FB + 4  # TSC ticks inside the page work (touches, releases)
S_FB_TOUCHED = S_FB + 5  # pages touched
S_FB_RELEASED = S_FB + 6  # pages released
S_FB_RELEASES = S_FB + 7  # unmaps that released pages
S_FB_ERRORS = S_FB + 8  # madvise calls that failed
S_FB_MINFLT = S_FB + 9  # minor faults of the CPU process during its loop (getrusage)
S_FB_PREEMPTED = S_FB + 10  # counter updates timed above faultbody.PREEMPTED_TICKS: left out of COUNTER_TSC
# pages of page work begun / done (the cursor stored): a /proc sampler brackets the region's resident pages
S_FB_BEGUN = S_FB + 11
S_FB_DONE = S_FB + 12
S_WORDS = 72

CPU_INIT, CPU_BARRIER, CPU_RUNNING, CPU_DONE, CPU_FAILED, CPU_PARKED, CPU_FROZEN, CPU_OFFLINE, CPU_DEAD = range(9)
REQ_OFFLINE = 1

# journal operations
JOP_NONE, JOP_ADD, JOP_SWITCH, JOP_SCHED = range(4)  # a migration needs none: recovery re-homes every task
# doubts: which conservation law decides whether the shared update landed
DOUBT_NONE, DOUBT_PRECISE, DOUBT_TREE, DOUBT_PERNODE, DOUBT_THREADS = range(5)
DOUBT_NAMES = ("none", "precise sum", "tree items", "pernode global", "thread count")
# how recovery settled a doubt
RES_LANDED, RES_APPLIED, RES_BAD = range(3)

# spinlock owners: a lock word holds who took it, so the locks of a dead CPU or reader can be found
OWNER_PARENT = 1 << 20  # the parent, acting for a CPU (teardown, recovery, folds)
OWNER_READER = 1 << 21  # precise reads (the reader, checks)

# --- per-task record: the engine's scheduling state, then the design's words
T_MM = 0
T_CPU = 1
T_TAPE_START = 2  # first step index
T_TAPE_LEN = 3  # steps
T_STEP = 4
T_REMAIN = 5
T_DEAD = 6
T_SLEEP = 7  # scheduler passes left to sleep; -1: until the run stops
T_DESIGN = 8  # first design word
T_WORDS = 8

# --- per-CPU run queue: a lock (taken to remove or append), the count, the task ids
Q_LOCK = 0
Q_N = 1
Q_IDS = 2

# --- tape steps: (op, member, arg, arg2)
STEP_WORDS = 4
OP_FAULT = 1  # arg events of +arg2 on member (the page-fault path; arg2: pages per fault, 0 read as 1)
OP_UNMAP = 2  # one event of -arg on member (zap: a batched update)
OP_CLONE = 3  # a new thread of the task's mm
OP_EXIT = 4  # the running thread exits; the task carries on as the thread an earlier clone made
OP_YIELD = 5  # end the time slice now
OP_SLEEP = 6  # sleep arg scheduler passes (0: until the run stops)
OP_MIGRATE = 7  # move to CPU (cpu + arg) mod the CPUs that run tapes
OP_REMOTE = 8  # one event of arg (signed) on member of mm (mm + arg2) mod mms, an mm this task does not run
OP_EXEC = 9  # exec's argument copy: arg page faults (+1 each) on member of mm (mm + arg2) mod mms, not yet switched to
OP_NAMES = {"fault": OP_FAULT, "unmap": OP_UNMAP, "clone": OP_CLONE, "exit": OP_EXIT, "yield": OP_YIELD,
            "sleep": OP_SLEEP, "migrate": OP_MIGRATE, "remote": OP_REMOTE, "exec": OP_EXEC}
IDLE_PAUSES = 256  # pause instructions between scheduler passes of an idle CPU

# --- reader record
R_NAPPROX = 0
R_NPRECISE = 1
R_APPROX_MAXERR = 2  # distance of an approximate read outside the truth envelope
R_APPROX_VIOL = 3  # approximate reads outside envelope +/- the design's bound
R_PRECISE_MAXERR = 4
R_PRECISE_VIOL = 5  # precise reads outside the truth envelope
R_MAX_BOUND = 6  # largest bound the design stated
R_ERR_PPM = 7  # worst error / bound, in millionths
R_MIN_RATIO_PPM = 8  # smallest approximate / truth, millionths (truth above R_RATIO_FLOOR)
R_PASSES = 9
R_VIOL_MM = 10  # first violation: mm, member, value, envelope lo, hi, kind (1 approx, 2 precise)
R_VIOL_MEMBER = 11
R_VIOL_VALUE = 12
R_VIOL_LO = 13
R_VIOL_HI = 14
R_VIOL_KIND = 15
R_BEAT = 16
# reads outside the stated bound (approximate) or the truth envelope (precise) by no more than the
# design's documented transient slack: counted and measured, not violations (see transient_slack)
R_APPROX_TRANSIENT = 17
R_APPROX_TRANSIENT_MAX = 18  # largest distance beyond the stated bound
R_PRECISE_TRANSIENT = 19
R_PRECISE_TRANSIENT_MAX = 20  # largest distance outside the truth envelope
R_HEAD_WORDS = 24  # then two rings of H_RING latency samples (TSC ticks): approximate, precise
RATIO_FLOOR = 256  # pages: below this the approximate/truth ratio is not meaningful

# --- OOM record (the reader's victim selections), then two rings of latency samples: 2-pass, all-precise
O_SELECTIONS = 0
O_JUDGED = 1  # selections during which no counter moved: their victims must agree
O_DISAGREE = 2
O_PRECISE_SUMS = 3  # precise badness sums the 2-pass selections needed
O_CAP_HITS = 4  # selections that spent the cap of precise sums and then took a task on its approximate points
O_LAST_2P = 5  # the last victims, for the result
O_LAST_PRECISE = 6
O_HEAD_WORDS = 8
OOM_CAP = 16  # precise sums a 2-pass selection may do
