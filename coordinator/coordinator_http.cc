// vigild's HTTP port (http_server.h): /metrics, and the JSON API behind the
// job's token (/api/v1/status, hosts, and the logbook's events and runs).
#include <nlohmann/json.hpp>

#include "common/util.h"
#include "coordinator/coordinator.h"
#include "logbook/logbook_query.h"

namespace vigil::coordinator {

using tcp = boost::asio::ip::tcp;
using nlohmann::json;

Status Coordinator::ServeHttp(const boost::asio::ip::address& addr, int previous_port) {
  auto serve = [&](int port) {
    try {
      http_ =
          std::make_unique<HttpServer>(io_, tcp::endpoint(addr, static_cast<unsigned short>(port)));
      return Status::Ok();
    } catch (const std::exception& e) {
      return Status::IoError(std::string("cannot serve HTTP: ") + e.what());
    }
  };
  if (options_.http_port != 0 || previous_port == 0 || !serve(previous_port).ok())
    VIGIL_RETURN_IF_ERROR(serve(options_.http_port));
  http_->RequireToken(options_.token);
  http_->OnRefusal([this](const std::string& source) {
    RecordAuthFailureFrom(source, auth_reason::kHttpToken,
                          "an HTTP request without the job's bearer token");
  });
  http_->Route(
      "/metrics", spec_.security.metrics_token ? HttpAccess::kToken : HttpAccess::kOpen,
      [this](const std::string&) {
        return HttpResponse{200, "text/plain; version=0.0.4; charset=utf-8", metrics_.Render()};
      });
  http_->Route("/api/v1/status", HttpAccess::kToken,
               [this](const std::string&) { return StatusJson(); });
  // The logbook's queries over HTTP, as `vigil logbook ls` has them.
  // They read only the logbook (its own read connection), off the loop.
  http_->RouteOffLoop("/api/v1/events", HttpAccess::kToken,
                      [this](const std::string& query) { return EventsJson(query); });
  http_->RouteOffLoop("/api/v1/runs", HttpAccess::kToken,
                      [this](const std::string&) { return RunsJson(); });
  http_->Route("/api/v1/hosts", HttpAccess::kToken, [this](const std::string&) {
    return HttpResponse{200, "application/json", controller_->Hosts().dump() + "\n"};
  });
  http_->Start();
  return Status::Ok();
}

HttpResponse Coordinator::EventsJson(const std::string& query) {
  auto filter = ParseEntryQuery(query, NowMicros(), kApiDefaultLast);
  if (!filter.ok()) {
    return {400, "application/json", json{{"error", filter.status().message()}}.dump() + "\n"};
  }
  auto entries = logbook_->Entries(filter.value());
  if (!entries.ok()) {
    return {500, "application/json", json{{"error", entries.status().message()}}.dump() + "\n"};
  }
  json out = json::array();
  for (const auto& e : entries.value()) out.push_back(EntryJson(e));
  return {200, "application/json", out.dump() + "\n"};
}

HttpResponse Coordinator::RunsJson() {
  auto runs = logbook_->Runs();
  if (!runs.ok()) {
    return {500, "application/json", json{{"error", runs.status().message()}}.dump() + "\n"};
  }
  json out = json::array();
  for (const auto& r : runs.value()) {
    json j{{"id", r.id},
           {"name", r.name},
           {"status", r.status},
           {"workdir", r.workdir},
           {"started", FormatTimeMicros(r.started_at_us)},
           {"config_hash", r.config_hash}};
    if (r.ended_at_us) j["ended"] = FormatTimeMicros(*r.ended_at_us);
    if (r.final_step) j["final_step"] = *r.final_step;
    if (r.final_loss) j["final_loss"] = *r.final_loss;
    if (!r.params_digest.empty()) j["params_digest"] = r.params_digest;
    out.push_back(j);
  }
  return {200, "application/json", out.dump() + "\n"};
}

HttpResponse Coordinator::StatusJson() const {
  const auto& p = controller_->progress();
  json j{{"job", spec_.name},
         {"run_id", p.run_id},
         {"state", JobStateName(p.state)},
         {"generation", p.generation},
         {"step", p.step},
         {"total_steps", p.total_steps},
         {"loss", p.loss},
         {"tokens_per_second", p.tokens_per_second},
         {"restarts", p.restarts},
         {"live_ranks", p.live_ranks},
         {"world_size", p.world_size},
         {"message", p.message}};
  return {200, "application/json", j.dump() + "\n"};
}

}  // namespace vigil::coordinator
