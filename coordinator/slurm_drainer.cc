#include "coordinator/slurm_drainer.h"

#include <utility>

#include "common/process.h"
#include "common/util.h"

namespace vigil::coordinator {

SlurmDrainer::SlurmDrainer(boost::asio::io_context& io, std::chrono::milliseconds timeout,
                           std::string scontrol)
    : io_(io), timeout_(timeout), scontrol_(std::move(scontrol)) {}

SlurmDrainer::~SlurmDrainer() {
  *alive_ = false;
  stopping_ = true;
  pool_.join();
}

std::string SlurmDrainer::Reason(int64_t event_id, const std::string& kind) {
  return "vigil: event#" + std::to_string(event_id) + " " + (kind.empty() ? "cordon" : kind);
}

void SlurmDrainer::Drain(Order order, Done done) {
  ++in_flight_;
  boost::asio::post(pool_, [this, order = std::move(order), done = std::move(done),
                            alive = alive_]() mutable {
    if (stopping_) return;  // vigild is going: its loop hears no outcome any more
    Outcome out;
    out.order = order;
    out.reason = Reason(order.event_id, order.kind);
    out.command =
        "scontrol update NodeName=" + order.node + " State=DRAIN Reason=\"" + out.reason + "\"";
    SpawnOptions o;
    o.argv = {scontrol_, "update", "NodeName=" + order.node, "State=DRAIN", "Reason=" + out.reason};
    const auto t0 = std::chrono::steady_clock::now();
    auto r = RunProcess(o, timeout_);
    out.elapsed_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)
            .count();
    if (!r.ok()) {
      out.detail = r.status().message();
    } else {
      out.drained = r->ok();
      out.detail = "scontrol " + r->Describe();
      if (const std::string said = Trim(r->output); !said.empty())
        out.detail += ": " + said.substr(0, 512);
    }
    boost::asio::post(io_, [this, alive, done = std::move(done), out = std::move(out)] {
      if (!*alive) return;
      --in_flight_;
      done(out);
    });
  });
}

}  // namespace vigil::coordinator
