#include "worker/trainer/coordinator_store.h"

#include <gloo/common/error.h>

namespace vigil::trainer {

wire::StoreResponse CoordinatorStore::Call(wire::StoreRequest req,
                                           std::chrono::milliseconds timeout) {
  req.set_id(next_id_++);
  req.set_timeout_ms(static_cast<uint32_t>(timeout.count()));
  wire::Envelope env;
  *env.mutable_store_request() = req;
  Status st = socket_.Send(env);
  if (!st.ok()) throw gloo::IoException("store: " + st.ToString());
  // The server answers within timeout; allow a margin for the round trip.
  auto reply = socket_.Receive(timeout + std::chrono::seconds(5));
  if (!reply.ok()) throw gloo::IoException("store: " + reply.status().ToString());
  if (!reply->has_store_response() || reply->store_response().id() != req.id()) {
    throw gloo::IoException("store: unexpected reply");
  }
  const auto& resp = reply->store_response();
  if (!resp.ok()) {
    const std::string keys = req.keys_size() ? req.keys(0) : "";
    throw gloo::IoException(
        "store: " + std::string(resp.timed_out() ? "timed out waiting for " : "failed on ") + keys +
        ": " + resp.error());
  }
  return resp;
}

void CoordinatorStore::set(const std::string& key, const std::vector<char>& data) {
  wire::StoreRequest req;
  req.set_op(wire::StoreRequest::SET);
  req.add_keys(key);
  req.set_value(std::string(data.begin(), data.end()));
  Call(req, timeout_);
}

std::vector<char> CoordinatorStore::get(const std::string& key) {
  wire::StoreRequest req;
  req.set_op(wire::StoreRequest::GET);
  req.add_keys(key);
  auto resp = Call(req, timeout_);
  return std::vector<char>(resp.value().begin(), resp.value().end());
}

void CoordinatorStore::wait(const std::vector<std::string>& keys,
                            const std::chrono::milliseconds& timeout) {
  wire::StoreRequest req;
  req.set_op(wire::StoreRequest::WAIT);
  for (const auto& k : keys) req.add_keys(k);
  Call(req, timeout);
}

int64_t CoordinatorStore::add(const std::string& key, int64_t delta) {
  wire::StoreRequest req;
  req.set_op(wire::StoreRequest::ADD);
  req.add_keys(key);
  req.set_delta(delta);
  return Call(req, timeout_).counter();
}

}  // namespace vigil::trainer
