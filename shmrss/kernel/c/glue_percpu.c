/*
 * Glue written for shmrss between the engine and the kernel's lib/percpu_counter.c: mm->rss_stat's four
 * counters, initialised, updated, summed and destroyed as mm/ and kernel/fork.c do. Every entry takes
 * four longs and returns one (the engine calls them through an address). Works with 6.1's
 * percpu_counter_init (one alloc_percpu per counter) and later kernels' percpu_counter_init_many (one
 * allocation for all four, as mm_init does since 6.5).
 */
#include <linux/percpu_counter.h>
#include "shmrss_glue.h"

#define NR_MM_COUNTERS 4

/* what the engine's compiled reads need of the C's layout (k-percpu's params) */
long kp_layout(long what, long a, long b, long c)
{
	(void)a; (void)b; (void)c;
	switch (what) {
	case 0: return sizeof(struct percpu_counter);
	case 1: return offsetof(struct percpu_counter, count);
	case 2: return offsetof(struct percpu_counter, counters);
	case 3: return offsetof(struct percpu_counter, lock);
	case 4: return percpu_counter_batch;
	case 5: return NR_MM_COUNTERS;
	}
	return -1;
}

/* mm_init: rss_stat at obj, its per-CPU memory carved from [arena, arena + bytes) of every CPU's unit */
long kp_init(long base, long obj, long arena, long bytes)
{
	struct percpu_counter *fbc = (struct percpu_counter *)(base + obj);

	shim_enter(base, -1);
	shim_arena(arena, arena + bytes);
#ifdef percpu_counter_init_many
	return percpu_counter_init_many(fbc, 0, GFP_KERNEL_ACCOUNT, NR_MM_COUNTERS) ? -1 : 0;
#else
	for (int i = 0; i < NR_MM_COUNTERS; i++)
		if (percpu_counter_init(&fbc[i], 0, GFP_KERNEL_ACCOUNT))
			return -1;
	return 0;
#endif
}

/* add_mm_counter: percpu_counter_add(&mm->rss_stat[member], value) on emulated CPU cpu */
long kp_add(long base, long cpu, long obj, long d)
{
	shim_enter(base, cpu);
	percpu_counter_add((struct percpu_counter *)(base + obj), d);
	return 0;
}

/* get_mm_counter_sum: percpu_counter_sum, its lock tagged owner */
long kp_sum(long base, long owner, long obj, long unused)
{
	(void)unused;
	shim_enter_owner(base, owner);
	return percpu_counter_sum((struct percpu_counter *)(base + obj));
}

/* mm_free / __mmdrop: percpu_counter_destroy of each (destroy_many since 6.5) */
long kp_destroy(long base, long obj, long unused1, long unused2)
{
	struct percpu_counter *fbc = (struct percpu_counter *)(base + obj);

	(void)unused1; (void)unused2;
	shim_enter(base, -1);
#ifdef percpu_counter_init_many
	percpu_counter_destroy_many(fbc, NR_MM_COUNTERS);
#else
	for (int i = 0; i < NR_MM_COUNTERS; i++)
		percpu_counter_destroy(&fbc[i]);
#endif
	return 0;
}

/* the hotplug kill path: CPU cpu goes offline and percpu_counter_cpu_dead folds its counts */
long kp_offline(long base, long cpu, long unused1, long unused2)
{
	(void)unused1; (void)unused2;
	shim_enter(base, -1);
	return shim_cpu_offline(cpu);
}

long kp_setup(long base, long shared_off, long stride, long cpus)
{
	return shim_setup(base, shared_off, stride, cpus);
}
