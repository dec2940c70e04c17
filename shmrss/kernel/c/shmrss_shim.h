/*
 * shmrss's userspace shim: the kernel API that counter libraries use, over one run's shared segment.
 * Written for shmrss (no kernel code); every linux/ and asm/ header a library includes is a stub that
 * includes this file. docs/kernel-c.md lists what is covered and what cannot work in userspace.
 *
 * Per-CPU memory follows the kernel's model: a __percpu pointer is CPU 0's address relative to the
 * segment (the same number in every process, however the segment is mapped) and a CPU's copy is that
 * plus the CPU's unit offset. this_cpu_*() are single unlocked x86 instructions on the current
 * emulated CPU's copy (the kernel's %gs-relative form becomes a register holding the CPU's base).
 */
#ifndef SHMRSS_SHIM_H
#define SHMRSS_SHIM_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <limits.h>
#include <string.h>

typedef int8_t s8;
typedef uint8_t u8;
typedef int16_t s16;
typedef uint16_t u16;
typedef int32_t s32;
typedef uint32_t u32;
typedef int64_t s64;
typedef uint64_t u64;
typedef unsigned int gfp_t;

#define GFP_KERNEL 0u
#define GFP_KERNEL_ACCOUNT 0u
#define GFP_ATOMIC 0u
#define GFP_NOWAIT 0u
#define __GFP_ZERO 0u
#define ENOMEM 12
#define EINVAL 22

/* ---- compiler */
#define __percpu
#define __read_mostly
#define __maybe_unused __attribute__((unused))
#define __always_unused __attribute__((unused))
#define __init
#define __ro_after_init
#define ____cacheline_aligned_in_smp __attribute__((aligned(64)))
#define __exit
#define __must_check
#define __always_inline inline __attribute__((always_inline))
#define noinline __attribute__((noinline))
#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)
#define barrier() __asm__ __volatile__("" ::: "memory")
#define READ_ONCE(x) (*(const volatile __typeof__(x) *)&(x))
#define WRITE_ONCE(x, v) do { *(volatile __typeof__(x) *)&(x) = (v); } while (0)
#define smp_mb() __atomic_thread_fence(__ATOMIC_SEQ_CST)
#define smp_rmb() barrier()
#define smp_wmb() barrier()
#define EXPORT_SYMBOL(s)
#define EXPORT_SYMBOL_GPL(s)
#define MODULE_LICENSE(s)
#define printk(...) ((void)0)
#define pr_err(...) ((void)0)
#define pr_warn(...) ((void)0)
#define pr_info(...) ((void)0)
#define pr_debug(...) ((void)0)
#define BUILD_BUG_ON(c) _Static_assert(!(c), #c)
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define container_of(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))
#define abs(x) ({ __typeof__(x) _a = (x); _a < 0 ? -_a : _a; })
#define max(a, b) ({ __typeof__(a) _x = (a); __typeof__(b) _y = (b); _x > _y ? _x : _y; })
#define min(a, b) ({ __typeof__(a) _x = (a); __typeof__(b) _y = (b); _x < _y ? _x : _y; })
#define max_t(t, a, b) max((t)(a), (t)(b))
#define min_t(t, a, b) min((t)(a), (t)(b))
#define S32_MAX INT_MAX
#define ALIGN(x, a) (((x) + (a) - 1) & ~((__typeof__(x))(a) - 1))
#define KERN_ERR ""
/* get_count_order: ceil(log2(n)), -1 for 0 (include/linux/bitops.h) */
static inline int get_count_order(unsigned int n)
{ return n == 0 ? -1 : (n == 1 ? 0 : 32 - __builtin_clz(n - 1)); }
#define S32_MIN INT_MIN

/* ---- the run's state (shim.c): set by the glue at each entry from the numba loop */
extern char *shim_base;          /* this process's mapping of the segment */
extern char *shim_cpu_base;      /* shim_base + the current emulated CPU's unit offset ("%gs") */
extern long shim_cpu;            /* the current emulated CPU (-1: none) */
extern unsigned int shim_owner;  /* the tag a lock taken now holds (the engine's owner()) */
extern long shim_pcpu_stride;    /* bytes between two CPUs' units */
extern long shim_shared_off;     /* the segment's shared area: masks, warnings, moved statics */
extern int nr_cpu_ids;

/* WARN_ON: counted into the shared area (the result reports it) */
void shim_warn(void);
#define WARN_ON(c) ({ int _w = !!(c); if (unlikely(_w)) shim_warn(); _w; })
#define WARN_ON_ONCE(c) WARN_ON(c)
#define BUG_ON(c) do { if (unlikely(c)) __builtin_trap(); } while (0)

/* ---- preemption and interrupts: one emulated CPU is one pinned process, nothing preempts a call */
#define preempt_disable() barrier()
#define preempt_enable() barrier()
#define local_irq_save(f) do { (f) = 0; barrier(); } while (0)
#define local_irq_restore(f) do { (void)(f); barrier(); } while (0)
#define local_irq_disable() barrier()
#define local_irq_enable() barrier()
#define might_sleep() ((void)0)

/* ---- per-CPU memory */
#define per_cpu_offset(cpu) ((long)(cpu) * shim_pcpu_stride)
#define per_cpu_ptr(p, cpu) ((__typeof__(p))(shim_base + (uintptr_t)(p) + per_cpu_offset(cpu)))
#define this_cpu_ptr(p) ((__typeof__(p))(shim_cpu_base + (uintptr_t)(p)))
#define raw_cpu_ptr(p) this_cpu_ptr(p)
#define smp_processor_id() ((int)shim_cpu)
#define raw_smp_processor_id() ((int)shim_cpu)
#define get_cpu() ((int)shim_cpu)
#define put_cpu() barrier()

void *shim_alloc_percpu(size_t size, size_t align);
void shim_free_percpu(void *p);
#define __alloc_percpu_gfp(size, align, gfp) shim_alloc_percpu((size), (align))
#define __alloc_percpu(size, align) shim_alloc_percpu((size), (align))
#define alloc_percpu_gfp(type, gfp) ((type __percpu *)shim_alloc_percpu(sizeof(type), __alignof__(type)))
#define alloc_percpu(type) alloc_percpu_gfp(type, GFP_KERNEL)
#define free_percpu(p) shim_free_percpu((void *)(p))

void shim_bad_percpu_size(void); /* never defined: an operand size x86 has no form for fails to link */

/* one instruction on this CPU's copy; q for 8 bytes, l for 4 (the kernel's percpu_*_op sizes) */
#define shim_pcpu_rmw(insn, var, val) do {                                                         \
	__typeof__(var) *_p = this_cpu_ptr(&(var));                                                 \
	if (sizeof(var) == 8) __asm__ __volatile__(insn "q %1, %0" : "+m"(*(u64 *)_p) : "er"((u64)(val))); \
	else if (sizeof(var) == 4) __asm__ __volatile__(insn "l %1, %0" : "+m"(*(u32 *)_p) : "ir"((u32)(val))); \
	else shim_bad_percpu_size();                                                                \
} while (0)
#define this_cpu_add(var, val) shim_pcpu_rmw("add", var, val)
#define this_cpu_sub(var, val) shim_pcpu_rmw("sub", var, val)
#define this_cpu_inc(var) this_cpu_add(var, 1)
#define this_cpu_dec(var) this_cpu_sub(var, 1)
#define this_cpu_read(var) ({ __typeof__(var) *_r = this_cpu_ptr(&(var)); READ_ONCE(*_r); })
#define this_cpu_write(var, val) do { __typeof__(var) *_w = this_cpu_ptr(&(var)); WRITE_ONCE(*_w, (val)); } while (0)
/* xadd and cmpxchg without lock: the kernel's this_cpu forms are not atomic against other CPUs */
#define this_cpu_add_return(var, val) ({                                                           \
	__typeof__(var) *_p = this_cpu_ptr(&(var)); __typeof__(var) _v = (val), _o = _v;            \
	if (sizeof(var) == 8 || sizeof(var) == 4) __asm__ __volatile__("xadd %0, %1" : "+r"(_o), "+m"(*_p)); \
	else shim_bad_percpu_size();                                                                \
	_o + _v; })
#define this_cpu_sub_return(var, val) this_cpu_add_return(var, -(val))
#define this_cpu_cmpxchg(var, oval, nval) ({                                                       \
	__typeof__(var) *_p = this_cpu_ptr(&(var)); __typeof__(var) _old = (oval);                  \
	if (sizeof(var) == 8 || sizeof(var) == 4)                                                   \
		__asm__ __volatile__("cmpxchg %2, %1" : "+a"(_old), "+m"(*_p) : "r"((__typeof__(var))(nval)) : "memory"); \
	else shim_bad_percpu_size();                                                                \
	_old; })
#define this_cpu_try_cmpxchg(var, ovalp, nval) ({                                                  \
	__typeof__(var) _e = *(ovalp); __typeof__(var) _s = this_cpu_cmpxchg(var, _e, nval);        \
	bool _ok = _s == _e; if (!_ok) *(ovalp) = _s; _ok; })
#define __this_cpu_add this_cpu_add
#define __this_cpu_sub this_cpu_sub
#define __this_cpu_inc this_cpu_inc
#define __this_cpu_dec this_cpu_dec
#define __this_cpu_read this_cpu_read
#define __this_cpu_write this_cpu_write
#define __this_cpu_add_return this_cpu_add_return
#define raw_cpu_add this_cpu_add
#define raw_cpu_sub this_cpu_sub
#define raw_cpu_read this_cpu_read
#define raw_cpu_write this_cpu_write
#define raw_cpu_cmpxchg this_cpu_cmpxchg
#define raw_cpu_try_cmpxchg this_cpu_try_cmpxchg

/* ---- atomics: lock-prefixed read-modify-writes (gcc's __atomic builtins emit lock add/xadd/cmpxchg) */
typedef struct { int counter; } atomic_t;
typedef struct { long counter; } atomic_long_t;
typedef struct { s64 counter; } atomic64_t;
#define ATOMIC_INIT(i) { (i) }
#define ATOMIC_LONG_INIT(i) { (i) }
#define ATOMIC64_INIT(i) { (i) }
#define SHIM_ATOMIC_OPS(pfx, T)                                                                       \
static inline T pfx##_read(const pfx##_t *v) { return READ_ONCE(v->counter); }                        \
static inline void pfx##_set(pfx##_t *v, T i) { WRITE_ONCE(v->counter, i); }                          \
static inline void pfx##_add(T i, pfx##_t *v) { __atomic_fetch_add(&v->counter, i, __ATOMIC_RELAXED); } \
static inline void pfx##_sub(T i, pfx##_t *v) { __atomic_fetch_sub(&v->counter, i, __ATOMIC_RELAXED); } \
static inline void pfx##_inc(pfx##_t *v) { pfx##_add(1, v); }                                          \
static inline void pfx##_dec(pfx##_t *v) { pfx##_sub(1, v); }                                         \
static inline T pfx##_add_return(T i, pfx##_t *v) { return __atomic_add_fetch(&v->counter, i, __ATOMIC_SEQ_CST); } \
static inline T pfx##_add_return_relaxed(T i, pfx##_t *v) { return __atomic_add_fetch(&v->counter, i, __ATOMIC_RELAXED); } \
static inline T pfx##_sub_return(T i, pfx##_t *v) { return __atomic_sub_fetch(&v->counter, i, __ATOMIC_SEQ_CST); } \
static inline T pfx##_fetch_add(T i, pfx##_t *v) { return __atomic_fetch_add(&v->counter, i, __ATOMIC_SEQ_CST); } \
static inline T pfx##_fetch_add_relaxed(T i, pfx##_t *v) { return __atomic_fetch_add(&v->counter, i, __ATOMIC_RELAXED); } \
static inline T pfx##_inc_return(pfx##_t *v) { return pfx##_add_return(1, v); }                       \
static inline T pfx##_dec_return(pfx##_t *v) { return pfx##_sub_return(1, v); }                       \
static inline T pfx##_xchg(pfx##_t *v, T n) { return __atomic_exchange_n(&v->counter, n, __ATOMIC_SEQ_CST); } \
static inline T pfx##_cmpxchg(pfx##_t *v, T o, T n) {                                                  \
	__atomic_compare_exchange_n(&v->counter, &o, n, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST); return o; } \
static inline bool pfx##_try_cmpxchg(pfx##_t *v, T *o, T n) {                                          \
	return __atomic_compare_exchange_n(&v->counter, o, n, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST); }   \
static inline bool pfx##_try_cmpxchg_relaxed(pfx##_t *v, T *o, T n) {                                  \
	return __atomic_compare_exchange_n(&v->counter, o, n, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED); }
SHIM_ATOMIC_OPS(atomic, int)
SHIM_ATOMIC_OPS(atomic_long, long)
SHIM_ATOMIC_OPS(atomic64, s64)

/* ---- spinlocks: the project's test-and-test-and-set lock (atomics.spin_lock), tagged with the owner so
 * the engine can release the locks of a killed CPU; 4 bytes, the size of the kernel's arch_spinlock_t */
typedef struct { volatile u32 val; } raw_spinlock_t;
typedef raw_spinlock_t spinlock_t;
struct lock_class_key { char unused; };
#define __RAW_SPIN_LOCK_UNLOCKED(x) { 0 }
#define DEFINE_RAW_SPINLOCK(x) raw_spinlock_t x##__shmrss_static
#define DEFINE_SPINLOCK(x) spinlock_t x##__shmrss_static
#ifdef SHIM_LOG_LOCKS /* shmrss verify's build only (never a run's): each lock taken is logged, shim.c */
void shim_log_lock(const void *l);
#else
#define shim_log_lock(l) ((void)0)
#endif
static inline void raw_spin_lock(raw_spinlock_t *l)
{
	for (;;) {
		u32 expect = 0;
		if (__atomic_load_n(&l->val, __ATOMIC_RELAXED) == 0 &&
		    __atomic_compare_exchange_n(&l->val, &expect, shim_owner, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) {
			shim_log_lock(l);
			return;
		}
		__builtin_ia32_pause();
	}
}
static inline void raw_spin_unlock(raw_spinlock_t *l) { __atomic_store_n(&l->val, 0, __ATOMIC_RELEASE); }
static inline void raw_spin_lock_init(raw_spinlock_t *l) { l->val = 0; }
#define raw_spin_lock_irqsave(l, f) do { (f) = 0; raw_spin_lock(l); } while (0)
#define raw_spin_unlock_irqrestore(l, f) do { (void)(f); raw_spin_unlock(l); } while (0)
#define raw_spin_lock_irq raw_spin_lock
#define raw_spin_unlock_irq raw_spin_unlock
#define spin_lock raw_spin_lock
#define spin_unlock raw_spin_unlock
#define spin_lock_init raw_spin_lock_init
#define spin_lock_irq raw_spin_lock
#define spin_unlock_irq raw_spin_unlock
#define spin_lock_irqsave raw_spin_lock_irqsave
#define spin_unlock_irqrestore raw_spin_unlock_irqrestore
#define lockdep_set_class(l, k) ((void)(k))
#define lockdep_assert_held(l) ((void)(l))

/* ---- list_head: links are stored as segment offsets, so a list in the segment is the same list in
 * every process whatever address each maps the segment at (all nodes must live in the segment) */
struct list_head { struct list_head *next, *prev; };
#define SHIM_LD(e) ((struct list_head *)(shim_base + (uintptr_t)(e)))
#define SHIM_LE(p) ((struct list_head *)((char *)(p) - shim_base))
#define LIST_HEAD(name) struct list_head name##__shmrss_static
static inline void INIT_LIST_HEAD(struct list_head *l) { l->next = SHIM_LE(l); l->prev = SHIM_LE(l); }
static inline void list_add(struct list_head *n, struct list_head *head)
{
	struct list_head *next = SHIM_LD(head->next);
	next->prev = SHIM_LE(n);
	n->next = SHIM_LE(next);
	n->prev = SHIM_LE(head);
	WRITE_ONCE(head->next, SHIM_LE(n));
}
static inline void list_del(struct list_head *e)
{
	struct list_head *next = SHIM_LD(e->next), *prev = SHIM_LD(e->prev);
	next->prev = SHIM_LE(prev);
	WRITE_ONCE(prev->next, SHIM_LE(next));
	e->next = e->prev = NULL;
}
static inline bool list_empty(const struct list_head *h) { return SHIM_LD(READ_ONCE(h->next)) == h; }
#define list_entry(ptr, type, member) container_of(ptr, type, member)
#define list_for_each_entry(pos, head, member)                                                        \
	for (pos = list_entry(SHIM_LD((head)->next), __typeof__(*pos), member); &pos->member != (head);   \
	     pos = list_entry(SHIM_LD(pos->member.next), __typeof__(*pos), member))

/* ---- cpumasks: bitmaps in the segment's shared area, bound to the run's possible and online CPUs */
#define NR_CPUS 512
struct cpumask { unsigned long bits[NR_CPUS / 64]; };
typedef struct cpumask cpumask_t;
#define SHIM_MASK(i) ((struct cpumask *)(shim_base + shim_shared_off + (i) * sizeof(struct cpumask)))
#define cpu_possible_mask ((const struct cpumask *)SHIM_MASK(0))
#define cpu_online_mask ((const struct cpumask *)SHIM_MASK(1))
#define cpu_dying_mask ((const struct cpumask *)SHIM_MASK(2))
#define cpu_present_mask cpu_possible_mask
static inline bool cpumask_test_cpu(int cpu, const struct cpumask *m)
{ return (READ_ONCE(m->bits[cpu / 64]) >> (cpu % 64)) & 1; }
static inline int shim_next_cpu(int cpu, const struct cpumask *a, const struct cpumask *b)
{
	for (cpu++; cpu < nr_cpu_ids; cpu++)
		if (cpumask_test_cpu(cpu, a) || (b && cpumask_test_cpu(cpu, b)))
			return cpu;
	return nr_cpu_ids;
}
static inline unsigned int cpumask_weight(const struct cpumask *m)
{
	unsigned int n = 0;
	for (int i = 0; i < NR_CPUS / 64; i++) n += __builtin_popcountl(READ_ONCE(m->bits[i]));
	return n;
}
#define for_each_cpu(cpu, m) for ((cpu) = -1; ((cpu) = shim_next_cpu((cpu), (m), NULL)) < nr_cpu_ids;)
#define for_each_cpu_or(cpu, a, b) for ((cpu) = -1; ((cpu) = shim_next_cpu((cpu), (a), (b))) < nr_cpu_ids;)
#define for_each_possible_cpu(cpu) for_each_cpu(cpu, cpu_possible_mask)
#define for_each_online_cpu(cpu) for_each_cpu(cpu, cpu_online_mask)
#define for_each_present_cpu(cpu) for_each_possible_cpu(cpu)
#define num_online_cpus() cpumask_weight(cpu_online_mask)
#define num_possible_cpus() cpumask_weight(cpu_possible_mask)
#define cpu_online(cpu) cpumask_test_cpu((cpu), cpu_online_mask)

/* ---- CPU hotplug: callbacks registered when the library loads, run by the engine's offline path */
enum cpuhp_state { CPUHP_INVALID = -1, CPUHP_OFFLINE = 0, CPUHP_PERCPU_CNT_DEAD, CPUHP_MM_MEMCQ_DEAD,
		   CPUHP_AP_ONLINE_DYN, CPUHP_ONLINE };
int shim_cpuhp_setup(enum cpuhp_state s, const char *name, int (*startup)(unsigned int),
		     int (*teardown)(unsigned int), bool invoke);
#define cpuhp_setup_state(s, n, up, down) shim_cpuhp_setup((s), (n), (up), (down), true)
#define cpuhp_setup_state_nocalls(s, n, up, down) shim_cpuhp_setup((s), (n), (up), (down), false)
#define module_init(fn) static void __attribute__((constructor)) shim_module_init_##fn(void) { (void)fn(); }
#define late_initcall(fn) module_init(fn)
#define core_initcall(fn) module_init(fn)

/* ---- debugobjects: nothing */
struct debug_obj_descr { const char *name; bool (*fixup_free)(void *, int); };
enum debug_obj_state { ODEBUG_STATE_NONE, ODEBUG_STATE_ACTIVE };
#define debug_object_init(a, d) ((void)0)
#define debug_object_activate(a, d) ((void)0)
#define debug_object_deactivate(a, d) ((void)0)
#define debug_object_free(a, d) ((void)0)

#endif
