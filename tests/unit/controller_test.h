// The job controller on a test bench: fake time (FakeClock), an in-memory
// journal (MemoryJournal), a fake agent link that records every order, real
// checkpoint directories in a temporary folder (so rollback's renames and
// retention's deletions really happen), and a probe that refuses the
// checkpoints a test calls corrupt. Events go in as the agents would send
// them; orders and logbook rows come out. No process, no socket, no sleep.
#pragma once

#include <utility>

#include <algorithm>
#include <boost/asio.hpp>
#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "common/job_spec.h"
#include "common/vocabulary.h"
#include "coordinator/clock.h"
#include "coordinator/job_controller.h"
#include "coordinator/journal.h"
#include "coordinator/metrics.h"
#include "coordinator/playbook.h"
#include "coordinator/rendezvous_store.h"
#include "coordinator/takeover.h"
#include "tests/unit/test_util.h"

namespace vigil::coordinator::testing {

using V = std::vector<std::string>;
inline nlohmann::json Params(const InterventionRow& i) {
  return nlohmann::json::parse(i.params_json);
}
inline nlohmann::json Detail(const EventRow& e) { return nlohmann::json::parse(e.detail_json); }

// Agents as the controller sees them; every order is kept.
class FakeAgentLink : public AgentLink {
 public:
  struct Order {
    int agent;
    wire::Envelope env;
  };
  int Add(const std::string& host) {
    hosts_.push_back(host);
    connected_.push_back(true);
    return static_cast<int>(hosts_.size()) - 1;
  }
  void Disconnect(int agent) { connected_.at(static_cast<size_t>(agent)) = false; }
  int agent_count() const override { return static_cast<int>(hosts_.size()); }
  bool agent_connected(int agent) const override {
    return agent >= 0 && agent < agent_count() && connected_[static_cast<size_t>(agent)];
  }
  std::string agent_host(int agent) const override {
    return agent >= 0 && agent < agent_count() ? hosts_[static_cast<size_t>(agent)] : "";
  }
  void SendToAgent(int agent, const wire::Envelope& env) override {
    orders.push_back({agent, env});
  }

  // The launch orders of `generation`, by agent (and what a takeover
  // adopted: the orders a vigild before it sent).
  std::map<int, wire::LaunchRanks> Launches(int64_t generation) const {
    std::map<int, wire::LaunchRanks> out;
    if (auto it = adopted.find(generation); it != adopted.end()) out = it->second;
    for (const auto& o : orders) {
      if (o.env.has_launch_ranks() &&
          static_cast<int64_t>(o.env.launch_ranks().generation()) == generation)
        out[o.agent] = o.env.launch_ranks();
    }
    return out;
  }
  // Agents told to kill `generation`.
  std::set<int> Killed(int64_t generation) const {
    std::set<int> out;
    for (const auto& o : orders) {
      if (o.env.has_kill_generation() &&
          static_cast<int64_t>(o.env.kill_generation().generation()) == generation)
        out.insert(o.agent);
    }
    return out;
  }
  int Count(wire::Envelope::BodyCase body) const {
    int n = 0;
    for (const auto& o : orders) n += o.env.body_case() == body;
    return n;
  }

  std::vector<Order> orders;
  std::map<int64_t, std::map<int, wire::LaunchRanks>> adopted;  // generation -> agent -> ranks

 private:
  std::vector<std::string> hosts_;
  std::vector<bool> connected_;
};

// The tiny demo job's shape: 2 hosts x 2 ranks, 8 sequences a rank, a
// checkpoint every 25 steps; `extra` is appended to the YAML.
inline std::string JobYaml(const std::string& extra = "") {
  return "name: scenario\n"
         "model: {kind: decoder, vocab: 256, d_model: 16, layers: 1, heads: 2, seq_len: 8}\n"
         "data: {kind: synthetic, seed: 1}\n"
         "schedule: {steps: 1000, batch_per_rank: 8, warmup_steps: 1}\n"
         "checkpoint: {every_steps: 25, keep_last: 3}\n" +
         extra;
}

class ControllerBench {
 public:
  // `world` is YAML for `world:` and the rest (limits, detection...).
  explicit ControllerBench(const std::string& extra_yaml = "world: {hosts: 2, ranks_per_host: 2}\n",
                           const std::string& playbook_yaml = "") {
    auto spec = ParseJobSpec(JobYaml(extra_yaml), "scenario.yaml");
    EXPECT_TRUE(spec.ok()) << spec.status().ToString();
    spec_ = spec.value();
    auto pb = playbook_yaml.empty() ? LoadPlaybook("") : ParsePlaybook(playbook_yaml, "pb.yaml");
    EXPECT_TRUE(pb.ok()) << pb.status().ToString();
    ckpt_dir_ = dir_ / "checkpoints";
    std::filesystem::create_directories(ckpt_dir_);
    JobPaths paths{dir_.path(), dir_ / "job.yaml", ckpt_dir_, dir_ / "logs", "127.0.0.1:1"};
    ControllerSeams seams;
    seams.clock = &clock;
    seams.journal = &journal;
    seams.agents = &agents;
    seams.store = &store_;
    seams.metrics = &metrics;
    seams.storage = checkpoint::Storage::Default();
    seams.file_work = io.get_executor();
    seams.probe = [this](const std::string& path) -> Result<double> {
      ++probes;
      if (corrupt.count(path)) return Status::Corruption("manifest of " + path + " is damaged");
      return 1.0;
    };
    for (int h = 0; h < spec_.world.hosts + spec_.world.spares; ++h)
      agents.Add("host-" + std::to_string(h));
    controller = std::make_unique<JobController>(io, spec_, paths, 1, seams,
                                                 std::vector<ChaosFault>{}, pb.value());
  }
  ~ControllerBench() {
    Settle();
    EXPECT_EQ(controller->illegal_moves(), 0) << "the state machine refused a move";
    controller.reset();  // before the spec, store and folder it refers to
  }

  const JobSpec& spec() const { return spec_; }
  JobState state() const { return controller->state(); }
  int64_t generation() const { return controller->progress().generation; }
  int64_t step() const { return step_; }
  std::string Checkpoint(int64_t step) const {
    char name[32];
    std::snprintf(name, sizeof(name), "/step-%08lld", static_cast<long long>(step));
    return ckpt_dir_ + name;
  }

  // Runs what the controller posted: the catalog's file work (probes,
  // deletions, on this loop here) and its outcomes. Every helper below ends
  // with it; a test that calls the controller itself calls it after.
  void Settle() {
    controller->FinishFileWork();
    io.restart();
    io.poll();
  }
  // What the helpers run after each call: Settle(), unless a test holds
  // the file work back (auto_settle false) to see what happens meanwhile.
  void Auto() {
    if (auto_settle) Settle();
  }
  void Start() {
    controller->OnAllAgentsRegistered();
    Auto();
  }
  // Time passes (timers fire).
  void Advance(int64_t ms) {
    clock.AdvanceMs(ms);
    Auto();
  }
  Status Resume(const std::string& note = "") {
    const Status st = controller->Resume("tester", note);
    Auto();
    return st;
  }

  // The agent running `rank` in the current generation.
  int AgentOf(int rank) const {
    for (const auto& [agent, l] : agents.Launches(generation())) {
      for (uint32_t r : l.ranks()) {
        if (static_cast<int>(r) == rank) return agent;
      }
    }
    return -1;
  }
  int world() const {
    int n = 0;
    for (const auto& [agent, l] : agents.Launches(generation())) n += l.ranks_size();
    return n;
  }
  std::set<int> Ranks() const {
    std::set<int> out;
    for (const auto& [agent, l] : agents.Launches(generation())) {
      for (uint32_t r : l.ranks()) out.insert(static_cast<int>(r));
    }
    return out;
  }

  wire::RankReport Report(int rank, wire::RankReport::Kind kind) const {
    wire::RankReport r;
    r.set_generation(static_cast<uint64_t>(generation()));
    r.set_rank(static_cast<uint32_t>(rank));
    r.set_kind(kind);
    r.set_step(static_cast<uint64_t>(step_));
    r.set_at_us(clock.NowMicros());
    return r;
  }
  // One step of every rank (`skip` stays silent), `step_ms` apart: loss 2.0,
  // gradient norm 1.0, each rank computing `compute_ms` (a rank in `slow`
  // three times that). A checkpoint is committed every checkpoint.every_steps.
  void Step(int n = 1, std::set<int> skip = {}, double loss = 2.0, std::set<int> slow = {}) {
    for (int i = 0; i < n; ++i) {
      clock.AdvanceMs(step_ms);
      ++step_;
      for (int rank : Ranks()) {
        if (skip.count(rank)) continue;
        auto r = Report(rank, wire::RankReport::STEP);
        r.set_loss(loss);
        r.set_grad_norm(1.0);
        r.set_step_seconds(step_ms / 1000.0);
        r.set_compute_seconds((slow.count(rank) ? 3 : 1) * compute_ms / 1000.0);
        controller->OnRankReport(AgentOf(rank), r);
        Auto();
        if (state() != JobState::kRunning && state() != JobState::kRendezvous) return;
      }
      controller->OnTick();
      Auto();
      if (step_ % spec_.checkpoint.every_steps == 0 && state() == JobState::kRunning) Commit();
    }
  }
  // Rank 0 commits a checkpoint of `step` (a real, empty directory).
  void CommitAt(int64_t step) {
    const int64_t now = step_;
    step_ = step;
    Commit();
    step_ = now;
  }
  // Rank 0 commits a checkpoint of the current step.
  void Commit() {
    std::filesystem::create_directories(Checkpoint(step_));
    committed_[Checkpoint(step_)] = step_;
    auto r = Report(0, wire::RankReport::CHECKPOINT);
    r.set_checkpoint_path(Checkpoint(step_));
    r.set_checkpoint_bytes(1000);
    controller->OnRankReport(AgentOf(0), r);
    Auto();
  }
  void Exit(int rank, int code, int signal = 0) {
    wire::RankExited e;
    e.set_generation(static_cast<uint64_t>(generation()));
    e.set_rank(static_cast<uint32_t>(rank));
    e.set_exit_code(code);
    e.set_signal(signal);
    e.set_pid(1000 + static_cast<uint32_t>(rank));
    e.set_exited_at_us(clock.NowMicros());
    controller->OnRankExited(AgentOf(rank), e);
    Auto();
  }
  // Every agent told to kill the current generation confirms (its ranks exit).
  void ConfirmTeardown() {
    const int64_t g = generation();
    const auto ranks = Ranks();
    for (int agent : agents.Killed(g)) {
      for (int rank : ranks) {
        if (AgentOf(rank) == agent && agents.agent_connected(agent)) Exit(rank, 0, 15);
      }
    }
    for (int agent : agents.Killed(g)) controller->OnGenerationStopped(agent, g);
    Auto();
    if (generation() != g) step_ = StepOf(ResumedFrom());
  }
  // The step of a checkpoint this bench committed (0: none, a fresh start).
  int64_t StepOf(const std::string& path) const {
    const auto it = committed_.find(path);
    return it == committed_.end() ? 0 : it->second;
  }
  // A generation restarted: torn down, confirmed, the next one stepping.
  void Recover() {
    ConfirmTeardown();
    Step();
  }
  void LoseAgent(int agent, const std::string& why = "connection closed") {
    agents.Disconnect(agent);
    controller->OnAgentLost(agent, why);
    Auto();
  }
  void GpuFault(int rank, int xid) {
    wire::GpuFault g;
    g.set_generation(static_cast<uint64_t>(generation()));
    g.set_rank(rank);
    g.set_gpu(rank % spec_.world.ranks_per_host);
    g.set_xid(static_cast<uint32_t>(xid));
    g.set_type("xid");
    g.set_source("kernel-log");
    g.set_message("NVRM: Xid " + std::to_string(xid));
    g.set_at_us(clock.NowMicros() - 5000);
    controller->OnGpuFault(AgentOf(rank), g);
    Auto();
  }

  // Rows, read back.
  std::vector<EventRow> Events(const std::string& kind = "") const {
    std::vector<EventRow> out;
    for (auto& e : journal.events()) {
      if (kind.empty() || e.kind == kind) out.push_back(e);
    }
    return out;
  }
  std::vector<std::string> ActionsFor(const EventRow& e) const { return journal.actions_for(e.id); }
  std::vector<InterventionRow> Interventions(const std::string& action) const {
    std::vector<InterventionRow> out;
    for (auto& i : journal.interventions()) {
      if (i.action == action) out.push_back(i);
    }
    return out;
  }
  // The checkpoint the current generation was launched from ("" fresh).
  std::string ResumedFrom() const {
    const auto launches = agents.Launches(generation());
    return launches.empty() ? "?" : launches.begin()->second.resume_from();
  }

  // What this bench's journal holds, as a vigild that takes the run over
  // reads it back from the logbook (takeover.h).
  RunTakeover LogbookOf() const {
    RunTakeover t;
    t.run.id = 1;
    t.run.name = spec_.name;
    t.run.status = state() == JobState::kPaused ? job_state::kPaused : job_state::kRunning;
    t.run.started_at_us = controller->progress().started_at_us;
    t.generations = journal.generations();
    t.checkpoints = journal.checkpoints();
    std::sort(t.checkpoints.begin(), t.checkpoints.end(),
              [](const CheckpointRow& a, const CheckpointRow& b) { return a.step > b.step; });
    t.events = journal.events();
    t.interventions = journal.interventions();
    if (!journal.steps().empty()) t.last_step = journal.steps().back();
    return t;
  }
  // This bench goes on from where `before` stopped (its steps, its checkpoints).
  void ContinueFrom(const ControllerBench& before) {
    step_ = before.step_;
    committed_ = before.committed_;
    clock.AdvanceMs(before.clock.NowMicros() / 1000 - clock.NowMicros() / 1000 + 1000);
  }

  boost::asio::io_context io;
  FakeClock clock;
  MemoryJournal journal;
  FakeAgentLink agents;
  CoordinatorMetrics metrics;
  std::set<std::string> corrupt;  // paths the probe refuses
  int probes = 0;                 // checkpoints probed
  bool auto_settle = true;
  std::unique_ptr<JobController> controller;
  int step_ms = 30;
  int compute_ms = 20;

 private:
  vigil::testing::TempDir dir_;
  std::string ckpt_dir_;
  JobSpec spec_;
  RendezvousStore store_;
  int64_t step_ = 0;
  std::map<std::string, int64_t> committed_;
};

}  // namespace vigil::coordinator::testing
