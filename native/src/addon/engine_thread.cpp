#include "engine_thread.h"

#include <condition_variable>
#include <deque>
#include <exception>
#include <mutex>
#include <thread>

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

void run_on_engine_thread(const std::function<void()>& fn) {
  // Allocated once and never destroyed, so no destructor races the detached thread at exit.
  static EngineThread* thread = new EngineThread();
  thread->run(fn);
}

}  // namespace tbjs
