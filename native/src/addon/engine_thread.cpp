#include "engine_thread.h"

#include <condition_variable>
#include <deque>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace tbjs {

namespace {

struct Task {
  const std::function<void()>* fn;
  std::exception_ptr error;
  bool done = false;
};

class EngineThread {
 public:
  void run(const std::function<void()>& fn) {
    Task task{&fn, nullptr, false};
    std::unique_lock<std::mutex> lock(mu_);
    queue_.push_back(&task);
    work_.notify_one();
    done_.wait(lock, [&] { return task.done; });
    lock.unlock();
    if (task.error) std::rethrow_exception(task.error);
  }

  EngineThread() {
    // Never joined: the process may exit with the thread waiting for work.
    std::thread([this] { loop(); }).detach();
  }

 private:
  void loop() {
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      work_.wait(lock, [&] { return !queue_.empty(); });
      Task* task = queue_.front();
      queue_.pop_front();
      lock.unlock();
      try {
        (*task->fn)();
      } catch (...) {
        task->error = std::current_exception();
      }
      lock.lock();
      task->done = true;
      done_.notify_all();
    }
  }

  std::mutex mu_;
  std::condition_variable work_, done_;
  std::deque<Task*> queue_;
};

}  // namespace

namespace {

struct Probe {
  std::mutex mu;
  HeavyCallStats stats;
  int in_flight = 0;
  std::vector<std::thread::id> threads, js_threads;
};
Probe& probe() {
  static Probe* p = new Probe();  // never destroyed, like the engine thread
  return *p;
}
bool contains(const std::vector<std::thread::id>& v, std::thread::id id) {
  for (auto& t : v)
    if (t == id) return true;
  return false;
}

}  // namespace

HeavyCall::HeavyCall() {
  Probe& p = probe();
  std::lock_guard<std::mutex> lock(p.mu);
  std::thread::id id = std::this_thread::get_id();
  p.stats.calls++;
  if (++p.in_flight > p.stats.max_in_flight) p.stats.max_in_flight = p.in_flight;
  if (!contains(p.threads, id)) p.threads.push_back(id);
  p.stats.threads = double(p.threads.size());
  if (contains(p.js_threads, id)) p.stats.on_js_thread++;
}

HeavyCall::~HeavyCall() {
  Probe& p = probe();
  std::lock_guard<std::mutex> lock(p.mu);
  p.in_flight--;
}

void note_js_thread() {
  Probe& p = probe();
  std::lock_guard<std::mutex> lock(p.mu);
  if (!contains(p.js_threads, std::this_thread::get_id())) p.js_threads.push_back(std::this_thread::get_id());
}

HeavyCallStats heavy_call_stats() {
  Probe& p = probe();
  std::lock_guard<std::mutex> lock(p.mu);
  return p.stats;
}

void run_on_engine_thread(const std::function<void()>& fn) {
  // Allocated once and never destroyed, so no destructor races the detached thread at exit.
  static EngineThread* thread = new EngineThread();
  thread->run(fn);
}

}  // namespace tbjs
