// A team of threads that runs one loop, meeting once per step (the next step needs every column of this one).
//
// On a busy machine a member the scheduler takes off its core (another process wants it) holds up every other
// member until it runs again, a scheduler time slice of milliseconds per step: with a second process busy on
// the same cores, a team's loop ran 27 times slower than one thread's. So the members meet at a barrier of
// their own (Team::sync) that measures how long the first member waited for the last: at the second wait over
// the straggle limit (1 ms) in a loop the team shrinks to its first member, which finishes the loop alone, and
// the loops of the next probe period (1 s) run in one thread; then a team tries again. On an idle machine no
// member waits that long (a step's panels are shared out as they are claimed, step_product.h), so the team
// stays. Both settings: team_settings below, torch_rnn.native.team_settings in Python.
#pragma once

#include "common.h"

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

}  // namespace torch_rnn_native
