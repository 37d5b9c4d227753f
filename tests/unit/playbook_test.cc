#include "coordinator/playbook.h"

#include <gtest/gtest.h>

#include <signal.h>

#include <set>
#include <string>

#include "common/util.h"
#include "common/xid.h"
#include "coordinator/chaos.h"

namespace vigil::coordinator {
namespace {

constexpr int64_t kMinute = 60'000'000;

Playbook Parse(const std::string& yaml) {
  auto pb = ParsePlaybook(yaml, "pb.yaml");
  EXPECT_TRUE(pb.ok()) << pb.status().ToString();
  return pb.ok() ? pb.value() : Playbook{};
}

std::string ErrorOf(const std::string& yaml) {
  auto pb = ParsePlaybook(yaml, "pb.yaml");
  EXPECT_FALSE(pb.ok()) << yaml;
  return pb.ok() ? "" : pb.status().message();
}

Detection At(const std::string& kind, int64_t minute, const std::string& host = "h0",
             std::optional<int> rank = std::nullopt, std::vector<int64_t> codes = {}) {
  Detection d;
  d.kind = kind;
  d.host = host;
  d.rank = rank;
  d.codes = std::move(codes);
  d.time_us = minute * kMinute;
  return d;
}

// Decides and carries the decision out, as vigild does when nothing stops it.
Decision Carry(PlaybookEngine& engine, const Detection& d) {
  Decision out = engine.Decide(d);
  engine.Carried(out, d.time_us);
  if (out.restarts()) engine.Restarted(d.time_us);
  return out;
}

std::string Actions(const Decision& d) {
  std::string out;
  for (const auto& a : d.actions) out += (out.empty() ? "" : " ") + a.ToString();
  return out;
}

TEST(Playbook, DefaultPlaybookParsesAndEveryKindHasAnAnswer) {
  auto pb = LoadPlaybook("");
  ASSERT_TRUE(pb.ok()) << pb.status().ToString();
  PlaybookEngine engine(pb.value());
  int minute = 0;
  for (const auto& kind : DetectionKinds()) {
    // Far apart, so no window or loop guard mixes them up.
    Decision d = engine.Decide(At(kind, minute += 24 * 60));
    EXPECT_FALSE(d.rule.empty()) << kind << " is left to the fallback";
    EXPECT_FALSE(d.actions.empty()) << kind;
  }
}

TEST(Playbook, DefaultAnswers) {
  PlaybookEngine engine(LoadPlaybook("").value());
  EXPECT_EQ(Actions(Carry(engine, At("process_exit", 0))), "restart_from_latest");
  EXPECT_EQ(Actions(Carry(engine, At("config_error", 100))), "fail_job");
  EXPECT_EQ(Actions(Carry(engine, At("nonfinite", 200))),
            "restart_from_latest {\"skip_batches\":1}");
  // The second within six hours escalates.
  const Decision again = Carry(engine, At("nonfinite", 260));
  EXPECT_EQ(Actions(again), "{\"rollback\":1} {\"scale_lr\":0.5} {\"skip_batches\":8} page");
  EXPECT_NE(again.why.find("escalated"), std::string::npos) << again.why;
  // Seven hours later the window is clear again.
  EXPECT_EQ(Actions(Carry(engine, At("nonfinite", 260 + 7 * 60))),
            "restart_from_latest {\"skip_batches\":1}");
  EXPECT_EQ(Actions(Carry(engine, At("straggler", 2000))), "continue page");
}

TEST(Playbook, RestartLoopPausesInsteadOfBurningGpus) {
  PlaybookEngine engine(LoadPlaybook("").value());
  for (int i = 0; i < 5; ++i) {
    EXPECT_TRUE(Carry(engine, At("process_exit", i)).restarts()) << i;
  }
  const Decision sixth = Carry(engine, At("rank_hang", 6));
  EXPECT_EQ(sixth.outcome().name, "pause_and_page");
  EXPECT_NE(sixth.why.find("restart loop"), std::string::npos) << sixth.why;
  // Restarts further apart than the window are not a loop.
  EXPECT_TRUE(Carry(engine, At("process_exit", 60)).restarts());
}

// What was decided but not done does not count: a restart the controller
// turned into a pause (no spare, no checkpoint) or a failure is no restart,
// and a rule whose answer was not carried out was not applied.
TEST(Playbook, OnlyRestartsCarriedOutCountTowardTheLoop) {
  PlaybookEngine engine(LoadPlaybook("").value());
  for (int i = 0; i < 8; ++i) {
    const Decision d = engine.Decide(At("process_exit", i));
    EXPECT_TRUE(d.restarts()) << "decision " << i << ": " << d.why;
    engine.Carried(d, i * kMinute);
  }
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(Carry(engine, At("process_exit", 10 + i)).restarts());
  EXPECT_EQ(engine.Decide(At("process_exit", 16)).outcome().name, "pause_and_page");
}

TEST(Playbook, ARuleNotCarriedOutIsNotEscalated) {
  PlaybookEngine engine(LoadPlaybook("").value());
  // The first NaN's restart never happened (say the job was paused instead).
  engine.Decide(At("nonfinite", 0));
  EXPECT_EQ(Actions(Carry(engine, At("nonfinite", 10))),
            "restart_from_latest {\"skip_batches\":1}");
  EXPECT_NE(Carry(engine, At("nonfinite", 20)).why.find("escalated"), std::string::npos);
}

TEST(Playbook, CountsPerHostWithinAWindow) {
  PlaybookEngine engine(Parse(R"(version: 1
rules:
  - name: flaky-host
    when: {kind: [process_exit, rank_hang], per: host, count: 3, within: 1h}
    do: [pause_and_page]
  - name: otherwise
    when: {kind: any}
    do: [restart_from_latest]
)"));
  EXPECT_EQ(engine.Decide(At("process_exit", 0, "a")).rule, "otherwise");
  EXPECT_EQ(engine.Decide(At("rank_hang", 10, "b")).rule, "otherwise");
  EXPECT_EQ(engine.Decide(At("rank_hang", 20, "a")).rule, "otherwise");
  EXPECT_EQ(engine.Decide(At("host_lost", 25, "a")).rule, "otherwise");  // not counted
  EXPECT_EQ(engine.Decide(At("process_exit", 30, "a")).rule, "flaky-host");
  // An hour on, the window holds none of the earlier three.
  EXPECT_EQ(engine.Decide(At("process_exit", 95, "a")).rule, "otherwise");
}

TEST(Playbook, MatchesCodes) {
  PlaybookEngine engine(Parse(R"(version: 1
rules:
  - name: fatal-xid
    when: {kind: gpu_fault, codes: [48, 79]}
    do: [fail_job]
  - name: rest
    when: {kind: any}
    do: [restart_from_latest]
)"));
  EXPECT_EQ(engine.Decide(At("gpu_fault", 0, "h", 0, {79})).rule, "fatal-xid");
  EXPECT_EQ(engine.Decide(At("gpu_fault", 1, "h", 0, {13})).rule, "rest");
  EXPECT_EQ(engine.Decide(At("gpu_fault", 2, "h", 0, {})).rule, "rest");
}

TEST(Playbook, NoRuleMatchingRestarts) {
  PlaybookEngine engine(Parse(
      "version: 1\nrules:\n  - name: only\n    when: {kind: straggler}\n    do: [continue]\n"));
  const Decision d = engine.Decide(At("process_exit", 0));
  EXPECT_EQ(d.rule, "");
  EXPECT_EQ(Actions(d), "restart_from_latest");
  EXPECT_NE(d.why.find("no rule"), std::string::npos);
}

TEST(Playbook, ErrorsNameFileLineAndField) {
  EXPECT_EQ(ErrorOf("version: 1\nrules:\n  - name: a\n    when: {kind: proces_exit}\n"
                    "    do: [restart_from_latest]\n"),
            "pb.yaml:4:18: rules[0] (a).when.kind: unknown detection kind 'proces_exit' (known: "
            "process_exit, rank_hang, host_lost, gpu_fault, gpu_thermal, collective_error, "
            "straggler, "
            "nonfinite, loss_spike, grad_norm_spike, start_timeout, config_error, "
            "checkpoint_write_failed, any)");
  EXPECT_EQ(ErrorOf("version: 1\nrules:\n  - name: a\n    when: {kind: any}\n"
                    "    do: [restart_from_latest, {skip_batches: -3}]\n"),
            "pb.yaml:5:46: rules[0] (a).do[1].skip_batches: expected an integer in [1, 1000000], "
            "got '-3'");
  EXPECT_EQ(ErrorOf("version: 1\nrules:\n  - name: a\n    when: {kind: any}\n"
                    "    do: [restart_from_latest, fail_job]\n"),
            "pb.yaml:5:9: rules[0] (a).do: has two outcomes, 'restart_from_latest' and 'fail_job' "
            "(exactly one of continue, fail_job, pause_and_page, restart_from_latest, rollback)");
  EXPECT_NE(ErrorOf("version: 1\nrules:\n  - name: a\n    when: {kind: any}\n"
                    "    do: [continue, {scale_lr: 0.5}]\n")
                .find("'scale_lr' changes the next generation"),
            std::string::npos);
  EXPECT_NE(ErrorOf("version: 1\nrules:\n  - name: a\n    when: {kind: any}\n    do: [reboot]\n")
                .find("pb.yaml:5:10: rules[0] (a).do[0]: unknown action 'reboot'"),
            std::string::npos);
  EXPECT_NE(ErrorOf("version: 1\nrules:\n  - name: a\n    when: {kind: any, within: 5 minutes}\n"
                    "    do: [continue]\n")
                .find("rules[0] (a).when.within: expected a duration"),
            std::string::npos);
  EXPECT_NE(ErrorOf("version: 1\nrules:\n  - name: a\n    when: {kind: any}\n    do: [continue]\n"
                    "  - name: a\n    when: {kind: any}\n    do: [continue]\n")
                .find("pb.yaml:6:11: rules[1].name: another rule is named 'a'"),
            std::string::npos);
  EXPECT_NE(ErrorOf("version: 2\nrules: []\n").find("pb.yaml:1:10: version: expected 1"),
            std::string::npos);
  EXPECT_NE(ErrorOf("version: 1\nrules:\n  - name: a\n    when: {kind: any}\n    do: [continue]\n"
                    "restart_loop: {max: 3, within: 1h, then: [restart_from_latest]}\n")
                .find("restart_loop.then: must not restart"),
            std::string::npos);
  EXPECT_NE(ErrorOf("version: 1\nrules:\n  - name: a\n    when: {kind: any}\n    do: [continue\n")
                .find("YAML syntax error"),
            std::string::npos);
  EXPECT_NE(ErrorOf("version: 1\nrulez: []\n").find("pb.yaml:2:1: rulez: unknown field"),
            std::string::npos);
}

TEST(Playbook, Durations) {
  EXPECT_EQ(ParseDuration("500ms").value(), 500'000);
  EXPECT_EQ(ParseDuration("90s").value(), 90'000'000);
  EXPECT_EQ(ParseDuration("30m").value(), 30 * kMinute);
  EXPECT_EQ(ParseDuration("6h").value(), 360 * kMinute);
  EXPECT_EQ(ParseDuration("2d").value(), 2 * 24 * 60 * kMinute);
  EXPECT_EQ(ParseDuration("1w").value(), 7 * 24 * 60 * kMinute);
  for (const char* bad : {"", "m", "5", "5 m", "-5m", "5y", "1.5h", "9999999999s"})
    EXPECT_FALSE(ParseDuration(bad).ok()) << bad;
}

}  // namespace
}  // namespace vigil::coordinator

namespace vigil::coordinator {
namespace {

TEST(Chaos, ParsesEveryKindWithAndWithoutAStep) {
  auto hang = ParseChaosFault("hang-rank:2@60");
  ASSERT_TRUE(hang.ok());
  EXPECT_EQ(hang->rank, 2);
  EXPECT_EQ(hang->step, 60);
  EXPECT_EQ(ChaosSignal("hang-rank"), SIGSTOP);
  EXPECT_EQ(ChaosSignal("nan"), SIGUSR1);
  EXPECT_EQ(ChaosSignal("spike"), SIGUSR2);
  EXPECT_EQ(ChaosSignal("slow-rank"), SIGURG);
  EXPECT_EQ(ChaosSignal("disk-full"), SIGXFSZ);
  EXPECT_EQ(ParseChaosFault("disk-full:3@100").value().rank, 3);
  auto ckpt = ParseChaosFault("corrupt-ckpt:truncate@40");
  ASSERT_TRUE(ckpt.ok());
  EXPECT_EQ(ckpt->kind, "corrupt-checkpoint") << "corrupt-ckpt is its short name";
  EXPECT_EQ(ckpt->how, "truncate");
  EXPECT_EQ(ParseChaosFault("nan:1").value().step, 0) << "no step: at once";
  auto xid = ParseChaosFault("xid:79:3@120");
  ASSERT_TRUE(xid.ok());
  EXPECT_EQ(xid->xid, 79);
  EXPECT_EQ(xid->rank, 3);
  EXPECT_EQ(xid->step, 120);
  EXPECT_TRUE(IsHostFault("xid"));
  EXPECT_EQ(ParseChaosFault("kill-agent:1").value().rank, 1);
  EXPECT_TRUE(IsHostFault("kill-agent"));
  EXPECT_FALSE(IsHostFault("kill-rank"));
  for (const char* bad :
       {"hang-rank", "hang-rank:x@5", "nan:1@0", "reboot:1@5", "corrupt-checkpoint:melt@5",
        "kill-rank:-1@3", "xid:79", "xid:0:1", "xid:x:1@5", "xid:79:1:2"})
    EXPECT_FALSE(ParseChaosFault(bad).ok()) << bad;
  EXPECT_FALSE(ParseChaosFaults({"spike:4@10"}, ChaosPlan{4, 300, 25}, 1).ok())
      << "rank outside the world";
  EXPECT_FALSE(ParseChaosFaults({"kill-agent:4"}, ChaosPlan{4, 300, 25}, 1).ok());
}

TEST(Chaos, VigildsOwnFaultsNameNoRank) {
  auto kill = ParseChaosFault("kill-vigild@40");
  ASSERT_TRUE(kill.ok()) << kill.status().ToString();
  EXPECT_EQ(kill->kind, "kill-vigild");
  EXPECT_EQ(kill->step, 40);
  EXPECT_EQ(kill->hang_ms, 0);
  EXPECT_TRUE(IsCoordinatorFault(kill->kind));
  auto now = ParseChaosFault("kill-vigild");
  ASSERT_TRUE(now.ok());
  EXPECT_EQ(now->step, 0);
  auto hang = ParseChaosFault("hang-vigild:2500@7");
  ASSERT_TRUE(hang.ok()) << hang.status().ToString();
  EXPECT_EQ(hang->hang_ms, 2500);
  EXPECT_EQ(hang->step, 7);
  EXPECT_EQ(ParseChaosFault("hang-vigild").value().hang_ms, kDefaultVigildHangMs);
  for (const char* bad : {"kill-vigild:3", "hang-vigild:x", "hang-vigild:0", "kill-vigild@0",
                          "hang-vigild:10@", "kill-vigild@x"})
    EXPECT_FALSE(ParseChaosFault(bad).ok()) << bad;
  // In a random schedule a hang is shorter than every timeout.
  const auto random = ParseChaosFaults({"random:10"}, ChaosPlan{4, 700, 25, 2, 1500}, 3);
  ASSERT_TRUE(random.ok());
  int hangs = 0;
  for (const auto& f : random.value()) {
    if (f.kind != "hang-vigild") continue;
    ++hangs;
    EXPECT_EQ(f.hang_ms, 150) << f.spec;
  }
  EXPECT_EQ(hangs, 1);
}

TEST(Chaos, RandomScheduleIsSeededSpacedAndCoversEveryKind) {
  const ChaosPlan plan{4, 1200, 25, 2};
  auto a = ParseChaosFaults({"random:40"}, plan, 7).value();
  auto b = ParseChaosFaults({"random:40"}, plan, 7).value();
  auto c = ParseChaosFaults({"random:40"}, plan, 8).value();
  ASSERT_EQ(a.size(), b.size());
  bool differs = a.size() != c.size();
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].spec, b[i].spec);
    if (i < c.size() && a[i].spec != c[i].spec) differs = true;
  }
  EXPECT_TRUE(differs) << "another seed, another schedule";
  std::set<std::string> kinds;
  int64_t last_step = 0;
  int last_index = -1;
  int hosts_taken = 0;
  int64_t full_save = -1;  // the save a disk-full fault fails (-1: none)
  for (const auto& f : a) {
    kinds.insert(f.kind);
    if (f.kind == "kill-agent" || (f.kind == "xid" && (f.xid == 48 || f.xid == 64 || f.xid == 79)))
      ++hosts_taken;
    if (f.kind == "xid") {
      EXPECT_NE(LookupXid(f.xid), nullptr) << f.spec;
    }
    EXPECT_GE(f.rank, 0);
    EXPECT_LT(f.rank, 4);
    if (f.random_index != last_index) {
      EXPECT_GE(f.step, last_step + 1) << f.spec;
      if (full_save >= 0) {
        EXPECT_GE(f.step, full_save + 3) << "the failed save comes before " << f.spec;
      }
      full_save = -1;
      last_step = f.step;
      last_index = f.random_index;
    }
    if (f.kind == "corrupt-checkpoint") {
      EXPECT_EQ(f.step % 25, 12) << "halfway between saves: " << f.spec;
    }
    if (f.kind == "disk-full") {
      EXPECT_EQ((f.step + 5) % 25, 0) << "five steps before a save: " << f.spec;
      full_save = f.step + 5;
    }
  }
  EXPECT_EQ(last_index, 39);
  const std::set<std::string> every(RandomChaosKinds().begin(), RandomChaosKinds().end());
  EXPECT_EQ(kinds, every);
  // Dealt from a deck: as many faults as kinds cover every kind, whatever the seed.
  const std::string as_many = "random:" + std::to_string(RandomChaosKinds().size());
  for (uint64_t seed = 1; seed <= 50; ++seed) {
    std::set<std::string> of_deck;
    const auto dealt = ParseChaosFaults({as_many}, ChaosPlan{4, 700, 25, 2}, seed).value();
    for (const auto& f : dealt) of_deck.insert(f.kind);
    EXPECT_EQ(of_deck, every) << "seed " << seed;
  }
  EXPECT_EQ(hosts_taken, 2) << "faults that take a host away: as many as the spares";
  // Without spares, none.
  const auto no_spares = ParseChaosFaults({"random:40"}, ChaosPlan{4, 1200, 25, 0}, 7).value();
  for (const auto& f : no_spares) {
    EXPECT_NE(f.kind, "kill-agent") << f.spec;
    if (f.kind == "xid") {
      EXPECT_TRUE(f.xid == 13 || f.xid == 31 || f.xid == 43 || f.xid == 94) << f.spec;
    }
  }
  // Only the kinds asked for (a restart-only schedule).
  std::set<std::string> restart_only;
  const auto only = ParseChaosFaults({"random:8:kill-rank,hang-rank,kill-agent"}, plan, 3).value();
  for (const auto& f : only) restart_only.insert(f.kind);
  EXPECT_EQ(restart_only, (std::set<std::string>{"kill-rank", "hang-rank", "kill-agent"}));
  for (const char* bad : {"random:8:kill-rank,reboot", "random:8:", "random:8;kill-rank"}) {
    const auto r = ParseChaosFaults({bad}, plan, 3);
    EXPECT_FALSE(r.ok()) << bad;
  }
  EXPECT_NE(ParseChaosFaults({"random:8:reboot"}, plan, 3).status().message().find("'reboot'"),
            std::string::npos);
  auto crowded = ParseChaosFaults({"random:20"}, ChaosPlan{4, 300, 25}, 1);
  ASSERT_FALSE(crowded.ok());
  EXPECT_NE(crowded.status().message().find("needs 25 steps per fault"), std::string::npos)
      << crowded.status().message();
}

}  // namespace
}  // namespace vigil::coordinator
