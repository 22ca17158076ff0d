// Every heavy engine call runs on one long-lived thread. libuv hands each AsyncWorker to
// whichever pool thread is free, and each OS thread that opens an OpenMP region gets its own team
// of OpenMP workers: with four pool threads, four teams took turns, the idle ones spinning on the
// cores the busy one needed (5-8% of a training step). One thread means one team.
#pragma once
#include <functional>

namespace tbjs {

// Runs fn on the engine thread and waits for it (the calling pool thread sleeps meanwhile);
// an exception thrown by fn is rethrown here.
void run_on_engine_thread(const std::function<void()>& fn);

// Test probe of that claim (the addon's heavyCallStats()): each heavy call's work is counted
// where it runs, by a HeavyCall scope around it; note_js_thread() records a JS thread (the
// addon's init runs on it). Costs one uncontended lock per call.
struct HeavyCallStats {
  double calls = 0;          // heavy calls that ran
  double max_in_flight = 0;  // most of them running at one moment
  double threads = 0;        // distinct OS threads they ran on
  double on_js_thread = 0;   // calls that ran on a JS thread
};
class HeavyCall {
 public:
  HeavyCall();
  ~HeavyCall();
  HeavyCall(const HeavyCall&) = delete;
  HeavyCall& operator=(const HeavyCall&) = delete;
};
void note_js_thread();
HeavyCallStats heavy_call_stats();

}  // namespace tbjs
