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

}  // namespace tbjs
