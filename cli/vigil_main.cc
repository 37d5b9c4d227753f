// vigil: the command people type.
//   vigil run JOB.yaml [--workdir DIR] [--chaos kill-rank:RANK@STEP]... [-o text|json]
//   vigil logbook ls --workdir DIR [--run R] [-o table|json]
//   vigil data prepare FILE... -o OUT.tok
//   vigil data verify FILE.tok
#include <CLI/CLI.hpp>

#include "cli/commands.h"

int main(int argc, char** argv) {
  using namespace vigil::cli;
  CLI::App app{"vigil: keeps long training runs alive"};
  app.require_subcommand(1);

  RunArgs run;
  auto* run_cmd = app.add_subcommand("run", "run a job on this machine (vigild + local agents)");
  run_cmd->add_option("job", run.job_file, "job spec (YAML), e.g. examples/tiny.yaml")->required();
  run_cmd->add_option("--workdir", run.workdir, "work directory (default ./vigil-runs/<job name>)");
  run_cmd->add_option("--chaos", run.chaos, "inject a fault: kill-rank:RANK@STEP (repeatable)");
  run_cmd->add_option("-o,--output", run.output, "text or json (last stdout line)")
      ->check(CLI::IsMember({"text", "json"}));

  auto* logbook_cmd = app.add_subcommand("logbook", "read a job's logbook");
  logbook_cmd->require_subcommand(1);
  LogbookLsArgs ls;
  auto* ls_cmd = logbook_cmd->add_subcommand("ls", "list events and interventions");
  ls_cmd->add_option("--workdir", ls.workdir, "work directory holding logbook.sqlite")->required();
  ls_cmd->add_option("--run", ls.run, "only this run");
  ls_cmd->add_option("-o,--output", ls.output, "table or json")
      ->check(CLI::IsMember({"table", "json"}));

  auto* data_cmd = app.add_subcommand("data", "prepare and check training corpora");
  data_cmd->require_subcommand(1);
  DataPrepareArgs prep;
  auto* prep_cmd = data_cmd->add_subcommand("prepare", "concatenate files into a byte-token file");
  prep_cmd->add_option("files", prep.inputs, "input files, read as bytes")->required();
  prep_cmd->add_option("-o,--output", prep.output, "token file to write")->required();
  std::string verify_path;
  auto* verify_cmd = data_cmd->add_subcommand("verify", "check a token file's header and checksum");
  verify_cmd->add_option("file", verify_path, "token file")->required();

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : 2;  // usage errors exit 2
  }
  if (run_cmd->parsed()) return RunJob(run);
  if (ls_cmd->parsed()) return LogbookLs(ls);
  if (prep_cmd->parsed()) return DataPrepare(prep);
  if (verify_cmd->parsed()) return DataVerify(verify_path);
  return 2;
}
