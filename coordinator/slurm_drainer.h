// The executor of cordons under Slurm (`launcher: slurm`): a host the
// playbook cordons is drained in Slurm too, so that neither this job's next
// allocation nor anyone else's job is given the node:
//
//   scontrol update NodeName=NODE State=DRAIN Reason="vigil: event#E KIND"
//
// The host's name in the job is its Slurm node name (the Slurm launcher
// starts each agent with --host set to it). Each scontrol runs off the event
// loop, on a thread of this class's, bounded by slurm.drain_timeout_ms (past
// it, it is killed); its outcome is handed back on the event loop, where the
// caller records it (a `slurm_drain` intervention of the cordon's event).
// A failed drain is recorded, not retried: the cordon holds in vigild
// regardless, and the outcome names what an on-call engineer should type.
#pragma once

#include <utility>

#include <atomic>
#include <boost/asio.hpp>
#include <chrono>
#include <functional>
#include <string>

namespace vigil::coordinator {

class SlurmDrainer {
 public:
  struct Order {
    int64_t event_id = 0;  // the detection whose cordon this is
    std::string node;      // the Slurm node name (the job's host name)
    std::string kind;      // the detection's kind, for the reason
  };
  struct Outcome {
    Order order;
    bool drained = false;
    std::string reason;   // what Slurm was given as the drain's reason
    std::string command;  // the scontrol command line, as a person would type it
    std::string detail;   // scontrol's exit and output, or why it did not run
    int64_t elapsed_ms = 0;
  };
  using Done = std::function<void(const Outcome&)>;

  // `scontrol`: the program (found on PATH unless it has a '/').
  SlurmDrainer(boost::asio::io_context& io, std::chrono::milliseconds timeout,
               std::string scontrol = "scontrol");
  // Waits for the scontrol under way (bounded by the timeout); those not
  // begun yet are not run, and no outcome is handed back any more.
  ~SlurmDrainer();
  SlurmDrainer(const SlurmDrainer&) = delete;
  SlurmDrainer& operator=(const SlurmDrainer&) = delete;

  // Drains `order.node`; `done` is called on the event loop once scontrol
  // has answered, failed or timed out.
  void Drain(Order order, Done done);
  // Drains ordered whose outcome has not been handed back yet.
  int in_flight() const { return in_flight_; }

  // "vigil: event#E KIND": what `sinfo -R` shows for the node.
  static std::string Reason(int64_t event_id, const std::string& kind);

 private:
  boost::asio::io_context& io_;
  std::chrono::milliseconds timeout_;
  std::string scontrol_;
  int in_flight_ = 0;  // the event loop's
  std::atomic<bool> stopping_{false};
  boost::asio::thread_pool pool_{1};
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace vigil::coordinator
