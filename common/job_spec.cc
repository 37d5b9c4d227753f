#include "common/job_spec.h"

#include <xxhash.h>

#include <cstdio>
#include <filesystem>
#include <functional>
#include <map>
#include <set>
#include <sstream>

#include <yaml-cpp/yaml.h>
#include <nlohmann/json.hpp>

#include "common/fs.h"
#include "common/yaml_reader.h"

namespace vigil {

double ModelSpec::TrainingFlopsPerToken() const {
  const double C = d_model, T = seq_len, V = vocab, E = moe.experts;
  double forward = 2.0 * C * V;  // output projection
  for (int l = 0; l < layers; ++l) {
    const bool is_moe = moe.experts > 0 && l % moe.every == moe.every - 1;
    forward += 2.0 * 4.0 * C * C;  // qkv and output projections
    forward += is_moe ? 2.0 * (E * C + 2.0 * 8.0 * C * C) : 2.0 * 8.0 * C * C;  // MLP
    forward += 2.0 * 2.0 * T * C;  // scores and weighted values
  }
  return 3.0 * forward;
}

int SecuritySpec::MaxConnections(const WorldSpec& world) const {
  if (max_connections > 0) return max_connections;
  // Each host's agent and its ranks' store clients, the CLI, and the
  // connections of a generation or an agent not yet seen closed.
  return (world.hosts + world.spares) * (world.ranks_per_host + 1) * 2 + 64;
}

std::string JobSpec::ConfigHash() const {
  std::ostringstream os;
  os.precision(17);
  os << model.kind << '|' << model.vocab << '|' << model.d_model << '|' << model.layers << '|'
     << model.heads << '|' << model.seq_len << '|' << model.activation << '|' << model.init_std
     << '|' << model.moe.experts << '|' << model.moe.every << '|' << model.moe.capacity_factor
     << '|' << model.moe.aux_loss_weight << '|' << data.kind << '|' << data.path << '|' << data.seed
     << '|' << global_batch();
  const std::string s = os.str();
  char buf[17];
  std::snprintf(buf, sizeof(buf), "%016llx",
                static_cast<unsigned long long>(XXH3_64bits(s.data(), s.size())));
  return buf;
}

std::string JobSpec::ConfigJson() const {
  nlohmann::json j;
  j["model"] = {{"kind", model.kind},
                {"vocab", model.vocab},
                {"d_model", model.d_model},
                {"layers", model.layers},
                {"heads", model.heads},
                {"seq_len", model.seq_len},
                {"activation", model.activation},
                {"init_std", model.init_std}};
  if (model.moe.experts > 0) {
    j["model"]["moe"] = {{"experts", model.moe.experts},
                         {"every", model.moe.every},
                         {"capacity_factor", model.moe.capacity_factor},
                         {"aux_loss_weight", model.moe.aux_loss_weight},
                         {"placement", model.moe.placement}};
  }
  j["data"] = {{"kind", data.kind}, {"path", data.path}, {"seed", data.seed}};
  j["global_batch"] = global_batch();
  return j.dump();
}

Result<JobSpec> ParseJobSpec(const std::string& yaml_text, const std::string& source_name) {
  auto loaded = LoadYaml(yaml_text, source_name);
  if (!loaded.ok()) return loaded.status();
  const YAML::Node root = loaded.value();
  JobSpec spec;
  spec.source = source_name;
  YamlReader r(source_name);
  if (!root.IsDefined() || root.IsNull())
    return Status::InvalidArgument(source_name + ": empty job spec");

  r.Section(root, "", "",
            {"name", "launcher", "model", "data", "optimizer", "schedule", "world", "checkpoint",
             "limits", "detection", "playbook", "slurm", "security"},
            true, [&](const YAML::Node& top, const std::string&) {
              r.Required(top, "", "name");
              r.Field<std::string>(
                  top, "", "name", &spec.name,
                  [](const std::string& v) {
                    if (v.empty() || v.size() > 64) return false;
                    for (char c : v) {
                      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' &&
                          c != '.')
                        return false;
                    }
                    return true;
                  },
                  "a name of letters, digits, '-', '_' or '.' (at most 64)");
              r.Field<std::string>(top, "", "launcher", &spec.launcher, OneOf({"local", "slurm"}),
                                   "'local' or 'slurm'");
              r.Field<std::string>(top, "", "playbook", &spec.playbook);
              if (r.error().ok() && !spec.playbook.empty() && spec.playbook[0] != '/') {
                const auto base = std::filesystem::path(source_name).parent_path();
                spec.playbook =
                    std::filesystem::absolute(base / spec.playbook).lexically_normal().string();
              }
            });

  r.Section(
      root, "model", "",
      {"kind", "vocab", "d_model", "layers", "heads", "seq_len", "activation", "init_std", "moe"},
      true, [&](const YAML::Node& m, const std::string& p) {
        r.Field<std::string>(m, p, "kind", &spec.model.kind, OneOf({"decoder"}), "'decoder'");
        r.Field<int>(
            m, p, "vocab", &spec.model.vocab, [](const int& v) { return v >= 4 && v <= 131072; },
            "an integer in [4, 131072]");
        r.Field<int>(m, p, "d_model", &spec.model.d_model, Positive(), "a positive integer");
        r.Field<int>(m, p, "layers", &spec.model.layers, Positive(), "a positive integer");
        r.Field<int>(m, p, "heads", &spec.model.heads, Positive(), "a positive integer");
        r.Field<int>(m, p, "seq_len", &spec.model.seq_len, Positive(), "a positive integer");
        r.Field<std::string>(m, p, "activation", &spec.model.activation, OneOf({"gelu", "relu"}),
                             "'gelu' or 'relu'");
        r.Field<double>(m, p, "init_std", &spec.model.init_std, PositiveNumber(),
                        "a positive number");
        if (r.error().ok() && spec.model.d_model % spec.model.heads != 0) {
          r.Fail(m["heads"], p + ".heads",
                 "must divide model.d_model (" + std::to_string(spec.model.d_model) + ")");
        }
        r.Section(
            m, "moe", p, {"experts", "every", "capacity_factor", "aux_loss_weight", "placement"},
            false, [&](const YAML::Node& e, const std::string& q) {
              auto& moe = spec.model.moe;
              r.Required(e, q, "experts");
              r.Field<int>(
                  e, q, "experts", &moe.experts, [](const int& v) { return v >= 2 && v <= 1024; },
                  "an integer in [2, 1024] (top-2 routing needs two)");
              r.Field<int>(e, q, "every", &moe.every, Positive(), "a positive integer");
              r.Field<double>(e, q, "capacity_factor", &moe.capacity_factor, PositiveNumber(),
                              "a positive number");
              r.Field<double>(e, q, "aux_loss_weight", &moe.aux_loss_weight, NonNegativeNumber(),
                              "a non-negative number");
              r.Field<std::string>(e, q, "placement", &moe.placement,
                                   OneOf({"auto", "expert_parallel", "replicated"}),
                                   "'auto', 'expert_parallel' or 'replicated'");
              if (r.error().ok() && moe.every > spec.model.layers) {
                r.Fail(e["every"], q + ".every",
                       "must be at most model.layers (" + std::to_string(spec.model.layers) +
                           "), or no block is MoE");
              }
            });
      });

  r.Section(root, "slurm", "",
            {"partition", "time_limit", "exclusive", "gpus_per_node", "drain", "drain_delay_ms",
             "drain_timeout_ms", "command_timeout_ms", "queue_poll_ms"},
            false, [&](const YAML::Node& m, const std::string& p) {
              auto& s = spec.slurm;
              r.Field<std::string>(m, p, "partition", &s.partition);
              r.Field<std::string>(m, p, "time_limit", &s.time_limit);
              r.Field<bool>(m, p, "exclusive", &s.exclusive, nullptr, "true or false");
              r.Field<int>(m, p, "gpus_per_node", &s.gpus_per_node, NonNegative(),
                           "a non-negative integer");
              r.Field<bool>(m, p, "drain", &s.drain, nullptr, "true or false");
              r.Field<int>(m, p, "drain_delay_ms", &s.drain_delay_ms, NonNegative(),
                           "a non-negative integer");
              for (auto [field, value] : {std::pair{"drain_timeout_ms", &s.drain_timeout_ms},
                                          std::pair{"command_timeout_ms", &s.command_timeout_ms},
                                          std::pair{"queue_poll_ms", &s.queue_poll_ms}})
                r.Field<int>(m, p, field, value, Positive(), "a positive integer");
            });

  r.Section(root, "data", "", {"kind", "path", "seed"}, false,
            [&](const YAML::Node& m, const std::string& p) {
              r.Field<std::string>(m, p, "kind", &spec.data.kind, OneOf({"synthetic", "file"}),
                                   "'synthetic' or 'file'");
              r.Field<std::string>(m, p, "path", &spec.data.path);
              r.Field<uint64_t>(m, p, "seed", &spec.data.seed);
              if (!r.error().ok()) return;
              if (spec.data.kind == "file" && spec.data.path.empty()) {
                r.Fail(m, p + ".path", "required when data.kind is 'file'");
              } else if (spec.data.kind != "file" && !spec.data.path.empty()) {
                r.Fail(m["path"], p + ".path", "only meaningful when data.kind is 'file'");
              } else if (!spec.data.path.empty() && spec.data.path[0] != '/') {
                // Relative to the job file, so a spec and its corpus travel together.
                const auto base = std::filesystem::path(source_name).parent_path();
                spec.data.path =
                    std::filesystem::absolute(base / spec.data.path).lexically_normal().string();
              }
            });

  r.Section(
      root, "optimizer", "",
      {"kind", "lr", "beta1", "beta2", "eps", "weight_decay", "grad_clip", "zero"}, false,
      [&](const YAML::Node& m, const std::string& p) {
        r.Field<std::string>(m, p, "kind", &spec.optimizer.kind, OneOf({"adamw", "sgd"}),
                             "'adamw' or 'sgd'");
        r.Field<double>(m, p, "lr", &spec.optimizer.lr, PositiveNumber(), "a positive number");
        auto unit = [](const double& v) { return v >= 0 && v < 1; };
        r.Field<double>(m, p, "beta1", &spec.optimizer.beta1, unit, "a number in [0, 1)");
        r.Field<double>(m, p, "beta2", &spec.optimizer.beta2, unit, "a number in [0, 1)");
        r.Field<double>(m, p, "eps", &spec.optimizer.eps, PositiveNumber(), "a positive number");
        r.Field<double>(m, p, "weight_decay", &spec.optimizer.weight_decay, NonNegativeNumber(),
                        "a non-negative number");
        r.Field<double>(m, p, "grad_clip", &spec.optimizer.grad_clip, NonNegativeNumber(),
                        "a non-negative number");
        r.Field<bool>(m, p, "zero", &spec.optimizer.zero, nullptr, "true or false");
      });

  r.Section(root, "schedule", "", {"steps", "batch_per_rank", "warmup_steps"}, true,
            [&](const YAML::Node& m, const std::string& p) {
              r.Required(m, p, "steps");
              r.Field<int>(m, p, "steps", &spec.schedule.steps, Positive(), "a positive integer");
              r.Field<int>(m, p, "batch_per_rank", &spec.schedule.batch_per_rank, Positive(),
                           "a positive integer");
              r.Field<int>(m, p, "warmup_steps", &spec.schedule.warmup_steps, NonNegative(),
                           "a non-negative integer");
            });

  r.Section(root, "world", "",
            {"hosts", "ranks_per_host", "device", "spares", "regrow", "peak_tflops_per_rank"}, true,
            [&](const YAML::Node& m, const std::string& p) {
              r.Field<int>(
                  m, p, "hosts", &spec.world.hosts,
                  [](const int& v) { return v > 0 && v <= kMaxHosts; }, "an integer in [1, 16384]");
              r.Field<int>(
                  m, p, "ranks_per_host", &spec.world.ranks_per_host,
                  [](const int& v) { return v > 0 && v <= 64; }, "an integer in [1, 64]");
              r.Field<std::string>(m, p, "device", &spec.world.device, OneOf({"cpu", "cuda"}),
                                   "'cpu' or 'cuda'");
              r.Field<int>(
                  m, p, "spares", &spec.world.spares,
                  [](const int& v) { return v >= 0 && v <= kMaxHosts; },
                  "an integer in [0, 16384]");
              r.Field<bool>(m, p, "regrow", &spec.world.regrow, nullptr, "true or false");
              r.Field<double>(m, p, "peak_tflops_per_rank", &spec.world.peak_tflops_per_rank,
                              NonNegativeNumber(), "a non-negative number");
            });

  r.Section(root, "checkpoint", "",
            {"dir", "every_steps", "keep_last", "keep_every", "max_fallbacks", "choose_timeout_ms",
             "async"},
            false, [&](const YAML::Node& m, const std::string& p) {
              r.Field<std::string>(m, p, "dir", &spec.checkpoint.dir);
              r.Field<int>(m, p, "every_steps", &spec.checkpoint.every_steps, Positive(),
                           "a positive integer");
              r.Field<int>(m, p, "keep_last", &spec.checkpoint.keep_last, Positive(),
                           "a positive integer");
              r.Field<int>(m, p, "keep_every", &spec.checkpoint.keep_every, NonNegative(),
                           "a non-negative integer (0: no archive)");
              r.Field<int>(m, p, "max_fallbacks", &spec.checkpoint.max_fallbacks, NonNegative(),
                           "a non-negative integer");
              r.Field<int>(m, p, "choose_timeout_ms", &spec.checkpoint.choose_timeout_ms,
                           Positive(), "a positive integer");
              r.Field<bool>(m, p, "async", &spec.checkpoint.async, nullptr, "true or false");
            });

  r.Section(
      root, "limits", "",
      {"max_restarts", "heartbeat_interval_ms", "heartbeat_timeout_ms", "rendezvous_timeout_ms",
       "collective_timeout_ms", "kill_grace_ms", "teardown_timeout_ms", "shutdown_flush_ms",
       "failure_settle_ms", "start_timeout_ms", "agent_wait_ms", "agent_exit_wait_ms",
       "coordinator_grace_ms", "coordinator_restarts", "coordinator_watchdog_ms"},
      false, [&](const YAML::Node& m, const std::string& p) {
        r.Field<int>(m, p, "max_restarts", &spec.limits.max_restarts, NonNegative(),
                     "a non-negative integer");
        r.Field<int>(m, p, "heartbeat_interval_ms", &spec.limits.heartbeat_interval_ms, Positive(),
                     "a positive integer");
        r.Field<int>(m, p, "heartbeat_timeout_ms", &spec.limits.heartbeat_timeout_ms, Positive(),
                     "a positive integer");
        r.Field<int>(m, p, "rendezvous_timeout_ms", &spec.limits.rendezvous_timeout_ms, Positive(),
                     "a positive integer");
        r.Field<int>(m, p, "collective_timeout_ms", &spec.limits.collective_timeout_ms, Positive(),
                     "a positive integer");
        r.Field<int>(m, p, "kill_grace_ms", &spec.limits.kill_grace_ms, NonNegative(),
                     "a non-negative integer");
        r.Field<int>(m, p, "teardown_timeout_ms", &spec.limits.teardown_timeout_ms, NonNegative(),
                     "a non-negative integer (0: kill_grace_ms + 5000)");
        r.Field<int>(m, p, "shutdown_flush_ms", &spec.limits.shutdown_flush_ms, NonNegative(),
                     "a non-negative integer");
        r.Field<int>(m, p, "start_timeout_ms", &spec.limits.start_timeout_ms, Positive(),
                     "a positive integer");
        r.Field<int>(m, p, "failure_settle_ms", &spec.limits.failure_settle_ms, NonNegative(),
                     "a non-negative integer");
        r.Field<int>(m, p, "agent_wait_ms", &spec.limits.agent_wait_ms, Positive(),
                     "a positive integer");
        r.Field<int>(m, p, "agent_exit_wait_ms", &spec.limits.agent_exit_wait_ms, NonNegative(),
                     "a non-negative integer");
        r.Field<int>(m, p, "coordinator_grace_ms", &spec.limits.coordinator_grace_ms, Positive(),
                     "a positive integer");
        r.Field<int>(m, p, "coordinator_restarts", &spec.limits.coordinator_restarts, NonNegative(),
                     "a non-negative integer");
        r.Field<int>(m, p, "coordinator_watchdog_ms", &spec.limits.coordinator_watchdog_ms, nullptr,
                     "an integer (0: heartbeat_timeout_ms / 2; negative: never)");
        if (r.error().ok() &&
            spec.limits.heartbeat_timeout_ms <= spec.limits.heartbeat_interval_ms) {
          r.Fail(m["heartbeat_timeout_ms"], p + ".heartbeat_timeout_ms",
                 "must be longer than limits.heartbeat_interval_ms");
        }
        if (r.error().ok() &&
            spec.limits.coordinator_grace_ms <= spec.limits.heartbeat_timeout_ms) {
          r.Fail(m["coordinator_grace_ms"], p + ".coordinator_grace_ms",
                 "must be longer than limits.heartbeat_timeout_ms");
        }
        if (r.error().ok() && spec.limits.teardown_timeout_ms > 0 &&
            spec.limits.teardown_timeout_ms <= spec.limits.kill_grace_ms) {
          r.Fail(m["teardown_timeout_ms"], p + ".teardown_timeout_ms",
                 "must be longer than limits.kill_grace_ms");
        }
      });

  r.Section(
      root, "security", "",
      {"handshake_timeout_ms", "max_handshakes", "max_connections", "control_idle_ms",
       "max_queued_output_bytes", "metrics_token"},
      false, [&](const YAML::Node& m, const std::string& p) {
        auto& s = spec.security;
        for (auto [field, value] : {std::pair{"handshake_timeout_ms", &s.handshake_timeout_ms},
                                    std::pair{"max_handshakes", &s.max_handshakes},
                                    std::pair{"control_idle_ms", &s.control_idle_ms}})
          r.Field<int>(m, p, field, value, Positive(), "a positive integer");
        r.Field<int>(m, p, "max_connections", &s.max_connections, NonNegative(),
                     "a non-negative integer (0: derived from the world)");
        r.Field<int64_t>(
            m, p, "max_queued_output_bytes", &s.max_queued_output_bytes,
            [](const int64_t& v) { return v >= (int64_t{1} << 20); },
            "a number of bytes, at least 1048576");
        r.Field<bool>(m, p, "metrics_token", &s.metrics_token, nullptr, "true or false");
      });

  r.Section(
      root, "detection", "",
      {"hang_factor", "hang_floor_ms", "save_timeout_ms", "hang_probe_ms", "stack_dump_timeout_ms",
       "loss_spike_factor", "grad_norm_spike_factor", "spike_window", "straggler_factor",
       "straggler_window"},
      false, [&](const YAML::Node& m, const std::string& p) {
        auto d = &spec.detection;
        auto above_one = [](const double& v) { return v > 1.0; };
        r.Field<double>(m, p, "hang_factor", &d->hang_factor, above_one, "a number > 1");
        r.Field<int>(m, p, "hang_floor_ms", &d->hang_floor_ms, Positive(), "a positive integer");
        r.Field<int>(m, p, "hang_probe_ms", &d->hang_probe_ms, Positive(), "a positive integer");
        r.Field<int>(m, p, "stack_dump_timeout_ms", &d->stack_dump_timeout_ms, Positive(),
                     "a positive integer");
        r.Field<int>(m, p, "save_timeout_ms", &d->save_timeout_ms, Positive(),
                     "a positive integer");
        r.Field<double>(m, p, "loss_spike_factor", &d->loss_spike_factor, above_one,
                        "a number > 1");
        r.Field<double>(m, p, "grad_norm_spike_factor", &d->grad_norm_spike_factor, above_one,
                        "a number > 1");
        r.Field<int>(
            m, p, "spike_window", &d->spike_window, [](const int& v) { return v >= 3; },
            "an integer >= 3");
        r.Field<double>(m, p, "straggler_factor", &d->straggler_factor, above_one, "a number > 1");
        r.Field<int>(
            m, p, "straggler_window", &d->straggler_window, [](const int& v) { return v >= 3; },
            "an integer >= 3");
      });

  if (r.error().ok() && spec.model.moe.placement == "expert_parallel" &&
      spec.world.device == "cuda") {
    r.Fail(root["model"]["moe"]["placement"], "model.moe.placement",
           "expert_parallel runs on cpu ranks only (the expert exchange moves host memory)");
  }
  if (r.error().ok() && spec.model.moe.placement == "expert_parallel" &&
      spec.model.moe.experts % spec.world.world_size() != 0) {
    r.Fail(root["model"]["moe"]["placement"], "model.moe.placement",
           "expert_parallel needs the world size (" + std::to_string(spec.world.world_size()) +
               ") to divide model.moe.experts (" + std::to_string(spec.model.moe.experts) + ")");
  }
  if (r.error().ok() && spec.data.kind == "file" && spec.model.vocab != 256) {
    r.Fail(root["model"]["vocab"].IsDefined() ? root["model"]["vocab"] : root["model"],
           "model.vocab", "must be 256 for data.kind 'file' (byte-level tokens)");
  }
  if (!r.error().ok()) return r.error();
  return spec;
}

Result<JobSpec> LoadJobSpec(const std::string& path) {
  auto text = ReadFile(path);
  if (!text.ok()) return Status::NotFound(path + ": cannot read job spec");
  return ParseJobSpec(text.value(), path);
}

}  // namespace vigil
