#include "coordinator/rendezvous_store.h"

namespace vigil::coordinator {

bool RendezvousStore::Ready(const wire::StoreRequest& req) const {
  for (const auto& k : req.keys()) {
    if (!data_.count(k)) return false;
  }
  return true;
}

wire::StoreResponse RendezvousStore::Answer(const wire::StoreRequest& req) const {
  wire::StoreResponse resp;
  resp.set_id(req.id());
  resp.set_ok(true);
  if (req.op() == wire::StoreRequest::GET) resp.set_value(data_.at(req.keys(0)));
  return resp;
}

void RendezvousStore::Handle(const wire::StoreRequest& req, uint64_t client, Clock::time_point now,
                             Reply reply) {
  wire::StoreResponse resp;
  resp.set_id(req.id());
  const bool one_key = req.keys_size() == 1;
  switch (req.op()) {
    case wire::StoreRequest::SET:
      if (!one_key) break;
      data_[req.keys(0)] = req.value();
      resp.set_ok(true);
      reply(resp);
      WakeReady();
      return;
    case wire::StoreRequest::ADD: {
      if (!one_key) break;
      std::string& slot = data_[req.keys(0)];
      int64_t current = 0;
      if (!slot.empty()) {
        try {
          current = std::stoll(slot);
        } catch (...) {
          resp.set_error("key " + req.keys(0) + " does not hold an integer");
          reply(resp);
          return;
        }
      }
      current += req.delta();
      slot = std::to_string(current);
      resp.set_ok(true);
      resp.set_counter(current);
      reply(resp);
      WakeReady();
      return;
    }
    case wire::StoreRequest::GET:
      if (!one_key) break;
      [[fallthrough]];
    case wire::StoreRequest::WAIT:
      if (req.keys_size() == 0) break;
      if (Ready(req)) {
        reply(Answer(req));
      } else {
        waiters_.push_back(
            {client, req, now + std::chrono::milliseconds(req.timeout_ms()), std::move(reply)});
      }
      return;
    default:
      break;
  }
  resp.set_ok(false);
  resp.set_error("malformed store request (op " + std::to_string(req.op()) + ", " +
                 std::to_string(req.keys_size()) + " keys)");
  reply(resp);
}

void RendezvousStore::WakeReady() {
  for (auto it = waiters_.begin(); it != waiters_.end();) {
    if (Ready(it->req)) {
      // Move out before replying: the reply may re-enter Handle.
      Waiter w = std::move(*it);
      it = waiters_.erase(it);
      w.reply(Answer(w.req));
    } else {
      ++it;
    }
  }
}

std::optional<RendezvousStore::Clock::time_point> RendezvousStore::Expire(Clock::time_point now) {
  std::optional<Clock::time_point> earliest;
  for (auto it = waiters_.begin(); it != waiters_.end();) {
    if (it->deadline <= now) {
      Waiter w = std::move(*it);
      it = waiters_.erase(it);
      wire::StoreResponse resp;
      resp.set_id(w.req.id());
      resp.set_ok(false);
      resp.set_timed_out(true);
      std::string missing;
      for (const auto& k : w.req.keys()) {
        if (!data_.count(k)) missing += (missing.empty() ? "" : ", ") + k;
      }
      resp.set_error("timed out after " + std::to_string(w.req.timeout_ms()) +
                     " ms; missing: " + missing);
      w.reply(resp);
    } else {
      if (!earliest || it->deadline < *earliest) earliest = it->deadline;
      ++it;
    }
  }
  return earliest;
}

void RendezvousStore::DropClient(uint64_t client) {
  waiters_.remove_if([client](const Waiter& w) { return w.client == client; });
}

void RendezvousStore::ErasePrefix(const std::string& prefix) {
  for (auto it = data_.lower_bound(prefix); it != data_.end() && it->first.rfind(prefix, 0) == 0;) {
    it = data_.erase(it);
  }
}

}  // namespace vigil::coordinator
