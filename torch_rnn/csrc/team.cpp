// team.h's barrier and its settings.
#include "team.h"

#include <algorithm>
#include <chrono>
#include <thread>

#ifdef TORCH_RNN_X86_GCC
#include <immintrin.h>
#endif

namespace torch_rnn_native {
namespace {

std::atomic<int64_t> straggle_limit_ns{1'000'000};  // 1 ms: a time slice lost, not a slower member
std::atomic<int64_t> probe_period_ns{1'000'000'000};  // 1 s of one-thread loops before a team tries again
constexpr int STRAGGLES_TO_SHRINK = 2;  // one wait that long can be an interrupt; two are contention
constexpr int SPINS_BEFORE_YIELD = 4000;  // about 20-40 us of pause instructions, then sched_yield

std::atomic<int64_t> one_thread_until_ns{0};  // process-wide: the loops run in one thread until then
std::atomic<int64_t> last_straggling_join_ns{INT64_MIN / 2};  // when a loop split by rows last waited that long

inline void cpu_relax() {
#ifdef TORCH_RNN_X86_GCC
  _mm_pause();
#endif
}

}  // namespace

std::vector<int64_t> team_settings(int64_t straggle_ns, int64_t probe_ns) {
  std::vector<int64_t> previous{straggle_limit_ns.load(), probe_period_ns.load()};
  if (straggle_ns >= 0) straggle_limit_ns.store(straggle_ns);
  if (probe_ns >= 0) {
    probe_period_ns.store(probe_ns);
    one_thread_until_ns.store(0);
    last_straggling_join_ns.store(INT64_MIN / 2);
  }
  return previous;
}

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

void record_join(int64_t begin_ns, int64_t needed_ns, int64_t end_ns) {
  const int64_t lost = end_ns - begin_ns - needed_ns;
  if (lost < straggle_limit_ns.load(std::memory_order_relaxed) || lost < needed_ns) return;
  const int64_t previous = last_straggling_join_ns.exchange(end_ns, std::memory_order_relaxed);
  const int64_t probe = probe_period_ns.load(std::memory_order_relaxed);
  if (end_ns - previous < probe) one_thread_until_ns.store(end_ns + probe, std::memory_order_relaxed);
}

bool machine_busy() { return now_ns() < one_thread_until_ns.load(std::memory_order_relaxed); }

int64_t team_size(int64_t threads) { return threads > 1 && machine_busy() ? 1 : threads; }

bool Team::sync(TeamMember& member) {
  if (member.count == 1) return true;
  const int64_t generation = generation_.load(std::memory_order_acquire);
  const int64_t arrival = now_ns();
  arrivals_[member.id].ns = arrival;
  if (arrived_.fetch_add(1, std::memory_order_acq_rel) + 1 == member.count) {  // the last to arrive
    int64_t first = arrival;
    for (int64_t m = 0; m < member.count; ++m) first = std::min(first, arrivals_[m].ns);
    if (arrival - first >= straggle_limit_ns.load(std::memory_order_relaxed) && ++straggles_ >= STRAGGLES_TO_SHRINK) {
      shrink_ = true;
      one_thread_until_ns.store(arrival + probe_period_ns.load(std::memory_order_relaxed), std::memory_order_relaxed);
    }
    arrived_.store(0, std::memory_order_relaxed);
    generation_.store(generation + 1, std::memory_order_release);
  } else {
    for (int spins = 0; generation_.load(std::memory_order_acquire) == generation; ++spins) {
      if (spins < SPINS_BEFORE_YIELD) {
        cpu_relax();
      } else {
        std::this_thread::yield();  // let a descheduled member of this team (or anyone) have the core
      }
    }
  }
  if (!shrink_) return true;
  if (member.id != 0) return false;
  member = TeamMember{0, 1};
  return true;
}

}  // namespace torch_rnn_native
