/*
 * Glue written for shmrss between the engine and HPCC's lib/percpu_counter_tree.c (not in any released
 * kernel: a tree with the series applied, or a public copy of its two files): mm->rss_stat's four counter
 * trees initialised, updated, read and destroyed as HPCC's mm patch does (percpu_counter_tree_init_many
 * with the items in the mm, one per-CPU allocation for the four level-0 counters). Compiled in one
 * translation unit after the library, so kt_boot can reset the file's boot-time statics.
 */
#include <linux/percpu_counter_tree.h>
#include "shmrss_glue.h"

#define NR_MM_COUNTERS 4
#define KT_BATCH 32 /* the batch the port uses (designs/tree.py LOG2_BATCH) */

/* percpu_counter_tree_subsystem_init for nr_cpu_ids possible CPUs, as at boot: its statics reset first
 * (accuracy_multiplier accumulates), so one process can boot more than one geometry */
static long kt_boot(long possible)
{
	nr_cpu_ids = (int)possible;
	accuracy_multiplier = 0;
	return percpu_counter_tree_subsystem_init();
}

static struct percpu_counter_tree *kt_counter(long base, long obj, long k)
{
	return (struct percpu_counter_tree *)(base + obj) + k;
}

/* what the engine needs of the C's layout for `possible` CPUs (k-tree's params) */
long kt_layout(long what, long possible, long b, long c)
{
	(void)b; (void)c;
	if (kt_boot(possible))
		return -1;
	switch (what) {
	case 0: return sizeof(struct percpu_counter_tree);
	case 1: return percpu_counter_tree_items_size();
	case 2: return sizeof(struct percpu_counter_tree_level_item);
	case 3: return offsetof(struct percpu_counter_tree, level0);
	case 4: return offsetof(struct percpu_counter_tree, bias);
	case 5: return counter_config->nr_levels;
	case 6: return offsetof(struct percpu_counter_tree, approx_sum);
	case 7: return offsetof(struct percpu_counter_tree, approx_accuracy_range);
	}
	return -1;
}

/* mm_init: the four counters at obj, their items after them, level 0 carved from [arena, arena + bytes) */
long kt_init(long base, long obj, long arena, long bytes)
{
	struct percpu_counter_tree *c = kt_counter(base, obj, 0);
	struct percpu_counter_tree_level_item *items = (void *)(c + NR_MM_COUNTERS);

	shim_enter(base, -1);
	shim_arena(arena, arena + bytes);
	return percpu_counter_tree_init_many(c, items, NR_MM_COUNTERS, KT_BATCH, GFP_KERNEL_ACCOUNT) ? -1 : 0;
}

/* add_mm_counter: percpu_counter_tree_add(&mm->rss_stat[member], value) on emulated CPU cpu */
long kt_add(long base, long cpu, long obj, long d)
{
	shim_enter(base, cpu);
	percpu_counter_tree_add((struct percpu_counter_tree *)(base + obj), d);
	return 0;
}

long kt_sum(long base, long owner, long obj, long unused)
{
	(void)unused;
	shim_enter_owner(base, owner);
	return percpu_counter_tree_precise_sum((struct percpu_counter_tree *)(base + obj));
}

long kt_approx(long base, long obj, long unused1, long unused2)
{
	(void)unused1; (void)unused2;
	return percpu_counter_tree_approximate_sum((struct percpu_counter_tree *)(base + obj));
}

/* percpu_counter_tree_approximate_accuracy_range: under (which 0) or over (which 1) */
long kt_range(long base, long obj, long which, long unused)
{
	unsigned long under = 0, over = 0;

	(void)unused;
	percpu_counter_tree_approximate_accuracy_range((struct percpu_counter_tree *)(base + obj), &under, &over);
	return which ? (long)over : (long)under;
}

long kt_destroy(long base, long obj, long unused1, long unused2)
{
	(void)unused1; (void)unused2;
	shim_enter(base, -1);
	percpu_counter_tree_destroy_many(kt_counter(base, obj, 0), NR_MM_COUNTERS);
	return 0;
}

/* the hotplug kill path: HPCC registers no callback (level 0 keeps a dead CPU's value, still summed) */
long kt_offline(long base, long cpu, long unused1, long unused2)
{
	(void)unused1; (void)unused2;
	shim_enter(base, -1);
	return shim_cpu_offline(cpu);
}

long kt_setup(long base, long shared_off, long stride, long cpus)
{
	long r = shim_setup(base, shared_off, stride, cpus);

	return r ? r : kt_boot(cpus & 0xffff);
}
