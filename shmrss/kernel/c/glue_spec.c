/*
 * Glue written for shmrss between the engine and a user's counter library named by a c: spec
 * (docs/kernel-c.md). The spec's function names arrive as -D defines (SPEC_ADD=mc_add, ...); every
 * entry takes four longs and returns one, like glue_percpu.c's.
 */
#include "shmrss_shim.h"
#include "shmrss_glue.h"

long SPEC_SIZE(int nr_possible_cpus);
int SPEC_INIT(void *obj, int nr_possible_cpus);
void SPEC_ADD(void *obj, long delta);
long SPEC_READ(void *obj);
long SPEC_SUM(void *obj);
#ifdef SPEC_DESTROY
void SPEC_DESTROY(void *obj);
#endif
#ifdef SPEC_BOUND
long SPEC_BOUND(void *obj);
#endif

long cg_size(long possible, long a, long b, long c)
{
	(void)a; (void)b; (void)c;
	return SPEC_SIZE((int)possible);
}

long cg_init(long base, long obj, long arena, long bytes)
{
	shim_enter(base, -1);
	shim_arena(arena, arena + bytes);
	return SPEC_INIT((void *)(base + obj), nr_cpu_ids);
}

long cg_add(long base, long cpu, long obj, long d)
{
	shim_enter(base, cpu);
	SPEC_ADD((void *)(base + obj), d);
	return 0;
}

long cg_read(long base, long owner, long obj, long unused)
{
	(void)unused;
	shim_enter_owner(base, owner);
	return SPEC_READ((void *)(base + obj));
}

long cg_sum(long base, long owner, long obj, long unused)
{
	(void)unused;
	shim_enter_owner(base, owner);
	return SPEC_SUM((void *)(base + obj));
}

long cg_destroy(long base, long obj, long a, long b)
{
	(void)a; (void)b;
	shim_enter(base, -1);
#ifdef SPEC_DESTROY
	SPEC_DESTROY((void *)(base + obj));
#else
	(void)obj;
#endif
	return 0;
}

/* the library's stated bound, or -1: no bound stated */
long cg_bound(long base, long owner, long obj, long unused)
{
	(void)unused;
	shim_enter_owner(base, owner);
#ifdef SPEC_BOUND
	return SPEC_BOUND((void *)(base + obj));
#else
	(void)obj;
	return -1;
#endif
}

long cg_offline(long base, long cpu, long a, long b)
{
	(void)a; (void)b;
	shim_enter(base, -1);
	return shim_cpu_offline(cpu);
}

long cg_setup(long base, long shared_off, long stride, long cpus)
{
	return shim_setup(base, shared_off, stride, cpus);
}
