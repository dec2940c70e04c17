// A batched per-CPU counter written for shmrss's tests, in kernel style, against the shim's API
// (docs/kernel-c.md). Built with MC_LOSE_UPDATES it forgets what its slow path carries: the
// lost-update variant a run must fail.
#include <linux/percpu.h>
#include <linux/spinlock.h>
#include <linux/cpumask.h>

#define MC_BATCH 16

struct mycounter {
	raw_spinlock_t lock;
	s64 count;
	s32 __percpu *counters;
};

long mc_size(int nr_possible_cpus)
{
	return sizeof(struct mycounter);
}

int mc_init(void *obj, int nr_possible_cpus)
{
	struct mycounter *mc = obj;

	raw_spin_lock_init(&mc->lock);
	mc->count = 0;
	mc->counters = alloc_percpu(s32);
	return mc->counters ? 0 : -ENOMEM;
}

void mc_add(void *obj, long delta)
{
	struct mycounter *mc = obj;
	s64 count;

	preempt_disable();
	count = __this_cpu_read(*mc->counters) + delta;
	if (abs(count) >= MC_BATCH) {
		unsigned long flags;

		raw_spin_lock_irqsave(&mc->lock, flags);
#ifndef MC_LOSE_UPDATES
		mc->count += count;
#endif
		__this_cpu_sub(*mc->counters, count - delta);
		raw_spin_unlock_irqrestore(&mc->lock, flags);
	} else {
		this_cpu_add(*mc->counters, delta);
	}
	preempt_enable();
}

long mc_read(void *obj)
{
	return READ_ONCE(((struct mycounter *)obj)->count);
}

long mc_sum(void *obj)
{
	struct mycounter *mc = obj;
	unsigned long flags;
	s64 ret;
	int cpu;

	raw_spin_lock_irqsave(&mc->lock, flags);
	ret = mc->count;
	for_each_possible_cpu(cpu)
		ret += *per_cpu_ptr(mc->counters, cpu);
	raw_spin_unlock_irqrestore(&mc->lock, flags);
	return ret;
}

long mc_bound(void *obj)
{
	return (long)num_possible_cpus() * (MC_BATCH - 1);
}

void mc_destroy(void *obj)
{
	struct mycounter *mc = obj;

	free_percpu(mc->counters);
	mc->counters = NULL;
}
