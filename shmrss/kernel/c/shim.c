/*
 * shmrss's userspace shim, the run-time half: the current emulated CPU, the per-CPU allocator, the
 * cpumasks, WARN_ON's count and the CPU hotplug callbacks. Written for shmrss; see shmrss_shim.h.
 */
#include "shmrss_shim.h"
#include "shmrss_glue.h"

char *shim_base;
char *shim_cpu_base;
long shim_cpu = -1;
unsigned int shim_owner;
long shim_pcpu_stride;
long shim_shared_off;
int nr_cpu_ids;
unsigned int shim_owner_parent;
static uintptr_t arena_next, arena_end; /* segment offsets in CPU 0's unit */

#define SHIM_MAX_STATES 16
static struct { int (*startup)(unsigned int); int (*teardown)(unsigned int); } states[SHIM_MAX_STATES];
static int nstates;

static void mask_set(struct cpumask *m, int n)
{
	for (int i = 0; i < NR_CPUS / 64; i++)
		m->bits[i] = 0;
	for (int cpu = 0; cpu < n; cpu++)
		m->bits[cpu / 64] |= 1UL << (cpu % 64);
}

long shim_setup(long base, long shared_off, long stride, long cpus)
{
	long possible = cpus & 0xffff, online = (cpus >> 16) & 0xffff;

	if (possible > NR_CPUS || online > possible)
		return -EINVAL;
	shim_shared_off = shared_off;
	shim_pcpu_stride = stride;
	nr_cpu_ids = (int)possible;
	shim_owner_parent = (unsigned int)(cpus >> 32);
	shim_enter(base, -1);
	mask_set(SHIM_MASK(0), (int)possible);
	mask_set(SHIM_MASK(1), (int)online);
	mask_set(SHIM_MASK(2), 0);
	*(long *)(shim_base + shim_shared_off + SHIM_WARN_OFF) = 0;
	shim_init_statics();
	/* the startup callbacks run on every online CPU, as cpuhp_setup_state runs them at boot */
	for (int s = 0; s < nstates; s++)
		for (int cpu = 0; cpu < online; cpu++)
			if (states[s].startup)
				states[s].startup((unsigned int)cpu);
	return 0;
}

void shim_arena(long lo, long hi)
{
	arena_next = (uintptr_t)lo;
	arena_end = (uintptr_t)hi;
}

/* pcpu_alloc: a unit of every possible CPU, zeroed in each (mm/percpu.c memsets every possible CPU's copy) */
void *shim_alloc_percpu(size_t size, size_t align)
{
	uintptr_t at = (arena_next + align - 1) & ~(uintptr_t)(align - 1);
	int cpu;

	if (at + size > arena_end)
		return NULL;
	arena_next = at + size;
	for_each_possible_cpu(cpu) {
		char *p = shim_base + at + per_cpu_offset(cpu);
		for (size_t i = 0; i < size; i++)
			p[i] = 0;
	}
	return (void *)at;
}

void shim_free_percpu(void *p)
{
	(void)p; /* the mm's unit is reused by the next init of that mm */
}

void shim_warn(void)
{
	__atomic_fetch_add((long *)(shim_base + shim_shared_off + SHIM_WARN_OFF), 1, __ATOMIC_RELAXED);
}

int shim_cpuhp_setup(enum cpuhp_state s, const char *name, int (*startup)(unsigned int),
		     int (*teardown)(unsigned int), bool invoke)
{
	(void)s;
	(void)name;
	(void)invoke; /* at load no CPU is online yet: shim_setup runs the startups on the run's CPUs */
	if (nstates == SHIM_MAX_STATES)
		return -ENOMEM;
	states[nstates].startup = startup;
	states[nstates].teardown = teardown;
	nstates++;
	return nstates;
}

/*
 * cpu_down: cpuhp_set_state puts the CPU in the dying mask (cleared only by a bring-up, which no emulated
 * CPU makes), takedown_cpu takes it out of the online mask, then the DEAD callbacks run
 */
long shim_cpu_offline(long cpu)
{
	struct cpumask *online = SHIM_MASK(1), *dying = SHIM_MASK(2);

	__atomic_fetch_or(&dying->bits[cpu / 64], 1UL << (cpu % 64), __ATOMIC_SEQ_CST);
	__atomic_fetch_and(&online->bits[cpu / 64], ~(1UL << (cpu % 64)), __ATOMIC_SEQ_CST);
	for (int s = nstates - 1; s >= 0; s--)
		if (states[s].teardown)
			states[s].teardown((unsigned int)cpu);
	return 0;
}

#ifdef SHIM_LOG_LOCKS
/* shmrss verify: the segment offset of every lock taken, in this process (verify is one process) */
#define SHIM_LOCK_LOG 64
static long lock_log[SHIM_LOCK_LOG], lock_log_n;

void shim_log_lock(const void *l)
{
	lock_log[lock_log_n++ % SHIM_LOCK_LOG] = (const char *)l - shim_base;
}

/* i < 0: how many locks were taken so far; else the offset of the i-th (the last SHIM_LOCK_LOG kept) */
long shim_locks_logged(long i, long unused1, long unused2, long unused3)
{
	(void)unused1; (void)unused2; (void)unused3;
	return i < 0 ? lock_log_n : lock_log[i % SHIM_LOCK_LOG];
}
#endif
