/* The per-event work of shmrss's engine for the percpu design on page_fault1, in C,
 * as the yardstick for the compiled Python loop (scripts/bench_engine.py).
 *
 * Per event: VAR += |d|, truth += d, percpu_counter_add_batch (this_cpu_cmpxchg fast
 * path, spinlock slow path), COMMIT = VAR; a tape step is decoded once per run of
 * faults, which is cut every 1024 events for the stop check. Same memory operations,
 * same instructions; header constants are kept in a struct read through a pointer,
 * as the engine reads them from the segment header.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <x86intrin.h>

struct hdr { int64_t batch, kwords, cstride, kstride; };
struct step { int64_t op, member, arg; };

static inline int64_t local_cmpxchg(volatile int64_t *p, int64_t old, int64_t new_) {
    int64_t prev;
    __asm__ volatile("cmpxchgq %2, %1" : "=a"(prev), "+m"(*p) : "r"(new_), "0"(old) : "memory", "cc");
    return prev;
}

static inline void spin_lock(volatile int64_t *l) {
    for (;;) {
        if (*l == 0 && __sync_val_compare_and_swap(l, 0, 1) == 0) return;
        _mm_pause();
    }
}

static inline void spin_unlock(volatile int64_t *l) { __atomic_store_n(l, 0, __ATOMIC_RELEASE); }

/* fbc: the emulated struct percpu_counter, 5 words (lock, count, list.next, list.prev, counters);
 * the add loads counters from it, as percpu_counter_add_batch loads fbc->counters */
static void percpu_add(const struct hdr *h, volatile int64_t *units, volatile int64_t *fbc,
                       volatile int64_t *slow, int64_t d) {
    volatile int64_t *lock = fbc, *count = fbc + 1;
    volatile int64_t *pcpu = units + fbc[4] + 0 * h->cstride; /* this_cpu_ptr(fbc->counters), CPU 0 */
    int64_t c = *pcpu;
    for (;;) {
        if (llabs(c + d) >= h->batch) {
            spin_lock(lock);
            c = *pcpu;
            *count += c + d;
            *pcpu -= c;
            spin_unlock(lock);
            (*slow)++;
            return;
        }
        int64_t seen = local_cmpxchg(pcpu, c, c + d);
        if (seen == c) return;
        c = seen;
    }
}

int main(int argc, char **argv) {
    int64_t n = argc > 1 ? atoll(argv[1]) : 200000000;
    volatile struct hdr *h = aligned_alloc(64, 64);
    h->batch = 32; h->kwords = 4; h->cstride = 8; h->kstride = 1;
    volatile int64_t *mem = aligned_alloc(64, 64 * 64);
    for (int i = 0; i < 64 * 8; i++) mem[i] = 0;
    volatile int64_t *stat = mem, *truth = mem + 16, *pcpu = mem + 32, *mmw = mem + 48;
    for (int64_t k = 0; k < 4; k++) mmw[5 * k + 4] = k * h->kstride; /* fbc->counters of mm 0 */
    struct step tape[2] = {{1, 1, 32768}, {2, 1, 32768}};
    volatile struct step *vt = tape;
    int64_t step = 0, remain = 32768, var = 0, mm = 0, e = 0;
    volatile int64_t stop = 0;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (e < n) {
        int64_t op = vt[step].op, k = vt[step].member;
        int64_t chunk;
        if (op == 1) {
            /* a run of faults, cut at the next stop check (every 1024 events), as the engine does */
            chunk = remain < 1024 - (e & 1023) ? remain : 1024 - (e & 1023);
            for (int64_t i = 0; i < chunk; i++) {
                var += 1;
                stat[1] = var;
                __asm__ volatile("" ::: "memory");
                truth[mm * 4 + k] += 1;
                percpu_add((const struct hdr *)h, pcpu, mmw + 5 * k, stat + 4, 1);
                stat[2] = var;
            }
        } else {
            int64_t d = -vt[step].arg;
            chunk = 1;
            var += llabs(d);
            stat[1] = var;
            __asm__ volatile("" ::: "memory");
            truth[mm * 4 + k] += d;
            percpu_add((const struct hdr *)h, pcpu, mmw + 5 * k, stat + 4, d);
            stat[2] = var;
        }
        e += chunk;
        if ((e & 1023) == 0 && stop) break;
        remain -= chunk;
        if (remain == 0) {
            step = step + 1 == 2 ? 0 : step + 1;
            remain = vt[step].op == 1 ? vt[step].arg : 1;
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ns = (t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec);
    printf("%.4f\n", ns / n);
    return truth[1] + mmw[6] + pcpu[1] == 0 ? 0 : 0;
}
