// vigil: the command people type.
//   vigil run JOB.yaml [--workdir DIR] [--chaos FAULT]... [-o text|json]
//   vigil logbook ls --workdir DIR [--run R] [--since T] [--until T] [--kind K]... [--host H]
//                    [--rank R] [--actor A] [-n N] [-f] [-o table|json|csv]
//   vigil logbook show ID --workdir DIR · note TEXT --workdir DIR [--run R] [--author A]
//   vigil logbook stats --workdir DIR [--run R] [-o table|json]
//   vigil logbook export --workdir DIR [--run R] --format markdown [-o FILE]
//   vigil report --workdir DIR [--run R] [-o report.html]
//   vigil data prepare FILE... -o OUT.tok
//   vigil data verify FILE.tok
//   vigil ckpt ls DIR [-o table|json] · verify PATH · inspect PATH [-o table|json]
//   vigil ckpt reshard SRC DST --world M
//   vigil resume --workdir DIR [--note TEXT] · vigil chaos FAULT --workdir DIR
//   vigil playbook check FILE
#include <CLI/CLI.hpp>

#include "cli/commands.h"

int main(int argc, char** argv) {
  using namespace vigil::cli;
  CLI::App app{"vigil: keeps long training runs alive"};
  app.require_subcommand(1);

  RunArgs run;
  auto* run_cmd = app.add_subcommand(
      "run", "run a job: on this machine (vigild + local agents), or under Slurm");
  run_cmd->add_option("job", run.job_file, "job spec (YAML), e.g. examples/tiny.yaml")->required();
  run_cmd->add_option("--workdir", run.workdir, "work directory (default ./vigil-runs/<job name>)");
  run_cmd->add_option(
      "--chaos", run.chaos,
      "inject a fault (repeatable): "
      "kill-rank|hang-rank|nan|spike|slow-rank|disk-full|kill-agent:RANK[@STEP], "
      "xid:CODE:RANK[@STEP], "
      "corrupt-checkpoint:HOW[@STEP] with HOW flip, truncate, remove-shard or garble-manifest, "
      "kill-vigild[@STEP], hang-vigild[:MS][@STEP], "
      "or random:COUNT[:KIND,...] (a seeded schedule of COUNT faults, dealing every kind named, "
      "or every kind)");
  run_cmd->add_option("--seed", run.seed, "seed of a random:COUNT chaos schedule");
  run_cmd
      ->add_option("--launcher", run.launcher,
                   "local (this machine) or slurm (sbatch; inside an allocation, its nodes); "
                   "default: the job's `launcher`")
      ->check(CLI::IsMember({"local", "slurm"}));
  run_cmd->add_option("-o,--output", run.output, "text or json (last stdout line)")
      ->check(CLI::IsMember({"text", "json"}));

  auto* logbook_cmd = app.add_subcommand("logbook", "read a job's logbook");
  logbook_cmd->require_subcommand(1);
  LogbookArgs ls, show, note, stats, chronicle;
  auto* ls_cmd = logbook_cmd->add_subcommand(
      "ls", "list events, interventions and notes (filters combine; -f follows)");
  ls_cmd->add_option("--workdir", ls.workdir, "work directory (or its logbook.sqlite)")->required();
  ls_cmd->add_option("--run", ls.run, "only this run");
  ls_cmd->add_option("--since", ls.since, "from: 2h (ago), now, 2026-11-24T04:00:00 (UTC)");
  ls_cmd->add_option("--until", ls.until, "before: same forms as --since");
  ls_cmd->add_option("--kind", ls.kinds, "event kind, intervention action or note (repeatable)");
  ls_cmd->add_option("--host", ls.host, "events on this host, and what answered them");
  ls_cmd->add_option("--rank", ls.rank, "events of this rank, and what answered them");
  ls_cmd->add_option("--actor", ls.actor, "interventions and notes by: human, auto, human:NAME");
  ls_cmd->add_option("-n,--last", ls.last, "only the newest N entries");
  ls_cmd->add_flag("-f,--follow", ls.follow, "keep printing new entries as they are written");
  ls_cmd->add_option("-o,--output", ls.output, "table, json or csv")
      ->check(CLI::IsMember({"table", "json", "csv"}));
  auto* show_cmd = logbook_cmd->add_subcommand(
      "show", "an event: its interventions, generations, recovery and checkpoints");
  show_cmd->add_option("id", show.event_id, "event id (event#ID in ls)")->required();
  show_cmd->add_option("--workdir", show.workdir, "work directory (or its logbook.sqlite)")
      ->required();
  show_cmd->add_option("-o,--output", show.output, "table or json")
      ->check(CLI::IsMember({"table", "json"}));
  auto* note_cmd = logbook_cmd->add_subcommand("note", "write a person's entry into the logbook");
  note_cmd->add_option("text", note.text, "what happened, what was done")->required();
  note_cmd->add_option("--workdir", note.workdir, "work directory (or its logbook.sqlite)")
      ->required();
  note_cmd->add_option("--run", note.run, "the run (default: the newest)");
  note_cmd->add_option("--author", note.author, "who (default: $USER)");
  auto* stats_cmd = logbook_cmd->add_subcommand(
      "stats", "failures by kind and host, restarts, MTBF, time lost, goodput");
  stats_cmd->add_option("--workdir", stats.workdir, "work directory (or its logbook.sqlite)")
      ->required();
  stats_cmd->add_option("--run", stats.run, "the run (default: the newest)");
  stats_cmd->add_option("-o,--output", stats.output, "table or json")
      ->check(CLI::IsMember({"table", "json"}));
  auto* export_cmd = logbook_cmd->add_subcommand(
      "export", "a run's chronicle: per day, what broke, what was done and by whom");
  export_cmd->add_option("--workdir", chronicle.workdir, "work directory (or its logbook.sqlite)")
      ->required();
  export_cmd->add_option("--run", chronicle.run, "the run (default: the newest)");
  export_cmd->add_option("--format", chronicle.format, "markdown");
  export_cmd->add_option("-o,--output", chronicle.out_file, "file to write (default: stdout)");

  auto* data_cmd = app.add_subcommand("data", "prepare and check training corpora");
  data_cmd->require_subcommand(1);
  DataPrepareArgs prep;
  auto* prep_cmd = data_cmd->add_subcommand("prepare", "concatenate files into a byte-token file");
  prep_cmd->add_option("files", prep.inputs, "input files, read as bytes")->required();
  prep_cmd->add_option("-o,--output", prep.output, "token file to write")->required();
  std::string verify_path;
  auto* verify_cmd = data_cmd->add_subcommand("verify", "check a token file's header and checksum");
  verify_cmd->add_option("file", verify_path, "token file")->required();

  auto* ckpt_cmd = app.add_subcommand("ckpt", "list, verify, inspect and reshard checkpoints");
  ckpt_cmd->require_subcommand(1);
  CkptArgs ckpt_ls, ckpt_verify, ckpt_inspect;
  auto* ckpt_ls_cmd = ckpt_cmd->add_subcommand("ls", "list checkpoints (cheap checks only)");
  ckpt_ls_cmd->add_option("dir", ckpt_ls.path, "a checkpoints folder")->required();
  ckpt_ls_cmd->add_option("-o,--output", ckpt_ls.output, "table or json")
      ->check(CLI::IsMember({"table", "json"}));
  auto* ckpt_verify_cmd =
      ckpt_cmd->add_subcommand("verify", "read and check every byte (exit 1 if any fails)");
  ckpt_verify_cmd->add_option("path", ckpt_verify.path, "a checkpoint directory")->required();
  auto* ckpt_inspect_cmd =
      ckpt_cmd->add_subcommand("inspect", "step, configuration and tensors of a checkpoint");
  ckpt_inspect_cmd->add_option("path", ckpt_inspect.path, "a checkpoint directory")->required();
  ckpt_inspect_cmd->add_option("-o,--output", ckpt_inspect.output, "table or json")
      ->check(CLI::IsMember({"table", "json"}));
  CkptReshardArgs reshard;
  auto* reshard_cmd =
      ckpt_cmd->add_subcommand("reshard", "rewrite a checkpoint for another world size");
  reshard_cmd->add_option("src", reshard.src, "a checkpoint directory")->required();
  reshard_cmd->add_option("dst", reshard.dst, "folder to write step-<N>/ into")->required();
  reshard_cmd->add_option("--world", reshard.world, "ranks of the new world")
      ->required()
      ->check(CLI::Range(1, 65536));

  ControlArgs resume;
  auto* resume_cmd = app.add_subcommand("resume", "continue a paused job");
  resume_cmd->add_option("--workdir", resume.workdir, "the job's work directory")->required();
  resume_cmd->add_option("--note", resume.note, "why (kept in the logbook)");
  resume_cmd->add_option("--by", resume.actor, "who (default: $USER)");
  ControlArgs chaos;
  auto* chaos_cmd = app.add_subcommand("chaos", "inject a fault into a running job");
  chaos_cmd
      ->add_option("fault", chaos.fault,
                   "kill-rank|hang-rank|nan|spike|slow-rank|disk-full|kill-agent:RANK[@STEP], "
                   "xid:CODE:RANK[@STEP], corrupt-checkpoint:HOW[@STEP], kill-vigild[@STEP] or "
                   "hang-vigild[:MS][@STEP]")
      ->required();
  chaos_cmd->add_option("--workdir", chaos.workdir, "the job's work directory")->required();
  chaos_cmd->add_option("--by", chaos.actor, "who (default: $USER)");
  LogbookArgs report;
  auto* report_cmd = app.add_subcommand(
      "report", "a run as one HTML page: loss curve with interventions, generations, failures");
  report_cmd->add_option("--workdir", report.workdir, "work directory (or its logbook.sqlite)")
      ->required();
  report_cmd->add_option("--run", report.run, "the run (default: the newest)");
  report_cmd->add_option("-o,--output", report.out_file, "HTML file to write (default: stdout)");
  auto* playbook_cmd = app.add_subcommand("playbook", "validate playbooks");
  playbook_cmd->require_subcommand(1);
  std::string playbook_path;
  auto* check_cmd = playbook_cmd->add_subcommand("check", "validate a playbook (exit 1 if not)");
  check_cmd->add_option("file", playbook_path, "playbook YAML")->required();

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : 2;  // usage errors exit 2
  }
  if (run_cmd->parsed()) return RunJob(run);
  if (ls_cmd->parsed()) return LogbookLs(ls);
  if (show_cmd->parsed()) return LogbookShow(show);
  if (note_cmd->parsed()) return LogbookNote(note);
  if (stats_cmd->parsed()) return LogbookStats(stats);
  if (export_cmd->parsed()) return LogbookExport(chronicle);
  if (report_cmd->parsed()) return Report(report);
  if (prep_cmd->parsed()) return DataPrepare(prep);
  if (verify_cmd->parsed()) return DataVerify(verify_path);
  if (ckpt_ls_cmd->parsed()) return CkptLs(ckpt_ls);
  if (ckpt_verify_cmd->parsed()) return CkptVerify(ckpt_verify);
  if (ckpt_inspect_cmd->parsed()) return CkptInspect(ckpt_inspect);
  if (reshard_cmd->parsed()) return CkptReshard(reshard);
  if (resume_cmd->parsed()) return Resume(resume);
  if (chaos_cmd->parsed()) return Chaos(chaos);
  if (check_cmd->parsed()) return PlaybookCheck(playbook_path);
  return 2;
}
