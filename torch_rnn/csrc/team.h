// A team of threads that runs one loop: split by columns, meeting once per step (the next step needs every
// column of this one; in_team, Team); or split by rows, meeting once per loop (for_row_chunks, at the end).
//
// On a busy machine a member the scheduler takes off its core (another process wants it) holds up every other
// member until it runs again, a scheduler time slice of milliseconds per step: with a second process busy on
// the same cores, a team's loop ran 27 times slower than one thread's. So the members meet at a barrier of
// their own (Team::sync) that measures how long the first member waited for the last: at the second wait over
// the straggle limit (1 ms) in a loop the team shrinks to its first member, which finishes the loop alone, and
// the loops of the next probe period (1 s) run in one thread; then a team tries again. On an idle machine no
// member waits that long (a step's panels are shared out as they are claimed, step_product.h), so the team
// stays. A loop split by rows measures the time its join lost instead (record_join). Both settings:
// team_settings below, torch_rnn.native.team_settings in Python.
#pragma once

#include "common.h"

#include <algorithm>
#include <atomic>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace torch_rnn_native {

// Sets the straggle limit and the probe period in nanoseconds (a negative value keeps one) and returns the
// previous ones, [straggle_ns, probe_ns]. A new probe period also ends the current one-thread period.
std::vector<int64_t> team_settings(int64_t straggle_ns, int64_t probe_ns);

// Whether a team saw contention in the last probe period (the loops then run in one thread).
bool machine_busy();

// The team size for a loop that would use `threads`: 1 while the machine is busy.
int64_t team_size(int64_t threads);

// A monotonic clock, in nanoseconds.
int64_t now_ns();

// A loop split by rows (for_row_chunks) that began at begin_ns, needed needed_ns (its rows at its fastest
// member's pace, split evenly) and ended at end_ns: the time lost beyond that is a straggle when it exceeds both
// the straggle limit and needed_ns, and a second straggle within a probe period makes the machine busy.
void record_join(int64_t begin_ns, int64_t needed_ns, int64_t end_ns);

// The barrier of a team's members. sync() returns false to a member that must leave the loop (the team has
// shrunk); the first member then continues as a team of one (TeamMember{0, 1}), claiming every panel.
class Team {
 public:
  explicit Team(int64_t members) : arrivals_(members > 1 ? members : 1) {}
  bool sync(TeamMember& member);

 private:
  struct alignas(64) Arrival {  // one cache line each
    int64_t ns = 0;
  };
  std::vector<Arrival> arrivals_;
  alignas(64) std::atomic<int64_t> arrived_{0};
  alignas(64) std::atomic<int64_t> generation_{0};
  int straggles_ = 0;    // written by the last member to arrive only, read by it only
  bool shrink_ = false;  // written before generation_'s release, read after its acquire
};

// Runs body(member, team) on `threads` threads (OpenMP, the pool torch's intra-op ops use; fewer while the
// machine is busy, team_size); each member computes its slice of every product, and team.sync(member)
// inside body waits for all of them. One thread does everything when threads is 1, when OpenMP is missing,
// or inside another parallel region. body must not throw while other threads wait at a barrier, so the loops
// check everything before they start.
template <typename Body>
void in_team(int64_t threads, const Body& body) {
  threads = team_size(threads);
#ifdef _OPENMP
  if (threads > 1) {
    Team team(threads);
#pragma omp parallel num_threads(threads)
    {
      TeamMember member{omp_get_thread_num(), omp_get_num_threads()};
      body(member, team);
    }
    return;
  }
#endif
  Team team(1);
  TeamMember member{0, 1};
  body(member, team);
}

// Runs work(r0, r1) on chunks of rows [r0, r1) that together cover `rows`, on `threads` threads (fewer while the
// machine is busy, team_size): a loop split by rows. A row's next step needs only that row's previous state, so
// each chunk goes through every step of the loop on the member that claimed it, and the members meet once, at
// the end, instead of at every step. There is one chunk per thread, of whole ROW_GROUPs: the more rows a chunk
// has, the more of them share each weight panel while it is in the core's first-level cache. Chunks are
// claimed as they come, so a member that has not started yet (the machine is busy) leaves its chunk to the
// others. The members that finish first wait for the last; when that makes a loop take over twice as long as
// its rows at the fastest member's pace, split evenly, need (a member lost its core for a scheduler time slice),
// the join reports it (record_join), and on a busy machine the loops then run in one thread for a while, as a
// team's do. Rows are computed by the same code whoever takes them, so the results do not depend on the
// number of threads.
template <typename Work>
void for_row_chunks(int64_t rows, int64_t threads, const Work& work) {
  const int64_t groups = (rows + ROW_GROUP - 1) / ROW_GROUP;
  // At least two 8-row register tiles a thread: with one, each thread reads every weight from its second-level
  // cache for just 8 rows at every step (split_by_rows, step_product.h).
  threads = std::max<int64_t>(1, std::min(team_size(threads), rows / 16));
  const int64_t chunk = (groups + threads - 1) / threads * ROW_GROUP, count = (rows + chunk - 1) / chunk;
  struct alignas(64) Member {  // one cache line each
    int64_t start = -1, done = -1, rows = 0;
  };
  std::vector<Member> members(threads);
  std::atomic<int64_t> next{0};
  const int64_t begin = now_ns();
  in_team(threads, [&](TeamMember& member, Team&) {
    Member& me = members[member.id];
    me.start = now_ns();
    for (int64_t c; (c = next.fetch_add(1, std::memory_order_relaxed)) < count;) {
      const int64_t r0 = c * chunk, r1 = std::min(rows, (c + 1) * chunk);
      work(r0, r1);
      me.rows += r1 - r0;
    }
    me.done = now_ns();
  });
  if (threads == 1) return;
  int64_t end = begin, started = 0;
  double pace = 0;  // the fastest member's nanoseconds per row
  for (const Member& m : members) {
    if (m.done < 0) continue;
    end = std::max(end, m.done), ++started;
    if (m.rows > 0 && (pace == 0 || double(m.done - m.start) / m.rows < pace)) pace = double(m.done - m.start) / m.rows;
  }
  const int64_t needed = int64_t(pace * rows / std::max<int64_t>(started, 1));
  record_join(begin, needed, end);
}

}  // namespace torch_rnn_native
